"""Run records: one JSON object per cell in ``records.jsonl``, plus per-image samples.

Schema (DESIGN.md §7), one line per completed cell::

    {"cell_id", "method", "split", "train", "eval", "kind", "seed", "config",
     "noise_variance" (or null), "metrics": {bleu1..bleu4, meteor, rouge_l, cider, spice?, clipscore?},
     "n_images", "encoder", "timings": {stage: seconds}, "versions": {package: version},
     "git_commit", "date", "extra": {fit_key, fit_reused, fit_info, device, ...}, "schema_version"}

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
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.errors import DataError
from bench.io import atomic_path, write_json_atomic
from bench.splits import KINDS

SCHEMA_VERSION = 1
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
        return cls(**{k: v for k, v in data.items() if k in names})


def cell_id(method: str, split: str, seed: int, noise_variance: float | None, config: dict[str, Any]) -> str:
    """A stable id for a cell: the same inputs give the same id in every run."""
    key = json.dumps([method, split, seed, noise_variance, config], sort_keys=True, default=str)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


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

    def add(self, record: Record, samples: list[dict[str, Any]] | None = None) -> None:
        """Store a completed cell: its samples first, then the record that marks it complete."""
        if samples is not None:
            write_json_atomic(self.run_dir / SAMPLES_DIR / f"{record.cell_id}.json", samples, indent=None)
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
