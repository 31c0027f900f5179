"""Dataset types: what a dataset plugin returns, and how a data root is found.

A dataset plugin subclasses :class:`CaptionDataset` and registers itself in ``DATASETS``.
``load(split)`` returns a :class:`DatasetSplit`: images with their reference captions and,
where the dataset has pixels, the path of each image file. Loading captions never needs the
image files; ``DatasetSplit.require_images()`` checks them when a stage needs pixels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bench.config import DATA_ROOT_ENV, default_data_root
from bench.errors import DataError


@dataclass(frozen=True)
class ImageItem:
    """One image: its id, its reference captions, and its file (None for text-only data)."""

    image_id: str
    captions: tuple[str, ...]
    path: Path | None = None


@dataclass(frozen=True)
class DatasetSplit:
    """The images of one split of one dataset, in a fixed order."""

    dataset: str
    split: str
    items: tuple[ImageItem, ...]
    note: str = ""
    #: Builds the image files on first need (procedural datasets); None for real data.
    materialize: Callable[[], None] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        seen: dict[str, ImageItem] = {}
        for item in self.items:
            if item.image_id in seen:
                raise DataError(f"{self.dataset} {self.split}: image id {item.image_id} appears twice "
                                f"({seen[item.image_id].path or 'no file'} and {item.path or 'no file'}); ids must be unique")
            seen[item.image_id] = item

    def __len__(self) -> int:
        return len(self.items)

    def captions(self) -> list[str]:
        """Every caption of the split, image by image (the text-only training corpus)."""
        return [c for item in self.items for c in item.captions]

    def references(self) -> dict[str, list[str]]:
        return {item.image_id: list(item.captions) for item in self.items}

    def require_images(self) -> list[Path]:
        """The image paths, or a one-line DataError saying what is missing where."""
        if self.materialize is not None:
            self.materialize()
        paths = [item.path for item in self.items]
        if any(p is None for p in paths):
            raise DataError(f"{self.dataset} {self.split} has no image files (it is a caption-only dataset)")
        folders = sorted({p.parent for p in paths if p is not None})
        absent = [f for f in folders if not f.is_dir()]
        if absent:
            expected = sum(1 for p in paths if p is not None and p.parent == absent[0])
            raise DataError(f"{self.dataset} {self.split}: image folder {absent[0]} does not exist "
                            f"(expected {expected} image files in it)")
        missing = [p for p in paths if p is not None and not p.is_file()]
        if missing:
            raise DataError(f"{self.dataset} {self.split}: {len(missing)} of {len(paths)} image files are missing "
                            f"(first: {missing[0]})")
        return paths  # type: ignore[return-value]

    def require_readable_images(self) -> list[Path]:
        """:meth:`require_images`, and every file's header read as an image (about 0.1 ms each): a
        file that is not an image is a one-line error before any model loads, not after."""
        from PIL import Image, UnidentifiedImageError

        paths = self.require_images()
        bad = []
        for path in paths:
            try:
                with Image.open(path):
                    pass
            except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
                bad.append((path, exc))
        if bad:
            path, exc = bad[0]
            raise DataError(f"{self.dataset} {self.split}: {len(bad)} of {len(paths)} image files cannot be read as images "
                            f"(first: {path}: {type(exc).__name__})")
        return paths


class CaptionDataset(ABC):
    """A family of caption data under a data root.

    ``root`` is the data root (``--data-root`` or ``$TEXTCAP_BENCH_DATA``); a dataset looks
    for its files in ``root / folder``. ``style`` is None for factual captions, or the style
    name (``romantic``, ``humor``) for stylised ones: a split trained on a style is a style
    split. ``splits`` are the split names ``load`` accepts.
    """

    name: ClassVar[str] = ""
    folder: ClassVar[str] = ""
    style: ClassVar[str | None] = None
    splits: ClassVar[tuple[str, ...]] = ("train", "val", "test")
    #: The object words of this data (a CLIP tagger's vocabulary); empty when it names none.
    object_vocabulary: ClassVar[tuple[str, ...]] = ()
    #: Other words the captions use for the object words, mapped onto them (entity methods).
    entity_aliases: ClassVar[dict[str, str]] = {}
    #: The name of the data's own text-to-image generator (``shapes``); empty for real data.
    generator: ClassVar[str] = ""

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        self.root = Path(root).expanduser() if root is not None else default_data_root()
        self.options = options

    @property
    def directory(self) -> Path:
        if self.root is None:
            raise DataError(f"dataset {self.name} needs a data root: pass --data-root DIR or set {DATA_ROOT_ENV} "
                            f"(expected its files under DIR/{self.folder}/)")
        return self.root / self.folder

    def check_split(self, split: str) -> None:
        if split not in self.splits:
            raise DataError(f"dataset {self.name} has no split {split!r}; it has {', '.join(self.splits)}")

    @abstractmethod
    def load(self, split: str) -> DatasetSplit:
        """The images and captions of ``split``."""
