"""CapDec (Nukrai, Mokady, Globerson 2022) and its no-noise baseline.

Train a decoder to reconstruct captions from their CLIP *text* embeddings with Gaussian noise
added during training (normalise, add N(0, σ²I), normalise); caption images by decoding their
CLIP image embeddings. The noise teaches the decoder that an image embedding near, not at, a
caption's text embedding still means that caption. σ² = 0.016 is the paper's value for
ViT-B/32 (from the mean ℓ∞ image-text distance of a few COCO pairs). ``nonoise`` is this
method with σ² = 0, registered as a preset, not a second class.

The paper's decoder is GPT-2 with a ClipCap prefix (``--decoder gpt2``); the default here is
the small from-scratch transformer so that the embedded world runs on a CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from bench.captioner import Captioner, Corpus, FitContext
from bench.decoders import CaptionDecoder, DecoderConfig
from bench.decoders.fit_cache import fit_decoder
from bench.errors import ConfigError
from bench.noise import noise_transform, plain_decoder
from bench.plugins import register_method
from bench.tensors import as_float_tensor, unit_rows


@dataclass(frozen=True)
class CapDecConfig:
    noise_variance: float = 0.016
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_variance) and self.noise_variance >= 0):
            raise ConfigError(f"noise_variance must be a finite number >= 0, got {self.noise_variance}")


@register_method("capdec")
@register_method("nonoise", preset={"noise_variance": 0.0},
                 summary="CapDec without noise (σ² = 0): the paper's no-noise baseline.")
class CapDec(Captioner):
    """CapDec: a decoder trained on noise-injected CLIP text embeddings (σ² = 0.016 by default)."""

    Config = CapDecConfig
    noise_field = "noise_variance"

    @classmethod
    def shared_decoder(cls, config: CapDecConfig) -> str | None:
        return plain_decoder(config.decoder, config.noise_variance)

    def __init__(self, config: CapDecConfig | None = None) -> None:
        super().__init__(config)
        self.decoder: CaptionDecoder | None = None

    def fit(self, corpus: Corpus, ctx: FitContext) -> None:
        variance = self.config.noise_variance
        # σ² = 0 trains on the clean embeddings, exactly as decap's decoder does: the fit is shared.
        self.decoder, self.fit_info = fit_decoder(
            self.config.decoder, corpus.captions, unit_rows(corpus.embeddings, corpus.normalized), ctx,
            **noise_transform(variance))

    def caption(self, image_embeddings: Any) -> list[str]:
        import torch.nn.functional as F

        assert self.decoder is not None, "caption() before fit()"
        x = F.normalize(as_float_tensor(image_embeddings), dim=-1)
        return self.decoder.decode(x)

    def state_dict(self) -> dict[str, Any]:
        assert self.decoder is not None, "state_dict() before fit()"
        return {"decoder": self.decoder.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.decoder = CaptionDecoder(self.config.decoder, int(state["decoder"]["embed_dim"]))
        self.decoder.load_state_dict(state["decoder"])

