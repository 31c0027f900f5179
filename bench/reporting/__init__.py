"""Reports of a run: tables, intervals, figures and a gallery, rendered from the run folder alone."""

from bench.reporting.render import render_report

__all__ = ["render_report"]
