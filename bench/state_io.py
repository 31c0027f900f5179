"""Saving a state (nested dicts and lists of tensors and plain values) so that loading it can
never run code.

A state is split in two files: ``<stem>.pt`` holds the tensors only, as a flat ``{name: tensor}``
dict that ``torch.load(weights_only=True)`` reads (its unpickler refuses anything but tensors and
plain containers: a ``__reduce__`` payload is an error, not a call), and ``<stem>.json`` holds
everything else, with each tensor replaced by ``{"__tensor__": name}``. Tuples come back as
lists; a value that is neither a tensor nor JSON (a NumPy array, a dtype, an object) is refused
at save time, so nothing is saved that could not be loaded the same way.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import torch_save_atomic, write_text_atomic

TENSOR_KEY = "__tensor__"


class UnsafeCheckpoint(BenchError):
    """A checkpoint file holds more than tensors (or is not a checkpoint at all)."""


def split_state(state: Any) -> tuple[Any, dict[str, Any]]:
    """(JSON skeleton, flat tensors): every tensor moved out and named by its path."""
    import torch

    tensors: dict[str, Any] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().cpu()
            return {TENSOR_KEY: path}
        if isinstance(value, dict):
            if not all(isinstance(k, str) for k in value):
                raise TypeError(f"state at {path or '/'}: dict keys must be strings")
            if TENSOR_KEY in value:
                raise TypeError(f"state at {path or '/'}: {TENSOR_KEY!r} is a reserved key")
            return {k: walk(v, f"{path}/{k}") for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v, f"{path}/{i}") for i, v in enumerate(value)]
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                raise TypeError(f"state at {path or '/'}: {value} is not a finite number")
            return value
        raise TypeError(f"state at {path or '/'}: {type(value).__name__} is neither a tensor nor a JSON value")

    return walk(state, ""), tensors


def join_state(skeleton: Any, tensors: dict[str, Any]) -> Any:
    """The inverse of :func:`split_state`."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {TENSOR_KEY}:
            name = skeleton[TENSOR_KEY]
            if name not in tensors:
                raise UnsafeCheckpoint(f"the state names a tensor {name!r} that its tensor file does not hold")
            return tensors[name]
        return {k: join_state(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [join_state(v, tensors) for v in skeleton]
    return skeleton


def save_state(state: Any, stem: Path) -> list[Path]:
    """Write ``<stem>.pt`` and ``<stem>.json`` atomically; returns both paths."""
    skeleton, tensors = split_state(state)
    stem = Path(stem)
    pt, js = stem.with_suffix(".pt"), stem.with_suffix(".json")
    torch_save_atomic(tensors, pt)
    write_text_atomic(js, json.dumps(skeleton, ensure_ascii=False))
    return [pt, js]


def load_tensors(path: Path, map_location: str = "cpu") -> dict[str, Any]:
    """A flat ``{name: tensor}`` file, read with ``weights_only=True``; anything else is refused."""
    import pickle

    import torch

    try:
        tensors = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnsafeCheckpoint(f"{path} holds more than tensors; refusing to load it ({first[:160]})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise UnsafeCheckpoint(f"{path} is not a readable tensor file ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise UnsafeCheckpoint(f"{path} is not a flat dict of tensors")
    return tensors


def load_state(stem: Path, map_location: str = "cpu") -> Any:
    """Read what :func:`save_state` wrote."""
    stem = Path(stem)
    try:
        skeleton = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UnsafeCheckpoint(f"{stem.with_suffix('.json')} is unreadable ({exc})") from None
    return join_state(skeleton, load_tensors(stem.with_suffix(".pt"), map_location))
