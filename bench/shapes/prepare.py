"""``bench prepare shapes``: build the world's caption files, train its CLIP, write its model card."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache import SHAPES_FOLDER
from bench.progress import progress
from bench.shapes.clip import ClipCheckpoint, ClipTrainConfig, ensure_clip
from bench.shapes.domains import WorldConfig, build_annotations, image_name, render_images

#: The domains the model card measures retrieval and the gap on.
CARD_DOMAINS = ("coco", "flickr")

#: Bump when what the card measures changes: a cached card of another version is measured again
#: from the checkpoint (the CLIP is not retrained). 2: random pairs are every caption with every
#: image but its own (1: one image half the split away); CapDec's rule takes every pair of an
#: image's captions (1: consecutive captions).
CARD_VERSION = 2


def world_dir(world: WorldConfig, cache_dir: Path) -> Path:
    """Where a world's caption files and rendered images live under the cache directory."""
    return Path(cache_dir) / SHAPES_FOLDER / f"world-{world.key()}"


def model_card(ckpt: ClipCheckpoint, world: WorldConfig, cache_dir: Path) -> dict[str, Any]:
    """Retrieval recall on each card domain's test split, and the modality gap on their union."""
    import json

    from bench.clip_encoder import ClipEncoder
    from bench.io import sha256_file
    from bench.shapes.card import attribute_prompts, modality_gap, retrieval, zero_shot
    from bench.shapes.world import COLOURS, SHAPES

    model, preprocess, tokenizer = ckpt.load()
    encoder = ClipEncoder(model, preprocess, tokenizer, "shapes", sha256_file(ckpt.weights), log=lambda m: None)
    folder = world_dir(world, cache_dir)
    card: dict[str, Any] = {"version": CARD_VERSION, "retrieval": {}, "zero_shot": {}, "gap_by_domain": {}}
    by_shape, by_colour = attribute_prompts(SHAPES, tuple(COLOURS))
    all_img, all_txt, all_owner = [], [], []
    for domain in CARD_DOMAINS:
        images_dir = folder / f"shapes-{domain}" / "images" / "test"
        render_images(world, domain, "test", images_dir, progress)
        data = json.loads((folder / f"shapes-{domain}" / f"dataset_shapes-{domain}.json").read_text())
        test = [img for img in data["images"] if img["split"] == "test"]
        texts = [s["raw"] for img in test for s in img["sentences"]]
        owner = np.repeat(np.arange(len(test)), [len(img["sentences"]) for img in test])
        image_emb, _ = encoder.encode_images([images_dir / img["filename"] for img in test], progress=None)
        text_emb = encoder.encode_texts(texts, progress=None)
        card["retrieval"][domain] = {k: (int(v) if k in ("images", "captions") else float(v))
                                     for k, v in retrieval(image_emb, text_emb, owner).items()}
        card["gap_by_domain"][domain] = modality_gap(image_emb, text_emb, owner)
        single = [k for k, img in enumerate(test) if len(img["objects"]) == 1]  # objects: [size, colour, shape]
        embed = lambda prompts: encoder.encode_texts(prompts, progress=None)  # noqa: E731
        card["zero_shot"][domain] = {
            "images": len(single),
            "shape": zero_shot(image_emb[single], [test[k]["objects"][0][2] for k in single], by_shape, embed),
            "colour": zero_shot(image_emb[single], [test[k]["objects"][0][1] for k in single], by_colour, embed)}
        all_img.append(image_emb)
        all_txt.append(text_emb)
        all_owner.append(owner + sum(len(x) for x in all_img[:-1]))
    card["gap"] = modality_gap(np.concatenate(all_img), np.concatenate(all_txt), np.concatenate(all_owner))
    return card


def prepare_world(cache_dir: Path, world: WorldConfig | None = None, clip: ClipTrainConfig | None = None,
                  log: Callable[[str], None] = print, verbose: bool = False) -> dict[str, Any]:
    """Build everything the shapes datasets and the world's CLIP need; cached, so cheap twice.
    Only what is missing is written (a prepared cache may be read-only); with ``verbose``, the
    folders and the model card are logged."""
    from bench.shapes.clip import render_model_card

    world = world or WorldConfig()
    clip = clip or ClipTrainConfig()
    folder = world_dir(world, cache_dir)
    build_annotations(world, folder)
    ckpt = ensure_clip(world, clip, cache_dir, progress, log, card=lambda c: model_card(c, world, cache_dir))
    manifest = ckpt.manifest()
    if (manifest.get("model_card") or {}).get("version") != CARD_VERSION:
        manifest = _refresh_card(ckpt, manifest, world, cache_dir, log)
    if verbose:
        log(f"shapes world {world.key()} in {folder}")
        log(f"shapes CLIP {ckpt.key} in {ckpt.folder}")
        log(render_model_card(manifest).rstrip())
    return {**manifest, "checkpoint": str(ckpt.weights), "world_dir": str(folder)}


def _refresh_card(ckpt: ClipCheckpoint, manifest: dict[str, Any], world: WorldConfig, cache_dir: Path,
                  log: Callable[[str], None]) -> dict[str, Any]:
    """Measure a cached CLIP's card again (its card is of another version) and save it beside
    the checkpoint; a read-only cache keeps its file and this process uses the new card."""
    from bench.io import write_json_atomic, write_text_atomic
    from bench.shapes.clip import render_model_card

    log(f"measuring the model card of the shapes CLIP {ckpt.key} again (its card predates version {CARD_VERSION})")
    manifest = {**manifest, "model_card": model_card(ckpt, world, cache_dir)}
    try:
        write_json_atomic(ckpt.manifest_path, manifest)
        write_text_atomic(ckpt.folder / "MODEL_CARD.md", render_model_card(manifest))
    except OSError as exc:
        log(f"note: could not save the new model card in {ckpt.folder} ({exc.strerror or exc}); using it for this run only")
    return manifest


__all__ = ["prepare_world", "model_card", "world_dir", "image_name"]
