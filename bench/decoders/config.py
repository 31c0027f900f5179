"""The decoder's config and the presets of its two kinds.

``kind`` is ``transformer`` (a small decoder trained from scratch on the CLIP BPE vocabulary the
corpus uses, DeCap / SynTIC style) or ``gpt2`` (a GPT-2 prefix decoder, ClipCap / CapDec style).
``mapper`` turns each conditioning vector into ``prefix_length`` prefix vectors: ``linear``,
``mlp`` or ``transformer`` (``bench.decoders.mappers``), with either kind. ``PRESETS`` holds each
kind's defaults from its paper, scaled where noted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from bench.config import ADDED_LATER
from bench.errors import ConfigError

#: the decoder settings that decoding alone reads: a fit is the same whatever they are
DECODE_ONLY = ("beam_size", "decode_batch_size", "length_penalty")


@dataclass(frozen=True)
class DecoderConfig:
    """A decoder and how it is trained and searched."""

    kind: Literal["transformer", "gpt2"] = "transformer"
    #: 2 layers, 2 epochs: at the cost of 4 layers over 1 epoch, the lower training loss for every
    #: noise level measured (capdec σ² 0.016: 1.37 -> 1.15; noise-free: 0.98 -> 0.76); 4 layers over
    #: 2 epochs gave no lower loss (1.17 / 0.77) at twice the cost. One epoch left the noisy decoder
    #: far from converged (README, "How long the decoders train")
    layers: int = 2
    heads: int = 4
    width: int = 128
    #: The feed-forward layers' width as a multiple of ``width``. 2, not GPT-2's 4: at 4 the
    #: decoder fits cost 1.4x as much and end at the same training loss (nonoise 0.83, capdec
    #: 1.20-1.21 over seven seeds), which the 10-minute default cannot afford (README, "How long the
    #: decoders train"). A GPT-2 built from config gets it as ``n_inner``; the GPT-2 presets keep 4.
    mlp_ratio: int = 2
    #: 8 prefix vectors, not DeCap's 1 (CapDec's GPT-2 reads 40): at 1.35x a fit's cost the noisy
    #: decoder converges (capdec σ² 0.016: loss 1.11 -> 1.05, seven-seed CIDEr spread 10.2 -> 3.0)
    #: where doubling the epochs costs 2x; README "The one-prefix default"
    prefix_length: int = 8
    mapper: Literal["linear", "mlp", "transformer"] = "linear"
    mapper_layers: int = field(default=2, metadata=ADDED_LATER)  # the transformer mapper's depth (ClipCap, ViECap: 8)
    #: how the mapper's first linear map starts: ``zero`` (``mappers.zero_first_map``), or ``normal``,
    #: the network's own (std 0.02 as every matrix of the from-scratch decoder; PyTorch's for the
    #: GPT-2 presets' mappers, as their papers'). Zero: a direction of the embedding space that no
    #: training caption moves along maps to nothing rather than to each seed's random draw; nonoise's
    #: in-domain seed spread 11.5 -> 6.6 over 14 seeds at the same loss and cost (README, "Results on
    #: the embedded default"). Always in config dicts: the decoders it gives are not the earlier ones
    mapper_init: Literal["normal", "zero"] = "zero"
    gpt2_path: str = ""  # a local pretrained GPT-2 folder; empty: GPT-2 from config, random weights
    max_length: int = 32
    epochs: float = 2.0
    batch_size: int = 128
    #: 2e-3: the smallest rate at which the 4-layer decoder's training loss stopped falling within one
    #: epoch on shapes-coco (final loss 1.11-1.17 at 1e-3, 0.97-1.00 at 2e-3 and at 3e-3; README)
    lr: float = 2e-3
    warmup: int = 100  # linear warm-up steps, at most a tenth of the fit's steps (the default's 314: 31); 0: none
    weight_decay: float = 0.01
    dropout: float = 0.0  # 0.1 measured slower and worse at one epoch (README); capdec's noise is its regulariser
    grad_clip: float = 1.0
    length_split: int = 4  # each batch runs as this many length-sorted pieces (same update, less padding: 4 is 9% faster than 2)
    bucket_pool: int = 1  # batches per length-sorted pool; 1: plain random batches (see the module doc)
    #: the decay of an exponential moving average of the weights that replaces them after training
    #: (0: none, the default); measured for the seed spread, README "How long the decoders train"
    ema: float = field(default=0.0, metadata=ADDED_LATER)
    beam_size: int = 1
    decode_batch_size: int = 256
    length_penalty: float = 1.0

    def __post_init__(self) -> None:
        for name in ("layers", "heads", "width", "mlp_ratio", "prefix_length", "mapper_layers", "max_length", "batch_size", "beam_size", "decode_batch_size",
                     "bucket_pool", "length_split"):
            if getattr(self, name) < 1:
                raise ConfigError(f"decoder.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "lr", "weight_decay", "grad_clip", "dropout", "length_penalty", "ema"):
            if not math.isfinite(getattr(self, name)):
                raise ConfigError(f"decoder.{name} must be a finite number, got {getattr(self, name)}")
        if self.lr * self.weight_decay >= 1:  # AdamW scales every decayed weight by (1 - lr * weight_decay) each step
            raise ConfigError(f"decoder.lr x decoder.weight_decay must be < 1 (AdamW multiplies the weights by 1 - their product "
                              f"each step; at 1 or more they vanish or flip sign), got {self.lr:g} x {self.weight_decay:g}")
        if self.max_length < 2:
            raise ConfigError(f"decoder.max_length must be >= 2 (a caption token and the end token), got {self.max_length}")
        if self.epochs <= 0 or self.lr <= 0:
            raise ConfigError(f"decoder.epochs and decoder.lr must be > 0, got {self.epochs} and {self.lr}")
        for name in ("warmup", "weight_decay", "grad_clip"):  # grad_clip 0: no clipping
            if getattr(self, name) < 0:
                raise ConfigError(f"decoder.{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"decoder.ema must be in [0, 1) (the moving average's decay; 0: none), got {self.ema}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"decoder.dropout must be in [0, 1), got {self.dropout}")
        if self.mapper != "transformer" and self.mapper_layers != 2:
            raise ConfigError(f"decoder.mapper_layers={self.mapper_layers} (set, or from a preset such as viecap's) is the "
                              f"transformer mapper's depth, but decoder.mapper is {self.mapper!r}: set decoder.mapper_layers=2 "
                              "with it, or keep decoder.mapper=transformer")
        if self.width % self.heads:
            raise ConfigError(f"decoder.width ({self.width}) must be divisible by decoder.heads ({self.heads})")
        if self.gpt2_path and self.kind != "gpt2":  # accepted and ignored otherwise: the transformer trains from scratch
            raise ConfigError("decoder.gpt2_path loads a pretrained GPT-2: it needs decoder.kind=gpt2 (--decoder gpt2)")

    def for_training(self) -> DecoderConfig:
        """This config with the settings that only decoding reads (``DECODE_ONLY``) at their
        defaults: what a decoder fit depends on, so that a sweep of the beam width shares one fit
        (and a default config's fit key stays what it was)."""
        return replace(self, **{name: getattr(DecoderConfig, name) for name in DECODE_ONLY})

    def check_resources(self) -> None:
        """The files this config names exist (run before anything loads: a missing folder is bad
        input, not a failed cell), and a pretrained GPT-2's shape is the one the config states:
        its layers, heads, width and feed-forward width come from the folder, and a record must
        not name others."""
        if self.gpt2_path:
            folder = check_model_folder(self.gpt2_path)
            check_gpt2_shape(self, folder)

    def resource_folders(self) -> list[Path]:
        """The model folder whose content a fit depends on (``bench.grid.resources_fingerprint``)."""
        return [Path(self.gpt2_path).expanduser()] if self.gpt2_path else []


def check_gpt2_shape(config: DecoderConfig, folder: Path) -> None:
    """Refuse a config whose layers / heads / width / mlp_ratio differ from the GPT-2 in ``folder``
    (read from its config.json; nothing is loaded)."""
    import json

    from bench.errors import BenchError

    try:
        theirs = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        width = int(theirs["n_embd"])
        shape = {"layers": int(theirs["n_layer"]), "heads": int(theirs["n_head"]), "width": width,
                 "mlp_ratio": (int(theirs["n_inner"]) if theirs.get("n_inner") else 4 * width) / width}
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
        raise BenchError(f"{folder / 'config.json'} is not a GPT-2 config ({type(exc).__name__}: {exc})") from None
    wrong = [f"decoder.{k}={getattr(config, k)} (the folder's: {v:g})" for k, v in shape.items() if getattr(config, k) != v]
    if wrong:
        raise ConfigError(f"the GPT-2 in {folder} is not the shape the config states: {', '.join(wrong)}; "
                          "set them to the folder's")
    ids, vocab_size = tokenizer_ids(folder), theirs.get("vocab_size")
    if isinstance(vocab_size, int) and ids > vocab_size:
        raise ConfigError(f"the tokenizer in {folder} has a vocabulary of ids up to {ids - 1}, but its GPT-2 has {vocab_size} "
                          "token embeddings: the tokenizer and the model do not belong together")
    positions = theirs.get("n_positions", theirs.get("n_ctx"))
    needed = config.prefix_length + config.max_length + 1  # a method's prompt or second input needs more (checked at fit)
    if isinstance(positions, int) and positions < needed:
        raise ConfigError(f"the GPT-2 in {folder} has {positions} positions; decoder.prefix_length={config.prefix_length} and "
                          f"decoder.max_length={config.max_length} need at least {needed}: lower decoder.max_length")


def tokenizer_ids(folder: Path) -> int:
    """One past the largest id of the base vocabulary of the tokenizer saved in ``folder``
    (``tokenizer.json``, else ``vocab.json`` and ``merges.txt``), read as JSON, nothing loaded.
    Added tokens are left out (a ``<pad>`` added without resizing the model is common, and
    harmless while no caption holds it; the ids the captions really use are checked where the
    decoder is built). A folder without a tokenizer is refused: transformers would give it an
    empty one, under which every caption encodes to nothing."""
    import json

    from bench.errors import BenchError

    try:
        if (folder / "tokenizer.json").is_file():
            data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
            vocab = (data.get("model") or {}).get("vocab") or {}
            ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
        elif (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            ids = list(json.loads((folder / "vocab.json").read_text(encoding="utf-8")).values())
        else:
            raise BenchError(f"{folder} holds no tokenizer (tokenizer.json, or vocab.json and merges.txt)")
        return max((int(i) for i in ids), default=-1) + 1
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise BenchError(f"the tokenizer in {folder} is unreadable ({type(exc).__name__}: {exc})") from None


def check_model_folder(path: str) -> Path:
    """A local transformers folder, or a one-line error saying what is wrong with it."""
    from bench.errors import BenchError

    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise BenchError(f"GPT-2 folder {folder} does not exist")
    if not (folder / "config.json").is_file():
        raise BenchError(f"{folder} is not a transformers model folder (no config.json)")
    return folder


PRESETS: dict[str, DecoderConfig] = {
    # DeCap's shape (trained from scratch, prefix vectors from a linear map; DeCap has 4 layers and
    # one prefix vector), here 2 layers of width 128 over 2 epochs so that the embedded default runs
    # on a laptop CPU, with 8 prefix vectors and a zero-initialised map (see the fields).
    "transformer": DecoderConfig(),
    # CapDec / ClipCap: GPT-2 124M, 10 prefix vectors from an MLP, lr 2e-5 with warm-up, beam 5
    # (these three presets keep their papers' mapper initialisation: PyTorch's own).
    "gpt2": DecoderConfig(kind="gpt2", mapper_init="normal", layers=12, heads=12, width=768, mlp_ratio=4, prefix_length=10, mapper="mlp",
                          lr=2e-5, warmup=5000, epochs=10, batch_size=40, beam_size=5, dropout=0.1),
    # ViECap (train_coco.sh, main.py): GPT-2 124M, 10 prefix vectors from an 8-layer transformer
    # mapper, lr 2e-5 with 5,000 warm-up steps, batch 80, 15 epochs, beam 5.
    "viecap": DecoderConfig(kind="gpt2", mapper_init="normal", layers=12, heads=12, width=768, mlp_ratio=4, prefix_length=10, mapper="transformer",
                            mapper_layers=8, lr=2e-5, warmup=5000, epochs=15, batch_size=80, beam_size=5, dropout=0.1),
    # IFCap: ViECap's decoder, trained 5 epochs on COCO (its README's scripts).
    "ifcap": DecoderConfig(kind="gpt2", mapper_init="normal", layers=12, heads=12, width=768, mlp_ratio=4, prefix_length=10, mapper="transformer",
                           mapper_layers=8, lr=2e-5, warmup=5000, epochs=5, batch_size=80, beam_size=5, dropout=0.1),
}


def preset(name: str, **overrides: Any) -> DecoderConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown decoder {name!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)
