"""How well viecap's and ifcap's test-time entities name what a test image shows.

Reads the fits of a run (``RUN_DIR/checkpoints``) trained on shapes-coco and, on the shapes-coco
test images, compares the entities each method puts in its hard prompt with the entities the
image's five reference captions name (``bench.entities.EntityMatcher`` with the dataset's
object words and aliases): precision, recall, and how many entities a prompt names on average.

    python benchmarks/entity_accuracy.py runs/full --cache-dir DIR [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    from bench.config import default_cache_dir
    from bench.entities import EntityMatcher
    from bench.fits import load_fit
    from bench.inputs import RunInputs
    from bench.plugins import DATASETS, METHODS, load_plugins
    from bench.retrieval import nearest
    from bench.tensors import unit_rows

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--cache-dir", default=str(default_cache_dir()))
    parser.add_argument("--dataset", default="shapes-coco")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    load_plugins()
    inputs = RunInputs("shapes", "cpu", None, Path(args.cache_dir).expanduser(), log=lambda m: None)
    test = inputs.eval_images(args.dataset)
    cls = DATASETS.get(args.dataset)
    matcher = EntityMatcher(cls.object_vocabulary, cls.entity_aliases)
    truth = [set(e for c in item.captions for e in matcher(c)) for item in test.data.items]
    x = unit_rows(np.asarray(test.embeddings))
    print(f"{len(truth)} {args.dataset} test images; the references name {np.mean([len(t) for t in truth]):.2f} entities each")
    print("| method | settings | precision | recall | entities per prompt | prompts naming none |")
    print("|---|---|---|---|---|---|")
    from bench.records import read_records

    done = set()
    for record in read_records(args.run_dir).records:
        name = record.method
        if name not in ("viecap", "ifcap") or record.seed != args.seed or record.train != args.dataset or record.fit_key in done:
            continue
        done.add(record.fit_key)
        method, _ = load_fit(Path(args.run_dir) / "checkpoints" / record.fit_key, METHODS.get(name))
        cfg = method.config
        if not cfg.hard_prompt:
            continue
        if name == "viecap":
            said = method.entities_of(x)
            settings = f"top_k {cfg.top_k}, threshold {cfg.threshold}"
        else:
            said = method.filtered_entities(nearest(x, method.memory, max(cfg.k, cfg.filter_l)))
            settings = f"filter_l {cfg.filter_l}, filter_k {cfg.filter_k}, k {cfg.k}"
        hits = sum(len(set(s) & t) for s, t in zip(said, truth))
        total_said, total_true = sum(len(s) for s in said), sum(len(t) for t in truth)
        print(f"| {name} | {settings} | {hits / max(total_said, 1):.3f} | {hits / max(total_true, 1):.3f} | "
              f"{total_said / len(said):.2f} | {sum(not s for s in said) / len(said):.1%} |")


if __name__ == "__main__":
    main()
