"""The tables of a report, built once with pandas and written as Markdown or HTML.

A table is a :class:`pandas.DataFrame` of display strings plus a same-shaped boolean frame that
marks the best value of each column (bold in Markdown, ``class="best"`` in HTML).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.records import Record, flatten_config, show_value
from bench.reporting.collect import (
    BEST_TOLERANCE,
    METRIC_NAMES,
    ONE_SEED_NOTE,
    SPREAD_METRICS,
    TABLE_METRICS,
    Row,
    RunData,
    best_row,
    finite_number,
    row_unused,
    seeds_label,
    shared_seeds,
    short_key,
    show_noise,
)
from bench.stats import INTERVAL_METRICS

KIND_TITLES = {"in-domain": "In-domain", "cross-domain": "Cross-domain", "style": "Style"}


@dataclass
class Table:
    frame: pd.DataFrame
    best: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    numeric: Sequence[str] = ()  # right-aligned columns

    def markdown(self) -> str:
        cols = list(self.frame.columns)
        align = ["---:" if c in self.numeric else "---" for c in cols]
        lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |", "| " + " | ".join(align) + " |"]
        for i in range(len(self.frame)):
            cells = []
            for c in cols:
                text = _md_cell(self.frame.iloc[i][c])
                if self.best is not None and bool(self.best.iloc[i][c]) and text:
                    text = f"**{text}**"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        lines += [""] + [f"{note}" for note in self.notes] if self.notes else []
        return "\n".join(lines).rstrip() + "\n"

    def html(self, css_class: str = "results") -> str:
        cols = list(self.frame.columns)
        out = [f'<table class="{css_class}">', "<thead><tr>"]
        out += [f'<th class="{"num" if c in self.numeric else "text"}">{html.escape(str(c))}</th>' for c in cols]
        out.append("</tr></thead><tbody>")
        for i in range(len(self.frame)):
            out.append("<tr>")
            for c in cols:
                classes = ["num" if c in self.numeric else "text"]
                if self.best is not None and bool(self.best.iloc[i][c]):
                    classes.append("best")
                out.append(f'<td class="{" ".join(classes)}">{html.escape(str(self.frame.iloc[i][c]))}</td>')
            out.append("</tr>")
        out.append("</tbody></table>")
        out += [f'<p class="note">{html.escape(note)}</p>' for note in self.notes]
        return "".join(out) + "\n"


def _md_cell(value: Any) -> str:
    return md_escape(" ".join(str(value).split()).replace("|", "\\|"))  # one line, pipes escaped


_RAW_HTML = re.compile(r"<(?=[A-Za-z/!?])|&(?=[A-Za-z#])")


def md_escape(text: str) -> str:
    """Text from records made inert in Markdown: a ``<`` that could open a tag and an ``&`` that
    could open an entity are backslash-escaped (outside code spans), so report.md never carries
    raw HTML from a caption, a method name or a setting; ``<0.001`` and the like stay as they are."""
    parts = str(text).split("`")
    return "`".join(p if i % 2 else _RAW_HTML.sub(lambda m: "\\" + m.group(0), p) for i, p in enumerate(parts))


def fmt(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.{digits}f}"


def fmt_p(p: float | None) -> str:
    """A paired test's p-value; "–" when there was no test (no evidence on either side)."""
    if p is None:
        return "–"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _mark_best(best: pd.DataFrame, column: str, means: list[float | None]) -> None:
    """Mark the rows whose mean equals the column's top value (ties all marked); nothing when
    fewer than two rows have a value."""
    valid = [m for m in means if m is not None]
    if len(valid) < 2:
        return
    top = max(valid)
    if top <= BEST_TOLERANCE:  # every row at 0: nothing is best
        return
    for i, m in enumerate(means):
        if m is not None and np.isclose(m, top, rtol=0, atol=BEST_TOLERANCE):
            best.iloc[i, list(best.columns).index(column)] = True


def method_table(data: RunData, split: str, rows: list[Row] | None = None) -> Table:
    """Rows = the split's methods (``rows``: one input group of them); columns = BLEU-1, BLEU-4,
    METEOR, ROUGE-L, CIDEr (SPICE when any row has it); mean ± std over seeds when several ran;
    the best value per column in bold."""
    rows = data.rows_for(split) if rows is None else rows
    metrics = [m for m in TABLE_METRICS if any(r.mean(m) is not None for r in rows)]
    several = any(len(r.records) > 1 for r in rows)
    records = {}
    for row in rows:
        cells = {"method": row.label}
        if several:
            cells["seeds"] = str(len(row.records))
        for m in metrics:
            std = row.std(m)
            cells[METRIC_NAMES[m]] = mean_text(row, m, f" ± {std:.2f}" if std is not None else "")
        records[len(records)] = cells
    frame = pd.DataFrame.from_dict(records, orient="index")
    columns = [METRIC_NAMES[m] for m in metrics]
    best = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    shared = shared_seeds(rows)
    for metric, column in zip(metrics, columns):
        _mark_best(best, column, [r.mean(metric, shared) for r in rows])
    table = Table(frame, best, numeric=columns + ["seeds"])
    if several:
        table.notes.append("Values are mean ± standard deviation over seeds.")
    if shared:
        table.notes.append(f"Rows ran with different seeds (column seeds), so the best per column is chosen on "
                           f"{seeds_label(shared)}, which every row ran with; the values shown are over each row's own seeds.")
    if any(r.lacking(m) for r in rows for m in metrics):
        table.notes.append("(k of n seeds): the other seeds' records hold no number for that metric (NaN or null); "
                           "the value is over the k seeds that have one.")
    return table


def mean_text(row: Row, metric: str, spread: str = "") -> str:
    """A row's mean (and ``spread``), marked with how many of its seeds it covers when some seeds'
    records lack a number for the metric."""
    lacking = row.lacking(metric)
    mark = f" ({len(row.records) - len(lacking)} of {len(row.records)} seeds)" if lacking else ""
    return fmt(row.mean(metric)) + (spread if row.mean(metric) is not None else "") + mark


def significance_table(data: RunData, split: str, rows: list[Row] | None = None) -> Table:
    """95% bootstrap intervals of CIDEr and BLEU-4 (and CLIP-S where the rows have it) and the
    paired test against the best row (``rows``: one input group of the split's main rows)."""
    rows = data.rows_for(split) if rows is None else rows
    metrics = [m for m in INTERVAL_METRICS if m in ("cider", "bleu4") or any(r.mean(m) is not None for r in rows)]
    best = {metric: best_row(rows, metric) for metric in metrics}
    records = {}
    for row in rows:
        cells = {"method": row.label}
        for metric in metrics:
            name = METRIC_NAMES[metric]
            interval = row.intervals.get(metric)
            cells[name] = mean_text(row, metric)
            cells[f"{name} 95% CI"] = f"[{interval.lo:.2f}, {interval.hi:.2f}]" if interval else "–"
            cells[f"p vs best ({name})"] = "best" if row is best[metric] else fmt_p(interval.p_value if interval else None)
        records[len(records)] = cells
    frame = pd.DataFrame.from_dict(records, orient="index")
    table = Table(frame, numeric=list(frame.columns[1:]))
    n_images = rows[0].records[0].n_images if rows else 0
    several = any(len(r.records) > 1 for r in rows)
    over = f"over the {n_images} test images and each row's seeds, both resampled" if several else f"over the {n_images} test images"
    coarse = "; a bootstrap of a few seeds is coarse and understates their spread" if several else ""
    table.notes.append(f"95% percentile bootstrap intervals {over} ({data.resamples} resamples, seed {data.seed}{coarse}); "
                       "p: one-sided paired bootstrap test that the best row is not better than this one "
                       "(same resamples for every row).")
    seeds = {s for r in rows for s in r.seeds}
    if not several and len(rows) > 1 and len(seeds) == 1:
        table.notes.append(f"Every row ran with one seed ({seeds.pop()}): " + ONE_SEED_NOTE + ".")
    shared = shared_seeds(rows)
    if shared and any(i.p_value is not None for r in rows for i in r.intervals.values()):
        table.notes.append(f"Rows ran with different seeds: the best row is chosen, and tested against, on {seeds_label(shared)}, "
                           "which every row ran with; each interval is over its row's own seeds.")
    for metric in metrics:
        if best[metric] is None and sum(r.mean(metric) is not None for r in rows) > 1:
            table.notes.append(f"{METRIC_NAMES[metric]}: no single best row (a tie at the top, or every row at 0), "
                               "so no row is tested against one.")
    table.notes += missing_notes(rows)
    return table


def seed_spread_table(rows: list[Row], metric: str = SPREAD_METRICS[0]) -> Table | None:
    """How much of each row's seed spread of ``metric`` the test set alone gives (rows with two
    seeds or more; None when there are none): the spread, its floor, the systematic rest and the
    split-half correlation (``bench.stats.seed_spread``)."""
    shown = [r for r in rows if metric in r.spreads]
    if not shown:
        return None
    name = METRIC_NAMES[metric]
    halves = any(not np.isnan(r.spreads[metric].split_half) for r in shown)  # a row of 3 seeds or more
    records = {}
    for row in shown:
        spread = row.spreads[metric]
        cells = {"method": row.label, "seeds": str(len(row.records)), f"{name} std over seeds": fmt(spread.observed),
                 "floor (test images)": fmt(spread.floor), "systematic": fmt(spread.systematic)}
        if halves:
            cells["split-half r"] = "–" if np.isnan(spread.split_half) else f"{spread.split_half:.2f}"
        records[len(records)] = {**cells, "p (seed effect)": fmt_p(None if np.isnan(spread.p_value) else spread.p_value)}
    frame = pd.DataFrame.from_dict(records, orient="index")
    table = Table(frame, numeric=list(frame.columns[1:]))
    n_images = shown[0].spreads[metric].images
    halves_text = ("split-half r: the seeds' means on random halves of the images, correlated (near 0: the floor's spread, "
                   "near 1: systematic; 3 seeds or more); ") if halves else ""
    table.notes.append(f"floor: the standard deviation the seeds' means would have if the seeds differed only image by image, "
                       f"independently (the seed × image interaction's variance over the {n_images} test images; more test "
                       "images lower it); systematic: what the spread adds to it, √(std² − floor²), seeds better or worse "
                       f"on images in general; {halves_text}p: the chance that seeds differing only image by image spread as "
                       "much (the F test of a two-way analysis of variance, std²/floor² on k − 1 and (k − 1)(images − 1) "
                       "degrees of freedom for k seeds; – where the seeds agree). A spread over k seeds has k − 1 degrees "
                       "of freedom: over two or three, a spread that is all floor reads anywhere from well under it to well "
                       "over it, which p weighs.")
    # named only where the spread shows at the printed precision (seeds apart by float rounding are not)
    beyond = [r.label for r in shown if r.spreads[metric].p_value < 0.05 and r.spreads[metric].observed >= 0.005]
    if beyond:
        table.notes.append(f"{', '.join(beyond)}: the seeds differ by more than the test images explain (p < 0.05 for each row, "
                           "not corrected for the number of rows): what separates the seeds is in the method's training, and "
                           "only more seeds average it out; more test images narrow the floor alone.")
    left = [r.label for r in rows if metric not in r.spreads and len(r.records) > 1]
    if left:
        table.notes.append(f"Not shown, though run with several seeds: {', '.join(left)} (no usable per-image {name} for every "
                           "seed; the intervals' notes say why).")
    return table


def missing_notes(rows: list[Row]) -> list[str]:
    """One note per (metric, reason) that left rows without an interval."""
    reasons: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        for metric, reason in row.missing.items():
            reasons.setdefault((metric, reason), []).append(row.label)
    notes = []
    for (metric, reason), labels in reasons.items():
        who = "any row" if len(labels) == len(rows) else ", ".join(labels)
        notes.append(f"No {METRIC_NAMES[metric]} interval for {who}: {reason}.")
    return notes


def ablation_tables(data: RunData) -> list[tuple[str, list[str], Table]]:
    """For each method whose rows differ in settings (syntic's switches, a swept τ): a table
    with one row per setting combination and, per split, CIDEr and BLEU-4 with their intervals."""
    out = []
    groups = [(method, title, mine) for method in dict.fromkeys(r.method for r in data.rows)
              for title, mine in _input_groups([r for r in data.rows if r.method == method and r.settings])]
    for method, title, mine in groups:
        splits = [s for s in dict.fromkeys(r.split for r in mine) if len([r for r in mine if r.split == s]) > 1]
        if not splits:
            continue
        keys = [k for k, _ in mine[0].settings]
        noise = len({r.noise_variance for r in mine}) > 1
        # one table row per (settings, σ²): its settings and its Row on each split
        combos: dict[tuple, tuple[tuple, dict[str, Row]]] = {}
        for row in mine:
            if row.split in splits:
                key = (json.dumps(row.settings, default=str), row.noise_variance if noise else None)
                combos.setdefault(key, (row.settings, {}))[1][row.split] = row
        records = {}
        best_cols = []
        seed_counts = {len(r.records) for _, by in combos.values() for r in by.values()}
        # Like for like: a row shared with the main table may have run more seeds than the rest (the
        # default's all-on syntic row: seeds 0-2, the other combinations seed 0). Rows are compared
        # on the seeds every row of the split ran with; a row's mean over all its seeds is shown too.
        shared = {split: shared_seeds([by[split] for _, by in combos.values() if split in by]) for split in splits}
        mixed = len(seed_counts) > 1 or any(shared.values())
        for (_, nv), (settings, by_split) in combos.items():
            unused = row_unused(next(iter(by_split.values())))  # an off switch's settings: "–", not their unused value
            cells = {short_key(k, method): "–" if k in unused else _switch(v) for k, v in settings}
            if noise:
                cells["σ²"] = show_noise(nv)
            if mixed:
                cells["seeds"] = str(max(len(r.records) for r in by_split.values()))
            for split in splits:
                row = by_split.get(split)
                for metric in ("cider", "bleu4"):
                    col = f"{split} {METRIC_NAMES[metric]}"
                    cells[col] = _ablation_cell(row, metric, shared[split]) if row else "–"
            records[len(records)] = cells
        frame = pd.DataFrame.from_dict(records, orient="index")
        best = pd.DataFrame(False, index=frame.index, columns=frame.columns)
        for split in splits:
            for metric in ("cider", "bleu4"):
                col = f"{split} {METRIC_NAMES[metric]}"
                best_cols.append(col)
                _mark_best(best, col, [by[split].mean(metric, shared[split]) if split in by else None for _, by in combos.values()])
        table = Table(frame, best, numeric=best_cols)
        compared = {tuple(v) for v in shared.values() if v}
        seeds = seeds_label(next(iter(compared))) if len(compared) == 1 else "the seeds each split's rows share"
        switches = any(isinstance(v, bool) for settings, _ in combos.values() for _, v in settings)
        table.notes.append(("✓ on, ✗ off. " if switches else "")
                           + "Each value: the metric [its 95% bootstrap interval]; the best per column in bold."
                           + ((" Rows differ in their number of seeds (column seeds)" if len(seed_counts) > 1
                               else " Rows ran with different seeds (column seeds)") if mixed else "")
                           + (f", so they are compared on {seeds}, which every row ran with; a row run with more seeds "
                              "shows that value first, then its mean and interval over all of them" if compared else "")
                           + (". A row with one seed carries its seed-to-seed variation unmeasured." if mixed else ""))
        out.append((method + title, [short_key(k, method) for k in keys], table))
    return out


def _input_groups(rows: list[Row]) -> list[tuple[str, list[Row]]]:
    """A method's rows split by what they were computed from, one ablation table each: rows of
    another encoder, or of another version of a split's data (records merged from several runs),
    are never compared in one table. Returns (title suffix, rows); the suffix is empty when all
    rows share their inputs."""
    versions: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (encoder, split) -> data versions seen
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in rows:
        encoder = row.inputs.encoder if row.inputs is not None else ""
        version = (row.inputs.train, row.inputs.eval) if row.inputs is not None else ("", "")
        seen = versions.setdefault((encoder, row.split), [])
        if version not in seen:
            seen.append(version)
        groups.setdefault((encoder, seen.index(version)), []).append(row)
    encoders = {encoder for encoder, _ in groups}
    several_versions = any(index for _, index in groups)
    out = []
    for (encoder, index), mine in groups.items():
        parts = ([f"encoder {encoder}"] if len(encoders) > 1 else []) + ([f"data version {index + 1}"] if several_versions else [])
        out.append((f" ({', '.join(parts)})" if parts else "", mine))
    return out


def _switch(value: Any) -> str:
    return ("✓" if value else "✗") if isinstance(value, bool) else show_value(value)


def _ablation_cell(row: Row, metric: str, shared: list[int] | None) -> str:
    """The metric with its interval; with ``shared`` seeds and a row that ran more, the value over
    the shared seeds first ("161.42 (seed 0) · 160.78 [153.4, 168.3] over 3 seeds")."""
    value = row.mean(metric, shared) if shared else None
    if value is None or len(row.records) <= len(shared):
        return _with_interval(row, metric)
    return f"{fmt(value)} ({seeds_label(shared)}) · {_with_interval(row, metric)} over {len(row.records)} seeds"


def _with_interval(row: Row, metric: str) -> str:
    interval = row.intervals.get(metric)
    text = fmt(row.mean(metric))
    return f"{text} [{interval.lo:.1f}, {interval.hi:.1f}]" if interval else text


def noise_table(curves: list[Any]) -> Table:
    """The noise-variance sweep as numbers: one row per σ², CIDEr and BLEU-4 per curve."""
    variances = sorted({p.noise for c in curves for p in c.points})
    seed_counts = {p.seeds for c in curves for p in c.points}
    records = {}
    for nv in variances:
        cells = {"σ²": f"{nv:g}"}
        for c in curves:
            point = next((p for p in c.points if p.noise == nv), None)
            for metric in ("cider", "bleu4"):
                cells[f"{c.label} {METRIC_NAMES[metric]}"] = fmt(point.mean[metric]) if point else "–"
            if len(seed_counts) > 1:
                cells[f"{c.label} seeds"] = str(point.seeds) if point else "–"
        records[len(records)] = cells
    frame = pd.DataFrame.from_dict(records, orient="index")
    table = Table(frame, numeric=list(frame.columns))
    for c in curves:
        more = [p for p in c.points if p.all_seeds]
        if c.common_seeds and more:
            shown = "; ".join(f"σ² {p.noise:g}: " + ", ".join(f"{METRIC_NAMES[m]} {fmt(p.all_mean[m])}" for m in p.all_mean)
                              + f" over {p.all_seeds} seeds" for p in more)
            table.notes.append(f"{c.label}: every point is the mean over the seeds all points ran with "
                               f"({seeds_label(c.common_seeds)}), so the curve compares like with like; "
                               f"points run with more seeds, over all of them: {shown}.")
    if seed_counts == {1}:
        table.notes.append("The curve goes through one seed's value at each point (the seed every point ran with), so it "
                           "carries no seed-to-seed variation." if any(p.all_seeds for c in curves for p in c.points)
                           else "One seed per point: the curve carries no seed-to-seed variation.")
    elif len(seed_counts) > 1:
        table.notes.append("Points differ in their number of seeds (columns seeds): a point with one seed carries its "
                           "seed-to-seed variation unmeasured.")
    return table


