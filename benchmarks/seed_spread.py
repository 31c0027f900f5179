"""How much of a setting's seed spread the test set's size alone would give, and how much is the seeds'.

For every setting of a run (method, split and config, every seed recorded with per-image scores on
the same test images), the per-image metric forms a seeds x images table. Two readings of it:

- **floor**: the standard deviation the seed means would show if the seeds differed only image by
  image, independently (the seed x image interaction's variance over the number of images). A
  larger test set shrinks it, and so do seeds whose captions agree image by image.
- **systematic**: what the observed spread adds to the floor (sqrt(observed^2 - floor^2)): seeds
  that are better or worse on images *in general*. The split-half correlation says the same
  another way: the seeds' means on one random half of the images against the other half
  (averaged over 200 splits); near 0 when the spread is the floor's, near 1 when it is systematic
  (not separate evidence: it is about systematic^2 / (systematic^2 + 2 floor^2)).
- **p**: the chance that seeds differing only image by image would spread as much as observed,
  the F test of the two-way analysis of variance (observed^2 / floor^2 on k - 1 and
  (k - 1)(n - 1) degrees of freedom for k seeds and n images).

A spread over three seeds has two degrees of freedom: a setting whose spread is all floor reads
anywhere from well under it to well over it (a floor of 2.2 reads under 1.5 about a third of the
time and over 3 about one time in six), so read three-seed rows with that in mind.

``--objects`` adds, for the shapes world (whose annotation lists each image's objects), what each
seed's captions get right, parsed with the world's own caption parser: the number of objects, the
shapes named and the colour-shape pairs, with each one's correlation with the seeds' metric.

    python benchmarks/seed_spread.py RUN_DIR [--metric cider] [--objects]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from bench.stats import seed_spread


def object_checks(prediction: str, objects: list[list[str]]) -> tuple[bool, int, int, int]:
    """(the caption names as many objects as the image has, objects named, of them with a shape
    the image has, of them with a colour-shape pair the image has). ``objects``: [size, colour, shape]."""
    from bench.shapes.captions import parse

    mentions, _ = parse(prediction)
    shapes = {o[2] for o in objects}
    pairs = {(o[1], o[2]) for o in objects}
    return (len(mentions) == len(objects), len(mentions), sum(m.shape in shapes for m in mentions),
            sum((m.colour, m.shape) in pairs for m in mentions))


def _objects_of(sample_image: Any) -> dict[str, Any]:
    """The shapes world's objects of every image of the dataset a sample's image belongs to."""
    from bench.errors import DataError

    if not isinstance(sample_image, str) or not sample_image:
        raise DataError("--objects: the samples name no image file, so no annotation beside it")
    folder = Path(sample_image).parent.parent.parent  # WORLD/DATASET/images/SPLIT/FILE
    found = sorted(folder.glob("dataset_*.json"))
    if not found:
        raise DataError(f"--objects: no dataset_*.json beside {folder / 'images'}: only the shapes world lists its images' objects")
    try:
        data = json.loads(found[0].read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"--objects: {found[0]} is unreadable ({type(exc).__name__}: {exc})") from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, dict) and isinstance(i.get("filename"), str) for i in images):
        raise DataError(f"--objects: {found[0]} is not an annotation of images (an object whose images each name a filename)")
    objects: dict[str, Any] = {}
    for image in images:
        listed = image.get("objects")
        if listed is not None and not (isinstance(listed, list) and all(
                isinstance(o, list) and len(o) == 3 and all(isinstance(w, str) for w in o) for o in listed)):
            raise DataError(f"--objects: {found[0]}: the objects of {image['filename']} are not [size, colour, shape] triples")
        objects[Path(image["filename"]).stem] = listed
    if not any(objects.values()):
        raise DataError(f"--objects: {found[0]} lists no objects: only the shapes world's annotation does")
    return objects


class Setting(NamedTuple):
    method: str
    split: str
    config: str  # its config as sorted JSON


def settings_of(run_dir: Path, metric: str) -> dict[Setting, dict[int, list[dict[str, Any]]]]:
    """Each setting and, by seed, its cell's samples (those with ``metric`` per image)."""
    from bench.records import RecordStore, read_records

    store = RecordStore(run_dir)
    found: dict[Setting, dict[int, list[dict[str, Any]]]] = {}
    for record in read_records(run_dir).records:
        if metric not in record.metrics or store.samples_problem(record.cell_id):
            continue
        samples = store.samples(record.cell_id)
        if not samples or any(not isinstance(s.get(metric), (int, float)) for s in samples):
            continue
        setting = Setting(record.method, record.split, json.dumps(record.config, sort_keys=True))
        found.setdefault(setting, {})[record.seed] = samples
    return found


