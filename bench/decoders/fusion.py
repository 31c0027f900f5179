"""Object tags fused into an auxiliary prefix vector by multi-head attention (SynTIC).

An image's object tags arrive as indices into a fixed table of CLIP text embeddings (one row
per tag word, embedded once with the frozen text encoder). The image feature is the query;
the keys and values are its tags' embeddings plus one learned "no object" slot, so that an
image without tags still gets a defined output. The result is stacked after the feature:
``(B, D) -> (B, 2, D)``, two conditioning vectors the decoder maps to its prefix.

The attention is the standard multi-head one (learned query, key, value and output maps,
scaled dot products, softmax over the slots). Because every key and value is a row of the
small fixed table, the table is projected once per call and the rows are gathered per image,
instead of projecting every image's tag slots: the same result for a fraction of the work.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

#: Padding in a tag-index array: no tag in this slot.
NO_TAG = -1


class TagFusion(nn.Module):
    def __init__(self, tag_table: torch.Tensor, heads: int = 8) -> None:
        super().__init__()
        dim = int(tag_table.shape[1])
        if dim % heads:
            raise ValueError(f"the embedding width {dim} is not divisible by {heads} fusion heads")
        self.heads = heads
        self.register_buffer("table", tag_table.detach().float().clone())
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        # The "no object" slot's key and value (learned directly; it has no embedding to project).
        self.null = nn.Parameter(torch.zeros(2, dim))

    def forward(self, feature: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """``feature`` (B, D) and ``tags`` (B, T) tag indices (``NO_TAG`` pads) -> (B, 2, D)."""
        b, d = feature.shape
        h, hd = self.heads, d // self.heads
        # Slot 0 of the projected table is the null slot; tag i is row i + 1.
        keys = torch.cat([self.null[:1], self.key(self.table)])
        values = torch.cat([self.null[1:], self.value(self.table)])
        slots = torch.cat([torch.zeros(b, 1, dtype=torch.long, device=tags.device), tags.clamp(min=-1) + 1], dim=1)
        k = keys[slots].view(b, -1, h, hd)  # (B, 1 + T, H, hd)
        v = values[slots].view(b, -1, h, hd)
        q = self.query(feature).view(b, 1, h, hd)
        scores = (q * k).sum(-1) / math.sqrt(hd)  # (B, 1 + T, H)
        ignore = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tags.device), tags < 0], dim=1)
        weights = scores.masked_fill(ignore[..., None], float("-inf")).softmax(dim=1)
        fused = self.out((weights[..., None] * v).sum(1).reshape(b, d))
        return torch.cat([feature[:, None], fused[:, None]], dim=1)
