"""textcap-bench: one harness for text-only image captioning.

Import light: ``bench`` itself imports no torch, so ``python -m bench ls`` is instant.
"""

__version__ = "0.1.0"
