"""Entities: the object words of a caption, the hard prompt that names them, and naming them in
an image by CLIP zero-shot classification (ViECap; IFCap reuses all of it).

* ``EntityMatcher`` finds a vocabulary's words in a caption: whole words, their regular plurals, and the
  surface phrases a dataset maps onto them (the shapes world's "dot" is a circle; COCO's
  "man" and "woman" are ViECap's "person"). NLTK's tagger, which ViECap's own code uses, needs a
  download; a vocabulary match needs none and keeps only words the vocabulary knows, which is
  what ViECap's filter keeps anyway.
* ``hard_prompt`` writes ViECap's prompt, "There are e1, e2 in image." ("something" for none).
* ``mask_entities`` drops each entity with a probability (ViECap: 0.4) during training.
* ``EntityPrompts`` is what ViECap and IFCap share: every training caption's entities, the
  hard prompts drawn per batch with masking, and test prompts as the decoder's token ids.
* ``classify`` picks an image's entities: softmax over the vocabulary of cosine / 0.01 with a
  prompt-ensembled text embedding per word, the top k in rank order, stopping at the first
  below the threshold (ViECap: k = 3, threshold 0.4).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from bench.errors import BenchError, ConfigError
from bench.tensors import unit_rows

#: The 7 CLIP prompt templates ViECap ensembles over (from CLIP's ImageNet prompt study).
ENSEMBLE_TEMPLATES = ("itap of a {}.", "a bad photo of the {}.", "a origami {}.", "a photo of the large {}.",
                      "a {} in a video game.", "art of the {}.", "a photo of the small {}.")
PROMPT_TEMPLATE = "There are {} in image."
NO_ENTITY = "something"
MAX_ENTITIES = 10
#: Bumped when entity matching or the prompt changes, so that no decoder fit is reused across it.
ENTITY_VERSION = 3  # 3: a vocabulary word without letters, or its plural, matches nothing

_WORD = re.compile(r"[^\W\d_]+")  # runs of letters, any script


def plural_forms(word: str) -> tuple[str, ...]:
    """The word and its regular plural ("bus" -> "buses", "baby" -> "babies", "cup" -> "cups");
    nothing looser, so that "skies" is not "skis" and "manes" is not "man"."""
    last = word.rsplit(" ", 1)[-1]
    if last.endswith(("s", "x", "z", "ch", "sh")):
        plural = word + "es"
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        plural = word[:-1] + "ies"
    else:
        plural = word + "s"
    return (word, plural)


class EntityMatcher:
    """The vocabulary words a caption mentions, in the order it mentions them."""

    def __init__(self, vocabulary: Sequence[str], aliases: Mapping[str, str] | None = None) -> None:
        words = [w.strip().lower() for w in vocabulary if w and w.strip()]
        if not words:
            raise BenchError("the entity vocabulary is empty: give the method object words (its dataset names none)")
        self.vocabulary = list(dict.fromkeys(words))
        phrases: dict[tuple[str, ...], str] = {}
        # a word without letters can never be matched (nor can its "plural": "42s" is not the "s" of "it's")
        pairs = [(w, w) for w in self.vocabulary]
        pairs += [(surface.lower(), word.lower()) for surface, word in (aliases or {}).items() if word.lower() in self.vocabulary]
        for surface, word in pairs:
            if _WORD.search(surface):
                for form in plural_forms(surface):
                    phrases.setdefault(tuple(_WORD.findall(form)), word)
        if not phrases:
            raise BenchError(f"no word of the entity vocabulary ({', '.join(self.vocabulary[:5])}) has letters to match in a caption")
        self._phrases = phrases
        self._lengths = sorted({len(p) for p in phrases}, reverse=True)  # longest match first

    def occurrences(self, caption: str) -> list[str]:
        """Every mention, repeats kept (IFCap counts them)."""
        tokens = _WORD.findall(caption.lower())
        out, i = [], 0
        while i < len(tokens):
            for n in self._lengths:
                word = self._phrases.get(tuple(tokens[i:i + n]))
                if word is not None:
                    out.append(word)
                    i += n
                    break
            else:
                i += 1
        return out

    def __call__(self, caption: str) -> list[str]:
        """The distinct entities of ``caption``, first mention first, at most ``MAX_ENTITIES``."""
        return list(dict.fromkeys(self.occurrences(caption)))[:MAX_ENTITIES]


def hard_prompt(entities: Sequence[str]) -> str:
    return PROMPT_TEMPLATE.format(", ".join(entities) if entities else NO_ENTITY)


def mask_entities(entities: Sequence[str], rate: float, rng: np.random.Generator) -> list[str]:
    """Each entity kept with probability 1 - ``rate`` (dropped, not replaced)."""
    if rate <= 0:
        return list(entities)
    keep = rng.random(len(entities)) >= rate
    return [e for e, k in zip(entities, keep) if k]


def vocabulary_embeddings(encode_texts: Callable[[list[str]], Any], vocabulary: Sequence[str], ensemble: bool = True) -> np.ndarray:
    """One unit text embedding per word: the mean of its prompts' (the 7 templates), renormalised;
    or the word alone without the ensemble."""
    templates = ENSEMBLE_TEMPLATES if ensemble else ("{}",)
    rows = np.asarray(encode_texts([t.format(w) for w in vocabulary for t in templates]), np.float32)
    return unit_rows(rows.reshape(len(vocabulary), len(templates), -1).mean(axis=1))


def classify(image_emb: Any, vocab_emb: np.ndarray, vocabulary: Sequence[str], top_k: int, threshold: float,
             logit_scale: float = 100.0) -> list[list[str]]:
    """Each image's entities: the top ``top_k`` words by softmax probability over the vocabulary
    (cosine x ``logit_scale``), in rank order, stopping at the first below ``threshold``."""
    x = unit_rows(image_emb)
    logits = logit_scale * x @ np.asarray(vocab_emb, np.float32).T
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    order = np.argsort(-probs, axis=1)[:, :top_k]
    out = []
    for row, ranked in zip(probs, order):
        picked = []
        for j in ranked:
            if row[j] < threshold:
                break
            picked.append(vocabulary[j])
        out.append(picked)
    return out


def entity_vocabulary(configured: Sequence[str], objects: Sequence[str], dataset: str, method: str) -> tuple[str, ...]:
    """The configured vocabulary, else the dataset's object words, lower-cased; an empty one, or a
    configured one that lists a word twice, is an error."""
    words = [w.strip().lower() for w in (configured or objects) if w and w.strip()]
    twice = [w for i, w in enumerate(words) if w in words[:i]]
    if configured and twice:
        raise ConfigError(f"{method}.vocabulary lists {twice[0]!r} twice")
    vocabulary = tuple(dict.fromkeys(words))
    if not vocabulary:
        raise BenchError(f"{method}: the entity vocabulary is empty ({dataset or 'the dataset'} names no object words); "
                         f"pass --set {method}.vocabulary=word1,word2,...")
    return vocabulary


class EntityPrompts:
    """Hard prompts for a prefix decoder: each training caption's entities, drawn per batch
    with masking, and test-time entities as token ids."""

    vocabulary: list[str]
    train_entities: list[list[str]]

    def prepare_prompts(self, captions: Sequence[str], vocabulary: Sequence[str],
                        aliases: Mapping[str, str] | None = None) -> EntityMatcher:
        self.vocabulary = list(vocabulary)
        matcher = EntityMatcher(vocabulary, aliases)
        self.train_entities = [matcher(c) for c in captions]
        return matcher

    def prompt_id(self, mask_rate: float, aliases: Mapping[str, str] | None = None) -> str:
        """Names the prompts for the shared decoder-fit cache: the masking rate, the vocabulary and
        the aliases (everything the training prompts depend on besides the captions and seed)."""
        import hashlib
        import json

        blob = json.dumps([ENTITY_VERSION, mask_rate, self.vocabulary, sorted((aliases or {}).items())])
        return "entities:" + hashlib.sha256(blob.encode()).hexdigest()[:16]

    def prompt_options(self, hard_prompt: bool, mask_rate: float, aliases: Mapping[str, str] | None = None) -> dict[str, Any]:
        """``fit_decoder``'s ``prompts``, ``prompt_id`` and ``extra_texts`` for the hard prompt
        (none when it is off); call after ``prepare_prompts``."""
        if not hard_prompt:
            return {"prompts": None, "prompt_id": None, "extra_texts": ()}
        return {"prompts": lambda decoder, seed: self.training_prompts(decoder, mask_rate, seed),
                "prompt_id": self.prompt_id(mask_rate, aliases), "extra_texts": self.prompt_texts()}

    def prompt_texts(self) -> list[str]:
        """Every word a prompt can hold, for the decoder's vocabulary."""
        return [hard_prompt(self.vocabulary), hard_prompt([])]

    def training_prompts(self, decoder: Any, mask_rate: float, seed: int) -> Callable[[Any, Any], list[list[int]]]:
        """The per-batch prompt function ``CaptionDecoder.fit`` takes: each row's entities, each
        dropped with probability ``mask_rate`` afresh every time the row is drawn (seeded)."""
        rng = np.random.default_rng(seed)
        encode = _memo_encoder(decoder)

        def prompts(rows: Any, _generator: Any) -> list[list[int]]:
            return [encode(hard_prompt(mask_entities(self.train_entities[int(r)], mask_rate, rng))) for r in rows]

        return prompts

    @staticmethod
    def encode_prompts(decoder: Any, entities: Sequence[Sequence[str]]) -> list[list[int]]:
        encode = _memo_encoder(decoder)
        return [encode(hard_prompt(names)) for names in entities]


