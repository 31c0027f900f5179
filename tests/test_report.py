import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "report_run"
EXPECTED = Path(__file__).parent / "fixtures" / "report_expected.md"


@pytest.fixture
def fixture_run(tmp_path) -> Path:
    """A copy of the saved run (records, samples, run.json, images) that a test may change."""
    folder = tmp_path / "run"
    shutil.copytree(FIXTURE, folder)
    return folder


def test_report_matches_the_saved_markdown(run_cli, fixture_run):
    code, out, err = run_cli("report", str(fixture_run))
    assert code == 0, err
    assert f"report: {fixture_run / 'report.html'}" in out
    text = (fixture_run / "report.md").read_text(encoding="utf-8")
    if os.environ.get("BENCH_UPDATE_EXPECTED"):
        EXPECTED.write_text(text, encoding="utf-8")
    assert text == EXPECTED.read_text(encoding="utf-8"), (
        "report.md differs from tests/fixtures/report_expected.md; if the change is intended, re-run with BENCH_UPDATE_EXPECTED=1")


def test_the_encoder_section_says_when_the_shapes_clip_has_a_text_side_head(run_cli, fixture_run):
    info = json.loads((fixture_run / "run.json").read_text())
    info["encoder"]["train"]["text_attribute_weight"] = 100.0
    (fixture_run / "run.json").write_text(json.dumps(info))
    code, _, err = run_cli("report", str(fixture_run))
    assert code == 0, err
    text = (fixture_run / "report.md").read_text(encoding="utf-8")
    assert "for 1200 steps in 150.0 s, with an attribute head on its text side (weight 100)." in text


def test_report_layout(run_cli, fixture_run):
    assert run_cli("report", str(fixture_run))[0] == 0
    text = (fixture_run / "report.md").read_text(encoding="utf-8")
    sections = [line for line in text.splitlines() if line.startswith("#")]
    assert sections[:5] == ["# textcap-bench report: run", "## Results", "### In-domain: shapes-coco (12 test images)",
                            "### Cross-domain: shapes-coco->shapes-flickr (12 test images)",
                            "### Style: shapes-romantic (12 test images)"]
    for title in ("## Noise variance", "## Ablation: syntic (optimise, project)", "## Encoder", "## Gallery", "## Provenance"):
        assert title in sections
    in_domain = text.split("### In-domain")[1].split("###")[0]
    header = next(line for line in in_domain.splitlines() if line.startswith("| method"))
    assert header == "| method | seeds | BLEU-1 | BLEU-4 | METEOR | ROUGE-L | CIDEr |"  # SPICE absent: unavailable
    rows = in_domain.split(header)[1].split("\n\n")[0].strip().splitlines()[1:]  # below the alignment row
    # the main table holds the four methods only: sweep points and ablation cells have their own sections
    assert [r.split(" | ")[0][2:] for r in rows] == ["capdec", "nonoise", "decap", "syntic"]
    assert all("±" in cell for cell in rows[0].split(" | ")[2:])  # two seeds: mean ± std
    assert "SPICE is not reported: the CoreNLP jars are not installed." in text
    for figure in ("noise_curve.png", "noise_curve.svg"):
        assert (fixture_run / "figures" / figure).stat().st_size > 1000
    assert "![noise-variance curve](figures/noise_curve.png)" in text


def test_best_value_per_column_is_marked(run_cli, fixture_run):
    from bench.records import read_records

    assert run_cli("report", str(fixture_run))[0] == 0
    records = [r for r in read_records(fixture_run).records if r.split == "shapes-coco" and r.role == "main"]
    means = {}
    for r in records:
        means.setdefault(r.method, []).append(r.metrics["cider"])
    best = max(means, key=lambda m: sum(means[m]) / len(means[m]))
    in_domain = (fixture_run / "report.md").read_text(encoding="utf-8").split("### In-domain")[1].split("Bootstrap")[0]
    bold = [line for line in in_domain.splitlines() if line.startswith(f"| {best} |")][0].split(" | ")[-1]
    assert bold.startswith("**") and bold.endswith("** |")
    assert sum(line.count("**") for line in in_domain.splitlines()) // 2 >= 5  # one per column at least


