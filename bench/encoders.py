"""Encoders: the only place that touches pixels or raw text with CLIP.

``create_encoder(spec)`` builds a frozen CLIP from one of:

* ``shapes``: the embedded world's own CLIP (built by ``bench prepare shapes`` when missing);
* ``NAME:TAG``: an open_clip model and pretrained tag, e.g. ``ViT-B-32:openai`` (weights come
  from open_clip's download cache; offline, a missing download is a clear error);
* ``NAME:/path/to/checkpoint.pt``: an open_clip architecture with weights from a local file;
* ``local-dir:/path``: a folder with ``open_clip_config.json`` and the weights beside it.

The encoder itself is ``bench.clip_encoder.ClipEncoder``: images through the model's own
transforms, text through its own tokenizer; ``encoder.id`` (the spec plus a hash of the
weights) is part of every cache key and record.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.cache import fingerprint
from bench.clip_encoder import ClipEncoder, EncoderConfig
from bench.errors import BenchError
from bench.io import sha256_file

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

__all__ = ["ClipEncoder", "EncoderConfig", "EncoderSpec", "check_device", "create_encoder", "parse_encoder_spec"]


# -- creation -------------------------------------------------------------------------------


def _state_hash(model: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` that this machine has, or a one-line error (before any model loads)."""
    import re

    import torch

    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:[0-9]+)?", device):
        raise BenchError(f"--device must be cpu, cuda or cuda:N, got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {device} was asked for, but CUDA is not available on this machine; use --device cpu")
    if device.startswith("cuda:") and int(device.split(":")[1]) >= torch.cuda.device_count():
        raise BenchError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), numbered from 0")


@dataclass(frozen=True)
class EncoderSpec:
    """A parsed ``--encoder`` value: ``kind`` is shapes, local-dir, file or tag."""

    spec: str
    kind: str
    name: str = ""  # the open_clip architecture (file, tag)
    source: str = ""  # the folder, the weights file or the pretrained tag


def parse_encoder_spec(spec: str) -> EncoderSpec:
    """Check an encoder spec without loading any weights: its syntax, the open_clip model and
    tag names, and that named files and folders exist. Bad input is a one-line error."""
    import open_clip

    spec = spec.strip()
    if spec == "shapes":
        return EncoderSpec(spec, "shapes")
    if spec.startswith("local-dir:"):
        folder = Path(spec.split(":", 1)[1]).expanduser()
        if not folder.is_dir():
            raise BenchError(f"encoder {spec}: {folder} " + ("is a file, not a model folder" if folder.exists() else "does not exist"))
        if not (folder / "open_clip_config.json").is_file():
            raise BenchError(f"encoder {spec}: {folder} has no open_clip_config.json (an open_clip model folder has its "
                             "config and weights)")
        return EncoderSpec(spec, "local-dir", source=str(folder))
    name, sep, source = spec.partition(":")
    if not sep or not name or not source:
        raise BenchError(f"encoder {spec!r} must be 'shapes', NAME:TAG (e.g. ViT-B-32:openai), NAME:/path/to/weights.pt "
                         "or local-dir:/path")
    models = open_clip.list_models()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(models[:12])}, ... ({len(models)} in all)"
        raise BenchError(f"unknown open_clip model {name!r}{hint}")
    if os.sep in source or source.endswith(WEIGHT_SUFFIXES) or source.startswith(("~", ".")):
        path = Path(source).expanduser()
        if path.is_dir():
            raise BenchError(f"encoder {spec}: {path} is a folder, not a weights file (for an open_clip folder use local-dir:{path})")
        if not path.is_file():
            raise BenchError(f"encoder {spec}: checkpoint file {path} does not exist")
        return EncoderSpec(spec, "file", name, str(path))
    tags = open_clip.list_pretrained_tags_by_model(name)
    if source not in tags:
        raise BenchError(f"unknown pretrained tag {source!r} for {name}; valid tags: {', '.join(tags) or '(none)'}")
    return EncoderSpec(spec, "tag", name, source)


def _load_model(spec: EncoderSpec, model_name: str, device: str, **kwargs: Any) -> tuple[Any, Any]:
    """open_clip's own loading path (``weights_only`` loading, never code from the file); any
    failure is a one-line error naming the spec."""
    import open_clip

    try:
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, device=device, weights_only=True, **kwargs)
    except Exception as exc:  # a wrong file fails in many ways (pickle, shapes, JSON, format); all mean the same
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"encoder {spec.spec}: cannot load its weights ({type(exc).__name__}: {detail})") from None
    return model, preprocess


def create_encoder(config: EncoderConfig | str = "shapes", device: str = "cpu", cache_dir: Path | None = None,
                   log: Callable[[str], None] = print) -> ClipEncoder:
    """Build the encoder named by ``config.name`` (see the module doc); bad names fail in one line."""
    import logging

    import open_clip

    if isinstance(config, str):
        config = EncoderConfig(name=config)
    check_device(device)
    spec = parse_encoder_spec(config.name)
    if spec.kind == "shapes":
        from bench.config import default_cache_dir
        from bench.shapes.clip import MODEL_NAME, ClipTrainConfig, register_model_configs
        from bench.shapes.prepare import prepare_world

        weight = config.shapes_text_attribute_weight
        clip = ClipTrainConfig(text_attribute_weight=weight) if weight is not None else None
        manifest = prepare_world(cache_dir or default_cache_dir(), clip=clip, log=log)
        register_model_configs()
        model, preprocess = _load_model(spec, MODEL_NAME, device, pretrained=manifest["checkpoint"])
        encoder = ClipEncoder(model, preprocess, open_clip.get_tokenizer(MODEL_NAME), "shapes", manifest["sha256"], device, config, log)
        encoder.card = {k: manifest[k] for k in ("key", "model", "world_key", "train", "training", "model_card") if k in manifest}
        return encoder
    if spec.kind == "local-dir":
        from open_clip.factory import _find_checkpoint_in_dir

        model, preprocess = _load_model(spec, spec.spec, device)
        weights = _find_checkpoint_in_dir(Path(spec.source))  # the file open_clip itself loaded
        digest = sha256_file(weights) if weights else _state_hash(model)
        # the config decides the preprocessing (image size, mean, std) and the tokenizer as much as
        # the weights decide the towers: an edited config is another encoder
        config_file = Path(spec.source) / "open_clip_config.json"
        digest = fingerprint([digest, sha256_file(config_file)])
        return ClipEncoder(model, preprocess, open_clip.get_tokenizer(spec.spec), spec.spec, digest, device, config, log)
    if spec.kind == "file":
        model, preprocess = _load_model(spec, spec.name, device, pretrained=spec.source)
        return ClipEncoder(model, preprocess, open_clip.get_tokenizer(spec.name), spec.spec, sha256_file(spec.source), device,
                           config, log)
    previous = logging.root.level
    logging.disable(logging.ERROR)  # open_clip logs its own failed download; ours is the one line the user sees
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(spec.name, pretrained=spec.source, device=device,
                                                                     cache_dir=str(cache_dir / "open_clip") if cache_dir else None)
    except Exception as exc:  # hub errors come in many types; all mean "not here"
        raise BenchError(
            f"weights {spec.spec} cannot be fetched (offline or not cached: {type(exc).__name__}); download them on a "
            f"machine with network and pass the file instead: --encoder {spec.name}:/path/to/open_clip_model.safetensors"
        ) from None
    finally:
        logging.disable(logging.NOTSET)
        logging.root.setLevel(previous)
    return ClipEncoder(model, preprocess, open_clip.get_tokenizer(spec.name), spec.spec, _state_hash(model), device, config, log)
