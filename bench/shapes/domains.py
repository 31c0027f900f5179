"""The world's domains and splits, and building them on disk.

Each domain pairs scene statistics with a caption profile:

=================  ==============================  ==========================================
domain             scenes                          captions
=================  ==============================  ==========================================
``coco``           indoor backgrounds, 1-3         short, plain ("a red circle next to a box")
                   objects (2 most often)
``flickr``         outdoor backgrounds, mostly     longer frames, other synonyms ("A bright
                   1-2 larger objects              red disc can be seen beside a block")
``romantic``       as flickr                       romantic style, same content words
``humor``          as flickr                       humorous style, same content words
``pretrain``       a mix of coco and flickr        a mix; used only to train the world's CLIP
=================  ==============================  ==========================================

A split is written as a Karpathy ``dataset_shapes-<domain>.json`` (5 captions per image,
train / val / test), so shapes data goes through the very loader real COCO uses. Every image
is a pure function of (world seed, domain, split, index): scenes of different splits are
drawn from different seeds, and the pretraining split shares no scene with any benchmark split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from bench.io import atomic_path, write_json_atomic
from bench.shapes.captions import PROFILES, Profile, captions
from bench.shapes.world import BACKGROUNDS_INDOOR, BACKGROUNDS_OUTDOOR, SHAPES, Scene, SceneStats, render, rng_for, sample_scene

#: Bump when rendering or captions change: it is part of every cache key.
WORLD_VERSION = 1

_INDOOR = SceneStats(
    n_objects=(0.3, 0.45, 0.25), backgrounds=BACKGROUNDS_INDOOR,
    # circle square triangle star heart cross diamond hexagon ring crescent pentagon arrow
    shape_weights=(2.0, 2.0, 1.5, 1.0, 0.6, 1.0, 0.8, 0.8, 1.0, 0.5, 0.8, 1.2),
    colour_weights=(1.5, 1.2, 1.5, 1.2, 1.0, 0.7, 0.6, 0.8, 0.8, 0.7),
    size_weights=(1.2, 1.0, 0.8),
)
_OUTDOOR = SceneStats(
    n_objects=(0.5, 0.4, 0.1), backgrounds=BACKGROUNDS_OUTDOOR,
    shape_weights=(1.0, 0.8, 1.2, 1.8, 1.6, 0.6, 1.2, 0.6, 1.4, 1.5, 0.6, 0.6),
    colour_weights=(1.2, 1.0, 0.8, 1.4, 1.3, 1.2, 1.3, 1.2, 0.6, 1.0),
    size_weights=(0.7, 1.0, 1.4),
)


@dataclass(frozen=True)
class DomainSpec:
    stats: SceneStats
    profile: str  # a key of captions.PROFILES
    sizes: tuple[int, int, int]  # train, val, test images
    style: str | None = None


@dataclass(frozen=True)
class WorldConfig:
    """Everything the world's content depends on (part of every cache key)."""

    seed: int = 0
    image_size: int = 64
    captions_per_image: int = 5
    coco_sizes: tuple[int, int, int] = (4000, 250, 500)
    flickr_sizes: tuple[int, int, int] = (2500, 250, 500)
    style_sizes: tuple[int, int, int] = (1500, 250, 500)
    pretrain_images: int = 8000

    def domains(self) -> dict[str, DomainSpec]:
        return {
            "coco": DomainSpec(_INDOOR, "coco", self.coco_sizes),
            "flickr": DomainSpec(_OUTDOOR, "flickr", self.flickr_sizes),
            "romantic": DomainSpec(_OUTDOOR, "romantic", self.style_sizes, style="romantic"),
            "humor": DomainSpec(_OUTDOOR, "humor", self.style_sizes, style="humor"),
        }

    def key(self) -> str:
        blob = json.dumps({"version": WORLD_VERSION, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def pretrain_key(self) -> str:
        """What the CLIP's pretraining data depends on (not the benchmark split sizes)."""
        fields = {k: v for k, v in asdict(self).items() if k in ("seed", "image_size", "captions_per_image", "pretrain_images")}
        blob = json.dumps({"version": WORLD_VERSION, **fields}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


SPLITS = ("train", "val", "test")


#: How many objects the CLIP's pretraining scenes hold (P(1), P(2), P(3)): more single objects
#: than the benchmark domains, so that what each shape looks like is seen alone before it is
#: seen beside others. The pretraining split is the CLIP's own; no benchmark split uses it.
PRETRAIN_OBJECTS = (0.6, 0.3, 0.1)


def scene_of(world: WorldConfig, domain: str, split: str, index: int) -> Scene:
    if domain == "pretrain":
        stats = replace((_INDOOR, _OUTDOOR)[index % 2], n_objects=PRETRAIN_OBJECTS)
    else:
        stats = world.domains()[domain].stats
    return sample_scene(stats, rng_for(world.seed, domain, split, index, "scene"))


def captions_of(world: WorldConfig, domain: str, split: str, index: int, scene: Scene | None = None) -> list[str]:
    scene = scene or scene_of(world, domain, split, index)
    if domain == "pretrain":
        profile: Profile = PROFILES[("coco", "flickr")[index % 2]]
    else:
        profile = PROFILES[world.domains()[domain].profile]
    return captions(scene, profile, rng_for(world.seed, domain, split, index, "captions"), world.captions_per_image)


def image_name(domain: str, split: str, index: int) -> str:
    return f"shapes_{domain}_{split}_{index:06d}.png"


def build_annotations(world: WorldConfig, folder: Path) -> dict[str, Path]:
    """Write ``dataset_shapes-<domain>.json`` (Karpathy format) for every domain."""
    out = {}
    for domain, spec in world.domains().items():
        path = folder / f"shapes-{domain}" / f"dataset_shapes-{domain}.json"
        if not path.is_file():
            from bench.io import check_writable

            check_writable(path.parent)
            images = []
            for split, n in zip(SPLITS, spec.sizes):
                for i in range(n):
                    scene = scene_of(world, domain, split, i)
                    images.append({
                        "filename": image_name(domain, split, i), "filepath": split, "split": split,
                        "imgid": len(images), "scene": scene.key(),
                        "objects": [[o.size, o.colour, o.shape] for o in scene.objects],
                        "sentences": [{"raw": c} for c in captions_of(world, domain, split, i, scene)],
                    })
            write_json_atomic(path, {"dataset": f"shapes-{domain}", "world": world.key(), "images": images}, indent=None)
        out[domain] = path
    return out


def render_images(world: WorldConfig, domain: str, split: str, folder: Path,
                  progress: Callable | None = None) -> int:
    """Render the missing images of one split as PNG files; returns how many were written."""
    n = dict(zip(SPLITS, world.domains()[domain].sizes))[split]
    todo = [i for i in range(n) if not (folder / image_name(domain, split, i)).is_file()]
    if todo:  # a complete folder is only read (the cache may be read-only)
        from bench.io import check_writable

        check_writable(folder)
    items = progress(todo, total=len(todo), desc=f"rendering shapes-{domain} {split}", unit="img") if progress and todo else todo
    for i in items:
        target = folder / image_name(domain, split, i)
        with atomic_path(target, sync=False) as tmp:  # an interrupted render never leaves half a PNG
            render(scene_of(world, domain, split, i), world.image_size).save(tmp, format="PNG")
    return len(todo)


def pretrain_arrays(world: WorldConfig, progress: Callable | None = None) -> tuple[np.ndarray, list[list[str]], list[Scene]]:
    """The CLIP pretraining pairs: uint8 images (N, H, W, 3), 5 captions each, and their scenes."""
    n = world.pretrain_images
    images = np.empty((n, world.image_size, world.image_size, 3), np.uint8)
    texts, scenes = [], []
    items = progress(range(n), total=n, desc="rendering CLIP pretraining images", unit="img") if progress else range(n)
    for i in items:
        scene = scene_of(world, "pretrain", "pretrain", i)
        images[i] = np.asarray(render(scene, world.image_size))
        texts.append(captions_of(world, "pretrain", "pretrain", i, scene))
        scenes.append(scene)
    return images, texts, scenes


def object_vocabulary() -> tuple[str, ...]:
    """The world's object words (canonical shape names): the vocabulary a tagger is scored on."""
    return SHAPES


__all__ = ["WorldConfig", "DomainSpec", "SPLITS", "scene_of", "captions_of", "build_annotations", "render_images",
           "pretrain_arrays", "object_vocabulary", "image_name", "WORLD_VERSION", "field"]
