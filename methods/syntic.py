"""SynTIC (Liu, Liu, Ma, AAAI 2024): synthetic image-text pairs for text-only captioning.

For every training caption an image is generated (Stable Diffusion v1-5 in the paper; the
world's own renderer on ``shapes``) and embedded with the frozen CLIP. Then, each a switch of
the paper's ablation:

* ``optimise``: the pseudo image features are optimised toward their captions' text features
  with a contrastive loss (temperature 1/100, Adam at lr 1e-5; ``bench.alignment``);
* ``project``: features are projected onto the support set of training-text embeddings
  (softmax over cosine / τ, τ 1/100 for COCO and 1/80 for Flickr30k; ``bench.projection``);
* ``auxiliary``: objects tagged in the generated image (a DETR detector in the paper; CLIP
  zero-shot over the world's object words on ``shapes``) are embedded with the CLIP text
  encoder and fused with the feature by multi-head attention into a second prefix vector
  (``bench.decoders.fusion``), learnt with the decoder.

The decoder (from scratch; the default transformer) is trained on these prefixes. At test time a real
image's embedding goes through the same projection, and the real image is tagged the same way
(the CLIP tagger works on the embedding; a detector reads the image file, see
``caption_images``). Feature optimisation needs a paired text, so it applies to training
features only, as in the paper. With every switch off, the decoder learns from the raw
generated-image embeddings: a plain synthetic-pairs baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from bench.captioner import Captioner, Corpus, FitContext, TrainingData
from bench.config import check_switched
from bench.decoders import CaptionDecoder, DecoderConfig
from bench.errors import BenchError, ConfigError
from bench.plugins import register_method
from bench.projection import check_temperature

#: The paper's projection temperature per training dataset (1/100 for COCO, 1/80 for
#: Flickr30k); the shapes domains that mirror them use the same. Anything else: 1/100.
PAPER_TAU = {"coco": 1 / 100, "flickr30k": 1 / 80, "shapes-coco": 1 / 100, "shapes-flickr": 1 / 80}
DEFAULT_TAU = 1 / 100
TAGGER_THRESHOLD = {"clip": 0.1, "detr": 0.7}


#: Settings of a diffusers pipeline; the world's own renderer has none of them.
DIFFUSERS_SETTINGS = ("path", "steps", "size", "guidance", "batch_size")


@dataclass(frozen=True)
class GeneratorSettings:
    """Which text-to-image generator makes the training images (``path``, ``steps``, ``size``,
    ``guidance`` and ``batch_size`` are a diffusers pipeline's; with the world's own renderer,
    setting one is an error)."""

    kind: Literal["auto", "shapes", "diffusers"] = "auto"  # auto: the dataset's own (shapes), else diffusers
    path: str = ""  # diffusers: a local pipeline folder (or a hub id when online)
    steps: int = 20
    size: int = 512
    guidance: float = 7.5
    batch_size: int = 4
    #: the generation seed: the synthetic images are made once and shared by the fits of every
    #: training seed (a paper generates its synthetic set once)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "size", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"syntic.generator.{name} must be >= 1, got {getattr(self, name)}")

    def check_resources(self) -> None:
        """A pipeline folder that is named must exist (a hub id is left to diffusers)."""
        if self.path and (self.path.startswith((".", "/", "~")) or self.path.count("/") > 1):
            folder = Path(self.path).expanduser()
            if not folder.is_dir():
                raise BenchError(f"syntic.generator.path {folder} does not exist")
            if not (folder / "model_index.json").is_file():
                raise BenchError(f"syntic.generator.path {folder} is not a diffusers pipeline folder (no model_index.json)")

    def resolved_kind(self, own: str) -> str:
        """The generator that runs on a dataset whose own generator is ``own`` (empty: none)."""
        return (own or "diffusers") if self.kind == "auto" else self.kind

    def require_model(self, dataset: str, own: str) -> None:
        """A diffusers generator needs its pipeline named (checked before a run and again at the fit)."""
        if self.resolved_kind(own) == "diffusers" and not self.path:
            raise BenchError(f"syntic on {dataset or 'this dataset'} needs a text-to-image model: --set syntic.generator.path="
                             "/path/to/stable-diffusion-v1-5 (a diffusers folder), or leave syntic out of --methods")

    def resource_folders(self) -> list[Path]:
        """A local pipeline folder, whose content the generated images depend on (a hub id is not hashed)."""
        folder = Path(self.path).expanduser()
        return [folder] if self.path and folder.is_dir() else []


@dataclass(frozen=True)
class TaggerSettings:
    """Which object tagger names the objects of an image (the auxiliary feature)."""

    kind: Literal["clip", "detr"] = "clip"
    path: str = ""  # detr: a local transformers object-detection folder
    threshold: float | None = None  # clip: min softmax probability (0.1); detr: min detection score (0.7)
    top_k: int = 3  # at most this many tags per image
    vocabulary: tuple[str, ...] = ()  # clip: the object words; empty: the training dataset's own
    template: str = "a photo of a {}."  # how a tag word is put to the CLIP text encoder

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ConfigError(f"syntic.tagger.top_k must be >= 1, got {self.top_k}")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise ConfigError(f"syntic.tagger.threshold must be in [0, 1], got {self.threshold}")
        if "{}" not in self.template:
            raise ConfigError(f"syntic.tagger.template must contain {{}} for the tag word, got {self.template!r}")
        if self.kind == "detr" and self.vocabulary:
            raise ConfigError("syntic.tagger.vocabulary is the clip tagger's word list; the detr tagger names its own labels")

    def check_resources(self) -> None:
        if self.path:
            folder = Path(self.path).expanduser()
            if not folder.is_dir():
                raise BenchError(f"syntic.tagger.path {folder} does not exist")
            if not (folder / "config.json").is_file():
                raise BenchError(f"syntic.tagger.path {folder} is not a transformers model folder (no config.json)")

    def require_model(self) -> None:
        """The detr tagger needs its detector named (checked before a run and again at the fit)."""
        if self.kind == "detr" and not self.path:
            raise BenchError("syntic.tagger.kind=detr needs a detector: --set syntic.tagger.path=/path/to/detr-resnet-50")

    def resource_folders(self) -> list[Path]:
        """The detector's folder, whose weights the tags depend on."""
        return [Path(self.path).expanduser()] if self.path else []


