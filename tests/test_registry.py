import pytest

from bench.errors import UnknownNameError
from bench.registry import Registry


class Base:
    """Base doc."""


class Good(Base):
    """A good plugin."""


class Other:
    pass


@pytest.fixture
def reg():
    return Registry("method", Base)


def test_register_and_get(reg):
    reg.register("good", Good)
    assert reg.get("good") is Good
    assert reg.entry("good").summary == "A good plugin."
    assert "good" in reg and len(reg) == 1


def test_decorator_registration(reg):
    @reg.register("deco")
    class Deco(Base):
        pass

    assert reg.get("deco") is Deco


def test_wrong_type_fails_at_registration(reg):
    with pytest.raises(TypeError, match="must be a subclass of Base"):
        reg.register("other", Other)
    with pytest.raises(TypeError):
        reg.register("instance", Good())
    assert "other" not in reg


def test_duplicate_name_fails(reg):
    reg.register("good", Good)

    class Good2(Base):
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register("good", Good2)
    reg.register("good", Good)  # the same object again (a re-import) is not a conflict


def test_alias_lookup_and_conflicts(reg):
    reg.register("flickr30k", Good, aliases=("flickr",))
    assert reg.canonical("flickr") == "flickr30k"
    assert reg.get("flickr") is Good

    class B(Base):
        pass

    with pytest.raises(ValueError, match="alias"):
        reg.register("x", B, aliases=("flickr",))
    with pytest.raises(ValueError, match="alias"):
        reg.register("flickr", B)


def test_unknown_name_lists_known_and_nearest(reg):
    reg.register("capdec", Good)

    class D(Base):
        pass

    reg.register("decap", D)
    with pytest.raises(UnknownNameError) as info:
        reg.get("capdc")
    msg = str(info.value)
    assert "known: capdec, decap" in msg
    assert "did you mean 'capdec'" in msg


def test_unknown_name_in_empty_registry(reg):
    with pytest.raises(UnknownNameError, match="no methods are registered yet"):
        reg.get("capdec")


def test_wildcard_listing(reg):
    for name in ("capdec", "clipre", "decap"):
        reg.register(name, type(name, (Base,), {}))
    assert reg.list() == ["capdec", "clipre", "decap"]
    assert reg.list("c*") == ["capdec", "clipre"]
    assert reg.list("*cap") == ["decap"]
    assert reg.list("x*") == []


def test_lazy_entry_is_imported_and_type_checked_on_first_use():
    reg = Registry("thing", object)
    reg.register("od", "collections:OrderedDict")
    assert not reg.entry("od").loaded
    import collections

    assert reg.get("od") is collections.OrderedDict
    assert reg.entry("od").loaded

    strict = Registry("method", Base)
    strict.register("bad", "collections:OrderedDict")
    with pytest.raises(TypeError):
        strict.get("bad")


def test_bad_names_rejected(reg):
    for bad in ("", " x", "a,b"):
        with pytest.raises(ValueError):
            reg.register(bad, Good)
