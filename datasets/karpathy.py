"""Karpathy splits of MS-COCO and Flickr30k.

Layout under the data root (``--data-root`` / ``$TEXTCAP_BENCH_DATA``)::

    coco/dataset_coco.json            Karpathy's file; restval is merged into train
    coco/images/val2014/...           image files, at images/<filepath>/<filename>
    flickr30k/dataset_flickr30k.json
    flickr30k/images/<filename>

Instead of ``dataset_<name>.json``, per-split files in the flattened list format that several
projects release are accepted: ``<name>_karpathy_<split>.json`` holding
``[{"split", "image_name", "file_path"?, "captions": [...]}]``. An ``image_root`` option
points at images kept elsewhere.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from bench.annotations import AnnotatedImage, parse_flattened, parse_karpathy, read_json
from bench.data import CaptionDataset, DatasetSplit, ImageItem
from bench.errors import DataError
from bench.plugins import register_dataset
from bench.vocabularies import COCO_ALIASES, COCO_OBJECTS


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime: float, flattened: bool) -> tuple[AnnotatedImage, ...]:
    # dataset_coco.json is ~150 MB: parse it once per process, re-read when it changes.
    data = read_json(path, "annotation file")
    return tuple((parse_flattened if flattened else parse_karpathy)(data, path))


class KarpathyDataset(CaptionDataset):
    """A Karpathy-split dataset: 5 human captions per image, train (with restval) / val / test."""

    object_vocabulary = COCO_OBJECTS  # what COCO-trained detectors name; Flickr30k photos show the same things
    entity_aliases = COCO_ALIASES

    def annotation_files(self, split: str) -> list[Path]:
        return [self.directory / f"dataset_{self.name}.json", self.directory / f"{self.name}_karpathy_{split}.json"]

    def image_root(self) -> Path:
        return Path(self.options["image_root"]).expanduser() if self.options.get("image_root") else self.directory / "images"

    def load(self, split: str) -> DatasetSplit:
        self.check_split(split)
        full, flat = self.annotation_files(split)
        if full.is_file():
            images = [img for img in _read(str(full), os.path.getmtime(full), False)
                      if img.split == split or (split == "train" and img.split == "restval")]
            source = full
        elif flat.is_file():
            images = list(_read(str(flat), os.path.getmtime(flat), True))
            source = flat
        else:
            raise DataError(f"dataset {self.name}: neither {full} nor {flat} exists")
        if not images:
            raise DataError(f"dataset {self.name}: {source} has no images in split {split!r}")
        root = self.image_root()
        items = tuple(
            ImageItem(img.image_id, img.captions, root / img.filepath / img.filename if img.filepath else root / img.filename)
            for img in images
        )
        return DatasetSplit(self.name, split, items)


@register_dataset()
class COCO(KarpathyDataset):
    """MS-COCO, Karpathy split: 113,287 train (restval merged) / 5,000 val / 5,000 test images."""

    name = "coco"
    folder = "coco"


@register_dataset(aliases=("flickr",))
class Flickr30k(KarpathyDataset):
    """Flickr30k, Karpathy split: 29,000 train / 1,014 val / 1,000 test images."""

    name = "flickr30k"
    folder = "flickr30k"
