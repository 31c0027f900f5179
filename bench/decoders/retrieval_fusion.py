"""Retrieved captions fused into the conditioning feature by cross-attention (IFCap).

Each row comes with the indices of k captions retrieved for it from a fixed memory of caption
embeddings (the training corpus). The row's feature is the query; the retrieved captions'
embeddings are the keys and values; one multi-head attention layer with a residual, then a
residual MLP (width ratio 2), as IFCap's fusion. Only the retrieved rows are projected (the
memory may hold half a million captions). The result replaces the feature: one conditioning
vector (B, D) that the decoder's mapper turns into its prefix.

IFCap fuses after its linear map to 10 GPT-2-width tokens and before its mapper transformer;
here the fusion works in the CLIP space, before whichever mapper the decoder uses, so that any
decoder can take it.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class RetrievalFusion(nn.Module):
    def __init__(self, memory: torch.Tensor, heads: int = 8) -> None:
        super().__init__()
        dim = int(memory.shape[1])
        if dim % heads:
            raise ValueError(f"the embedding width {dim} is not divisible by {heads} fusion heads")
        self.heads = heads
        # not part of the state: the memory is the method's (saved once, with it), not the decoder's
        self.register_buffer("table", memory.detach().float().clone(), persistent=False)
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, feature: torch.Tensor, retrieved: torch.Tensor) -> torch.Tensor:
        """``feature`` (B, D) and ``retrieved`` (B, k) memory indices -> (B, D)."""
        b, d = feature.shape
        h, hd = self.heads, d // self.heads
        rows = self.table[retrieved]  # (B, k, D)
        q = self.query(self.norm(feature)).view(b, 1, h, hd)
        k = self.key(rows).view(b, -1, h, hd)
        v = self.value(rows).view(b, -1, h, hd)
        weights = ((q * k).sum(-1) / math.sqrt(hd)).softmax(dim=1)  # (B, k, H)
        fused = feature + self.out((weights[..., None] * v).sum(1).reshape(b, d))
        return fused + self.mlp(fused)
