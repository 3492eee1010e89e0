"""Paired statistics: CI coverage, p-value calibration, hand-computed cases, MDE and sample size."""
from __future__ import annotations

import numpy as np
import pytest

from face2anime.evaluation import stats


def test_sign_flip_exact_small_cases() -> None:
    assert stats.sign_flip_p(np.array([1.0, 1.0, 1.0])) == pytest.approx(2 / 8)   # only all-plus / all-minus
    assert stats.sign_flip_p(np.array([2.0, 1.0])) == pytest.approx(2 / 4)        # |+-3| of {3, 1, -1, -3}
    assert stats.sign_flip_p(np.array([1.0, -1.0])) == 1.0
    assert stats.sign_flip_p(np.zeros(5)) == 1.0
    # [seeds, n]: averaged over seeds first -> [1, 1, 1]
    assert stats.sign_flip_p(np.array([[2.0, 0.0, 1.0], [0.0, 2.0, 1.0]])) == pytest.approx(2 / 8)


def test_bootstrap_of_a_constant_difference_is_that_constant() -> None:
    lo, hi, se = stats.bootstrap_ci(np.full(10, 0.25), 500, 0)
    assert lo == pytest.approx(0.25) and hi == pytest.approx(0.25) and se == pytest.approx(0.0)
    s = stats.paired_summary(np.full(12, -1.0), higher_is_better=True, n_boot=200, n_perm=200)
    assert s["verdict"] == "reference" and s["delta"] == -1.0 and s["p"] < 0.001


def test_bootstrap_ci_covers_the_true_difference() -> None:
    rng = np.random.default_rng(1)
    true, hits, reps = 0.3, 0, 200
    for r in range(reps):
        a = rng.normal(0, 1, 50)                    # per-image difficulty shared by both methods
        d = (a + true + rng.normal(0, 1, 50)) - (a + rng.normal(0, 1, 50))
        lo, hi, _ = stats.bootstrap_ci(d, 1000, r)
        hits += lo <= true <= hi
    assert 0.88 <= hits / reps <= 0.99, hits / reps


def test_p_value_is_uniform_under_the_null_and_small_under_an_effect() -> None:
    rng = np.random.default_rng(2)
    null = np.array([stats.sign_flip_p(rng.normal(0, 1, 30), 999, i) for i in range(200)])
    assert 0.01 <= np.mean(null < 0.05) <= 0.11
    assert 0.4 <= null.mean() <= 0.6
    assert np.histogram(null, bins=4, range=(0, 1))[0].min() >= 30      # no quarter empty (expected 50)
    effect = np.array([stats.sign_flip_p(rng.normal(0.8, 1, 30), 999, i) for i in range(50)])
    assert np.mean(effect < 0.01) >= 0.9


def test_two_way_bootstrap_counts_seed_and_image_variance() -> None:
    """d[s, i] = a_s + b_i (seed and image effects, crossed): the bootstrap variance of the mean is
    var(a)/S + var(b)/n. A nested bootstrap (images redrawn per seed) would shrink var(b)/n by S."""
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 0.5, 5), rng.normal(0, 1.0, 200)
    d = a[:, None] + b[None, :]
    reps = stats.bootstrap_means(d, 20000, 0)
    expect = a.var() / len(a) + b.var() / len(b)
    assert reps.var() == pytest.approx(expect, rel=0.06)
    one = stats.bootstrap_means(b, 20000, 0)            # one seed: the ordinary paired bootstrap
    assert one.var() == pytest.approx(b.var() / len(b), rel=0.06)


def test_mde80_is_detected_about_80_percent_of_the_time() -> None:
    rng = np.random.default_rng(4)
    n, sd = 50, 1.0
    mde = stats.mde80(sd / np.sqrt(n))
    assert mde == pytest.approx(2.8016 * sd / np.sqrt(n), rel=1e-3)
    detected = 0
    for r in range(200):
        lo, hi, _ = stats.bootstrap_ci(rng.normal(mde, sd, n), 1000, r)
        detected += lo > 0 or hi < 0
    assert 0.68 <= detected / 200 <= 0.9, detected / 200


def test_paired_rate_sample_size_by_hand() -> None:
    # (1.96 sqrt(.2) + 0.8416 sqrt(.2 - .05^2))^2 / .05^2 = 625.5
    assert stats.paired_rate_n(0.05, 0.2) == 626
    assert stats.paired_rate_n(0.05, 0.1) < stats.paired_rate_n(0.05, 0.2)
    with pytest.raises(ValueError):
        stats.paired_rate_n(0.3, 0.2)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError):
        stats.bootstrap_ci(np.array([]))
    with pytest.raises(ValueError):
        stats.sign_flip_p(np.array([1.0, np.nan]))
