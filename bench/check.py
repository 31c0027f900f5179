"""``bench check``: compare a run with baseline records and flag metrics that fell.

Cells are matched by their id (method, split, seed, σ², the whole method config, the encoder
and the data's fingerprints). A cell whose config, encoder or data changed has a new id; it is
still compared with the baseline cell of the same method, split, seed and σ² when exactly one
such cell exists on each side, and what changed is named, because a changed default or a
changed input is exactly what can move a number without anyone noticing.

Tolerances are absolute, on the 0-100 scale: a metric regresses when it falls by more than its
tolerance. Rises never fail a check.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.errors import ConfigError, DataError
from bench.records import Record, flatten_config, load_records, show_value

#: Default tolerances (absolute, 0-100 scale), per metric. CIDEr moves the most between
#: otherwise identical runs (it is a sum of TF-IDF-weighted n-gram similarities), so it gets the
#: widest band.
DEFAULT_TOLERANCES: dict[str, float] = {
    "bleu1": 1.0, "bleu2": 0.75, "bleu3": 0.5, "bleu4": 0.5, "meteor": 0.5, "rouge_l": 0.5, "cider": 1.0, "spice": 0.5,
    "clip_s": 0.5, "refclip_s": 0.5,
}


@dataclass
class Drop:
    cell: str
    metric: str
    baseline: float
    current: float | None  # None: the run's record has no number for the metric (missing, or null)
    tolerance: float

    @property
    def delta(self) -> float:
        return math.nan if self.current is None else self.current - self.baseline

    def describe(self) -> str:
        head = f"{self.cell}: {self.metric} {self.baseline:.2f} -> "
        if self.current is None:
            return head + "no value (the run's record has no number for it)"
        if not math.isfinite(self.current):
            return head + f"{self.current} (not a finite number)"
        digits = 2  # enough digits that a fall beyond the tolerance does not print as within it
        while digits < 6 and abs(round(self.delta, digits)) <= self.tolerance:
            digits += 1
        return head + f"{self.current:.{digits}f} ({self.delta:+.{digits}f}, tolerance {self.tolerance:g})"


@dataclass
class CheckResult:
    compared: int = 0
    metrics_compared: int = 0
    drops: list[Drop] = field(default_factory=list)
    only_run: list[str] = field(default_factory=list)
    only_baseline: list[str] = field(default_factory=list)
    config_changes: list[str] = field(default_factory=list)
    missing_metrics: list[str] = field(default_factory=list)
    skipped_lines: dict[str, int] = field(default_factory=dict)
    #: whether baseline cells missing from the run are allowed (a run of part of the grid)
    allow_missing: bool = False

    @property
    def ok(self) -> bool:
        return not self.drops and (self.allow_missing or not self.only_baseline)


def parse_tolerances(text: str | None) -> dict[str, float]:
    """``cider=1.0,bleu4=0.5`` as a dict; an unknown metric or a value that is not a finite
    number >= 0 is a one-line error."""
    from bench.config import coerce
    from bench.scoring import ALL_METRICS

    out: dict[str, float] = {}
    if text is None:
        return out
    for part in coerce(text, tuple[str, ...], "--tolerance"):  # a list as every setting's: no empty item
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"--tolerance expects metric=value pairs, got {part!r}")
        if name in out:
            raise ConfigError(f"--tolerance gives {name} twice; give it once")
        if name not in ALL_METRICS:
            raise ConfigError(f"--tolerance: unknown metric {name!r}; known: {', '.join(ALL_METRICS)}")
        out[name] = coerce(value.strip(), float, f"--tolerance: {name}")  # plain digits only: "1_0" and "١" refused
        if out[name] < 0:
            raise ConfigError(f"--tolerance: {name} must be >= 0, got {value}")
    return out


def check(run: str | Path, baseline: str | Path, tolerances: dict[str, float] | None = None,
          log: Callable[[str], None] = lambda m: None, allow_missing: bool = False) -> CheckResult:
    """Compare every cell present in both; ``tolerances`` override the defaults per metric. A
    baseline cell the run lacks fails the check unless ``allow_missing``; a baseline line that
    is not a record (but for a cut-off last line) is bad input: the gate must not shrink unseen."""
    tol = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    current = load_records(run, "run", log).records
    read = load_records(baseline, "baseline", log)
    if read.skipped - read.truncated_last:
        raise DataError(f"the baseline {baseline} has {read.skipped - read.truncated_last} line(s) that are not records this "
                        f"version can read ({read.problems[0]}): the cells they held would go unchecked; repair or re-bless it")
    if read.repeated:
        log(f"warning: {read.repeated} line(s) of the baseline {baseline} repeat a cell an earlier line holds; the last line "
            "of each cell is used, as in a run folder")
    base = read.records
    pairs, only_run, only_base, changes = match(current, base)
    if not pairs:
        raise DataError(f"no cell of {run} is in the baseline {baseline} ({len(current)} vs {len(base)} cells; "
                        "are they runs of the same grid?)")
    result = CheckResult(compared=len(pairs), only_run=[r.describe() for r in only_run],
                         only_baseline=[r.describe() for r in only_base], config_changes=changes, allow_missing=allow_missing)
    from bench.scoring import CLIP_METRICS

    for now, then in pairs:
        # CLIP-S of two encoders are two scales; a run without CLIP-S has simply lost it
        other_scale = bool(then.eval_encoder and now.eval_encoder) and then.eval_encoder != now.eval_encoder
        if other_scale and any(m in then.metrics for m in CLIP_METRICS):
            result.missing_metrics.append(f"{now.describe()}: CLIP-S and RefCLIP-S not checked: the baseline's come from "
                                          f"evaluation encoder {then.eval_encoder or '(none recorded)'}, the run's from "
                                          f"{now.eval_encoder or '(none)'}")
        for metric, old in then.metrics.items():
            if metric not in tol or (other_scale and metric in CLIP_METRICS):
                continue
            old, new = _number(old), _number(now.metrics.get(metric))
            if old is None or not math.isfinite(old):
                result.missing_metrics.append(f"{then.describe()}: the baseline's {metric} is not a finite number; not checked")
                continue
            if new is None and metric in (now.unavailable or {}):  # the scorer said why (SPICE offline)
                result.missing_metrics.append(f"{now.describe()}: {metric} (baseline {old:.2f}) is unavailable in the run "
                                              f"({now.unavailable[metric]}); not checked")
                continue
            result.metrics_compared += 1
            # A metric that vanished, became null (how strict JSON stores NaN) or is not finite has
            # regressed: a gate must not pass because the number it guards is gone.
            if new is None or not math.isfinite(new) or old - new > tol[metric] + 1e-9:
                result.drops.append(Drop(now.describe(), metric, old, new, tol[metric]))
    if not result.metrics_compared:  # a gate that compared nothing has not passed
        raise DataError(f"the {len(pairs)} cell(s) of {run} found in the baseline {baseline} share no metric value this check "
                        f"can compare (it guards {', '.join(tol)}; the baseline's values must be finite numbers)")
    return result


def _number(value: object) -> float | None:
    """A metric value as a float; None when a record holds something else (null, a string)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def match(current: list[Record], base: list[Record]) -> tuple[list[tuple[Record, Record]], list[Record], list[Record], list[str]]:
    """Pairs (run record, baseline record), the unmatched of each side, and config changes."""
    by_id = {r.cell_id: r for r in base}
    pairs = [(r, by_id[r.cell_id]) for r in current if r.cell_id in by_id]
    paired = {r.cell_id for r, _ in pairs}
    rest_run = [r for r in current if r.cell_id not in paired]
    rest_base = [r for r in base if r.cell_id not in paired]

    def loose(r: Record) -> tuple:
        return (r.method, r.split, r.seed, r.noise_variance)

    changes = []
    for r in list(rest_run):
        mine = [x for x in rest_run if loose(x) == loose(r)]
        theirs = [x for x in rest_base if loose(x) == loose(r)]
        if len(mine) == 1 and len(theirs) == 1:
            pairs.append((r, theirs[0]))
            rest_run.remove(r)
            rest_base.remove(theirs[0])
            changes.append(f"{r.describe()}: {what_changed(theirs[0], r)}")
    return pairs, rest_run, rest_base, changes


def what_changed(old: Record, new: Record) -> str:
    """Why two records of the same method, split, seed and σ² are different cells: their config,
    their encoder, or the content of their data."""
    parts = []
    if flatten_config(old.config) != flatten_config(new.config):
        parts.append(f"config changed ({config_diff(old.config, new.config)})")
    if old.encoder != new.encoder:
        parts.append(f"encoder changed ({old.encoder or '?'} -> {new.encoder or '?'})")
    if old.train_fingerprint != new.train_fingerprint:
        parts.append(f"the {new.train} training captions changed")
    if old.eval_fingerprint != new.eval_fingerprint:
        parts.append(f"the {new.eval} test split changed")
    return "; ".join(parts) or "recorded under another id"


def config_diff(old: dict, new: dict, limit: int = 4) -> str:
    a, b = flatten_config(old), flatten_config(new)
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    parts = [f"{k} {_show(a.get(k, '<absent>'))} -> {_show(b.get(k, '<absent>'))}" for k in keys[:limit]]
    return ", ".join(parts) + (f", and {len(keys) - limit} more" if len(keys) > limit else "")


def _show(value: object) -> str:
    return value if value == "<absent>" else show_value(value)  # type: ignore[return-value]
