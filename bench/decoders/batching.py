"""How training batches are made: an epoch of random batches, length-sorted pieces of a batch,
and padding.

Captions are padded to the longest one in their batch, so a random batch of 128 wastes much of
its compute on padding (44% on shapes-coco). ``length_pieces`` runs each random batch as a few
length-sorted pieces whose gradients are accumulated, scaled so that the update is the one of
the whole batch, with a fraction of the padding. ``epoch_batches(pool > 1)`` goes further and
makes the batches themselves of similar length (pools of that many batches sorted by length);
the decoder leaves it off by default because on the shapes world it halved the decoders' CIDEr:
a batch of only short or only long captions is a biased sample of the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def length_pieces(lengths: Any, pieces: int) -> list[Any]:
    """Positions 0..B-1 sorted by length and cut into ``pieces`` contiguous, non-empty runs."""
    import torch

    if pieces <= 1:
        return [torch.arange(len(lengths))]
    order = torch.argsort(lengths, stable=True)
    return [p for p in torch.tensor_split(order, min(pieces, len(order))) if len(p)]


def epoch_batches(lengths: Any, batch_size: int, gen: Any, pool: int = 1) -> list[Any]:
    """One epoch of batches (popped from the end); every item exactly once.

    Items are shuffled; each run of ``pool`` batches' worth of items is sorted by length and
    cut into batches (so each batch pads to about its own length); then the batches are
    shuffled, so that lengths do not drift through the epoch. ``pool = 1``: random batches."""
    import torch

    n = len(lengths)
    order = torch.randperm(n, generator=gen)
    if pool > 1:
        chunk = pool * batch_size
        order = torch.cat([c[torch.argsort(lengths[c], stable=True)] for c in order.split(chunk)])
    batches = list(order.split(batch_size))
    if pool > 1:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
    return batches[::-1]


def pad(encoded: Sequence[Sequence[int]], vocab: Any, max_length: int):
    """(N, max_length + 1) tensor of [bos, t1..tn, eos, -100...], and the index of each eos."""
    import torch

    n = len(encoded)
    tokens = torch.full((n, max_length + 1), -100, dtype=torch.long)
    lengths = torch.empty(n, dtype=torch.long)
    for i, ids in enumerate(encoded):
        ids = list(ids)[: max_length - 1]
        row = [vocab.bos, *ids, vocab.eos]
        tokens[i, : len(row)] = torch.tensor(row)
        lengths[i] = len(row) - 1
    return tokens, lengths


def prompted_inputs(tokens: Any, prompts: Sequence[Sequence[int]]) -> tuple[Any, Any]:
    """(inputs, targets) for rows of ``tokens`` ([bos, caption..., eos, -100...]) with each row's
    prompt ids set before its bos: the prompt is input only, its positions' targets (the
    prompt's own next tokens, and bos) are -100, so the loss covers the caption alone."""
    import torch

    width = tokens.shape[1] + max((len(p) for p in prompts), default=0)
    seq = torch.full((len(tokens), width), -100, dtype=torch.long)
    for i, (row, prompt) in enumerate(zip(tokens, prompts)):
        n = len(prompt)
        if n:
            seq[i, :n] = torch.as_tensor(list(prompt), dtype=torch.long)
        seq[i, n:n + len(row)] = row
    inputs, targets = seq[:, :-1], seq[:, 1:].clone()
    for i, prompt in enumerate(prompts):
        targets[i, :len(prompt)] = -100
    return inputs, targets