def _differences(setting: Setting, settings: list[Setting]) -> str:
    """The settings of ``setting``'s config that not every setting of the same method and split shares."""
    from bench.records import flatten_config

    flat = [flatten_config(json.loads(other.config)) for other in settings if other[:2] == setting[:2]]
    own = flatten_config(json.loads(setting.config))
    keys = sorted({k for f in flat for k in f if len({json.dumps(g.get(k)) for g in flat}) > 1})
    return ", ".join(f"{k}={own.get(k)}" for k in keys) or "its only setting"


def main(argv: list[str] | None = None) -> int:
    from bench.errors import BenchError

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--metric", default="cider")
    parser.add_argument("--objects", action="store_true", help="what each seed's captions name right (the shapes world only)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    if not (run_dir / "records.jsonl").is_file():
        print(f"error: {run_dir} is not a run folder (no records.jsonl)", file=sys.stderr)
        return 2
    try:
        settings = {k: v for k, v in settings_of(run_dir, args.metric).items() if len(v) >= 2}
        if not settings:
            raise BenchError(f"{run_dir} has no setting with per-image {args.metric} for two seeds or more")
        labels = {setting: i + 1 for i, setting in enumerate(sorted(settings))}
        rows: list[str] = []
        notes: list[str] = []
        checks: dict[str, list[tuple[int, float, tuple[float, float, float]]]] = {}
        object_problems: list[str] = []
        for label in sorted(settings):  # everything is computed before anything is printed
            by_seed = settings[label]
            seeds = sorted(by_seed)
            method, split = label.method, label.split
            ids = sorted(s["image_id"] for s in by_seed[seeds[0]])
            if any(sorted(s["image_id"] for s in by_seed[seed]) != ids for seed in seeds):
                notes.append(f"setting {labels[label]} ({method} on {split}): its seeds were scored on different images; left out")
                continue
            if len(ids) < 4:
                notes.append(f"setting {labels[label]} ({method} on {split}): {len(ids)} images, too few for a spread; left out")
                continue
            table = np.array([[{s["image_id"]: s[args.metric] for s in by_seed[seed]}[i] for i in ids] for seed in seeds])
            spread = seed_spread(table)
            half = "" if np.isnan(spread.split_half) else f"{spread.split_half:.2f}"
            rows.append(f"| {labels[label]} | {method} | {split} | {len(seeds)} | {len(ids)} | {table.mean():.2f} | "
                        f"{spread.observed:.2f} | {spread.floor:.2f} | {spread.systematic:.2f} | {half} | {'–' if np.isnan(spread.p_value) else f'{spread.p_value:.2g}'} |")
            if args.objects:
                try:
                    objects = _objects_of(by_seed[seeds[0]][0].get("image"))
                except BenchError as exc:
                    object_problems.append(str(exc))
                    notes.append(f"setting {labels[label]} ({method} on {split}): no objects ({exc})")
                    continue
                per_seed = []
                for seed, mean in zip(seeds, table.mean(axis=1)):
                    right = [object_checks(s["prediction"], objects.get(s["image_id"]) or []) for s in by_seed[seed]]
                    named = max(1, sum(r[1] for r in right))
                    per_seed.append((seed, float(mean), (100 * sum(r[0] for r in right) / len(right),
                                                         100 * sum(r[2] for r in right) / named, 100 * sum(r[3] for r in right) / named)))
                checks[label] = per_seed
        if not rows:
            raise BenchError(f"no setting of {run_dir} gives a spread: {notes[0]}")
        if args.objects and not checks:
            raise BenchError(object_problems[0])
        print(f"Seed spread of {args.metric} in {run_dir}: observed (the seed means' standard deviation), the floor "
              "independent per-image differences give, the systematic rest, the split-half correlation, and p: the "
              "chance that seeds differing only image by image spread as much (two-way analysis of variance, F test)")
        print("| setting | method | split | seeds | images | mean | observed | floor | systematic | split-half | p |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(rows))
        if args.objects:
            print("\nWhat each seed's captions name right (%): the object count; of the objects named, those with a shape "
                  "the image has, and with a colour-shape pair it has (mean ± std over seeds; r: the correlation with the "
                  f"seeds' {args.metric})")
            print("| setting | count | shape | colour-shape |")
            print("|---|---|---|---|")
        for label, per_seed in checks.items():
            means = np.array([r[1] for r in per_seed])
            cells = []
            for j in range(3):
                values = np.array([r[2][j] for r in per_seed])
                r = np.corrcoef(means, values)[0, 1] if len(per_seed) >= 3 and values.std() > 0 and means.std() > 0 else float("nan")
                cells.append(f"{values.mean():.1f} ± {values.std(ddof=1):.1f}" + ("" if np.isnan(r) else f" (r {r:+.2f})"))
            print(f"| {labels[label]} | " + " | ".join(cells) + " |")
        if notes:
            print("\n" + "\n".join(notes))
        print("\nSettings (what sets them apart):")
        for label, i in labels.items():
            print(f"{i}: {label.method} on {label.split}, {_differences(label, list(labels))}")
    except (BenchError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
