"""The runner and `bench run` / `bench caption`, end to end on tiny models and data."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.grid import RunConfig, build_grid
from bench.records import read_records
from bench.runner import Runner
from bench.stats import corpus_bleu
from tests.conftest import TINY_DECODER


def tiny_run(tmp_path, encoder, **kw):
    options = {f"decoder.{k}": v for k, v in TINY_DECODER["decoder"].items()}
    return RunConfig(**{"methods": ("clipre", "nonoise"), "splits": ("tiny-coco", "tiny-coco->tiny-flickr"), "seeds": (0,),
                        "out": tmp_path / "run", "cache_dir": tmp_path / "cache", "encoder": encoder,
                        "method_options": options, **kw})


def test_grid_of_the_embedded_default():
    from bench.grid import DEFAULT_SWEEP

    cells = build_grid(RunConfig())
    assert len({c.spec_id for c in cells}) == len(cells) == 61
    # 5 methods x 3 splits x 3 seeds; with seed 0, 8 more points of capdec's 9-point sweep (0.016 is
    # the capdec cell) and syntic's 5 ablation rows in and across domains (all-on is the syntic cell).
    assert {c.method for c in cells} == {"capdec", "nonoise", "clipre", "decap", "syntic"}
    assert {str(c.split) for c in cells} == {"shapes-coco", "shapes-coco->shapes-flickr", "shapes-romantic"}
    for split in ("shapes-coco", "shapes-coco->shapes-flickr"):
        combos = {(c.config.optimise, c.config.project, c.config.auxiliary) for c in cells
                  if c.method == "syntic" and str(c.split) == split and c.seed == 0}
        assert combos == {(True, True, True), (False, True, True), (True, False, True), (True, True, False), (False, False, False)}
    assert sum(c.method == "syntic" and str(c.split) == "shapes-romantic" for c in cells) == 3
    assert {c.split.kind for c in cells} == {"in-domain", "cross-domain", "style"}
    sweep = sorted(c.noise_variance for c in cells if c.method == "capdec" and str(c.split) == "shapes-coco" and c.seed == 0)
    assert sweep == sorted(DEFAULT_SWEEP)
    assert all(c.noise_variance == 0.0 for c in cells if c.method == "nonoise")
    assert all(c.noise_variance is None for c in cells if c.method == "clipre")
    # the report's method tables show the 45 main cells; sweep points and ablation cells have their own sections
    roles = [c.role for c in cells]
    assert (roles.count("main"), roles.count("noise-sweep"), roles.count("ablation")) == (45, 8, 8)
    main = {c.spec_id for c in cells if c.role == "main"}
    capdec_0016 = next(c for c in cells if c.method == "capdec" and c.noise_variance == 0.016 and str(c.split) == "shapes-coco")
    assert capdec_0016.spec_id in main  # a sweep point equal to a main cell is that main cell


def test_switch_ablation_rows():
    from bench.grid import switch_ablation
    from bench.options import sweep_combinations

    rows = switch_ablation(("a", "b", "c"))
    assert rows[0] == {"a": True, "b": True, "c": True} and rows[-1] == {"a": False, "b": False, "c": False}
    assert rows[1:4] == [{"a": False, "b": True, "c": True}, {"a": True, "b": False, "c": True}, {"a": True, "b": True, "c": False}]
    # --preset full's factorial: the sweep of every switch over (True, False), every one on first
    switches = ("syntic.optimise", "syntic.project", "syntic.auxiliary")
    rows = switch_ablation(switches)
    full = sweep_combinations("syntic", dict.fromkeys(switches, (True, False)))
    assert len(full) == 8 and full[0] == rows[0] and {tuple(r.values()) for r in full} >= {tuple(r.values()) for r in rows}
    assert len({tuple(r.values()) for r in full}) == 8


def test_full_preset_runs_syntics_whole_factorial_ablation():
    cells = build_grid(RunConfig(preset="full"))
    for split in ("shapes-coco", "shapes-coco->shapes-flickr"):
        combos = {(c.config.optimise, c.config.project, c.config.auxiliary) for c in cells
                  if c.method == "syntic" and str(c.split) == split and c.seed == 0}
        assert len(combos) == 8


def test_noise_grid_applies_only_to_methods_that_take_noise():
    cells = build_grid(RunConfig(methods=("capdec", "nonoise", "clipre"), splits=("coco",), noise=(0.0, 0.01), seeds=(0, 1)))
    counts = {m: sum(c.method == m for c in cells) for m in ("capdec", "nonoise", "clipre")}
    assert counts == {"capdec": 4, "nonoise": 2, "clipre": 2}


def test_sweep_expands_only_the_methods_it_names():
    sweep = {"decap.tau": [0.005, 0.01, 0.02], "decoder.width": [32, 64]}
    cells = build_grid(RunConfig(methods=("decap", "clipre", "nonoise"), splits=("coco",), sweep=sweep))
    decap = sorted((c.config.tau, c.config.decoder.width) for c in cells if c.method == "decap")
    assert decap == [(t, w) for t in (0.005, 0.01, 0.02) for w in (32, 64)]
    assert sorted(c.config.decoder.width for c in cells if c.method == "nonoise") == [32, 64]
    assert sum(c.method == "clipre" for c in cells) == 1


def test_set_options_for_one_method_do_not_leak_into_others():
    options = {"decoder": {"width": 64}, "capdec.decoder.lr": 0.005, "clipre.image_batch_size": 7}
    cells = build_grid(RunConfig(methods=("capdec", "nonoise", "clipre"), splits=("coco",), method_options=options))
    by_method = {c.method: c.config for c in cells}
    assert by_method["capdec"].decoder.lr == 0.005 and by_method["capdec"].decoder.width == 64
    assert by_method["nonoise"].decoder.lr != 0.005 and by_method["nonoise"].decoder.width == 64
    assert by_method["clipre"].image_batch_size == 7
    assert options == {"decoder": {"width": 64}, "capdec.decoder.lr": 0.005, "clipre.image_batch_size": 7}


def test_run_records_samples_reuse_and_resume(tmp_path, tiny_clip_checkpoint, tiny_datasets, monkeypatch):
    run = tiny_run(tmp_path, tiny_clip_checkpoint)
    cells = build_grid(run)
    assert len(cells) == 4
    runner = Runner(run, log=lambda m: None)
    calls = {"n": 0}
    original = Runner.execute_cell

    def interrupt_on_third(self, cell):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, cell)

    monkeypatch.setattr(Runner, "execute_cell", interrupt_on_third)
    with pytest.raises(KeyboardInterrupt):
        runner.execute(cells)
    monkeypatch.setattr(Runner, "execute_cell", original)
    assert len(read_records(run.out).records) == 2  # what finished before the interruption is kept

    again = Runner(run, log=lambda m: None)
    report = again.execute(cells)
    assert report.skipped == 2 and len(report.completed) == 2 and not report.failed
    records = read_records(run.out).records
    assert len(records) == 4 and read_records(run.out).skipped == 0
    for record in records:
        assert record.encoder.startswith(tiny_clip_checkpoint)
        assert set(record.metrics) >= {"bleu4", "meteor", "rouge_l", "cider"}
        assert record.n_images in (12, 10)
        samples = again.store.samples(record.cell_id)
        assert len(samples) == record.n_images and {"image_id", "prediction", "references", "cider"} <= set(samples[0])
        assert all(Path(s["image"]).is_file() for s in samples) and record.role == "main"
        # corpus BLEU is recomputable from the per-image statistics a report resamples
        summed = np.asarray([s["bleu_stats"] for s in samples], dtype=float).sum(axis=0)
        assert corpus_bleu(summed) == pytest.approx(record.metrics["bleu4"], abs=1e-3)
        assert np.mean([s["cider"] for s in samples]) == pytest.approx(record.metrics["cider"], abs=1e-3)
    info = json.loads((run.out / "run.json").read_text())
    assert info["encoder"]["id"] == records[0].encoder and info["wall_s"] >= 0
    # coco and coco->flickr share one fit per method; the cache encoded each input once.
    by_method = {}
    for r in records:
        by_method.setdefault(r.method, set()).add(r.fit_key)
    assert all(len(keys) == 1 for keys in by_method.values())
    assert again.cache.misses == 0 or again.cache.hits > 0


def test_failed_cell_keeps_the_others(tmp_path, tiny_clip_checkpoint, tiny_datasets, monkeypatch):
    from bench.decoders import NonFiniteLoss
    from bench.plugins import METHODS

    cls = METHODS.get("nonoise")

    def nan_fit(self, corpus, ctx):
        raise NonFiniteLoss("the decoder's loss became nan at step 1 of 5")

    monkeypatch.setattr(cls, "fit", nan_fit)
    run = tiny_run(tmp_path, tiny_clip_checkpoint, splits=("tiny-coco",))
    report = Runner(run, log=lambda m: None).execute(build_grid(run))
    assert [r.method for r in report.completed] == ["clipre"]
    assert len(report.failed) == 1 and "loss became nan" in report.failed[0][1]
    failure = json.loads((run.out / "failures.jsonl").read_text().splitlines()[0])
    assert "nonoise" in failure["cell"]


def test_cli_run_then_caption_your_own_images(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets, monkeypatch):
    from PIL import Image

    args = ["run", "--methods", "clipre,nonoise", "--split", "tiny-coco", "--out", str(tmp_path / "run"),
            "--cache-dir", str(tmp_path / "cache"), "--encoder", tiny_clip_checkpoint]
    for key, value in TINY_DECODER["decoder"].items():
        args += ["--set", f"decoder.{key}={value}"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "clipre" in out and "nonoise" in out and "CIDEr" in out
    report = tmp_path / "run" / "report.html"
    assert f"report: {report}" in out and report.is_file()  # every run ends with its report
    markdown = (tmp_path / "run" / "report.md").read_text()
    assert "### In-domain: tiny-coco" in markdown and "| clipre |" in markdown and "| nonoise |" in markdown
    assert "command: `python -m bench run --methods clipre,nonoise" in markdown
    code, out, err = run_cli(*args, "--no-report")  # a second identical run re-does nothing
    assert code == 0 and "2 of 2 cells are already complete" in err and "report:" not in out

    def broken(*a, **k):
        raise ValueError("a report bug")

    monkeypatch.setattr("bench.reporting.render_report", broken)
    code, out, err = run_cli(*args)  # a report that fails does not turn a complete run into a failure
    assert code == 0 and "warning: the report could not be rendered (ValueError: a report bug)" in err
    assert "Traceback" not in err and "retry with `python -m bench report" in err

    record = next(r for r in read_records(tmp_path / "run").records if r.method == "clipre")
    checkpoint = tmp_path / "run" / "checkpoints" / record.fit_key
    images = tmp_path / "photos"
    images.mkdir()
    for i, colour in enumerate(["red", "blue"]):
        Image.new("RGB", (40, 40), colour).save(images / f"{i}.png")
    (images / "broken.jpg").write_bytes(b"\x00\x01")
    code, out, err = run_cli("caption", "--method", "clipre", "--checkpoint", str(checkpoint), "--images", str(images),
                             "--json", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, err
    captions = json.loads(out)
    assert set(captions) == {"0.png", "1.png"} and all(isinstance(c, str) and c for c in captions.values())
    assert "skipped 1 unreadable of 3 files (first: broken.jpg)" in err
    code, _, err = run_cli("caption", "--method", "nonoise", "--checkpoint", str(checkpoint), "--images", str(images))
    assert code == 2 and "holds a clipre fit, not nonoise" in err
    meta_path = checkpoint / "fit.json"
    meta = json.loads(meta_path.read_text())
    for key in ("method", "cache_dir", "encoder_id"):  # fit.json is not covered by its own hashes
        meta_path.write_text(json.dumps({**meta, key: 5}))
        code, _, err = run_cli("caption", "--method", "clipre", "--checkpoint", str(checkpoint), "--images", str(images))
        assert code == 2 and f"fit.json: {key} is not a string" in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv, fragment", [
    (["run", "--device", "cuda"], "CUDA is not available"),
    (["run", "--set", "nosuchfield=1"], "no selected method has a setting 'nosuchfield'"),
    (["run", "--set", "novalue"], "expects KEY=VALUE"),
    (["run", "--decoder", "lstm"], "unknown decoder 'lstm'"),
    (["run", "--methods", "nonoise", "--set", "nonoise.noise_variance=0.1"], "nonoise fixes noise_variance=0.0"),
    (["run", "--encoder", "ViT-B-32:nope"], "unknown pretrained tag"),
])
def test_run_bad_input(run_cli, argv, fragment, monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(*argv, "--out", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"))
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and fragment in err
