import json
import shutil
from pathlib import Path

import pytest

from bench.check import DEFAULT_TOLERANCES, check, config_diff

FIXTURE = Path(__file__).parent / "fixtures" / "report_run" / "records.jsonl"


def _records() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def _write(path: Path, records: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.fixture
def baseline(tmp_path) -> Path:
    return _write(tmp_path / "baseline" / "records.jsonl", _records())


def _changed(tmp_path, change) -> Path:
    records = _records()
    change(records)
    return _write(tmp_path / "run" / "records.jsonl", records)


def test_identical_records_pass(run_cli, baseline, tmp_path):
    run = shutil.copytree(baseline.parent, tmp_path / "run")
    code, out, err = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 0, out + err
    assert out.startswith("ok: no metric fell") and f"{len(_records())} cells" in out
    assert "warning" not in err


def test_a_drop_beyond_tolerance_fails_and_names_the_cell(run_cli, baseline, tmp_path):
    def drop(records):
        records[0]["metrics"]["cider"] -= 1.5
        records[1]["metrics"]["bleu4"] -= 0.3  # within BLEU-4's 0.5
        records[2]["metrics"]["cider"] += 9.0  # rises never fail

    run = _changed(tmp_path, drop)
    code, out, _ = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 1
    lines = out.strip().splitlines()
    assert lines[0].startswith("regression: 1 metric value(s) fell")
    first = _records()[0]
    assert len(lines) == 2 and first["cell_id"] in lines[1] and first["method"] in lines[1]
    assert "cider" in lines[1] and "(-1.50, tolerance 1)" in lines[1]


def test_tolerances_come_from_the_flag(run_cli, baseline, tmp_path):
    run = _changed(tmp_path, lambda r: r[0]["metrics"].update(cider=r[0]["metrics"]["cider"] - 1.5))
    assert run_cli("check", str(run), "--baseline", str(baseline), "--tolerance", "cider=2")[0] == 0
    assert run_cli("check", str(run), "--baseline", str(baseline), "--tolerance", "bleu4=0.1")[0] == 1  # cider default
    run = _changed(tmp_path, lambda r: r[3]["metrics"].update(meteor=r[3]["metrics"]["meteor"] - 0.2))
    assert run_cli("check", str(run), "--baseline", str(baseline))[0] == 0
    assert run_cli("check", str(run), "--baseline", str(baseline), "--tolerance", "meteor=0.1")[0] == 1


def test_a_run_cell_new_to_the_baseline_is_a_warning_and_a_baseline_cell_the_run_lost_a_failure(run_cli, baseline, tmp_path):
    """A gate must not pass because a cell it guards is gone; --allow-missing accepts a run of part
    of the grid on purpose (the missing cells listed as a warning)."""
    records = _records()
    run = _write(tmp_path / "run" / "records.jsonl", records[2:] + [{**records[0], "split": "shapes-flickr",
                                                                       "cell_id": "feedfeedfeedfeed"}])
    code, out, err = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 1 and "1 cell(s) of the run are not in the baseline" in err and "feedfeedfeedfeed" in err
    assert out.startswith("regression: 2 baseline cell(s) are missing from the run (--allow-missing")
    assert all(r["cell_id"] in out for r in records[:2]) and "fell" not in out.splitlines()[0]
    code, out, err = run_cli("check", str(run), "--baseline", str(baseline), "--allow-missing")
    assert code == 0 and f"{len(records) - 2} cells" in out
    assert "2 baseline cell(s) are missing from the run (allowed by --allow-missing)" in err
    # a fall and a lost cell together: both named
    records[2]["metrics"]["cider"] -= 5
    run = _write(tmp_path / "run2" / "records.jsonl", records[1:])
    code, out, _ = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 1 and out.startswith("regression: 1 metric value(s) fell by more than their tolerance; 1 baseline cell")


def test_a_baseline_line_that_is_not_a_record_is_refused_and_a_repeated_cell_warned_about(run_cli, baseline, tmp_path):
    """A line of the baseline it cannot read would leave its cell unguarded (and the run's cell
    would only be "new"): exit 2, not a pass. A cell written twice (a run's recomputed cell)
    reads as in a run folder, the last line, with a warning."""
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join([lines[0][:40], *lines[1:]]) + "\n", encoding="utf-8")
    code, out, err = run_cli("check", str(FIXTURE.parent), "--baseline", str(broken))
    assert code == 2 and len(err.strip().splitlines()) == 2 and "1 line(s) that are not records" in err  # the skip warning, the error
    twice = tmp_path / "twice.jsonl"
    first = json.loads(lines[0])
    stale = {**first, "metrics": {**first["metrics"], "cider": first["metrics"]["cider"] + 50}}
    twice.write_text("\n".join([json.dumps(stale), *lines]) + "\n", encoding="utf-8")
    code, out, err = run_cli("check", str(FIXTURE.parent), "--baseline", str(twice))
    assert code == 0 and "1 line(s) of the baseline" in err and "repeat a cell" in err


