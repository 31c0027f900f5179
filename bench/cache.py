"""The embedding cache: encode each (encoder, dataset, split, modality) once.

An entry is a folder holding ``embeddings.npy`` (float32, memory-mappable) and
``manifest.json`` (the key fields, count, dimension, dtype, normalisation, SHA-256 of the
array). The key hashes the encoder id (spec + weights hash), the dataset, split and modality,
the normalisation, a fingerprint of the inputs (the caption strings, or the image files'
paths and the SHA-256 of their bytes), and how they were computed (device kind and batch size),
so changed data, weights or arithmetic never hit a stale entry. A
manifest that does not match its array is rebuilt, never trusted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.io import atomic_path, file_lock, write_json_atomic

CACHE_VERSION = 1


def array_digest(array: Any) -> str:
    """A content hash of an array: dtype, shape and bytes ("" for None)."""
    if array is None:
        return ""
    a = np.ascontiguousarray(np.asarray(array))
    return hashlib.sha256(f"{a.dtype}{a.shape}".encode() + a.view(np.uint8).reshape(-1).data).hexdigest()


#: starts an item ``record_item`` wrote as JSON; no plain item starts with it
ESCAPE = "\x01"


def record_item(*fields: object) -> str:
    """``fields`` (at least one, as strings) as one item of a ``fingerprint``, which ends each item
    with a NUL: joined with tabs, or, where that could be read two ways (a NUL in a field, a tab in
    a field of several, a first field starting with ``ESCAPE``), ``ESCAPE`` and their JSON list.
    No two different field lists give one item, and plain text gives the string it always gave
    (a single caption as itself, tabs and all), so no fingerprint of such data changes."""
    text = tuple(str(f) for f in fields)
    if not text:
        raise ValueError("record_item needs at least one field")
    if text[0].startswith(ESCAPE) or any("\0" in f for f in text) or (len(text) > 1 and any("\t" in f for f in text)):
        return ESCAPE + json.dumps(list(text))
    return "\t".join(text)


def images_fingerprint(paths: Sequence[Path], resolve: bool = False) -> str:
    """A fingerprint of image files: each one's path and the SHA-256 of its bytes (remembered per
    path, size and modification time within a process), so a file replaced by another of the
    same size is a new input."""
    from bench.io import sha256_file

    return fingerprint(f"{Path(p).resolve() if resolve else p}:{sha256_file(p)}" for p in paths)


def folder_fingerprint(folder: Path) -> str:
    """A fingerprint of a model folder's content: each file's path inside it and the SHA-256 of its
    bytes (remembered per path, size and modification time within a process); a missing folder
    has the fingerprint of an empty one."""
    from bench.io import sha256_file

    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
    return fingerprint(f"{p.relative_to(folder).as_posix()}:{sha256_file(p)}" for p in files)


def fingerprint(items: Sequence[Any]) -> str:
    """A content hash of a sequence of strings (or paths, or ids)."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(str(item).encode("utf-8", "surrogatepass"))
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheKey:
    encoder: str
    dataset: str
    split: str
    modality: str  # "text" or "image"
    content: str  # fingerprint of the inputs
    normalized: bool = True
    #: How the embeddings were computed (``ClipEncoder.compute_id``): the device kind (a GPU's
    #: model too: its TF32 convolutions differ by card) and the batch size (another batch size
    #: changes the last bits), so a cache shared between machines never answers one run with
    #: another's numbers.
    compute: str = ""

    def digest(self) -> str:
        blob = json.dumps({"v": CACHE_VERSION, **self.__dict__}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def folder_name(self) -> str:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{self.dataset}-{self.split}-{self.modality}")
        return f"{safe}-{self.digest()}"


def encoder_key(encoder: Any, dataset: str, split: str, modality: str, content: str) -> CacheKey:
    """The key of ``encoder``'s embeddings of ``content`` (its id, and how it computes them)."""
    return CacheKey(encoder.id, dataset, split, modality, content, compute=encoder.compute_id(modality))


#: The cache directory's folders: embeddings (here), generated images (``bench.generated``), the
#: shapes world and its CLIP (``bench.shapes``). A run sweeps them for stale temporaries.
EMBEDDINGS_FOLDER = "embeddings"
GENERATED_FOLDER = "generated"
SHAPES_FOLDER = "shapes"
CACHE_FOLDERS = (EMBEDDINGS_FOLDER, GENERATED_FOLDER, SHAPES_FOLDER)


class EmbeddingCache:
    """Embeddings on disk under ``root / EMBEDDINGS_FOLDER``; counts hits and misses."""

    def __init__(self, root: str | Path, log: Callable[[str], None] = print) -> None:
        self.root = Path(root) / EMBEDDINGS_FOLDER
        self.log = log
        self.hits = 0
        self.misses = 0
        self._told_read_only = False

    def writable(self) -> bool:
        """Whether entries can be added: the cache folder, or its nearest existing parent, is
        writable (a cache prepared once and shared read-only still answers its hits)."""
        folder = self.root
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        return os.access(folder, os.W_OK)

    def folder(self, key: CacheKey) -> Path:
        return self.root / key.folder_name()

    def _valid(self, key: CacheKey, quiet: bool = False) -> np.ndarray | None:
        folder = self.folder(key)
        array_path, manifest_path = folder / "embeddings.npy", folder / "manifest.json"
        if not array_path.is_file() or not manifest_path.is_file():
            return None
        try:
            manifest = json.loads(manifest_path.read_text())
            array = np.load(array_path, mmap_mode="r")  # allow_pickle is off: an object array is refused
        except (OSError, ValueError, json.JSONDecodeError):
            if not quiet:
                self.log(f"warning: embedding cache entry {folder} is unreadable; re-encoding")
            return None
        if not isinstance(manifest, dict):
            self.log(f"warning: embedding cache entry {folder} has a manifest of the wrong shape; re-encoding")
            return None
        expected = {"key": key.__dict__, "count": int(array.shape[0]) if array.ndim else -1,
                    "dim": int(array.shape[1]) if array.ndim == 2 else -1,
                    "dtype": str(array.dtype), "normalized": key.normalized}
        if any(manifest.get(k) != v for k, v in expected.items()) or manifest.get("sha256") != _array_hash(array):
            if not quiet:
                self.log(f"warning: embedding cache entry {folder} does not match its manifest; re-encoding")
            return None
        return array

    def get(self, key: CacheKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached array for ``key`` (memory-mapped), computing and storing it on a miss.

        Many processes, on many machines, may share one cache folder: a complete entry is read
        without a lock (its manifest is written last, after the array's rename, so a reader
        never sees half an entry); a missing one is computed under a lock on its key, so two
        writers never encode the same key at once and the second finds the first's entry."""
        cached = self._valid(key)
        if cached is not None:
            self.hits += 1
            return cached
        lock = self.root / f".{key.folder_name()}.lock"
        if self._can_lock(lock):
            with file_lock(lock):
                cached = self._valid(key, quiet=True)
                if cached is not None:  # another process made it while this one waited
                    self.hits += 1
                    return cached
                return self._compute(key, compute)
        self.misses += 1  # a shared, read-only cache: this entry is computed and kept in memory
        self._say_read_only()
        return _checked(compute())

    def _can_lock(self, lock: Path) -> bool:
        """Whether this process may add entries: tried, not predicted (``os.access`` says yes to
        root on a root-squashed NFS mount); any other failure is raised."""
        if not self.writable():
            return False
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            with open(lock, "a+b"):
                return True
        except OSError as exc:
            if exc.errno in _READ_ONLY:
                return False
            raise

    def _say_read_only(self) -> None:
        if not self._told_read_only:
            self.log(f"note: the embedding cache {self.root} is read-only; embeddings it lacks are computed for this "
                     "run and not stored")
            self._told_read_only = True

    def _compute(self, key: CacheKey, compute: Callable[[], np.ndarray]) -> np.ndarray:
        self.misses += 1
        array = _checked(compute())
        folder = self.folder(key)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "manifest.json").unlink(missing_ok=True)  # the manifest, written last, marks the entry complete
            with atomic_path(folder / "embeddings.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, array)
            write_json_atomic(folder / "manifest.json", {
                "key": key.__dict__, "count": int(array.shape[0]), "dim": int(array.shape[1]), "dtype": str(array.dtype),
                "normalized": key.normalized, "sha256": _array_hash(array),
            })
        except (IsADirectoryError, NotADirectoryError) as exc:  # a folder where the entry's file belongs: not ours to delete
            self.log(f"warning: embedding cache entry {folder} cannot be written ({exc.strerror}: {exc.filename}); "
                     "these embeddings are computed for this run and not stored")
            return array
        except OSError as exc:  # the lock could be taken but the entry not written (a read-only subfolder)
            if exc.errno not in _READ_ONLY:
                raise
            self._say_read_only()
            return array
        return np.load(folder / "embeddings.npy", mmap_mode="r")


#: the errors that mean "this process may not write here"
_READ_ONLY = {errno.EACCES, errno.EPERM, errno.EROFS}


def _checked(array: Any) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"embeddings must be 2-D, got shape {array.shape}")
    return array


def _array_hash(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).view(np.uint8).reshape(-1).data).hexdigest()
