"""The frozen CLIP every stage shares: ``ClipEncoder`` and its settings.

Images are preprocessed with the model's own transforms, text is tokenised with the model's
own tokenizer (captions longer than its context are truncated, and the count is logged).
``encoder.id`` (the spec plus a hash of the weights) is part of every cache key and record.
``bench.encoders.create_encoder`` builds one from a spec.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.config import ADDED_LATER
from bench.errors import BenchError, ConfigError
from bench.progress import progress as default_progress


@dataclass(frozen=True)
class EncoderConfig:
    """Which CLIP embeds everything, and how (see the module doc for ``name``)."""

    name: str = "shapes"
    image_batch_size: int = 256
    text_batch_size: int = 1024
    loader_threads: int = 2
    #: The shapes world's CLIP only: the weight of its text-side attribute head
    #: (``bench.shapes.clip.ClipTrainConfig.text_attribute_weight``; None, the default recipe's,
    #: 100; 0, no such head). Another weight trains and caches another CLIP, with its own id, so
    #: its cells and fits are its own.
    shapes_text_attribute_weight: float | None = field(default=None, metadata=ADDED_LATER)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError("the encoder spec is empty; use shapes, NAME:TAG, NAME:/path/weights.pt or local-dir:/path")
        for name in ("image_batch_size", "text_batch_size", "loader_threads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"encoder.{name} must be >= 1, got {getattr(self, name)}")
        weight = self.shapes_text_attribute_weight
        if weight is None:
            return
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"encoder.shapes_text_attribute_weight must be a finite number >= 0, got {weight}")
        if self.name.strip() != "shapes":
            raise ConfigError(f"encoder.shapes_text_attribute_weight trains the shapes world's CLIP; the encoder is {self.name}")


def encoder_id(spec: str, weights_hash: str) -> str:
    """An encoder's id in records and cache keys: its spec and the start of its weights' SHA-256."""
    return f"{spec}@{weights_hash[:12]}"


def device_kind(device: str) -> str:
    """``cpu``, ``mps``, or ``cuda:`` and the GPU's model name (cards of one model compute alike)."""
    if not str(device).startswith("cuda"):
        return str(device).split(":")[0]
    import torch

    index = torch.device(device).index
    return f"cuda:{torch.cuda.get_device_name(index if index is not None else torch.cuda.current_device())}"


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
        return encoder_id(self.spec, self.weights_hash)

    def compute_id(self, modality: str) -> str:
        """What besides the weights decides this encoder's output bits for ``modality``: the device
        kind (a GPU's model name) and the batch size (part of embedding cache keys)."""
        batch = self.config.image_batch_size if modality == "image" else self.config.text_batch_size
        return f"{device_kind(self.device)}|batch {batch}"

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

    def count_truncated(self, texts: Sequence[str], tokens: Any = None) -> int:
        """How many texts have more BPE tokens than fit in the context (with start and end).
        With ``tokens`` (the texts, tokenised), only the rows that fill the whole context are
        looked at again: the rest have padding, so they fit."""
        inner = getattr(self.tokenizer, "encode", None)
        if inner is None:
            return 0
        limit = self.context_length - 2
        if tokens is not None:
            full = (tokens[:, -1] != 0).nonzero().flatten().tolist()
            return sum(1 for i in full if len(inner(texts[i])) > limit)
        return sum(1 for t in texts if len(inner(t)) > limit)

    def encode_tokens(self, tokens: Any) -> Any:
        """Raw forward on pre-tokenised tensors: unit-norm (B, D) float tensor."""
        import torch

        with torch.inference_mode():
            out = encode_text(self.model, tokens.to(self.device))
            return torch.nn.functional.normalize(out.float(), dim=-1)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None, progress: Callable | None = default_progress,
                     desc: str = "encoding captions") -> np.ndarray:
        batch_size = batch_size or self.config.text_batch_size
        out = np.empty((len(texts), self.dim), np.float32)
        starts = range(0, len(texts), batch_size)
        bar = progress(starts, total=len(starts), desc=desc, unit="batch") if progress else starts
        truncated = 0
        for start in bar:
            batch = texts[start:start + batch_size]
            tokens = self.tokenize(batch)
            truncated += self.count_truncated(batch, tokens)
            out[start:start + batch_size] = self.encode_tokens(tokens).cpu().numpy()
        if truncated:
            self.log(f"{truncated} of {len(texts)} captions are longer than the encoder's context "
                     f"({self.context_length} tokens) and were truncated")
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

        from PIL import Image

        batch_size = batch_size or self.config.image_batch_size

        def load(i: int) -> tuple[int, Any]:
            try:
                return i, self.load_image(paths[i])
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # the bomb guard: not an OSError
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


def truncates_exactly(model: Any) -> bool:
    """Whether ``encode_text`` may run on tokens cut after the batch's longest caption: a CLIP
    text tower with a causal mask that reads the end-of-text position (OpenAI's and open_clip's
    CLIP). Each position then sees only itself and what comes before it, so the positions after
    the last end-of-text token change nothing that is read."""
    import torch

    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "text_projection")
    mask = getattr(model, "attn_mask", None)
    if not all(hasattr(model, name) for name in needed) or not isinstance(mask, torch.Tensor):
        return False
    if getattr(model, "text_pool_type", "argmax") not in ("argmax", "eos"):
        return False
    causal = torch.full_like(mask, float("-inf")).triu(1)
    return bool(torch.equal(mask, causal))


def encode_text(model: Any, tokens: Any) -> Any:
    """``model.encode_text(tokens)``, on the tokens up to the batch's longest caption when that
    gives the same features (:func:`truncates_exactly`): a caption of 13 tokens in a context of
    77 costs a sixth of the compute. Padding is token 0, as in CLIP's tokenizer."""
    if not truncates_exactly(model):
        return model.encode_text(tokens)
    from open_clip.model import text_global_pool

    length = max(1, int((tokens != 0).sum(dim=1).max()))
    tokens = tokens[:, :length]
    cast = model.transformer.get_cast_dtype()
    x = model.token_embedding(tokens).to(cast) + model.positional_embedding[:length].to(cast)
    x = model.ln_final(model.transformer(x, attn_mask=model.attn_mask[:length, :length]))
    x = text_global_pool(x, tokens, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    projection = model.text_projection
    return projection(x) if callable(projection) and not hasattr(projection, "shape") else x @ projection
