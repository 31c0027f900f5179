"""Object tags fused into an auxiliary prefix vector by multi-head attention (SynTIC).

An image's object tags arrive as indices into a fixed table of CLIP text embeddings (one row
per tag word, embedded once with the frozen text encoder). The image feature is the query;
the keys and values are its tags' embeddings plus one learned "no object" slot, so that an
image without tags still gets a defined output. The result is stacked after the feature:
``(B, D) -> (B, 2, D)``, two conditioning vectors the decoder maps to its prefix.
"""

from __future__ import annotations

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
        self.register_buffer("table", tag_table.detach().float().clone())
        self.null = nn.Parameter(torch.zeros(1, 1, dim))
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, feature: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
        """``feature`` (B, D) and ``tags`` (B, T) tag indices (``NO_TAG`` pads) -> (B, 2, D)."""
        b = feature.shape[0]
        keys = self.table[tags.clamp(min=0)]  # padded slots are masked below
        keys = torch.cat([self.null.expand(b, 1, -1), keys], dim=1)
        ignore = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=tags.device), tags < 0], dim=1)
        fused, _ = self.attn(feature[:, None], keys, keys, key_padding_mask=ignore, need_weights=False)
        return torch.cat([feature[:, None], fused], dim=1)