@dataclass(frozen=True)
class SynTICConfig:
    #: the settings each switch alone uses (``bench.config.check_switched``)
    SWITCHED: ClassVar[dict[str, tuple[str, ...]]] = {
        "optimise": ("opt_temperature", "opt_lr", "opt_epochs", "opt_batch_size"),
        "project": ("tau", "memory_size"),
        "auxiliary": ("tagger", "fusion_heads"),
    }

    # The three switches of the paper's ablation.
    optimise: bool = True
    project: bool = True
    auxiliary: bool = True
    # Feature optimisation.
    opt_temperature: float = 0.01
    opt_lr: float = 1e-5
    opt_epochs: float = 10.0
    opt_batch_size: int = 256
    # Projection onto the training texts: τ (None: the paper's value for the dataset) and size.
    tau: float | None = None
    memory_size: int = 0  # 0: the whole training corpus
    fusion_heads: int = 8
    generator: GeneratorSettings = field(default_factory=GeneratorSettings)
    tagger: TaggerSettings = field(default_factory=TaggerSettings)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def __post_init__(self) -> None:
        if self.tau is not None:
            check_temperature(self.tau, "syntic.tau")
        if not self.opt_temperature > 0 or not self.opt_lr > 0 or not self.opt_epochs > 0:
            raise ConfigError("syntic.opt_temperature, opt_lr and opt_epochs must be > 0")
        if self.opt_batch_size < 2:
            raise ConfigError(f"syntic.opt_batch_size must be >= 2 (a contrastive batch), got {self.opt_batch_size}")
        if self.memory_size < 0:
            raise ConfigError(f"syntic.memory_size must be >= 0 (0 = the whole corpus), got {self.memory_size}")
        if self.fusion_heads < 1:
            raise ConfigError(f"syntic.fusion_heads must be >= 1, got {self.fusion_heads}")
        check_switched(self, "syntic")

    def tau_for(self, dataset: str) -> float:
        return self.tau if self.tau is not None else PAPER_TAU.get(dataset, DEFAULT_TAU)


