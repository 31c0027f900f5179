"""Object taggers: which objects an image shows, as words (SynTIC's auxiliary feature).

Two backends behind one ``ObjectTagger`` interface (``tag(paths) -> list of word lists``):

* ``clip``: zero-shot over a vocabulary (for ``shapes``, the world's object words): a tag is
  kept when its softmax probability over the vocabulary (logit scale 100, as CLIP's) reaches
  ``threshold``, at most ``top_k`` per image;
* ``detr``: an object-detection model via transformers (``DetrForObjectDetection`` or any model
  ``AutoModelForObjectDetection`` loads) from a local folder, with a score threshold.

``TagCache`` keeps the tags of each image on disk, keyed by the tagger's id and the image file.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import file_lock, write_json_atomic
from bench.registry import Registry


class ObjectTagger(ABC):
    @property
    @abstractmethod
    def id(self) -> str:
        """A stable name for this tagger and its settings (part of cache keys)."""

    @abstractmethod
    def tag(self, paths: Sequence[str | Path]) -> list[list[str]]:
        """The object words of each image, most confident first, without repeats."""


TAGGERS: Registry[type[ObjectTagger]] = Registry("tagger", ObjectTagger)


@TAGGERS.register("clip")
class ClipZeroShotTagger(ObjectTagger):
    """Zero-shot tags from CLIP: the vocabulary words whose prompt the image matches best."""

    def __init__(self, encoder: Any, vocabulary: Sequence[str], template: str = "a photo of a {}.", top_k: int = 3,
                 threshold: float = 0.1, text_embeddings: Any = None, encoder_id: str = "") -> None:
        words = [w.strip() for w in vocabulary if w and w.strip()]
        if not words:
            raise BenchError("the tag vocabulary is empty: give the tagger at least one object word")
        if len(set(words)) != len(words):
            raise BenchError("the tag vocabulary lists a word twice")
        if "{}" not in template:
            raise BenchError(f"the tag prompt template {template!r} has no {{}} for the word")
        if top_k < 1 or not 0 <= threshold <= 1:
            raise BenchError(f"clip tagger: top_k must be >= 1 and threshold in [0, 1], got {top_k} and {threshold}")
        self.encoder, self.vocabulary, self.template = encoder, words, template
        self.top_k, self.threshold = top_k, threshold
        self.encoder_id = encoder_id or getattr(encoder, "id", "")
        # The prompts' text embeddings: computed here, or given (a fitted method restores them without an encoder).
        self.text_embeddings = (text_embeddings if text_embeddings is not None
                                else encoder.encode_texts([template.format(w) for w in words], progress=None))
        if len(self.text_embeddings) != len(words):
            raise BenchError(f"{len(self.text_embeddings)} prompt embeddings for {len(words)} tag words")

    @property
    def id(self) -> str:
        vocab = hashlib.sha256("|".join(self.vocabulary).encode()).hexdigest()[:8]
        return f"clip-{self.encoder_id}-{vocab}-{self.template}-top{self.top_k}-p{self.threshold:g}"

    def tag_embeddings(self, image_embeddings: Any) -> list[list[str]]:
        import numpy as np

        logits = 100.0 * np.asarray(image_embeddings, np.float32) @ np.asarray(self.text_embeddings, np.float32).T
        probs = np.exp(logits - logits.max(1, keepdims=True))
        probs /= probs.sum(1, keepdims=True)
        order = np.argsort(-probs, axis=1)[:, : self.top_k]
        return [[self.vocabulary[j] for j in row if probs[i, j] >= self.threshold] for i, row in enumerate(order)]

    def tag(self, paths: Sequence[str | Path]) -> list[list[str]]:
        emb, kept = self.encoder.encode_images(paths, progress=None)
        if len(kept) != len(paths):
            raise BenchError("some images could not be read for tagging")
        return self.tag_embeddings(emb)


@TAGGERS.register("detr")
class DetectorTagger(ObjectTagger):
    """Tags from an object detector loaded from a local transformers folder."""

    def __init__(self, model_dir: str | Path, threshold: float = 0.7, batch_size: int = 8, device: str = "cpu") -> None:
        folder = Path(model_dir).expanduser()
        if not folder.is_dir():
            raise BenchError(f"detector folder {folder} does not exist")
        if not (folder / "config.json").is_file():
            raise BenchError(f"{folder} is not a transformers model folder (no config.json)")
        from transformers import AutoImageProcessor, AutoModelForObjectDetection

        try:
            self.model = AutoModelForObjectDetection.from_pretrained(str(folder)).eval().to(device)
            self.processor = AutoImageProcessor.from_pretrained(str(folder))
        except (ValueError, OSError, KeyError) as exc:
            raise BenchError(f"{folder} does not hold an object-detection model: {str(exc).splitlines()[0][:160]}") from None
        self.folder, self.threshold, self.batch_size, self.device = folder, threshold, batch_size, device

    @property
    def id(self) -> str:
        """The detector's files (its config and its weights' bytes) and threshold: tags cached
        under it are never those of other weights in the same folder."""
        from bench.cache import folder_fingerprint

        return f"detector-{folder_fingerprint(self.folder)[:12]}-t{self.threshold:g}"

    @property
    def vocabulary(self) -> list[str]:
        """The detector's label names (placeholders such as COCO's ``N/A`` left out)."""
        names = self.model.config.id2label
        return list(dict.fromkeys(n for _, n in sorted(names.items(), key=lambda kv: int(kv[0])) if n and n != "N/A"))

    def tag(self, paths: Sequence[str | Path]) -> list[list[str]]:
        import torch
        from PIL import Image

        out: list[list[str]] = []
        names = self.model.config.id2label
        for s in range(0, len(paths), self.batch_size):
            images = [Image.open(p).convert("RGB") for p in paths[s:s + self.batch_size]]
            inputs = self.processor(images=images, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                outputs = self.model(**inputs)
            results = self.processor.post_process_object_detection(
                outputs, threshold=self.threshold, target_sizes=[img.size[::-1] for img in images])
            for r in results:
                ranked = sorted(zip(r["scores"].tolist(), r["labels"].tolist()), reverse=True)
                out.append(list(dict.fromkeys(names[int(label)] for _, label in ranked)))
        return out


class TagCache:
    """Tags per image on disk: ``tags.json`` under a folder named by the tagger's id."""

    def __init__(self, root: str | Path, tagger: ObjectTagger) -> None:
        self.tagger = tagger
        self.path = Path(root) / "tags" / hashlib.sha256(tagger.id.encode()).hexdigest()[:16] / "tags.json"
        self._tags: dict[str, list[str]] = self._read()

    def tags(self, paths: Sequence[str | Path], batch_size: int = 256) -> list[list[str]]:
        keys = [str(Path(p).resolve()) for p in paths]
        missing = list(dict.fromkeys(k for k in keys if k not in self._tags))
        for s in range(0, len(missing), batch_size):  # saved after every batch: an interruption keeps them
            batch = missing[s:s + batch_size]
            found = dict(zip(batch, self.tagger.tag(batch)))
            with file_lock(self.path.with_suffix(".lock")):  # merged with what other processes saved meanwhile
                on_disk = self._read()
                self._tags = {**on_disk, **self._tags, **found}
                write_json_atomic(self.path, self._tags, indent=None)
        return [self._tags[k] for k in keys]

    def _read(self) -> dict[str, list[str]]:
        try:
            data = json.loads(self.path.read_text()) if self.path.is_file() else {}
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}


def tag_indices(tags: Sequence[Sequence[str]], vocabulary: Sequence[str], max_tags: int) -> Any:
    """Tag words per image -> an (N, max_tags) int64 array of vocabulary indices, ``-1`` padded.
    Words outside the vocabulary are dropped; at most ``max_tags`` per image, in the given order."""
    import numpy as np

    position = {w: i for i, w in enumerate(vocabulary)}
    out = np.full((len(tags), max(max_tags, 1)), -1, dtype=np.int64)
    for row, words in enumerate(tags):
        ids = [position[w] for w in dict.fromkeys(words) if w in position][:max_tags]
        out[row, : len(ids)] = ids
    return out
