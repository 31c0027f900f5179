"""CLIP-S and RefCLIP-S (Hessel et al., *CLIPScore*, EMNLP 2021): reference-free and
reference-augmented caption scores from an evaluation CLIP.

* CLIP-S(c, v) = w · max(cos(E(c), E(v)), 0) with w = 2.5, where the caption is embedded with
  the prefix "A photo depicts " (as the paper's reference implementation does, for candidates and
  references alike).
* RefCLIP-S(c, R, v) = the harmonic mean of CLIP-S(c, v) and max(max_r cos(E(c), E(r)), 0).
* A corpus value is the mean over images; like every metric here it is reported ×100 (a CLIP-S
  of 0.76 is 76.0), and per-image values go to the samples so that reports bootstrap it.

The evaluation encoder is the run's encoder unless ``--eval-encoder`` names another; the
record names the one used (``eval_encoder``). Scores from different encoders are different
scales: CLIP-S from the shapes world's CLIP is not comparable to CLIP-S from ViT-B/32.
Caption embeddings go through the embedding cache, keyed by the encoder and the texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.errors import ScorerError

PREFIX = "A photo depicts "
W = 2.5


def _unit(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clip_s(image_emb: Any, caption_emb: Any, w: float = W) -> np.ndarray:
    """Per-image CLIP-S (unscaled: w · max(cos, 0)) of row-aligned image and caption embeddings."""
    images, captions = _unit(image_emb), _unit(caption_emb)
    if images.shape != captions.shape:
        raise ScorerError(f"{len(images)} image embeddings for {len(captions)} captions")
    return w * np.maximum((images * captions).sum(-1), 0.0)


def reference_similarity(caption_emb: Any, ref_emb: Any, ref_owner: Sequence[int]) -> np.ndarray:
    """Per caption, max(max over its image's references of cos(caption, reference), 0).
    ``ref_owner[j]`` is the row of ``caption_emb`` whose image reference ``j`` belongs to."""
    captions, refs = _unit(caption_emb), _unit(ref_emb)
    owner = np.asarray(ref_owner, dtype=np.int64)
    sims = (captions[owner] * refs).sum(-1)
    best = np.full(len(captions), -np.inf)
    np.maximum.at(best, owner, sims)
    if np.isinf(best).any():
        raise ScorerError(f"{int(np.isinf(best).sum())} captions have no reference for RefCLIP-S")
    return np.maximum(best, 0.0)


def harmonic_mean(a: Any, b: Any) -> np.ndarray:
    """Elementwise 2ab / (a + b), and 0 where both are 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    total = a + b
    return np.where(total > 0, 2 * a * b / np.where(total > 0, total, 1.0), 0.0)


def ref_clip_s(clip_values: Any, caption_emb: Any, ref_emb: Any, ref_owner: Sequence[int]) -> np.ndarray:
    """Per-image RefCLIP-S: the harmonic mean of CLIP-S and the best reference similarity."""
    return harmonic_mean(clip_values, reference_similarity(caption_emb, ref_emb, ref_owner))


class ClipScorer:
    """CLIP-S and RefCLIP-S of a split's captions with one evaluation encoder and its cache."""

    def __init__(self, encoder: Any, cache: Any = None) -> None:
        self.encoder = encoder
        self.cache = cache

    @property
    def id(self) -> str:
        return str(self.encoder.id)

    def embed_texts(self, texts: Sequence[str], dataset: str, what: str) -> np.ndarray:
        """Unit embeddings of ``PREFIX + text``, through the cache when there is one."""
        from bench.cache import encoder_key, fingerprint
        from bench.progress import progress

        prefixed = [PREFIX + str(t) for t in texts]

        def compute() -> np.ndarray:
            return np.asarray(self.encoder.encode_texts(prefixed, progress=progress, desc=f"CLIP-S: encoding {what}"),
                              dtype=np.float32)

        if self.cache is None:
            return compute()
        return np.asarray(self.cache.get(encoder_key(self.encoder, dataset, f"clipscore-{what}", "text", fingerprint(prefixed)), compute))

    def score(self, image_emb: Any, predictions: Sequence[str], references: Sequence[Sequence[str]],
              dataset: str = "") -> tuple[dict[str, float], dict[str, list[float]]]:
        """Corpus values (×100) and per-image values (×100) of both metrics."""
        if len(predictions) != len(references) or len(predictions) != len(image_emb):
            raise ScorerError(f"CLIP-S needs one image and one reference list per caption: got {len(image_emb)} images, "
                              f"{len(predictions)} captions and {len(references)} reference lists")
        if not len(predictions):
            raise ScorerError("there is nothing to score: no predictions")
        caption_emb = self.embed_texts(predictions, dataset, "captions")
        owner = [i for i, refs in enumerate(references) for _ in refs]
        ref_emb = self.embed_texts([r for refs in references for r in refs], dataset, "references")
        cs = clip_s(image_emb, caption_emb)
        rcs = ref_clip_s(cs, caption_emb, ref_emb, owner)
        per = {"clip_s": [float(v) * 100 for v in cs], "refclip_s": [float(v) * 100 for v in rcs]}
        return {m: float(np.mean(v)) for m, v in per.items()}, per


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def find_images(folder: Any, image_ids: Sequence[str], refs: Any) -> list[Any]:
    """The image file of each id under ``folder``: the reference file's file name (under its
    ``filepath`` or directly), else ``ID.jpg`` / ``.png`` / ...; one missing image is an error
    naming it (``bench score --clip-score --images DIR``)."""
    from pathlib import Path

    from bench.errors import DataError

    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DataError(f"--images {folder} is not a folder")
    out = []
    for image_id in image_ids:
        img = refs.images.get(image_id) if hasattr(refs, "images") else None
        candidates = []
        if img is not None and img.filename:
            if img.filepath:
                candidates.append(folder / img.filepath / img.filename)
            candidates.append(folder / img.filename)
        candidates += [folder / f"{image_id}{s}" for s in IMAGE_SUFFIXES]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise DataError(f"--images {folder} has no image for {image_id} (looked for {candidates[0].name})")
        out.append(found)
    return out


def check_score_request(clip_score: bool, images: str | None, eval_encoder: str | None, device: str | None = None,
                        cache_dir: str | None = None) -> None:
    """``bench score``: --clip-score needs an image folder and an encoder, and they need it;
    checked before anything loads."""
    from pathlib import Path

    from bench.errors import ConfigError

    if not clip_score:
        given = [flag for flag, value in (("--images", images), ("--eval-encoder", eval_encoder), ("--device", device),
                                          ("--cache-dir", cache_dir)) if value is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)} only appl{'y' if len(given) > 1 else 'ies'} with --clip-score")
        return
    if not images:
        raise ConfigError("--clip-score needs --images DIR (the images the captions describe)")
    if not eval_encoder or not eval_encoder.strip():
        raise ConfigError("--clip-score needs --eval-encoder SPEC (the CLIP that scores, e.g. ViT-B-32:openai)")
    from bench.encoders import check_device, parse_encoder_spec

    check_device(device or "cpu")
    parse_encoder_spec(eval_encoder)
    if not Path(images).expanduser().is_dir():
        raise ConfigError(f"--images {images} is not a folder")


