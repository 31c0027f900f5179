"""Atomic file writes: a reader never sees half a file, an interruption never corrupts one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: what ``atomic_path`` names its temporary files: ``.NAME.`` + mkstemp's 8 random characters + this
#: suffix, which no other tool writes (``remove_stale_temporaries`` goes by it)
TEMPORARY_SUFFIX = ".textcap-bench.tmp"
_TEMPORARY = re.compile(r"^\..+\.[a-z0-9_]{8}" + re.escape(TEMPORARY_SUFFIX) + "$")
#: what image writers of earlier versions named their temporaries (``NAME.PID.tmp.png``), in the
#: cache folders they wrote alone (``remove_stale_temporaries(..., earlier_images=True)``)
_EARLIER_IMAGE_TEMPORARY = re.compile(r"^.+\.[0-9]+\.tmp\.png$")


@contextlib.contextmanager
def atomic_path(path: str | Path, sync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one rename.
    ``sync=False`` skips flushing the file to disk before the rename (for thousands of small files
    such as images, where a flush each would cost more than the write): a killed process still
    never leaves half a file under ``path``, but a crash of the whole machine may (the renamed
    file can then be empty or cut; an image is checked where it is read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if sync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(folder: str | Path, older_than: float = 3600.0, recursive: bool = True,
                             earlier_images: bool = False) -> tuple[int, int]:
    """Delete, in ``folder`` (and its subfolders when ``recursive``), the temporary files of
    ``atomic_path`` writes that a killed process left behind (no write lasts ``older_than``
    seconds: a younger one may be another process's write in progress, and is kept); with
    ``earlier_images``, also the image temporaries of earlier versions (only for folders this
    tool alone writes images into). Returns (files removed, bytes freed)."""
    import time

    removed = freed = 0
    now = time.time()
    for root, folders, files in os.walk(folder):
        if not recursive:
            folders.clear()
        for name in files:
            if not (_TEMPORARY.match(name) or (earlier_images and _EARLIER_IMAGE_TEMPORARY.match(name))):
                continue
            path = Path(root) / name
            try:
                stat = path.stat()
                if now - stat.st_mtime < older_than:
                    continue
                path.unlink()
            except OSError:  # gone meanwhile (its writer finished), or not ours to remove
                continue
            removed += 1
            freed += stat.st_size
    return removed, freed


def _umask() -> int:
    """The process's file mode mask, read where the kernel shows it (Linux: without changing it,
    which another thread creating a file meanwhile would see); elsewhere set and set back."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=indent, ensure_ascii=False, default=str) + "\n")


def torch_save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically, the same tensors always giving the same bytes.

    Saved to a path, torch names the archive's inner folder after the file, here a random
    temporary name, so two saves of identical weights hashed differently (and an encoder's id,
    the hash of its weights, changed with every training). Through a file object the folder is
    always ``archive``."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)
    return Path(path)


def sha256_file(path: str | Path, _memo: dict = {}) -> str:  # noqa: B006 - a per-process memo by design
    """SHA-256 of a file, remembered per (path, size, mtime) so a large checkpoint is hashed once."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _memo:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _memo[key] = digest.hexdigest()
    return _memo[key]


def check_writable(folder: Path, what: str = "cache directory",
                   hint: str = "pass --cache-dir DIR or set TEXTCAP_BENCH_CACHE") -> Path:
    """Create ``folder`` if needed and prove it is writable, or fail in one line naming ``what``."""
    from bench.errors import BenchError

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise BenchError(f"{what} {folder} is a file, not a folder; {hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise BenchError(f"{what} {folder} is not writable ({exc.strerror or exc}); {hint}") from None
    return folder


def has_control_character(text: str) -> bool:
    """Whether ``text`` holds a control character (a newline, say): a path that status lines,
    records and reports could not show on one line."""
    return any(ord(c) < 32 or ord(c) == 127 for c in text)


def check_output_file(path: str | Path, flag: str) -> Path:
    """A file a command will write: not a folder, in a folder that exists and is writable."""
    from bench.errors import BenchError

    if not str(path).strip():
        raise BenchError(f"{flag} is empty; give a file name")
    path = Path(path)
    if path.is_dir():
        raise BenchError(f"{flag} {path} is a folder; give a file name")
    check_writable(path.parent if str(path.parent) else Path("."), f"the folder of {flag}", "choose another path")
    return path


def file_hashes(files: list[Path]) -> dict[str, str]:
    """``{file name: SHA-256}`` of files in one folder (what a manifest records)."""
    return {Path(f).name: sha256_file(f) for f in files}


def hash_problem(folder: Path, hashes: Any, names: tuple[str, ...]) -> str | None:
    """None when each of ``names`` in ``folder`` has the SHA-256 that ``hashes`` records."""
    if not isinstance(hashes, dict):
        return "its manifest lists no file hashes"
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            return f"{name} is missing"
        if hashes.get(name) != sha256_file(path):
            return f"{name} does not match the SHA-256 in its manifest (corrupted or modified)"
    return None


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created if missing) for the duration of the block:
    ``flock``, which Linux also honours across machines on NFS. Writers that append to a shared
    file take it, so their lines never interleave."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def append_line(path: str | Path, line: str, lock: str | Path) -> None:
    """Append one line to ``path`` under ``lock``, durably: if a killed writer left a last line
    without its newline, it is ended first, so the new line is never glued to a fragment."""
    with file_lock(lock):
        append_line_locked(path, line)


def append_line_locked(path: str | Path, line: str) -> None:
    """:func:`append_line` for a caller that already holds the lock."""
    path = Path(path)
    data = line.rstrip("\n").encode("utf-8") + b"\n"
    with open(path, "ab+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                data = b"\n" + data
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
