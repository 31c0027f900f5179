"""A run's inputs, each loaded once: the encoder, dataset splits, training corpora with their
text embeddings, and test splits with their image embeddings (both through the embedding cache).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache import EmbeddingCache, encoder_key, fingerprint, images_fingerprint, record_item
from bench.captioner import Corpus
from bench.progress import progress
from bench.records import InputIdentity

#: Marks an evaluation fingerprint that covers the test images' bytes (earlier ones did not).
EVAL_FINGERPRINT_VERSION = "px:"


@dataclass(frozen=True)
class EvalImages:
    """A test split, its image embeddings (N, D) and image files, in the split's order."""

    data: Any  # a bench.data.DatasetSplit
    embeddings: np.ndarray
    paths: list[Path]


class RunInputs:
    """The encoder and the data of one run, built on first use and kept for every cell."""

    def __init__(self, encoder_config: Any, device: str, data_root: Path | None, cache_dir: Path,
                 log: Callable[[str], None] = print) -> None:
        self.encoder_config = encoder_config
        self.device = device
        self.data_root = data_root
        self.cache_dir = Path(cache_dir)
        self.log = log
        self.cache = EmbeddingCache(cache_dir, log=log)
        self._encoder: Any = None
        self._splits: dict[tuple[str, str], Any] = {}
        self._corpora: dict[str, tuple[Corpus, str]] = {}
        self._images: dict[str, EvalImages] = {}
        self._fingerprints: dict[tuple[str, str], str] = {}

    @property
    def encoder(self) -> Any:
        if self._encoder is None:
            from bench.encoders import create_encoder

            self._encoder = create_encoder(self.encoder_config, self.device, self.cache_dir, self.log)
        return self._encoder

    def dataset_split(self, dataset: str, split: str) -> Any:
        from bench.plugins import create_dataset

        key = (dataset, split)
        if key not in self._splits:
            self._splits[key] = create_dataset(dataset, self.data_root, cache_dir=self.cache_dir).load(split)
        return self._splits[key]

    def train_fingerprint(self, dataset: str) -> str:
        """The content fingerprint of ``dataset``'s training captions (part of a cell's identity)."""
        key = ("train", dataset)
        if key not in self._fingerprints:
            self._fingerprints[key] = fingerprint(record_item(c) for c in self.dataset_split(dataset, "train").captions())
        return self._fingerprints[key]

    def eval_fingerprint(self, dataset: str) -> str:
        """The content fingerprint of ``dataset``'s test split: each image's id, file name, the
        SHA-256 of its bytes and its references, in order (not the folder it lies in: moving the
        data changes nothing; replacing an image's pixels does). Missing images are a one-line
        error here, before anything loads. Prefixed ``EVAL_FINGERPRINT_VERSION`` so that records
        from versions whose fingerprint left the pixels out are recognised."""
        from bench.io import sha256_file

        key = ("test", dataset)
        if key not in self._fingerprints:
            data = self.dataset_split(dataset, "test")
            paths = data.require_readable_images()
            self._fingerprints[key] = EVAL_FINGERPRINT_VERSION + fingerprint(
                record_item(i.image_id, p.name, sha256_file(p), *(i.captions or ("",)))  # none: one empty, as ever
                for i, p in zip(data.items, paths))
        return self._fingerprints[key]

    def training_data(self, dataset: str, dim: int = 0) -> Any:
        """What a method checks about its training data (``Captioner.check_training``)."""
        from bench.captioner import TrainingData
        from bench.plugins import DATASETS

        cls = DATASETS.get(dataset)
        captions = tuple(self.dataset_split(dataset, "train").captions())
        return TrainingData(dataset, tuple(getattr(cls, "object_vocabulary", ())), len(captions), dim,
                            getattr(cls, "generator", ""), captions, tuple(dict(getattr(cls, "entity_aliases", {})).items()))

    def identity(self, train: str, eval: str) -> InputIdentity:
        return InputIdentity(self.encoder.id, self.train_fingerprint(train), self.eval_fingerprint(eval))

    def corpus(self, dataset: str) -> tuple[Corpus, str]:
        """The training corpus of ``dataset`` and the fingerprint of its captions."""
        if dataset not in self._corpora:
            from bench.plugins import DATASETS

            cls = DATASETS.get(dataset)
            captions = self.dataset_split(dataset, "train").captions()
            content = self.train_fingerprint(dataset)
            key = encoder_key(self.encoder, dataset, "train", "text", content)
            emb = self.cache.get(key, lambda: self.encoder.encode_texts(captions, progress=progress,
                                                                          desc=f"encoding {dataset} train captions"))
            corpus = Corpus(captions, emb, dataset, "train", objects=tuple(getattr(cls, "object_vocabulary", ())),
                            generator=getattr(cls, "generator", ""), aliases=dict(getattr(cls, "entity_aliases", {})))
            self._corpora[dataset] = (corpus, content)
        return self._corpora[dataset]

    def eval_images(self, dataset: str) -> EvalImages:
        """The test split of ``dataset`` with its image embeddings and files."""
        if dataset not in self._images:
            data = self.dataset_split(dataset, "test")
            paths = data.require_images()
            content = images_fingerprint(paths)
            key = encoder_key(self.encoder, dataset, "test", "image", content)
            emb = self.cache.get(key, lambda: self.encoder.encode_images(paths, progress=progress,
                                                                           desc=f"encoding {dataset} test images")[0])
            self._images[dataset] = EvalImages(data, emb, paths)
        return self._images[dataset]
