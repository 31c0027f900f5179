"""Report templates (``report.html``); imported as ``bench.templates``."""
