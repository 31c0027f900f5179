"""DeCap (Li et al., ICLR 2023): decode a projection of the image embedding onto text memory.

The decoder (from scratch; the default transformer) learns to reconstruct captions from their clean
CLIP text embeddings. At test time an image embedding is projected onto a support memory of
training-text embeddings (softmax over cosine / τ, τ = 0.01, re-normalised weighted sum) and
that projection is decoded: the decoder only ever sees points of the text modality. The
memory is the whole corpus (``memory_size = 0``) or a seeded random subset of N captions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.captioner import Captioner, Corpus, FitContext, TrainingData
from bench.decoders import CaptionDecoder, DecoderConfig
from bench.decoders.fit_cache import fit_decoder
from bench.errors import ConfigError
from bench.noise import plain_decoder
from bench.plugins import register_method
from bench.projection import check_memory_size, check_temperature, project, support_memory
from bench.tensors import unit_rows


@dataclass(frozen=True)
class DeCapConfig:
    tau: float = 0.01
    memory_size: int = 0  # 0: the whole training corpus
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        check_temperature(self.tau, "decap.tau")
        if self.memory_size < 0:
            raise ConfigError(f"decap.memory_size must be >= 0 (0 = the whole corpus), got {self.memory_size}")


@register_method("decap")
class DeCap(Captioner):
    """DeCap: a text-only decoder; images are projected onto a memory of caption embeddings."""

    Config = DeCapConfig

    @classmethod
    def check_training(cls, config: DeCapConfig, data: TrainingData) -> None:
        check_memory_size(config.memory_size, data.captions, "decap.memory_size")

    @classmethod
    def shared_decoder(cls, config: DeCapConfig) -> str | None:
        return plain_decoder(config.decoder, 0.0)

    def __init__(self, config: DeCapConfig | None = None) -> None:
        super().__init__(config)
        self.decoder: CaptionDecoder | None = None
        self.memory: Any = None

    def fit(self, corpus: Corpus, ctx: FitContext) -> None:
        self.memory = support_memory(corpus.embeddings, self.config.memory_size, ctx.seed, "decap.memory_size")
        # The decoder sees clean text embeddings only: the same fit as nonoise's, shared when both run.
        self.decoder, info = fit_decoder(self.config.decoder, corpus.captions, unit_rows(corpus.embeddings, corpus.normalized), ctx)
        self.fit_info = {**info, "memory_size": len(self.memory)}

    def caption(self, image_embeddings: Any) -> list[str]:
        assert self.decoder is not None, "caption() before fit()"
        return self.decoder.decode(project(image_embeddings, self.memory, self.config.tau))

    def state_dict(self) -> dict[str, Any]:
        import torch

        assert self.decoder is not None, "state_dict() before fit()"
        return {"decoder": self.decoder.state_dict(), "memory": torch.from_numpy(self.memory)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.memory = state["memory"].numpy()
        self.decoder = CaptionDecoder(self.config.decoder, int(state["decoder"]["embed_dim"]))
        self.decoder.load_state_dict(state["decoder"])