def model_card_tables(card: dict[str, Any]) -> list[tuple[str, Table]]:
    """The shapes CLIP's model card: retrieval recall per domain, and the modality gap."""
    out = []
    retrieval = card.get("retrieval", {})
    if retrieval:
        frame = pd.DataFrame.from_dict({i: {
            "domain": f"shapes-{domain}", "images": str(s["images"]), "captions": str(s["captions"]),
            "image→text R@1": fmt(s["i2t_r1"], 1), "image→text R@5": fmt(s["i2t_r5"], 1),
            "text→image R@1": fmt(s["t2i_r1"], 1), "text→image R@5": fmt(s["t2i_r5"], 1),
            "chance R@1": f"{s['chance_i2t_r1']:.2f} / {s['chance_t2i_r1']:.2f}"}
            for i, (domain, s) in enumerate(retrieval.items())}, orient="index")
        out.append(("Retrieval on the test split", Table(frame, numeric=list(frame.columns[1:]))))
    gaps = {**{f"shapes-{d}": g for d, g in card.get("gap_by_domain", {}).items()}, **({"all": card["gap"]} if card.get("gap") else {})}
    if gaps:
        frame = pd.DataFrame.from_dict({i: {
            "test pairs": name, "true-pair cosine": fmt(g["true_pair_cosine"], 3),
            "random-pair cosine": fmt(g["random_pair_cosine"], 3), "centroid gap": fmt(g["centroid_gap"], 3),
            "mean ℓ2": fmt(g["mean_l2"], 3), "mean ℓ∞": fmt(g["mean_linf"], 4),
            **({"caption ℓ∞": fmt(g["caption_linf"], 4)} if "caption_linf" in g else {}),
            "mean square (image − text) per dim": f"{g['diff_var_per_dim']:.5f}"}
            for i, (name, g) in enumerate(gaps.items())}, orient="index").fillna("–")
        table = Table(frame, numeric=list(frame.columns[1:]))
        capdec = ("caption ℓ∞ is CapDec's statistic (the ℓ∞ distance between two captions of one image, averaged; its "
                  "square is CapDec's noise variance); " if "caption ℓ∞" in frame.columns else "")
        table.notes.append("Unit-norm embeddings. The centroid gap is the distance between the mean image and the mean "
                           "caption embedding; mean ℓ2 and ℓ∞ are of image − caption over true pairs; " + capdec
                           + "the mean square of image − caption per dimension (which includes the centroid gap's share) "
                           "is the variance rule's σ².")
        out.append(("Modality gap", table))
    return out


def unavailable_metrics(data: RunData) -> dict[str, str]:
    """Metrics that no record of the run has, with the scorer's reason (e.g. SPICE offline)."""
    out: dict[str, str] = {}
    for record in data.records:
        for metric, reason in record.unavailable.items():
            if not any(metric in r.metrics for r in data.records):
                out.setdefault(metric, reason)
    return out


def training_table(data: RunData) -> Table | None:
    """How the main cells' decoders were trained: one row per fit setting (method, training set,
    configuration, encoder and training data), over its seeds, with the decoder's shape and
    schedule, its steps, its final training loss and the seconds its training took (None when no
    main cell used a trained decoder). Cross-domain cells that captioned with an in-domain fit
    add no row; a decoder that methods share (decap decodes with nonoise's) is named as shared,
    whichever of them happened to train it. A value over fewer seeds than the row's says so."""
    groups: dict[tuple[str, ...], dict[int, Record]] = {}
    for record in data.records:
        info = record.fit_info or {}
        if record.role != "main" or not (_steps(info) or isinstance(info.get("decoder_key"), str)):
            continue
        key = (record.method, record.train, json.dumps(record.config, sort_keys=True, default=str), record.encoder,
               record.train_fingerprint)
        groups.setdefault(key, {}).setdefault(record.seed, record)
    if not groups:
        return None
    labels = _training_labels(list(groups))
    users: dict[str, set[str]] = {}  # decoder key -> the rows (labels) whose main cells decoded with it
    for key, by_seed in groups.items():
        for record in by_seed.values():
            if isinstance((record.fit_info or {}).get("decoder_key"), str):
                users.setdefault(record.fit_info["decoder_key"], set()).add(labels[key])
    trained: dict[str, float] = {}  # decoder key -> the seconds its training took (any cell's record of it)
    for record in data.records:
        info = record.fit_info or {}
        if isinstance(info.get("decoder_key"), str) and info.get("decoder_reused") is not True and finite_number(info.get("seconds")):
            trained.setdefault(info["decoder_key"], float(info["seconds"]))
    trains = list(dict.fromkeys(key[1] for key in groups))
    methods = list(dict.fromkeys(key[0] for key in groups))
    lines = []
    for key, by_seed in sorted(groups.items(), key=lambda item: (trains.index(item[0][1]), methods.index(item[0][0]))):
        train = key[1]
        records = [by_seed[s] for s in sorted(by_seed)]
        decoder = records[0].config.get("decoder") if isinstance(records[0].config.get("decoder"), dict) else {}
        infos = [r.fit_info or {} for r in records]
        losses = [float(i["final_loss"]) for i in infos if finite_number(i.get("final_loss"))]
        seconds = []
        for info in infos:
            own = info.get("decoder_reused") is not True and finite_number(info.get("seconds"))
            value = float(info["seconds"]) if own else trained.get(info.get("decoder_key"))
            if value is not None:
                seconds.append(value)
        sharers = set().union(*(users.get(i.get("decoder_key"), set()) for i in infos)) - {labels[key]}
        steps = sorted({n for i in infos if (n := _steps(i))})
        lines.append({
            "method": labels[key],
            "trained on": train,
            "decoder": _decoder_text(decoder) + (f"; shared with {', '.join(sorted(sharers))}" if sharers else ""),
            "epochs": f"{decoder['epochs']:g}" if finite_number(decoder.get("epochs")) else "?",
            "steps": ", ".join(map(str, steps)) or "?",
            "seeds": seeds_label(sorted(by_seed)),
            "final loss": _over_seeds(losses, len(records), 3, spread=True),
            "fit (s)": _over_seeds(seconds, len(records), 1),
        })
    note = ("Final loss: the training loss (token cross-entropy) over each decoder's last 10 steps, mean ± standard deviation "
            "over seeds; fit: seconds a decoder took to train, mean over seeds (a shared decoder's, whichever method trained "
            "it). A loss that keeps falling with more training means the method's numbers depend on the schedule: run the "
            "grid again with `--set decoder.epochs=N` to see whether they move.")
    return Table(pd.DataFrame(lines), notes=[note], numeric=("epochs", "steps", "final loss", "fit (s)"))


