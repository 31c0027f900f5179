import json

import pytest

from bench.records import (
    RECORDS_FILE,
    SCHEMA_VERSION,
    Record,
    RecordStore,
    Sample,
    cell_id,
    git_commit,
    library_versions,
    read_records,
)


def make(method="capdec", seed=0, noise=0.016, cider=50.0):
    return Record(method=method, split="coco->flickr30k", train="coco", eval="flickr30k", kind="cross-domain",
                  seed=seed, config={"noise_variance": noise}, noise_variance=noise,
                  metrics={"bleu4": 10.0, "cider": cider}, n_images=5, encoder="shapes-clip@abc")


def test_record_schema_fields():
    data = make().to_dict()
    for key in ("method", "split", "train", "eval", "kind", "seed", "config", "noise_variance", "metrics",
                "encoder", "timings", "versions", "git_commit", "date", "cell_id"):
        assert key in data
    assert Record.from_dict(json.loads(json.dumps(data))) == make().__class__(**data)
    with pytest.raises(ValueError, match="kind"):
        Record(method="m", split="s", train="s", eval="s", kind="sideways", seed=0, config={}, metrics={})


def test_version_1_records_read_into_typed_fields():
    """Version 1 kept role, fit_key, fit_reused, fit_info, device, unavailable and note in extra."""
    data = make().to_dict()
    for key in ("role", "fit_key", "fit_reused", "fit_info", "device", "unavailable", "note"):
        data.pop(key)
    data.update(schema_version=1, extra={"role": "noise-sweep", "fit_key": "abc", "fit_reused": True, "fit_info": {"steps": 3},
                                         "device": "cpu", "unavailable": {"spice": "no jars"}, "note": "seeded", "mine": 1})
    record = Record.from_dict(json.loads(json.dumps(data)))
    assert (record.role, record.fit_key, record.fit_reused, record.fit_info) == ("noise-sweep", "abc", True, {"steps": 3})
    assert (record.device, record.unavailable, record.note, record.extra) == ("cpu", {"spice": "no jars"}, "seeded", {"mine": 1})
    assert make().schema_version == SCHEMA_VERSION == 3 and make().role == "main" and make().fit_reused is None


def test_cell_id_is_stable_and_discriminating():
    assert make().cell_id == make(cider=99).cell_id  # metrics are not part of the identity
    assert make().cell_id != make(seed=1).cell_id
    assert make().cell_id != make(noise=0.0).cell_id
    assert cell_id("a", "s", 0, None, {"x": 1}) == cell_id("a", "s", 0, None, {"x": 1})


def test_store_appends_atomically_and_reloads(tmp_path):
    store = RecordStore(tmp_path)
    store.add(make(seed=0), samples=[Sample("1", "/img/1.png", "a dog", ("a dog runs",), {"cider": 12.5}, (3, 3, 1, 1, 1, 1, 1, 0, 0, 0))])
    store.add(make(seed=1))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = RecordStore(tmp_path)
    assert len(again) == 2 and make(seed=1).cell_id in again
    assert again.samples(make(seed=0).cell_id) == [{"image_id": "1", "image": "/img/1.png", "prediction": "a dog",
                                                    "references": ["a dog runs"], "cider": 12.5,
                                                    "bleu_stats": [3, 3, 1, 1, 1, 1, 1, 0, 0, 0]}]
    store.add(make(seed=1, cider=70.0))  # re-adding a cell replaces it
    assert [r.metrics["cider"] for r in RecordStore(tmp_path).records()] == [50.0, 70.0]


def test_a_killed_writers_fragment_is_kept_and_never_glued_to_the_next_record(tmp_path):
    store = RecordStore(tmp_path)
    store.add(make(seed=0))
    fragment = json.dumps(make(seed=1).to_dict())[:40]
    with open(tmp_path / RECORDS_FILE, "a") as fh:  # a writer killed in the middle of its line
        fh.write(fragment)
    RecordStore(tmp_path).add(make(seed=2))
    result = read_records(tmp_path)
    assert sorted(r.seed for r in result.records) == [0, 2] and result.skipped == 1
    assert fragment + "\n" in (tmp_path / RECORDS_FILE).read_text()  # kept verbatim, on its own line


def test_lines_a_reader_cannot_use_are_kept_through_later_writes(tmp_path):
    alien = json.dumps({**make(seed=5).to_dict(), "kind": "zero-shot"})  # not a kind this version knows
    (tmp_path / RECORDS_FILE).write_text("not json at all\n" + alien + "\n")
    store = RecordStore(tmp_path)
    assert len(store.problems) == 2 and "zero-shot" in store.problems[1]
    store.add(make(seed=0))
    lines = (tmp_path / RECORDS_FILE).read_text().splitlines()
    assert lines[:2] == ["not json at all", alien] and len(lines) == 3


