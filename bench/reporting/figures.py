"""The noise-variance curve: CIDEr and BLEU-4 against σ², one line per (method, split).

σ² spans orders of magnitude and includes 0 (no noise), which a log axis cannot show, so 0 is
drawn one step to the left of the smallest positive σ² (the median spacing of the swept values
on the log scale), labelled "0", and separated from the rest of the axis by a break mark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.records import show_value
from bench.reporting.collect import METRIC_NAMES, Row, RunData, inputs_parts, row_unused, seeds_label, shared_seeds, short_key
from bench.stats import seed_interval

CURVE_METRICS = ("cider", "bleu4")
#: What each marked σ² is.
MARKER_NOTES = {"gap variance": "the per-dimension mean square of image − caption on the test pairs",
                "CapDec's rule": "the squared mean ℓ∞ distance between captions of one image"}


@dataclass
class Point:
    noise: float
    mean: dict[str, float]
    band: dict[str, tuple[float, float]] = field(default_factory=dict)  # 95% interval over seeds
    seeds: int = 1
    #: a point that ran with more seeds than its curve's others: its mean and interval over all of
    #: them (the line itself goes through the seeds every point shares)
    all_mean: dict[str, float] = field(default_factory=dict)
    all_band: dict[str, tuple[float, float]] = field(default_factory=dict)
    all_seeds: int = 0


@dataclass
class Curve:
    method: str
    split: str
    settings: str  # the method's varying settings on this curve, "key=value ..."
    points: list[Point]
    label: str = ""
    #: the seeds every point averages when the points ran with different seeds (an embedded
    #: default's sweep: seed 0 at every σ², three seeds at the main cell's); None: each point's own
    common_seeds: list[int] | None = None
    inputs: Any = None  # the rows' InputIdentity (encoder, data fingerprints)


def noise_curves(data: RunData) -> list[Curve]:
    """Every (method, split, settings) whose rows ran at two or more noise variances."""
    groups: dict[tuple, list[Row]] = {}
    for row in data.rows:
        if row.noise_variance is not None:  # rows of other encoders or data are never one curve
            groups.setdefault((row.method, row.split, repr(row.settings), row.inputs), []).append(row)
    curves = []
    for (method, split, _, inputs), rows in groups.items():
        if len({r.noise_variance for r in rows}) < 2:
            continue
        # Like for like: a line through one seed's values at most σ² and three seeds' mean at one
        # would show a step that is only the seeds. Where the points ran with different seeds, the
        # line goes through the seeds they all share; a point's other seeds are drawn beside it.
        common = shared_seeds(rows)
        points = []
        for row in sorted(rows, key=lambda r: r.noise_variance):
            extra = common is not None and len(row.records) > len(common)
            point = Point(row.noise_variance, {}, seeds=len(common) if common else len(row.records))
            for metric in CURVE_METRICS:
                values = row.values(metric, common)
                if not values:
                    continue
                mean, lo, hi = seed_interval(values)
                point.mean[metric] = mean
                if len(values) > 1:
                    point.band[metric] = (lo, hi)
                if extra:
                    point.all_seeds = len(row.records)
                    point.all_mean[metric], *band = seed_interval(row.values(metric))
                    point.all_band[metric] = tuple(band)
            points.append(point)
        unused = row_unused(rows[0])
        settings = " ".join(f"{short_key(k, method)}={show_value(v)}" for k, v in rows[0].settings if k not in unused)
        curves.append(Curve(method, split, settings, points, common_seeds=common, inputs=inputs))
    methods = {c.method for c in curves}
    for c in curves:
        # name what tells curves apart: the split, the method when several, the settings when a
        # method has several curves on one split, the encoder or data when those differ
        siblings = [o for o in curves if o.method == c.method and o.split == c.split]
        parts = [c.split if len(methods) == 1 else f"{c.method} · {c.split}"]
        if len({o.settings for o in siblings}) > 1 and c.settings:
            parts.append(c.settings)
        c.label = " · ".join(parts + inputs_parts(c.inputs, [o.inputs for o in siblings]))
    return curves


def gap_markers(data: RunData) -> dict[str, float]:
    """σ² values worth seeing on the curve: the encoder's own gap variance and the value CapDec's
    rule gives, from the encoder card the run recorded (the shapes CLIP's model card)."""
    card = ((data.run_info.get("encoder") or {}).get("model_card") or {}).get("gap") or {}
    out = {}
    if isinstance(card.get("diff_var_per_dim"), (int, float)):
        out["gap variance"] = float(card["diff_var_per_dim"])
    if isinstance(card.get("sigma2_capdec_captions"), (int, float)):
        out["CapDec's rule"] = float(card["sigma2_capdec_captions"])
    return out


def axis_positions(variances: list[float]) -> tuple[dict[float, float], float | None]:
    """Where each σ² sits on the log-scaled x axis; 0 gets a stand-in position. Returns the
    positions and the stand-in (None when 0 is not among the values)."""
    positive = sorted(v for v in set(variances) if v > 0)
    if not positive:
        return {0.0: 1.0}, 1.0
    logs = [math.log10(v) for v in positive]
    steps = [b - a for a, b in zip(logs, logs[1:])]
    step = sorted(steps)[len(steps) // 2] if steps else 1.0
    zero = 10 ** (logs[0] - max(step, 0.5))
    positions = {v: v for v in positive}
    if 0.0 in variances:
        positions[0.0] = zero
        return positions, zero
    return positions, None


def plot_noise_curves(curves: list[Curve], out_dir: Path, markers: dict[str, float] | None = None) -> list[Path]:
    """Draw the curves, with a dashed vertical line at each of ``markers`` (name -> σ²); save
    ``noise_curve.png`` and ``noise_curve.svg`` under ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variances = sorted({p.noise for c in curves for p in c.points})
    positions, zero = axis_positions(variances)
    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(10, 3.8), constrained_layout=True)
    for ax, metric in zip(axes, CURVE_METRICS):
        for curve in curves:
            pts = [p for p in curve.points if metric in p.mean]
            xs = [positions[p.noise] for p in pts]
            line, = ax.plot(xs, [p.mean[metric] for p in pts], marker="o", label=curve.label)
            banded = [p for p in pts if metric in p.band]
            if banded:
                ax.fill_between([positions[p.noise] for p in banded], [p.band[metric][0] for p in banded],
                                [p.band[metric][1] for p in banded], color=line.get_color(), alpha=0.2, linewidth=0)
            more = [p for p in pts if metric in p.all_mean]
            if more:  # points with more seeds than the line: their own mean and interval, open markers
                ys = [p.all_mean[metric] for p in more]
                ax.errorbar([positions[p.noise] * 1.06 for p in more], ys,
                            yerr=[[y - p.all_band[metric][0] for y, p in zip(ys, more)],
                                  [p.all_band[metric][1] - y for y, p in zip(ys, more)]],
                            fmt="o", mfc="white", color=line.get_color(), capsize=3, linewidth=1,
                            label=f"{curve.label}: all {more[0].all_seeds} seeds" if len({p.all_seeds for p in more}) == 1
                            else f"{curve.label}: all seeds")
        for k, (name, value) in enumerate(sorted((markers or {}).items(), key=lambda kv: kv[1])):
            if value > 0:
                ax.axvline(value, color="0.35", linestyle="--" if k % 2 == 0 else ":", linewidth=1)
                # half-way up: the markers sit near the gap scale, where a noise curve usually peaks
                ax.text(value, 0.55 - 0.09 * k, f" {name}\n σ²={value:.2g}", transform=ax.get_xaxis_transform(),
                        fontsize=7, va="top", color="0.25", bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})
        ax.set_xscale("log")
        ax.set_xticks([positions[v] for v in variances])
        crowded = len(variances) > 6  # neighbours such as 0.01 and 0.016 would print into each other
        ax.set_xticklabels([f"{v:g}" for v in variances], rotation=45 if crowded else 0, ha="right" if crowded else "center")
        ax.minorticks_off()
        if zero is not None:
            _axis_break(ax, zero, min(v for v in positions.values() if v != zero))
        ax.set_xlabel("noise variance σ² (log scale; 0 = no noise)")
        ax.set_ylabel(METRIC_NAMES[metric])
        ax.set_title(f"{METRIC_NAMES[metric]} against σ²")
        ax.grid(True, alpha=0.3)
    notes = []
    if any(p.band for c in curves for p in c.points):
        notes.append("bands: 95% interval over seeds")
    shared = {tuple(c.common_seeds) for c in curves if c.common_seeds}
    if shared:
        seeds = seeds_label(shared.pop()) if len(shared) == 1 else "the seeds all points share"
        notes.append(f"lines: {seeds} at every σ²; open markers: all seeds, 95% interval")
    if notes:
        axes[0].text(0.01, 0.01, "\n".join(notes), transform=axes[0].transAxes, fontsize=7, alpha=0.8)
    axes[-1].legend(fontsize=8, loc="best")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "noise_curve.png", out_dir / "noise_curve.svg"]
    fig.savefig(paths[0], dpi=120)
    fig.savefig(paths[1], metadata={"Date": None})  # no timestamp: the same run gives the same file
    plt.close(fig)
    return paths


def _axis_break(ax, zero: float, first: float) -> None:
    """A "//" mark on the x axis between the stand-in for 0 and the first positive σ²."""
    x = math.sqrt(zero * first)
    kwargs = dict(transform=ax.get_xaxis_transform(), color="k", clip_on=False, linewidth=1)
    for dx in (0.93, 1.07):
        ax.plot([x * dx / 1.04, x * dx * 1.04], [-0.02, 0.02], **kwargs)
