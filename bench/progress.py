"""Progress bars: one helper so every long loop looks and behaves the same."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, total: int | None = None, desc: str = "", unit: str = "it", **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a tqdm bar on stderr (with a time-left estimate).

    Set ``BENCH_PROGRESS=0`` to silence bars (logs, CI); bars never go to stdout, so that
    ``--json`` output stays parseable.
    """
    if os.environ.get("BENCH_PROGRESS", "1") == "0":
        return iterable if iterable is not None else _Silent()
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=False, **kwargs)


class _Silent:
    """What ``progress(total=...)`` returns when bars are off: a bar that does nothing."""

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass
