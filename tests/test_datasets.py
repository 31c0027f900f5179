import json

import pytest

from bench.errors import DataError
from bench.plugins import create_dataset
from tests.fixtures import karpathy_images, write_flattened, write_flickrstyle, write_images, write_karpathy


def test_karpathy_splits_merge_restval(tmp_path):
    images = karpathy_images()
    write_karpathy(tmp_path, "coco", images)
    ds = create_dataset("coco", tmp_path)
    train = ds.load("train")
    expected = [str(i["cocoid"]) for i in images if i["split"] in ("train", "restval")]
    assert [item.image_id for item in train.items] == expected
    assert len(train.captions()) == 5 * len(expected)
    test = ds.load("test")
    assert all(len(item.captions) == 5 for item in test.items)
    assert test.items[0].path == tmp_path / "coco" / "images" / "val2014" / "COCO_val2014_000000001003.jpg"


def test_an_image_without_captions_or_file_name_is_refused_at_load(tmp_path):
    """An image nothing describes has no reference to score against: refused where the file is
    read (not after every cell has trained, in scoring); a null file name is not a file "None"."""
    from bench.annotations import parse_flattened, parse_karpathy

    images = karpathy_images()
    images[3]["sentences"] = []
    with pytest.raises(DataError, match=r"x.json: image COCO_val2014_000000001003.jpg has no sentences"):
        parse_karpathy({"images": images}, "x.json")
    images = karpathy_images()
    images[0]["filename"] = None
    with pytest.raises(DataError, match=r"x.json: image #0 has a filename that is not a string \(null\)"):
        parse_karpathy({"images": images}, "x.json")
    with pytest.raises(DataError, match=r"y.json: image a.jpg has no captions"):
        parse_flattened([{"image_name": "b.jpg", "captions": ["a cat"]}, {"image_name": "a.jpg", "captions": []}], "y.json")


def test_karpathy_images_checked_only_when_needed(tmp_path):
    images = karpathy_images()
    write_karpathy(tmp_path, "coco", images)
    split = create_dataset("coco", tmp_path).load("test")
    with pytest.raises(DataError, match="image folder .* does not exist"):
        split.require_images()
    write_images(tmp_path, [i for i in images if i["split"] == "test"][:1])
    for folder in ("train2014", "val2014"):
        (tmp_path / "coco" / "images" / folder).mkdir(parents=True, exist_ok=True)
    with pytest.raises(DataError, match="1 of 2 image files are missing"):
        split.require_images()
    write_images(tmp_path, images)
    assert all(p.is_file() for p in split.require_images())


def test_flickr_alias_and_flattened_per_split_file(tmp_path):
    images = karpathy_images()
    (tmp_path / "flickr30k").mkdir()
    write_flattened(tmp_path / "flickr30k" / "flickr30k_karpathy_test.json", [i for i in images if i["split"] == "test"])
    split = create_dataset("flickr", tmp_path).load("test")
    assert split.dataset == "flickr30k" and len(split) == 2
    assert split.items[0].captions[0] == images[3]["sentences"][0]["raw"]


def test_missing_files_say_what_was_expected_where(tmp_path):
    with pytest.raises(DataError, match="dataset_coco.json nor .*coco_karpathy_test.json exists"):
        create_dataset("coco", tmp_path).load("test")
    with pytest.raises(DataError, match="has no split 'dev'"):
        create_dataset("coco", tmp_path).load("dev")


def test_missing_data_root(monkeypatch):
    monkeypatch.delenv("TEXTCAP_BENCH_DATA", raising=False)
    with pytest.raises(DataError, match="--data-root"):
        create_dataset("coco").load("test")


def test_data_root_from_environment(tmp_path, monkeypatch):
    write_karpathy(tmp_path, "coco")
    monkeypatch.setenv("TEXTCAP_BENCH_DATA", str(tmp_path))
    assert len(create_dataset("coco").load("val")) == 1


def test_wrong_shape_annotation(tmp_path):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "dataset_coco.json").write_text(json.dumps({"images": [{"file": 1}]}))
    with pytest.raises(DataError, match="not a Karpathy split file"):
        create_dataset("coco", tmp_path).load("train")


