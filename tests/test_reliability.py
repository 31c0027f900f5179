"""Nothing wrong, nothing lost, nothing executed: cell identity, verified fits, safe loading, one
writer at a time. Runs use tiny random-weight encoders and Karpathy-format data built here."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from bench.records import RECORDS_FILE, InputIdentity, read_records
from tests.conftest import TINY_DECODER, write_tiny_clip_folder

DECODER = [a for key, value in TINY_DECODER["decoder"].items() for a in ("--set", f"decoder.{key}={value}")]


def _run(run_cli, tmp_path, encoder, *extra, out="run", data=None, methods="clipre,nonoise", split="coco"):
    args = ["run", "--methods", methods, "--split", split, "--out", str(tmp_path / out), "--cache-dir", str(tmp_path / "cache"),
            "--encoder", encoder, "--no-report", *([] if methods == "clipre" else DECODER), *extra]
    if data is not None:
        args += ["--data-root", str(data)]
    return run_cli(*args)


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# -- 1. identity -----------------------------------------------------------------------------------------

def test_cell_identity_covers_encoder_and_data():
    from bench.grid import RunConfig, build_grid

    cell = build_grid(RunConfig(methods=("clipre",), splits=("coco",)))[0]
    base = InputIdentity("shapes@aaa", "t1", "e1")
    ids = {cell.id(base), cell.id(InputIdentity("shapes@bbb", "t1", "e1")), cell.id(InputIdentity("shapes@aaa", "t2", "e1")),
           cell.id(InputIdentity("shapes@aaa", "t1", "e2"))}
    assert len(ids) == 4 and cell.id(base) == cell.id(InputIdentity("shapes@aaa", "t1", "e1"))


def test_a_fingerprint_item_is_its_fields_and_nothing_else():
    """Fields that hold a separator (a tab in a reference, a NUL in a caption) cannot make two
    different test splits or corpora fingerprint alike; plain fields fingerprint as they always did."""
    from bench.cache import fingerprint, record_item

    assert record_item("img1", "a.png", "f00d", "a cat", "a dog") == "img1\ta.png\tf00d\ta cat\ta dog"
    assert record_item("a cat") == "a cat" and record_item("a\tcat") == "a\tcat"  # one field: a tab is no separator
    assert record_item(7, "a.png") == "7\ta.png"  # a plugin's int id, as the f-string gave it
    pairs = [(("id", "a\tb"), ("id", "a", "b")), (("id\tx", "y"), ("id", "x\ty")), (("a\0b",), ("a", "b")),
             (("\x01[\"a\"]",), ("a",))]
    for one, other in pairs:
        assert record_item(*one) != record_item(*other)
    assert fingerprint([record_item("a\0b")]) != fingerprint([record_item("a"), record_item("b")])
    assert fingerprint([record_item("a cat")]) == fingerprint(["a cat"])


def test_references_differing_only_where_a_tab_splits_them_are_another_test_split(tmp_path, tiny_clip_folder):
    from bench.grid import encoder_config
    from bench.inputs import RunInputs
    from bench.plugins import load_plugins
    from tests.fixtures import karpathy_images, write_images, write_karpathy

    load_plugins()
    prints = []
    for name, first in (("a", ["x\ty"]), ("b", ["x", "y"])):
        images = karpathy_images()
        test = next(i for i in images if i["split"] == "test")
        test["sentences"] = [{"raw": c, "tokens": c.split()} for c in first] + test["sentences"][1:]
        root = tmp_path / name
        write_karpathy(root, "coco", images)
        write_images(root, images, "coco")
        inputs = RunInputs(encoder_config(tiny_clip_folder, {}), "cpu", root, tmp_path / "cache", log=lambda m: None)
        prints.append(inputs.eval_fingerprint("coco"))
    assert prints[0] != prints[1]


def test_another_encoder_on_the_same_run_folder_is_refused(run_cli, tmp_path, karpathy_root, tiny_clip_folder):
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0, err
    other = write_tiny_clip_folder(tmp_path / "other-clip", seed=1)
    code, _, err = _run(run_cli, tmp_path, other, data=karpathy_root, methods="clipre")
    assert code == 2 and "holds results computed with encoder" in _one_line(err) and "pass another --out" in err
    # Same spec, other weights (a file replaced in place): refused once the weights are hashed.
    folder = Path(tiny_clip_folder.split(":", 1)[1])
    copy = tmp_path / "same-spec"
    write_tiny_clip_folder(copy, seed=0)
    code, _, err = _run(run_cli, tmp_path, f"local-dir:{copy}", data=karpathy_root, methods="clipre", out="run2")
    assert code == 0, err
    write_tiny_clip_folder(copy, seed=2)
    code, _, err = _run(run_cli, tmp_path, f"local-dir:{copy}", data=karpathy_root, methods="clipre", out="run2")
    assert code == 2 and "results computed with encoder local-dir:" in _one_line(err)
    assert folder.is_dir()


def test_changed_data_is_refused_and_moved_data_is_the_same_cell(run_cli, tmp_path, karpathy_root, tiny_clip_folder):
    import shutil

    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0, err
    moved = tmp_path / "moved"
    shutil.copytree(karpathy_root, moved)
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=moved, methods="clipre")
    assert code == 0 and "1 of 1 cells are already complete" in err  # same content elsewhere: the same cell
    annotations = moved / "coco" / "dataset_coco.json"
    # one test image's pixels replaced in place (same file name, same references): other data
    from PIL import Image

    test_image = next(i for i in json.loads(annotations.read_text())["images"] if i["split"] == "test")
    image_file = next((moved / "coco").rglob(test_image["filename"]))
    pixels = shutil.copyfile(image_file, tmp_path / "kept.png")
    Image.new("RGB", Image.open(pixels).size, (255, 0, 255)).save(image_file)
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=moved, methods="clipre")
    assert code == 2 and "scored on another coco test split" in _one_line(err)
    shutil.copyfile(pixels, image_file)  # the same bytes again: the same cell
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=moved, methods="clipre")
    assert code == 0 and "1 of 1 cells are already complete" in err
    data = json.loads(annotations.read_text())
    data["images"][0]["sentences"][0]["raw"] = "a completely different caption"  # image 0 is a training image
    annotations.write_text(json.dumps(data))
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=moved, methods="clipre")
    assert code == 2 and "trained on other coco captions" in _one_line(err)
    record = read_records(tmp_path / "run").records[0]
    assert record.train_fingerprint and record.eval_fingerprint and record.encoder.startswith(tiny_clip_folder)
    # a folder from a version whose fingerprint left the pixels out: refused, saying why
    from bench.inputs import EVAL_FINGERPRINT_VERSION

    records = tmp_path / "run" / "records.jsonl"
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    for line in lines:
        line["eval_fingerprint"] = line["eval_fingerprint"].removeprefix(EVAL_FINGERPRINT_VERSION)
    records.write_text("".join(json.dumps(line) + "\n" for line in lines))
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 2 and "did not cover the coco test images' pixels" in _one_line(err)


# -- 2. verified fits ------------------------------------------------------------------------------------

def _flip(path: Path, offset: int = 2048, size: int = 4096) -> None:
    data = bytearray(path.read_bytes())
    end = min(len(data), offset + size)
    data[offset:end] = bytes(b ^ 0xFF for b in data[offset:end])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_a_damaged_fit_is_refitted_not_used(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets, damage):
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="nonoise", split="tiny-coco")
    assert code == 0, err
    record = read_records(tmp_path / "run").records[0]
    state = tmp_path / "run" / "checkpoints" / record.fit_key / "state.pt"
    if damage == "flip":
        _flip(state)
    else:
        state.write_bytes(state.read_bytes()[:1000])
    shutil_copy = tmp_path / "decoders-backup"
    (tmp_path / "run" / "decoders").rename(shutil_copy)  # the shared decoder too is gone: a true refit
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="nonoise", split="tiny-coco->tiny-flickr")
    assert code == 0, err
    assert "is not usable (state.pt does not match the SHA-256" in err and "fitting it again" in err
    cross = next(r for r in read_records(tmp_path / "run").records if r.split == "tiny-coco->tiny-flickr")
    assert cross.fit_reused is False and cross.metrics["cider"] > 0
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="nonoise", split="tiny-coco->tiny-flickr", out="clean")
    clean = read_records(tmp_path / "clean").records[0]
    assert clean.metrics == cross.metrics  # the refit is the fit a clean run makes


def test_a_damaged_shared_decoder_is_refitted(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets):
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="nonoise", split="tiny-coco")
    assert code == 0, err
    entries = [p for p in (tmp_path / "run" / "decoders").iterdir() if p.is_dir()]
    assert len(entries) == 1
    _flip(entries[0] / "state.pt", offset=1024, size=4096)
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="decap", split="tiny-coco")
    assert code == 0, err
    assert "shared decoder fit" in err and "not usable" in err
    decap = next(r for r in read_records(tmp_path / "run").records if r.method == "decap")
    assert decap.fit_info["decoder_reused"] is False
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="decap", split="tiny-coco", out="clean")
    assert read_records(tmp_path / "clean").records[0].metrics == decap.metrics


# -- 3. nothing executed ---------------------------------------------------------------------------------

class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _plant_payload(folder: Path, marker: Path) -> None:
    """What an attacker who controls a downloaded fit folder can do: a pickle with a payload as
    state.pt, and a manifest whose hash matches it."""
    from bench.io import sha256_file

    with open(folder / "state.pt", "wb") as fh:
        pickle.dump({"decoder": _Payload(marker)}, fh)
    meta = json.loads((folder / "fit.json").read_text())
    meta["sha256"]["state.pt"] = sha256_file(folder / "state.pt")
    (folder / "fit.json").write_text(json.dumps(meta))


def _fit_and_photos(run_cli, tmp_path: Path, encoder: str, method: str, photos: dict[str, tuple[int, str]]) -> tuple[Path, Path]:
    """A run of ``method`` on tiny-coco (it must succeed), its fit's folder, and a folder of
    photos for ``bench caption`` (name: (side in pixels, colour))."""
    from PIL import Image

    code, _, err = _run(run_cli, tmp_path, encoder, methods=method, split="tiny-coco")
    assert code == 0, err
    folder = tmp_path / "run" / "checkpoints" / read_records(tmp_path / "run").records[0].fit_key
    images = tmp_path / "photos"
    images.mkdir()
    for name, (side, colour) in photos.items():
        Image.new("RGB", (side, side), colour).save(images / name)
    return folder, images


def test_a_malicious_checkpoint_is_refused_and_its_payload_never_runs(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets):
    folder, images = _fit_and_photos(run_cli, tmp_path, tiny_clip_checkpoint, "nonoise", {"a.png": (40, "red")})
    marker = tmp_path / "PWNED"
    _plant_payload(folder, marker)
    code, _, err = run_cli("caption", "--method", "nonoise", "--checkpoint", str(folder), "--images", str(images),
                           "--cache-dir", str(tmp_path / "cache"))
    assert code == 2 and "holds more than tensors; refusing to load it" in _one_line(err)
    assert not marker.exists()
    # A run that meets it refits over it, and never loads it either.
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="nonoise", split="tiny-coco->tiny-flickr")
    assert code == 0 and "holds more than tensors" in err and "fitting it again" in err
    assert not marker.exists()


def test_caption_uses_a_fit_only_under_the_name_it_is(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets):
    """nonoise is capdec at σ² 0, one class: a capdec fit (σ² 0.016) asked for as nonoise would
    caption under the wrong name; a fit.json without its method, or a config.json of another
    class, cannot be checked and is refused."""
    folder, images = _fit_and_photos(run_cli, tmp_path, tiny_clip_checkpoint, "capdec", {"a.png": (40, "red")})

    def caption(method):
        return run_cli("caption", "--method", method, "--checkpoint", str(folder), "--images", str(images),
                       "--cache-dir", str(tmp_path / "cache"))

    code, out, err = caption("capdec")
    assert code == 0 and "a.png" in out, err
    code, _, err = caption("nonoise")
    assert code == 2 and "holds a capdec fit with noise_variance=0.016, not nonoise (noise_variance=0.0)" in _one_line(err)
    meta = json.loads((folder / "fit.json").read_text())
    (folder / "fit.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "method"}))
    code, _, err = caption("capdec")
    assert code == 2 and "names no method" in _one_line(err)
    from bench.io import sha256_file

    (folder / "fit.json").write_text(json.dumps(meta))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "class": "DeCap"}))
    meta["sha256"]["config.json"] = sha256_file(folder / "config.json")
    (folder / "fit.json").write_text(json.dumps(meta))
    code, _, err = caption("capdec")
    assert code == 2 and "holds a DeCap fit, not a CapDec" in _one_line(err)


def test_the_payload_would_run_through_a_plain_pickle_load(tmp_path):
    """The control: the planted file really is an attack (so the test above shows a refusal)."""
    marker = tmp_path / "PWNED"
    with open(tmp_path / "state.pt", "wb") as fh:
        pickle.dump({"decoder": _Payload(marker)}, fh)
    with open(tmp_path / "state.pt", "rb") as fh:
        pickle.load(fh)  # noqa: S301 - on purpose
    assert marker.exists()


# -- 4. one writer at a time -----------------------------------------------------------------------------

_WRITER = """
import sys
from bench.records import Record, RecordStore
store = RecordStore(sys.argv[1])
for i in range(int(sys.argv[3])):
    store.add(Record(method="m" + sys.argv[2], split="s", train="s", eval="s", kind="in-domain", seed=i, config={},
                     metrics={"cider": float(i)}, encoder="e@1", train_fingerprint="t", eval_fingerprint="v"))
