"""From a run folder to the rows a report shows: records grouped over seeds, per-image evidence
from ``samples/``, bootstrap intervals and paired tests.

Nothing here imports a method: a report is a function of the run folder alone (``records.jsonl``,
``samples/``, ``run.json``), so a run can be rendered on another machine, or years later.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError
from bench.records import (
    SAMPLES_DIR,
    Record,
    flatten_config,
    is_samples_list,
    load_records,
    show_value,
    unused_settings,
    varying_keys,
)
from bench.splits import KINDS
from bench.stats import (
    BLEU_STATS,
    INTERVAL_METRICS,
    PerImage,
    SeedSpread,
    bootstrap_interval,
    paired_bootstrap_pvalue,
    resample_counts,
    seed_spread,
)

#: Means closer than this (half the last printed digit of a 4-decimal record) are a tie.
BEST_TOLERANCE = 5e-5
#: Columns of the method tables, in the order papers print them.
TABLE_METRICS = ("bleu1", "bleu4", "meteor", "rouge_l", "cider", "spice", "clip_s", "refclip_s")
#: Metrics whose seed spread a row with several seeds splits into the test set's floor and the rest
#: (``bench.stats.seed_spread``; a mean of per-image scores, as CIDEr is).
SPREAD_METRICS = ("cider",)
METRIC_NAMES = {"bleu1": "BLEU-1", "bleu2": "BLEU-2", "bleu3": "BLEU-3", "bleu4": "BLEU-4", "meteor": "METEOR",
                "rouge_l": "ROUGE-L", "cider": "CIDEr", "spice": "SPICE", "clip_s": "CLIP-S", "refclip_s": "RefCLIP-S"}


@dataclass
class Interval:
    """A bootstrap interval and the paired test against the best row of its table."""

    lo: float
    hi: float
    p_value: float | None = None  # None for the best row, or when the best row has no evidence


@dataclass
class Row:
    """One method variant on one split, over all the seeds it ran with."""

    method: str
    split: str
    kind: str
    noise_variance: float | None
    settings: tuple[tuple[str, Any], ...]  # the method's varying config keys and their values here
    inputs: Any = None  # the records' InputIdentity (encoder, data fingerprints): never pooled across
    records: list[Record] = field(default_factory=list)
    label: str = ""
    intervals: dict[str, Interval] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # metric -> why this row has no interval for it
    spreads: dict[str, SeedSpread] = field(default_factory=dict)  # metric -> its seed spread's floor and rest (2+ seeds)

    @property
    def role(self) -> str:
        roles = {r.role for r in self.records}
        return "main" if "main" in roles else sorted(roles)[0]

    @property
    def seeds(self) -> list[int]:
        return sorted(r.seed for r in self.records)

    def values(self, metric: str, seeds: Collection[int] | None = None) -> list[float]:
        """The metric of each seed (of ``seeds`` only, when given) that has a finite number for it
        (a record may hold null, or NaN); :meth:`lacking` names the others."""
        return [float(r.metrics[metric]) for r in sorted(self.records, key=lambda r: r.seed)
                if (seeds is None or r.seed in seeds) and finite_number(r.metrics.get(metric))]

    def lacking(self, metric: str) -> list[int]:
        """The seeds whose record has no finite number for ``metric``, when some others do."""
        if not any(finite_number(r.metrics.get(metric)) for r in self.records):
            return []
        return sorted(r.seed for r in self.records if not finite_number(r.metrics.get(metric)))

    def mean(self, metric: str, seeds: Collection[int] | None = None) -> float | None:
        values = self.values(metric, seeds)
        return float(np.mean(values)) if values else None

    def std(self, metric: str) -> float | None:
        values = self.values(metric)
        return float(np.std(values, ddof=1)) if len(values) > 1 else None


def finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def shared_seeds(rows: list[Row]) -> list[int] | None:
    """The seeds every row ran with, when the rows ran with different seeds (the embedded
    default's sweep and ablation: seed 0, beside a main cell's seeds 0-2); None when they ran with
    the same seeds, or share none. Rows compared side by side are compared on these: a mean of
    three seeds beside single seeds differs by the seeds alone."""
    sets = [set(r.seeds) for r in rows]
    shared = set.intersection(*sets) if sets else set()
    return sorted(shared) if shared and any(s != shared for s in sets) else None


#: Said after a run, and under its report's tests, when every row ran with one seed.
ONE_SEED_NOTE = ("a difference between rows may be that seed's luck (on the embedded default one method's in-domain CIDEr "
                 "has a seed standard deviation of 3 to 10 points), which intervals over the test images cannot show; "
                 "--seeds 0,1,2 measures it")


def seeds_label(seeds: Collection[int]) -> str:
    """``seed 0`` / ``seeds 0, 1``."""
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(str(s) for s in sorted(seeds))}"


@dataclass
class RunData:
    """Everything a report needs, read from one run folder."""

    run_dir: Path
    records: list[Record]
    skipped: int
    problems: list[str]
    run_info: dict[str, Any]
    rows: list[Row]
    samples: dict[str, list[dict[str, Any]]]
    resamples: int
    seed: int

    def rows_for(self, split: str, role: str | None = "main") -> list[Row]:
        return [r for r in self.rows if r.split == split and (role is None or r.role == role)]

    def splits(self, kind: str | None = None) -> list[str]:
        seen = dict.fromkeys(r.split for r in self.rows if kind is None or r.kind == kind)
        return list(seen)

    def kinds(self) -> list[str]:
        present = {r.kind for r in self.rows}
        return [k for k in KINDS if k in present]


def load_run(run_dir: str | Path, resamples: int = 1000, seed: int = 0,
             log: Callable[[str], None] = lambda m: None) -> RunData:
    """Read a run folder (or a bare ``records.jsonl``) and compute every row's intervals."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise DataError(f"{run_dir} does not exist")
    result = load_records(run_dir, "run", log)
    folder = run_dir if run_dir.is_dir() else run_dir.parent
    info_path = folder / "run.json"
    run_info: dict[str, Any] = {}
    if info_path.is_file():
        try:
            run_info = json.loads(info_path.read_text(encoding="utf-8"))
        except ValueError:
            log(f"warning: {info_path} is not valid JSON; the report has no command, encoder card or wall time")
        if not isinstance(run_info, dict):
            run_info = {}
    samples = {}
    for record in result.records:
        path = folder / SAMPLES_DIR / f"{record.cell_id}.json"
        if path.is_file():
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:  # not JSON, or not UTF-8
                rows = None
            if is_samples_list(rows):
                samples[record.cell_id] = rows
            else:
                log(f"warning: {path} is not a list of per-image samples; its cell gets no interval")
    data = RunData(folder, result.records, result.skipped, result.problems, run_info, group_rows(result.records),
                   samples, resamples, seed)
    add_intervals(data)
    return data