def test_real_flattened_sample(shared_data, tmp_path):
    (tmp_path / "coco").mkdir()
    (tmp_path / "coco" / "coco_karpathy_val.json").symlink_to(shared_data / "coco_karpathy_val.json")
    split = create_dataset("coco", tmp_path).load("val")
    assert len(split) == 5000
    assert len(split.captions()) == 25010
    assert split.items[0].image_id.isdigit()  # COCO ids parsed from COCO_val2014_000000xxxxxx.jpg


@pytest.mark.parametrize("pickled", [True, False])
def test_flickrstyle_seeded_split(tmp_path, pickled):
    write_flickrstyle(tmp_path, n=40, pickled=pickled)
    ds = create_dataset("flickrstyle-romantic", tmp_path, test_size=10)
    train, test = ds.load("train"), ds.load("test")
    assert len(train) == 30 and len(test) == 10
    assert not {i.image_id for i in train.items} & {i.image_id for i in test.items}
    assert all(len(i.captions) == 1 and "romantic" in i.captions[0] for i in test.items)
    assert "seeded split" in test.note
    # Same seed, same split; another seed, another split.
    again = create_dataset("flickrstyle-romantic", tmp_path, test_size=10).load("test")
    other = create_dataset("flickrstyle-romantic", tmp_path, test_size=10, split_seed=1).load("test")
    assert [i.image_id for i in again.items] == [i.image_id for i in test.items]
    assert [i.image_id for i in other.items] != [i.image_id for i in test.items]
    # Caption i belongs to image i.
    item = test.items[0]
    number = int(item.image_id.split("_")[0]) - 1000
    assert item.captions[0].endswith(f"number {number}")


def test_flickrstyle_errors(tmp_path):
    folder = write_flickrstyle(tmp_path, n=20)
    with pytest.raises(DataError, match="no val images"):
        create_dataset("flickrstyle-humor", tmp_path, test_size=5).load("val")
    with pytest.raises(DataError, match="leaves no training images"):
        create_dataset("flickrstyle-humor", tmp_path, test_size=20).load("train")
    (folder / "humor" / "funny_train.txt").write_text("only one line\n")
    with pytest.raises(DataError, match="1 captions but 20 image names"):
        create_dataset("flickrstyle-humor", tmp_path, test_size=5).load("test")
    (folder / "romantic" / "train.p").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a pickled list"):
        create_dataset("flickrstyle-romantic", tmp_path, test_size=5).load("test")
    # a damaged pickle that claims a huge length, and a name list that is not UTF-8: one line, not a traceback
    (folder / "romantic" / "train.p").write_bytes(b"\x80\x04\x95\xff\xff\xff\xff\xff\xff\x00\x00.")
    with pytest.raises(DataError, match="not a pickled list"):
        create_dataset("flickrstyle-romantic", tmp_path, test_size=5).load("test")
    (folder / "romantic" / "train.p").unlink()
    (folder / "romantic" / "train_images.txt").write_bytes(b"a.jpg\n\xff.jpg\n")
    with pytest.raises(DataError, match="is not a UTF-8 list of image names"):
        create_dataset("flickrstyle-romantic", tmp_path, test_size=1).load("test")
    # a blank or wordless caption line among the others is no caption
    folder = write_flickrstyle(tmp_path / "again", n=20)
    lines = (folder / "humor" / "funny_train.txt").read_text().splitlines()
    for bad, message in (("", "has an empty caption"), ("...", "has a caption with no word in it")):
        (folder / "humor" / "funny_train.txt").write_text("\n".join([*lines[:3], bad, *lines[4:]]) + "\n")
        with pytest.raises(DataError, match=rf"funny_train.txt line 4: image 1003_abcdef.jpg {message}"):
            for split in ("test", "train"):  # line 4 falls in one of the two
                create_dataset("flickrstyle-humor", tmp_path / "again", test_size=5).load(split)


def test_flickrstyle_split_options_are_checked(tmp_path):
    from bench.errors import BenchError

    write_flickrstyle(tmp_path, n=20)
    for options, fragment in (({"test_size": "ten"}, "test_size must be an integer"), ({"test_size": 0}, "test_size >= 1"),
                              ({"val_size": -1}, "must be >= 0"), ({"split_seed": 1.5}, "split_seed must be an integer")):
        with pytest.raises(BenchError, match=fragment):  # one line, exit 2: a ConfigError or a DataError
            create_dataset("flickrstyle-romantic", tmp_path, **options).load("test")
