"""FlickrStyle10K: stylised (romantic, humorous) captions of Flickr images.

Only the 7,000 stylised *training* captions were released (one per image and style), and the
paper's test split never was. This loader therefore makes its own split, seeded and
documented: the 7,000 images are shuffled with ``split_seed`` (default 0) and the first
``test_size`` (default 1,000) become test, the next ``val_size`` (default 0) val, the rest
(6,000) train, the 6,000 / 1,000 protocol used by most stylised-captioning work. Reports say
so. References are the single stylised caption of each image.

Layout under the data root::

    flickrstyle10k/romantic/romantic_train.txt   one caption per line
    flickrstyle10k/humor/funny_train.txt
    flickrstyle10k/<style>/train.p               the image file names, a pickled list, in line order
        (or <style>/train_images.txt, one file name per line)
    flickrstyle10k/images/<file name>
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

from bench.annotations import text
from bench.data import CaptionDataset, DatasetSplit, ImageItem
from bench.errors import DataError
from bench.plugins import register_dataset
from bench.vocabularies import COCO_ALIASES, COCO_OBJECTS


class _ListUnpickler(pickle.Unpickler):
    """Reads a pickled list of strings and refuses anything else (no code runs)."""

    def find_class(self, module: str, name: str):  # pragma: no cover - only hit by a hostile file
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_image_list(folder: Path) -> list[str]:
    text_list, pickled = folder / "train_images.txt", folder / "train.p"
    if text_list.is_file():
        try:
            listing = text_list.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{text_list} is not a UTF-8 list of image names ({type(exc).__name__}: {exc})") from None
        return [line.strip() for line in listing.splitlines() if line.strip()]
    if pickled.is_file():
        try:
            with open(pickled, "rb") as fh:
                names = _ListUnpickler(fh, encoding="latin1").load()  # written by Python 2
        except Exception as exc:  # noqa: BLE001 - a damaged file fails in many ways (a huge length claimed: MemoryError)
            raise DataError(f"{pickled} is not a pickled list of image names ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, (str, bytes)) for n in names):
            raise DataError(f"{pickled} is not a pickled list of image names")
        return [n.decode() if isinstance(n, bytes) else n for n in names]
    raise DataError(f"FlickrStyle10K: neither {text_list} nor {pickled} exists (the image names of the captions)")


class FlickrStyle(CaptionDataset):
    folder = "flickrstyle10k"
    object_vocabulary = COCO_OBJECTS
    entity_aliases = COCO_ALIASES
    caption_file = ""

    def seeded_split(self) -> dict[str, list[int]]:
        """Line indices of each split, from the seed and sizes in the options."""
        names = self._names()
        from bench.config import coerce

        seed = coerce(self.options.get("split_seed", 0), int, f"{self.name}: split_seed")
        test_size = coerce(self.options.get("test_size", 1000), int, f"{self.name}: test_size")
        val_size = coerce(self.options.get("val_size", 0), int, f"{self.name}: val_size")
        if seed < 0 or test_size < 1 or val_size < 0:
            raise DataError(f"{self.name}: split_seed and val_size must be >= 0 and test_size >= 1, "
                            f"got {seed}, {val_size} and {test_size}")
        if test_size + val_size >= len(names):
            raise DataError(f"{self.name}: test_size + val_size ({test_size + val_size}) leaves no training images of {len(names)}")
        order = list(range(len(names)))
        random.Random(seed).shuffle(order)
        return {"test": sorted(order[:test_size]), "val": sorted(order[test_size:test_size + val_size]),
                "train": sorted(order[test_size + val_size:])}

    def _names(self) -> list[str]:
        folder = self.directory / self.style_folder
        names = read_image_list(folder)
        captions = self._captions()
        if len(names) != len(captions):
            raise DataError(f"{self.name}: {len(captions)} captions but {len(names)} image names in {folder}")
        return names

    def _captions(self) -> list[str]:
        path = self.directory / self.style_folder / self.caption_file
        if not path.is_file():
            raise DataError(f"{self.name}: caption file {path} does not exist")
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
        while lines and not lines[-1]:  # a trailing newline is not a caption; inner lines keep alignment
            lines.pop()
        return lines

    def load(self, split: str) -> DatasetSplit:
        self.check_split(split)
        indices = self.seeded_split()[split]
        if not indices:
            raise DataError(f"{self.name} has no {split} images with val_size=0; pass the option val_size=N")
        names, captions = self._names(), self._captions()
        images = self.directory / "images"
        source = self.directory / self.style_folder / self.caption_file
        # a blank or wordless line is no caption: refused here, as in every other caption file, not in scoring
        items = tuple(ImageItem(Path(names[i]).stem, (text(captions[i], f"{source} line {i + 1}", names[i]),), images / names[i])
                      for i in indices)
        note = (f"FlickrStyle10K has no released test split; this is a seeded split (seed "
                f"{self.options.get('split_seed', 0)}) of its 7,000 training images")
        return DatasetSplit(self.name, split, items, note=note)


@register_dataset()
class FlickrStyleRomantic(FlickrStyle):
    """FlickrStyle10K romantic captions (seeded 6,000 / 1,000 split; see the module doc)."""

    name = "flickrstyle-romantic"
    style = "romantic"
    style_folder = "romantic"
    caption_file = "romantic_train.txt"


@register_dataset(aliases=("flickrstyle-funny", "flickrstyle-humorous"))
class FlickrStyleHumor(FlickrStyle):
    """FlickrStyle10K humorous captions (seeded 6,000 / 1,000 split; see the module doc)."""

    name = "flickrstyle-humor"
    style = "humor"
    style_folder = "humor"
    caption_file = "funny_train.txt"
