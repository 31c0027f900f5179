"""Run records: one JSON object per cell in ``records.jsonl``, plus per-image samples.

The schema (version 3), one line per completed cell::

    {"cell_id", "method", "split", "train", "eval", "kind", "seed", "config",
     "noise_variance" (or null),
     "metrics": {bleu1..bleu4, meteor, rouge_l, cider, spice?, clip_s?, refclip_s?}, "eval_encoder",
     "n_images", "encoder", "train_fingerprint", "eval_fingerprint",
     "timings": {stage: seconds}, "versions": {package: version},
     "git_commit", "date", "role", "fit_key", "fit_reused", "fit_info", "device", "threads",
     "unavailable": {metric: reason}, "note", "warnings": [...], "extra": {...}, "schema_version"}

A cell's identity (``cell_id``) covers everything its result depends on: the method, its whole
config, the split, the seed, the noise variance, the encoder id (spec and weights hash) and the
content fingerprints of the training captions and of the evaluation split (image ids, file
names, references). Every key code depends on is a field of :class:`Record`; ``extra`` is free for a method's or a
user's notes. Version-1 files, which kept ``role``, ``fit_key``, ``fit_reused``, ``fit_info``,
``device``, ``unavailable`` and ``note`` inside ``extra``, are read into the same fields;
version-2 files have no ``eval_encoder`` (and no CLIP-S).
Per-image samples (``samples/<cell_id>.json``) are lists of :class:`Sample`.

``records.jsonl`` is append-only: a completed cell adds one line, under a lock, so concurrent
writers (two ``bench run`` on one folder, the workers of a cluster executor) lose nothing, and
no write ever rewrites lines it did not add. A line a reader cannot use (truncated, malformed,
or from a newer schema) is skipped, counted and reported, and stays in the file. A cell written
twice (two runs computing it at once) is read once: the last line wins.
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
from bench.io import append_line, append_line_locked, file_lock, has_control_character, write_json_atomic
from bench.splits import KINDS

SCHEMA_VERSION = 3  # 3: eval_encoder (CLIP-S); 2: typed fields that version 1 kept in extra
#: Keys that version 1 kept in ``extra`` and version 2 makes fields.
V1_EXTRA_FIELDS = ("role", "fit_key", "fit_reused", "fit_info", "device", "unavailable", "note")
RECORDS_FILE = "records.jsonl"
FAILURES_FILE = "failures.jsonl"
LOCK_FILE = ".records.lock"
SAMPLES_DIR = "samples"
#: the folders a run folder holds, all written by this tool
RUN_FOLDERS = (SAMPLES_DIR, "checkpoints", "decoders", "figures")
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
    #: content fingerprints of the training captions and of the evaluation split (``InputIdentity``)
    train_fingerprint: str = ""
    eval_fingerprint: str = ""
    #: where the cell belongs in a report: "main", "noise-sweep" or "ablation"
    role: str = "main"
    #: the key of the fit the cell captioned with (``checkpoints/<fit_key>/``), whether that fit
    #: was reused from an earlier cell or run (None: not known, a record of another tool), and
    #: what training measured
    fit_key: str = ""
    fit_reused: bool | None = None
    fit_info: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    #: torch's intra-op threads when the cell ran: results are bit-identical for a device and a
    #: thread count; another count sums floats in another order (0: not recorded)
    threads: int = 0
    #: metrics that could not be computed, with the reason (SPICE without its jars)
    unavailable: dict[str, str] = field(default_factory=dict)
    #: what a report must say about the data (FlickrStyle10K's seeded split)
    note: str = ""
    #: what a reader of the numbers must know about this cell (empty captions, say)
    warnings: list[str] = field(default_factory=list)
    #: the encoder that computed CLIP-S and RefCLIP-S (its id; empty: not computed)
    eval_encoder: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"record kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if not self.cell_id:
            object.__setattr__(self, "cell_id", cell_id(self.method, self.split, self.seed, self.noise_variance, self.config,
                                                        self.inputs))
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
        _check_types(data)
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version > SCHEMA_VERSION:
            # a newer writer's fields may change what a field means: skipped and counted, not guessed at
            raise ValueError(f"record schema_version {version!r} is not one this version reads (1-{SCHEMA_VERSION})")
        if int(data.get("schema_version", 1)) < 2 and isinstance(data.get("extra"), dict):
            extra = dict(data["extra"])
            data.update({k: extra.pop(k) for k in V1_EXTRA_FIELDS if k in extra})
            data["extra"] = extra
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def inputs(self) -> InputIdentity:
        return InputIdentity(self.encoder, self.train_fingerprint, self.eval_fingerprint)

    def describe(self) -> str:
        return describe_cell(self.method, self.split, self.seed, self.noise_variance, self.cell_id)


#: Every record field by the type code reading it relies on (a record of another type is refused
#: whole, with the first field named, never half-read and then a traceback in a report).
_STRING_FIELDS = ("method", "split", "train", "eval", "kind", "encoder", "git_commit", "date", "cell_id",
                  "train_fingerprint", "eval_fingerprint", "role", "fit_key", "device", "note", "eval_encoder")
_INT_FIELDS = ("seed", "n_images", "threads")
_OBJECT_FIELDS = ("config", "fit_info", "extra")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_types(data: dict[str, Any]) -> None:
    """Every field has the type code relies on (a ValueError names the first that does not)."""
    for name in _STRING_FIELDS:
        if name in data and not isinstance(data[name], str):
            raise ValueError(f"record field {name} is not a string")
    for name in _INT_FIELDS:
        if name in data and not (isinstance(data[name], int) and not isinstance(data[name], bool)):
            raise ValueError(f"record field {name} is not an integer")
    for name in _OBJECT_FIELDS:
        if name in data and not isinstance(data[name], dict):
            raise ValueError(f"record field {name} is not an object")
    metrics = data["metrics"]
    if not isinstance(metrics, dict) or not all(isinstance(k, str) and (v is None or _is_number(v)) for k, v in metrics.items()):
        raise ValueError("record field metrics is not an object of numbers")
    timings = data.get("timings", {})
    if not isinstance(timings, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in timings.items()):
        raise ValueError("record field timings is not an object of numbers")
    for name in ("versions", "unavailable"):
        value = data.get(name, {})
        if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError(f"record field {name} is not an object of strings")
    noise = data.get("noise_variance")
    if noise is not None and not _is_number(noise):
        raise ValueError("record field noise_variance is not a number")
    if data.get("fit_reused") is not None and not isinstance(data["fit_reused"], bool):
        raise ValueError("record field fit_reused is not true, false or null")
    if "warnings" in data and not (isinstance(data["warnings"], list) and all(isinstance(w, str) for w in data["warnings"])):
        raise ValueError("record field warnings is not a list of strings")


@dataclass(frozen=True)
class InputIdentity:
    """What a cell's result depends on besides its method, config, split, seed and noise: the
    encoder id (spec and weights hash) and the content fingerprints of the training captions
    and of the evaluation split."""

    encoder: str = ""
    train: str = ""
    eval: str = ""

    @property
    def known(self) -> bool:
        return bool(self.encoder and self.train and self.eval)


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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        named = ("image_id", "image", "prediction", "references", "bleu_stats")
        return cls(str(data["image_id"]), str(data.get("image", "")), str(data["prediction"]), tuple(data.get("references", ())),
                   {k: v for k, v in data.items() if k not in named}, tuple(data.get("bleu_stats", ())))


def cell_id(method: str, split: str, seed: int, noise_variance: float | None, config: dict[str, Any],
            inputs: InputIdentity | None = None, resources: str = "") -> str:
    """A stable id for a cell: the same inputs give the same id in every run, and a change of
    any of them (the encoder's weights, one caption, a GPT-2 folder's weights) gives another."""
    parts: list[Any] = [method, split, seed, noise_variance, config]
    if inputs is not None and inputs != InputIdentity():
        parts.append([inputs.encoder, inputs.train, inputs.eval])
    if resources:
        parts.append({"resources": resources})
    key = json.dumps(parts, sort_keys=True, default=str)
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
    #: the last line was cut off (a writer stopped mid-line) and is among the skipped
    truncated_last: bool = False
    #: lines that repeat a cell an earlier line holds (the last one is read)
    repeated: int = 0


def read_records(path: str | Path) -> ReadResult:
    """Read ``records.jsonl`` (or a run folder holding one). Lines that are not a valid record
    are skipped and counted, with the reason; a cell that appears twice is read once (the last
    line wins). An unreadable file (a folder, no permission) is a one-line error."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.is_file():
        raise DataError(f"no records: {path} does not exist" if not path.exists() else f"no records: {path} is not a file")
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    result = ReadResult(records=[])
    by_id: dict[str, Record] = {}
    lines = text.splitlines()
    last = max((i for i, line in enumerate(lines, 1) if line.strip()), default=0)
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            record = Record.from_dict(data)
        except (ValueError, TypeError) as exc:
            result.skipped += 1
            result.problems.append(f"line {lineno}: {exc}")
            result.truncated_last = result.truncated_last or (lineno == last and not text.endswith("\n"))
            continue
        result.repeated += by_id.pop(record.cell_id, None) is not None
        by_id[record.cell_id] = record
    result.records = list(by_id.values())
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


