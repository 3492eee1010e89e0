"""Objective measures used by evaluation, one function (or small group) per metric: KID,
SSIM of edge maps, CAM overlap, the k-NN realism score, the cycle error, the share of flat
pixels and char_rate per source kind.

All functions are pure (tensors or arrays in, numbers out) so they can be tested on
hand-made cases; which images and which network's features go in is
:mod:`face2anime.evaluation.evaluate`'s business.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from face2anime.core.params import UserError
from face2anime.data.images import is_clean
from face2anime.data.ops import gaussian_blur

#: realism scores are capped here (an exact copy of a real image would score inf)
REALISM_CAP = 10.0


# --------------------------------------------------------------------------- KID
def polynomial_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """KID's kernel ``k(x, y) = (x.y / d + 1) ** 3`` for features ``[N, d]``, ``[M, d]``."""
    d = a.shape[1]
    return (a @ b.T / d + 1.0) ** 3


def mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> float:
    """Unbiased squared MMD between feature sets ``x [m, d]`` and ``y [n, d]`` (m, n >= 2)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(x: torch.Tensor, y: torch.Tensor, n_subsets: int = 100, subset_size: int = 50,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception-style Distance between features ``x`` and ``y``: the mean and std of the
    unbiased MMD^2 over ``n_subsets`` random subsets of ``min(subset_size, len(x), len(y))``
    (Binkowski et al. 2018). Features are whatever network the caller chose (here: the judge)."""
    x, y = x.double(), y.double()
    k = min(subset_size, len(x), len(y))
    if k < 2:
        raise ValueError("KID needs at least 2 samples per set")
    g = torch.Generator().manual_seed(seed)
    # kernels once, then each subset is a sub-matrix (the same numbers as mmd2_unbiased per subset)
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    vals = []
    for _ in range(n_subsets):
        ix, iy = torch.randperm(len(x), generator=g)[:k], torch.randperm(len(y), generator=g)[:k]
        sxx, syy = kxx[ix][:, ix], kyy[iy][:, iy]
        vals.append(float((sxx.sum() - sxx.diagonal().sum()) / (k * (k - 1))
                          + (syy.sum() - syy.diagonal().sum()) / (k * (k - 1)) - 2 * kxy[ix][:, iy].mean()))
    t = torch.tensor(vals)
    return float(t.mean()), float(t.std()) if n_subsets > 1 else 0.0


# --------------------------------------------------------------------------- edge SSIM
def gray(x: torch.Tensor) -> torch.Tensor:
    """RGB ``[B,3,H,W]`` (any range) -> luma ``[B,1,H,W]`` (ITU-R BT.601)."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def sobel_edges(x: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of the luma of ``x [B,3,H,W]`` in [0,1] -> ``[B,1,H,W]``, scaled to [0,1]
    per image (so a uniform brightness or contrast change does not change the edge map)."""
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=x.dtype, device=x.device)
    k = torch.stack([kx, kx.T]).unsqueeze(1)
    g = F.conv2d(F.pad(gray(x), (1, 1, 1, 1), mode="replicate"), k)
    mag = g.pow(2).sum(1, keepdim=True).sqrt()
    return mag / mag.flatten(1).amax(1).clamp_min(1e-8).view(-1, 1, 1, 1)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM of single-channel images ``[B,1,H,W]`` in [0,1] (Gaussian window,
    Wang et al. 2004 constants) -> ``[B]``."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return gaussian_blur(t, window, sigma, pad_mode="reflect")

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


def edge_ssim(src: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Structure kept by a translation: SSIM between the Sobel edge maps of source and output
    (``[B,3,H,W]`` in [0,1]) -> ``[B]``. Insensitive to the colour/style change itself."""
    return ssim(sobel_edges(src), sobel_edges(out))


# --------------------------------------------------------------------------- CAM overlap
def soft_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Overlap of two non-negative maps ``[B,H,W]``: sum(min) / sum(max) -> ``[B]`` in [0,1]."""
    num = torch.minimum(a, b).flatten(1).sum(1)
    den = torch.maximum(a, b).flatten(1).sum(1).clamp_min(1e-8)
    return num / den


# --------------------------------------------------------------------------- realism (k-NN)
def knn_radii(ref: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each reference feature ``[M, d]`` to its k-th nearest other reference feature."""
    if len(ref) <= k:
        raise UserError(f"realism needs more than evaluate.realism_k = {k} real character images, got {len(ref)}")
    d = torch.cdist(ref, ref)
    return d.kthvalue(k + 1, dim=1).values        # +1: the point itself is at distance 0


def realism_scores(x: torch.Tensor, ref: torch.Tensor, k: int) -> np.ndarray:
    """Realism score (Kynkaenniemi et al. 2019) of features ``x [N, d]`` against real features
    ``ref [M, d]``: ``max_j r_j / |x - ref_j|`` over the half of ``ref`` with the smallest k-NN
    radii ``r_j`` (the paper's pruning of outliers); >= 1 means inside some real sample's
    k-NN ball. Capped at :data:`REALISM_CAP` (an exact copy of a real image would be inf)."""
    r = knn_radii(ref, k)
    keep = r <= r.median()
    ref, r = ref[keep], r[keep]
    d = torch.cdist(x, ref).clamp_min(1e-12)
    return (r[None] / d).amax(1).clamp_max(REALISM_CAP).numpy()


# --------------------------------------------------------------------------- cycle error
# --------------------------------------------------------------------------- flat share
#: a pixel is flat when its luma ([0, 1]) changes by less than this to the right and below, summed
FLAT_STEP = 0.025


def flat_share(x: torch.Tensor, step: float = FLAT_STEP) -> torch.Tensor:
    """Per image ``[N]``: the share of flat pixels of ``x [N,3,H,W]`` in [0, 1], those whose luma
    ``g`` has ``|g[i, j+1] - g[i, j]| + |g[i+1, j] - g[i, j]| < step`` (the last row and column,
    which lack a neighbour, are left out). Flat-shaded drawings score high, photos in between,
    noise-like texture low: the number says how much of an image is texture, not whether it is
    anime (a flat grey image scores 1)."""
    g = gray(x.float())
    dx = (g[..., :-1, 1:] - g[..., :-1, :-1]).abs()
    dy = (g[..., 1:, :-1] - g[..., :-1, :-1]).abs()
    return ((dx + dy) < step).float().mean(dim=(1, 2, 3))


def cycle_l1(rec: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image mean absolute error of a cycle reconstruction ``rec`` against ``target``
    (both ``[B,3,H,W]`` in the model's [-1, 1] range, as in the loss) -> ``[B]``."""
    return (rec - target).abs().flatten(1).mean(1)


# --------------------------------------------------------------------------- char_rate per kind
def char_rate_by_kind(is_char: np.ndarray, sources: pd.DataFrame) -> dict | None:
    """char_rate (from the per-image verdicts ``is_char``) of clean vs hard sources and per
    ``hard_kind`` (``{kind: {char_rate, n}}``); None when the manifest does not label clean/hard."""
    if "clean" not in sources.columns or sources["clean"].isna().any():
        return None
    clean = is_clean(sources["clean"]).to_numpy()
    kinds = sources["hard_kind"].fillna("").astype(str).to_numpy() if "hard_kind" in sources.columns \
        else np.where(clean, "", "hard")

    def group(mask: np.ndarray) -> dict:
        return {"char_rate": float(is_char[mask].mean()) if mask.any() else None, "n": int(mask.sum())}

    out = {"clean": group(clean), "hard": group(~clean)}
    out.update({k: group(kinds == k) for k in sorted(set(kinds[~clean])) if k})
    return out
