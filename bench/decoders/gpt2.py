"""The GPT-2 prefix decoder (ClipCap / CapDec style).

A mapper (``bench.decoders.mappers``) turns the CLIP embedding into ``prefix_length`` GPT-2
input vectors (ClipCap's MLP mapping in the paper's preset). GPT-2 comes from a local pretrained folder (``from_pretrained(dir)``, GPT-2 124M as
the paper uses) or from a config with random weights. Generation uses GPT-2's own key-value
cache through the same search code as the from-scratch decoder.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from bench.decoders.config import check_model_folder
from bench.decoders.mappers import build_mapper, map_prefix


class GPT2Prefix(nn.Module):
    """prefix (B, D) or (B, P, D) + tokens (B, T) -> next-token logits (B, T, V), through GPT-2."""

    def __init__(self, gpt: Any, embed_dim: int, prefix_length: int = 10, mapper: str = "mlp", prefix_inputs: int = 1,
                 mapper_layers: int = 2) -> None:
        super().__init__()
        self.gpt = gpt
        self.prefix_length = prefix_length
        self.prefix_tokens = prefix_length * prefix_inputs
        width = gpt.config.n_embd
        self.width = width
        self.mapper = build_mapper(mapper, embed_dim, width, prefix_length, mlp_hidden=prefix_length * width // 2,
                                   layers=mapper_layers)

    def _prefix(self, prefix: torch.Tensor) -> torch.Tensor:
        return map_prefix(self.mapper, prefix, self.prefix_length, self.width)

    def forward(self, prefix: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        embeds = torch.cat([self._prefix(prefix), self.gpt.transformer.wte(tokens)], dim=1)
        return self.gpt(inputs_embeds=embeds).logits[:, self.prefix_tokens:]

    def start(self, prefix: torch.Tensor, first: int | torch.Tensor) -> tuple[torch.Tensor, Any]:
        """As the transformer's: ``first`` is the bos id, or each row's prompt ids and bos."""
        tokens = first if isinstance(first, torch.Tensor) else torch.full((prefix.shape[0], 1), first, dtype=torch.long,
                                                                            device=prefix.device)
        embeds = torch.cat([self._prefix(prefix), self.gpt.transformer.wte(tokens)], dim=1)
        out = self.gpt(inputs_embeds=embeds, use_cache=True)
        return out.logits[:, -1], out.past_key_values

    def step(self, token: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        out = self.gpt(input_ids=token[:, None], past_key_values=cache, use_cache=True)
        return out.logits[:, -1], out.past_key_values

    @staticmethod
    def reorder(cache: Any, index: torch.Tensor) -> Any:
        if hasattr(cache, "reorder_cache"):
            cache.reorder_cache(index)
            return cache
        return tuple(tuple(t.index_select(0, index) for t in layer) for layer in cache)


def load_gpt2(path: str = "", config: dict | None = None, dropout: float | None = None) -> Any:
    """GPT-2 from a local folder (``from_pretrained``; ``dropout``, when given, replaces the folder's
    three dropout rates, so that a record's decoder.dropout is the one trained with) or, without
    one, from a config (random weights)."""

    from transformers import GPT2Config, GPT2LMHeadModel

    from bench.errors import BenchError

    if path:
        folder = check_model_folder(path)
        try:
            rates = {} if dropout is None else {"resid_pdrop": dropout, "embd_pdrop": dropout, "attn_pdrop": dropout}
            return GPT2LMHeadModel.from_pretrained(str(folder), **rates)
        except (OSError, ValueError) as exc:
            raise BenchError(f"cannot load GPT-2 from {folder}: {str(exc).splitlines()[0][:200]}") from None
    return GPT2LMHeadModel(GPT2Config(**(config or {})))
