"""The k nearest rows of a memory of unit embeddings, by cosine, in bounded memory (IFCap's
image-like retrieval and entity filtering).

Queries run in batches and the memory in chunks; each chunk's top k merges into a running top
k, so a memory of 566k captions never makes a (queries x memory) matrix larger than
(``query_batch`` x ``memory_chunk``). Ties go to the lower memory index, as a stable sort would.
"""

from __future__ import annotations

from typing import Any

from bench.errors import BenchError


def nearest(queries: Any, memory: Any, k: int, exclude_self: bool = False, query_batch: int = 1024,
            memory_chunk: int = 65536, device: str = "cpu") -> Any:
    """(N, k) int64 indices of the ``k`` memory rows most similar to each query, best first.

    ``queries`` (N, D) and ``memory`` (M, D) are unit rows (cosine = dot product). With
    ``exclude_self`` query i never retrieves memory row i (the queries are the memory's own rows,
    noised: a caption must not retrieve itself). ``device`` runs the products there (a GPU for a
    corpus of COCO's size: every caption against every caption)."""
    import numpy as np
    import torch

    q_all = torch.as_tensor(np.asarray(queries, dtype=np.float32))
    mem = torch.as_tensor(np.asarray(memory, dtype=np.float32)).to(device)
    if k < 1:
        raise BenchError(f"retrieval k must be >= 1, got {k}")
    available = len(mem) - (1 if exclude_self else 0)
    if k > available:
        raise BenchError(f"cannot retrieve {k} captions from a memory of {available}")
    if exclude_self and len(q_all) > len(mem):
        raise BenchError("exclude_self needs the queries to be rows of the memory")
    out = torch.empty((len(q_all), k), dtype=torch.long)
    with torch.inference_mode():
        for s in range(0, len(q_all), query_batch):
            q = q_all[s:s + query_batch].to(device)
            best_v = torch.full((len(q), k), float("-inf"), device=device)
            best_i = torch.full((len(q), k), -1, dtype=torch.long, device=device)
            for c in range(0, len(mem), memory_chunk):
                sims = q @ mem[c:c + memory_chunk].T
                if exclude_self:
                    rows = torch.arange(s, s + len(q), device=device)
                    inside = (rows >= c) & (rows < c + sims.shape[1])
                    sims[inside.nonzero().flatten(), rows[inside] - c] = float("-inf")
                kk = min(k, sims.shape[1])
                v, i = sims.topk(kk, dim=1)
                merged_v = torch.cat([best_v, v], dim=1)
                merged_i = torch.cat([best_i, i + c], dim=1)
                order = torch.sort(merged_v, dim=1, descending=True, stable=True).indices[:, :k]
                best_v = merged_v.gather(1, order)
                best_i = merged_i.gather(1, order)
            out[s:s + len(q)] = best_i.cpu()
    return out.numpy()
