"""CLIPRe: caption an image with the training caption whose CLIP text embedding is nearest.

The index holds the whole training corpus, every caption once per occurrence, none dropped.
(The CLIPRe row papers copy, COCO CIDEr 13.6, came from an implementation whose index held
only the first 128 training captions; a correct CLIPRe scores far higher.) Retrieval is
batched over images and chunked over the index, so a 500k-caption index fits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.captioner import Captioner, Corpus, FitContext
from bench.errors import ConfigError
from bench.plugins import register_method
from bench.tensors import as_array, unit_rows


@dataclass(frozen=True)
class CLIPReConfig:
    image_batch_size: int = 1024
    index_chunk_size: int = 65536

    def __post_init__(self) -> None:
        if self.image_batch_size < 1 or self.index_chunk_size < 1:
            raise ConfigError("clipre batch and chunk sizes must be >= 1")


@register_method("clipre")
class CLIPRe(Captioner):
    """Retrieval: the nearest training caption in CLIP space (the whole corpus is the index)."""

    Config = CLIPReConfig

    def fit(self, corpus: Corpus, ctx: FitContext) -> None:
        self.memory = unit_rows(corpus.embeddings)
        self.captions = list(corpus.captions)
        self.fit_info = {"index_size": len(self.captions)}

    def nearest(self, image_embeddings: Any) -> np.ndarray:
        """Index of the nearest caption for each image (B,)."""
        x = unit_rows(as_array(image_embeddings))
        out = np.empty(len(x), dtype=np.int64)
        cfg = self.config
        for s in range(0, len(x), cfg.image_batch_size):
            q = x[s:s + cfg.image_batch_size]
            best = np.full(len(q), -np.inf, np.float32)
            arg = np.zeros(len(q), np.int64)
            for c in range(0, len(self.memory), cfg.index_chunk_size):
                sims = q @ self.memory[c:c + cfg.index_chunk_size].T
                local = sims.argmax(1)
                value = sims[np.arange(len(q)), local]
                better = value > best
                best[better], arg[better] = value[better], local[better] + c
            out[s:s + len(q)] = arg
        return out

    def caption(self, image_embeddings: Any) -> list[str]:
        return [self.captions[i] for i in self.nearest(image_embeddings)]

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {"memory": torch.from_numpy(np.ascontiguousarray(self.memory)), "captions": self.captions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory = state["memory"].numpy().astype(np.float32)
        self.captions = list(state["captions"])
