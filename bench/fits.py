"""Fitted methods on disk: ``RUN_DIR/checkpoints/<fit key>/``.

A fit folder holds ``config.json`` (the method's class and config), ``state.pt`` (its state) and
``fit.json`` (the registry name it was fitted as, the encoder spec and id, what training
measured). ``fit.json`` is written last, so it marks the fit complete: the runner (to reuse a
fit) and ``bench caption`` (to use one) ask the same question, :func:`fit_problem`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import write_json_atomic

FIT_FILES = ("config.json", "state.pt", "fit.json")
META_FILE = "fit.json"


def fit_problem(folder: Path) -> str | None:
    """None when ``folder`` holds a complete fit, else what is missing."""
    missing = [name for name in FIT_FILES if not (Path(folder) / name).is_file()]
    return f"no {', '.join(missing)}" if missing else None


def save_fit(folder: Path, method: Any, meta: dict[str, Any]) -> None:
    """Write a fitted method; ``fit.json`` (``meta``) last, as the completion marker."""
    folder = Path(folder)
    (folder / META_FILE).unlink(missing_ok=True)
    method.save(folder)
    write_json_atomic(folder / META_FILE, meta)


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"{folder / META_FILE} is unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise BenchError(f"{folder / META_FILE} is not a JSON object")
    return meta


def load_fit(folder: Path, cls: type) -> tuple[Any, dict[str, Any]]:
    """(the fitted method, its ``fit.json``) from a complete fit folder."""
    meta = read_meta(folder)
    method = cls.load(folder)
    method.fit_info = meta.get("fit_info", {})
    return method, meta