def test_a_changed_config_is_still_compared_and_named(baseline, tmp_path):
    def change(records):
        records[0]["config"] = {**records[0]["config"], "dropout": 0.1}
        records[0]["cell_id"] = "0123456789abcdef"
        records[0]["metrics"]["cider"] -= 5

    run = _changed(tmp_path, change)
    result = check(run, baseline)
    assert not result.ok and result.drops[0].cell.endswith("cell 0123456789abcdef)")
    assert result.compared == len(_records())
    assert "config changed (dropout <absent> -> 0.1)" in result.config_changes[0]
    assert config_diff({"a": {"b": 1, "c": True}}, {"a": {"b": 2, "c": False}}) == "a.b 1 -> 2, a.c on -> off"


def test_a_changed_encoder_or_data_is_still_compared_and_named(baseline, tmp_path):
    def change(records):
        records[0].update(encoder="ViT-B-32:/w.pt@abc", cell_id="0123456789abcdef")
        records[1].update(train_fingerprint="other", cell_id="fedcba9876543210")

    result = check(_changed(tmp_path, change), baseline)
    assert result.compared == len(_records())
    changes = " | ".join(result.config_changes)
    assert "encoder changed (" in changes and "-> ViT-B-32:/w.pt@abc)" in changes
    assert "training captions changed" in changes


def test_truncated_baseline_uses_its_complete_lines(run_cli, tmp_path):
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    base = tmp_path / "baseline.jsonl"
    base.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40], encoding="utf-8")
    code, out, err = run_cli("check", str(FIXTURE.parent), "--baseline", str(base))
    assert code == 0
    assert "skipped 1 unreadable line(s) of the baseline" in err and f"using its {len(lines) - 1} complete records" in err
    assert "1 cell(s) of the run are not in the baseline" in err


