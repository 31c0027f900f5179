"""Time ``bench.scoring.score`` against pycocoevalcap's scorers called directly, in one run.

The direct baseline is what COCOEvalCap does: tokenise references and predictions (two PTB
tokenizer calls), then Bleu(4), Meteor, Rouge and Cider once each. Both arms score the same
5,000 images with 5 references each, built from the COCO Karpathy val sample (each image's
references are its first 5 captions; its prediction is the first caption of the next image,
a wrong but fluent caption, so that no metric short-cuts on exact matches). Rounds alternate
between the arms; each arm starts its own METEOR process every round, so JVM start-up is
counted on both sides.

    python benchmarks/scoring_overhead.py [--rounds 3] [--data ../shared/data/coco_karpathy_val.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("BENCH_PROGRESS", "0")


def build_inputs(path: Path, n: int) -> tuple[dict[str, str], dict[str, list[str]]]:
    data = [d for d in json.loads(path.read_text()) if len(d["captions"]) >= 5][:n]
    refs = {d["image_name"]: d["captions"][:5] for d in data}
    names = list(refs)
    preds = {name: refs[names[(i + 1) % len(names)]][0] for i, name in enumerate(names)}
    return preds, refs


def direct(preds: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tok = PTBTokenizer()
    gts = tok.tokenize({k: [{"caption": c} for c in v] for k, v in refs.items()})
    res = tok.tokenize({k: [{"caption": v}] for k, v in preds.items()})
    out = {}
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    out.update({f"bleu{i + 1}": 100 * b for i, b in enumerate(bleu)})
    meteor = Meteor()
    out["meteor"] = 100 * meteor.compute_score(gts, res)[0]
    meteor.meteor_p.kill()
    out["rouge_l"] = 100 * Rouge().compute_score(gts, res)[0]
    out["cider"] = 100 * Cider().compute_score(gts, res)[0]
    return out


def ours(preds: dict[str, str], refs: dict[str, list[str]]) -> dict[str, float]:
    from bench import scoring

    scoring._METEOR = None  # a cold METEOR process, as the direct arm has
    result = scoring.score(preds, refs, spice=False).metrics
    if scoring._METEOR is not None:
        scoring._stop_meteor(scoring._METEOR)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/coco_karpathy_val.json"))
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    preds, refs = build_inputs(Path(args.data), args.images)
    print(f"{len(preds)} images, {sum(map(len, refs.values()))} references")
    times: dict[str, list[float]] = {"direct": [], "bench": []}
    results = {}
    for r in range(args.rounds):
        for name, fn in (("direct", direct), ("bench", ours)):
            start = time.perf_counter()
            results[name] = fn(preds, refs)
            times[name].append(time.perf_counter() - start)
            print(f"round {r + 1} {name:<6} {times[name][-1]:7.2f} s")
    for metric in results["direct"]:
        assert abs(results["direct"][metric] - results["bench"][metric]) < 1e-6, metric
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"median direct {med['direct']:.2f} s, bench {med['bench']:.2f} s, ratio {med['bench'] / med['direct']:.3f}")
    print("metrics identical:", json.dumps({k: round(v, 2) for k, v in results["bench"].items()}))


if __name__ == "__main__":
    main()
