"""Pieces every training loop here shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def decay_groups(model: Any, weight_decay: float, embedding_names: Sequence[str]) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices only, not on gains, biases, or the
    parameters whose name contains one of ``embedding_names`` (token / position tables).
    Frozen parameters are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or any(s in name for s in embedding_names) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
