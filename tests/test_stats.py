import numpy as np
import pytest

from bench.stats import (
    PerImage,
    bootstrap_interval,
    corpus_bleu,
    paired_bootstrap_pvalue,
    resample_counts,
    resample_seeds,
    seed_interval,
    seed_spread,
    t_quantile,
)

HYPS = ["a red circle on the left", "two blue squares", "a green triangle next to a red circle", "a yellow star",
        "the blue square is above the circle"]
REFS = [["a red circle on the left side", "a red round shape"], ["two blue squares side by side", "blue squares"],
        ["a green triangle beside a red circle", "triangle and circle"], ["a yellow star shape", "one star in yellow"],
        ["a blue square above a circle", "the square is over the circle"]]


def _bleu_inputs():
    ids = [str(i) for i in range(len(HYPS))]
    return ids, {i: REFS[k] for k, i in enumerate(ids)}, {i: [HYPS[k]] for k, i in enumerate(ids)}


def test_corpus_bleu_from_per_image_statistics_equals_pycocoevalcap():
    from pycocoevalcap.bleu.bleu import Bleu

    from bench.scoring import _bleu

    ids, gts, res = _bleu_inputs()
    expected, _ = Bleu(4).compute_score(gts, res, verbose=0)
    corpus, _, stats = _bleu(gts, res, ids)
    summed = np.asarray(stats, dtype=float).sum(axis=0)
    for n in range(1, 5):
        assert corpus_bleu(summed, n) == pytest.approx(100 * expected[n - 1], abs=1e-9)
        assert corpus[n - 1] == pytest.approx(expected[n - 1], abs=1e-12)
    # and it is not the mean of sentence BLEU (which is what a naive bootstrap would resample)
    sentence = [float(corpus_bleu(np.asarray(s, dtype=float))) for s in stats]
    assert abs(np.mean(sentence) - corpus_bleu(summed)) > 1.0


def test_counts_are_resamples_with_replacement():
    counts = resample_counts(50, 200, seed=3)
    assert counts.shape == (200, 50)
    assert np.all(counts.sum(axis=1) == 50)
    assert counts.max() >= 3  # some image drawn several times, so it is not a permutation
    assert np.array_equal(counts, resample_counts(50, 200, seed=3))
    assert not np.array_equal(counts, resample_counts(50, 200, seed=4))


def _cider_rows(n, seeds=1, shift=0.0, rng=None):
    rng = rng or np.random.default_rng(0)
    return PerImage("cider", values=rng.gamma(2.0, 40.0, size=(seeds, n)) + shift)


def test_bootstrap_interval_contains_the_point_and_narrows_with_more_images():
    widths = []
    for n in (40, 160, 640, 2560):
        evidence = _cider_rows(n, rng=np.random.default_rng(n))
        lo, hi = bootstrap_interval(evidence, resample_counts(n, 1000, seed=0))
        point = evidence.point()
        assert point == pytest.approx(evidence.values.mean())
        assert lo < point < hi
        widths.append(hi - lo)
    assert all(a > b for a, b in zip(widths, widths[1:])), widths
    # the width of a mean's interval shrinks like 1/sqrt(n): 64 times the images, about an eighth
    assert widths[-1] / widths[0] == pytest.approx(1 / 8, rel=0.35)


def test_bleu_interval_contains_the_corpus_value():
    rng = np.random.default_rng(1)
    n = 300
    testlen = rng.integers(6, 14, size=n)
    guess = np.stack([np.maximum(testlen - k, 0) for k in range(4)], axis=1)
    correct = (guess * rng.uniform(0.2, 0.9, size=(n, 1)) ** np.arange(1, 5)).round()
    stats = np.concatenate([testlen[:, None], (testlen + rng.integers(-2, 3, size=n))[:, None], guess, correct], axis=1)
    evidence = PerImage("bleu4", stats=stats[None].astype(float))
    lo, hi = bootstrap_interval(evidence, resample_counts(n, 1000, seed=0))
    assert lo < evidence.point() < hi
    assert evidence.point() == pytest.approx(float(corpus_bleu(stats.sum(axis=0))))


def test_seeds_are_averaged_on_every_resample():
    evidence = _cider_rows(100, seeds=3)
    counts = resample_counts(100, 50, seed=0)
    per_seed = [PerImage("cider", values=evidence.values[s:s + 1]).resampled(counts) for s in range(3)]
    assert np.allclose(evidence.resampled(counts), np.mean(per_seed, axis=0))


