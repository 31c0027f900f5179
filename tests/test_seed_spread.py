"""benchmarks/seed_spread.py: how much of a seed spread the test set's size gives, and how much is the seeds'."""

import json
from pathlib import Path

import numpy as np
import pytest

from bench.stats import seed_spread
from tests.fixtures import load_benchmark


def _module():
    return load_benchmark("seed_spread")


def test_object_checks_read_captions_with_the_worlds_parser():
    checks = _module().object_checks
    objects = [["large", "red", "circle"], ["small", "green", "square"]]
    assert checks("a red circle next to a blue square.", objects) == (True, 2, 2, 1)
    assert checks("three shapes: a red circle, a green square and a pink star.", objects) == (False, 3, 2, 2)
    assert checks("a picture.", objects) == (False, 0, 0, 0)


def _write_run(folder: Path, settings: dict, images: int = 40, seed: int = 0, shapes_world: Path | None = None) -> dict:
    """Records with per-image CIDEr: settings maps a label to (config, {seed: (offset, prediction)})."""
    from bench.records import Record, RecordStore, Sample

    rng = np.random.default_rng(seed)
    store = RecordStore(folder)
    hard = rng.gamma(2.0, 50.0, size=images)
    tables = {}
    for label, (config, seeds) in settings.items():
        rows = []
        for s, (offset, prediction) in seeds.items():
            per = hard + offset + rng.normal(0, 20.0, images)
            rows.append(per)
            image = (lambda i: str(shapes_world / "images" / "test" / f"im{i}.png")) if shapes_world else (lambda i: f"{i}.png")
            record = Record(method="nonoise", split="coco", train="coco", eval="coco", kind="in-domain", seed=s,
                            config=config, metrics={"cider": float(per.mean())}, n_images=images)
            store.add(record, [Sample(f"im{i}", image(i), prediction, ("a cat",), {"cider": float(v)}) for i, v in enumerate(per)])
        tables[label] = np.array(rows)
    return tables


def test_the_table_gives_each_settings_spread_and_names_what_sets_them_apart(tmp_path, capsys):
    module = _module()
    tables = _write_run(tmp_path, {
        # a value holding " | " (a path, a note) is part of the config, not a separator of anything
        "lr2": ({"decoder": {"lr": 0.002, "layers": 2}, "note": "a | b"}, {0: (0.0, "a cat"), 1: (8.0, "a cat"), 2: (-5.0, "a cat")}),
        "lr4": ({"decoder": {"lr": 0.004, "layers": 2}, "note": "a | b"}, {0: (0.0, "a cat"), 1: (1.0, "a cat")}),
    })
    assert module.main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2
    for row, label in zip(rows, ("lr2", "lr4")):  # settings sorted by their config: lr 0.002 first
        spread = seed_spread(tables[label])
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert int(cells[3]) == len(tables[label]) and float(cells[6]) == pytest.approx(spread.observed, abs=0.006)
        assert float(cells[7]) == pytest.approx(spread.floor, abs=0.006)
    assert "1: nonoise on coco, decoder.lr=0.002" in out and "2: nonoise on coco, decoder.lr=0.004" in out
    assert "layers" not in out.split("Settings")[1] and "note" not in out.split("Settings")[1]  # shared: not what sets them apart


def test_objects_come_from_the_shapes_worlds_annotation(tmp_path, capsys):
    world = tmp_path / "world" / "shapes-x"
    world.mkdir(parents=True)
    (world / "dataset_shapes-x.json").write_text(json.dumps({"images": [
        {"filename": f"im{i}.png", "split": "test", "objects": [["large", "red", "circle"]]} for i in range(40)]}))
    _write_run(tmp_path / "run", {"a": ({}, {0: (0.0, "a red circle."), 1: (3.0, "a blue circle."), 2: (1.0, "two shapes: a red circle and a star.")})},
               shapes_world=world)
    assert _module().main([str(tmp_path / "run"), "--objects"]) == 0
    row = [line for line in capsys.readouterr().out.split("What each seed")[1].splitlines() if line.startswith("| 1 |")][0]
    count, shape, pair = (c.strip() for c in row.strip("|").split("|")[1:])
    # count right for seeds 0 and 1 (2 of 3); shapes right 1, 1, 1/2; colour-shape pairs 1, 0, 1/2
    assert count.startswith("66.7 ± 57.7") and shape.startswith("83.3 ± 28.9") and pair.startswith("50.0 ± 50.0")


def test_a_setting_that_gives_no_spread_is_left_out_with_a_note_and_the_others_are_reported(tmp_path, capsys):
    from bench.records import Record, RecordStore, Sample

    _write_run(tmp_path, {"a": ({"decoder": {"lr": 1}}, {0: (0.0, "a cat"), 1: (2.0, "a cat")})})
    store = RecordStore(tmp_path)
    for seed, first in ((0, 0), (1, 5)):  # the second seed scored on other images
        record = Record(method="nonoise", split="coco", train="coco", eval="coco", kind="in-domain", seed=seed,
                        config={"decoder": {"lr": 2}}, metrics={"cider": 50.0}, n_images=10)
        store.add(record, [Sample(f"im{i}", f"{i}.png", "a cat", ("a cat",), {"cider": 50.0}) for i in range(first, first + 10)])
    assert _module().main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.count("| nonoise | coco |") == 1 and "| 1 | nonoise | coco | 2 | 40 |" in out
    assert "setting 2 (nonoise on coco): its seeds were scored on different images; left out" in out


@pytest.mark.parametrize("case, fragment", [
    ("empty", "is not a run folder"),
    ("one-seed", "no setting with per-image cider for two seeds"),
    ("not-shapes", "only the shapes world"),
    ("list-annotation", "is not an annotation of images"),
    ("bad-objects", "are not [size, colour, shape] triples"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case, fragment):
    argv = [str(tmp_path)]
    if case in ("list-annotation", "bad-objects"):
        world = tmp_path / "world" / "shapes-x"
        world.mkdir(parents=True)
        content = [1, 2] if case == "list-annotation" else {"images": [{"filename": "im0.png", "objects": [["red", "circle"]]}]}
        (world / "dataset_shapes-x.json").write_text(json.dumps(content))
        _write_run(tmp_path / "run", {"a": ({}, {0: (0.0, "a cat"), 1: (0.0, "a cat")})}, shapes_world=world)
        argv = [str(tmp_path / "run"), "--objects"]
    elif case == "one-seed":
        _write_run(tmp_path, {"a": ({}, {0: (0.0, "a cat")}), "b": ({"x": 1}, {0: (0.0, "a cat")})})
    elif case == "not-shapes":
        _write_run(tmp_path, {"a": ({}, {0: (0.0, "a cat"), 1: (0.0, "a cat")})})
        argv.append("--objects")
    assert _module().main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1
