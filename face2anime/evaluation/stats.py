"""Paired statistics for comparing two methods on the same test images (and seeds).

Data layout: a per-image difference ``d[s, i]`` = candidate - reference for training seed
``s`` (the same seed for both methods) and test image ``i`` (the same source for both
methods). One seed is ``S = 1``.

* :func:`bootstrap_ci`: percentile CI of the mean difference. Seeds and test images are
  *crossed* (every seed is evaluated on the same images), so one bootstrap replicate draws
  ``S`` seeds with replacement and, independently, ``n`` images with replacement, and uses
  that one image draw for every drawn seed (a two-way bootstrap). Resampling images
  independently inside each seed (a nested bootstrap) would average the image effect over
  seeds and make the CI too narrow, since the same hard images are hard in every run. With
  ``S = 1`` this is the ordinary paired bootstrap over images.
* :func:`sign_flip_p`: two-sided paired permutation test: under "no difference" the sign
  of each image's difference (averaged over seeds) is a fair coin. Exact for n <= 16, else
  Monte Carlo with the (1 + hits) / (1 + draws) correction, so p is never 0. It is
  conditional on the trained runs: training noise enters the CI (through the seed draws),
  not this p-value.
* :func:`mde80`: the smallest true difference the setup detects with 80% power at a
  two-sided alpha of 0.05, ``(z_0.975 + z_0.8) * SE``, with SE the bootstrap standard
  error of the mean difference (the normal approximation of the power calculation).
* :func:`paired_rate_n`: how many paired test images a difference ``delta`` in a rate
  needs (McNemar's test, Connor 1987), given the share of discordant pairs.

Set-level statistics that are not a mean over images (KID) use :func:`bootstrap_stat` and
:func:`permutation_stat` with a function of a batch of drawn seed and image indices (or swaps).
"""
from __future__ import annotations

import math
from itertools import product
from typing import Callable

import numpy as np

Z_975 = 1.959963984540054
Z_80 = 0.8416212335729143
#: (z_{1-alpha/2} + z_{power}) for alpha 0.05, power 0.8
MDE_FACTOR = Z_975 + Z_80


def as_2d(d: np.ndarray) -> np.ndarray:
    """``[n]`` or ``[S, n]`` differences -> float ``[S, n]``; rejects empty input and NaN."""
    d = np.asarray(d, dtype=np.float64)
    if d.ndim == 1:
        d = d[None]
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise ValueError(f"differences must be [n] or [seeds, n] with n >= 1, got shape {d.shape}")
    if np.isnan(d).any():
        raise ValueError("differences contain NaN")
    return d