def test_paired_test_gives_a_high_p_value_for_identical_methods_and_a_low_one_for_a_clear_gap():
    counts = resample_counts(200, 1000, seed=0)
    a = _cider_rows(200)
    same = PerImage("cider", values=a.values.copy())
    assert paired_bootstrap_pvalue(a, same, counts) == 1.0
    better = PerImage("cider", values=a.values + 15.0)
    assert paired_bootstrap_pvalue(better, a, counts) < 0.01
    # pairing matters: a constant shift of 1 is invisible to unpaired intervals but certain when paired
    slightly = PerImage("cider", values=a.values + 1.0)
    lo, hi = bootstrap_interval(a, counts)
    assert lo < slightly.point() < hi
    assert paired_bootstrap_pvalue(slightly, a, counts) < 0.01


def test_a_difference_that_is_not_a_number_counts_against_the_best_row():
    counts = resample_counts(50, 200, seed=0)
    a = _cider_rows(50)
    broken = PerImage("cider", values=np.full_like(a.values, np.nan))
    assert paired_bootstrap_pvalue(broken, a, counts) == 1.0
    assert paired_bootstrap_pvalue(a, broken, counts) == 1.0


def test_intervals_over_seeds_hold_the_spread_between_seeds():
    """Three seeds that agree image for image up to a per-seed offset of 0, 10 and 20: over the
    images alone the interval of their mean is as narrow as one seed's; resampling the seeds
    too widens it by about the offsets' spread, and the test against a row 5 points better
    than the mean, sure on images alone, is no longer sure."""
    n = 300
    base = _cider_rows(n).values[0]
    spread = PerImage("cider", values=np.stack([base, base + 10.0, base + 20.0]))
    steady = PerImage("cider", values=np.stack([base + 10.0] * 3))
    counts = resample_counts(n, 2000, seed=0)
    lo_img, hi_img = bootstrap_interval(spread, counts)
    lo, hi = bootstrap_interval(spread, counts, seed=0)
    assert lo < spread.point() < hi
    assert (hi - lo) > (hi_img - lo_img) + 10.0
    # identical seeds: resampling them changes nothing
    assert bootstrap_interval(steady, counts, seed=0) == pytest.approx(bootstrap_interval(steady, counts))
    better = PerImage("cider", values=np.stack([base + 15.0] * 3))
    assert paired_bootstrap_pvalue(better, spread, counts) < 0.01
    assert paired_bootstrap_pvalue(better, spread, counts, seed=0) > 0.05
    # one seed: nothing to resample
    one = PerImage("cider", values=base[None])
    assert np.array_equal(one.resampled(counts, seed=0), one.resampled(counts))


def test_seed_draws_are_reproducible_with_replacement_and_shared_by_rows_with_as_many_seeds():
    draws = resample_seeds(3, 1000, seed=0)
    assert draws.shape == (1000, 3) and draws.min() == 0 and draws.max() == 2
    assert np.array_equal(draws, resample_seeds(3, 1000, seed=0))
    assert not np.array_equal(draws, resample_seeds(3, 1000, seed=1))
    assert (np.sort(draws, axis=1) != [0, 1, 2]).any(axis=1).mean() > 0.5  # with replacement: most draws repeat a seed


def test_seed_interval_uses_student_t():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-4)
    assert t_quantile(0.975, 1000) == pytest.approx(1.9623, abs=1e-3)
    mean, lo, hi = seed_interval([10.0, 12.0, 14.0])
    assert mean == 12.0
    assert hi - mean == pytest.approx(4.3027 * 2.0 / np.sqrt(3), abs=1e-3)
    assert seed_interval([5.0]) == (5.0, 5.0, 5.0)