"""


def test_concurrent_writers_lose_no_record(tmp_path):
    writers, each = 6, 40
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(w), str(each)]) for w in range(writers)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    result = read_records(tmp_path)
    assert result.skipped == 0 and len(result.records) == writers * each
    assert len((tmp_path / RECORDS_FILE).read_text().splitlines()) == writers * each


def test_two_runs_on_one_folder_at_once_keep_both_grids(tmp_path, karpathy_root, tiny_clip_folder):
    env = {**os.environ, "BENCH_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    common = ["--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "cache"), "--encoder", tiny_clip_folder,
              "--data-root", str(karpathy_root), "--no-report", *DECODER]
    # Warm the encoder's caches first, so the two runs overlap in their cells, not in setup.
    grids = [["--methods", "clipre,nonoise", "--split", "coco"], ["--methods", "clipre,nonoise", "--split", "flickr30k"]]
    procs = [subprocess.Popen([sys.executable, "-m", "bench", "run", *grid, *common], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for grid in grids]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-500:] for o in outputs]
    records = read_records(tmp_path / "run").records
    assert sorted((r.method, r.split) for r in records) == [("clipre", "coco"), ("clipre", "flickr30k"),
                                                           ("nonoise", "coco"), ("nonoise", "flickr30k")]


# -- 5 and 6. what a user meets ----------------------------------------------------------------------------

def test_a_decompression_bomb_is_skipped_by_caption_and_named_by_a_run(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets,
                                                                      monkeypatch):
    from PIL import Image

    folder, images = _fit_and_photos(run_cli, tmp_path, tiny_clip_checkpoint, "clipre",
                                     {"small.png": (30, "red"), "huge.png": (400, "blue")})
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 20_000)  # 400 x 400 is now more than twice the limit: a "bomb"
    code, out, err = run_cli("caption", "--method", "clipre", "--checkpoint", str(folder), "--images", str(images), "--json")
    assert code == 0, err
    assert set(json.loads(out)) == {"small.png"} and "skipped 1 unreadable of 2 files (first: huge.png)" in err
    (images / "small.png").unlink()  # nothing readable left: no captions is an error, not an empty result
    code, out, err = run_cli("caption", "--method", "clipre", "--checkpoint", str(folder), "--images", str(images), "--json")
    assert code == 2 and out == "" and "none of the 1 image files in" in _one_line(err)
    Image.new("RGB", (30, 30), "red").save(images / "small.png")

    from bench.clip_encoder import ClipEncoder
    from bench.encoders import create_encoder
    from bench.errors import BenchError

    encoder = create_encoder(tiny_clip_checkpoint, log=lambda m: None)
    assert isinstance(encoder, ClipEncoder)
    with pytest.raises(BenchError, match="cannot read image .*huge.png"):
        encoder.encode_images([images / "small.png", images / "huge.png"], progress=None)

    # a bomb among a split's test images: a run names it in one line before anything loads
    from bench.data import DatasetSplit, ImageItem

    split = DatasetSplit("photos", "test", (ImageItem("1", ("a",), images / "small.png"), ImageItem("2", ("b",), images / "huge.png")))
    with pytest.raises(BenchError, match="1 of 2 image files cannot be read as images .*huge.png: DecompressionBombError"):
        split.require_readable_images()


def test_an_embedding_manifest_of_the_wrong_shape_is_rebuilt(tmp_path):
    import numpy as np

    from bench.cache import CacheKey, EmbeddingCache

    messages = []
    cache = EmbeddingCache(tmp_path, log=messages.append)
    key = CacheKey("enc@1", "d", "train", "text", "c")
    first = np.asarray(cache.get(key, lambda: np.ones((3, 4), np.float32)))
    (cache.folder(key) / "manifest.json").write_text("[1, 2, 3]")
    again = np.asarray(cache.get(key, lambda: np.ones((3, 4), np.float32)))
    assert np.array_equal(first, again) and cache.misses == 2 and "wrong shape" in messages[0]


def test_a_prepared_read_only_cache_is_enough(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets, monkeypatch):
    """Root writes everywhere, so a read-only cache is simulated: any attempt to create or probe
    a folder for writing fails, yet a second run over the prepared cache completes."""
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="clipre", split="tiny-coco")
    assert code == 0, err
    import bench.io

    def read_only(folder, *args, **kwargs):
        if str(folder).startswith(str(tmp_path / "cache")):
            raise AssertionError(f"wrote to the cache: {folder}")
        return folder

    monkeypatch.setattr(bench.io, "check_writable", read_only)
    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="clipre", split="tiny-coco", out="second")
    assert code == 0, err
    assert len(read_records(tmp_path / "second").records) == 1


def test_empty_captions_are_a_warning_in_the_record_and_the_report(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets,
                                                                   monkeypatch):
    from bench.plugins import METHODS

    monkeypatch.setattr(METHODS.get("clipre"), "caption", lambda self, emb: [""] * len(emb))
    code, _, err = run_cli("run", "--methods", "clipre", "--split", "tiny-coco", "--out", str(tmp_path / "run"),
                           "--cache-dir", str(tmp_path / "cache"), "--encoder", tiny_clip_checkpoint)
    assert code == 0, err
    record = read_records(tmp_path / "run").records[0]
    assert record.warnings == ["12 of 12 captions are empty"] and "12 of 12 captions are empty" in err
    assert "Warning: clipre on tiny-coco (seed 0" in (tmp_path / "run" / "report.md").read_text()


def test_caption_uses_the_cache_the_fit_was_made_with(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets, monkeypatch):
    from PIL import Image

    import bench.encoders

    code, _, err = _run(run_cli, tmp_path, tiny_clip_checkpoint, methods="clipre", split="tiny-coco")
    assert code == 0, err
    folder = tmp_path / "run" / "checkpoints" / read_records(tmp_path / "run").records[0].fit_key
    images = tmp_path / "photos"
    images.mkdir()
    Image.new("RGB", (30, 30), "red").save(images / "a.png")
    seen = []
    original = bench.encoders.create_encoder

    def spy(config, device="cpu", cache_dir=None, log=print):
        seen.append(cache_dir)
        return original(config, device, cache_dir, log)

    monkeypatch.setattr(bench.encoders, "create_encoder", spy)
    monkeypatch.setenv("TEXTCAP_BENCH_CACHE", str(tmp_path / "elsewhere"))
    code, _, err = run_cli("caption", "--method", "clipre", "--checkpoint", str(folder), "--images", str(images))
    assert code == 0, err
    assert seen == [(tmp_path / "cache").resolve()]
    # the encoder's weights changed since the fit: refused, not captioned in another embedding space
    import json as json_module

    meta = json_module.loads((folder / "fit.json").read_text())
    (folder / "fit.json").write_text(json_module.dumps({**meta, "encoder_id": meta["encoder_id"] + "0"}))
    code, out, err = run_cli("caption", "--method", "clipre", "--checkpoint", str(folder), "--images", str(images))
    assert code == 2 and "would come from another embedding space" in err and not out.strip()


def test_report_markdown_carries_no_raw_html_from_records(tmp_path):
    from bench.records import Record, RecordStore
    from bench.reporting import render_report

    store = RecordStore(tmp_path)
    for method, cider in (("<img src=x onerror=alert(1)>", 0.0), ("plain", 0.0)):
        store.add(Record(method=method, split="coco", train="coco", eval="coco", kind="in-domain", seed=0, config={},
                         metrics={"cider": cider, "bleu4": 0.0}, encoder="e@1", train_fingerprint="t", eval_fingerprint="v",
                         note="a & b"))
    rendered = render_report(tmp_path, gallery=0)
    markdown = rendered.markdown.read_text()
    import re

    assert not re.search(r"(?<!\\)<img", markdown) and "\\<img src=x onerror=alert(1)>" in markdown
    assert "**0.00**" not in markdown  # a tie at 0 is no best value
    html = rendered.html.read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html


def test_saved_tensors_are_the_same_bytes_wherever_and_however_often_they_are_saved(tmp_path):
    """An artefact's hash is its identity (the world CLIP's encoder id is its weights' SHA-256):
    saving the same tensors twice, under different names, must give the same bytes."""
    import torch

    from bench.io import sha256_file, torch_save_atomic
    from bench.state_io import load_tensors

    tensors = {"w": torch.arange(12.0).reshape(3, 4), "b": torch.ones(4)}
    a = torch_save_atomic(tensors, tmp_path / "a" / "weights.pt")
    b = torch_save_atomic(tensors, tmp_path / "b" / "other-name.pt")
    assert a.read_bytes() == b.read_bytes() and sha256_file(a) == sha256_file(b)
    assert not list(tmp_path.rglob(".*.tmp"))  # no temporary file left behind
    loaded = load_tensors(b)
    assert all(torch.equal(loaded[k], tensors[k]) for k in tensors)
    changed = torch_save_atomic({**tensors, "b": torch.zeros(4)}, tmp_path / "c.pt")
    assert sha256_file(changed) != sha256_file(a)


def test_run_json_keeps_the_earlier_runs_of_a_folder(run_cli, tmp_path, karpathy_root, tiny_clip_folder):
    """A second run that only skips cells must not erase what the first one did and how long it took."""
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0, err
    first = json.loads((tmp_path / "run" / "run.json").read_text())
    assert first["computed"] == 1 and first["skipped"] == 0 and first["history"] == []
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0 and "1 of 1 cells are already complete" in err
    second = json.loads((tmp_path / "run" / "run.json").read_text())
    assert second["computed"] == 0 and second["skipped"] == 1
    (earlier,) = second["history"]
    assert earlier["computed"] == 1 and earlier["wall_s"] == first["wall_s"] and earlier["command"] == first["command"]
    code, _, err = run_cli("report", str(tmp_path / "run"), "--gallery", "0")
    assert code == 0, err
    text = (tmp_path / "run" / "report.md").read_text()
    assert "1 earlier `bench run`(s) on this folder" in text and f"1 cells in {first['wall_s']} s" in text


def test_a_run_with_a_model_folder_resumes_and_its_record_has_the_cells_id(run_cli, tmp_path, karpathy_root, tiny_clip_folder):
    """A config naming a GPT-2 folder: the record's id is the cell's id (with the folder's bytes
    in it), so a second run finds the cell complete, and the first prints its summary."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.decoders.vocab import HFVocab

    folder = tmp_path / "gpt2"
    vocab = HFVocab.train(["a dog runs on the grass", "a man rides a bike", "two cats sleep"] * 20, vocab_size=300)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32, n_positions=64,
                               eos_token_id=vocab.eos, bos_token_id=vocab.eos)).save_pretrained(folder)
    vocab.tokenizer.save_pretrained(folder)
    args = ("--no-clip-score", "--decoder", "gpt2", "--set", f"decoder.gpt2_path={folder}", "--set", "decoder.epochs=1",
            "--set", "decoder.prefix_length=2", "--set", "decoder.beam_size=1")
    code, out, err = _run(run_cli, tmp_path, tiny_clip_folder, *args, data=karpathy_root, methods="nonoise")
    assert code == 0, err
    assert "nonoise" in out  # the summary table: the record is one of this run's cells
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, *args, data=karpathy_root, methods="nonoise")
    assert code == 0 and "1 of 1 cells are already complete" in err
    assert len((tmp_path / "run" / "records.jsonl").read_text().splitlines()) == 1
    # the model rewritten in place: the cell is another cell, and its old result beside a new one
    # would be two results of one seed in one row; the folder is refused, as for another encoder
    import torch

    torch.manual_seed(1)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_layer=1, n_head=2, n_embd=32, n_positions=64,
                               eos_token_id=vocab.eos, bos_token_id=vocab.eos)).save_pretrained(folder)
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, *args, data=karpathy_root, methods="nonoise")
    line = err.strip().splitlines()[-1]  # (above it: save_pretrained's own progress bar, from this test)
    assert "Traceback" not in err and line.startswith("bench run: error:")
    assert code == 2 and f"computed with other files in {folder} than are there now" in line and "pass another --out" in line
    assert len((tmp_path / "run" / "records.jsonl").read_text().splitlines()) == 1


