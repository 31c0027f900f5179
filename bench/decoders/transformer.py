"""A small causal transformer decoder trained from scratch (DeCap / SynTIC style).

The CLIP embedding is mapped to ``prefix_length`` vectors by a mapper (a linear map in DeCap),
placed before the beginning-of-sentence token (a method may condition on several vectors, e.g.
SynTIC's image feature and its fused object tags: each is mapped the same way, in order); a pre-LN GPT-style stack (2 layers, 4 heads by
default) predicts the caption. Output weights are tied to the token embedding. Generation
keeps a key-value cache per layer.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench.decoders.mappers import build_mapper, map_prefix


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float, mlp_ratio: int = 4) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(),
                                 nn.Linear(mlp_ratio * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor] | None = None):
        b, t, w = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(w, dim=-1)
        q, k, v = (z.view(b, t, self.heads, w // self.heads).transpose(1, 2) for z in (q, k, v))
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        # With a cache, the new position may see everything before it: no mask needed.
        att = F.scaled_dot_product_attention(q, k, v, is_causal=cache is None and t > 1)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, t, w)))
        x = x + self.drop(self.mlp(self.ln2(x)))
        return x, (k, v)


class PrefixTransformer(nn.Module):
    """prefix (B, D) or (B, P, D) + tokens (B, T) -> next-token logits (B, T, V)."""

    def __init__(self, vocab_size: int, embed_dim: int, width: int = 256, layers: int = 4, heads: int = 4,
                 prefix_length: int = 1, max_length: int = 40, mapper: str = "linear", dropout: float = 0.1,
                 prefix_inputs: int = 1, prompt_room: int = 0, mapper_layers: int = 2, mlp_ratio: int = 4) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"decoder width {width} is not divisible by heads {heads}")
        self.prefix_length = prefix_length
        self.prefix_tokens = prefix_length * prefix_inputs  # every input vector becomes prefix_length tokens
        self.width = width
        self.mapper = build_mapper(mapper, embed_dim, width, prefix_length, mlp_hidden=max(width, prefix_length * width // 2),
                                   layers=mapper_layers)
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(self.prefix_tokens + prompt_room + max_length + 1, width)
        self.blocks = nn.ModuleList(_Block(width, heads, dropout, mlp_ratio) for _ in range(layers))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab_size, bias=False)
        self.head.weight = self.tok.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def _prefix(self, prefix: torch.Tensor) -> torch.Tensor:
        return map_prefix(self.mapper, prefix, self.prefix_length, self.width)

    def _run(self, x: torch.Tensor, start: int, caches: list | None):
        x = x + self.pos(torch.arange(start, start + x.shape[1], device=x.device))
        new = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if caches is None else caches[i])
            new.append(kv)
        return self.head(self.ln_f(x)), new

    def forward(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Logits for every token position (the prefix positions are dropped)."""
        x = torch.cat([self._prefix(prefix), self.tok(tokens)], dim=1)
        logits, _ = self._run(x, 0, None)
        return logits[:, self.prefix_tokens:]

    # -- the search protocol -----------------------------------------------------------------
    def start(self, prefix: torch.Tensor, first: int | torch.Tensor = 1) -> tuple[torch.Tensor, Any]:
        """Logits of the first caption token after the prefix and ``first``: the bos id, or a
        (B, L) tensor of each row's prompt ids followed by bos."""
        tokens = first if isinstance(first, torch.Tensor) else torch.full((prefix.shape[0], 1), first, dtype=torch.long,
                                                                            device=prefix.device)
        x = torch.cat([self._prefix(prefix), self.tok(tokens)], dim=1)
        logits, caches = self._run(x, 0, None)
        return logits[:, -1], caches

    def step(self, token: torch.Tensor, caches: Any) -> tuple[torch.Tensor, Any]:
        position = caches[0][0].shape[2]
        logits, caches = self._run(self.tok(token[:, None]), position, caches)
        return logits[:, -1], caches

    @staticmethod
    def reorder(caches: Any, index: torch.Tensor) -> Any:
        return [(k.index_select(0, index), v.index_select(0, index)) for k, v in caches]