def group_rows(records: list[Record]) -> list[Row]:
    """One row per (split, method, σ², varying settings), seeds pooled; in the records' order."""
    keys = varying_keys(records)
    rows: dict[tuple, Row] = {}
    for record in records:
        flat = flatten_config(record.config)
        settings = tuple((k, flat.get(k)) for k in keys[record.method])
        key = (record.split, record.method, record.noise_variance, json.dumps(settings, default=str), record.inputs)
        if key not in rows:
            rows[key] = Row(record.method, record.split, record.kind, record.noise_variance, settings, record.inputs)
        rows[key].records.append(record)
    out = list(rows.values())
    for split in dict.fromkeys(r.split for r in out):
        label_rows([r for r in out if r.split == split])
    return out


def label_rows(rows: list[Row]) -> None:
    """A row is named by its method, plus σ² and settings only where the method has several
    rows in the same table (so that a plain table reads like a paper's)."""
    for row in rows:
        siblings = [r for r in rows if r.method == row.method and r.role == row.role]
        parts = []
        if len({r.noise_variance for r in siblings}) > 1:
            parts.append(f"σ²={show_noise(row.noise_variance)}")
        unused = row_unused(row)  # top_k beside the hard prompt off
        for key, value in row.settings:
            if key not in unused and len({json.dumps(v, default=str) for r in siblings for k, v in r.settings if k == key}) > 1:
                parts.append(f"{short_key(key, row.method)}={show_value(value)}")
        parts += inputs_parts(row.inputs, [r.inputs for r in siblings])
        row.label = row.method + (f" ({', '.join(parts)})" if parts else "")


