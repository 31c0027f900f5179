"""Fitted methods on disk: ``RUN_DIR/checkpoints/<fit key>/``.

A fit folder holds ``config.json`` (the method's class and config), ``state.pt`` (its tensors)
and ``state.json`` (the rest of its state, ``bench.state_io``), and ``fit.json``: the registry
name it was fitted as, the encoder spec and id, the cache folder, what training measured, and
the SHA-256 of each of the other files. ``fit.json`` is written last, so it marks the fit
complete, and :func:`fit_problem` checks every hash before a fit is used: the runner (to reuse
one) and ``bench caption`` (to use one) ask the same question. A fit that fails the check is
refitted by the runner (with a warning) and refused by ``bench caption``, never used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.errors import BenchError
from bench.io import file_hashes, hash_problem, write_json_atomic

META_FILE = "fit.json"
STATE_FILES = ("config.json", "state.pt", "state.json")
FIT_FILES = (*STATE_FILES, META_FILE)


def fit_problem(folder: Path) -> str | None:
    """None when ``folder`` holds a complete fit whose files match their hashes; "missing" when
    there is no fit there; otherwise what is wrong."""
    folder = Path(folder)
    missing = [name for name in FIT_FILES if not (folder / name).is_file()]
    if len(missing) == len(FIT_FILES):
        return "missing"
    if missing:
        return f"incomplete (no {', '.join(missing)})"
    try:
        meta = read_meta(folder)
    except BenchError as exc:
        return str(exc)
    return hash_problem(folder, meta.get("sha256"), STATE_FILES)


def save_fit(folder: Path, method: Any, meta: dict[str, Any]) -> None:
    """Write a fitted method; ``fit.json`` (``meta`` plus the files' hashes) last."""
    folder = Path(folder)
    (folder / META_FILE).unlink(missing_ok=True)
    files = method.save(folder)
    write_json_atomic(folder / META_FILE, {**meta, "sha256": file_hashes(files)})


def read_meta(folder: Path) -> dict[str, Any]:
    try:
        meta = json.loads((Path(folder) / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BenchError(f"{Path(folder) / META_FILE} is unreadable ({exc})") from None
    if not isinstance(meta, dict):
        raise BenchError(f"{Path(folder) / META_FILE} is not a JSON object")
    return meta


def load_fit(folder: Path, cls: type, map_location: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """(the fitted method, its ``fit.json``) from a fit folder that :func:`fit_problem` passed."""
    meta = read_meta(folder)
    method = cls.load(folder, map_location)
    method.fit_info = meta.get("fit_info", {})
    return method, meta
