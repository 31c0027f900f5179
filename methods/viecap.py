"""ViECap (Fei et al., ICCV 2023; public code FeiElysia/ViECap): entity-aware decoding.

Training: the decoder sees a *soft prompt*, the noise-injected CLIP text embedding of the caption
mapped to prefix vectors, then a *hard prompt* naming the caption's entities,
"There are e1, e2 in image.", each entity dropped at random (40%), then the caption; the loss
covers the caption's tokens only. Test: the entities come from CLIP zero-shot classification of
the image embedding over the entity vocabulary (a prompt ensemble of 7 templates, softmax over
cosine / 0.01, top 3 in rank order while the probability is at least 0.4), and the image
embedding itself is the soft prompt. Settings, each a config field so its ablation is a
``--sweep``, and where each comes from (ViECap's code, see ``bench.entities`` for the rest):

* ``noise_variance`` 0.016 (``main.py``): CapDec's noise on the soft prompt's embedding;
* ``hard_prompt`` on; ``mask_rate`` 0.4 (``train_coco.sh``), per entity, dropped not replaced;
* ``top_k`` 3 and ``threshold`` 0.4 (``eval_coco.sh``; ViECap lowers it to 0.3 on Flickr30k and
  0.2 across domains); ``ensemble`` on (``generating_prompt_ensemble.py``'s 7 templates);
* entities: the dataset's object words (COCO's 80 categories for COCO and Flickr30k, the
  world's 12 shapes with their synonyms), or ``vocabulary`` given; ViECap extracts nouns with
  NLTK and keeps those in Visual Genome's object list, which needs downloads;
* the decoder: the harness's from-scratch transformer by default, so that the method runs on a
  CPU; ``--decoder viecap`` is the paper's (GPT-2, 10 prefix vectors from a transformer mapper,
  lr 2e-5 with 5,000 warm-up steps, batch 80, 15 epochs, beam 5), soft prompt first as there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bench.captioner import Captioner, Corpus, FitContext, TrainingData
from bench.config import check_switched
from bench.decoders import CaptionDecoder, DecoderConfig
from bench.entities import (
    EntityPrompts,
    check_entity_settings,
    check_hard_prompt,
    classify,
    entity_vocabulary,
    require_entities,
    vocabulary_embeddings,
)
from bench.errors import ConfigError
from bench.plugins import register_method


@dataclass(frozen=True)
class ViECapConfig:
    #: the settings only the hard prompt uses (``bench.config.check_switched``)
    SWITCHED: ClassVar[dict[str, tuple[str, ...]]] = {"hard_prompt": ("mask_rate", "top_k", "threshold", "ensemble", "vocabulary")}

    noise_variance: float = 0.016
    hard_prompt: bool = True
    mask_rate: float = 0.4
    top_k: int = 3
    threshold: float = 0.4
    ensemble: bool = True
    vocabulary: tuple[str, ...] = ()  # empty: the training dataset's object words
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        if not self.noise_variance >= 0:
            raise ConfigError(f"viecap.noise_variance must be >= 0, got {self.noise_variance}")
        check_entity_settings(self.top_k, self.threshold, self.mask_rate, "viecap")
        check_switched(self, "viecap")


@register_method("viecap")
class ViECap(EntityPrompts, Captioner):
    """ViECap: a decoder prompted with the image's entities (hard) and its embedding (soft)."""

    Config = ViECapConfig
    noise_field = "noise_variance"

    @classmethod
    def shared_decoder(cls, config: ViECapConfig) -> str | None:
        from bench.noise import plain_decoder

        return None if config.hard_prompt else plain_decoder(config.decoder, config.noise_variance)

    def __init__(self, config: ViECapConfig | None = None) -> None:
        super().__init__(config)
        self.decoder: CaptionDecoder | None = None
        self.vocabulary: list[str] = []
        self.vocab_emb: Any = None

    @classmethod
    def check_training(cls, config: ViECapConfig, data: TrainingData) -> None:
        if config.hard_prompt:
            check_hard_prompt(config.vocabulary, data, "viecap")

    def fit(self, corpus: Corpus, ctx: FitContext) -> None:
        from bench.decoders.fit_cache import fit_decoder
        from bench.noise import noise_transform
        from bench.tensors import unit_rows

        cfg = self.config
        vocabulary: tuple[str, ...] = ()
        self.vocabulary, self.train_entities, self.vocab_emb = [], [], np.zeros((0, corpus.dim), np.float32)
        if cfg.hard_prompt:  # otherwise viecap is capdec: no entities at all
            vocabulary = entity_vocabulary(cfg.vocabulary, corpus.objects, corpus.dataset, "viecap")
            self.prepare_prompts(corpus.captions, vocabulary, corpus.aliases)
            require_entities(self.train_entities, vocabulary, "viecap")
            self.vocab_emb = vocabulary_embeddings(lambda texts: ctx.encoder.encode_texts(texts, progress=None), vocabulary,
                                                   cfg.ensemble)
        self.decoder, info = fit_decoder(
            cfg.decoder, corpus.captions, unit_rows(corpus.embeddings, corpus.normalized), ctx,
            **noise_transform(cfg.noise_variance), **self.prompt_options(cfg.hard_prompt, cfg.mask_rate, corpus.aliases))
        tagged = float(np.mean([bool(e) for e in self.train_entities])) if self.train_entities else 0.0
        self.fit_info = {**info, "vocabulary": len(vocabulary), "captions_with_entities": round(tagged, 4)}

    def entities_of(self, image_embeddings: Any) -> list[list[str]]:
        return classify(image_embeddings, self.vocab_emb, self.vocabulary, self.config.top_k, self.config.threshold)

    def caption(self, image_embeddings: Any) -> list[str]:
        from bench.tensors import as_array, unit_rows

        assert self.decoder is not None, "caption() before fit()"
        x = unit_rows(as_array(image_embeddings))
        prompts = self.encode_prompts(self.decoder, self.entities_of(x)) if self.config.hard_prompt else None
        return self.decoder.decode(x, prompts=prompts)

    def state_dict(self) -> dict[str, Any]:
        import torch

        assert self.decoder is not None, "state_dict() before fit()"
        return {"decoder": self.decoder.state_dict(), "vocabulary": self.vocabulary,
                "vocab_emb": torch.from_numpy(np.ascontiguousarray(self.vocab_emb, dtype=np.float32))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vocabulary = list(state["vocabulary"])
        self.vocab_emb = state["vocab_emb"].numpy()
        self.decoder = CaptionDecoder(self.config.decoder, int(state["decoder"]["embed_dim"]))
        self.decoder.load_state_dict(state["decoder"])
