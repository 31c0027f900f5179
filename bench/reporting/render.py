"""``bench report``: write ``report.md``, a self-contained ``report.html`` and ``figures/``.

The Markdown report links its figures; the HTML report inlines everything (styles, the curve,
the gallery's images as data URIs) so that it can be mailed or archived as one file and opens
with no network.
"""

from __future__ import annotations

import base64
import html
import io
import string
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError
from bench.io import write_text_atomic
from bench.reporting.collect import (
    METRIC_NAMES,
    RunData,
    failure_notes,
    input_groups,
    inputs_title,
    load_run,
    reader_notes,
)
from bench.reporting.defaults import GALLERY_IMAGES, RESAMPLES, SEED
from bench.reporting.figures import MARKER_NOTES, gap_markers, noise_curves, plot_noise_curves
from bench.reporting.tables import (
    KIND_TITLES,
    Table,
    ablation_tables,
    md_escape,
    method_table,
    model_card_tables,
    noise_table,
    seed_spread_table,
    significance_table,
    training_table,
    unavailable_metrics,
)

THUMBNAIL = 224


@dataclass
class Section:
    """One part of the report, in both formats: (level, title, blocks); a block is a Table,
    Markdown-only text (``("md", text)``), HTML-only markup (``("html", text)``) or plain text."""

    level: int
    title: str
    blocks: list[Any]
    anchor: str = ""


@dataclass
class Rendered:
    markdown: Path
    html: Path
    figures: list[Path]


def render_report(run_dir: str | Path, out_dir: str | Path | None = None, resamples: int = RESAMPLES, seed: int = SEED,
                  gallery: int = GALLERY_IMAGES, log: Callable[[str], None] = lambda m: None) -> Rendered:
    """Render the report of ``run_dir`` into ``out_dir`` (default: the run folder itself)."""
    from bench.io import check_writable

    out = Path(out_dir) if out_dir else None
    if out is not None and out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder")
    if out is not None:  # before the bootstrap: a folder the report cannot be written to is bad input
        check_writable(out, "report folder --out", "choose another --out")
    data = load_run(run_dir, resamples=resamples, seed=seed, log=log)
    if out is None:
        out = check_writable(data.run_dir, "run folder", "pass --out DIR to write the report elsewhere")
    curves = noise_curves(data)
    figures = plot_noise_curves(curves, out / "figures", gap_markers(data)) if curves else []
    sections = build_sections(data, curves, figures, out, gallery)
    title = f"textcap-bench report: {data.run_dir.name or data.run_dir.resolve().name}"
    md_path, html_path = out / "report.md", out / "report.html"
    summary = summary_line(data)
    write_text_atomic(md_path, to_markdown(title, summary, sections))
    write_text_atomic(html_path, to_html(title, summary, sections))
    return Rendered(md_path, html_path, figures)