def test_report_of_a_truncated_records_file_uses_the_complete_lines(run_cli, fixture_run):
    path = fixture_run / "records.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines) + "\n" + lines[0][: len(lines[0]) // 2], encoding="utf-8")
    code, out, err = run_cli("report", str(fixture_run))
    assert code == 0
    assert "skipped 1 unreadable line(s)" in err and f"using its {len(lines)} complete records" in err
    assert "1 unreadable line(s) of records.jsonl skipped" in (fixture_run / "report.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("make, fragments", [
    (lambda d: None, ["records.jsonl does not exist"]),
    (lambda d: (d / "records.jsonl").write_text(""), ["has no complete records"]),
    (lambda d: (d / "records.jsonl").write_text('{"method": "capdec", "spl'), ["has no complete records", "1 unreadable"]),
])
def test_report_bad_input_is_one_line(run_cli, tmp_path, make, fragments):
    folder = tmp_path / "empty"
    folder.mkdir()
    make(folder)
    code, _, err = run_cli("report", str(folder))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def test_report_options_are_checked(run_cli, fixture_run, tmp_path):
    code, _, err = run_cli("report", str(fixture_run), "--resamples", "10")
    assert code == 2 and "--resamples must be at least 100" in err
    code, _, err = run_cli("report", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err


def test_report_without_samples_says_which_intervals_are_missing(run_cli, fixture_run):
    shutil.rmtree(fixture_run / "samples")
    code, _, err = run_cli("report", str(fixture_run), "--out", str(fixture_run / "elsewhere"))
    assert code == 0, err
    text = (fixture_run / "elsewhere" / "report.md").read_text(encoding="utf-8")
    assert "No CIDEr interval for any row: the run folder has no per-image samples." in text
    assert "[" not in text.split("### In-domain")[1].split("### Cross")[0].split("Bootstrap")[1]  # no interval shown
    assert "No per-image samples to show." in (fixture_run / "elsewhere" / "report.html").read_text(encoding="utf-8")


def test_cut_samples_files_give_no_interval_rather_than_one_over_the_images_left(run_cli, fixture_run):
    """Every cell's samples cut to their first 3 of 12 images: the images left agree with each
    other, so only the records' image count shows that an interval over them is not the table's."""
    for path in (fixture_run / "samples").glob("*.json"):
        path.write_text(json.dumps(json.loads(path.read_text(encoding="utf-8"))[:3]), encoding="utf-8")
    code, _, err = run_cli("report", str(fixture_run))
    assert code == 0, err
    text = (fixture_run / "report.md").read_text(encoding="utf-8")
    assert "No CIDEr interval for any row: its samples cover 3 images and its record 12." in text
    assert "[" not in text.split("### In-domain")[1].split("### Cross")[0].split("Bootstrap")[1]


def test_samples_naming_an_image_twice_give_no_interval(run_cli, fixture_run):
    for path in (fixture_run / "samples").glob("*.json"):
        rows = json.loads(path.read_text(encoding="utf-8"))
        path.write_text(json.dumps(rows[:-1] + rows[:1]), encoding="utf-8")  # 12 rows, one image twice
    assert run_cli("report", str(fixture_run))[0] == 0
    assert "its samples name an image more than once" in (fixture_run / "report.md").read_text(encoding="utf-8")


def test_report_reads_records_only_and_imports_no_method(fixture_run):
    code = ("import sys; from bench.reporting import render_report; from bench.check import check; "
            f"render_report({str(fixture_run)!r}); "
            "bad = sorted(m for m in sys.modules if m.startswith(('bench.plugins.', 'torch', 'open_clip', 'bench.runner'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_html_is_self_contained(run_cli, fixture_run):
    assert run_cli("report", str(fixture_run))[0] == 0
    html = (fixture_run / "report.html").read_text(encoding="utf-8")
    import re

    sources = re.findall(r'(?:src|href)="([^"#][^"]*)"', html)
    assert sources and all(s.startswith("data:") for s in sources), [s[:40] for s in sources if not s.startswith("data:")]
    assert "<link" not in html and "@import" not in html and "url(" not in html
    assert html.count('class="example"') == 3 * 6  # six gallery images for each of the three splits
    assert html.count("data:image/png;base64,") == 1 + 3 * 6  # the curve and the gallery's images


# -- the HTML as a person sees it ------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():
    from tests.browser import find_chromium

    binary = find_chromium()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs Chromium for the report rendering tests (.ci/run installs Debian's chromium)")
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; or set BENCH_CHROMIUM)")
    return binary


def _crop(png: bytes):
    import io

    import numpy as np
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64)


def _source_image(data_uri: str, size):
    import base64
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(base64.b64decode(data_uri.split(",", 1)[1]))).convert("RGB")
    return np.asarray(image.resize(size, Image.BILINEAR), dtype=np.float64)


MEASURE = """(() => {
  const box = el => { const r = el.getBoundingClientRect();
    return {x: r.left + window.scrollX, y: r.top + window.scrollY, width: r.width, height: r.height}; };
  const visible = el => { const s = getComputedStyle(el); return s.display !== 'none' && s.visibility !== 'hidden'; };
  return {
    tables: [...document.querySelectorAll('table.results')].map(t => ({box: box(t), visible: visible(t),
      rows: t.rows.length, best: t.querySelectorAll('td.best').length,
      cells: [...t.tBodies[0].rows].flatMap(r => [...r.cells]).map(box),
      bestColour: t.querySelector('td.best') ? getComputedStyle(t.querySelector('td.best')).backgroundColor : null})),
    curve: [...document.querySelectorAll('img.curve')].map(i => ({box: box(i), complete: i.complete,
      natural: [i.naturalWidth, i.naturalHeight], src: i.src})),
    gallery: [...document.querySelectorAll('.gallery .example')].map(e => {
      const img = e.querySelector('img.example-image');
      return {box: box(e), image: img ? {box: box(img), complete: img.complete, natural: [img.naturalWidth, img.naturalHeight],
              src: img.src} : null, captions: e.querySelectorAll('table.captions tr').length}; }),
    pageHeight: document.documentElement.scrollHeight,
  };
})()"""


def test_html_report_renders_in_chromium(run_cli, fixture_run, chromium, tmp_path):
    """Open report.html in headless Chromium and look at the pixels of the tables, the curve and
    the gallery: laid out, decoded, and showing what the source holds; nothing fetched."""
    import numpy as np

    from tests.browser import Browser

    assert run_cli("report", str(fixture_run))[0] == 0
    with Browser(chromium) as browser:
        browser.open(fixture_run / "report.html")
        page = browser.evaluate(MEASURE)
        full_png = browser.screenshot()
        (tmp_path / "report.png").write_bytes(full_png)  # kept for a person to look at when this fails
        full = _crop(full_png)
        shots = {"table": [_crop(browser.screenshot(t["box"])) for t in page["tables"]],
                 "curve": [_crop(browser.screenshot(c["box"])) for c in page["curve"]],
                 "gallery": [_crop(browser.screenshot(g["image"]["box"])) for g in page["gallery"][:6]]}
        requests = browser.requests

    # nothing but the page itself and its inline data was requested
    assert requests and all(url.startswith(("file://", "data:")) for url in requests), requests
    assert full.shape[0] >= page["pageHeight"] * 0.9 and full.std() > 10  # a whole, non-blank page

    # tables: 3 method tables + 3 significance tables + 3 seed-spread tables + noise + ablation + 2 model card tables
    assert len(page["tables"]) == 13
    for table, shot in zip(page["tables"], shots["table"]):
        assert table["visible"] and table["box"]["width"] > 200 and table["box"]["height"] > 18 * table["rows"] * 0.8
        # every body cell shows text: dark pixels inside it (its borders are light grey)
        for cell in table["cells"]:
            top, left = round(cell["y"] - table["box"]["y"]) + 3, round(cell["x"] - table["box"]["x"]) + 3
            inner = shot[top:top + round(cell["height"]) - 6, left:left + round(cell["width"]) - 6]
            assert inner.size and (inner.mean(axis=2) < 110).sum() >= 8, (cell, table["rows"])
    best_tables = [t for t in page["tables"] if t["best"]]
    assert len(best_tables) >= 4  # the three method tables and the ablation mark their best values
    green = np.array([230, 244, 234])  # the .best background
    for table, shot in zip(page["tables"], shots["table"]):
        if table["best"]:
            assert table["bestColour"] == "rgb(230, 244, 234)"
            assert (np.abs(shot - green).sum(axis=2) < 6).mean() > 0.003  # the highlight is visible

    # the curve: decoded, and what is on screen is the figure itself
    (curve,) = page["curve"]
    assert curve["complete"] and curve["natural"][0] > 500 and curve["box"]["width"] > 500
    shot = shots["curve"][0]
    source = _source_image(curve["src"], (shot.shape[1], shot.shape[0]))
    assert np.abs(shot - source).mean() < 12, np.abs(shot - source).mean()
    assert np.abs(shot - source[::-1]).mean() > 2 * np.abs(shot - source).mean()  # the comparison can tell images apart

    # the gallery: six examples per split, each image decoded and shown, each method's caption beside it
    assert len(page["gallery"]) == 18
    for example, shot in zip(page["gallery"], shots["gallery"]):
        image = example["image"]
        assert image["complete"] and image["natural"] == [48, 48] and image["box"]["width"] >= 100
        assert example["captions"] == 4
        source = _source_image(image["src"], (shot.shape[1], shot.shape[0]))
        assert np.abs(shot - source).mean() < 20
        assert shot.std() > 20  # a coloured shape on a light background, not an empty box