def row_unused(row: Row) -> set[str]:
    """The settings the row's cells left unused (an off switch's: ``records.unused_settings``)."""
    return unused_settings(row.records[0]) if row.records else set()


def inputs_parts(mine: Any, among: list[Any]) -> list[str]:
    """What tells the inputs ``mine`` (an InputIdentity) apart from the others ``among``: "encoder
    X" when their encoders differ, "data a/b" when their data fingerprints do; [] when nothing does."""
    among = [i for i in among if i is not None]
    if mine is None:
        return []
    parts = []
    if len({i.encoder for i in among}) > 1:
        parts.append(f"encoder {mine.encoder}")
    if len({(i.train, i.eval) for i in among}) > 1:
        parts.append(f"data {mine.train[:8]}/{mine.eval[:8]}")
    return parts


def failure_notes(data: RunData) -> list[str]:
    """The cells of the folder that failed and have no record (a later success clears a failure):
    the tables lack them, and a reader must be told (``failures.jsonl``, written by the run)."""
    from bench.records import FAILURES_FILE

    path = Path(data.run_dir) / FAILURES_FILE
    if not path.is_file():
        return []
    failed: dict[str, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("cell_id"), str):
            failed[entry["cell_id"]] = entry
    recorded = {r.cell_id for r in data.records}
    missing = [e for cell_id, e in failed.items() if cell_id not in recorded]
    if not missing:
        return []
    names = [str(e.get("cell", e["cell_id"])) for e in missing]
    last = str(missing[0].get("error", "")).strip().splitlines()
    return [f"{len(missing)} cell(s) of this folder failed and have no result, so the tables lack them: "
            f"{'; '.join(names[:5])}{' ...' if len(names) > 5 else ''} (first error: {last[-1][:200] if last else 'unknown'}; "
            f"all in {FAILURES_FILE})"]


def reader_notes(records: list[Record]) -> list[str]:
    """What a reader must be told before trusting the tables: cells computed with other inputs
    than their neighbours (another encoder, other data under the same name), and each cell's
    own warnings (empty captions)."""
    notes = []
    for split in dict.fromkeys(r.split for r in records):
        mine = [r for r in records if r.split == split]
        encoders = sorted({r.encoder for r in mine})
        data = {(r.train_fingerprint, r.eval_fingerprint) for r in mine}
        if len(encoders) > 1:
            notes.append(f"{split} mixes cells computed with {len(encoders)} encoders ({', '.join(encoders)}); "
                         "their rows are kept apart and are not comparable")
        if len(data) > 1:
            notes.append(f"{split} mixes cells computed on {len(data)} different versions of its data; "
                         "their rows are kept apart and are not comparable")
    # the threads a decoder was trained with (kept in its fit info; a reused fit may come from
    # another run), else the cell's own
    threads = sorted({t for r in records if (t := _fit_threads(r))})
    if len(threads) > 1:  # e.g. a local run (2 threads) resumed on Ray (1 thread per task)
        notes.append(f"cells ran with different torch thread counts ({', '.join(map(str, threads))}): a decoder trained "
                     "with another count sums floats in another order and ends slightly elsewhere, so cells of one "
                     "method may differ by a few tenths of CIDEr for that reason alone")
    devices = sorted({d for r in records for d in _devices(r)} - {""})
    if len(devices) > 1:  # e.g. a run begun on a GPU machine and finished on a CPU one
        notes.append(f"cells ran on different devices ({', '.join(devices)}): embeddings and decoders computed on another "
                     "device (a GPU's TF32 convolutions, another summation order) end slightly elsewhere, so cells of one "
                     "method may differ for that reason alone")
    notes += [f"{r.describe()}: {w}" for r in records for w in r.warnings]
    return notes


def _devices(record: Record) -> set[str]:
    """The device kinds a cell used: its own (embeddings, decoding) and its decoder's training's,
    which a reused fit may have done elsewhere."""
    trained = (record.fit_info or {}).get("device")
    return {str(d).split(":")[0] for d in (record.device, trained) if isinstance(d, str) and d}


