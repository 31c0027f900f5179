"""Method plugins: one module per method, imported as ``bench.plugins.methods.*``."""