def _rewrite_samples(folder: Path, cell: str, change) -> None:
    path = folder / "samples" / f"{cell}.json"
    path.write_text(json.dumps(change(json.loads(path.read_text()))), encoding="utf-8")


def _significance(text: str, heading: str) -> dict[str, list[str]]:
    block = text.split(heading)[1].split("Bootstrap intervals and paired tests:")[1].split("\n\n")[1]
    rows = [line.strip("| ").split(" | ") for line in block.splitlines()[2:]]
    return {r[0]: r[1:] for r in rows}


def test_no_test_is_claimed_against_a_best_row_without_evidence(run_cli, fixture_run):
    from bench.records import read_records

    assert run_cli("report", str(fixture_run))[0] == 0
    before = _significance((fixture_run / "report.md").read_text(), "### In-domain")
    best = next(name for name, cells in before.items() if cells[5] == "best")  # the BLEU-4 best row
    for record in read_records(fixture_run).records:
        if record.method == best and record.split == "shapes-coco" and record.role == "main":
            _rewrite_samples(fixture_run, record.cell_id, lambda rows: [{k: v for k, v in s.items() if k != "bleu_stats"}
                                                                        for s in rows])
    assert run_cli("report", str(fixture_run))[0] == 0
    after = _significance((fixture_run / "report.md").read_text(), "### In-domain")
    assert after[best][4:] == ["–", "best"]  # still the best value, but no interval of its own
    assert all(cells[5] == "–" for name, cells in after.items() if name != best)  # no test against nothing
    assert all(cells[1].startswith("[") for cells in after.values())  # CIDEr is untouched


def test_a_non_finite_bleu_statistic_gives_no_interval_rather_than_nan(run_cli, fixture_run):
    from bench.records import read_records

    assert run_cli("report", str(fixture_run))[0] == 0
    before = _significance((fixture_run / "report.md").read_text(), "### In-domain")
    other = next(name for name, cells in before.items() if cells[5] not in ("best", "–"))  # a row tested against the best

    def damage(rows):
        rows[0]["bleu_stats"][0] = float("nan")
        return rows

    for record in read_records(fixture_run).records:
        if record.method == other and record.split == "shapes-coco" and record.role == "main":
            _rewrite_samples(fixture_run, record.cell_id, damage)
    code, _, err = run_cli("report", str(fixture_run))
    assert code == 0, err
    text = (fixture_run / "report.md").read_text()
    after = _significance(text, "### In-domain")
    assert after[other][4:] == ["–", "–"]  # no BLEU interval and no test for the damaged row
    assert after[other][1].startswith("[")  # its CIDEr evidence is untouched
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)


def test_damaged_side_files_are_warnings_not_tracebacks(run_cli, fixture_run):
    (fixture_run / "run.json").write_text("{not json")
    cell = next((fixture_run / "samples").iterdir())
    cell.write_text('{"not": "a list"}')
    second = sorted((fixture_run / "samples").iterdir())[1]
    second.write_bytes(b"\xff\xfe\x00garbage")
    code, _, err = run_cli("report", str(fixture_run))
    assert code == 0, err
    assert "run.json is not valid JSON" in err
    assert f"{cell.name} is not a list of per-image samples" in err and f"{second.name} is not a list" in err
    text = (fixture_run / "report.md").read_text()
    assert "No CIDEr interval for" in text and "## Provenance" in text


def test_list_valued_settings_make_an_ablation_column(run_cli, fixture_run):
    path = fixture_run / "records.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    for r in records:
        if r["method"] == "syntic":
            r["config"]["vocabulary"] = ["circle", "square"] if r["config"]["optimise"] else ["circle"]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run_cli("report", str(fixture_run))
    assert code == 0, err
    assert "| optimise | project | vocabulary |" in (fixture_run / "report.md").read_text()


