"""How a text-trained decoder's captions change as its input walks from a caption to its image.

For every fit of one method trained and tested on one dataset in a run (one per seed), the test
images' inputs are moved along the modality gap: ``unit((1 - t) * h + t * x)``, where ``x`` is an
image's embedding and ``h`` the embedding of one of its own reference captions. At ``t = 0`` the
decoder reads a caption embedding, the kind of input it was trained on (the caption itself is
held out of the references it is scored against); at ``t = 1`` it reads the image embedding,
as the run's cell did. Each input goes through the method's own ``caption``, so a projection
method projects it.

What it separates: whether the fits of different seeds agree on the inputs they were trained
for (a converged decoder), and how much of their disagreement on images comes from decoding off
the text manifold. Scores are CIDEr against the image's other references (leave-one-out: the
first reference is the input, the others are the references at every ``t``, so ``t = 1`` scores
lower than the run's cell, which used all of them).

    python benchmarks/gap_walk.py RUN_DIR [--method nonoise] [--dataset shapes-coco] [--steps 0,0.25,0.5,0.75,1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


def walk_inputs(captions: np.ndarray, images: np.ndarray, t: float) -> np.ndarray:
    """Unit rows of ``(1 - t) * captions + t * images`` (both unit-normalised first)."""
    from bench.tensors import unit_rows

    return unit_rows((1.0 - t) * unit_rows(captions) + t * unit_rows(images))


@dataclass
class Walk:
    """CIDEr of each fit (by seed) at each step ``t``, and the predictions behind them."""

    steps: list[float]
    cider: dict[int, list[float]] = field(default_factory=dict)
    predictions: dict[tuple[int, float], list[str]] = field(default_factory=dict)

    def row(self, i: int) -> tuple[float, float]:
        values = [self.cider[s][i] for s in sorted(self.cider)]
        return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fits_of(run_dir: Path, method: str, dataset: str) -> dict[int, str]:
    """The fit folder of each seed of ``method`` trained and tested on ``dataset``; one setting only."""
    from bench.errors import DataError
    from bench.records import read_records

    chosen: dict[int, str] = {}
    settings: set[str] = set()
    for record in read_records(run_dir).records:
        if record.method != method or record.train != dataset or record.eval != dataset or not record.fit_key:
            continue
        if record.role != "main":
            continue
        settings.add(json.dumps(record.config, sort_keys=True))
        chosen[record.seed] = record.fit_key
    if not chosen:
        raise DataError(f"{run_dir} has no fitted {method} cell trained and tested on {dataset}")
    if len(settings) > 1:
        raise DataError(f"{run_dir} holds {method} on {dataset} under {len(settings)} settings; walk one run folder per setting")
    return dict(sorted(chosen.items()))


def walk(run_dir: Path, method: str, dataset: str, steps: list[float], cache_dir: Path | None = None,
         log: Any = lambda message: None) -> Walk:
    from bench.errors import DataError
    from bench.fits import fit_problem, load_fit
    from bench.grid import encoder_config
    from bench.inputs import RunInputs
    from bench.plugins import METHODS, load_plugins
    from bench.scoring import score

    load_plugins()
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["run_config"]
        spec, options, root, cache = config["encoder"], config.get("encoder_options"), config.get("data_root"), config["cache_dir"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{run_dir / 'run.json'} is not a run's record of its settings ({type(exc).__name__}: {exc})") from None
    if not isinstance(spec, str) or not isinstance(cache, str) or not isinstance(root, (str, type(None))):
        raise DataError(f"{run_dir / 'run.json'}: run_config's encoder, cache_dir or data_root is not a string")
    fits = fits_of(run_dir, method, dataset)
    encoder = encoder_config(spec, options)  # the run's own reading of its settings (types, the shapes CLIP's)
    inputs = RunInputs(encoder, "cpu", Path(root) if root else None, Path(cache_dir or cache), log=log)
    test = inputs.eval_images(dataset)
    items = test.data.items
    if any(len(item.captions) < 2 for item in items):
        raise DataError(f"{dataset} test images need two references each (one is the input, the rest score it)")
    held = inputs.encoder.encode_texts([item.captions[0] for item in items], progress=None)
    references = {item.image_id: list(item.captions[1:]) for item in items}
    walked = {t: walk_inputs(np.asarray(held), np.asarray(test.embeddings), t) for t in steps}  # the same for every fit
    result = Walk(steps=list(steps))
    for seed, key in fits.items():
        folder = run_dir / "checkpoints" / key
        problem = fit_problem(folder)
        if problem:
            raise DataError(f"the fit of {method} seed {seed} ({folder}) cannot be used: {problem}")
        fitted, meta = load_fit(folder, METHODS.get(method))
        if meta.get("encoder_id") and meta["encoder_id"] != inputs.encoder.id:
            raise DataError(f"the fit of {method} seed {seed} was trained with encoder {meta['encoder_id']}, "
                            f"this run's cache gives {inputs.encoder.id}")
        result.cider[seed] = []
        for t in steps:
            predictions = fitted.caption(walked[t])
            result.predictions[(seed, t)] = list(predictions)
            scored = score(dict(zip((item.image_id for item in items), predictions)), references, spice=False)
            result.cider[seed].append(scored.metrics["cider"])
            log(f"{method} seed {seed} t={t:g}: CIDEr {result.cider[seed][-1]:.2f}")
    return result


def main(argv: list[str] | None = None) -> int:
    from bench.errors import BenchError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--method", default="nonoise")
    parser.add_argument("--dataset", default="shapes-coco")
    parser.add_argument("--steps", default="0,0.25,0.5,0.75,1")
    parser.add_argument("--cache-dir", default=None, help="the run's cache folder (default: the one run.json names)")
    args = parser.parse_args(argv)
    try:
        steps = [float(s) for s in args.steps.split(",")]
    except ValueError:
        print(f"error: --steps must be numbers separated by commas, got {args.steps!r}", file=sys.stderr)
        return 2
    if not steps or any(not 0.0 <= t <= 1.0 for t in steps):
        print(f"error: every step must lie in [0, 1], got {args.steps!r}", file=sys.stderr)
        return 2
    if not (Path(args.run_dir) / "run.json").is_file():
        print(f"error: {args.run_dir} is not a run folder (no run.json)", file=sys.stderr)
        return 2
    try:
        result = walk(Path(args.run_dir), args.method, args.dataset, steps,
                      Path(args.cache_dir).expanduser() if args.cache_dir else None,
                      log=lambda m: print(m, file=sys.stderr))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = sorted(result.cider)
    print(f"{args.method} on {args.dataset}, seeds {','.join(map(str, seeds))}: CIDEr against the references "
          "other than the input caption")
    print("| t | mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|---|" + "---|" * len(seeds))
    for i, t in enumerate(result.steps):
        mean, std = result.row(i)
        print(f"| {t:g} | {mean:.1f} ± {std:.2f} | " + " | ".join(f"{result.cider[s][i]:.1f}" for s in seeds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
