"""Projection onto a support memory of text embeddings (DeCap; SynTIC reuses it).

An image embedding x is replaced by a convex combination of memory embeddings m_i:
weights = softmax(cos(x, m_i) / τ), projection = normalise(Σ_i w_i m_i). Small τ approaches
the nearest memory item; large τ approaches the memory's mean. The sum runs over the memory
in chunks with a running (online) softmax, so a memory of 500k embeddings never materialises a
(batch x memory) matrix larger than (batch x chunk).
"""

from __future__ import annotations

import math
from typing import Any

from bench.errors import BenchError, ConfigError
from bench.tensors import as_float_tensor

#: The smallest projection temperature accepted. Cosines are float32 (steps of about 6e-8 near 1):
#: below about 1e-6 the softmax is already the nearest memory item, and far below it cos / τ
#: overflows float32 and every weight becomes NaN.
MIN_TEMPERATURE = 1e-6


def check_temperature(tau: float, what: str = "projection temperature τ") -> None:
    """A one-line error for a temperature the projection cannot use (not a finite number >= 1e-6)."""
    if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau >= MIN_TEMPERATURE):
        raise ConfigError(f"{what} must be a finite number >= {MIN_TEMPERATURE:g} (smaller is the nearest caption), got {tau}")


def check_memory_size(size: int, captions: int, what: str) -> None:
    """A memory of ``size`` captions can be drawn from a corpus of ``captions`` (checked before a
    fit, from the training data's count, and again by :func:`support_memory`)."""
    if size > captions:
        raise BenchError(f"{what} {size} is larger than the training corpus ({captions} captions)")


def support_memory(embeddings: Any, size: int = 0, seed: int = 0, what: str = "memory_size") -> Any:
    """The support memory: every row of ``embeddings`` (``size`` 0) or a seeded random ``size`` of
    them, in corpus order, as a float32 copy (cached embeddings are read-only memory maps)."""
    import numpy as np

    n = len(embeddings)
    if size < 0:
        raise ConfigError(f"{what} must be >= 0 (0 = the whole corpus), got {size}")
    check_memory_size(size, n, what)
    index = np.sort(np.random.default_rng(seed).choice(n, size, replace=False)) if size else slice(None)
    return np.array(np.asarray(embeddings, dtype=np.float32)[index])


def projection_weights(x: Any, memory: Any, tau: float) -> Any:
    """The full (B, N) weight matrix (for inspection and tests; ``project`` never builds it)."""
    import torch.nn.functional as F

    check_temperature(tau)
    x, memory = F.normalize(as_float_tensor(x), dim=-1), F.normalize(as_float_tensor(memory), dim=-1)
    return (x @ memory.T / tau).softmax(dim=-1)


def project(x: Any, memory: Any, tau: float = 0.01, chunk_size: int = 65536, batch_size: int = 1024) -> Any:
    """Project rows of ``x`` (B, D) onto ``memory`` (N, D); returns unit-norm (B, D)."""
    import torch
    import torch.nn.functional as F

    check_temperature(tau)
    x = F.normalize(as_float_tensor(x), dim=-1)
    memory = F.normalize(as_float_tensor(memory), dim=-1)
    out = torch.empty_like(x)
    with torch.inference_mode():
        for b in range(0, len(x), batch_size):
            q = x[b:b + batch_size]
            running_max = torch.full((len(q), 1), float("-inf"))
            denom = torch.zeros(len(q), 1)
            acc = torch.zeros_like(q)
            for c in range(0, len(memory), chunk_size):
                block = memory[c:c + chunk_size]
                logits = q @ block.T / tau
                new_max = torch.maximum(running_max, logits.max(dim=1, keepdim=True).values)
                rescale = torch.exp(running_max - new_max)
                weights = torch.exp(logits - new_max)
                denom = denom * rescale + weights.sum(dim=1, keepdim=True)
                acc = acc * rescale + weights @ block
                running_max = new_max
            out[b:b + len(q)] = F.normalize(acc / denom, dim=-1)
    return out
