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

``--keep K,K,...`` asks a second question of the same fits: how much of each seed's reading of an
image comes from the image's components along directions the training captions hardly vary in.
Each image's embedding keeps only its components along the K principal directions of the
dataset's training caption embeddings (about their mean): ``unit(m + P_K (x - m))``, scored
against all its references, as the cell was (K = the embedding's dimension is the cell itself).

    python benchmarks/gap_walk.py RUN_DIR [--method nonoise] [--dataset shapes-coco] [--steps 0,0.25,0.5,0.75,1]
    python benchmarks/gap_walk.py RUN_DIR --keep 16,32,64,128
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


def principal_directions(texts: np.ndarray, k: int, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean of ``texts`` (N, D), an orthonormal basis (D, k) of their k directions of most
    variance about it (most first), and the variance along every direction (D, most first).
    Reads ``texts`` a chunk at a time: no copy of the whole corpus is made."""
    texts = np.asarray(texts)
    mean = texts.sum(axis=0, dtype=np.float64) / len(texts)
    scatter = np.zeros((texts.shape[1], texts.shape[1]))
    for start in range(0, len(texts), chunk):
        centred = texts[start:start + chunk].astype(np.float64) - mean
        scatter += centred.T @ centred
    values, vectors = np.linalg.eigh(scatter / len(texts))
    order = np.argsort(values)[::-1]
    return mean, vectors[:, order[:k]], np.maximum(values[order], 0.0)


def keep_inputs(images: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Unit rows of ``mean + P (x - mean)``, P the projection onto ``basis``'s columns: each image
    with its components along every other direction (about the captions' mean) removed."""
    from bench.tensors import unit_rows

    x = np.asarray(images, dtype=np.float64)
    if basis.shape[1] >= x.shape[1]:
        return unit_rows(x)  # every direction kept: the image itself
    return unit_rows(mean + ((x - mean) @ basis) @ basis.T)


def kept_shares(variances: np.ndarray, images: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> tuple[float, float]:
    """How much of the captions' variance (``variances``: along each principal direction, most
    first, as ``principal_directions`` gives them) and of the images' squared distance from the
    captions' mean lies along ``basis``'s directions (the first principal directions; fractions)."""
    images = np.asarray(images, dtype=np.float64) - mean
    return (float(np.sum(variances[:basis.shape[1]]) / np.sum(variances)),
            float(((images @ basis) ** 2).sum() / (images ** 2).sum()))


@dataclass
class Walk:
    """CIDEr of each fit (by seed) at each step ``t`` (or each number of kept directions), and the
    predictions behind them."""

    steps: list[float]
    cider: dict[int, list[float]] = field(default_factory=dict)
    predictions: dict[tuple[int, float], list[str]] = field(default_factory=dict)
    #: with ``--keep``: each step's share of the captions' variance and of the images' distance from their mean
    shares: list[tuple[float, float]] = field(default_factory=list)

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


def _run_inputs(run_dir: Path, cache_dir: Path | None, log: Any) -> Any:
    from bench.errors import DataError
    from bench.grid import encoder_config
    from bench.inputs import RunInputs

    try:
        config = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["run_config"]
        spec, options, root, cache = config["encoder"], config.get("encoder_options"), config.get("data_root"), config["cache_dir"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{run_dir / 'run.json'} is not a run's record of its settings ({type(exc).__name__}: {exc})") from None
    if not isinstance(spec, str) or not isinstance(cache, str) or not isinstance(root, (str, type(None))):
        raise DataError(f"{run_dir / 'run.json'}: run_config's encoder, cache_dir or data_root is not a string")
    encoder = encoder_config(spec, options)  # the run's own reading of its settings (types, the shapes CLIP's)
    return RunInputs(encoder, "cpu", Path(root) if root else None, Path(cache_dir or cache), log=log)


def _prepare(run_dir: Path, method: str, dataset: str, cache_dir: Path | None, log: Any) -> tuple[Path, Any, dict[int, str]]:
    """(the run folder, its inputs, the fit of each seed of ``method`` on ``dataset``): said before
    anything is encoded when there is no such fit."""
    from bench.plugins import load_plugins

    load_plugins()
    run_dir = Path(run_dir)
    inputs = _run_inputs(run_dir, cache_dir, log)
    return run_dir, inputs, fits_of(run_dir, method, dataset)


def _decode_each(run_dir: Path, method: str, fits: dict[int, str], inputs: Any, items: list[Any], steps: list[float],
                 decoded: dict[float, np.ndarray], references: dict[str, list[str]], log: Any) -> Walk:
    """Every seed's fit captions each step's inputs; CIDEr against ``references``."""
    from bench.errors import DataError
    from bench.fits import fit_problem, load_fit
    from bench.plugins import METHODS
    from bench.scoring import score

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
            predictions = fitted.caption(decoded[t])
            result.predictions[(seed, t)] = list(predictions)
            scored = score(dict(zip((item.image_id for item in items), predictions)), references, spice=False)
            result.cider[seed].append(scored.metrics["cider"])
            log(f"{method} seed {seed} at {t:g}: CIDEr {result.cider[seed][-1]:.2f}")
    return result


def walk(run_dir: Path, method: str, dataset: str, steps: list[float], cache_dir: Path | None = None,
         log: Any = lambda message: None) -> Walk:
    from bench.errors import DataError

    run_dir, inputs, fits = _prepare(run_dir, method, dataset, cache_dir, log)
    test = inputs.eval_images(dataset)
    items = test.data.items
    if any(len(item.captions) < 2 for item in items):
        raise DataError(f"{dataset} test images need two references each (one is the input, the rest score it)")
    held = inputs.encoder.encode_texts([item.captions[0] for item in items], progress=None)
    references = {item.image_id: list(item.captions[1:]) for item in items}
    walked = {t: walk_inputs(np.asarray(held), np.asarray(test.embeddings), t) for t in steps}  # the same for every fit
    return _decode_each(run_dir, method, fits, inputs, items, steps, walked, references, log)


def keep(run_dir: Path, method: str, dataset: str, kept: list[int], cache_dir: Path | None = None,
         log: Any = lambda message: None) -> Walk:
    """Each seed's CIDEr on the test images when each image keeps only its components along the
    ``k`` principal directions of ``dataset``'s training captions' embeddings, for each ``k``."""
    from bench.errors import DataError

    run_dir, inputs, fits = _prepare(run_dir, method, dataset, cache_dir, log)
    dim = inputs.encoder.dim
    if max(kept) > dim:  # said before anything is encoded
        raise DataError(f"--keep {max(kept)}: the embeddings have only {dim} directions")
    test = inputs.eval_images(dataset)
    items = test.data.items
    corpus, _ = inputs.corpus(dataset)
    images = np.asarray(test.embeddings)
    mean, basis, variances = principal_directions(corpus.embeddings, dim)
    inputs_at = {float(k): keep_inputs(images, mean, basis[:, :k]) for k in kept}
    references = {item.image_id: list(item.captions) for item in items}
    result = _decode_each(run_dir, method, fits, inputs, items, [float(k) for k in kept], inputs_at, references, log)
    result.shares = [kept_shares(variances, images, mean, basis[:, :k]) for k in kept]
    return result


def main(argv: list[str] | None = None) -> int:
    from bench.errors import BenchError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--method", default="nonoise")
    parser.add_argument("--dataset", default="shapes-coco")
    parser.add_argument("--steps", default=None, help="the walk's steps t (default 0,0.25,0.5,0.75,1)")
    parser.add_argument("--keep", default="", help="numbers of the training captions' principal directions each image "
                        "keeps, instead of the walk (e.g. 16,32,64,128)")
    parser.add_argument("--cache-dir", default=None, help="the run's cache folder (default: the one run.json names)")
    args = parser.parse_args(argv)
    kept: list[int] = []
    if args.keep:
        try:
            kept = [int(k) for k in args.keep.split(",")]
        except ValueError:
            print(f"error: --keep must be whole numbers separated by commas, got {args.keep!r}", file=sys.stderr)
            return 2
        if any(k < 1 for k in kept):
            print(f"error: --keep counts directions: each must be at least 1, got {args.keep!r}", file=sys.stderr)
            return 2
    if kept and args.steps is not None:
        print("error: --steps walks from captions to images and --keep keeps directions of the images: give one of them",
              file=sys.stderr)
        return 2
    steps_text = "0,0.25,0.5,0.75,1" if args.steps is None else args.steps
    try:
        steps = [float(s) for s in steps_text.split(",")]
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
        cache_dir = Path(args.cache_dir).expanduser() if args.cache_dir else None
        log = lambda m: print(m, file=sys.stderr)  # noqa: E731
        if kept:
            result = keep(Path(args.run_dir), args.method, args.dataset, kept, cache_dir, log=log)
        else:
            result = walk(Path(args.run_dir), args.method, args.dataset, steps, cache_dir, log=log)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    seeds = sorted(result.cider)
    if kept:
        print(f"{args.method} on {args.dataset}, seeds {','.join(map(str, seeds))}: CIDEr of the images kept to the "
              "training captions' first K principal directions")
        label = "K"
    else:
        print(f"{args.method} on {args.dataset}, seeds {','.join(map(str, seeds))}: CIDEr against the references "
              "other than the input caption")
        label = "t"
    shares = "captions' variance kept | images' squared distance kept | " if kept else ""
    print(f"| {label} | {shares}mean ± std | " + " | ".join(f"seed {s}" for s in seeds) + " |")
    print("|---|---|" + "---|" * (len(seeds) + (2 if kept else 0)))
    for i, t in enumerate(result.steps):
        mean, std = result.row(i)
        kept_cells = f"{100 * result.shares[i][0]:.2f}% | {100 * result.shares[i][1]:.1f}% | " if kept else ""
        print(f"| {t:g} | {kept_cells}{mean:.1f} ± {std:.2f} | " + " | ".join(f"{result.cider[s][i]:.1f}" for s in seeds) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
