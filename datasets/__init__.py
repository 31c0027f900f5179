"""Dataset plugins: one module per dataset family, imported as ``bench.plugins.datasets.*``."""
