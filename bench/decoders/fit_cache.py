"""Decoder fits keyed by what they train on, so that identical fits are made once.

nonoise and decap train the very same decoder (same config, same clean text embeddings, same
captions, same seed); they differ only in what they do with an image embedding at test time.
A sweep over decap's τ or memory size changes nothing the decoder sees either. ``fit_decoder``
hashes everything a fit depends on (the decoder config less its decoding settings, the captions, the conditioning
arrays' bytes, the tag table, the name of the per-batch transform, the seed) and trains only
when no fit with that key exists: in this run (memory) or in the run folder's ``decoders/``
(on disk, for decoders up to ``DISK_LIMIT`` bytes; a fine-tuned GPT-2 is kept in memory only,
the method's own checkpoint already holds it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.cache import array_digest, fingerprint
from bench.config import config_dict
from bench.decoders.config import DecoderConfig
from bench.decoders.model import CaptionDecoder, check_beam
from bench.io import write_json_atomic

#: Decoder states larger than this stay in memory only.
DISK_LIMIT = 64 * 2**20
KEY_VERSION = 1


class DecoderCache:
    """Fitted decoders by key: in memory for a run, and on disk under ``folder``.

    An entry on disk is ``<key>/state.pt`` (tensors), ``state.json`` (the rest) and ``info.json``
    (the fit's info and both files' SHA-256), written last; an entry whose files do not match
    their hashes, or hold more than tensors, is reported and fitted again, never used.
    """

    STATE_FILES = ("state.pt", "state.json")

    def __init__(self, folder: str | Path | None, log: Callable[[str], None] = lambda m: None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.log = log
        self._memory: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}

    def load(self, key: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(decoder state, fit info) for ``key``, or None."""
        from bench.errors import BenchError
        from bench.io import hash_problem
        from bench.state_io import load_state

        if key in self._memory:
            return self._memory[key]
        if self.folder is None:
            return None
        entry = self.folder / key
        if not (entry / "info.json").is_file():
            return None
        try:
            info = json.loads((entry / "info.json").read_text(encoding="utf-8"))
            if not isinstance(info, dict):
                raise ValueError("not a JSON object")
            problem = hash_problem(entry, info.pop("sha256", None), self.STATE_FILES)
            if problem:
                raise BenchError(problem)
            state = load_state(entry / "state")
        except (OSError, ValueError, BenchError) as exc:
            self.log(f"warning: the shared decoder fit {entry} is not usable ({exc}); fitting it again")
            return None
        self._memory[key] = (state, info)
        return self._memory[key]

    def store(self, key: str, state: dict[str, Any], info: dict[str, Any]) -> None:
        from bench.io import file_hashes
        from bench.state_io import save_state

        self._memory[key] = (state, info)
        size = sum(t.numel() * t.element_size() for t in _tensors(state))
        if self.folder is None or size > DISK_LIMIT:
            return
        entry = self.folder / key
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "info.json").unlink(missing_ok=True)  # written last: marks the entry complete
        files = save_state(state, entry / "state")
        write_json_atomic(entry / "info.json", {**info, "sha256": file_hashes(files)})


def _tensors(state: Any):
    import torch

    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, dict):
        for value in state.values():
            yield from _tensors(value)