@pytest.mark.parametrize("field, value, fragment", [
    ("metrics", None, "metrics is not an object of numbers"),
    ("metrics", {"cider": "high"}, "metrics is not an object of numbers"),
    ("seed", "0", "seed is not an integer"),
    ("config", [1], "config is not an object"),
    ("noise_variance", "x", "noise_variance is not a number"),
    # fields only a report reads: refused here, not a traceback in the report later
    ("date", 5, "date is not a string"),
    ("encoder", 5, "encoder is not a string"),
    ("device", None, "device is not a string"),
    ("git_commit", ["x"], "git_commit is not a string"),
    ("eval_encoder", 1, "eval_encoder is not a string"),
    ("n_images", "500", "n_images is not an integer"),
    ("threads", True, "threads is not an integer"),
    ("timings", {"encode": "x"}, "timings is not an object of numbers"),
    ("versions", {"torch": 5}, "versions is not an object of strings"),
    ("unavailable", {"spice": None}, "unavailable is not an object of strings"),
    ("fit_reused", "yes", "fit_reused is not true, false or null"),
    ("fit_info", [], "fit_info is not an object"),
    ("schema_version", 99, "schema_version 99 is not one this version reads"),  # a newer writer's
    ("schema_version", "3", "schema_version '3' is not one this version reads"),
])
def test_records_of_the_wrong_shape_are_skipped_with_the_reason(tmp_path, field, value, fragment):
    lines = [json.dumps(make(seed=0).to_dict()), json.dumps({**make(seed=1).to_dict(), field: value})]
    (tmp_path / RECORDS_FILE).write_text("\n".join(lines) + "\n")
    result = read_records(tmp_path)
    assert [r.seed for r in result.records] == [0] and result.skipped == 1 and fragment in result.problems[0]


def test_truncated_last_line_is_skipped_and_counted(tmp_path):
    lines = [json.dumps(make(seed=s).to_dict()) for s in range(3)]
    (tmp_path / RECORDS_FILE).write_text("\n".join(lines[:2]) + "\n" + lines[2][: len(lines[2]) // 2])
    result = read_records(tmp_path)
    assert len(result.records) == 2 and result.skipped == 1
    assert "line 3" in result.problems[0]


def test_provenance_helpers():
    versions = library_versions()
    assert "torch" in versions and "pycocoevalcap" in versions
    commit = git_commit()
    assert commit == "" or len(commit.split("+")[0]) == 40


def test_a_run_racing_another_with_other_inputs_into_one_folder_is_stopped(tmp_path):
    """Both runs passed the folder's input check before either stored a cell; the second to store
    one must see the first's record under the lock and refuse, rather than leave a folder of two
    sets of inputs that no later run can resume."""
    import dataclasses

    from bench.errors import BenchError
    from bench.records import RecordStore, Sample

    def cell(seed, **change):
        fields = {"train_fingerprint": "t", "eval_fingerprint": "e", "eval_encoder": "", "cell_id": f"cell{seed}", **change}
        return dataclasses.replace(make(seed=seed), **fields)

    first, second = RecordStore(tmp_path), RecordStore(tmp_path)  # both opened on an empty folder
    first.add(cell(0), [Sample("1", "a.png", "a cat", ("a cat",), {"cider": 1.0})], same_inputs=True)
    first.add(cell(1), same_inputs=True)  # its own inputs again: fine
    clip_s = cell(2, eval_encoder="shapes@x")
    with pytest.raises(BenchError, match="holds results without CLIP-S.*another run wrote into it meanwhile"):
        second.add(clip_s, [Sample("1", "a.png", "a dog", ("a cat",), {"cider": 0.0})], same_inputs=True)
    with pytest.raises(BenchError, match="scored on another flickr30k test split"):
        second.add(cell(3, eval_fingerprint="e2"), same_inputs=True)
    with pytest.raises(BenchError, match="computed with encoder shapes-clip@abc, not other@1"):
        second.add(cell(3, encoder="other@1"), same_inputs=True)
    assert sorted(r.seed for r in RecordStore(tmp_path).records()) == [0, 1]
    assert not (tmp_path / "samples" / "cell2.json").exists()  # nothing of the refused cell is left
    second.add(cell(4), same_inputs=True)  # the same inputs still go in
    # without the check (a folder merged by hand, a test's fixture) records are stored as given
    RecordStore(tmp_path).add(cell(5, encoder="other@1"))
    assert len(RecordStore(tmp_path).records()) == 4
