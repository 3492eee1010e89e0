"""A photo-like rendering of the synthetic human domain: the development stand-in for real photos.

The synthetic "photos" are clean renders; real portraits are not. This module turns a rendered
human image into something with the statistics that make real small-data training hard and
that fool naive metrics: skin and background texture at several scales, a directional light
with a colour cast, vignetting, sensor noise (signal-dependent shot noise plus read noise,
with a little colour noise), a slight defocus, and JPEG compression at a random quality.
Characters are left as they are (anime art is flat).

Everything is deterministic per (seed, image index): ``photo_like(img, seed, idx)`` gives the
same bytes on every machine. Part boxes and attributes do not change (no geometric warp),
so the synthetic ground truth stays valid.

Used by ``download`` when ``download.synthetic.photo_like`` is true.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

_STREAM = 0x9E3779B1  # separates this module's random stream from the renderer's


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Value noise: a ``cells`` x ``cells`` random grid bicubically upsampled to ``size``, in [-1, 1]."""
    grid = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)
    img = Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img, dtype=np.float32), -1.0, 1.0)


def photo_like(img: np.ndarray, seed: int, idx: int) -> np.ndarray:
    """Photo-like version of one rendered image ``[H, W, 3]`` uint8 (square) -> ``[H, W, 3]`` uint8."""
    rng = np.random.default_rng([seed, _STREAM, idx])
    h, w, _ = img.shape
    x = img.astype(np.float32) / 255.0

    # texture: multi-scale luminance modulation (pores, fabric, wall grain), a few percent
    tex = sum(amp * _smooth_noise(rng, h, cells) for cells, amp in
              ((4, 0.05), (max(4, h // 6), 0.04), (max(4, h // 2), 0.03)))
    x = x * (1.0 + tex[..., None])

    # lighting: a directional gradient with a warm/cool cast, and vignetting
    ang = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u = ((xx / max(w - 1, 1) - 0.5) * np.cos(ang) + (yy / max(h - 1, 1) - 0.5) * np.sin(ang))
    light = 1.0 + rng.uniform(0.15, 0.45) * u
    cast = 1.0 + rng.uniform(-0.08, 0.08, 3).astype(np.float32)
    r2 = ((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) / 0.5
    vignette = 1.0 - rng.uniform(0.1, 0.35) * r2
    x = x * (light * vignette)[..., None] * cast
    x = x * rng.uniform(0.8, 1.15) + rng.uniform(-0.04, 0.04)  # exposure

    # sensor: shot noise (variance ~ signal) + read noise + a little chroma noise
    gain = rng.uniform(0.004, 0.012)
    x = np.clip(x, 0.0, 1.0)
    x = x + rng.standard_normal(x.shape).astype(np.float32) * np.sqrt(gain * x + 1e-6)
    x = x + rng.standard_normal((h, w, 1)).astype(np.float32) * rng.uniform(0.005, 0.02)
    x = x + rng.standard_normal(x.shape).astype(np.float32) * 0.006
    out = Image.fromarray((np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))

    # optics and codec: slight defocus, then JPEG at a random quality
    out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.0, 0.6) * h / 128))
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=int(rng.integers(35, 85)))
    buf.seek(0)
    with Image.open(buf) as jpg:
        return np.asarray(jpg.convert("RGB")).copy()
