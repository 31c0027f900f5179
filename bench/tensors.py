"""Small conversions shared by methods and building blocks."""

from __future__ import annotations

from typing import Any


def as_float_tensor(x: Any) -> Any:
    """A float32 torch tensor from a tensor, a NumPy array or a (memory-mapped) array-like.

    Arrays are copied: cached embeddings are read-only memory maps."""
    import numpy as np
    import torch

    return x.float() if isinstance(x, torch.Tensor) else torch.tensor(np.asarray(x), dtype=torch.float32)


def as_array(x: Any) -> Any:
    """A float32 NumPy array from a (possibly CUDA, possibly grad-tracking) tensor or an array-like."""
    import numpy as np

    return np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float32)


def unit_rows(x: Any, normalized: bool = False) -> Any:
    """``x`` with L2-normalised rows as float32 (returned as is when ``normalized`` says it already is)."""
    import numpy as np

    if normalized:
        return x
    a = np.asarray(x, dtype=np.float32)
    return a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
