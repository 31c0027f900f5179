"""IFCap (Lee et al., EMNLP 2024; public code boreng0817/IFCap, built on ViECap's): image-like
retrieval and frequency-based entity filtering.

* **Image-like retrieval.** In training, each caption's text embedding is made to look like an
  image embedding by noise (``retrieval_noise`` 0.04, ``image_like_retrieval.py``) and queries the
  memory of every training caption's embedding; the ``k`` nearest (5), never itself, are its
  retrieved captions. At test time the image embedding queries the same memory directly.
* **Fusion.** The input feature attends to its retrieved captions' embeddings (one
  cross-attention layer, 8 heads, residual and MLP; ``bench.decoders.retrieval_fusion``).
* **Frequency-based entity filtering.** At test time the entities of the ``filter_l`` (9)
  nearest captions are counted (every mention) and those named at least ``filter_k`` (5) times
  make the hard prompt (COCO's settings in IFCap's README; Flickr30k uses 7 and 3). Training
  uses the caption's own entities, masked at 0.4, as ViECap.
* The input feature is noised as in ViECap (``noise_variance`` 0.016, ``main.py``); the
  paper's decoder is ViECap's (``--decoder ifcap``: GPT-2, 5 epochs on COCO, beam 5).

What differs from IFCap's code, and why: its retrieval uses a second CLIP (RN50x64) beside the
captioner's ViT-B/32; here the run's encoder does both, so that one encoder is the protocol. Its
fusion acts on the 10 GPT-2-width tokens inside the mapper; here it acts on the CLIP-space
feature before any decoder's mapper, so the decoder stays an axis of its own. For
COCO->Flickr30k it retrieves from Flickr30k's training captions; here the memory is the
training corpus of the split (text of the eval domain is not the training domain's). Entities
come from the vocabulary match of ``bench.entities``, not NLTK nouns.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bench.captioner import Captioner, Corpus, FitContext, TrainingData
from bench.config import check_switched
from bench.decoders import CaptionDecoder, DecoderConfig
from bench.entities import (
    MAX_ENTITIES,
    EntityPrompts,
    check_entity_settings,
    check_hard_prompt,
    entity_vocabulary,
    require_entities,
)
from bench.errors import BenchError, ConfigError
from bench.plugins import register_method
from bench.retrieval import nearest


@dataclass(frozen=True)
class IFCapConfig:
    #: the settings only the hard prompt uses (``bench.config.check_switched``)
    SWITCHED: ClassVar[dict[str, tuple[str, ...]]] = {"hard_prompt": ("mask_rate", "filter_l", "filter_k", "vocabulary")}

    noise_variance: float = 0.016
    retrieval_noise: float = 0.04
    k: int = 5
    hard_prompt: bool = True
    mask_rate: float = 0.4
    filter_l: int = 9
    filter_k: int = 5
    fusion_heads: int = 8
    vocabulary: tuple[str, ...] = ()
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        if not self.noise_variance >= 0 or not self.retrieval_noise >= 0:
            raise ConfigError("ifcap.noise_variance and ifcap.retrieval_noise must be >= 0")
        if self.k < 1 or self.filter_l < 1 or self.filter_k < 1 or self.fusion_heads < 1:
            raise ConfigError("ifcap.k, filter_l, filter_k and fusion_heads must be >= 1")
        check_entity_settings(1, 0.0, self.mask_rate, "ifcap")
        check_switched(self, "ifcap")


def too_many(config: IFCapConfig, captions: int, dataset: str) -> None:
    """Training retrieves ``k`` captions other than the query's own; a test image ``filter_l``."""
    if config.k >= captions or config.filter_l > captions:
        raise BenchError(f"ifcap retrieves k = {config.k} captions besides each training caption and filter_l = "
                         f"{config.filter_l} per image, but the {dataset or 'training'} corpus holds {captions}")