def _memo_encoder(decoder: Any) -> Callable[[str], list[int]]:
    memo: dict[str, list[int]] = {}

    def encode(text: str) -> list[int]:
        if text not in memo:
            memo[text] = list(decoder.vocab.encode(text))
        return memo[text]

    return encode


def require_entities(train_entities: Sequence[Sequence[str]], vocabulary: Sequence[str], method: str) -> None:
    """A hard prompt that never names anything in training teaches nothing: refuse it."""
    if train_entities and not any(train_entities):
        raise _names_nothing(len(train_entities), vocabulary, method)


def _names_nothing(captions: int, vocabulary: Sequence[str], method: str) -> BenchError:
    return BenchError(f"{method}: none of the {captions} training captions names a word of the entity vocabulary "
                      f"({', '.join(list(vocabulary)[:5])}{', ...' if len(vocabulary) > 5 else ''}); check {method}.vocabulary")


def check_hard_prompt(configured: Sequence[str], data: Any, method: str) -> None:
    """``check_training`` for a hard prompt, before anything heavy loads: the entity vocabulary
    (configured, else the dataset's object words; ``data`` a ``TrainingData``) is not empty, has
    words that can match, and at least one training caption names one (the first such caption
    ends the scan)."""
    vocabulary = entity_vocabulary(configured, data.objects, data.dataset, method)
    matcher = EntityMatcher(vocabulary, dict(data.aliases))
    if data.texts and not any(matcher.occurrences(text) for text in data.texts):
        raise _names_nothing(len(data.texts), vocabulary, method)


def check_entity_settings(top_k: int, threshold: float, mask_rate: float, where: str) -> None:
    if not 1 <= top_k <= MAX_ENTITIES:
        raise ConfigError(f"{where}.top_k must be >= 1 and at most {MAX_ENTITIES} (a prompt names at most "
                          f"{MAX_ENTITIES} entities), got {top_k}")
    if not 0 <= threshold <= 1:
        raise ConfigError(f"{where}.threshold must be in [0, 1], got {threshold}")
    if not 0 <= mask_rate < 1:
        raise ConfigError(f"{where}.mask_rate must be in [0, 1), got {mask_rate}")