def bootstrap_means(d: np.ndarray, n_boot: int = 10000, seed: int = 0) -> np.ndarray:
    """``n_boot`` two-way bootstrap replicates of the mean of ``d [S, n]`` (see module doc)."""
    d = as_2d(d)
    s, n = d.shape
    rng = np.random.default_rng(seed)
    out = np.empty(n_boot)
    chunk = max(1, 2_000_000 // max(1, s * n))
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        seeds = rng.integers(0, s, (b, s))
        imgs = rng.integers(0, n, (b, n))
        # mean over drawn seeds and drawn images = mean over (seed, image) of d[seeds, imgs]
        per_seed = np.take_along_axis(d[seeds], imgs[:, None, :].repeat(s, 1), axis=2)  # [b, s, n]
        out[start:start + b] = per_seed.mean((1, 2))
    return out


def bootstrap_stat(stat: Callable[[np.ndarray, np.ndarray], np.ndarray], n_seeds: int, n_images: int,
                   n_boot: int = 2000, seed: int = 0, chunk: int = 500) -> np.ndarray:
    """Two-way bootstrap replicates ``[n_boot]`` of any statistic, computed in batches:
    ``stat(seed_idx [B, S], image_idx [B, n]) -> [B]``, one row per replicate. Replicate ``b``
    draws its ``S`` seeds, then its ``n`` images, with replacement, in that order."""
    rng = np.random.default_rng(seed)
    draws = [(rng.integers(0, n_seeds, n_seeds), rng.integers(0, n_images, n_images)) for _ in range(n_boot)]
    out = [np.asarray(stat(np.array([d[0] for d in draws[i:i + chunk]]), np.array([d[1] for d in draws[i:i + chunk]])))
           for i in range(0, n_boot, chunk)]
    return np.concatenate(out) if out else np.empty(0)


def percentile_ci(reps: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    a = (1 - level) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci(d: np.ndarray, n_boot: int = 10000, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float, float]:
    """(ci_low, ci_high, bootstrap SE) of the mean of ``d [n]`` or ``[S, n]``."""
    reps = bootstrap_means(d, n_boot, seed)
    lo, hi = percentile_ci(reps, level)
    return lo, hi, float(reps.std(ddof=1)) if len(reps) > 1 else 0.0


def sign_flip_p(d: np.ndarray, n_perm: int = 10000, seed: int = 0) -> float:
    """Two-sided sign-flip (paired permutation) p-value of the mean of ``d`` (``[n]``, or
    ``[S, n]`` averaged over seeds first). 1.0 when every difference is 0."""
    x = as_2d(d).mean(0)
    n = len(x)
    obs = abs(x.mean())
    if not np.any(x):
        return 1.0
    tol = 1e-12 * max(1.0, obs)
    if n <= 16:  # exact: all 2^n sign patterns
        signs = np.array(list(product((-1.0, 1.0), repeat=n)))
        stats = np.abs(signs @ x) / n
        return float(np.mean(stats >= obs - tol))
    rng = np.random.default_rng(seed)
    hits = 0
    chunk = max(1, 1_000_000 // n)
    for start in range(0, n_perm, chunk):
        b = min(chunk, n_perm - start)
        signs = rng.integers(0, 2, (b, n)) * 2.0 - 1.0
        hits += int(np.sum(np.abs(signs @ x) / n >= obs - tol))
    return (1 + hits) / (1 + n_perm)


def permutation_stat(stat: Callable[[np.ndarray], np.ndarray], n_images: int, n_perm: int = 2000,
                     seed: int = 0, chunk: int = 500) -> float:
    """Two-sided p-value of a paired statistic computed in batches, ``stat(swap [B, n] bool) -> [B]``,
    where ``swap[b, i]`` exchanges the two methods' outputs for image ``i`` in permutation ``b``;
    a row of all False gives the observed value."""
    obs = abs(float(np.asarray(stat(np.zeros((1, n_images), bool)))[0]))
    rng = np.random.default_rng(seed)
    swaps = np.array([rng.integers(0, 2, n_images).astype(bool) for _ in range(n_perm)]).reshape(n_perm, n_images)
    hits = sum(int(np.sum(np.abs(np.asarray(stat(swaps[i:i + chunk]))) >= obs - 1e-12 * max(1.0, obs)))
               for i in range(0, n_perm, chunk))
    return (1 + hits) / (1 + n_perm)


def mde80(se: float) -> float:
    """Minimum detectable difference at 80% power, two-sided alpha 0.05, for standard error ``se``."""
    return MDE_FACTOR * se


def paired_rate_n(delta: float, discordant: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Paired test images needed to detect a difference ``delta`` between two rates with
    McNemar's test, when a share ``discordant`` (= p10 + p01) of the pairs disagree
    (Connor 1987: n = (z_a sqrt(psi) + z_b sqrt(psi - delta^2))^2 / delta^2)."""
    from statistics import NormalDist

    if not 0 < abs(delta) <= discordant <= 1:
        raise ValueError(f"need 0 < |delta| <= discordant <= 1, got delta={delta}, discordant={discordant}")
    za = NormalDist().inv_cdf(1 - alpha / 2)
    zb = NormalDist().inv_cdf(power)
    n = (za * math.sqrt(discordant) + zb * math.sqrt(discordant - delta ** 2)) ** 2 / delta ** 2
    return int(math.ceil(n))


def paired_summary(d: np.ndarray, higher_is_better: bool, n_boot: int = 10000, n_perm: int = 10000,
                   seed: int = 0) -> dict:
    """Everything compare reports for a per-image metric: ``delta`` (mean of ``d``), 95% CI,
    bootstrap SE, p, ``mde80``, the counts and the verdict (``candidate`` / ``reference`` when
    the CI excludes 0 and p < 0.05, else ``no detectable difference``)."""
    d = as_2d(d)
    lo, hi, se = bootstrap_ci(d, n_boot, seed)
    delta = float(d.mean())
    p = sign_flip_p(d, n_perm, seed)
    if (lo > 0 or hi < 0) and p < 0.05:
        verdict = "candidate" if (delta > 0) == higher_is_better else "reference"
    else:
        verdict = "no detectable difference"
    return {"delta": delta, "ci_low": lo, "ci_high": hi, "se": se, "p": p,
            "mde80": mde80(se), "n": int(d.shape[1]), "n_seeds": int(d.shape[0]), "verdict": verdict}