def _fit_threads(record: Record) -> int:
    trained = (record.fit_info or {}).get("threads")
    return trained if isinstance(trained, int) and not isinstance(trained, bool) else (record.threads or 0)


def show_noise(noise: float | None) -> str:
    return "–" if noise is None else f"{noise:g}"


def short_key(key: str, method: str) -> str:
    """``syntic.optimise`` reads as ``optimise`` in syntic's own table."""
    return key[len(method) + 1:] if key.startswith(method + ".") else key


def evidence(row: Row, metric: str, samples: dict[str, list[dict[str, Any]]], image_ids: list[str],
             seeds: Collection[int] | None = None) -> PerImage:
    """The row's per-image evidence for ``metric``, images in ``image_ids`` order; of its records
    of ``seeds`` only, when given (a test between rows that ran with different seeds)."""
    lacking = row.lacking(metric)
    if lacking:  # the interval must cover the seeds the shown mean covers
        raise DataError(f"its {seeds_label(lacking)} (of {len(row.records)}) {'have' if len(lacking) > 1 else 'has'} "
                        f"no {METRIC_NAMES.get(metric, metric)} value in its record")
    per_seed = []
    for record in sorted((r for r in row.records if seeds is None or r.seed in seeds), key=lambda r: r.seed):
        rows = samples.get(record.cell_id)
        if rows is None:
            raise DataError(f"no samples for cell {record.cell_id}")
        by_id = {str(s["image_id"]): s for s in rows}
        if len(by_id) != len(rows):
            raise DataError("its samples name an image more than once")
        if record.n_images and len(rows) != record.n_images:  # a cut file would bootstrap over the images left
            raise DataError(f"its samples cover {len(rows)} images and its record {record.n_images}")
        if set(by_id) != set(image_ids):
            raise DataError("its samples cover other test images than most cells of its split")
        if metric.startswith("bleu"):
            if any("bleu_stats" not in by_id[i] for i in image_ids):
                raise DataError("its samples predate per-image BLEU statistics (re-run it to get BLEU intervals)")
            per_seed.append([by_id[i]["bleu_stats"] for i in image_ids])
        else:
            if any(metric not in by_id[i] for i in image_ids):
                raise DataError(f"its samples have no per-image {metric}")
            per_seed.append([by_id[i][metric] for i in image_ids])
    try:
        array = np.asarray(per_seed, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"its per-image {metric} values are not all numbers") from None
    if metric.startswith("bleu"):
        if array.ndim != 3 or array.shape[-1] != len(BLEU_STATS):
            raise DataError("its per-image BLEU statistics have the wrong shape")
        if not np.isfinite(array).all() or (array < 0).any():
            raise DataError("its per-image BLEU statistics are not all finite counts")
        return PerImage(metric, stats=array)
    if array.ndim != 2 or not np.isfinite(array).all():
        raise DataError(f"its per-image {metric} values are not all finite numbers")
    return PerImage(metric, values=array)


def best_row(rows: list[Row], metric: str) -> Row | None:
    """The one row with the top mean, or None: with fewer than two rows there is nothing to be
    best among, a tie at the top names no single best, and a top of 0 is no result to test against.
    Rows that ran with different seeds are compared on the seeds they all ran with (``shared_seeds``):
    a row is not best for having been run, or having kept, fewer seeds."""
    shared = shared_seeds(rows)
    means = {id(r): r.mean(metric, shared) for r in rows}
    scored = [r for r in rows if means[id(r)] is not None]
    if len(scored) < 2:
        return None
    top = max(means[id(r)] for r in scored)
    leaders = [r for r in scored if np.isclose(means[id(r)], top, rtol=0, atol=BEST_TOLERANCE)]
    return leaders[0] if len(leaders) == 1 and top > BEST_TOLERANCE else None