@register_method("ifcap")
class IFCap(EntityPrompts, Captioner):
    """IFCap: image-like retrieval fused into the feature, and entities filtered by frequency."""

    Config = IFCapConfig
    noise_field = "noise_variance"

    def __init__(self, config: IFCapConfig | None = None) -> None:
        super().__init__(config)
        self.decoder: CaptionDecoder | None = None
        self.memory: Any = None
        self.memory_entities: list[list[str]] = []

    @classmethod
    def check_training(cls, config: IFCapConfig, data: TrainingData) -> None:
        if config.hard_prompt:
            check_hard_prompt(config.vocabulary, data, "ifcap")
        too_many(config, data.captions, data.dataset)
        if data.dim and data.dim % config.fusion_heads:
            raise BenchError(f"ifcap.fusion_heads = {config.fusion_heads} does not divide the encoder's embedding width {data.dim}")

    def fit(self, corpus: Corpus, ctx: FitContext) -> None:
        import torch

        from bench.decoders.fit_cache import fit_decoder
        from bench.noise import inject_noise, noise_transform
        from bench.tensors import unit_rows

        cfg = self.config
        too_many(cfg, len(corpus), corpus.dataset)
        vocabulary: tuple[str, ...] = ()
        self.vocabulary, self.memory_entities, self.train_entities = [], [], []
        if cfg.hard_prompt:  # otherwise no entities: retrieval and fusion only
            vocabulary = entity_vocabulary(cfg.vocabulary, corpus.objects, corpus.dataset, "ifcap")
            matcher = self.prepare_prompts(corpus.captions, vocabulary, corpus.aliases)
            require_entities(self.train_entities, vocabulary, "ifcap")
            self.memory_entities = [matcher.occurrences(c) for c in corpus.captions]
        self.memory = np.ascontiguousarray(unit_rows(np.asarray(corpus.embeddings, np.float32)))
        generator = torch.Generator().manual_seed(ctx.seed)
        queries = inject_noise(torch.from_numpy(self.memory), cfg.retrieval_noise, generator).numpy()
        retrieved = nearest(queries, self.memory, cfg.k, exclude_self=True, device=ctx.device)
        self.decoder, info = fit_decoder(
            cfg.decoder, corpus.captions, self.memory, ctx, **noise_transform(cfg.noise_variance),
            **self.prompt_options(cfg.hard_prompt, cfg.mask_rate, corpus.aliases),
            tags=retrieved, memory=self.memory, fusion_heads=cfg.fusion_heads)
        self.fit_info = {**info, "vocabulary": len(vocabulary), "retrieved_per_caption": cfg.k}

    def filtered_entities(self, neighbours: np.ndarray) -> list[list[str]]:
        """Per image, the entities named at least ``filter_k`` times among its nearest captions,
        most frequent first (at most ``MAX_ENTITIES``, what a prompt holds)."""
        out = []
        for row in neighbours[:, : self.config.filter_l]:
            counts = Counter(e for i in row for e in self.memory_entities[int(i)])
            out.append([e for e, n in counts.most_common() if n >= self.config.filter_k][:MAX_ENTITIES])
        return out

    def caption(self, image_embeddings: Any) -> list[str]:
        from bench.tensors import as_array, unit_rows

        assert self.decoder is not None, "caption() before fit()"
        x = unit_rows(as_array(image_embeddings))
        neighbours = nearest(x, self.memory, max(self.config.k, self.config.filter_l))
        prompts = None
        if self.config.hard_prompt:
            prompts = self.encode_prompts(self.decoder, self.filtered_entities(neighbours))
        return self.decoder.decode(x, tags=neighbours[:, : self.config.k], prompts=prompts)

    def state_dict(self) -> dict[str, Any]:
        assert self.decoder is not None, "state_dict() before fit()"
        import torch

        return {"decoder": self.decoder.state_dict(), "vocabulary": self.vocabulary, "memory_entities": self.memory_entities,
                "memory": torch.from_numpy(np.ascontiguousarray(self.memory, dtype=np.float32))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.vocabulary = list(state["vocabulary"])
        self.memory_entities = [list(e) for e in state["memory_entities"]]
        self.memory = state["memory"].numpy()
        self.decoder = CaptionDecoder(self.config.decoder, int(state["decoder"]["embed_dim"]), memory=self.memory,
                                      fusion_heads=self.config.fusion_heads)
        self.decoder.load_state_dict(state["decoder"])


__all__ = ["IFCap", "IFCapConfig"]
