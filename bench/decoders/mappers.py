"""Mappers: a conditioning vector (B, D) -> ``prefix_length`` prefix vectors of a decoder's width.

* ``linear``: one linear map (DeCap);
* ``mlp``: linear, tanh, linear (ClipCap's MLP mapping);
* ``transformer``: a linear map to ``prefix_length`` vectors, then a small transformer over them
  and as many learnt constants, whose outputs at the constants' positions are the prefix
  (ClipCap's transformer mapping).

Both decoder kinds take every mapper, so that the mapper is a setting of its own.
"""

from __future__ import annotations

import torch
import torch.nn as nn

MAPPERS = ("linear", "mlp", "transformer")


class TransformerMapper(nn.Module):
    def __init__(self, embed_dim: int, width: int, prefix_length: int, layers: int = 2, heads: int = 8) -> None:
        super().__init__()
        self.prefix_length = prefix_length
        self.width = width
        self.linear = nn.Linear(embed_dim, prefix_length * width)
        self.const = nn.Parameter(torch.randn(prefix_length, width) * 0.02)
        heads = heads if width % heads == 0 else 1
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mapped = self.linear(x).view(x.shape[0], self.prefix_length, self.width)
        out = self.transformer(torch.cat([mapped, self.const.expand(x.shape[0], -1, -1)], dim=1))
        return out[:, self.prefix_length:].reshape(x.shape[0], self.prefix_length * self.width)


def build_mapper(kind: str, embed_dim: int, width: int, prefix_length: int, mlp_hidden: int, layers: int = 2) -> nn.Module:
    """A mapper from (B, embed_dim) to (B, prefix_length * width)."""
    if kind == "linear":
        return nn.Linear(embed_dim, prefix_length * width)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(embed_dim, mlp_hidden), nn.Tanh(), nn.Linear(mlp_hidden, prefix_length * width))
    if kind == "transformer":
        return TransformerMapper(embed_dim, width, prefix_length, layers)
    raise ValueError(f"unknown mapper {kind!r}; known: {', '.join(MAPPERS)}")


def first_map(mapper: nn.Module) -> nn.Linear:
    """The linear map that first reads the embedding, in every mapper."""
    if isinstance(mapper, nn.Linear):
        return mapper
    if isinstance(mapper, nn.Sequential):
        return mapper[0]
    return mapper.linear


def zero_first_map(mapper: nn.Module) -> None:
    """``decoder.mapper_init=zero``: the weights of the mapper's first linear map start at zero,
    so an embedding direction the training inputs never move along maps to what training put
    there (little, with AdamW's decay), not to each seed's random draw."""
    with torch.no_grad():
        first_map(mapper).weight.zero_()


def map_prefix(mapper: nn.Module, prefix: torch.Tensor, prefix_length: int, width: int) -> torch.Tensor:
    """(B, D) or (B, P, D) conditioning vectors -> (B, P * prefix_length, width) prefix tokens."""
    if prefix.dim() == 2:
        prefix = prefix[:, None]
    b, p, d = prefix.shape
    return mapper(prefix.reshape(b * p, d)).reshape(b, p * prefix_length, width)
