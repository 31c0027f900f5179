"""Uncertainty for caption metrics: bootstrap intervals over images, paired bootstrap tests,
and intervals over seeds.

Resampling is over test images (Koehn 2004; the unit a test set is drawn in). Every statistic
is recomputed on each resample the way the scorer computes it on the whole set:

- CIDEr-D is the mean of its per-image scores (the IDF stays that of the full test set, as in
  every bootstrap of CIDEr: re-deriving it per resample would count a duplicated image twice);
- BLEU is a corpus statistic, *not* the mean of sentence BLEU: each image contributes its
  n-gram matches, n-gram counts, hypothesis length and closest reference length
  (``BLEU_STATS``), and a resample sums them before the geometric mean and brevity penalty.

A row that ran with several seeds is averaged over its seeds on every resample (seeds share
their test images, so the resample is the same for all of them). Given a ``seed`` for the draws,
the seeds are resampled too (with replacement, as many as the row has): a two-level bootstrap
whose interval holds both the test set's sampling and training's seed-to-seed variation
(Bouthillier et al., 2021). Without it, a row whose seeds spread by 10 CIDEr gets an interval
from the images alone, as narrow as if its training were deterministic. A bootstrap of three
seeds is coarse (ten distinct draws; it understates their variance by a third). Two rows of the
same split are compared on the *same* resamples, images and seed positions alike, which is what
makes the test paired.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Per-image BLEU sufficient statistics, in this order: hypothesis length, closest reference
#: length, guessed n-grams for n = 1..4, matched (clipped) n-grams for n = 1..4.
BLEU_STATS = ("testlen", "reflen", "guess1", "guess2", "guess3", "guess4", "correct1", "correct2", "correct3", "correct4")
#: The smoothing constants pycocoevalcap's BleuScorer uses (so that corpus values agree to 1e-9).
_TINY, _SMALL = 1e-15, 1e-9
#: Metrics with an interval in reports, and how each is aggregated over images.
INTERVAL_METRICS = ("cider", "bleu4", "clip_s")


def corpus_bleu(stats: np.ndarray, n: int = 4) -> np.ndarray:
    """Corpus BLEU-n (0-100) from summed statistics.

    ``stats``: (..., 10) sums of ``BLEU_STATS`` over a set of images (one row per resample).
    Returns an array of shape ``stats.shape[:-1]``; identical to pycocoevalcap's corpus value.
    """
    stats = np.asarray(stats, dtype=np.float64)
    testlen, reflen = stats[..., 0], stats[..., 1]
    guess, correct = stats[..., 2:2 + n], stats[..., 6:6 + n]
    log_precision = np.log((correct + _TINY) / (guess + _SMALL)).sum(axis=-1) / n
    bleu = np.exp(log_precision)
    ratio = (testlen + _TINY) / (reflen + _SMALL)
    penalty = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, _TINY)), 1.0)
    return 100.0 * bleu * penalty


def resample_counts(n_images: int, n_resamples: int, seed: int) -> np.ndarray:
    """How often each image is drawn in each resample: (n_resamples, n_images) float64, rows sum
    to ``n_images``. Counts instead of indices turn every statistic into one matrix product."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_images, size=(n_resamples, n_images))
    counts = np.zeros((n_resamples, n_images), dtype=np.float64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], idx), 1.0)
    return counts


@dataclass(frozen=True)
class PerImage:
    """One row's per-image evidence for one metric: ``values`` (seeds, images) for a mean metric
    such as CIDEr, or ``stats`` (seeds, images, 10) for BLEU; images in the same order for every
    row of a split."""

    metric: str
    values: np.ndarray | None = None
    stats: np.ndarray | None = None

    def point(self) -> float:
        """The statistic on the full set, averaged over seeds."""
        return float(self.resampled(np.ones((1, self.n_images)))[0])

    @property
    def n_images(self) -> int:
        return (self.values if self.values is not None else self.stats).shape[1]

    @property
    def n_seeds(self) -> int:
        return (self.values if self.values is not None else self.stats).shape[0]

    def resampled(self, counts: np.ndarray, seed: int | None = None) -> np.ndarray:
        """The seed-averaged statistic on each resample: (n_resamples,). With ``seed``, each
        resample also draws the row's seeds with replacement (``resample_seeds``)."""
        if self.values is not None:
            per_seed = counts @ self.values.T / counts.sum(axis=1, keepdims=True)  # (R, seeds)
        else:
            n = int(self.metric[-1]) if self.metric.startswith("bleu") else 4
            per_seed = corpus_bleu(np.einsum("ri,sik->rsk", counts, self.stats), n)  # (R, seeds)
        if seed is not None and self.n_seeds > 1:
            draws = resample_seeds(self.n_seeds, len(counts), seed)
            per_seed = np.take_along_axis(per_seed, draws, axis=1)
        return per_seed.mean(axis=1)


def resample_seeds(n_seeds: int, n_resamples: int, seed: int) -> np.ndarray:
    """Which of a row's seeds each resample draws, with replacement: (n_resamples, n_seeds) indices.
    The same for every row with as many seeds, so rows that share seeds (nonoise and decap share
    a decoder per seed) stay paired."""
    rng = np.random.default_rng([seed, n_seeds, n_resamples])
    return rng.integers(0, n_seeds, size=(n_resamples, n_seeds))