def _steps(info: dict[str, Any]) -> int | None:
    steps = info.get("steps")
    return steps if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0 else None


def _over_seeds(values: list[float], n_seeds: int, digits: int, spread: bool = False) -> str:
    """``mean ± std`` (or the mean) of the values the seeds have, saying how many had one."""
    if not values:
        return "?"
    text = fmt(float(np.mean(values)), digits)
    if spread and len(values) > 1:
        text += f" ± {fmt(float(np.std(values, ddof=1)), digits)}"
    return text + (f" ({len(values)} of {n_seeds} seeds)" if len(values) < n_seeds else "")


def _training_labels(keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """Each fit setting named by its method, plus what tells it apart from the method's other
    settings on the same training set (σ², a setting, the decoder's, the encoder, the data)."""
    flat = {key: flatten_config(json.loads(key[2])) for key in keys}
    labels = {}
    for key in keys:
        method, train, _, encoder, fingerprint = key
        siblings = [k for k in keys if k[0] == method and k[1] == train]
        parts = []
        if len(siblings) > 1:
            mine = flat[key]
            others = [flat[k] for k in siblings]
            for name in sorted({n for flat in others for n in flat}):
                if len({json.dumps(flat.get(name), sort_keys=True) for flat in others}) > 1:
                    shown = "σ²" if name == "noise_variance" else name
                    parts.append(f"{shown}={show_value(mine.get(name))}")
            if len({k[3] for k in siblings}) > 1:
                parts.append(f"encoder {encoder}")
            if len({k[4] for k in siblings}) > 1:
                parts.append(f"data {fingerprint[:8]}")
        labels[key] = method + (f" ({', '.join(parts)})" if parts else "")
    return labels


def _decoder_text(decoder: dict[str, Any]) -> str:
    """``transformer, 2 layers × 128, batch 128, lr 0.002`` from a record's decoder config."""
    if not decoder:
        return "?"
    parts = [str(decoder.get("kind", "?"))]
    if "layers" in decoder and "width" in decoder:
        parts.append(f"{decoder['layers']} layers × {decoder['width']}")
    if "batch_size" in decoder:
        parts.append(f"batch {decoder['batch_size']}")
    if finite_number(decoder.get("lr")):
        parts.append(f"lr {decoder['lr']:g}")
    return ", ".join(parts)
