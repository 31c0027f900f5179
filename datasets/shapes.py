"""The embedded ``shapes`` world as four datasets: ``shapes-coco`` (alias ``shapes``),
``shapes-flickr``, ``shapes-romantic`` and ``shapes-humor``.

Nothing is downloaded: ``python -m bench prepare shapes`` builds the caption files, trains the
world's CLIP and writes its model card, all under the cache directory
(``--cache-dir`` / ``$TEXTCAP_BENCH_CACHE``). Images are rendered when a stage first needs them.
See ``bench/shapes/`` for the world itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.config import default_cache_dir
from bench.data import DatasetSplit
from bench.plugins import register_dataset
from bench.progress import progress
from bench.shapes.captions import SHAPE_LEXICON
from bench.shapes.domains import WorldConfig, build_annotations, render_images
from bench.shapes.prepare import world_dir
from bench.shapes.world import SHAPES

from .karpathy import KarpathyDataset


class Shapes(KarpathyDataset):
    """A domain of the shapes world (see ``bench.shapes.domains``)."""

    domain = ""
    #: Datasets of one family are built together: preparing one prepares them all.
    family = "shapes"
    #: The world's object words: what a tagger is scored on.
    object_vocabulary: tuple[str, ...] = SHAPES
    #: The captions' other names for the shapes ("dot", "box", "ball", "round shape").
    entity_aliases = {" ".join(words): shape for words, shape in SHAPE_LEXICON if " ".join(words) != shape}
    #: SynTIC-style methods generate their training images with the world's own renderer.
    generator = "shapes"

    def __init__(self, root: str | Path | None = None, **options: Any) -> None:
        super().__init__(root, **options)
        self.world: WorldConfig = options.get("world") or WorldConfig()
        self.cache_dir = Path(options.get("cache_dir") or default_cache_dir()).expanduser()

    @property
    def folder(self) -> str:  # type: ignore[override]
        return self.name

    @property
    def world_dir(self) -> Path:
        return world_dir(self.world, self.cache_dir)

    @property
    def directory(self) -> Path:
        return self.world_dir / self.name

    def ensure_world(self) -> None:
        if not (self.directory / f"dataset_{self.name}.json").is_file():
            build_annotations(self.world, self.world_dir)

    def load(self, split: str) -> DatasetSplit:
        self.check_split(split)
        self.ensure_world()
        loaded = super().load(split)
        folder = self.image_root() / split

        def materialize() -> None:
            render_images(self.world, self.domain, split, folder, progress)

        return DatasetSplit(loaded.dataset, split, loaded.items, note=loaded.note, materialize=materialize)

    def prepare(self, cache_dir: str | Path | None = None, clip: Any = None, log=print, verbose: bool = False) -> dict[str, Any]:
        """Build the world and its CLIP (cached); returns the CLIP manifest with its model card."""
        from bench.shapes.prepare import prepare_world

        if cache_dir is not None:
            self.cache_dir = Path(cache_dir).expanduser()
        return prepare_world(self.cache_dir, self.world, clip or self.options.get("clip"), log=log, verbose=verbose)


@register_dataset(aliases=("shapes",))
class ShapesCOCO(Shapes):
    """shapes world, COCO-like: indoor scenes, short plain captions (5 per image)."""

    name = "shapes-coco"
    domain = "coco"


@register_dataset()
class ShapesFlickr(Shapes):
    """shapes world, Flickr30k-like: outdoor scenes, longer captions with other synonyms."""

    name = "shapes-flickr"
    domain = "flickr"


@register_dataset()
class ShapesRomantic(Shapes):
    """shapes world, romantic style (as FlickrStyle10K): outdoor scenes, romantic captions."""

    name = "shapes-romantic"
    domain = "romantic"
    style = "romantic"


@register_dataset()
class ShapesHumor(Shapes):
    """shapes world, humorous style (as FlickrStyle10K): outdoor scenes, humorous captions."""

    name = "shapes-humor"
    domain = "humor"
    style = "humor"
