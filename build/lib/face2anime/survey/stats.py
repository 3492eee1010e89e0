"""Statistics for the rating survey: crossed bootstrap CIs, paired tests and rater agreement.

Ratings of one method and question form a matrix raters x faces (NaN where a rater did not
rate). Raters and faces are both random samples, so CIs resample *both* (a crossed, two-way
bootstrap), not single ratings, which would treat 5 answers of one person as independent.
"""
from __future__ import annotations

import math

import numpy as np


def crossed_bootstrap(m: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of ``m`` (raters x faces, NaN = missing), resampling raters and faces
    with replacement; returns the ``n_boot`` means (NaN where a resample holds no value).

    Vectorised: with draw counts ``c_r`` (per rater) and ``c_f`` (per face) of one resample,
    its mean is ``c_r M c_f / c_r W c_f`` with ``M`` the zero-filled ratings and ``W`` the mask.
    """
    n_r, n_f = m.shape
    mask = ~np.isnan(m)
    vals = np.where(mask, m, 0.0)
    cr = np.stack([np.bincount(rng.integers(0, n_r, n_r), minlength=n_r) for _ in range(n_boot)]).astype(float)
    cf = np.stack([np.bincount(rng.integers(0, n_f, n_f), minlength=n_f) for _ in range(n_boot)]).astype(float)
    tot = np.einsum("bi,ij,bj->b", cr, vals, cf)
    cnt = np.einsum("bi,ij,bj->b", cr, mask.astype(float), cf)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, tot / np.where(cnt > 0, cnt, 1), np.nan)


def mean_ci(m: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95) -> dict:
    """Mean of the non-missing values of ``m`` with a percentile crossed-bootstrap CI."""
    n = int((~np.isnan(m)).sum())
    if n == 0:
        return {"mean": None, "ci": [None, None], "n": 0, "n_raters": 0}
    boots = crossed_bootstrap(m, n_boot, rng)
    boots = boots[~np.isnan(boots)]
    a = (1 - level) / 2
    lo, hi = (np.quantile(boots, [a, 1 - a]) if len(boots) else (math.nan, math.nan))
    return {"mean": float(np.nanmean(m)), "ci": [_f(lo), _f(hi)], "n": n,
            "n_raters": int((~np.isnan(m)).any(axis=1).sum())}


def paired(a: np.ndarray, b: np.ndarray, n_boot: int, rng: np.random.Generator, level: float = 0.95) -> dict:
    """``b - a`` for ratings of the same raters x faces: mean difference with a crossed-bootstrap
    CI, and a Wilcoxon signed-rank test over raters (each rater's mean difference is one pair:
    raters are independent, their answers are not)."""
    d = b - a                                   # NaN unless the rater rated both
    per_rater = np.array([np.nanmean(r) for r in d if (~np.isnan(r)).any()])
    out = mean_ci(d, n_boot, rng, level)
    out = {"delta": out["mean"], "ci": out["ci"], "n_pairs": out["n"], "n_raters": len(per_rater),
           "p_wilcoxon": wilcoxon_p(per_rater)}
    return out


def wilcoxon_p(diffs: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p of ``diffs`` (zeros dropped); None with no non-zero pair."""
    d = np.asarray(diffs, float)
    d = d[~np.isnan(d)]
    if not np.any(d != 0):
        return None
    from scipy.stats import wilcoxon

    p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    return p if math.isfinite(p) else None


def sign_test_p(wins: int, losses: int) -> float | None:
    """Two-sided exact binomial (sign) test of ``wins`` vs ``losses`` (ties left out)."""
    if wins + losses == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def krippendorff_alpha(data: np.ndarray, level: str = "ordinal") -> float | None:
    """Krippendorff's alpha of ``data`` (units x coders, NaN = missing) at ``level``
    ('nominal', 'ordinal' or 'interval'); None when undefined (fewer than 2 pairable values
    or no variation at all).

    Built from the coincidence matrix as in Krippendorff (2011), "Computing Krippendorff's
    Alpha-Reliability": alpha = 1 - D_o / D_e.
    """
    if level not in ("nominal", "ordinal", "interval"):
        raise ValueError(f"unknown level {level!r}")
    units = [row[~np.isnan(row)] for row in np.asarray(data, float)]
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    values = np.unique(np.concatenate(units))
    if len(values) < 2:
        return None
    index = {v: i for i, v in enumerate(values)}
    k = len(values)
    o = np.zeros((k, k))
    for u in units:
        counts = np.zeros(k)
        for v in u:
            counts[index[v]] += 1
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(u) - 1)
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if level == "nominal":
        delta2 = 1.0 - np.eye(k)
    elif level == "interval":
        delta2 = (values[:, None] - values[None, :]) ** 2
    else:
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        delta2 = np.zeros((k, k))
        for c in range(k):
            for g in range(k):
                lo, hi = min(c, g), max(c, g)
                delta2[c, g] = (cum[hi + 1] - cum[lo] - (n_c[c] + n_c[g]) / 2) ** 2
    d_o = (o * delta2).sum() / n
    d_e = (np.outer(n_c, n_c) * delta2).sum() / (n * (n - 1))
    if d_e == 0:
        return None
    return float(1.0 - d_o / d_e)


def _f(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None
