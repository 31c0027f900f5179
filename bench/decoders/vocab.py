"""Token vocabularies for decoders.

``ClipBpeVocab``: the CLIP BPE tokenizer (shipped with open_clip, no download) restricted to
the BPE tokens the training corpus uses, so a from-scratch decoder's output layer stays small
(a few hundred rows on shapes, a few thousand on COCO, instead of 49,408).

``HFVocab``: a Hugging Face tokenizer for the GPT-2 decoder: the one saved beside a local
pretrained GPT-2, or a byte-level BPE trained on the corpus when GPT-2 starts from random
weights (nothing to download either way).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = 4


@functools.lru_cache(maxsize=1)
def clip_tokenizer() -> Any:
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer()


#: BPE ids of recently built corpora: fingerprint of the captions -> (sorted ids used, per-caption ids).
_BUILT: dict[str, tuple[list[int], list[tuple[int, ...]]]] = {}


class ClipBpeVocab:
    """Compact ids over the CLIP BPE tokens a corpus uses; 0-3 are pad, bos, eos, unk."""

    def __init__(self, bpe_ids: Sequence[int]) -> None:
        self.bpe_ids = list(bpe_ids)
        self.index = {b: i + SPECIALS for i, b in enumerate(self.bpe_ids)}
        self.pad, self.bos, self.eos, self.unk = PAD, BOS, EOS, UNK

    @classmethod
    def build(cls, captions: Sequence[str], extra_texts: Sequence[str] = ()) -> tuple[ClipBpeVocab, list[list[int]]]:
        """The vocabulary of ``captions`` (and of ``extra_texts``: prompt words a decoder reads but
        never writes) and the captions encoded with it (no bos / eos).

        BPE-encoding 20,000 captions takes 2 s, and a run fits many decoders on one corpus: the
        last few corpora's results are kept (the ids are copied out, so callers may not share them)."""
        from bench.cache import fingerprint

        digest = fingerprint([*captions, "\0extra", *extra_texts]) if extra_texts else fingerprint(captions)
        if digest not in _BUILT:
            tok = clip_tokenizer()
            bpe = [tuple(tok.encode(c)) for c in captions]
            extra = {b for t in extra_texts for b in tok.encode(t)}
            _BUILT[digest] = sorted({b for ids in bpe for b in ids} | extra), bpe
            while len(_BUILT) > 4:
                _BUILT.pop(next(iter(_BUILT)))
        bpe_ids, bpe = _BUILT[digest]
        vocab = cls(bpe_ids)
        return vocab, [[vocab.index[b] for b in ids] for ids in bpe]

    def __len__(self) -> int:
        return SPECIALS + len(self.bpe_ids)

    def encode(self, text: str) -> list[int]:
        return [self.index.get(b, UNK) for b in clip_tokenizer().encode(text)]

    def decode(self, ids: Sequence[int]) -> str:
        bpe = []
        for i in ids:
            if i == EOS:
                break
            if i >= SPECIALS:
                bpe.append(self.bpe_ids[i - SPECIALS])
        return clip_tokenizer().decode(bpe).strip()

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "clip-bpe", "bpe_ids": self.bpe_ids}


class HFVocab:
    """A Hugging Face tokenizer; eos doubles as pad (GPT-2 has no pad token)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.eos = tokenizer.eos_token_id
        self.pad = self.eos
        self.bos = self.eos

    @classmethod
    def from_pretrained(cls, directory: str) -> HFVocab:
        """The tokenizer saved in ``directory``; one without tokens or an end-of-text token (what
        transformers makes of a folder with no tokenizer files) is refused."""
        from pathlib import Path

        from transformers import AutoTokenizer

        from bench.decoders.config import tokenizer_ids
        from bench.errors import BenchError

        tokenizer_ids(Path(directory))  # the files are there (transformers would not say so)
        tokenizer = AutoTokenizer.from_pretrained(directory)
        if len(tokenizer) < 2 or tokenizer.eos_token_id is None:
            raise BenchError(f"the tokenizer in {directory} has {len(tokenizer)} token(s) and "
                             f"{'no' if tokenizer.eos_token_id is None else 'an'} end-of-text token: a GPT-2 decoder needs both")
        return cls(tokenizer)

    @classmethod
    def train(cls, captions: Sequence[str], vocab_size: int = 2000) -> HFVocab:
        """A byte-level BPE learnt from the corpus (for a GPT-2 with random weights)."""
        from tokenizers import ByteLevelBPETokenizer
        from transformers import PreTrainedTokenizerFast

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(list(captions), vocab_size=vocab_size, min_frequency=1,
                                special_tokens=["<|endoftext|>"], show_progress=False)
        return cls(PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>"))

    def __len__(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(" " + text.strip())["input_ids"])

    def encode_many(self, texts: Sequence[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer([" " + t.strip() for t in texts])["input_ids"]]

    def decode(self, ids: Sequence[int]) -> str:
        out = []
        for i in ids:
            if i == self.eos:
                break
            out.append(int(i))
        return self.tokenizer.decode(out, skip_special_tokens=True).strip()

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "hf", "tokenizer_json": self.tokenizer.backend_tokenizer.to_str(),
                "eos_token": self.tokenizer.eos_token}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HFVocab:
        from tokenizers import Tokenizer
        from transformers import PreTrainedTokenizerFast

        tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(state["tokenizer_json"]), eos_token=state["eos_token"])
        return cls(tok)


def vocab_from_state(state: dict[str, Any]) -> Any:
    if state["kind"] == "clip-bpe":
        return ClipBpeVocab(state["bpe_ids"])
    return HFVocab.from_state(state)
