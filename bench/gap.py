"""The modality-gap card of an encoder on a dataset: how far its image embeddings lie from the
embeddings of their own captions, and the noise variance that rules of thumb derive from that.

``gap_statistics`` works on embeddings (random pairs: every caption with every image but its
own); ``gap_card`` loads a dataset split, encodes it (through the embedding cache) and returns
the card; ``bench gap`` prints it. The shapes CLIP's model card is this card on the world's
test splits.

The σ² rules, each for the per-dimension noise variance of CapDec-style injection:

* ``capdec_captions``: CapDec's own rule (Nukrai et al., 2022, §4): the square of the mean
  ℓ∞ norm of the differences between the text embeddings of every pair of captions of the same
  image, averaged per image and then over images, as CapDec's ``calc_distances_of_ready_embeddings``
  loops over its five captions (0.016 for ViT-B/32 on 15 COCO images; the ℓ∞-or-ℓ1 question is
  CapDec issue #3);
* ``capdec_pairs``: the same rule on image–caption differences;
* ``variance``: the mean squared difference per dimension of image − caption, the variance an
  isotropic Gaussian needs to cover the gap's spread.

``outside_caption_span`` is the share of the images' spread about the captions' centroid that
lies outside the captions' own subspace: the principal directions along which the captions
vary at least a millionth as much (in variance; a thousandth in spread) as along their main
one. A decoder trained on captions never sees those directions, so what it does
with that share of an image embedding is whatever its random initialisation left there. A text
tower narrower than the joint space (width 128 projected to 512) confines every caption to a
subspace; real CLIP's text tower is as wide as its joint space (512 for ViT-B/32).

Real CLIP ViT-B/32 on COCO, for reference: true-pair cosine about 0.3 (CLIPScore's w = 2.5
rescales cosines that range "from roughly zero to roughly .4", Hessel et al., 2021; its README's
good example captions score 0.8585 = 2.5 × 0.34) and a centroid gap of 0.82 (Liang et al., 2022,
"Mind the Gap", at CLIP's temperature 1/100).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import DataError

#: The captions' span: their principal directions with at least this share of the first one's variance.
SPAN_FLOOR = 1e-6

#: Real CLIP ViT-B/32 on COCO (see the module doc), printed beside every card.
REFERENCE = {"true_pair_cosine": 0.3, "centroid_gap": 0.82}


def gap_statistics(image_emb: np.ndarray, text_emb: np.ndarray, text_owner: np.ndarray) -> dict[str, float]:
    """Gap statistics of unit-norm embeddings: ``text_owner[j]`` is the image row of caption j."""
    image_emb, text_emb, text_owner = np.asarray(image_emb, np.float64), np.asarray(text_emb, np.float64), np.asarray(text_owner)
    paired = image_emb[text_owner]
    diff = paired - text_emb
    n_images = len(image_emb)
    mean_linf = float(np.mean(np.abs(diff).max(axis=1)))
    caption_linf = _caption_linf(text_emb, text_owner)
    return {
        "true_pair_cosine": float(np.mean(np.sum(paired * text_emb, axis=1))),
        "random_pair_cosine": _random_pair_cosine(image_emb, text_emb, text_owner),
        "centroid_gap": float(np.linalg.norm(image_emb.mean(0) - text_emb.mean(0))),
        "mean_l2": float(np.mean(np.linalg.norm(diff, axis=1))),
        "mean_linf": mean_linf,
        "caption_linf": caption_linf,
        "diff_var_per_dim": float(np.mean(diff**2)),
        "sigma2_capdec_captions": caption_linf**2,
        "sigma2_capdec_pairs": mean_linf**2,
        "sigma2_variance": float(np.mean(diff**2)),
        **caption_span(image_emb, text_emb),
        "dim": int(image_emb.shape[1]),
        "images": int(n_images),
        "captions": int(len(text_emb)),
    }


def _random_pair_cosine(image_emb: np.ndarray, text_emb: np.ndarray, text_owner: np.ndarray) -> float:
    """The mean cosine over every (image, caption) pair whose caption belongs to another image:
    each caption's dot product with the sum of all images, less its own image's."""
    n_images = len(image_emb)
    if n_images < 2 or len(text_emb) == 0:
        return float("nan")
    others = text_emb @ image_emb.sum(0) - np.sum(image_emb[text_owner] * text_emb, axis=1)
    return float(others.sum() / (len(text_emb) * (n_images - 1)))


def _caption_linf(text_emb: np.ndarray, text_owner: np.ndarray) -> float:
    """CapDec's measure: for each image with 2 or more captions, the mean ℓ∞ norm of the
    differences between every pair of its captions (CapDec's ``calc_distances_of_ready_embeddings``
    loops over all pairs i < j); then the mean over those images. NaN when no image has two."""
    order = np.argsort(text_owner, kind="stable")
    _, starts = np.unique(text_owner[order], return_index=True)
    per_image = []
    for a, b in zip(starts, [*starts[1:], len(order)]):
        group = text_emb[order[a:b]]
        if len(group) < 2:
            continue
        i, j = np.triu_indices(len(group), k=1)
        per_image.append(np.abs(group[i] - group[j]).max(axis=1).mean())
    return float(np.mean(per_image)) if per_image else float("nan")


def caption_span(image_emb: np.ndarray, text_emb: np.ndarray, floor: float = SPAN_FLOOR) -> dict[str, float]:
    """The captions' span (their principal directions with a variance of at least ``floor``
    times the largest) and the share of the images' squared distance from the captions'
    centroid outside it."""
    text = np.asarray(text_emb, np.float64)
    centre = text.mean(0)
    values, vectors = np.linalg.eigh(np.cov((text - centre).T) if len(text) > 1 else np.zeros((text.shape[1],) * 2))
    values, vectors = values[::-1], vectors[:, ::-1]
    rank = int(np.sum(values > floor * values[0])) if values[0] > 0 else 0
    offset = np.asarray(image_emb, np.float64) - centre
    inside = offset @ vectors[:, :rank]
    energy = float(np.sum(offset**2))
    outside = (energy - float(np.sum(inside**2))) / energy if energy > 0 else float("nan")
    return {"caption_span_dims": rank, "outside_caption_span": max(0.0, outside)}


def load_pairs(dataset: str, split: str = "test", data_root: Path | None = None, cache_dir: Path | None = None) -> Any:
    """The split whose pairs a card measures, checked before any encoder loads: it must exist,
    hold at least 2 image-caption pairs, and have its image files on disk."""
    from bench.plugins import create_dataset

    source = create_dataset(dataset, data_root, cache_dir=cache_dir)
    source.check_split(split)
    data = source.load(split)
    pairs = sum(len(item.captions) for item in data.items)
    if len(data) < 2 or pairs < 2:
        raise DataError(f"{dataset} {split} has {len(data)} image(s) and {pairs} caption(s); the gap needs at least 2 pairs")
    data.require_readable_images()
    return data


def gap_card(encoder: Any, data: Any, cache_dir: Path | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Encode a split's images and captions (through the embedding cache when ``cache_dir`` is
    given) and return its gap statistics."""
    from bench.cache import EmbeddingCache, encoder_key, fingerprint, images_fingerprint

    paths = data.require_images()
    cache = EmbeddingCache(cache_dir, log=log) if cache_dir is not None else None
    captions = data.captions()
    owner = np.repeat(np.arange(len(data)), [len(item.captions) for item in data.items])

    def encoded(modality: str, content: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if cache is None:
            return compute()
        return np.asarray(cache.get(encoder_key(encoder, data.dataset, data.split, modality, content), compute))

    image_emb = encoded("image", images_fingerprint(paths),
                        lambda: encoder.encode_images(paths, desc=f"encoding {data.dataset} {data.split} images")[0])
    text_emb = encoded("text", fingerprint(captions),
                       lambda: encoder.encode_texts(captions, desc=f"encoding {data.dataset} {data.split} captions"))
    return {"encoder": encoder.id, "dataset": data.dataset, "split": data.split, **gap_statistics(image_emb, text_emb, owner)}


def _finite(value: Any) -> bool:
    return value is not None and bool(np.isfinite(value))


def json_card(card: dict[str, Any]) -> dict[str, Any]:
    """The card with every non-finite number as None: strict JSON has no NaN."""
    return {k: (None if isinstance(v, float) and not _finite(v) else v) for k, v in card.items()}


def render_card(card: dict[str, Any]) -> str:
    """The card as lines of text, with real CLIP's values beside the world's."""
    rows = [("true-pair cosine", "true_pair_cosine", f"{REFERENCE['true_pair_cosine']:.2f}"),
            ("random-pair cosine", "random_pair_cosine", ""),
            ("centroid gap", "centroid_gap", f"{REFERENCE['centroid_gap']:.2f}"),
            ("mean l2 (image - caption)", "mean_l2", ""), ("mean l-inf (image - caption)", "mean_linf", ""),
            ("mean l-inf (caption - caption, same image)", "caption_linf", ""),
            ("per-dimension mean square of image - caption", "diff_var_per_dim", ""),
            ("sigma^2, CapDec's rule (caption l-inf squared)", "sigma2_capdec_captions", "0.016"),
            ("sigma^2, CapDec's rule on image-caption pairs", "sigma2_capdec_pairs", ""),
            ("sigma^2, variance rule", "sigma2_variance", ""),
            ("share of image spread outside the captions' span", "outside_caption_span", "")]
    head = f"modality gap of {card.get('encoder', '?')} on {card.get('dataset', '?')} {card.get('split', '')} " \
           f"({card['images']} images, {card['captions']} captions, {card['dim']}-d)"
    lines = [head, f"  {'':48} {'value':>9}  real ViT-B/32 on COCO"]
    for label, key, ref in rows:
        value = card[key]
        shown = f"{value:9.5f}" if _finite(value) else f"{'n/a':>9}"
        lines.append(f"  {label:48} {shown}  {ref}".rstrip())
    if not _finite(card.get("caption_linf")):
        lines.append("  (n/a: no image of this split has two or more captions, so CapDec's caption rule has no pairs)")
    lines.append(f"  (the captions' span: the {card['caption_span_dims']} of {card['dim']} principal directions along which they vary "
                 f"at least {SPAN_FLOOR:g} times as much as along their first)")
    return "\n".join(lines)