def make_generator(settings: GeneratorSettings, corpus: Corpus, device: str = "cpu") -> Any:
    from bench.generators import GENERATORS

    settings.require_model(corpus.dataset, corpus.generator)
    kind = settings.resolved_kind(corpus.generator)
    if kind == "diffusers":
        return GENERATORS.get("diffusers")(settings.path, steps=settings.steps, size=settings.size,
                                           guidance=settings.guidance, batch_size=settings.batch_size, device=device)
    changed = [f"{name}={getattr(settings, name)}" for name in DIFFUSERS_SETTINGS
               if getattr(settings, name) != getattr(GeneratorSettings(), name)]
    if changed:
        raise BenchError(f"syntic.generator {', '.join(changed)}: the {kind} generator has no such setting "
                         "(they are a diffusers pipeline's)")
    return GENERATORS.get(kind)()


def make_tagger(settings: TaggerSettings, encoder: Any, objects: tuple[str, ...] = (), dataset: str = "",
                device: str = "cpu") -> Any:
    from bench.taggers import TAGGERS

    threshold = settings.threshold if settings.threshold is not None else TAGGER_THRESHOLD[settings.kind]
    settings.require_model()
    if settings.kind == "detr":
        return TAGGERS.get("detr")(settings.path, threshold=threshold, device=device)
    vocabulary = settings.vocabulary or objects
    if not vocabulary:
        raise BenchError(f"the clip tagger needs object words: {dataset or 'the dataset'} names none; "
                         "pass --set syntic.tagger.vocabulary=word1,word2,... or use a detector")
    return TAGGERS.get("clip")(encoder, vocabulary, settings.template, settings.top_k, threshold)