def summary_line(data: RunData) -> str:
    methods = list(dict.fromkeys(r.method for r in data.records))
    seeds = sorted({r.seed for r in data.records})
    encoders = sorted({r.encoder for r in data.records if r.encoder})
    dates = sorted(r.date[:10] for r in data.records if r.date)
    parts = [f"{len(data.records)} cells", f"{len(methods)} methods ({', '.join(methods)})", f"{len(data.splits())} splits",
             f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"]
    if encoders:
        parts.append(f"encoder {', '.join(encoders)}")
    if dates:
        parts.append(dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}")
    return " · ".join(parts)


def build_sections(data: RunData, curves: list, figures: list[Path], out: Path, gallery: int) -> list[Section]:
    intro = [f"{METRIC_NAMES.get(m, m)} is not reported: {reason}." for m, reason in unavailable_metrics(data).items()]
    intro += [f"Warning: {note}." for note in failure_notes(data) + reader_notes(data.records)]
    sections: list[Section] = [Section(2, "Results", intro, "results")]
    for kind in data.kinds():
        for split in data.splits(kind):
            groups = input_groups(data.rows_for(split))  # another encoder or data version: its own tables
            for index, rows in enumerate(groups):
                n_images = rows[0].records[0].n_images
                which = inputs_title(rows, groups)
                blocks: list[Any] = [method_table(data, split, rows), "Bootstrap intervals and paired tests:",
                                     significance_table(data, split, rows)]
                spread = seed_spread_table(rows)
                if spread is not None:
                    blocks += ["What the test set alone gives of each row's seed spread:", spread]
                sections.append(Section(3, f"{KIND_TITLES[kind]}: {split}{f' ({which})' if which else ''} ({n_images} test images)",
                                        blocks, f"split-{_slug(split)}" + (f"-{index + 1}" if index else "")))
    if curves:
        blocks: list[Any] = ["CIDEr and BLEU-4 against the noise variance σ² injected into text embeddings during "
                             "training (log-scaled axis; σ² = 0 is drawn left of the break)."]
        markers = gap_markers(data)
        if markers:
            blocks.append("Vertical lines (from the encoder's model card; `bench gap` prints them for any encoder): "
                          + "; ".join(f"{name} σ² = {value:.2g} ({MARKER_NOTES.get(name, '')})" for name, value in markers.items())
                          + ".")
        png, svg = figures
        blocks.append(("md", f"![noise-variance curve]({_relative(png, out)})\n\n(vector: [{svg.name}]({_relative(svg, out)}))"))
        blocks.append(("html", f'<figure class="curve"><img class="curve" alt="noise-variance curve" '
                               f'src="data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()}">'
                               f'<figcaption>Noise-variance curve (also saved as {html.escape(svg.name)}).</figcaption></figure>'))
        blocks.append(noise_table(curves))
        sections.append(Section(2, "Noise variance", blocks, "noise"))
    for method, keys, table in ablation_tables(data):
        sections.append(Section(2, f"Ablation: {method} ({', '.join(keys)})", [table], f"ablation-{_slug(method)}"))
    training = training_table(data)
    if training is not None:
        sections.append(Section(2, "Training", [training], "training"))
    sections.append(encoder_section(data))
    if gallery > 0:
        sections.append(gallery_section(data, gallery))
    sections.append(provenance_section(data))
    return sections


def encoder_section(data: RunData) -> Section:
    info = data.run_info.get("encoder") or {}
    ids = sorted({r.encoder for r in data.records if r.encoder})
    blocks: list[Any] = [f"Encoder: {', '.join(ids) or info.get('id', 'unknown')}."]
    card = info.get("model_card") or {}
    if info.get("spec") == "shapes" and card:
        train = info.get("train", {})
        training = info.get("training", {})
        blocks.append(f"The shapes world's own CLIP (`{info.get('model', '')}`, checkpoint {info.get('key', '')}), trained from "
                      f"scratch on {training.get('pretrain_images', 0):,} pairs for {train.get('steps', '?')} steps "
                      f"in {training.get('train_s', '?')} s"
                      + (f", with an attribute head on its text side (weight {train['text_attribute_weight']:g})."
                         if isinstance(train.get("text_attribute_weight"), (int, float)) and train["text_attribute_weight"] else "."))
        for title, table in model_card_tables(card):
            blocks += [f"{title}:", table]
    elif info.get("spec") == "shapes":
        blocks.append("The run folder does not hold the shapes CLIP's model card.")
    return Section(2, "Encoder", blocks, "encoder")


def gallery_section(data: RunData, n: int) -> Section:
    """For a seeded sample of each split's test images: the image, its references and every
    method's caption (HTML only)."""
    rng = np.random.default_rng(data.seed)
    parts = []
    for split in data.splits():
        rows = data.rows_for(split)
        first = {row.label: min(row.records, key=lambda r: r.seed) for row in rows}
        samples = {label: {str(s["image_id"]): s for s in data.samples.get(rec.cell_id, [])} for label, rec in first.items()}
        with_samples = [s for s in samples.values() if s]
        ids = sorted(set.intersection(*(set(s) for s in with_samples))) if with_samples else []
        if not ids:
            continue
        chosen = [ids[i] for i in sorted(rng.choice(len(ids), size=min(n, len(ids)), replace=False))]
        cards = []
        for image_id in chosen:
            sample = with_samples[0][image_id]
            refs = "".join(f"<li>{html.escape(str(c))}</li>" for c in sample.get("references", []))
            preds = "".join(f"<tr><th>{html.escape(label)}</th><td>"
                            f"{html.escape(str(s[image_id].get('prediction', '')) if s else '(no samples)')}</td></tr>"
                            for label, s in samples.items())
            cards.append(f'<div class="example"><div class="picture">{_thumbnail(sample.get("image"), data.run_dir)}'
                         f'<div class="image-id">{html.escape(image_id)}</div></div>'
                         f'<div class="texts"><div class="refs-title">references</div><ul class="refs">{refs}</ul>'
                         f'<table class="captions">{preds}</table></div></div>')
        parts.append(f'<h3>{html.escape(split)}</h3><div class="gallery">{"".join(cards)}</div>')
    blocks: list[Any] = [("md", "The qualitative gallery (test images, references and every method's caption) is in "
                                "report.html."),
                         ("html", f"<p>{n} test images per split, drawn with seed {data.seed}; captions from each row's "
                                  "first seed.</p>" + "".join(parts) if parts else "<p>No per-image samples to show.</p>")]
    return Section(2, "Gallery", blocks, "gallery")


def _thumbnail(image: str | None, run_dir: Path) -> str:
    """The image as an inline PNG thumbnail; a relative path is relative to the run folder."""
    path = run_dir / image if image else None  # an absolute image path stays as it is
    if path is None or not path.is_file():
        return '<div class="no-image">image not available</div>'
    try:
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMBNAIL, THUMBNAIL))
            buf = io.BytesIO()
            img.save(buf, format="PNG", optimize=True)
    except OSError:
        return '<div class="no-image">image unreadable</div>'
    return f'<img class="example-image" alt="test image" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def provenance_section(data: RunData) -> Section:
    info = data.run_info
    records = data.records
    lines = []
    if info.get("command"):
        lines.append(f"- command: `{info['command']}`")
    commits = sorted({r.git_commit for r in records if r.git_commit})
    lines.append(f"- git commit: {', '.join(commits) if commits else 'unknown'}")
    versions: dict[str, set[str]] = {}
    for r in records:
        for package, version in r.versions.items():
            versions.setdefault(package, set()).add(version)
    if versions:
        lines.append("- libraries: " + ", ".join(f"{p} {' / '.join(sorted(v))}" for p, v in sorted(versions.items())))
    devices = sorted({r.device for r in records if r.device}) or ([info["device"]] if info.get("device") else [])
    if devices:
        lines.append(f"- device: {', '.join(devices)}")
    if info.get("platform"):
        lines.append(f"- platform: {info['platform']}, Python {info.get('python', '?')}")
    stages: dict[str, float] = {}
    for r in records:
        for stage, seconds in r.timings.items():
            stages[stage] = stages.get(stage, 0.0) + float(seconds)
    if stages:
        lines.append("- time per stage, summed over cells: " + ", ".join(f"{s} {v:.1f} s" for s, v in stages.items()))
    fits = [r for r in records if r.fit_reused is not None]
    if fits:
        lines.append(f"- fits: {sum(not r.fit_reused for r in fits)} trained, {sum(bool(r.fit_reused) for r in fits)} reused")
    if info.get("wall_s") is not None:
        done = (f" ({info['computed']} cells computed, {info.get('skipped', 0)} already complete)"
                if isinstance(info.get("computed"), int) else "")
        lines.append(f"- wall time of the last `bench run` on this folder: {float(info['wall_s']):.1f} s{done}")
    history = [h for h in info.get("history", []) if isinstance(h, dict)]
    if history:
        computed = [h for h in history if isinstance(h.get("computed"), int) and h["computed"] > 0]
        lines.append(f"- {len(history)} earlier `bench run`(s) on this folder (first started {history[0].get('started', '?')}"
                     + (f"; the last that computed cells: `{computed[-1].get('command', '?')}`, "
                        f"{computed[-1]['computed']} cells in {computed[-1].get('wall_s', '?')} s" if computed else "")
                     + "; all in run.json)")
    if data.skipped:
        lines.append(f"- {data.skipped} unreadable line(s) of records.jsonl skipped ({data.problems[0]})")
    return Section(2, "Provenance", [("md", "\n".join(lines)), ("html", _md_list_to_html(lines))], "provenance")


