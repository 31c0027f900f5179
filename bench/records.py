"""Run records: one JSON object per cell in ``records.jsonl``, plus per-image samples.

The schema (version 2), one line per completed cell::

    {"cell_id", "method", "split", "train", "eval", "kind", "seed", "config",
     "noise_variance" (or null), "metrics": {bleu1..bleu4, meteor, rouge_l, cider, spice?},
     "n_images", "encoder", "timings": {stage: seconds}, "versions": {package: version},
     "git_commit", "date", "role", "fit_key", "fit_reused", "fit_info", "device",
     "unavailable": {metric: reason}, "note", "extra": {...}, "schema_version"}

Every key code depends on is a field of :class:`Record`; ``extra`` is free for a method's or a
user's notes. Version-1 files, which kept ``role``, ``fit_key``, ``fit_reused``, ``fit_info``,
``device``, ``unavailable`` and ``note`` inside ``extra``, are read into the same fields.
Per-image samples (``samples/<cell_id>.json``) are lists of :class:`Sample`.

Every write replaces the whole file through a temporary file and one rename, so an
interruption leaves either the old file or the new one. Readers still tolerate a truncated
last line (a file written by another tool, or copied mid-write) and say how many were skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import json
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.errors import DataError
from bench.io import atomic_path, write_json_atomic
from bench.splits import KINDS

SCHEMA_VERSION = 2
#: Keys that version 1 kept in ``extra`` and version 2 makes fields.
V1_EXTRA_FIELDS = ("role", "fit_key", "fit_reused", "fit_info", "device", "unavailable", "note")
RECORDS_FILE = "records.jsonl"
SAMPLES_DIR = "samples"
TRACKED_PACKAGES = ("textcap-bench", "torch", "open_clip_torch", "transformers", "diffusers", "pycocoevalcap", "numpy")


@dataclass(frozen=True)
class Record:
    """The result of one cell (method x split x noise x seed)."""

    method: str
    split: str
    train: str
    eval: str
    kind: str
    seed: int
    config: dict[str, Any]
    metrics: dict[str, float]
    noise_variance: float | None = None
    n_images: int = 0
    encoder: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str = ""
    date: str = ""
    cell_id: str = ""
    #: where the cell belongs in a report: "main", "noise-sweep" or "ablation"
    role: str = "main"
    #: the key of the fit the cell captioned with (``checkpoints/<fit_key>/``), whether that fit
    #: was reused from an earlier cell or run (None: not known, a record of another tool), and
    #: what training measured
    fit_key: str = ""
    fit_reused: bool | None = None
    fit_info: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    #: metrics that could not be computed, with the reason (SPICE without its jars)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: what a report must say about the data (FlickrStyle10K's seeded split)
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"record kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.cell_id:
            object.__setattr__(self, "cell_id", cell_id(self.method, self.split, self.seed, self.noise_variance, self.config))
        if not self.date:
            object.__setattr__(self, "date", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Record:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"method", "split", "train", "eval", "kind", "seed", "config", "metrics"} - set(data)
        if missing:
            raise ValueError(f"record lacks {', '.join(sorted(missing))}")
        data = dict(data)
        if int(data.get("schema_version", 1)) < 2 and isinstance(data.get("extra"), dict):
            extra = dict(data["extra"])
            data.update({k: extra.pop(k) for k in V1_EXTRA_FIELDS if k in extra})
            data["extra"] = extra
        return cls(**{k: v for k, v in data.items() if k in names})

    def describe(self) -> str:
        return describe_cell(self.method, self.split, self.seed, self.noise_variance, self.cell_id)


@dataclass(frozen=True)
class Sample:
    """One test image of a cell: its prediction, references, per-image scores and BLEU statistics.

    ``scores`` are per-image metric values (0-100) keyed by metric; ``bleu_stats`` are BLEU's
    sufficient statistics (``bench.stats.BLEU_STATS``), from which corpus BLEU is recomputed.
    Written flat, as ``{"image_id", "image", "prediction", "references", <metric>..., "bleu_stats"}``.
    """

    image_id: str
    image: str
    prediction: str
    references: tuple[str, ...]
    scores: dict[str, float] = field(default_factory=dict)
    bleu_stats: tuple[float, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"image_id": self.image_id, "image": self.image, "prediction": self.prediction,
                "references": list(self.references), **self.scores, "bleu_stats": list(self.bleu_stats)}


def cell_id(method: str, split: str, seed: int, noise_variance: float | None, config: dict[str, Any]) -> str:
    """A stable id for a cell: the same inputs give the same id in every run."""
    key = json.dumps([method, split, seed, noise_variance, config], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def describe_cell(method: str, split: str, seed: int, noise_variance: float | None = None, cell: str = "") -> str:
    """A cell as people read it: ``capdec σ²=0.016 on shapes-coco (seed 0, cell 1a2b...)``."""
    noise = f" σ²={noise_variance:g}" if noise_variance is not None else ""
    return f"{method}{noise} on {split} (seed {seed}{f', cell {cell}' if cell else ''})"


def library_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str]:
    out = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the project checkout (``+dirty`` when it has changes), or ``""``."""
    cwd = cwd or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return ""