def bootstrap_interval(evidence: PerImage, counts: np.ndarray, level: float = 0.95,
                       seed: int | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of the statistic over the resamples in ``counts`` (and, with
    ``seed``, over the row's seeds)."""
    draws = evidence.resampled(counts, seed)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(draws, [alpha, 1 - alpha])
    return float(lo), float(hi)


def paired_bootstrap_pvalue(best: PerImage, other: PerImage, counts: np.ndarray, seed: int | None = None) -> float:
    """One-sided paired bootstrap p-value that ``best`` is not better than ``other``.

    On each resample (the same images for both), the difference best - other is computed; the
    p-value is the share of resamples where it is <= 0, with the usual +1 correction so that it
    is never exactly 0. Two identical rows give 1.0; a resample whose difference is not a number
    counts against ``best``.
    """
    delta = best.resampled(counts, seed) - other.resampled(counts, seed)
    return float((np.count_nonzero(~(delta > 0)) + 1) / (len(delta) + 1))


@dataclass(frozen=True)
class SeedSpread:
    """How much of a row's seed spread the test set alone would give (see :func:`seed_spread`)."""

    observed: float  # the seed means' standard deviation
    floor: float  # what independent image-by-image differences between the seeds alone give
    systematic: float  # sqrt(max(0, observed^2 - floor^2)): seeds better or worse on images in general
    split_half: float  # the seed means' correlation between random halves of the images (nan: < 3 seeds)
    #: the two-way analysis of variance's F test of a seed effect: the chance that seeds differing
    #: only image by image spread as much as observed (F = observed^2 / floor^2 on k - 1 and
    #: (k - 1)(n - 1) degrees of freedom, k seeds, n images); nan when the seeds agree (no spread)
    p_value: float
    images: int  # n, the test images the floor is over


def seed_spread(table: np.ndarray, splits: int = 200, seed: int = 0) -> SeedSpread:
    """Split the spread of a row's seed means into the test set's floor and a systematic rest.

    ``table``: seeds x images, one mean metric per image (CIDEr's per-image scores; at least 2
    seeds and 4 images). The **floor** is the standard deviation the seed means would show if the
    seeds differed only image by image, independently: the seed x image interaction's variance
    (two-way layout, no replication) over the number of images. A larger test set shrinks it, and
    so do seeds whose captions agree image by image. The **systematic** part is what the observed
    spread adds to it. The split-half correlation (the seeds' means on one random half of the
    images against the other, averaged over ``splits`` halvings) says the same another way: near
    0 when the spread is the floor's, near 1 when it is systematic. A spread over three seeds has
    two degrees of freedom: one that is all floor reads anywhere from well under to well over it;
    ``p_value`` is the F test of the two-way analysis of variance that weighs that."""
    table = np.asarray(table, dtype=np.float64)
    if table.ndim != 2 or table.shape[0] < 2 or table.shape[1] < 4:
        raise ValueError(f"a seed spread needs a seeds x images table of at least 2 x 4, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("a seed spread needs finite per-image values")
    seeds, images = table.shape
    means = table.mean(axis=1)
    residual = table - means[:, None] - table.mean(axis=0)[None, :] + table.mean()
    interaction = float((residual ** 2).sum() / ((seeds - 1) * (images - 1)))
    observed = float(means.std(ddof=1))
    floor = math.sqrt(interaction / images)
    rounding = 1e-9 * (1.0 + abs(float(table.mean())))  # seeds that agree to this agree (a deterministic method)
    split_half = float("nan")
    if seeds >= 3:
        rng = np.random.default_rng(seed)
        found = []
        for _ in range(splits):
            order = rng.permutation(images)
            a, b = table[:, order[: images // 2]].mean(axis=1), table[:, order[images // 2:]].mean(axis=1)
            if min(a.std(), b.std()) > rounding:  # seeds that agree to rounding: no correlation
                found.append(float(np.corrcoef(a, b)[0, 1]))
        split_half = float(np.mean(found)) if found else float("nan")
    if observed <= rounding:  # no spread at all: nothing to test
        p_value = float("nan")
    elif floor <= rounding:  # seeds that differ by the same amount on every image
        p_value = 0.0
    else:
        p_value = f_sf(observed ** 2 / floor ** 2, seeds - 1, (seeds - 1) * (images - 1))
    return SeedSpread(observed, floor, math.sqrt(max(0.0, observed ** 2 - floor ** 2)), split_half, p_value, images)


def f_sf(x: float, d1: float, d2: float) -> float:
    """The upper tail P(F > x) of the F distribution with ``d1`` and ``d2`` (finite, positive)
    degrees of freedom; nan for a nan ``x``."""
    if not (math.isfinite(d1) and math.isfinite(d2) and d1 > 0 and d2 > 0):
        raise ValueError(f"the F distribution needs finite positive degrees of freedom, got {d1} and {d2}")
    if math.isnan(x):
        return float("nan")
    if x <= 0:
        return 1.0
    return _betainc(d2 / 2, d1 / 2, d2 / (d2 + d1 * x))


def seed_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and the Student-t confidence interval of the mean over seeds: (mean, lo, hi).
    With one value the interval is the point itself."""
    x = np.asarray(values, dtype=np.float64)
    mean = float(x.mean())
    if len(x) < 2:
        return mean, mean, mean
    half = t_quantile(1 - (1 - level) / 2, len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return mean, mean - half, mean + half


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF)."""
    if not 0.5 <= p < 1:
        raise ValueError("t_quantile supports 0.5 <= p < 1")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_cdf(t: float, df: int) -> float:
    """Student's t CDF through the regularised incomplete beta function."""
    x = df / (df + t * t)
    tail = 0.5 * _betainc(df / 2, 0.5, x)
    return 1 - tail if t >= 0 else tail


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) by its continued fraction (Numerical Recipes §6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    f, c, d = 1.0, 1.0, 0.0
    for i in range(400):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -((a + m) * (a + b + m) * x) / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > 1e-300 else 1e-300)
        c = 1 + num / c
        c = c if abs(c) > 1e-300 else 1e-300
        f *= c * d
        if abs(1 - c * d) < 1e-14:
            break
    return front * (f - 1) / a
