"""The split spec: ``TRAIN`` or ``TRAIN->EVAL``, parsed in one place into a typed object.

``coco`` trains and evaluates on COCO (in-domain); ``coco->flickr30k`` trains on COCO
captions and evaluates on Flickr30k images (cross-domain); a train set with a caption style
(``flickrstyle-romantic``, ``shapes-humor``) makes a style split. Dataset names are resolved
through the dataset registry, so aliases (``flickr``) work and unknown names fail with the
nearest known one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from bench.errors import ConfigError

SplitKind = Literal["in-domain", "cross-domain", "style"]
KINDS: tuple[str, ...] = ("in-domain", "cross-domain", "style")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_ARROWS = ("->", "→", "=>")


@dataclass(frozen=True)
class SplitSpec:
    """A parsed split: train on ``train``'s captions, evaluate on ``eval``'s test images."""

    train: str
    eval: str
    kind: SplitKind

    def __str__(self) -> str:
        return self.train if self.train == self.eval else f"{self.train}->{self.eval}"

    @property
    def name(self) -> str:
        return str(self)


def parse_split(spec: str, *, resolve: bool = True) -> SplitSpec:
    """Parse ``spec``; with ``resolve`` the names go through the dataset registry.

    Raises :class:`ConfigError` (one line, exit 2 at the CLI) for a malformed spec such as
    ``coco->``, ``->flickr`` or ``a->b->c``, and UnknownNameError for an unknown dataset.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError("split spec is empty; expected TRAIN or TRAIN->EVAL, e.g. coco->flickr30k")
    text = spec.strip()
    for arrow in _ARROWS[1:]:
        text = text.replace(arrow, "->")
    parts = [p.strip() for p in text.split("->")]
    if len(parts) > 2:
        raise ConfigError(f"split spec {spec!r} has {len(parts) - 1} arrows; expected TRAIN or TRAIN->EVAL")
    for part, role in zip(parts, ("train", "eval")):
        if not part:
            raise ConfigError(f"split spec {spec!r} has no {role} dataset; expected TRAIN or TRAIN->EVAL")
        if not _NAME.match(part):
            raise ConfigError(f"split spec {spec!r}: {part!r} is not a dataset name")
    train, evaluate = parts[0], parts[-1]
    style = False
    if resolve:
        from bench.plugins import DATASETS, load_plugins

        load_plugins()
        train, evaluate = DATASETS.canonical(train), DATASETS.canonical(evaluate)
        style = DATASETS.entry(train).tags.get("style") is not None
    if style:
        kind: SplitKind = "style"
    elif train == evaluate:
        kind = "in-domain"
    else:
        kind = "cross-domain"
    return SplitSpec(train=train, eval=evaluate, kind=kind)


def parse_splits(specs: str | list[str] | tuple[str, ...]) -> list[SplitSpec]:
    """Parse a comma-separated list (or a sequence) of specs, keeping order, dropping repeats."""
    items = specs.split(",") if isinstance(specs, str) else list(specs)
    out: list[SplitSpec] = []
    for item in items:
        split = parse_split(item)
        if split not in out:
            out.append(split)
    return out