@dataclass
class ReadResult:
    records: list[Record]
    skipped: int = 0
    problems: list[str] = field(default_factory=list)


def read_records(path: str | Path) -> ReadResult:
    """Read ``records.jsonl`` (or a run folder holding one); bad lines are skipped and counted."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.is_file():
        raise DataError(f"no records: {path} does not exist")
    result = ReadResult(records=[])
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            result.records.append(Record.from_dict(json.loads(line)))
        except (json.JSONDecodeError, ValueError, TypeError) as exc:
            result.skipped += 1
            result.problems.append(f"line {lineno}: {exc}")
    return result


def load_records(path: str | Path, role: str, log: Callable[[str], None]) -> ReadResult:
    """``read_records`` for a command: no complete record is an error naming ``role`` (the run,
    the baseline), and skipped lines are a warning through ``log``."""
    result = read_records(path)
    if not result.records:
        raise DataError(f"{role} {path} has no complete records" + (f" ({result.skipped} unreadable lines)" if result.skipped else ""))
    if result.skipped:
        log(f"warning: skipped {result.skipped} unreadable line(s) of the {role} {path} ({result.problems[0]}); "
            f"using its {len(result.records)} complete records")
    return result


class RecordStore:
    """The records of one run folder: append a cell, ask whether a cell is complete."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RECORDS_FILE
        self._records: dict[str, Record] = {}
        if self.path.is_file():
            for record in read_records(self.path).records:
                self._records[record.cell_id] = record

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, cell: str) -> bool:
        return cell in self._records

    def records(self) -> list[Record]:
        return list(self._records.values())

    def add(self, record: Record, samples: list[Sample] | None = None) -> None:
        """Store a completed cell: its samples first, then the record that marks it complete."""
        if samples is not None:
            write_json_atomic(self.run_dir / SAMPLES_DIR / f"{record.cell_id}.json", [s.to_dict() for s in samples], indent=None)
        self._records[record.cell_id] = record
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r.to_dict(), sort_keys=True, default=str) + "\n"
                                   for r in self._records.values()), encoding="utf-8")

    def samples(self, cell: str) -> list[dict[str, Any]]:
        path = self.run_dir / SAMPLES_DIR / f"{cell}.json"
        if not path.is_file():
            raise DataError(f"no samples for cell {cell}: {path} does not exist")
        return json.loads(path.read_text(encoding="utf-8"))


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"decoder": {"width": 128}}`` -> ``{"decoder.width": 128}``."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def varying_keys(records: list[Record]) -> dict[str, list[str]]:
    """For each method, the flattened config keys whose values differ between its records
    (the switches of an ablation, a swept τ), in config order; the noise variance, which has
    its own column and figure, is left out."""
    flat = {r.cell_id: flatten_config(r.config) for r in records}
    out: dict[str, list[str]] = {}
    for method in dict.fromkeys(r.method for r in records):
        mine = [r for r in records if r.method == method]
        keys = dict.fromkeys(k for r in mine for k in flat[r.cell_id])
        out[method] = [k for k in keys if k != "noise_variance"
                       and len({json.dumps(flat[r.cell_id].get(k), sort_keys=True) for r in mine}) > 1]
    return out


def varying_settings(records: list[Record]) -> dict[str, str]:
    """For each record (by cell id), its values of its method's varying keys, as ``key=value``
    (booleans as on/off)."""
    keys = varying_keys(records)
    out: dict[str, str] = {}
    for r in records:
        flat = flatten_config(r.config)
        out[r.cell_id] = " ".join(f"{k}={show_value(flat.get(k))}" for k in keys[r.method])
    return out


def show_value(value: Any) -> str:
    """A setting's value as tables show it: on/off, compact floats, the rest as text."""
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
