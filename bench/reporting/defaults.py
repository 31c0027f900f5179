"""Report settings' defaults (a module of its own so that the command line reads them without
importing the renderer)."""

RESAMPLES = 1000
SEED = 0
GALLERY_IMAGES = 6
MIN_RESAMPLES = 100  # fewer cannot resolve a 95% interval's tails
