"""Pseudo image features optimised toward their texts (SynTIC's feature optimisation).

The CLIP embeddings of generated images are the starting point; they become free parameters
and a symmetric contrastive (InfoNCE) loss against the frozen text embeddings of their own
captions pulls each one toward its caption and away from the other captions of its batch
(temperature 1/100 and Adam at lr 1e-5, the paper's values). Rows stay L2-normalised.

Each row is its own parameter and only a batch's rows have a gradient, so the optimiser is
the row-wise ("lazy") Adam, ``torch.optim.SparseAdam``: a step touches the batch's rows and
their moments, not all N x D of them (dense Adam would also drift every other row along its
stale momentum, and costs a full pass over the features per step: 40 s instead of 2 s for
20,000 features over 10 epochs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.tensors import as_float_tensor


def contrastive_loss(images: Any, texts: Any, temperature: float = 0.01) -> Any:
    """Symmetric InfoNCE between row-aligned image and text features (both normalised here)."""
    import torch
    import torch.nn.functional as F

    images, texts = F.normalize(images, dim=-1), F.normalize(texts, dim=-1)
    logits = images @ texts.T / temperature
    target = torch.arange(len(images), device=images.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2


def mean_loss(images: Any, texts: Any, temperature: float, batch_size: int, seed: int = 0) -> float:
    """The contrastive loss averaged over fixed, seeded batches (comparable before and after)."""
    import torch

    x, t = as_float_tensor(images), as_float_tensor(texts)  # copies: cached embeddings are read-only maps
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    total, count = 0.0, 0
    with torch.no_grad():
        for idx in order.split(batch_size):
            if len(idx) < 2:
                continue
            total += float(contrastive_loss(x[idx], t[idx], temperature)) * len(idx)
            count += len(idx)
    return total / max(count, 1)


def optimise_features(features: Any, texts: Any, temperature: float = 0.01, lr: float = 1e-5, epochs: float = 1.0,
                      batch_size: int = 256, seed: int = 0, progress: Callable | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Optimise ``features`` (N, D) toward ``texts`` (N, D); returns the new unit rows and stats
    (the mean loss before and after on the same batches, steps, seconds, mean cosine moved)."""
    import torch
    import torch.nn.functional as F

    if len(features) != len(texts):
        raise ValueError(f"{len(features)} features but {len(texts)} texts")
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    original = F.normalize(torch.tensor(np.asarray(features), dtype=torch.float32), dim=-1)
    text = F.normalize(torch.tensor(np.asarray(texts), dtype=torch.float32), dim=-1)
    table = torch.nn.Embedding.from_pretrained(original.clone(), freeze=False, sparse=True)
    opt = torch.optim.SparseAdam(list(table.parameters()), lr=lr)
    n = len(original)
    per_epoch = max(1, -(-n // batch_size))
    total = max(1, int(round(epochs * per_epoch)))
    before = mean_loss(original, text, temperature, batch_size, seed)
    batches: list[Any] = []
    steps = range(total)
    bar = progress(steps, total=total, desc="optimising pseudo features", unit="step") if progress else steps
    for _ in bar:
        if not batches:
            batches = list(torch.randperm(n, generator=gen).split(batch_size))
        idx = batches.pop()
        if len(idx) < 2:
            continue
        loss = contrastive_loss(table(idx), text[idx], temperature)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        result = F.normalize(table.weight.detach(), dim=-1)
    after = mean_loss(result, text, temperature, batch_size, seed)
    moved = float((result * original).sum(-1).mean())
    stats = {"loss_before": round(before, 4), "loss_after": round(after, 4), "steps": total,
             "mean_cosine_to_start": round(moved, 4), "seconds": round(time.perf_counter() - start, 3)}
    return result.numpy(), stats
