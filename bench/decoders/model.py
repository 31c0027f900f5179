"""``CaptionDecoder``: a vocabulary plus a prefix decoder network, trained and used on CLIP embeddings.

It trains on (embedding, caption) pairs with an optional transform of the embeddings per batch
(CapDec's noise) and decodes batches of embeddings with greedy or beam search and a key-value
cache. With a tag table it also learns SynTIC's fusion of object tags into an auxiliary prefix
vector (``bench.decoders.fusion``). Batches are made by ``bench.decoders.batching``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bench.decoders.batching import epoch_batches, length_pieces, pad, prompted_inputs
from bench.decoders.config import DecoderConfig
from bench.errors import BenchError, ConfigError
from bench.progress import progress as default_progress
from bench.training import decay_groups


class NonFiniteLoss(BenchError):
    """Training produced a NaN or infinite loss: the cell stops, the run goes on."""


@dataclass
class FitStats:
    steps: int = 0
    seconds: float = 0.0
    compute_seconds: float = 0.0  # forward + backward
    data_seconds: float = 0.0  # batch assembly: indexing, padding, the embedding transform
    optimizer_seconds: float = 0.0
    first_loss: float = float("nan")
    final_loss: float = float("nan")
    tokens: int = 0
    truncated: int = 0  # training captions longer than decoder.max_length allows, cut to it
    captions: int = 0

    def to_dict(self) -> dict[str, Any]:
        total = max(self.seconds, 1e-9)
        return {"steps": self.steps, "seconds": round(self.seconds, 3), "forward_backward_fraction": round(self.compute_seconds / total, 3),
                "data_fraction": round(self.data_seconds / total, 3), "optimizer_fraction": round(self.optimizer_seconds / total, 3),
                "first_loss": round(self.first_loss, 4), "final_loss": round(self.final_loss, 4), "tokens": self.tokens,
                **({"truncated_captions": self.truncated, "captions": self.captions} if self.truncated else {})}


class CaptionDecoder:
    """A vocabulary plus a prefix decoder network; trained and used on CLIP embeddings.

    With ``tag_table`` (one CLIP text embedding per tag word), ``fit`` and ``decode`` also take
    each row's tag indices and a ``TagFusion`` module, trained with the decoder, adds an
    auxiliary prefix vector.
    """

    def __init__(self, config: DecoderConfig, embed_dim: int, vocab: Any = None, net: Any = None,
                 tag_table: Any = None, fusion_heads: int = 8, memory: Any = None) -> None:
        if tag_table is not None and memory is not None:
            raise ValueError("a decoder fuses tags or retrieved captions, not both")
        self.config = config
        self.embed_dim = embed_dim
        self.vocab = vocab
        self.net = net
        self.tag_table = tag_table
        self.memory = memory
        self.fusion_heads = fusion_heads
        self.fusion: Any = None
        #: positions kept for a prompt between the prefix and the caption (0: trained without prompts)
        self.prompt_room = 0

    # -- building ---------------------------------------------------------------------------
    def build(self, captions: Sequence[str], extra_texts: Sequence[str] = ()) -> list[list[int]]:
        """Create the vocabulary and the network for ``captions``; returns the encoded captions.
        ``extra_texts`` are the longest prompts the decoder will read (ViECap's prompt naming
        every entity word): the vocabulary covers their words and the network keeps positions
        for the longest of them between the prefix and the caption."""
        from bench.decoders.vocab import ClipBpeVocab, HFVocab

        cfg = self.config
        if cfg.kind == "transformer":
            self.vocab, encoded = ClipBpeVocab.build(captions, extra_texts)
        else:
            if cfg.gpt2_path:
                from bench.decoders.config import check_model_folder

                self.vocab = HFVocab.from_pretrained(str(check_model_folder(cfg.gpt2_path)))
            else:
                self.vocab = HFVocab.train([*captions, *extra_texts])
            encoded = self.vocab.encode_many(captions)
        prompts = [self.vocab.encode(t) for t in extra_texts]
        self.prompt_room = max(map(len, prompts), default=0)
        check_beam(cfg.beam_size, len(self.vocab))
        self.net = self._network()
        if cfg.mapper_init == "zero":  # how a network to be trained starts; a loaded one gets its saved weights
            from bench.decoders.mappers import zero_first_map

            zero_first_map(self.net.mapper)
        if cfg.kind == "gpt2":  # a token id past the model's embeddings: another model's tokenizer, or an added token
            rows = self.net.gpt.config.vocab_size
            top = max([self.vocab.eos, *(max(ids) for ids in [*encoded, *prompts] if len(ids))])
            if top >= rows:
                raise ConfigError(f"the captions or the end-of-text token use token id {top}, but the GPT-2"
                                  f"{' in ' + cfg.gpt2_path if cfg.gpt2_path else ''} has {rows} token embeddings: "
                                  "its tokenizer and model do not belong together")
        self.fusion = self._fusion()
        return encoded

    def _adopt_mlp_ratio(self, net_state: dict[str, Any]) -> None:
        """A from-scratch decoder saved before ``mlp_ratio`` existed has GPT-2's 4 and a config
        without the field (read as today's default): its weights say which, so it loads as saved."""
        weight = net_state.get("blocks.0.mlp.0.weight") if self.config.kind == "transformer" else None
        if weight is None or weight.shape[0] % self.config.width:
            return
        ratio = int(weight.shape[0]) // self.config.width
        if ratio != self.config.mlp_ratio:
            self.config = replace(self.config, mlp_ratio=ratio)

    def _fusion(self) -> Any:
        import torch

        if self.memory is not None:
            from bench.decoders.retrieval_fusion import RetrievalFusion

            return RetrievalFusion(torch.as_tensor(np.asarray(self.memory), dtype=torch.float32), self.fusion_heads)
        if self.tag_table is None:
            return None
        from bench.decoders.fusion import TagFusion

        return TagFusion(torch.as_tensor(np.asarray(self.tag_table), dtype=torch.float32), self.fusion_heads)

    def _network(self, gpt2_config: dict | None = None) -> Any:
        cfg = self.config
        inputs = self.prefix_inputs
        if cfg.kind == "transformer":
            from bench.decoders.transformer import PrefixTransformer

            return PrefixTransformer(len(self.vocab), self.embed_dim, cfg.width, cfg.layers, cfg.heads, cfg.prefix_length,
                                     cfg.max_length, cfg.mapper, cfg.dropout, prefix_inputs=inputs, prompt_room=self.prompt_room,
                                     mapper_layers=cfg.mapper_layers, mlp_ratio=cfg.mlp_ratio)
        from bench.decoders.gpt2 import GPT2Prefix, load_gpt2

        needed = cfg.prefix_length * inputs + self.prompt_room + cfg.max_length + 1  # prefix, prompt, start token, caption
        if gpt2_config is not None:
            gpt = load_gpt2(config=gpt2_config)
        elif cfg.gpt2_path:
            gpt = load_gpt2(cfg.gpt2_path, dropout=cfg.dropout)
            if gpt.config.n_positions < needed:
                raise ConfigError(f"the GPT-2 in {cfg.gpt2_path} has {gpt.config.n_positions} positions; this decoder needs "
                                  f"{needed} (prefix, prompt, decoder.max_length={cfg.max_length} and the start token): "
                                  "lower decoder.max_length or decoder.prefix_length")
        else:
            gpt = load_gpt2(config={"vocab_size": len(self.vocab), "n_layer": cfg.layers, "n_head": cfg.heads, "n_embd": cfg.width, "n_inner": cfg.mlp_ratio * cfg.width,
                                    "n_positions": needed + 1, "bos_token_id": self.vocab.eos,
                                    "eos_token_id": self.vocab.eos, "resid_pdrop": cfg.dropout, "embd_pdrop": cfg.dropout,
                                    "attn_pdrop": cfg.dropout})
        return GPT2Prefix(gpt, self.embed_dim, cfg.prefix_length, cfg.mapper, prefix_inputs=inputs, mapper_layers=cfg.mapper_layers)

    def _condition(self, embeddings: Any, tags: Any) -> Any:
        """The conditioning the network maps to its prefix: the embeddings, or (B, 2, D) with fused tags."""
        if self.fusion is None:
            return embeddings
        return self.fusion(embeddings, tags)

    def _check_tags(self, tags: Any, n: int) -> Any:
        """The rows' fusion indices (tag words, or retrieved captions) as a checked (N, T) tensor."""
        import torch

        if self.fusion is None:
            if tags is not None:
                raise BenchError("this decoder was built without a tag table or a memory; it takes no indices")
            return None
        if tags is None:
            raise BenchError("this decoder fuses tags or retrieved captions: pass the indices of every row")
        tags = torch.as_tensor(np.asarray(tags), dtype=torch.long)
        if tags.ndim != 2 or tags.shape[0] != n:
            raise BenchError(f"fusion indices must be an (N, T) array with N = {n}, got shape {tuple(tags.shape)}")
        table = len(self.fusion.table)
        if tags.numel() and (int(tags.max()) >= table or (self.memory is not None and int(tags.min()) < 0)):
            raise BenchError(f"a fusion index is outside its table of {table} rows")
        return tags

    def _check_prompt_length(self, prompts: Sequence[Sequence[int]]) -> None:
        """A prompt must fit the positions the network keeps for it (``prompt_room`` from scratch;
        what a pretrained GPT-2's context leaves after the prefix and the caption)."""
        longest = max((len(p) for p in prompts), default=0)
        if self.config.kind == "gpt2" and self.net is not None:
            room = int(self.net.gpt.config.n_positions) - self.config.prefix_length * self.prefix_inputs - self.config.max_length - 2
        else:
            room = self.prompt_room
        if longest > room:
            raise BenchError(f"a prompt of {longest} tokens does not fit the decoder's {room} positions for prompts "
                             + ("(it was trained without prompts)" if room == 0 else "(name fewer or shorter entities)"))

    @property
    def prefix_inputs(self) -> int:
        """How many conditioning vectors each row gives the mapper: two with tag fusion (the
        feature and its fused tags), one otherwise (retrieval fusion replaces the feature)."""
        return 2 if self.tag_table is not None else 1

    # -- training ---------------------------------------------------------------------------
    def fit(self, embeddings: np.ndarray, encoded: Sequence[Sequence[int]], seed: int = 0, device: str = "cpu",
            transform: Callable[[Any, Any], Any] | None = None, progress: Callable | None = None,
            tags: Any = None, prompts: Callable[[Any, Any], list[list[int]]] | None = None) -> FitStats:
        """Train on (embedding, caption) pairs; ``transform(batch, generator)`` alters each batch
        of embeddings (CapDec's noise); ``tags`` (N, T) are the rows' fusion indices when the
        decoder fuses tags or retrieved captions; ``prompts(rows, generator)`` gives each row of a
        batch the token ids of a prompt set between the prefix and the caption (ViECap's hard
        prompt; drawn per batch, so masking differs each time; the loss covers the caption
        only). Raises NonFiniteLoss on a NaN loss."""
        import torch
        import torch.nn as nn
        import torch.nn.functional as F

        cfg = self.config
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        net = self.net.to(device)
        net.train()
        modules = nn.ModuleDict({"net": net})
        if self.fusion is not None:
            modules["fusion"] = self.fusion.to(device).train()
        tokens, lengths = pad(encoded, self.vocab, cfg.max_length)
        emb = torch.tensor(np.asarray(embeddings), dtype=torch.float32)  # a copy: the cache is memory-mapped, read-only
        n = len(encoded)
        tag_ids = self._check_tags(tags, n)
        per_epoch = max(1, math.ceil(n / cfg.batch_size))
        total = max(1, int(round(cfg.epochs * per_epoch)))
        opt = torch.optim.AdamW(decay_groups(modules, cfg.weight_decay, ("tok", "wte", "null")), lr=cfg.lr)
        warmup = max(1, min(cfg.warmup, total // 10))  # 0 or 1: the full rate from the first step
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) * (0.5 * (1 + math.cos(math.pi * min(1.0, s / total)))))
        stats = FitStats(steps=total, truncated=sum(1 for ids in encoded if len(ids) > cfg.max_length - 1), captions=n)
        losses: list[float] = []
        start = time.perf_counter()
        batches: list[Any] = []
        params = [p for p in modules.parameters() if p.requires_grad]
        average = [p.detach().clone() for p in params] if cfg.ema > 0 else None
        bar = progress(range(total), total=total, desc="training the decoder", unit="step") if progress else range(total)
        for step in bar:
            if not batches:
                batches = epoch_batches(lengths, cfg.batch_size, gen, cfg.bucket_pool)
            idx = batches.pop()
            t_data = time.perf_counter()
            prefixes = emb[idx]
            if transform is not None:
                prefixes = transform(prefixes, gen)
            n_targets = int(lengths[idx].sum())
            opt.zero_grad(set_to_none=True)
            batch_loss = 0.0
            row_prompts = prompts(idx, gen) if prompts is not None else None
            if row_prompts is not None:
                self._check_prompt_length(row_prompts)
            for piece in length_pieces(lengths[idx], cfg.length_split):
                rows = idx[piece]
                width = int(lengths[rows].max()) + 1
                batch_tokens = tokens[rows, :width]
                if row_prompts is not None:
                    inputs, targets = prompted_inputs(batch_tokens, [row_prompts[int(p)] for p in piece])
                else:
                    inputs, targets = batch_tokens[:, :-1], batch_tokens[:, 1:]
                inputs, targets = inputs.to(device), targets.to(device)
                prefix = prefixes[piece].to(device)
                inputs = inputs.masked_fill(inputs < 0, self.vocab.pad)  # after eos: any real id, never a target
                t0 = time.perf_counter()
                stats.data_seconds += t0 - t_data
                if tag_ids is not None:
                    prefix = self.fusion(prefix, tag_ids[rows].to(device))
                logits = net(prefix, inputs)
                # Summed over the piece's tokens, divided by the whole batch's: the pieces' gradients
                # add up to the gradient of the batch's mean token loss.
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100,
                                       reduction="sum") / n_targets
                loss.backward()
                batch_loss += loss.item()
                t_data = time.perf_counter()
                stats.compute_seconds += t_data - t0
            if not math.isfinite(batch_loss):
                raise NonFiniteLoss(f"the decoder's loss became {batch_loss} at step {step + 1} of {total}; "
                                    "lower decoder.lr or check the embeddings")
            t_opt = time.perf_counter()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(modules.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            if average is not None:  # an exponential moving average of the weights, its decay ramped up from 0.1
                keep = min(cfg.ema, (1 + step) / (10 + step))
                with torch.no_grad():
                    for mean, p in zip(average, params):
                        mean.lerp_(p.detach(), 1.0 - keep)
            stats.optimizer_seconds += time.perf_counter() - t_opt
            stats.tokens += n_targets
            losses.append(batch_loss)
            if hasattr(bar, "set_postfix") and step % 20 == 0:
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
        stats.seconds = time.perf_counter() - start
        stats.first_loss = float(np.mean(losses[:10]))
        stats.final_loss = float(np.mean(losses[-10:]))  # the trained weights' (before the average replaces them)
        if average is not None:
            with torch.no_grad():
                for mean, p in zip(average, params):
                    p.copy_(mean)
        modules.eval()
        return stats

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, embeddings: Any, device: str = "cpu", beam_size: int | None = None,
               progress: Callable | None = default_progress, tags: Any = None,
               prompts: Sequence[Sequence[int]] | None = None) -> list[str]:
        """Captions for a batch of embeddings (B, D), in order (with their fusion indices when the
        decoder fuses tags or retrieved captions, and each row's prompt token ids when it was
        trained with prompts)."""
        import torch

        from bench.decoders.search import beam_search

        cfg = self.config
        beam = beam_size or cfg.beam_size
        check_beam(beam, len(self.vocab))
        emb = torch.tensor(np.asarray(embeddings), dtype=torch.float32)
        tag_ids = self._check_tags(tags, len(emb))
        if prompts is not None:
            if len(prompts) != len(emb):
                raise BenchError(f"{len(prompts)} prompts for {len(emb)} embeddings")
            self._check_prompt_length(prompts)
        net = self.net.to(device).eval()
        if self.fusion is not None:
            self.fusion.to(device).eval()
        bos = getattr(self.vocab, "bos", 1)

        class _Bound:  # start() feeds the prompt (if any) and the beginning-of-sentence id after the prefix
            def __init__(self, first: Any) -> None:
                self.first = first

            def start(self, prefix):
                return net.start(prefix, self.first)

            def step(self, token, cache):
                return net.step(token, cache)

            def reorder(self, cache, index):
                return net.reorder(cache, index)

        # Rows whose prompts have the same length decode together (one start for all of them).
        groups: dict[int, list[int]] = {}
        for row in range(len(emb)):
            groups.setdefault(len(prompts[row]) if prompts is not None else 0, []).append(row)
        batches = [(rows[s:s + cfg.decode_batch_size]) for rows in groups.values()
                   for s in range(0, len(rows), cfg.decode_batch_size)]
        out: list[str] = [""] * len(emb)
        bar = progress(batches, total=len(batches), desc="decoding", unit="batch") if progress else batches
        with torch.inference_mode():
            for rows in bar:
                index = torch.tensor(rows, dtype=torch.long)
                prefix = emb[index].to(device)
                if tag_ids is not None:
                    prefix = self.fusion(prefix, tag_ids[index].to(device))
                if prompts is None:
                    first: Any = bos
                else:
                    first = torch.tensor([[*prompts[r], bos] for r in rows], dtype=torch.long, device=device)
                ids = beam_search(_Bound(first), prefix, self.vocab.eos, cfg.max_length, beam, cfg.length_penalty)
                for r, seq in zip(rows, ids):
                    out[r] = self.vocab.decode(seq)
        return out

    # -- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = {"vocab": self.vocab.state_dict(), "net": self.net.state_dict(), "embed_dim": self.embed_dim,
                 "prompt_room": self.prompt_room}
        if self.config.kind == "gpt2":
            # through JSON: the config's label maps have integer keys, which a state keeps as strings
            state["gpt2_config"] = json.loads(self.net.gpt.config.to_json_string())
        if self.fusion is not None:
            state["fusion"] = self.fusion.state_dict()
            state["fusion_heads"] = self.fusion_heads
            state["fusion_kind"] = "retrieval" if self.memory is not None else "tags"
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from bench.decoders.vocab import vocab_from_state

        self.embed_dim = int(state["embed_dim"])
        self.prompt_room = int(state.get("prompt_room", 0))
        self.vocab = vocab_from_state(state["vocab"])
        kind = state.get("fusion_kind", "tags") if "fusion" in state else None
        self.tag_table = state["fusion"]["table"] if kind == "tags" else None
        if kind == "retrieval" and self.memory is None:
            raise BenchError("this decoder fuses retrieved captions: build it with the memory it retrieves from (memory=)")
        if kind != "retrieval":
            self.memory = None
        self.fusion_heads = int(state.get("fusion_heads", self.fusion_heads))
        self._adopt_mlp_ratio(state["net"])
        self.net = self._network(state.get("gpt2_config"))
        self.net.load_state_dict(state["net"])
        self.net.eval()
        self.fusion = self._fusion()
        if self.fusion is not None:
            self.fusion.load_state_dict(state["fusion"])
            self.fusion.eval()


def check_beam(beam: int, vocab_size: int) -> None:
    """A beam wider than the vocabulary has nothing to fill its first step with."""
    if beam > vocab_size:
        raise ConfigError(f"decoder.beam_size ({beam}) is larger than the decoder's vocabulary ({vocab_size} tokens); "
                          f"use at most {vocab_size}")