def clip_scores(predictions: dict[str, str], refs: Any, images: Sequence[Any], eval_encoder: str, device: str = "cpu",
                cache_dir: Any = None, log: Any = print) -> tuple[dict[str, float], dict[str, Any], str]:
    """CLIP-S and RefCLIP-S of ``predictions`` (image id -> caption, in the order of ``images``):
    (corpus values, per-image values, the evaluation encoder's id); the image embeddings go
    through the cache. ``bench score`` computes these first, so that an encoder that cannot load
    or an image that cannot be read fails before the text metrics are spent."""
    from pathlib import Path

    from bench.cache import EmbeddingCache, encoder_key, images_fingerprint
    from bench.config import default_cache_dir
    from bench.encoders import create_encoder
    from bench.errors import BenchError
    from bench.progress import progress

    folder = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()
    if folder.exists() and not folder.is_dir():  # a read-only cache is fine (a prepared one may be); a file is not
        raise BenchError(f"cache directory {folder} is a file, not a folder; pass --cache-dir DIR")
    encoder = create_encoder(eval_encoder, device, folder, log)
    cache = EmbeddingCache(folder, log=log)
    paths = [Path(p) for p in images]
    key = encoder_key(encoder, "score", "images", "image", images_fingerprint(paths, resolve=True))
    image_emb = cache.get(key, lambda: encoder.encode_images(paths, progress=progress, desc="CLIP-S: encoding images")[0])
    ids = list(predictions)
    values, per = ClipScorer(encoder, cache).score(image_emb, [predictions[i] for i in ids], [refs.references(i) for i in ids],
                                                   "score")
    return values, per, str(encoder.id)