def test_a_recorded_cell_without_its_samples_is_computed_again(run_cli, tmp_path, karpathy_root, tiny_clip_folder):
    """The samples are what intervals, tests and the gallery read: a record without them is not a
    complete cell. A re-run computes it again (its fit reused) and the new record wins."""
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0, err
    (record,) = read_records(tmp_path / "run").records
    samples = tmp_path / "run" / "samples" / f"{record.cell_id}.json"
    kept = samples.read_text()
    samples.unlink()
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0 and "1 recorded cell(s)" in err and "have no usable samples file" in err and ": missing)" in err
    assert samples.read_text() == kept  # the same per-image results again
    (again,) = read_records(tmp_path / "run").records  # one cell, the last line wins
    assert again.cell_id == record.cell_id and again.metrics == record.metrics
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0 and "1 of 1 cells are already complete" in err
    # damaged from outside (a disk, a hand edit): repaired by the next run, not kept for ever
    rows = json.loads(kept)
    for damage, reason in ((kept[:len(kept) // 2], "unreadable"), (json.dumps(rows[:1]), f"1 of its record's {len(rows)} images"),
                           (json.dumps({"rows": rows}), "not a list of per-image samples")):
        samples.write_text(damage)
        code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
        assert code == 0 and "have no usable samples file" in err and reason in err, err
        assert samples.read_text() == kept


def test_captions_cut_by_max_length_are_a_warning_in_the_record(run_cli, tmp_path, tiny_clip_checkpoint, tiny_datasets):
    """decoder.max_length=3 keeps two tokens of every tiny-coco caption: the run works, and the
    record says the decoder never saw the ends of its captions."""
    code, _, err = run_cli("run", "--methods", "nonoise", "--split", "tiny-coco", "--out", str(tmp_path / "run"),
                           "--cache-dir", str(tmp_path / "cache"), "--encoder", tiny_clip_checkpoint,
                           "--set", "decoder.max_length=3", "--set", "decoder.width=32", "--set", "decoder.layers=1",
                           "--set", "decoder.heads=2", "--set", "decoder.epochs=1", "--no-clip-score")
    assert code == 0, err
    record = read_records(tmp_path / "run").records[0]
    cut, total = record.fit_info["truncated_captions"], record.fit_info["captions"]
    assert cut > 0.01 * total
    assert f"{cut} of {total} training captions were longer than decoder.max_length allows and were cut" in record.warnings


def test_temporaries_of_killed_writes_are_removed_where_this_tool_writes_and_nowhere_else(run_cli, tmp_path, karpathy_root,
                                                                                          tiny_clip_folder):
    """A process killed mid-write leaves its ``atomic_path`` temporary behind (an embedding of a
    large corpus is a gigabyte); the next run removes those older than an hour in the run folder
    and the cache, keeps younger ones (another process may be writing them) and touches no folder
    it does not write."""
    import time

    from bench.io import remove_stale_temporaries

    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0, err
    run, cache = tmp_path / "run", tmp_path / "cache"
    old = time.time() - 2 * 3600
    mark = ".textcap-bench.tmp"  # what this tool's temporaries end with
    stale = [run / f".records.jsonl.ab12cd_3{mark}", run / "samples" / f".x.json.zzzzzzzz{mark}",
             cache / "embeddings" / f".embeddings.npy.a1b2c3d4{mark}",
             cache / "shapes" / "world-x" / "img_000001.4242.tmp.png",  # an earlier version's image temporaries
             cache / "generated" / "ab" / "ab12cd.77.tmp.png"]
    kept = [run / f".records.jsonl.youngone{mark}", run / "notes" / f".mine.json.abcdefgh{mark}", run / "a.tmp",
            run / ".plain.tmp", run / "samples" / ".notes.20240101.tmp", cache / "open_clip" / f".weights.bin.abcdefgh{mark}",
            run / "samples" / "img.4242.tmp.png", cache / "embeddings" / "img.4242.tmp.png"]  # not where images were written
    for path in stale + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1000)
        if not path.name.startswith(".records.jsonl.youngone"):
            os.utime(path, (old, old))
    code, _, err = _run(run_cli, tmp_path, tiny_clip_folder, data=karpathy_root, methods="clipre")
    assert code == 0, err
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
    assert "removed 5 temporary file(s) (0.0 MB) that interrupted writes left" in err
    assert remove_stale_temporaries(run / "notes", older_than=0.0) == (1, 1000)  # the function itself, where asked


def test_atomic_writes_give_files_the_usual_mode_without_touching_the_process_umask(tmp_path, monkeypatch):
    """mkstemp makes a file 0600; an atomic write gives it what a plain open would (0666 less
    the umask), read on Linux without setting the umask, which a thread creating a file at that
    moment would otherwise get."""
    import stat
    import sys

    from bench.io import write_text_atomic

    previous = os.umask(0o027)
    try:
        if sys.platform.startswith("linux"):
            def refuse(_mask):
                raise AssertionError("the umask was set")

            monkeypatch.setattr(os, "umask", refuse)
        path = write_text_atomic(tmp_path / "a.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        (tmp_path / "plain.txt").write_text("x")
        assert stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode) == stat.S_IMODE(path.stat().st_mode)
    finally:
        monkeypatch.undo()
        os.umask(previous)