@register_method("syntic")
class SynTIC(Captioner):
    """SynTIC: a decoder trained on generated-image features, optimised, projected and tag-fused."""

    Config = SynTICConfig

    @classmethod
    def check_training(cls, config: SynTICConfig, data: TrainingData) -> None:
        # the models a fit would need but no setting names: bad input now, not a failed cell later
        config.generator.require_model(data.dataset, data.generator)
        if config.auxiliary:
            config.tagger.require_model()
        if config.project:
            from bench.projection import check_memory_size

            check_memory_size(config.memory_size, data.captions, "syntic.memory_size")
        if config.auxiliary and data.dim and data.dim % config.fusion_heads:
            raise BenchError(f"syntic.fusion_heads = {config.fusion_heads} does not divide the encoder's embedding width {data.dim}")

    def __init__(self, config: SynTICConfig | None = None) -> None:
        super().__init__(config)
        self.decoder: CaptionDecoder | None = None
        self.memory: Any = None  # the projection's support set (when projecting)
        self.tau = DEFAULT_TAU
        self.tag_words: list[str] = []
        self.tag_table: Any = None  # CLIP text embedding of each tag word's prompt
        self._tagger: Any = None

    # -- the stages, each a function of the switches that own it ---------------------------------
    def training_features(self, raw: np.ndarray, texts: np.ndarray, seed: int = 0, progress: Any = None,
                          cache: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Generated-image embeddings -> the decoder's training prefixes: optimised when
        ``optimise``, then projected onto the support memory when ``project``.

        ``cache(stage, inputs, compute)`` may return a stored result of a stage for the same
        inputs (the ablation's cells share them: projecting 20,000 features onto 20,000 texts is
        0.8 TFLOP); by default every stage is computed."""
        from bench.alignment import mean_loss, optimise_features
        from bench.cache import array_digest
        from bench.projection import project
        from bench.tensors import unit_rows

        cfg = self.config
        info: dict[str, Any] = {}
        features = np.asarray(unit_rows(raw), dtype=np.float32)
        cache = cache or (lambda stage, inputs, compute: compute())
        if cfg.optimise:
            settings = [cfg.opt_temperature, cfg.opt_lr, cfg.opt_epochs, cfg.opt_batch_size, seed]

            def optimise() -> np.ndarray:
                out, info["optimisation"] = optimise_features(features, texts, *settings[:4], seed, progress)
                return out

            start = features
            features = np.asarray(cache("optimised", [array_digest(features), array_digest(texts), settings], optimise))
            if "optimisation" not in info:  # from the cache: the losses again, on the same batches
                info["optimisation"] = {"loss_before": round(mean_loss(start, texts, cfg.opt_temperature, cfg.opt_batch_size, seed), 4),
                                        "loss_after": round(mean_loss(features, texts, cfg.opt_temperature, cfg.opt_batch_size, seed), 4),
                                        "mean_cosine_to_start": round(float((features * start).sum(1).mean()), 4), "cached": True}
        if cfg.project:
            inputs = [array_digest(features), array_digest(self.memory), self.tau]
            features = np.asarray(cache("projected", inputs, lambda: project(features, self.memory, self.tau).numpy()))
        return np.asarray(features, dtype=np.float32), info

    def test_features(self, image_embeddings: Any) -> np.ndarray:
        """Real image embeddings -> the decoder's prefixes: projected when ``project``."""
        from bench.projection import project

        x = _unit(image_embeddings)
        return project(x, self.memory, self.tau).numpy() if self.config.project else x

    def _tags_of_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        from bench.taggers import tag_indices

        return tag_indices(self._tagger.tag_embeddings(embeddings), self.tag_words, self.config.tagger.top_k)

    # -- fit -----------------------------------------------------------------------------------
    def fit(self, corpus: Corpus, ctx: FitContext) -> None:
        from bench.decoders.fit_cache import fit_decoder
        from bench.generated import embed_generated
        from bench.projection import support_memory
        from bench.tensors import unit_rows

        cfg = self.config
        texts = unit_rows(corpus.embeddings, corpus.normalized)
        self.tau = cfg.tau_for(corpus.dataset)
        if cfg.project:
            self.memory = support_memory(texts, cfg.memory_size, ctx.seed, "syntic.memory_size")
        generator = make_generator(cfg.generator, corpus, ctx.device)
        tagger = make_tagger(cfg.tagger, ctx.encoder, corpus.objects, corpus.dataset, ctx.device) if cfg.auxiliary else None
        paths, raw = embed_generated(corpus.captions, generator, ctx, corpus.dataset, seed=cfg.generator.seed)
        features, info = self.training_features(np.asarray(raw), texts, ctx.seed, ctx.progress, _stage_cache(ctx, corpus))
        tags = None
        if tagger is not None:
            self._set_tagger(tagger, ctx.encoder)
            if hasattr(tagger, "tag_embeddings"):  # CLIP zero-shot: the image embeddings are all it needs
                tags = self._tags_of_embeddings(np.asarray(raw))
            else:
                from bench.taggers import TagCache, tag_indices

                tags = tag_indices(TagCache(ctx.cache_dir, tagger).tags(paths), self.tag_words, cfg.tagger.top_k)
            info["tagged_fraction"] = round(float((tags >= 0).any(1).mean()), 4)
            info["tags_per_image"] = round(float((tags >= 0).sum(1).mean()), 3)
        self.decoder, decoder_info = fit_decoder(cfg.decoder, corpus.captions, features, ctx, tags=tags,
                                                 tag_table=self.tag_table, fusion_heads=cfg.fusion_heads)
        self.fit_info = {**decoder_info, **info, "generator": generator.id, "tau": self.tau,
                         "memory_size": 0 if self.memory is None else len(self.memory),
                         "tagger": None if tagger is None else tagger.id}

    def _set_tagger(self, tagger: Any, encoder: Any) -> None:
        """Keep the tagger and the CLIP text embedding of each of its words (the tag table)."""
        self._tagger = tagger
        self.tag_words = list(tagger.vocabulary)
        if hasattr(tagger, "text_embeddings"):  # the clip tagger's prompts are the tag embeddings
            self.tag_table = np.asarray(tagger.text_embeddings, dtype=np.float32)
        else:
            template = self.config.tagger.template
            self.tag_table = np.asarray(encoder.encode_texts([template.format(w) for w in self.tag_words], progress=None),
                                        dtype=np.float32)

    # -- caption ---------------------------------------------------------------------------------
    def caption(self, image_embeddings: Any) -> list[str]:
        assert self.decoder is not None, "caption() before fit()"
        x = _unit(image_embeddings)
        tags = None
        if self.config.auxiliary:
            if self.config.tagger.kind != "clip":
                raise BenchError("syntic with a detector tagger reads the test images' files: caption through "
                                 "`bench run` or `bench caption`, which pass them")
            tags = self._tags_of_embeddings(x)  # the real image is tagged, not its projection
        return self.decoder.decode(self.test_features(x), tags=tags)

    def caption_images(self, image_embeddings: Any, images: Any) -> list[str]:
        if not (self.config.auxiliary and self.config.tagger.kind == "detr"):
            return self.caption(image_embeddings)
        assert self.decoder is not None, "caption() before fit()"
        from bench.taggers import tag_indices

        if len(images) != len(image_embeddings):
            raise BenchError(f"{len(images)} image files for {len(image_embeddings)} embeddings")
        if self._tagger is None:
            self._tagger = make_tagger(self.config.tagger, None)
        tags = tag_indices(self._tagger.tag(list(images)), self.tag_words, self.config.tagger.top_k)
        return self.decoder.decode(self.test_features(image_embeddings), tags=tags)

    # -- persistence -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        import torch

        assert self.decoder is not None, "state_dict() before fit()"
        state: dict[str, Any] = {"decoder": self.decoder.state_dict(), "tau": self.tau, "tag_words": self.tag_words}
        if self.memory is not None:
            state["memory"] = torch.from_numpy(np.ascontiguousarray(self.memory))
        if self.tag_table is not None:
            state["tag_table"] = torch.from_numpy(np.ascontiguousarray(self.tag_table))
            state["tagger_encoder"] = getattr(self._tagger, "encoder_id", "")
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tau = float(state["tau"])
        self.memory = state["memory"].numpy() if "memory" in state else None
        self.tag_words = list(state.get("tag_words", []))
        self.tag_table = state["tag_table"].numpy() if "tag_table" in state else None
        self.decoder = CaptionDecoder(self.config.decoder, int(state["decoder"]["embed_dim"]))
        self.decoder.load_state_dict(state["decoder"])
        self._tagger = None
        if self.tag_table is not None and self.config.tagger.kind == "clip":
            from bench.taggers import ClipZeroShotTagger

            t = self.config.tagger
            threshold = t.threshold if t.threshold is not None else TAGGER_THRESHOLD["clip"]
            self._tagger = ClipZeroShotTagger(None, self.tag_words, t.template, t.top_k, threshold,
                                              text_embeddings=self.tag_table, encoder_id=state.get("tagger_encoder", ""))



def _unit(x: Any) -> np.ndarray:
    """Unit rows as a float32 NumPy array, from a tensor or an array."""
    from bench.tensors import as_array, unit_rows

    return unit_rows(as_array(x))


def _stage_cache(ctx: FitContext, corpus: Corpus) -> Any:
    """``cache(stage, inputs, compute)`` through the embedding cache (None without one)."""
    if ctx.cache is None:
        return None
    import json

    from bench.cache import CacheKey, fingerprint

    def cached(stage: str, inputs: list[Any], compute: Any) -> Any:
        key = CacheKey(getattr(ctx.encoder, "id", ""), corpus.dataset or "corpus", f"syntic-{stage}", "image",
                       fingerprint([json.dumps(inputs, default=str)]))
        return ctx.cache.get(key, compute)

    return cached