def add_intervals(data: RunData) -> None:
    """Bootstrap intervals for every row; paired tests against the best row of the same table.

    The rows of a table (a split's main rows; a split's rows of one ablated method) share one set
    of resamples, drawn from ``data.seed``, so their tests are paired and the report is
    reproducible. A row with several seeds has its seeds resampled too: its interval and its test
    hold training's seed-to-seed variation, not the test images' alone; its seed spread is split
    into what the test set alone gives and the rest (``row.spreads``).
    """
    for split in data.splits():
        rows = [r for r in data.rows if r.split == split]
        ids = _image_ids(rows, data.samples)
        if not ids:
            for row in rows:
                row.missing = {m: "the run folder has no per-image samples" for m in INTERVAL_METRICS if row.mean(m) is not None}
            continue
        counts = resample_counts(len(ids), data.resamples, data.seed)
        ev = _Evidence(data.samples, ids)
        for table in _tables(rows):
            # rows that ran with different seeds are tested on the seeds they all ran with, as the
            # best row is chosen (a mean of three seeds beside one differs by the seeds alone)
            shared = shared_seeds(table)
            for metric in INTERVAL_METRICS:
                best = best_row(table, metric)
                best_ev = ev.get(best, metric, shared) if best else None
                for row in table:
                    if row.mean(metric) is None:  # a metric the row's records lack (CLIP-S of an older run)
                        continue
                    mine = ev.get(row, metric)
                    if mine is None:
                        continue
                    if metric in SPREAD_METRICS and mine.values is not None and mine.n_seeds > 1 and mine.n_images >= 4:
                        row.spreads.setdefault(metric, seed_spread(mine.values, seed=data.seed))
                    lo, hi = bootstrap_interval(mine, counts, seed=data.seed)  # images and seeds
                    p = None
                    if row is not best and best_ev is not None:
                        tested = ev.get(row, metric, shared) if shared else mine
                        p = paired_bootstrap_pvalue(best_ev, tested, counts, seed=data.seed) if tested is not None else None
                    # a row in two tables (a main row that is also an ablation point) keeps its main-table test
                    row.intervals.setdefault(metric, Interval(lo, hi, p))


class _Evidence:
    """Per-image evidence of a split's rows, read once per (row, metric); a row without usable
    samples gets None and the reason in ``row.missing``."""

    def __init__(self, samples: dict[str, list[dict[str, Any]]], image_ids: list[str]) -> None:
        self.samples, self.image_ids = samples, image_ids
        self._memo: dict[tuple[int, str, tuple[int, ...] | None], PerImage | None] = {}

    def get(self, row: Row, metric: str, seeds: Collection[int] | None = None) -> PerImage | None:
        key = (id(row), metric, tuple(seeds) if seeds is not None else None)
        if key not in self._memo:
            try:
                self._memo[key] = evidence(row, metric, self.samples, self.image_ids, seeds)
            except DataError as exc:
                self._memo[key] = None
                row.missing[metric] = str(exc)
        return self._memo[key]


def input_groups(rows: list[Row]) -> list[list[Row]]:
    """A split's rows by what they were computed from (encoder, data fingerprints), in order:
    rows of two groups (records merged from runs with another encoder or other data) are never
    compared, so each group gets its own tables, best rows and tests."""
    groups: dict[Any, list[Row]] = {}
    for row in rows:
        groups.setdefault(row.inputs, []).append(row)
    return list(groups.values())


def inputs_title(group: list[Row], groups: list[list[Row]]) -> str:
    """What tells ``group`` apart from the split's other groups ("encoder X", "data a/b"); empty
    when there is one group."""
    return ", ".join(inputs_parts(group[0].inputs, [g[0].inputs for g in groups]))


def _tables(rows: list[Row]) -> list[list[Row]]:
    """The tables a split's rows appear in, per input group: the main rows first, then each
    method's variants."""
    tables: list[list[Row]] = []
    for group in input_groups(rows):
        main = [r for r in group if r.role == "main"]
        mine_tables = [main] if main else []
        for method in dict.fromkeys(r.method for r in group):
            mine = [r for r in group if r.method == method]
            if len(mine) > 1:
                mine_tables.append(mine)
        covered = {id(r) for t in mine_tables for r in t}
        tables += mine_tables + [[r] for r in group if id(r) not in covered]
    return tables


def _image_ids(rows: list[Row], samples: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The test images of a split: the image set most of its cells' samples cover, sorted (a cell
    scored on other images gets no interval, and a note says so)."""
    sets = Counter(frozenset(str(s["image_id"]) for s in samples[r.cell_id])
                   for row in rows for r in row.records if r.cell_id in samples)
    return sorted(sets.most_common(1)[0][0]) if sets else []
