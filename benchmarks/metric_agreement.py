"""How well two metrics agree in ranking a run's methods: Kendall's τ per split.

    python benchmarks/metric_agreement.py runs/full                     # CLIP-S, RefCLIP-S, BLEU-4 vs CIDEr
    python benchmarks/metric_agreement.py runs/full --against bleu4 --metrics clip_s

For each split, the main-table rows (one per method, each metric averaged over its seeds) are
ordered by each metric; τ is Kendall's τ-b, (concordant − discordant pairs) over the
geometric mean of the pairs untied in each ordering, so that ties (a retrieval method's seeds
score alike) neither count against agreement nor for it. The last column does the same over the
single-seed cells.
"""

from __future__ import annotations

import argparse
from itertools import combinations

import numpy as np


def kendall_tau(a: list[float], b: list[float]) -> float:
    """Kendall's τ-b of two orderings of the same items (nan when either has no untied pair)."""
    pairs = list(combinations(range(len(a)), 2))
    sa = [np.sign(a[i] - a[j]) for i, j in pairs]
    sb = [np.sign(b[i] - b[j]) for i, j in pairs]
    untied_a, untied_b = sum(x != 0 for x in sa), sum(y != 0 for y in sb)
    if not untied_a or not untied_b:
        return float("nan")
    return float(sum(x * y for x, y in zip(sa, sb))) / float(np.sqrt(untied_a * untied_b))


def main() -> None:
    from bench.records import read_records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--against", default="cider")
    parser.add_argument("--metrics", default="clip_s,refclip_s,bleu4")
    args = parser.parse_args()
    metrics = [m for m in args.metrics.split(",") if m]
    records = [r for r in read_records(args.run_dir).records if r.role == "main"]
    print("| split | methods | " + " | ".join(f"{m} vs {args.against}" for m in metrics)
          + f" | {metrics[0]} vs {args.against} over cells |")
    print("|---|---|" + "---|" * (len(metrics) + 1))
    for split in dict.fromkeys(r.split for r in records):
        rows: dict[str, list] = {}
        for r in records:
            if r.split == split and all(m in r.metrics for m in [args.against, *metrics]):
                rows.setdefault(r.method, []).append(r)
        means = {m: [float(np.mean([r.metrics[m] for r in rs])) for rs in rows.values()] for m in [args.against, *metrics]}
        cells = [r for rs in rows.values() for r in rs]
        taus = [kendall_tau(means[args.against], means[m]) for m in metrics]
        over_cells = kendall_tau([r.metrics[args.against] for r in cells], [r.metrics[metrics[0]] for r in cells])
        print(f"| {split} | {len(rows)} | " + " | ".join(f"{t:.2f}" for t in taus) + f" | {over_cells:.2f} ({len(cells)} cells) |")


if __name__ == "__main__":
    main()