def to_markdown(title: str, summary: str, sections: list[Section]) -> str:
    out = [f"# {md_escape(title)}", "", md_escape(summary), ""]
    for section in sections:
        out += ["#" * section.level + " " + md_escape(section.title), ""]
        for block in section.blocks:
            if isinstance(block, Table):
                out.append(block.markdown())
            elif isinstance(block, tuple):
                if block[0] == "md":
                    out += [md_escape(block[1]), ""]
            else:
                out += [md_escape(block), ""]
    return "\n".join(out).rstrip() + "\n"


def to_html(title: str, summary: str, sections: list[Section]) -> str:
    body, nav = [], []
    for section in sections:
        anchor = section.anchor or _slug(section.title)
        tag = f"h{section.level}"
        body.append(f'<section id="{anchor}" class="level{section.level}"><{tag}>{html.escape(section.title)}</{tag}>')
        if section.level == 2:
            nav.append(f'<a href="#{anchor}">{html.escape(section.title.split(":")[0])}</a>')
        for block in section.blocks:
            if isinstance(block, Table):
                body.append(block.html())
            elif isinstance(block, tuple):
                if block[0] == "html":
                    body.append(block[1])
            else:
                body.append(f"<p>{_inline(block)}</p>")
        body.append("</section>")
    template = string.Template(resources.files("bench.templates").joinpath("report.html").read_text(encoding="utf-8"))
    return template.substitute(title=html.escape(title), summary=html.escape(summary), nav="".join(nav), body="\n".join(body))


def _inline(text: str) -> str:
    """Markdown's inline code (`x`) in a plain paragraph, as HTML."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _md_list_to_html(lines: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{_inline(line[2:])}</li>" for line in lines) + "</ul>"


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


__all__ = ["render_report", "METRIC_NAMES"]
