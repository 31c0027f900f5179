"""Encoders: the only place that touches pixels or raw text with CLIP.

``create_encoder(spec)`` builds a frozen CLIP from one of:

* ``shapes``: the embedded world's own CLIP (built by ``bench prepare shapes`` when missing);
* ``NAME:TAG``: an open_clip model and pretrained tag, e.g. ``ViT-B-32:openai`` (weights come
  from open_clip's download cache; offline, a missing download is a clear error);
* ``NAME:/path/to/checkpoint.pt``: an open_clip architecture with weights from a local file;
* ``local-dir:/path``: a folder with ``open_clip_config.json`` and the weights beside it.

Images are preprocessed with the model's own transforms, text is tokenised with the model's
own tokenizer (captions longer than its context are truncated, and the count is logged).
``encoder.id`` (the spec plus a hash of the weights) is part of every cache key and record.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchError
from bench.io import sha256_file
from bench.progress import progress as default_progress

WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


@dataclass(frozen=True)
class EncoderConfig:
    """Which CLIP embeds everything, and how (see the module doc for ``name``)."""

    name: str = "shapes"
    image_batch_size: int = 256
    text_batch_size: int = 1024
    loader_threads: int = 2


class ClipEncoder:
    """A frozen open_clip model with its transforms and tokenizer. Outputs are unit-norm float32."""

    def __init__(self, model: Any, preprocess: Any, tokenizer: Any, spec: str, weights_hash: str,
                 device: str = "cpu", config: EncoderConfig | None = None, log: Callable[[str], None] = print) -> None:
        self.model = model.eval().to(device)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.spec = spec
        self.weights_hash = weights_hash
        self.device = device
        self.config = config or EncoderConfig(name=spec)
        self.log = log
        #: what is known about the weights (the shapes CLIP's manifest and model card), for reports
        self.card: dict[str, Any] = {}

    @property
    def id(self) -> str:
        return f"{self.spec}@{self.weights_hash[:12]}"

    @property
    def dim(self) -> int:
        return int(self.model.text_projection.shape[1]) if getattr(self.model, "text_projection", None) is not None \
            else int(self.model.visual.output_dim)

    @property
    def context_length(self) -> int:
        return int(getattr(self.tokenizer, "context_length", 77))

    # -- text -------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> Any:
        return self.tokenizer(list(texts))

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts have more BPE tokens than fit in the context (with start and end)."""
        inner = getattr(self.tokenizer, "encode", None)
        if inner is None:
            return 0
        limit = self.context_length - 2
        return sum(1 for t in texts if len(inner(t)) > limit)

    def encode_tokens(self, tokens: Any) -> Any:
        """Raw forward on pre-tokenised tensors: unit-norm (B, D) float tensor."""
        import torch

        with torch.inference_mode():
            out = self.model.encode_text(tokens.to(self.device))
            return torch.nn.functional.normalize(out.float(), dim=-1)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None, progress: Callable | None = default_progress,
                     desc: str = "encoding captions") -> np.ndarray:
        batch_size = batch_size or self.config.text_batch_size
        truncated = self.count_truncated(texts)
        if truncated:
            self.log(f"{truncated} of {len(texts)} captions are longer than the encoder's context "
                     f"({self.context_length} tokens) and were truncated")
        out = np.empty((len(texts), self.dim), np.float32)
        starts = range(0, len(texts), batch_size)
        bar = progress(starts, total=len(starts), desc=desc, unit="batch") if progress else starts
        for start in bar:
            out[start:start + batch_size] = self.encode_tokens(self.tokenize(texts[start:start + batch_size])).cpu().numpy()
        return out

    # -- images -----------------------------------------------------------------------------
    def encode_pixels(self, batch: Any) -> Any:
        """Raw forward on preprocessed image tensors: unit-norm (B, D) float tensor."""
        import torch

        with torch.inference_mode():
            out = self.model.encode_image(batch.to(self.device))
            return torch.nn.functional.normalize(out.float(), dim=-1)

    def _split_transforms(self) -> tuple[list[Any], list[Any]] | None:
        """The model's transforms cut at ToTensor: (per-image PIL steps, batch tensor steps).

        Applying the tensor half (to-tensor, normalise) once per batch instead of once per
        image gives the same numbers faster. None when the pipeline has another shape (then
        every image goes through the whole pipeline on its own).
        """
        if not hasattr(self, "_split"):
            steps = list(getattr(self.preprocess, "transforms", []))
            cut = next((i for i, t in enumerate(steps) if type(t).__name__ in ("ToTensor", "MaybeToTensor")), None)
            tail_ok = cut is not None and all(type(t).__name__ == "Normalize" for t in steps[cut + 1:])
            self._split = (steps[:cut], steps[cut + 1:]) if tail_ok else None
        return self._split

    def load_image(self, path: str | Path) -> Any:
        """One image, preprocessed: a (C, H, W) float tensor, or with the split pipeline an
        (H, W, C) uint8 array that ``batch_images`` finishes."""
        import numpy as np
        from PIL import Image

        with Image.open(path) as img:
            img = img.convert("RGB")
            split = self._split_transforms()
            if split is None:
                return self.preprocess(img)
            for step in split[0]:
                img = step(img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8)

    def batch_images(self, loaded: list[Any]) -> Any:
        """Stack what ``load_image`` returned into a normalised (B, C, H, W) batch."""
        import numpy as np
        import torch

        split = self._split_transforms()
        if split is None or isinstance(loaded[0], torch.Tensor):
            return torch.stack(loaded)
        batch = torch.from_numpy(np.stack(loaded)).permute(0, 3, 1, 2).float().div_(255.0)
        for step in split[1]:
            batch = step(batch)
        return batch

    def encode_images(self, paths: Sequence[str | Path], batch_size: int | None = None,
                      progress: Callable | None = default_progress, desc: str = "encoding images",
                      skip_unreadable: bool = False) -> tuple[np.ndarray, list[int]]:
        """Embed image files; returns (embeddings of the readable ones, indices that were readable).

        Files are decoded and preprocessed by a thread pool while the model runs on the
        previous batch. An unreadable file fails the call unless ``skip_unreadable``.
        """

        batch_size = batch_size or self.config.image_batch_size

        def load(i: int) -> tuple[int, Any]:
            try:
                return i, self.load_image(paths[i])
            except (OSError, ValueError, SyntaxError) as exc:
                if not skip_unreadable:
                    raise BenchError(f"cannot read image {paths[i]}: {exc}") from None
                return i, None

        out: list[np.ndarray] = []
        kept: list[int] = []
        starts = list(range(0, len(paths), batch_size))
        bar = progress(starts, total=len(starts), desc=desc, unit="batch") if progress else starts
        with ThreadPoolExecutor(max_workers=max(1, self.config.loader_threads)) as pool:
            pending = pool.map(lambda s: [load(i) for i in range(s, min(s + batch_size, len(paths)))], starts)
            for _, loaded in zip(bar, pending):
                good = [(i, x) for i, x in loaded if x is not None]
                if not good:
                    continue
                kept.extend(i for i, _ in good)
                out.append(self.encode_pixels(self.batch_images([x for _, x in good])).cpu().numpy())
        dim = self.dim
        return (np.concatenate(out) if out else np.empty((0, dim), np.float32)), kept


# -- creation -------------------------------------------------------------------------------


def _state_hash(model: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _check_device(device: str) -> None:
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
    _check_device(device)
    spec = config.name.strip()
    if spec == "shapes":
        from bench.config import default_cache_dir
        from bench.plugins import create_dataset

        manifest = create_dataset("shapes", cache_dir=cache_dir or default_cache_dir()).prepare(log=lambda m: None)
        from bench.shapes.clip import MODEL_NAME, register_model_configs

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