def test_metric_agreement_kendall_tau_b_against_a_hand_count():
    from tests.fixtures import load_benchmark

    tau = load_benchmark("metric_agreement").kendall_tau
    assert tau([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert tau([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # one swapped pair of six: (5 - 1) / 6
    assert tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # ties: a = (1, 1, 2), b = (1, 2, 3). Pairs: (0,1) tied in a; (0,2), (1,2) concordant.
    # tau-b = 2 / sqrt(2 * 3); tau-a would give 2 / 3
    assert tau([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / np.sqrt(6))
    assert np.isnan(tau([1, 1, 1], [1, 2, 3]))


def test_independent_per_image_differences_are_all_floor_and_seed_offsets_are_systematic():
    rng = np.random.default_rng(0)
    images = rng.gamma(2.0, 50.0, size=800)  # how hard each image is, shared by every seed
    noise = rng.normal(0.0, 50.0, size=(40, 800))  # each seed's own luck, image by image
    plain = seed_spread(images + noise)
    assert plain.floor == pytest.approx(50.0 / 800 ** 0.5, rel=0.05)
    assert plain.observed == pytest.approx(plain.floor, rel=0.3) and plain.systematic < plain.floor
    assert abs(plain.split_half) < 0.3
    offsets = rng.normal(0.0, 6.0, size=(40, 1))  # seeds better or worse on every image
    skewed = seed_spread(images + noise + offsets)
    assert skewed.floor == pytest.approx(plain.floor, rel=0.05)  # offsets are no interaction
    assert skewed.systematic == pytest.approx(offsets.std(ddof=1), rel=0.2)
    assert skewed.split_half > 0.8


def test_seeds_that_agree_have_no_spread_and_no_correlation():
    images = np.random.default_rng(2).gamma(2.0, 50.0, size=300)
    same = seed_spread(np.stack([images, images + 1e-12, images]))  # a deterministic method, seeds to rounding
    assert same.observed < 1e-9 and same.floor < 1e-9 and np.isnan(same.split_half)


def test_a_seed_spread_needs_two_seeds_and_four_images():
    for shape in ((1, 10), (3, 3), (10,)):
        with pytest.raises(ValueError, match="at least 2 x 4"):
            seed_spread(np.ones(shape))


def test_the_f_tail_agrees_with_its_closed_forms_and_tables():
    from bench.stats import f_sf

    for x in (0.2, 1.0, 3.0, 7.0):  # F(2, d) has a closed form: (1 + 2x/d)^(-d/2)
        for d2 in (4, 998, 6487):
            assert f_sf(x, 2, d2) == pytest.approx((1 + 2 * x / d2) ** (-d2 / 2), rel=1e-9)
    assert f_sf(4.96, 1, 10) == pytest.approx(0.05, abs=3e-4)  # the F tables' 95% points
    assert f_sf(3.10, 3, 20) == pytest.approx(0.05, abs=3e-4)
    assert f_sf(22.362 / 13, 13, 1e8) == pytest.approx(0.05, abs=2e-4)  # the chi-square(13) table's, d2 -> infinity
    assert f_sf(0.0, 3, 10) == 1.0 and np.isnan(f_sf(float("nan"), 3, 10))
    with pytest.raises(ValueError, match="degrees of freedom"):
        f_sf(1.0, 2, float("inf"))


def test_the_seed_effect_test_is_the_two_way_analysis_of_variance():
    """Against the textbook sums of squares on a small table, and, for two seeds, a paired t test."""
    from bench.stats import t_cdf

    table = np.array([[3.0, 5.0, 4.0, 8.0, 6.0], [4.0, 7.0, 4.0, 9.0, 9.0], [2.0, 6.0, 5.0, 6.0, 7.0]])
    k, n = table.shape
    grand = table.mean()
    ss_seed = n * ((table.mean(axis=1) - grand) ** 2).sum()
    ss_image = k * ((table.mean(axis=0) - grand) ** 2).sum()
    ss_rest = ((table - grand) ** 2).sum() - ss_seed - ss_image
    f = (ss_seed / (k - 1)) / (ss_rest / ((k - 1) * (n - 1)))
    from bench.stats import f_sf

    spread = seed_spread(table)
    assert spread.observed ** 2 / spread.floor ** 2 == pytest.approx(f, rel=1e-12)
    assert spread.p_value == pytest.approx(f_sf(f, k - 1, (k - 1) * (n - 1)), rel=1e-12) and spread.images == n
    pair = table[:2]
    d = pair[0] - pair[1]
    t = abs(d.mean()) / (d.std(ddof=1) / np.sqrt(n))
    assert seed_spread(pair).p_value == pytest.approx(2 * (1 - t_cdf(t, n - 1)), rel=1e-9)


def test_the_seed_effect_test_holds_its_level_and_finds_seed_offsets():
    rng = np.random.default_rng(5)
    images = rng.gamma(2.0, 50.0, size=400)
    ps = np.array([seed_spread(images + rng.normal(0.0, 40.0, size=(3, 400)), splits=1).p_value for _ in range(3000)])
    # seeds differing image by image only: 5% below 0.05 (binomial sd 0.4%; 2 or 4 numerator degrees of freedom
    # instead of 2 give 2.5% and 7%) and a uniform p
    assert 0.038 < np.mean(ps < 0.05) < 0.062 and 0.47 < ps.mean() < 0.53
    shifted = images + rng.normal(0.0, 40.0, size=(3, 400)) + np.array([[-8.0], [0.0], [8.0]])
    assert seed_spread(shifted).p_value < 1e-4
    assert seed_spread(np.stack([images, images + 3.0, images])).p_value == 0.0  # a constant offset, no interaction
    assert np.isnan(seed_spread(np.stack([images, images + 1e-12, images])).p_value)  # agreeing to rounding: no test
    with pytest.raises(ValueError, match="finite"):
        seed_spread(np.stack([images, np.where(np.arange(400) == 3, np.nan, images)]))
