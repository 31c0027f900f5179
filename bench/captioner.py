"""The one interface every method implements.

A method sees text only while it fits: a :class:`Corpus` of training captions and their
cached CLIP text embeddings. At test time it receives CLIP *image* embeddings and returns one
caption per row. It never touches pixels or raw CLIP weights itself; anything it needs from
the encoder (embedding a tag vocabulary, say) goes through ``ctx.encoder``.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from bench.config import config_dict
from bench.progress import progress as default_progress

if TYPE_CHECKING:  # heavy imports only for type checkers
    import numpy as np


@dataclass(frozen=True)
class Corpus:
    """Training text for ``fit``.

    ``captions[i]`` is embedded as ``embeddings[i]``: a float32 array of shape ``(N, D)``,
    L2-normalised along D unless ``normalized`` is False. ``dataset`` and ``split`` name where
    the text came from (for caches and records). ``objects`` are the dataset's object words (a
    tagger's vocabulary; empty when the dataset names none), ``aliases`` map other words the
    captions use for them onto them ("dot" -> "circle", "man" -> "person"), and ``generator`` the
    name of the dataset's own text-to-image generator (``shapes`` for the shapes world; empty for
    real data).
    """

    captions: Sequence[str]
    embeddings: np.ndarray
    dataset: str = ""
    split: str = "train"
    normalized: bool = True
    objects: tuple[str, ...] = ()
    generator: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shape = getattr(self.embeddings, "shape", None)
        if shape is None or len(shape) != 2:
            raise ValueError(f"corpus embeddings must be a 2-D array (N, D), got shape {shape}")
        if shape[0] != len(self.captions):
            raise ValueError(f"corpus has {len(self.captions)} captions but {shape[0]} embeddings")

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])


@dataclass(frozen=True)
class TrainingData:
    """What a method may check about its training data before anything heavy loads: the
    dataset's name, its object words, its training captions and how many; once the encoder
    is loaded (a second check), ``dim`` is its embedding width (0 before)."""

    dataset: str
    objects: tuple[str, ...]
    captions: int
    dim: int = 0
    #: the dataset's own text-to-image generator (``GENERATORS`` name; empty: none, a diffusers model is needed)
    generator: str = ""
    #: the training captions themselves (empty: not given, checks that read them are skipped)
    texts: tuple[str, ...] = ()
    #: the dataset's entity aliases, (surface, word) pairs (``Corpus.aliases``)
    aliases: tuple[tuple[str, str], ...] = ()


@dataclass
class FitContext:
    """What ``fit`` may use besides the corpus.

    ``encoder`` embeds extra text (or, for methods that generate images, images) with the
    same frozen CLIP; ``cache`` is the embedding cache; ``device`` is a torch device string;
    ``seed`` seeds every random choice of the fit; ``progress`` wraps iterables with a bar;
    ``log`` takes one-line messages; ``cache_dir`` holds what outlives a run (generated
    images, tags); ``decoders`` is a ``DecoderCache`` through which identical decoder fits
    are shared.
    """

    encoder: Any = None
    cache: Any = None
    device: str = "cpu"
    seed: int = 0
    progress: Callable[..., Iterable] = default_progress
    log: Callable[[str], None] = field(default=lambda message: None)
    cache_dir: Path | None = None
    decoders: Any = None


class Captioner(ABC):
    """A text-only captioner.

    Subclasses set ``Config`` to a frozen dataclass with every hyper-parameter; the run record
    stores ``dataclasses.asdict(config)`` whole. Contract:

    * ``fit(corpus, ctx)`` trains on ``corpus`` only (no evaluation image, no image-caption
      pair). It must be deterministic for ``ctx.seed`` on a given device.
    * ``caption(image_embeddings)`` takes a float32 array or tensor of shape ``(B, D)``,
      L2-normalised rows in the encoder's joint space, and returns ``B`` strings, in order.
    * ``state_dict()`` returns everything needed to caption again (tensors, vocabularies,
      support memories); ``load_state_dict(state)`` on a fresh instance with the same config
      restores it so that ``caption`` gives the same strings.
    """

    Config: ClassVar[type] = type(None)
    #: The config field that ``bench run --noise`` sweeps, or None for methods without noise.
    noise_field: ClassVar[str | None] = None

    @classmethod
    def check_training(cls, config: Any, data: TrainingData) -> None:
        """Raise ``BenchError`` if ``config`` cannot train on ``data`` (an empty entity
        vocabulary, more neighbours than captions, attention heads that do not divide the
        embedding width). Called for every cell before the encoder loads (``data.dim`` 0) and
        again once it has (``data.dim`` set), so bad input is one line and not a failed fit.
        Most methods check nothing."""
        return None

    @classmethod
    def shared_decoder(cls, config: Any) -> str | None:
        """The identity of the decoder a fit with ``config`` may share, through the decoder
        cache, with fits of other methods on the same captions and seed (decap trains nonoise's
        decoder; viecap without its hard prompt trains capdec's), or None when it shares none.
        The local executor only uses it to keep two such fits from running side by side, where
        one would wait for the other's decoder."""
        return None

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.Config()
        if dataclasses.is_dataclass(self.Config) and not isinstance(config, self.Config):
            raise TypeError(f"{type(self).__name__} takes a {self.Config.__name__}, got {type(config).__name__}")
        self.config = config
        #: Anything ``fit`` measured (steps, losses, seconds); stored in the cell's record.
        self.fit_info: dict[str, Any] = {}

    @abstractmethod
    def fit(self, corpus: Corpus, ctx: FitContext) -> None:
        """Train on text only."""

    @abstractmethod
    def caption(self, image_embeddings: Any) -> list[str]:
        """Caption a batch of image embeddings ``(B, D)``; returns ``B`` strings."""

    def caption_images(self, image_embeddings: Any, images: Sequence[str | Path]) -> list[str]:
        """``caption`` with the images' files at hand, for methods that also look at pixels at
        test time (SynTIC with a detector tagger). The runner and ``bench caption`` call this;
        a method that needs only the embeddings does not override it."""
        return self.caption(image_embeddings)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything ``caption`` needs, as tensors and plain Python values."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    # -- persistence (shared by every method) -----------------------------------------------
    def save(self, directory: str | Path) -> list[Path]:
        """Write ``config.json``, ``state.pt`` (tensors) and ``state.json`` (the rest) to
        ``directory``, each atomically; returns the files written (``bench.state_io``)."""
        from bench.io import write_json_atomic
        from bench.state_io import save_state

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = save_state(self.state_dict(), directory / "state")
        config = write_json_atomic(directory / "config.json", {"class": type(self).__qualname__, "config": config_dict(self.config)})
        return [config, *files]

    @classmethod
    def load(cls, directory: str | Path, map_location: str = "cpu") -> Captioner:
        """Rebuild a fitted captioner from ``save``'s folder; loading runs no code from it."""
        from bench.config import build_dataclass, switched_off
        from bench.state_io import UnsafeCheckpoint, load_state

        directory = Path(directory)
        try:
            meta = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UnsafeCheckpoint(f"{directory / 'config.json'} is unreadable ({exc})") from None
        if not isinstance(meta, dict):
            raise UnsafeCheckpoint(f"{directory / 'config.json'} is not a JSON object")
        if meta.get("class", cls.__qualname__) != cls.__qualname__:
            raise UnsafeCheckpoint(f"{directory} holds a {meta['class']} fit, not a {cls.__qualname__}")
        saved = meta.get("config", {})
        if isinstance(saved, dict):  # a fit saved before its settings were refused beside an off switch: they did nothing
            saved = {k: v for k, v in saved.items() if k not in switched_off(cls.Config, saved)}
        config = build_dataclass(cls.Config, saved) if dataclasses.is_dataclass(cls.Config) else None
        obj = cls(config)
        obj.load_state_dict(load_state(directory / "state", map_location))
        return obj
