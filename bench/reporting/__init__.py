"""Reports of a run: tables, intervals, figures and a gallery, rendered from the run folder alone."""

from __future__ import annotations

from typing import Any


def render_report(*args: Any, **kwargs: Any) -> Any:
    """``bench.reporting.render.render_report`` (imported on first use: it needs pandas and matplotlib)."""
    from bench.reporting.render import render_report as render

    return render(*args, **kwargs)


__all__ = ["render_report"]