def check_run_folder(folder: Path) -> None:
    """A run folder whose entries are what a run will write there: its files are files and its
    folders folders (a ``records.jsonl`` that is a directory would fail every cell after the
    work), and its path is one line (status lines name it). A one-line error otherwise."""
    from bench.errors import BenchError

    if has_control_character(str(folder)):
        raise BenchError(f"run folder --out {str(folder)!r} holds a control character (a newline?); choose another --out")
    for name in (RECORDS_FILE, FAILURES_FILE, LOCK_FILE, "run.json", "report.md", "report.html"):
        if (folder / name).exists() and not (folder / name).is_file():
            raise BenchError(f"run folder --out {folder}: {name} there is not a file; choose another --out")
    for name in RUN_FOLDERS:
        if (folder / name).exists() and not (folder / name).is_dir():
            raise BenchError(f"run folder --out {folder}: {name} there is not a folder; choose another --out")


def input_conflict(old: Record, new: Record) -> str:
    """Why ``old`` and ``new`` cannot share a run folder ("" when they can): another encoder,
    other captions or test data under one dataset name, or CLIP-S from another evaluation encoder
    (or only one of them with CLIP-S)."""
    if old.encoder != new.encoder:
        return f"results computed with encoder {old.encoder or '(none)'}, not {new.encoder or '(none)'}"
    if old.train == new.train and old.train_fingerprint != new.train_fingerprint:
        return f"results trained on other {new.train} captions than this run's"
    if old.eval == new.eval and old.eval_fingerprint != new.eval_fingerprint:
        return f"results scored on another {new.eval} test split than this run's"
    if old.eval_encoder != new.eval_encoder:
        return (f"results with CLIP-S from evaluation encoder {old.eval_encoder}" if old.eval_encoder
                else "results without CLIP-S") + (f", not {new.eval_encoder}" if new.eval_encoder else ", and this run has none")
    return ""


class RecordStore:
    """The records of one run folder: append a cell, ask whether a cell is complete.

    ``records()`` reads the file again, so it includes what other writers added meanwhile;
    ``problems`` lists the lines of the file this version cannot use (they are kept in it).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RECORDS_FILE
        self.lock = self.run_dir / LOCK_FILE
        self._records: dict[str, Record] = {}
        self.problems: list[str] = []
        self._seen_size = 0  # the file's size when this store last read it
        self._read()

    def _read(self) -> None:
        if self.path.is_file():
            size = self.path.stat().st_size
            result = read_records(self.path)
            self._records = {r.cell_id: r for r in result.records}
            self.problems = result.problems
            self._seen_size = size

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, cell: str) -> bool:
        return cell in self._records

    def records(self) -> list[Record]:
        self._read()
        return list(self._records.values())

    def add(self, record: Record, samples: list[Sample] | None = None, same_inputs: bool = False) -> None:
        """Store a completed cell under the lock: its samples first (atomically), then its
        record; the record marks the cell complete, and a cell stored twice keeps the samples of
        the record that wins (the last).

        With ``same_inputs`` (a run's cells), the folder must hold one set of inputs: when another
        writer added records since this store last read them, they are read again under the lock,
        and a record computed with another encoder, other data or another CLIP-S setting than
        ``record`` is a :class:`~bench.errors.BenchError` (two runs racing into one ``--out``
        with different inputs both passed the check made before their first cell)."""
        with file_lock(self.lock):
            if same_inputs:
                self._check_same_inputs(record)
            if samples is not None:
                write_json_atomic(self.run_dir / SAMPLES_DIR / f"{record.cell_id}.json", [s.to_dict() for s in samples],
                                  indent=None)
            append_line_locked(self.path, json.dumps(record.to_dict(), default=str))  # config in its own order
            self._records[record.cell_id] = record
            self._seen_size = self.path.stat().st_size

    def _check_same_inputs(self, record: Record) -> None:
        from bench.errors import InputConflict

        if self.path.is_file() and self.path.stat().st_size != self._seen_size:
            self._read()  # another writer appended: what it added counts too
        for old in self._records.values():
            problem = input_conflict(old, record)
            if problem and old.cell_id != record.cell_id:
                raise InputConflict(f"{self.run_dir} now holds {problem} (another run wrote into it meanwhile); "
                                 "one run folder holds one set of inputs: pass another --out")

    def add_failure(self, entry: dict[str, Any]) -> None:
        """Append a failed cell to ``failures.jsonl`` (under the same lock)."""
        append_line(self.run_dir / FAILURES_FILE, json.dumps(entry, default=str), self.lock)

    def samples_problem(self, cell: str) -> str | None:
        """None when the recorded ``cell`` has a samples file a report can use: a JSON list with
        one object per test image of its record, each naming its image once; otherwise what is
        wrong ("missing", or why it cannot be used)."""
        path = self.run_dir / SAMPLES_DIR / f"{cell}.json"
        if not path.is_file():
            return "missing"
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # not JSON, not UTF-8, unreadable
            return "unreadable"
        if not is_samples_list(rows):
            return "not a list of per-image samples"
        expected = self._records[cell].n_images if cell in self._records else 0
        if expected and len(rows) != expected:
            return f"{len(rows)} of its record's {expected} images"
        if len({str(r["image_id"]) for r in rows}) != len(rows):
            return "an image named twice"
        return None

    def samples(self, cell: str) -> list[dict[str, Any]]:
        path = self.run_dir / SAMPLES_DIR / f"{cell}.json"
        if not path.is_file():
            raise DataError(f"no samples for cell {cell}: {path} does not exist")
        return json.loads(path.read_text(encoding="utf-8"))


def is_samples_list(rows: Any) -> bool:
    """Whether a samples file's content has the shape a samples file has: a list of per-image rows,
    each naming its image."""
    return isinstance(rows, list) and all(isinstance(r, dict) and "image_id" in r for r in rows)


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
    (the switches of an ablation, a swept τ), in config order, counting only the records that
    use the key (``unused_settings``); the noise variance, which has its own column and figure,
    is left out."""
    flat = {r.cell_id: flatten_config(r.config) for r in records}
    out: dict[str, list[str]] = {}
    for method in dict.fromkeys(r.method for r in records):
        mine = [r for r in records if r.method == method]
        keys = dict.fromkeys(k for r in mine for k in flat[r.cell_id])
        unused = {r.cell_id: unused_settings(r) for r in mine}  # a value an off switch left unused does not vary
        out[method] = [k for k in keys if k != "noise_variance"
                       and len({json.dumps(flat[r.cell_id].get(k), sort_keys=True) for r in mine
                                if k not in unused[r.cell_id]}) > 1]
    return out


def varying_settings(records: list[Record]) -> dict[str, str]:
    """For each record (by cell id), its values of its method's varying keys, as ``key=value``
    (booleans as on/off), less those an off switch of its own leaves unused."""
    keys = varying_keys(records)
    out: dict[str, str] = {}
    for r in records:
        flat = flatten_config(r.config)
        unused = unused_settings(r)
        out[r.cell_id] = " ".join(f"{k}={show_value(flat.get(k))}" for k in keys[r.method] if k not in unused)
    return out


def unused_settings(record: Record) -> set[str]:
    """The flattened config keys the record's cell left unused because a switch of its own was off
    (``extra["unused_settings"]``, written by the runner): viecap's ``top_k`` beside ``hard_prompt``
    off. A report does not name a row by them."""
    value = record.extra.get("unused_settings") if isinstance(record.extra, dict) else None
    return {k for k in value if isinstance(k, str)} if isinstance(value, list) else set()


def show_value(value: Any) -> str:
    """A setting's value as tables show it: on/off, compact floats, the rest as text."""
    return ("on" if value else "off") if isinstance(value, bool) else f"{value:g}" if isinstance(value, float) else str(value)
