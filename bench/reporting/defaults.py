"""Report settings' defaults (a module of its own so that the command line reads them without
importing the renderer)."""

RESAMPLES = 1000
SEED = 0
GALLERY_IMAGES = 6
MIN_RESAMPLES = 100  # fewer cannot resolve a 95% interval's tails
#: More buys no visible digit (the Monte-Carlo error of a 95% bound at 100,000 resamples is far
#: below the intervals' printed precision) and costs memory: the resample counts are a
#: resamples x images matrix (100,000 x 5,000 COCO test images: 4 GB).
MAX_RESAMPLES = 100_000
