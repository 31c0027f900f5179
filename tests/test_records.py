import json
import os

import pytest

from bench.records import RECORDS_FILE, Record, RecordStore, cell_id, git_commit, library_versions, read_records


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


def test_cell_id_is_stable_and_discriminating():
    assert make().cell_id == make(cider=99).cell_id  # metrics are not part of the identity
    assert make().cell_id != make(seed=1).cell_id
    assert make().cell_id != make(noise=0.0).cell_id
    assert cell_id("a", "s", 0, None, {"x": 1}) == cell_id("a", "s", 0, None, {"x": 1})


def test_store_appends_atomically_and_reloads(tmp_path):
    store = RecordStore(tmp_path)
    store.add(make(seed=0), samples=[{"image_id": "1", "prediction": "a dog"}])
    store.add(make(seed=1))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    again = RecordStore(tmp_path)
    assert len(again) == 2 and make(seed=1).cell_id in again
    assert again.samples(make(seed=0).cell_id) == [{"image_id": "1", "prediction": "a dog"}]
    store.add(make(seed=1, cider=70.0))  # re-adding a cell replaces it
    assert [r.metrics["cider"] for r in RecordStore(tmp_path).records()] == [50.0, 70.0]


def test_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    store = RecordStore(tmp_path)
    store.add(make(seed=0))
    before = (tmp_path / RECORDS_FILE).read_text()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.add(make(seed=1))
    assert (tmp_path / RECORDS_FILE).read_text() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


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
