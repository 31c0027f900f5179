"""Batched greedy and beam search over any decoder with a key-value cache.

A decoder provides ``start(prefix) -> (logits, cache)`` (logits of the first token to emit,
shape (B, V)) and ``step(tokens, cache) -> (logits, cache)`` for one more token per row, and
``reorder(cache, index)`` to follow beams. Search stops at the end-of-sentence id or at
``max_length`` tokens, whichever comes first, for every row independently.
"""

from __future__ import annotations

from typing import Any, Protocol


class Steppable(Protocol):
    def start(self, prefix: Any) -> tuple[Any, Any]: ...
    def step(self, tokens: Any, cache: Any) -> tuple[Any, Any]: ...
    def reorder(self, cache: Any, index: Any) -> Any: ...


def greedy(model: Steppable, prefix: Any, eos: int, max_length: int) -> list[list[int]]:
    import torch

    logits, cache = model.start(prefix)
    batch = logits.shape[0]
    out = torch.full((batch, max_length), eos, dtype=torch.long)
    done = torch.zeros(batch, dtype=torch.bool)
    for t in range(max_length):
        token = logits.argmax(-1)
        token = torch.where(done, torch.full_like(token, eos), token)
        out[:, t] = token
        done |= token == eos
        if bool(done.all()) or t == max_length - 1:
            break
        logits, cache = model.step(token, cache)
    return [_trim(row.tolist(), eos) for row in out]


def beam_search(model: Steppable, prefix: Any, eos: int, max_length: int, beam: int = 5,
                length_penalty: float = 1.0) -> list[list[int]]:
    """Beam search; a finished hypothesis scores sum(log p) / length ** length_penalty."""
    import torch

    if beam <= 1:
        return greedy(model, prefix, eos, max_length)
    logits, cache = model.start(prefix)
    batch, vocab = logits.shape
    logp = torch.log_softmax(logits.float(), -1)
    scores, first = logp.topk(beam, dim=-1)  # (B, beam)
    index = torch.arange(batch).repeat_interleave(beam)
    cache = model.reorder(cache, index)
    seqs = first.reshape(-1, 1)  # (B*beam, 1)
    scores = scores.reshape(-1)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]

    def harvest(rows_done: Any) -> None:
        for r in rows_done.nonzero().flatten().tolist():
            seq = seqs[r].tolist()
            length = len(_trim(seq, eos)) + 1
            finished[r // beam].append((float(scores[r]) / length ** length_penalty, seq))

    ended = seqs[:, -1] == eos
    harvest(ended)
    scores = scores.masked_fill(ended, float("-inf"))
    for _ in range(1, max_length):
        if all(len(f) >= beam for f in finished):
            break
        logits, cache = model.step(seqs[:, -1], cache)
        logp = torch.log_softmax(logits.float(), -1)
        total = (scores[:, None] + logp).view(batch, beam * vocab)
        top_scores, top = total.topk(beam, dim=-1)
        source = (top // vocab) + torch.arange(batch)[:, None] * beam
        token = top % vocab
        source, token, top_scores = source.reshape(-1), token.reshape(-1), top_scores.reshape(-1)
        seqs = torch.cat([seqs[source], token[:, None]], dim=1)
        cache = model.reorder(cache, source)
        scores = top_scores
        ended = (token == eos) & torch.isfinite(scores)
        harvest(ended)
        scores = scores.masked_fill(ended, float("-inf"))
    out = []
    for b in range(batch):
        if finished[b]:
            out.append(_trim(max(finished[b], key=lambda x: x[0])[1], eos))
        else:  # nothing ended within max_length: the best live beam
            rows = scores[b * beam:(b + 1) * beam]
            out.append(_trim(seqs[b * beam + int(rows.argmax())].tolist(), eos))
    return out


def _trim(ids: list[int], eos: int) -> list[int]:
    return ids[: ids.index(eos)] if eos in ids else ids
