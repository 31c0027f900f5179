"""How each stage grows with the corpus: time and peak memory at COCO's size, without a GPU.

A synthetic dataset in COCO's Karpathy format is written from the shapes world's COCO-like
domain (5 captions per image): training sets of 2,000, 20,000 and 113,287 images (10k, 100k and
566k captions) and COCO's 5,000 test images, rendered. Each stage runs in a process of its own,
through the real code path, with the small world CLIP:

* ``encode``: the training captions and the test images, into a fresh embedding cache;
* ``clipre``: its fit (the index of the whole corpus) and captioning the 5,000 test images;
* ``project``: decap's projection of the 5,000 test embeddings onto a memory of every caption;
* ``decoder``: a short decoder fit (100 steps; what grows with the corpus is the set-up:
  vocabulary, padding, the copy of the embeddings);
* ``score``: scoring clipre's 5,000 captions against 25,000 references;
* ``report``: rendering a report of two cells of 5,000 samples each.

    python benchmarks/scale.py                      # 10k, 100k, 566k captions
    python benchmarks/scale.py --sizes 10000 --out /tmp/scale

Prints a table of seconds and peak resident memory (MB) per stage and size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

STAGES = ("encode", "clipre", "project", "decoder", "score", "report")
TEST_IMAGES = 5000


def build_data(root: Path, train_images: int, test_images: int, images_dir: Path) -> None:
    """``root/coco/dataset_coco.json`` with ``train_images`` training and ``test_images`` test images."""
    from bench.io import write_json_atomic
    from bench.shapes.domains import WorldConfig, captions_of, image_name, render_images, scene_of

    world = WorldConfig(coco_sizes=(max(train_images, 4000), 0, test_images))
    path = root / "coco" / "dataset_coco.json"
    if path.is_file():
        return
    images = []
    for split, n in (("train", train_images), ("test", test_images)):
        for i in range(n):
            scene = scene_of(world, "coco", split, i)
            images.append({"filename": image_name("coco", split, i), "filepath": split, "split": split, "cocoid": len(images),
                           "sentences": [{"raw": c} for c in captions_of(world, "coco", split, i, scene)]})
    render_images(world, "coco", "test", images_dir / "test")
    (root / "coco").mkdir(parents=True, exist_ok=True)
    link = root / "coco" / "images"
    if not link.exists():
        link.symlink_to(images_dir, target_is_directory=True)
    write_json_atomic(path, {"dataset": "coco", "images": images}, indent=None)


def run_stage(stage: str, data_root: Path, cache: Path, clip_cache: Path, work: Path) -> dict:
    import numpy as np
    import torch

    from bench.encoders import create_encoder
    from bench.inputs import RunInputs
    from bench.plugins import load_plugins

    torch.set_num_threads(2)
    load_plugins()
    encoder = create_encoder("shapes", cache_dir=clip_cache, log=lambda m: None)
    inputs = RunInputs(encoder.config, "cpu", data_root, cache, log=lambda m: None)
    inputs._encoder = encoder  # the world CLIP from its own cache; embeddings in this size's cache
    start = time.perf_counter()
    out: dict = {}
    if stage == "encode":
        corpus, _ = inputs.corpus("coco")
        inputs.eval_images("coco")
        out["captions"] = len(corpus)
    else:
        corpus, _ = inputs.corpus("coco")
        test = inputs.eval_images("coco")
        start = time.perf_counter()  # reading the cache is not the stage
        if stage in ("clipre", "score", "report"):
            from bench.captioner import FitContext
            from bench.plugins import create_method

            method = create_method("clipre")
            method.fit(corpus, FitContext())
            predictions = method.caption(np.asarray(test.embeddings))
            if stage != "clipre":
                from bench.scoring import score

                start = time.perf_counter()
                result = score(dict(zip([i.image_id for i in test.data.items], predictions)), test.data.references())
                out["cider"] = round(result.metrics["cider"], 2)
                if stage == "report":
                    start = time.perf_counter()
                    _report(work, test, predictions, result)
        elif stage == "project":
            from bench.projection import project, support_memory

            memory = support_memory(corpus.embeddings)
            project(np.asarray(test.embeddings), memory, 0.01)
            out["memory"] = len(memory)
        elif stage == "decoder":
            import math

            from bench.decoders import CaptionDecoder, DecoderConfig

            steps = 100
            config = DecoderConfig(epochs=steps / math.ceil(len(corpus) / 128))
            decoder = CaptionDecoder(config, corpus.dim)
            encoded = decoder.build(corpus.captions)
            stats = decoder.fit(np.asarray(corpus.embeddings), encoded, progress=None)
            out["steps"] = stats.steps
    out["seconds"] = round(time.perf_counter() - start, 2)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def _report(work: Path, test, predictions, result) -> None:
    from bench.records import Record, RecordStore, Sample
    from bench.reporting import render_report

    store = RecordStore(work / "report_run")
    for seed in (0, 1):
        record = Record(method="clipre", split="coco", train="coco", eval="coco", kind="in-domain", seed=seed, config={},
                        metrics={k: round(v, 4) for k, v in result.metrics.items()}, n_images=result.n_images, encoder="shapes@x",
                        train_fingerprint="t", eval_fingerprint="e")
        samples = [Sample(i.image_id, str(p), pred, tuple(i.captions), {m: result.per_image[m][k] for m in result.per_image},
                          tuple(result.bleu_stats[k])) for k, (i, p, pred) in enumerate(zip(test.data.items, test.paths, predictions))]
        store.add(record, samples)
    render_report(work / "report_run", gallery=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,566435", help="training captions (5 per image)")
    parser.add_argument("--out", default="/tmp/textcap-scale", help="where the synthetic data and caches go")
    parser.add_argument("--clip-cache", help="cache folder holding the shapes CLIP (default: $TEXTCAP_BENCH_CACHE)")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    out = Path(args.out)
    from bench.config import default_cache_dir

    clip_cache = Path(args.clip_cache) if args.clip_cache else default_cache_dir()
    if args.stage:
        root = out / f"data-{args.size}"
        print("RESULT " + json.dumps(run_stage(args.stage, root, out / f"cache-{args.size}", clip_cache, out / f"work-{args.size}")))
        return
    os.environ.setdefault("BENCH_PROGRESS", "0")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        root = out / f"data-{size}"
        t = time.perf_counter()
        build_data(root, size // 5, TEST_IMAGES, out / "images")
        print(f"{size} captions: data ready in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        for stage in STAGES:
            proc = subprocess.run([sys.executable, __file__, "--stage", stage, "--size", str(size), "--out", str(out),
                                   "--clip-cache", str(clip_cache)], capture_output=True, text=True)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(f"{stage} at {size} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                sys.exit(1)
            result = json.loads(line[7:])
            rows.append({"size": size, "stage": stage, **result})
            print(json.dumps(rows[-1]), flush=True)
    print("\n| stage | " + " | ".join(f"{s:,} captions" for s in dict.fromkeys(r["size"] for r in rows)) + " |")
    print("|---|" + "---|" * len({r["size"] for r in rows}))
    for stage in STAGES:
        cells = [f"{r['seconds']:.1f} s, {r['peak_rss_mb']:,.0f} MB" for r in rows if r["stage"] == stage]
        print(f"| {stage} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