def fit_key(config: DecoderConfig, captions: Sequence[str], embeddings: Any, seed: int, transform_id: str = "",
            tags: Any = None, tag_table: Any = None, fusion_heads: int = 0, prompt_id: str = "",
            extra_texts: Sequence[str] = (), memory: Any = None) -> str:
    fused = tag_table is not None or memory is not None
    parts: list[Any] = [KEY_VERSION, config_dict(config.for_training()), fingerprint(captions), array_digest(embeddings), seed, transform_id,
                        array_digest(tags), array_digest(tag_table), fusion_heads if fused else 0]
    if prompt_id or extra_texts or memory is not None:  # (absent from older keys, which stay as they were)
        parts += [prompt_id, fingerprint(extra_texts), array_digest(memory)]
    from bench.grid import resources_fingerprint

    resources = resources_fingerprint(config)  # a GPT-2 folder's files: its weights replaced, another fit
    if resources:
        parts.append(resources)
    blob = json.dumps(parts)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def fit_decoder(config: DecoderConfig, captions: Sequence[str], embeddings: Any, ctx: Any, *,
                transform: Callable[[Any, Any], Any] | None = None, transform_id: str | None = None,
                tags: Any = None, tag_table: Any = None, fusion_heads: int = 8,
                prompts: Callable[[CaptionDecoder, int], Callable[[Any, Any], list[list[int]]]] | None = None,
                prompt_id: str | None = None, extra_texts: Sequence[str] = (),
                memory: Any = None) -> tuple[CaptionDecoder, dict[str, Any]]:
    """Build and train a decoder on (embedding, caption) pairs, or reuse an identical fit.

    ``transform`` alters each training batch (CapDec's noise); it must come with a
    ``transform_id`` naming it and its settings, or the fit is never shared; so must
    ``prompts`` (``prompts(decoder, seed)`` gives the per-batch prompt function once the
    decoder's vocabulary exists) with a ``prompt_id``. ``extra_texts`` are words the prompts use;
    ``memory`` (with ``tags`` as each row's retrieved indices) makes a retrieval-fusion decoder. Returns the
    decoder and its fit info (steps, seconds, losses, ``decoder_key``, ``decoder_reused``).
    """
    embeddings = np.asarray(embeddings)
    decoder = CaptionDecoder(config, int(embeddings.shape[1]), tag_table=tag_table, fusion_heads=fusion_heads, memory=memory)
    cache = getattr(ctx, "decoders", None)
    shareable = (cache is not None and (transform is None or transform_id is not None)
                 and (prompts is None or prompt_id is not None))
    key = fit_key(config, captions, embeddings, ctx.seed, transform_id or "", tags, tag_table, fusion_heads, prompt_id or "",
                  extra_texts, memory) if shareable else ""
    job = _Job(decoder, captions, embeddings, ctx, key, transform, tags, prompts, tuple(extra_texts))
    if shareable and cache.folder is not None:  # workers sharing the folder train a key once: the rest wait and reuse it
        from bench.io import file_lock

        with file_lock(cache.folder / f".{key}.lock"):
            return _fit_or_reuse(job, cache)
    return _fit_or_reuse(job, cache if shareable else None)


@dataclass
class _Job:
    decoder: CaptionDecoder
    captions: Sequence[str]
    embeddings: Any
    ctx: Any
    key: str
    transform: Any
    tags: Any
    prompts: Any
    extra_texts: tuple[str, ...]


def _fit_or_reuse(job: _Job, cache: DecoderCache | None) -> tuple[CaptionDecoder, dict[str, Any]]:
    import torch

    decoder, ctx, key = job.decoder, job.ctx, job.key
    if cache is not None:
        found = cache.load(key)
        if found is not None:
            state, info = found
            decoder.load_state_dict(state)
            check_beam(decoder.config.beam_size, len(decoder.vocab))  # as build() would: the beam is the cell's own
            ctx.log(f"reusing an identical decoder fit ({key})")
            return decoder, {**info, "decoder_key": key, "decoder_reused": True}
    torch.manual_seed(ctx.seed)  # the initialisation depends on the seed only, not on what ran before
    encoded = decoder.build(job.captions, job.extra_texts)
    prompts = job.prompts(decoder, ctx.seed) if job.prompts is not None else None
    stats = decoder.fit(job.embeddings, encoded, seed=ctx.seed, device=ctx.device, transform=job.transform,
                        progress=ctx.progress, tags=job.tags, prompts=prompts)
    # how it was trained, kept with the fit: a cell that reuses it later (another process, --threads,
    # device) reports the fit's own, not its own process's
    info = {**stats.to_dict(), "vocab_size": len(decoder.vocab), "threads": torch.get_num_threads(), "device": str(ctx.device)}
    if cache is not None:
        cache.store(key, decoder.state_dict(), info)
    return decoder, {**info, "decoder_key": key, "decoder_reused": False}
