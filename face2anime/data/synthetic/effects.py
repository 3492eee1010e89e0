"""Whole-image effects on the planar float32 (3, H, W) canvas: low contrast (a hard kind),
blur, and the fixed sensor-noise bank that images crop from."""
from __future__ import annotations

import math

import numpy as np

_NOISE_BANKS: dict[int, np.ndarray] = {}


def noise_bank(size: int) -> np.ndarray:
    """A fixed planar (3, size+32, size+32) standard-normal field; images use random crops.

    Cheaper than fresh noise per image and just as deterministic (fixed seed)."""
    bank = _NOISE_BANKS.get(size)
    if bank is None:
        bank = np.random.default_rng(20240611).standard_normal((3, size + 32, size + 32), dtype=np.float32)
        _NOISE_BANKS[size] = bank
    return bank


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Approximate Gaussian blur of a planar (3, H, W) image with up to 4 separable
    [w, 1-2w, w] passes (edges replicated); sigma is capped at ~1.4 px."""
    var = min(sigma * sigma, 2.0)
    passes = int(math.ceil(var / 0.5))
    wgt = var / (2.0 * passes)
    for _ in range(passes):
        for ax in (1, 2):
            t = img * (1.0 - 2.0 * wgt)
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[ax], hi[ax] = slice(None, -1), slice(1, None)
            t[tuple(hi)] += wgt * img[tuple(lo)]
            t[tuple(lo)] += wgt * img[tuple(hi)]
            e0 = [slice(None)] * 3
            e1 = [slice(None)] * 3
            e0[ax], e1[ax] = slice(0, 1), slice(-1, None)
            t[tuple(e0)] += wgt * img[tuple(e0)]
            t[tuple(e1)] += wgt * img[tuple(e1)]
            img = t
    return img


def low_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pull a (3, H, W) image towards its (jittered) mean grey, keeping 20-32% of the contrast."""
    c = rng.uniform(0.2, 0.32)
    grey = img.mean() * rng.uniform(0.9, 1.1)
    return grey + (img - grey) * c
