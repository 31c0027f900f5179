import pytest

from bench.errors import ConfigError, UnknownNameError
from bench.splits import SplitSpec, parse_split, parse_splits


def test_in_domain():
    assert parse_split("coco") == SplitSpec("coco", "coco", "in-domain")


def test_cross_domain_and_alias():
    split = parse_split("coco->flickr")
    assert split == SplitSpec("coco", "flickr30k", "cross-domain")
    assert str(split) == "coco->flickr30k"


def test_spaces_and_unicode_arrow():
    assert parse_split("  coco -> flickr30k ") == parse_split("coco→flickr30k")


def test_style_kind():
    assert parse_split("flickrstyle-romantic").kind == "style"
    assert parse_split("flickrstyle-funny").train == "flickrstyle-humor"


def test_same_dataset_both_sides_is_in_domain():
    assert parse_split("coco->coco").kind == "in-domain"


@pytest.mark.parametrize("spec", ["coco->", "->flickr", "a->b->c", "", "   ", "->", "coco->flickr30k->coco", "co co"])
def test_malformed_specs(spec):
    with pytest.raises(ConfigError):
        parse_split(spec)


def test_unknown_dataset_names_nearest():
    with pytest.raises(UnknownNameError, match="did you mean 'coco'"):
        parse_split("cocoo->flickr30k")


def test_parse_splits_list_keeps_order_and_drops_repeats():
    specs = parse_splits("flickr30k,coco->flickr,coco->flickr30k")
    assert [str(s) for s in specs] == ["flickr30k", "coco->flickr30k"]
