"""CapDec's noise injection, a building block any method may use.

``inject_noise(x, variance)``: L2-normalise, add N(0, variance * I) per dimension,
L2-normalise again. The noise norm is about sqrt(D * variance): variance 0.016 means the
paper's noise only in a 512-d space. ``noise_transform(variance)`` is that noise as the
per-batch transform ``fit_decoder`` takes, with the id under which decoder fits are shared.
"""

from __future__ import annotations

from typing import Any


def inject_noise(x: Any, variance: float, generator: Any = None) -> Any:
    import torch
    import torch.nn.functional as F

    x = F.normalize(x.float(), dim=-1)
    if variance <= 0:
        return x
    std = variance ** 0.5
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype)
    if std > 1:  # the same direction as x + noise, without squaring a huge noise past float32's range
        return F.normalize(x / std + noise.to(x.device), dim=-1)
    return F.normalize(x + (noise * std).to(x.device), dim=-1)


def noise_transform(variance: float) -> dict[str, Any]:
    """``fit_decoder``'s ``transform`` and ``transform_id`` for CapDec's noise at ``variance``
    (none at 0). One id for every method that injects it, so that identical decoders are shared
    (viecap without its hard prompt trains capdec's decoder)."""
    if variance <= 0:
        return {"transform": None, "transform_id": None}
    return {"transform": lambda x, g: inject_noise(x, variance, g), "transform_id": f"capdec-noise:{variance!r}"}


def plain_decoder(decoder_config: Any, variance: float) -> str:
    """``Captioner.shared_decoder`` of a decoder trained on the captions' own embeddings with
    CapDec's noise at ``variance`` (none at 0) and nothing else: the fit the decoder cache
    shares between capdec, nonoise, decap and viecap without its hard prompt."""
    import json

    from bench.config import config_dict

    training = decoder_config.for_training() if hasattr(decoder_config, "for_training") else decoder_config  # as the fit key
    return json.dumps([config_dict(training), noise_transform(variance)["transform_id"]], sort_keys=True, default=str)
