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
from pathlib import Path
from typing import Any

from bench.clip_encoder import ClipEncoder, EncoderConfig
from bench.errors import BenchError
from bench.io import sha256_file

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")

__all__ = ["ClipEncoder", "EncoderConfig", "create_encoder", "check_device"]


# -- creation -------------------------------------------------------------------------------


def _state_hash(model: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def check_device(device: str) -> None:
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"--device {device} was asked for, but CUDA is not available on this machine; use --device cpu")


def create_encoder(config: EncoderConfig | str = "shapes", device: str = "cpu", cache_dir: Path | None = None,
                   log: Callable[[str], None] = print) -> ClipEncoder:
    """Build the encoder named by ``config.name`` (see the module doc); bad names fail in one line."""
    import logging

    import open_clip

    if isinstance(config, str):
        config = EncoderConfig(name=config)
    check_device(device)
    spec = config.name.strip()
    if spec == "shapes":
        from bench.config import default_cache_dir
        from bench.shapes.clip import MODEL_NAME, register_model_configs
        from bench.shapes.prepare import prepare_world

        manifest = prepare_world(cache_dir or default_cache_dir(), log=lambda m: None)

        register_model_configs()
        model, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=manifest["checkpoint"], device=device)
        encoder = ClipEncoder(model, preprocess, open_clip.get_tokenizer(MODEL_NAME), "shapes", manifest["sha256"], device, config, log)
        encoder.card = {k: manifest[k] for k in ("key", "model", "world_key", "train", "training", "model_card") if k in manifest}
        return encoder

    if spec.startswith("local-dir:"):
        folder = Path(spec.split(":", 1)[1]).expanduser()
        if not folder.is_dir():
            raise BenchError(f"encoder {spec}: folder {folder} does not exist")
        model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", device=device)
        weights = next((p for p in sorted(folder.iterdir()) if p.suffix in WEIGHT_SUFFIXES), None)
        digest = sha256_file(weights) if weights else _state_hash(model)
        return ClipEncoder(model, preprocess, open_clip.get_tokenizer(f"local-dir:{folder}"), spec, digest, device, config, log)

    name, sep, source = spec.partition(":")
    if not sep or not name or not source:
        raise BenchError(f"encoder {spec!r} must be 'shapes', NAME:TAG (e.g. ViT-B-32:openai), NAME:/path/to/weights.pt "
                         "or local-dir:/path")
    models = open_clip.list_models()
    if name not in models:
        close = difflib.get_close_matches(name, models, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(models[:12])}, ... ({len(models)} in all)"
        raise BenchError(f"unknown open_clip model {name!r}{hint}")
    is_path = os.sep in source or source.endswith(WEIGHT_SUFFIXES) or source.startswith(("~", "."))
    if is_path:
        path = Path(source).expanduser()
        if not path.is_file():
            raise BenchError(f"encoder {spec}: checkpoint file {path} does not exist")
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=str(path), device=device)
        except (RuntimeError, KeyError, ValueError) as exc:
            raise BenchError(f"encoder {spec}: {path} does not hold {name} weights ({str(exc).splitlines()[0][:200]})") from None
        digest = sha256_file(path)
    else:
        tags = open_clip.list_pretrained_tags_by_model(name)
        if source not in tags:
            raise BenchError(f"unknown pretrained tag {source!r} for {name}; valid tags: {', '.join(tags) or '(none)'}")
        previous = logging.root.level
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=source, device=device,
                                                                         cache_dir=str(cache_dir / "open_clip") if cache_dir else None)
        except Exception as exc:  # hub errors come in many types; all mean "not here"
            raise BenchError(
                f"weights {spec} cannot be fetched (offline or not cached: {type(exc).__name__}); download them on a "
                f"machine with network and pass the file instead: --encoder {name}:/path/to/open_clip_model.safetensors"
            ) from None
        finally:
            logging.root.setLevel(previous)
        digest = _state_hash(model)
    return ClipEncoder(model, preprocess, open_clip.get_tokenizer(name), spec, digest, device, config, log)