@pytest.mark.parametrize("argv, fragment", [
    (["--seed", "-1"], "--seed must be >= 0"),
    (["--gallery", "-2"], "--gallery must be >= 0"),
    (["--out", "FILE"], "is a file, not a folder"),
])
def test_report_bad_options(run_cli, fixture_run, tmp_path, argv, fragment):
    (tmp_path / "FILE").write_text("x")
    argv = [str(tmp_path / "FILE") if a == "FILE" else a for a in argv]
    code, _, err = run_cli("report", str(fixture_run), *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err


def test_noise_curves_are_told_apart_by_their_settings(tmp_path):
    from bench.records import Record, RecordStore
    from bench.reporting.collect import load_run
    from bench.reporting.figures import noise_curves

    store = RecordStore(tmp_path)
    for layers in (2, 4):
        for noise in (0.0, 0.016):
            store.add(Record(method="capdec", split="coco", train="coco", eval="coco", kind="in-domain", seed=0,
                             config={"noise_variance": noise, "decoder": {"layers": layers}}, noise_variance=noise,
                             metrics={"cider": 50.0 + layers + noise, "bleu4": 20.0}))
    curves = noise_curves(load_run(tmp_path))
    assert sorted(c.label for c in curves) == ["coco · decoder.layers=2", "coco · decoder.layers=4"]
    assert all(len(c.points) == 2 for c in curves)


def test_a_noise_curve_compares_like_with_like_when_its_points_ran_with_different_seeds(tmp_path):
    """The embedded default's sweep: seed 0 at every σ², seeds 0-2 at the main cell's σ². The
    line must go through seed 0 everywhere (a 3-seed mean at one point is a step made of seeds);
    the point's 3-seed mean is kept beside it, and the table says so."""
    from bench.records import Record, RecordStore
    from bench.reporting.collect import load_run
    from bench.reporting.figures import noise_curves, plot_noise_curves
    from bench.reporting.tables import noise_table

    store = RecordStore(tmp_path)
    cider = {(0.0, 0): 100.0, (0.001, 0): 150.0, (0.016, 0): 160.0, (0.016, 1): 130.0, (0.016, 2): 145.0}
    for (noise, seed), value in cider.items():
        store.add(Record(method="capdec", split="coco", train="coco", eval="coco", kind="in-domain", seed=seed,
                         config={"noise_variance": noise}, noise_variance=noise, metrics={"cider": value, "bleu4": 20.0 + seed}))
    (curve,) = noise_curves(load_run(tmp_path))
    assert curve.common_seeds == [0]
    by_noise = {p.noise: p for p in curve.points}
    assert by_noise[0.016].mean["cider"] == 160.0 and by_noise[0.016].seeds == 1  # seed 0, not the 3-seed mean
    assert by_noise[0.016].all_seeds == 3 and by_noise[0.016].all_mean["cider"] == pytest.approx(145.0)
    lo, hi = by_noise[0.016].all_band["cider"]
    assert lo < 145.0 < hi
    assert not by_noise[0.001].all_mean  # ran with seed 0 only: nothing beside it
    notes = " ".join(noise_table([curve]).notes)
    assert "seed 0" in notes and "145.00" in notes and "3 seeds" in notes
    assert all(p.exists() for p in plot_noise_curves([curve], tmp_path / "figures"))
    # every point with the same seeds: each point is its own mean, nothing is set aside
    other = RecordStore(tmp_path / "same")
    for noise in (0.0, 0.016):
        for seed in (0, 1):
            other.add(Record(method="capdec", split="coco", train="coco", eval="coco", kind="in-domain", seed=seed,
                             config={"noise_variance": noise}, noise_variance=noise, metrics={"cider": 10.0 * (seed + 1)}))
    (same,) = noise_curves(load_run(tmp_path / "same"))
    assert same.common_seeds is None and all(p.seeds == 2 and p.mean["cider"] == 15.0 and not p.all_mean for p in same.points)


def test_an_ablation_compares_rows_on_the_seeds_they_share(tmp_path):
    """The all-on row shares the main table's three seeds; the other combination ran seed 0. Its
    3-seed mean (60) is below the other row (65) only because seeds 1 and 2 were unlucky; on seed
    0, which both ran, it leads (70). The bold must follow the like-for-like comparison."""
    from bench.records import Record, RecordStore
    from bench.reporting.collect import load_run
    from bench.reporting.tables import ablation_tables

    store = RecordStore(tmp_path)
    rows = [(True, 0, 70.0), (True, 1, 55.0), (True, 2, 55.0), (False, 0, 65.0)]
    for on, seed, cider in rows:
        store.add(Record(method="syntic", split="coco", train="coco", eval="coco", kind="in-domain", seed=seed,
                         config={"optimise": on}, metrics={"cider": cider, "bleu4": 10.0}))
    ((method, keys, table),) = ablation_tables(load_run(tmp_path))
    frame, best = table.frame, table.best
    on_row = frame.index[frame["optimise"] == "✓"][0]
    off_row = frame.index[frame["optimise"] == "✗"][0]
    col = "coco CIDEr"
    assert frame.loc[on_row, col].startswith("70.00 (seed 0) · 60.00") and "over 3 seeds" in frame.loc[on_row, col]
    assert frame.loc[off_row, col].startswith("65.00")
    assert bool(best.loc[on_row, col]) and not bool(best.loc[off_row, col])
    assert "compared on seed 0" in " ".join(table.notes)
    assert " ".join(table.notes).startswith("✓ on, ✗ off.")  # its settings are switches


def test_an_ablation_over_a_number_has_no_switch_legend(tmp_path):
    """ifcap's k is a number, not a switch: its table shows the values and no "✓ on" legend."""
    from bench.records import Record, RecordStore
    from bench.reporting.collect import load_run
    from bench.reporting.tables import ablation_tables

    store = RecordStore(tmp_path)
    for k, cider in ((1, 60.0), (5, 70.0)):
        for split in ("coco", "flickr"):
            store.add(Record(method="ifcap", split=split, train="coco", eval=split, kind="in-domain", seed=0,
                             config={"k": k}, metrics={"cider": cider, "bleu4": 10.0}))
    ((_, keys, table),) = ablation_tables(load_run(tmp_path))
    assert keys == ["k"] and sorted(table.frame["k"]) == ["1", "5"]
    assert not any("✓" in note for note in table.notes)
    assert table.notes[0].startswith("Each value: the metric")


def test_reader_notes_say_when_cells_ran_with_different_thread_counts():
    from bench.records import Record
    from bench.reporting.collect import reader_notes

    def record(seed, threads):
        return Record(method="capdec", split="coco", train="coco", eval="coco", kind="in-domain", seed=seed, config={},
                      metrics={"cider": 1.0}, encoder="e@1", train_fingerprint="t", eval_fingerprint="v", threads=threads)

    assert not any("thread" in n for n in reader_notes([record(0, 2), record(1, 2)]))
    notes = [n for n in reader_notes([record(0, 2), record(1, 1)]) if "thread" in n]
    assert len(notes) == 1 and "(1, 2)" in notes[0]
    # a cell that reused a fit trained elsewhere: the fit's threads count, not the cell's process's
    import dataclasses

    reused = dataclasses.replace(record(1, 2), fit_info={"threads": 1, "steps": 10})
    notes = [n for n in reader_notes([record(0, 2), reused]) if "thread" in n]
    assert len(notes) == 1 and "(1, 2)" in notes[0]


def test_reader_notes_say_when_cells_ran_on_different_devices():
    import dataclasses

    from bench.records import Record
    from bench.reporting.collect import reader_notes

    def record(seed, device):
        return Record(method="capdec", split="coco", train="coco", eval="coco", kind="in-domain", seed=seed, config={},
                      metrics={"cider": 1.0}, encoder="e@1", train_fingerprint="t", eval_fingerprint="v", device=device)

    assert not any("devices" in n for n in reader_notes([record(0, "cuda:0"), record(1, "cuda:1")]))  # one kind
    notes = [n for n in reader_notes([record(0, "cpu"), record(1, "cuda:0")]) if "devices" in n]
    assert len(notes) == 1 and "(cpu, cuda)" in notes[0]
    # a cell that reused a decoder trained on a GPU: the fit's device counts
    notes = [n for n in reader_notes([record(0, "cpu"), dataclasses.replace(record(1, "cpu"), fit_info={"device": "cuda:0"})])
             if "devices" in n]
    assert len(notes) == 1 and "(cpu, cuda)" in notes[0]


def _merged_encoders(folder: Path) -> None:
    """Records merged from two runs with different encoders: a main row and an ablation row of
    syntic, and a three-point capdec sweep, under each encoder (encoder B's numbers 50 higher)."""
    from bench.records import Record, RecordStore

    store = RecordStore(folder)
    for encoder, shift in (("A@1", 0.0), ("B@2", 50.0)):
        common = dict(split="coco", train="coco", eval="coco", kind="in-domain", seed=0, encoder=encoder,
                      train_fingerprint="t", eval_fingerprint="v")
        for on in (True, False):
            store.add(Record(method="syntic", config={"optimise": on}, metrics={"cider": 100.0 + shift + on, "bleu4": 10.0},
                             role="main" if on else "ablation", **common))
        for noise, cider in ((0.0, 100.0), (0.01, 110.0), (0.1, 80.0)):
            store.add(Record(method="capdec", config={"noise_variance": noise}, noise_variance=noise,
                             metrics={"cider": cider + shift, "bleu4": 20.0}, role="main" if noise == 0.01 else "noise-sweep",
                             **common))


def test_rows_of_two_encoders_never_share_a_table_a_curve_or_a_test(tmp_path):
    from bench.reporting.collect import load_run
    from bench.reporting.figures import noise_curves
    from bench.reporting.render import render_report
    from bench.reporting.tables import ablation_tables, noise_table

    _merged_encoders(tmp_path)
    data = load_run(tmp_path)
    curves = noise_curves(data)
    assert sorted(c.label for c in curves) == ["coco · encoder A@1", "coco · encoder B@2"]
    for curve in curves:  # one point per σ², from its own encoder
        shift = 50.0 if "B@2" in curve.label else 0.0
        assert [(p.noise, p.mean["cider"]) for p in curve.points] == [(0.0, 100 + shift), (0.01, 110 + shift), (0.1, 80 + shift)]
    assert "encoder A@1 CIDEr" in " ".join(noise_table(curves).frame.columns)
    ablations = ablation_tables(data)
    assert sorted(m for m, _, _ in ablations) == ["syntic (encoder A@1)", "syntic (encoder B@2)"]
    for method, _, table in ablations:
        assert len(table.frame) == 2  # both switch settings of its own encoder
        assert all(("15" in v) == ("B@2" in method) for v in table.frame["coco CIDEr"])
    # each encoder's main rows get their own tables: no best row or test across encoders
    text = render_report(tmp_path, gallery=0).markdown.read_text(encoding="utf-8")
    assert "### In-domain: coco (encoder A@1)" in text and "### In-domain: coco (encoder B@2)" in text
    section_a = text.split("### In-domain: coco (encoder A@1)")[1].split("###")[0]
    assert "B@2" not in section_a and "**110.00**" in section_a


def test_the_best_row_of_a_main_table_is_chosen_on_the_seeds_every_row_ran(tmp_path):
    """b's seed 2 failed: over its two seeds it averages 99.5 against a's 99.3 over three, but on
    seeds 0 and 1, which both ran, a leads (110 against 99.5)."""
    from bench.records import Record, RecordStore
    from bench.reporting.collect import best_row, load_run
    from bench.reporting.tables import method_table

    store = RecordStore(tmp_path)
    for method, ciders in (("a", (110.0, 110.0, 78.0)), ("b", (99.0, 100.0))):
        for seed, cider in enumerate(ciders):
            store.add(Record(method=method, split="coco", train="coco", eval="coco", kind="in-domain", seed=seed, config={},
                             metrics={"cider": cider, "bleu4": 10.0 + seed}))
    data = load_run(tmp_path)
    rows = data.rows_for("coco")
    assert best_row(rows, "cider").method == "a"
    table = method_table(data, "coco")
    a = table.frame.index[table.frame["method"] == "a"][0]
    assert bool(table.best.loc[a, "CIDEr"]) and "chosen on seeds 0, 1" in " ".join(table.notes)


def test_a_seed_without_a_number_is_named_and_keeps_the_interval_off_the_mean(run_cli, fixture_run):
    """A record holding null (or NaN) for a metric: the mean shown covers the other seeds and says
    so, and no interval is given that would cover seeds the mean does not."""
    from bench.reporting.collect import load_run
    from bench.reporting.tables import method_table, significance_table

    lines = (fixture_run / "records.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    data = load_run(fixture_run)
    row = next(r for r in data.rows if len(r.records) > 1 and r.intervals.get("cider"))
    target = row.records[0].cell_id
    for record in records:
        if record["cell_id"] == target:
            record["metrics"]["cider"] = None
    (fixture_run / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    data = load_run(fixture_run)
    row = next(r for r in data.rows if any(x.cell_id == target for x in r.records))
    n = len(row.records)
    assert row.lacking("cider") == [row.records[0].seed] and "cider" not in row.intervals
    assert "has no CIDEr value in its record" in row.missing["cider"]
    shown = method_table(data, row.split).frame
    cell = shown.loc[shown["method"] == row.label, "CIDEr"].iloc[0]
    assert f"({n - 1} of {n} seeds)" in cell and "nan" not in cell
    sig = significance_table(data, row.split)
    assert sig.frame.loc[sig.frame["method"] == row.label, "CIDEr 95% CI"].iloc[0] == "–"
    code, out, err = run_cli("report", str(fixture_run), "--gallery", "0")
    assert code == 0, err


def _trained_run(folder: Path) -> None:
    """nonoise and capdec train a decoder per seed on coco; decap reuses nonoise's; the
    cross-domain cells reuse the in-domain fits; clipre trains none; a sweep point trains its own."""
    from bench.records import Record, RecordStore

    store = RecordStore(folder)
    decoder = {"kind": "transformer", "layers": 2, "width": 128, "epochs": 2.0, "batch_size": 128, "lr": 0.002}

    def fit(key, loss, seconds, reused=False):
        return {"steps": 314, "seconds": seconds, "first_loss": 4.1, "final_loss": loss, "decoder_key": key,
                "decoder_reused": reused}

    for seed, (n_loss, c_loss) in enumerate(((0.78, 1.10), (0.80, 1.14))):
        for split, eval_, kind in (("coco", "coco", "in-domain"), ("coco->flickr", "flickr", "cross-domain")):
            common = dict(split=split, train="coco", eval=eval_, kind=kind, seed=seed, encoder="e@1",
                          train_fingerprint="t", eval_fingerprint="v", metrics={"cider": 100.0 + seed, "bleu4": 20.0})
            store.add(Record(method="nonoise", config={"noise_variance": 0.0, "decoder": decoder}, noise_variance=0.0,
                             fit_info=fit(f"n{seed}", n_loss, 16.0 + seed), **common))
            store.add(Record(method="capdec", config={"noise_variance": 0.016, "decoder": decoder}, noise_variance=0.016,
                             fit_info=fit(f"c{seed}", c_loss, 17.0), **common))
            store.add(Record(method="decap", config={"decoder": decoder}, fit_info=fit(f"n{seed}", n_loss, 16.0 + seed, True),
                             **common))
            store.add(Record(method="clipre", config={}, fit_info={"index_size": 20}, **common))
    store.add(Record(method="capdec", split="coco", train="coco", eval="coco", kind="in-domain", seed=0, encoder="e@1",
                     train_fingerprint="t", eval_fingerprint="v", config={"noise_variance": 0.1, "decoder": decoder},
                     noise_variance=0.1, role="noise-sweep", metrics={"cider": 50.0, "bleu4": 20.0},
                     fit_info=fit("s0", 1.3, 17.0)))


def test_the_training_section_names_each_main_rows_decoder_its_schedule_and_its_loss(tmp_path):
    from bench.reporting.collect import load_run
    from bench.reporting.render import render_report
    from bench.reporting.tables import training_table

    _trained_run(tmp_path)
    table = training_table(load_run(tmp_path))
    rows = {r["method"]: r for r in table.frame.to_dict("records")}
    assert sorted(rows) == ["capdec", "decap", "nonoise"]  # clipre trains nothing; the sweep point is not a main row
    assert rows["nonoise"]["final loss"] == "0.790 ± 0.014" and rows["nonoise"]["fit (s)"] == "16.5"
    assert rows["capdec"]["final loss"] == "1.120 ± 0.028" and rows["capdec"]["epochs"] == "2"
    assert rows["capdec"]["steps"] == "314" and rows["capdec"]["seeds"] == "seeds 0, 1"
    assert rows["capdec"]["decoder"] == "transformer, 2 layers × 128, batch 128, lr 0.002"
    # decap decodes with nonoise's decoders: their loss and their training time, the sharing said on both rows
    assert rows["decap"]["decoder"].endswith("; shared with nonoise") and rows["nonoise"]["decoder"].endswith("; shared with decap")
    assert rows["decap"]["final loss"] == "0.790 ± 0.014" and rows["decap"]["fit (s)"] == "16.5"
    assert (table.frame["trained on"] == "coco").all()  # the cross-domain cells' reused fits add no row
    text = render_report(tmp_path, gallery=0).markdown.read_text(encoding="utf-8")
    assert text.index("## Training") < text.index("## Encoder")
    assert "--set decoder.epochs=N" in text.split("## Training")[1]


def _fit_record(method, seed, *, split="coco", eval_="coco", kind="in-domain", encoder="e@1", config=None, noise=None,
                loss=1.0, seconds=10.0, key=None, reused=False):
    from bench.records import Record

    info = {"steps": 314, "final_loss": loss, "decoder_key": key or f"{method}{seed}{encoder}{noise}", "decoder_reused": reused}
    if seconds is not None:
        info["seconds"] = seconds
    return Record(method=method, split=split, train="coco", eval=eval_, kind=kind, seed=seed, encoder=encoder,
                  train_fingerprint="t", eval_fingerprint="v", config=config or {"decoder": {"layers": 2, "epochs": 2.0}},
                  noise_variance=noise, metrics={"cider": 100.0, "bleu4": 20.0}, fit_info=info)


def _training_rows(folder, records):
    from bench.records import RecordStore
    from bench.reporting.collect import load_run
    from bench.reporting.tables import training_table

    store = RecordStore(folder)
    for record in records:
        store.add(record)
    return training_table(load_run(folder)).frame.to_dict("records")


def test_training_rows_are_fits_not_table_rows(tmp_path):
    """A cross-domain split that holds fewer variants than the in-domain one (a cell failed) adds
    no row for the fit it reused; a cross-domain cell computed with another encoder is another
    fit, shown and named; decoders that differ in one setting are told apart by it."""
    cross = dict(split="coco->flickr", eval_="flickr", kind="cross-domain")
    capdec = [_fit_record("capdec", 0, noise=n, config={"noise_variance": n, "decoder": {"epochs": 2.0}}, loss=loss)
              for n, loss in ((0.016, 1.1), (0.1, 1.4))]
    capdec.append(_fit_record("capdec", 0, noise=0.1, config={"noise_variance": 0.1, "decoder": {"epochs": 2.0}}, loss=1.4,
                              **cross))
    rows = _training_rows(tmp_path / "a", capdec)
    assert [(r["method"], r["final loss"]) for r in rows] == [("capdec (σ²=0.016)", "1.100"), ("capdec (σ²=0.1)", "1.400")]

    other_encoder = [_fit_record("nonoise", 0, loss=0.78), _fit_record("nonoise", 0, encoder="e@2", loss=1.5, **cross)]
    rows = _training_rows(tmp_path / "b", other_encoder)
    assert sorted((r["method"], r["final loss"]) for r in rows) == [("nonoise (encoder e@1)", "0.780"),
                                                                    ("nonoise (encoder e@2)", "1.500")]

    heads = [_fit_record("nonoise", 0, config={"decoder": {"heads": h}}, loss=loss, key=f"h{h}") for h, loss in ((4, 0.78), (8, 0.9))]
    rows = _training_rows(tmp_path / "c", heads)
    assert sorted(r["method"] for r in rows) == ["nonoise (decoder.heads=4)", "nonoise (decoder.heads=8)"]


def test_a_shared_decoder_reads_the_same_whichever_method_trained_it(tmp_path):
    """With decap trained first in seed 0 and nonoise in seed 1 (the order a run happened to
    take), both rows name the sharing and show every seed's training time."""
    records = [_fit_record("decap", 0, key="k0", seconds=20.0), _fit_record("nonoise", 0, key="k0", seconds=20.0, reused=True),
               _fit_record("nonoise", 1, key="k1", seconds=30.0), _fit_record("decap", 1, key="k1", seconds=30.0, reused=True)]
    rows = {r["method"]: r for r in _training_rows(tmp_path, records)}
    assert rows["decap"]["fit (s)"] == rows["nonoise"]["fit (s)"] == "25.0"
    assert rows["decap"]["decoder"].endswith("shared with nonoise") and rows["nonoise"]["decoder"].endswith("shared with decap")


def test_a_training_value_missing_for_some_seeds_says_over_how_many(tmp_path):
    records = [_fit_record("nonoise", 0, seconds=None, loss=0.8), _fit_record("nonoise", 1, seconds=16.0, loss=float("nan")),
               _fit_record("nonoise", 2, seconds=18.0, loss=0.9)]
    (row,) = _training_rows(tmp_path, records)
    assert row["seeds"] == "seeds 0, 1, 2"
    assert row["fit (s)"] == "17.0 (2 of 3 seeds)" and row["final loss"] == "0.850 ± 0.071 (2 of 3 seeds)"


def test_a_run_that_trained_no_decoder_has_no_training_section(tmp_path):
    from bench.records import Record, RecordStore
    from bench.reporting.render import render_report

    RecordStore(tmp_path).add(Record(method="clipre", split="coco", train="coco", eval="coco", kind="in-domain", seed=0,
                                     encoder="e@1", train_fingerprint="t", eval_fingerprint="v", config={},
                                     metrics={"cider": 90.0, "bleu4": 20.0}, fit_info={"index_size": 20}))
    text = render_report(tmp_path, gallery=0).markdown.read_text(encoding="utf-8")
    assert "## Results" in text and "## Training" not in text


def test_a_row_with_a_switch_off_is_not_named_by_the_settings_that_switch_leaves_unused(tmp_path):
    """viecap at top_k 5 with its hard prompt on, and its hard-prompt-off row (top_k at its unused
    default, which its record says, as the runner writes it): the off row is "hard_prompt=off", not
    "top_k=3", which it never used."""
    from bench.records import Record, RecordStore, varying_settings
    from bench.reporting.collect import load_run

    store = RecordStore(tmp_path)
    for hard, top_k in ((True, 5), (True, 1), (False, 3)):
        store.add(Record(method="viecap", split="coco", train="coco", eval="coco", kind="in-domain", seed=0,
                         config={"noise_variance": 0.016, "hard_prompt": hard, "top_k": top_k}, noise_variance=0.016,
                         metrics={"cider": 50.0 + top_k + hard, "bleu4": 20.0},
                         extra={} if hard else {"unused_settings": ["top_k"]}))
    data = load_run(tmp_path)
    assert sorted(r.label for r in data.rows) == ["viecap (hard_prompt=off)", "viecap (hard_prompt=on, top_k=1)",
                                                  "viecap (hard_prompt=on, top_k=5)"]
    shown = sorted(varying_settings(data.records).values())
    assert shown == ["hard_prompt=off", "hard_prompt=on top_k=1", "hard_prompt=on top_k=5"]
    from bench.reporting.tables import ablation_tables

    ((_, keys, table),) = ablation_tables(data)
    assert keys == ["hard_prompt", "top_k"]
    assert sorted(zip(table.frame["hard_prompt"], table.frame["top_k"])) == [("✓", "1"), ("✓", "5"), ("✗", "–")]
    # top_k set for the run and swept only through the switch: it does not vary where it is used,
    # so it names no row at all
    other = tmp_path / "other"
    store = RecordStore(other)
    for hard, top_k in ((True, 5), (False, 3)):
        store.add(Record(method="viecap", split="coco", train="coco", eval="coco", kind="in-domain", seed=0,
                         config={"noise_variance": 0.016, "hard_prompt": hard, "top_k": top_k}, noise_variance=0.016,
                         metrics={"cider": 50.0 + top_k, "bleu4": 20.0}, extra={} if hard else {"unused_settings": ["top_k"]}))
    assert sorted(r.label for r in load_run(other).rows) == ["viecap (hard_prompt=off)", "viecap (hard_prompt=on)"]


def test_the_best_row_is_tested_on_the_seeds_it_was_chosen_on(tmp_path):
    """Row A ran seeds 0-2 (CIDEr 10, 10, 0 on every image), row B seeds 0-1 (9, 9). On the seeds
    both ran A leads, so A is the best row; B's test against it must compare the same seeds too
    (on A's three it would set A's unlucky seed 2 against nothing of B's and find no difference)."""
    import numpy as np

    from bench.records import Record, RecordStore, Sample
    from bench.reporting.collect import load_run
    from bench.reporting.tables import significance_table

    store = RecordStore(tmp_path)
    rng = np.random.default_rng(0)
    for method, values in (("decap", {0: 10.0, 1: 10.0, 2: 0.0}), ("capdec", {0: 9.0, 1: 9.0})):
        for seed, value in values.items():
            per = value + rng.normal(0, 0.5, 30)
            record = Record(method=method, split="coco", train="coco", eval="coco", kind="in-domain", seed=seed, config={},
                            metrics={"cider": float(per.mean()), "bleu4": 20.0}, n_images=30)
            store.add(record, [Sample(str(i), f"{i}.png", "a cat", ("a cat",), {"cider": float(v)}) for i, v in enumerate(per)])
    data = load_run(tmp_path)
    a, b = (next(r for r in data.rows if r.method == m) for m in ("decap", "capdec"))
    assert a.mean("cider") < b.mean("cider") and a.intervals["cider"].p_value is None  # A is best, on seeds 0 and 1
    assert b.intervals["cider"].p_value < 0.05
    assert any("tested against, on seeds 0, 1" in note for note in significance_table(data, "coco").notes)


def test_a_report_says_which_cells_failed_and_are_missing_from_its_tables(run_cli, fixture_run):
    """failures.jsonl holds the cells that failed; those without a record (none succeeded later)
    are named at the top, so that a table short of a method is not read as complete."""
    from bench.records import read_records

    recorded = read_records(fixture_run).records[0]
    lines = [{"cell_id": "deadbeefdeadbeef", "cell": "capdec σ²=0.016 on coco (seed 1)", "error": "Traceback...\nMemoryError: out"},
             {"cell_id": recorded.cell_id, "cell": "an earlier failure of a cell that succeeded since", "error": "x"}]
    (fixture_run / "failures.jsonl").write_text("".join(json.dumps(e) + "\n" for e in lines) + "not json\n")
    assert run_cli("report", str(fixture_run))[0] == 0
    text = (fixture_run / "report.md").read_text(encoding="utf-8")
    assert ("Warning: 1 cell(s) of this folder failed and have no result, so the tables lack them: capdec σ²=0.016 on "
            "coco (seed 1) (first error: MemoryError: out; all in failures.jsonl).") in text
    assert "succeeded since" not in text


def test_rows_of_one_seed_each_are_told_that_seed_luck_is_unmeasured(tmp_path):
    """Intervals over the test images say nothing of how training varies with the seed: with every
    row on one seed, the significance table says so (and with several seeds it does not)."""
    from bench.records import Record, RecordStore
    from bench.reporting.collect import load_run
    from bench.reporting.tables import significance_table

    for seeds, folder in (((3,), "one"), ((3, 4), "two")):
        store = RecordStore(tmp_path / folder)
        for method, value in (("decap", 10.0), ("capdec", 9.0)):
            for seed in seeds:
                store.add(Record(method=method, split="coco", train="coco", eval="coco", kind="in-domain", seed=seed, config={},
                                 metrics={"cider": value, "bleu4": 20.0}))
        notes = " ".join(significance_table(load_run(tmp_path / folder), "coco").notes)
        assert ("Every row ran with one seed (3): a difference between rows may be that seed's luck" in notes) == (folder == "one")



def test_each_rows_seed_spread_is_split_into_the_test_sets_floor_and_the_rest(tmp_path):
    """Three seeds on 300 images: 'steady' differs from seed to seed image by image only, 'shaky'
    also by a seed offset on every image, 'fixed' not at all (a deterministic method). The report's
    seed-spread table holds what ``bench.stats.seed_spread`` gives on the samples, and its note
    names only the row whose seeds differ by more than the images explain; with one seed a row has
    no spread, and no table is shown."""
    import numpy as np

    from bench.records import Record, RecordStore, Sample
    from bench.reporting.collect import load_run
    from bench.reporting.tables import seed_spread_table
    from bench.stats import seed_spread

    rng = np.random.default_rng(0)
    hard = rng.gamma(2.0, 40.0, 300)  # how hard each image is, shared by every seed
    tables = {"steady": hard + rng.normal(0, 30, (3, 300)), "shaky": hard + rng.normal(0, 30, (3, 300)) + [[-12.0], [0.0], [12.0]],
              "fixed": np.stack([hard] * 3),
              "rounding": hard + rng.normal(0, 1e-4, (3, 300)) + [[-3e-5], [0.0], [3e-5]]}  # apart by float noise only
    store, single = RecordStore(tmp_path / "three"), RecordStore(tmp_path / "one")
    for method, table in tables.items():
        for seed, per in enumerate(table):
            record = Record(method=method, split="coco", train="coco", eval="coco", kind="in-domain", seed=seed, config={},
                            metrics={"cider": float(per.mean()), "bleu4": 20.0}, n_images=300)
            samples = [Sample(str(i), f"{i}.png", "a cat", ("a cat",), {"cider": float(v)}) for i, v in enumerate(per)]
            store.add(record, samples)
            if seed == 0:
                single.add(record, samples)
    data = load_run(tmp_path / "three")
    table = seed_spread_table(data.rows_for("coco"))
    shown = {row["method"]: row for _, row in table.frame.iterrows()}
    for method, values in tables.items():
        expected = seed_spread(values, seed=data.seed)
        assert shown[method]["CIDEr std over seeds"] == f"{expected.observed:.2f}"
        assert shown[method]["floor (test images)"] == f"{expected.floor:.2f}"
        assert shown[method]["systematic"] == f"{expected.systematic:.2f}"
    assert float(shown["steady"]["p (seed effect)"]) > 0.05 and shown["shaky"]["p (seed effect)"] == "<0.001"
    assert shown["fixed"]["CIDEr std over seeds"] == "0.00" and shown["fixed"]["p (seed effect)"] == "–"
    assert shown["rounding"]["CIDEr std over seeds"] == "0.00"  # its tiny p names nothing: no spread shows
    assert any(note.startswith("shaky: the seeds differ by more than the test images explain") for note in table.notes)
    assert not any(word in note for note in table.notes for word in ("steady", "fixed", "rounding"))
    assert seed_spread_table(load_run(tmp_path / "one").rows_for("coco")) is None
    # a row of several seeds whose samples cannot be read is said to be left out, not dropped silently
    shaky = next(r for r in data.rows if r.method == "shaky")
    (tmp_path / "three" / "samples" / f"{shaky.records[1].cell_id}.json").unlink()
    table = seed_spread_table(load_run(tmp_path / "three").rows_for("coco"))
    assert "shaky" not in set(table.frame["method"])
    assert any(note.startswith("Not shown, though run with several seeds: shaky") for note in table.notes)