@pytest.mark.parametrize("make_baseline, tolerance, fragment", [
    (lambda p: _write(p, [{**r, "split": "other", "cell_id": f"x{i}"} for i, r in enumerate(_records())]), None,
     "no cell of"),
    (lambda p: _write(p, _records()), "cidr=1", "unknown metric 'cidr'"),
    (lambda p: _write(p, _records()), "cider=-1", "must be >= 0"),
    (lambda p: _write(p, _records()), "cider", "metric=value"),
    (lambda p: _write(p, _records()), "cider=1_0", "must be a number"),   # not read as 10
    (lambda p: _write(p, _records()), "cider=\u0661", "must be a number"),  # an Arabic-Indic one
    (lambda p: _write(p, _records()), "cider=1,", "empty item"),
    (lambda p: _write(p, _records()), "cider=1,,bleu4=1", "empty item"),
    (lambda p: _write(p, _records()), ",", "lists nothing"),
    # a baseline whose cells hold no metric: a gate that compared nothing must not pass
    (lambda p: _write(p, [{**r, "metrics": {}} for r in _records()]), None, "share no metric value"),
    (lambda p: _write(p, [{**r, "metrics": {k: None for k in r["metrics"]}} for r in _records()]), None,
     "share no metric value"),
    (lambda p: p.write_text(""), None, "has no complete records"),
    (lambda p: None, None, "does not exist"),
])
def test_bad_input_exits_2_with_one_line(run_cli, tmp_path, make_baseline, tolerance, fragment):
    base = tmp_path / "b" / "records.jsonl"
    base.parent.mkdir()
    make_baseline(base)
    argv = ["check", str(FIXTURE.parent), "--baseline", str(base)] + (["--tolerance", tolerance] if tolerance else [])
    code, _, err = run_cli(*argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_default_tolerances_cover_every_metric():
    from bench.scoring import ALL_METRICS

    assert set(DEFAULT_TOLERANCES) == set(ALL_METRICS)
    assert DEFAULT_TOLERANCES["cider"] == 1.0 and DEFAULT_TOLERANCES["bleu4"] == 0.5


def test_non_finite_values(run_cli, baseline, tmp_path):
    code, _, err = run_cli("check", str(baseline), "--baseline", str(baseline), "--tolerance", "cider=nan")
    assert code == 2 and "must be a finite number" in err
    run = _changed(tmp_path, lambda r: r[0]["metrics"].update(cider=float("nan")))
    code, out, _ = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 1 and "cider" in out and "nan" in out  # a metric that became NaN has regressed
    broken = _write(tmp_path / "b2" / "records.jsonl", [{**r, "metrics": {**r["metrics"], "cider": None}} for r in _records()])
    code, out, err = run_cli("check", str(baseline), "--baseline", str(broken))
    assert code == 0 and "the baseline's cider is not a finite number; not checked" in err
    infinite = _write(tmp_path / "b3" / "records.jsonl", [{**r, "metrics": {**r["metrics"], "cider": float("inf")}} for r in _records()])
    code, out, err = run_cli("check", str(baseline), "--baseline", str(infinite))
    assert code == 0 and "the baseline's cider is not a finite number; not checked" in err  # no run can fall from it


def test_an_empty_tolerance_is_refused(run_cli, baseline):
    code, _, err = run_cli("check", str(baseline), "--baseline", str(baseline), "--tolerance", "")
    assert code == 2 and "--tolerance lists nothing" in err


@pytest.mark.parametrize("change, shown", [
    (lambda m: m.update(cider=None), "no value"),          # null: how a strict JSON writer stores NaN
    (lambda m: m.pop("cider"), "no value"),                # the metric vanished from the record
    (lambda m: m.update(cider=float("inf")), "inf (not a finite number)"),
])
def test_a_metric_the_run_lost_is_a_regression(run_cli, baseline, tmp_path, change, shown):
    run = _changed(tmp_path, lambda r: change(r[0]["metrics"]))
    code, out, _ = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 1, out
    assert "regression: 1 metric value(s)" in out and "cider" in out and shown in out


def test_a_metric_the_run_says_is_unavailable_is_warned_about_not_failed(run_cli, baseline, tmp_path):
    def unavailable(records):
        records[0]["metrics"].pop("cider")
        extra = records[0]["extra"]  # the fixture is a version-1 record: ``unavailable`` lives in ``extra``
        extra["unavailable"] = {**extra.get("unavailable", {}), "cider": "its scorer is not installed"}

    run = _changed(tmp_path, unavailable)
    code, out, err = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 0, out + err
    assert "cider" in err and "unavailable in the run (its scorer is not installed)" in err


def test_a_drop_just_beyond_tolerance_does_not_print_as_within_it(run_cli, baseline, tmp_path):
    run = _changed(tmp_path, lambda r: r[0]["metrics"].update(bleu4=r[0]["metrics"]["bleu4"] - 0.5049))
    code, out, _ = run_cli("check", str(run), "--baseline", str(baseline))
    assert code == 1
    assert "(-0.505, tolerance 0.5)" in out and "(-0.50," not in out
