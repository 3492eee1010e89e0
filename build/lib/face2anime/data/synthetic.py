"""Procedural two-domain face data set: human "photos" and anime "characters".

Both domains are drawn from ONE latent attribute space (:data:`ATTRIBUTES`), so every
image has ground-truth attributes that a good photo->anime translation must preserve
(hair colour and style, skin tone, eye colour, mouth state, glasses, face shape,
background). The shared attributes are rendered the same way in both domains (same
hue families, same silhouettes), so an attribute predictor trained on characters can
read them off translated humans.

What separates the domains on purpose:

* always-present, decisive local cues: the EYES (small almond eyes with iris, sclera and
  lid line vs large anime eyes with big white highlights and a thick lash line), the
  MOUTH (shaded lips vs a simple line/D-shape) and, less strongly, the nose (soft
  shading with nostrils vs a tiny stroke);
* global cues (noise level, blur, outline thickness on face/hair contours incl. none,
  shading strength, background and hair texture) are drawn from the SAME distributions in
  both domains; only the kind of shading (soft gradient vs two-tone cel) is skewed
  (70/30) so each domain keeps its look. A human-vs-character classifier therefore has
  to look at eyes and mouth, which is what Grad-CAM selection relies on.

A share of the images is *hard* (``clean=False``, see :data:`HARD_KINDS`): occluded
eyes or mouth, clutter, low contrast, or a small off-centre face. Part boxes always say
where the parts are (for occlusions: where they would be). Both domains can have hard
images (``hard_share`` for humans, ``hard_share_character`` for characters): with hard
humans only, "is something in the way" becomes a class cue, and a judge trained on such
data calls an occluded or tiny *character* "human".

Everything is deterministic per seed; each image has its own RNG derived from
``(seed, domain, index)``, so results do not depend on generation order. Rendering is
vectorised numpy on small windows (signed-distance shapes with 1-px anti-aliasing), so
one core renders and writes several hundred 128-px PNGs per second (:func:`bench`).
"""
from __future__ import annotations

import functools
import math
import struct
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image

from face2anime.core.io import atomic_path, save_image
from face2anime.core.params import UserError

# --------------------------------------------------------------------------- public constants
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair_color": ("black", "brown", "blonde", "red", "blue"),
    "hair_style": ("short", "long", "bob", "spiky"),
    "skin_tone": ("light", "medium", "dark"),
    "eye_color": ("brown", "blue", "green", "violet"),
    "mouth": ("closed", "open", "smile"),
    "glasses": ("no", "yes"),
    "face_shape": ("round", "oval", "square"),
    "background": ("blue", "green", "pink", "grey"),
}
"""Shared latent attributes -> their categories (strings). Same space for both domains."""

PARTS: tuple[str, ...] = ("leye", "reye", "mouth", "nose")
"""Part boxes in the manifest; ``leye`` is the eye on the IMAGE's left (smaller x)."""

HARD_KINDS: tuple[str, ...] = ("occluded_eyes", "occluded_mouth", "clutter", "low_contrast",
                               "small_offcentre")
"""Kinds of hard (``clean=False``) human images."""

DOMAINS: tuple[str, ...] = ("human", "character")

CEL_SHARE: dict[str, float] = {"human": 0.3, "character": 0.7}
"""Share of images with two-tone cel shading (the rest: soft gradients). The only global
style cue whose distribution differs by domain; set both to 0.5 to remove it entirely."""
_DOMAIN_ID = {"human": 1, "character": 2}
_PREFIX = {"human": "h", "character": "c"}
_BOX_KEYS = ("x0", "y0", "x1", "y1")
_MIN_SIZE, _MAX_SIZE = 16, 1024
_SMALL_WINDOW = 1600   # pixels; below this, painting skips the sparse/bbox bookkeeping

# Base colours (RGB in [0,1]); each image jitters them slightly within the hue family.
_HAIR = {"black": (0.13, 0.12, 0.14), "brown": (0.46, 0.28, 0.14), "blonde": (0.94, 0.81, 0.45),
         "red": (0.82, 0.24, 0.14), "blue": (0.24, 0.42, 0.86)}
_SKIN = {"light": (0.97, 0.85, 0.75), "medium": (0.84, 0.63, 0.46), "dark": (0.50, 0.34, 0.24)}
_EYE = {"brown": (0.52, 0.29, 0.10), "blue": (0.18, 0.50, 0.96), "green": (0.18, 0.70, 0.28),
        "violet": (0.62, 0.28, 0.88)}
_BG = {"blue": (0.55, 0.75, 0.96), "green": (0.58, 0.84, 0.52), "pink": (0.97, 0.68, 0.80),
       "grey": (0.62, 0.62, 0.64)}
_FACE = {"round": (1.0, 1.06, 2.0), "oval": (0.86, 1.2, 2.0), "square": (0.98, 1.08, 3.6)}  # a, b, p
_INK = np.array((0.10, 0.07, 0.08), np.float32)


# --------------------------------------------------------------------------- latents
def image_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    """The RNG of one image, a pure function of ``(seed, domain, index)``."""
    return np.random.default_rng(
        np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, _DOMAIN_ID[domain], index]))


def _draw_attributes(rng: np.random.Generator) -> dict[str, str]:
    """Uniform independent categorical draws; always the first draws of an image's RNG."""
    return {k: v[int(rng.integers(len(v)))] for k, v in ATTRIBUTES.items()}


def sample_attributes(seed: int, domain: str, index: int) -> dict[str, str]:
    """Ground-truth attributes of image ``index`` of ``domain`` without rendering it."""
    return _draw_attributes(image_rng(seed, domain, index))


def hard_assignment(n_images: int, hard_share: float, seed: int, domain: str = "human") -> dict[int, str]:
    """Which indices of ``domain`` are hard, and of which kind.

    Exactly ``round(hard_share * n_images)`` indices, chosen by a seeded permutation (its own
    stream per domain); kinds are dealt round-robin over :data:`HARD_KINDS`, so they are balanced.
    """
    k = int(round(hard_share * n_images))
    entropy = [seed & 0xFFFFFFFFFFFFFFFF, 7919] + ([] if domain == "human" else [_DOMAIN_ID[domain]])
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    chosen = rng.permutation(n_images)[:k]
    return {int(i): HARD_KINDS[j % len(HARD_KINDS)] for j, i in enumerate(chosen)}


# --------------------------------------------------------------------------- signed distances
# Every shape is a signed distance in pixels (negative inside) over a window's coordinates
# X (1, w) and Y (h, 1) (broadcast). Coverage = clip(0.5 - sd, 0, 1) gives 1-px anti-aliasing.
def _ellipse_sd(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, a: float,
                b: float | np.ndarray, theta: float = 0.0) -> np.ndarray:
    """Ellipse, first-order distance (d^2 - 1) / |grad d^2|: exact at the edge, which is
    all anti-aliasing and unions/intersections near edges need; cheap on (1,w)x(h,1) grids."""
    dx, dy = X - cx, Y - cy
    if theta:
        c, s = math.cos(theta), math.sin(theta)
        dx, dy = c * dx + s * dy, -s * dx + c * dy
    u, v = dx / a, dy / b
    d2 = u * u + v * v
    g = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    np.maximum(g, 0.05 / np.max(b) if np.ndim(b) else 0.05 / max(a, b), out=g)
    d2 -= 1.0
    d2 /= g
    d2 *= 0.5
    return d2


def _superellipse_sd(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, a: float, b: float,
                     p: float) -> np.ndarray:
    if p == 2.0:
        return _ellipse_sd(X, Y, cx, cy, a, b)
    u, v = np.abs(X - cx) / a, np.abs(Y - cy) / b
    up, vp = u ** p, v ** p
    d = (up + vp) ** (1.0 / p)
    dp = d ** (p - 1.0) + 1e-6
    g = np.sqrt((up / (u + 1e-6) / a) ** 2 + (vp / (v + 1e-6) / b) ** 2) / dp
    return (d - 1.0) / np.clip(g, 1.0 / max(a, b), 2.0 / min(a, b))


def _curve_sd(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, hw: float, k: float,
              width: float) -> np.ndarray:
    """A thick parabolic stroke y = cy + k*(x-cx)^2 for |x-cx| <= hw, round caps."""
    dx = X - cx
    perp = np.abs(Y - (cy + k * dx * dx)) / np.sqrt(1.0 + (2.0 * k * dx) ** 2)
    ex = np.maximum(np.abs(dx) - hw, 0.0)
    return np.sqrt(perp * perp + ex * ex) - 0.5 * width


def _segment_sd(X: np.ndarray, Y: np.ndarray, x0: float, y0: float, x1: float, y1: float,
                width: float) -> np.ndarray:
    """A capsule (thick segment with round caps)."""
    vx, vy = x1 - x0, y1 - y0
    L2 = vx * vx + vy * vy + 1e-9
    t = np.clip(((X - x0) * vx + (Y - y0) * vy) / L2, 0.0, 1.0)
    return np.sqrt((X - x0 - t * vx) ** 2 + (Y - y0 - t * vy) ** 2) - 0.5 * width


def _tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1."""
    return np.abs((x % 1.0) * 2.0 - 1.0)


# --------------------------------------------------------------------------- canvas
@dataclass
class _Win:
    """A clipped rectangular window of the canvas with its pixel-centre coordinates."""
    sy: slice
    sx: slice
    X: np.ndarray   # (1, w) float32
    Y: np.ndarray   # (h, 1) float32


@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates: xs (1, size) and ys (size, 1), float32 (read-only, shared)."""
    xs = (np.arange(size, dtype=np.float32) + 0.5)[None, :]
    ys = (np.arange(size, dtype=np.float32) + 0.5)[:, None]
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


class _Canvas:
    """A planar float32 (3, H, W) RGB image in [0, 1] with windowed signed-distance painting.

    Paints made with ``part=`` grow that part's pixel box (coverage > 0.25).
    """

    def __init__(self, size: int, color: np.ndarray):
        self.size = size
        self.img = np.empty((3, size, size), np.float32)     # planar: fast per-channel broadcasts
        self.img[:] = np.asarray(color, np.float32)[:, None, None]
        self.xs, self.ys = _grid(size)
        self.boxes: dict[str, list[int]] = {}
        self.weak_boxes: dict[str, list[int]] = {}

    def win(self, x0: float, y0: float, x1: float, y1: float, pad: float = 2.0) -> _Win | None:
        """The window covering [x0,x1]x[y0,y1] (+pad px), or None when it is off the image."""
        s = self.size
        ix0, iy0 = max(int(x0 - pad), 0), max(int(y0 - pad), 0)
        ix1, iy1 = min(int(math.ceil(x1 + pad)), s), min(int(math.ceil(y1 + pad)), s)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return _Win(slice(iy0, iy1), slice(ix0, ix1), self.xs[:, ix0:ix1], self.ys[iy0:iy1, :])

    def paint(self, w: _Win, sd: np.ndarray, color: np.ndarray | Sequence[float],
              alpha: float = 1.0, part: str | None = None) -> None:
        """Blend ``color`` ((3,) or (3, h, w)) where ``sd < 0`` (1-px soft edge) with opacity
        ``alpha``; with ``part``, the painted pixels also grow that part's box.

        Small windows are blended densely; in large ones only the covered pixels (thin
        shapes such as outlines) or the covered bounding box (big shapes) are touched."""
        cov = np.subtract(0.5, sd, dtype=np.float32)
        np.maximum(cov, 0.0, out=cov)
        np.minimum(cov, 1.0, out=cov)
        if alpha != 1.0:
            cov *= alpha
        hw = (w.Y.shape[0], w.X.shape[1])
        if cov.shape != hw:
            cov = np.broadcast_to(cov, hw)
        color = np.asarray(color, np.float32)
        if color.ndim == 1:
            color = color[:, None, None]
        elif color.shape[1:] != hw:
            color = np.broadcast_to(color, (3, *hw))
        if cov.size <= _SMALL_WINDOW:
            region = self.img[:, w.sy, w.sx]
            diff = np.subtract(color, region, dtype=np.float32)
            diff *= cov
            region += diff
            if part is not None:
                self._grow(part, w, cov)
            return
        r, c = np.nonzero(cov)
        if r.size == 0:
            if part is not None:
                self._grow(part, w, cov)
            return
        if r.size * 3 < cov.size:                           # sparse: touched pixels only
            ys, xs = r + w.sy.start, c + w.sx.start
            px = self.img[:, ys, xs]
            col = color[:, r, c] if color.shape[1:] == hw else color[:, :, 0]
            px += (col - px) * cov[r, c]
            self.img[:, ys, xs] = px
        else:                                               # dense over the covered bbox
            r0, r1, c0, c1 = int(r[0]), int(r[-1]) + 1, int(c.min()), int(c.max()) + 1
            region = self.img[:, w.sy.start + r0:w.sy.start + r1, w.sx.start + c0:w.sx.start + c1]
            if color.shape[1:] == hw:
                color = color[:, r0:r1, c0:c1]
            diff = np.subtract(color, region, dtype=np.float32)
            diff *= cov[r0:r1, c0:c1]
            region += diff
        if part is not None:
            self._grow(part, w, cov)

    def _grow(self, part: str, w: _Win, cov: np.ndarray) -> None:
        """Grow ``part``'s box by the pixels with coverage > 0.25, and its fallback box (for
        parts too small to cover any pixel that much) by the window."""
        on = cov > 0.25
        rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
        boxes = [(self.weak_boxes, [w.sx.start, w.sy.start, w.sx.stop, w.sy.stop])]
        if rows.size:
            boxes.append((self.boxes, [w.sx.start + int(cols[0]), w.sy.start + int(rows[0]),
                                       w.sx.start + int(cols[-1]) + 1, w.sy.start + int(rows[-1]) + 1]))
        for store, (x0, y0, x1, y1) in boxes:
            b = store.get(part)
            store[part] = [x0, y0, x1, y1] if b is None else [
                min(b[0], x0), min(b[1], y0), max(b[2], x1), max(b[3], y1)]

    def part_box(self, part: str) -> tuple[float, float, float, float]:
        """The part's box (x0, y0, x1, y1) normalised to [0, 1], at least one pixel big."""
        b = self.boxes.get(part) or self.weak_boxes.get(part)
        if b is None:
            raise RuntimeError(f"part {part} was not drawn")   # every renderer draws every part
        s = self.size
        return (b[0] / s, b[1] / s, b[2] / s, b[3] / s)


# --------------------------------------------------------------------------- the scene
@dataclass
class _Scene:
    """Continuous per-image parameters (drawn after the attributes from the image RNG)."""
    domain: str
    attrs: dict[str, str]
    hard_kind: str
    size: int
    rng: np.random.Generator
    fx: float = 0.0          # face centre, px
    fy: float = 0.0
    R: float = 0.0           # face unit, px (face half-width ~ R)
    fa: float = 1.0          # face half-axes in face units and superellipse power
    fb: float = 1.0
    fp: float = 2.0
    light: tuple[float, float] = (0.0, -1.0)
    shade_strength: float = 0.3
    cel: bool = False
    outline: float = 0.0     # px, 0 = none
    noise: float = 0.0       # std in [0,1] units
    blur: float = 0.0        # PIL GaussianBlur radius, px
    bg_texture: float = 0.0
    hair_texture: float = 0.0
    hair_shine: float = 0.0
    rng_spike: float = 0.0   # phase of spikes / fringe waves
    fringe_drop: float = 0.0  # how far the bangs reach down (face units)
    skin: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    hair: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    eye: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))
    bg: np.ndarray = field(default_factory=lambda: np.zeros(3, np.float32))

    def px(self, u: float, v: float) -> tuple[float, float]:
        """Face units -> pixels."""
        return self.fx + u * self.R, self.fy + v * self.R


def _jitter(rng: np.random.Generator, base: Sequence[float], scale: float = 1.0) -> np.ndarray:
    c = np.asarray(base, np.float32) * rng.uniform(0.92, 1.06) + rng.uniform(-0.03, 0.03, 3) * scale
    return np.clip(c, 0.0, 1.0).astype(np.float32)


def _make_scene(attrs: dict[str, str], domain: str, hard_kind: str, size: int,
                rng: np.random.Generator) -> _Scene:
    s = _Scene(domain, attrs, hard_kind, size, rng)
    s.R = size * rng.uniform(0.27, 0.31)
    s.fx = size * (0.5 + rng.uniform(-0.03, 0.03))
    s.fy = size * (0.54 + rng.uniform(-0.02, 0.02))
    fa, fb, fp = _FACE[attrs["face_shape"]]
    s.fa, s.fb, s.fp = fa * rng.uniform(0.97, 1.03), fb * rng.uniform(0.97, 1.03), fp
    if hard_kind == "small_offcentre":
        s.R *= rng.uniform(0.40, 0.55)
        mx0, mx1 = 1.55 * s.R, size - 1.55 * s.R          # keep the whole head inside
        my0, my1 = 1.65 * s.R, size - 1.45 * s.R
        far = rng.uniform(0.6, 1.0)                        # mostly far from the centre
        s.fx = size / 2 + (mx0 - size / 2 if rng.random() < 0.5 else mx1 - size / 2) * far
        s.fy = rng.uniform(my0, my1)
    ang = rng.uniform(-150, -30) * math.pi / 180
    s.light = (math.cos(ang), math.sin(ang))
    # Global style cues: SAME distributions in both domains (only cel-vs-soft is skewed).
    s.shade_strength = rng.uniform(0.1, 0.45)
    s.cel = bool(rng.random() < CEL_SHARE[domain])
    s.outline = 0.0 if rng.random() < 0.4 else rng.uniform(0.6, 2.0) * size / 128
    s.noise = rng.uniform(0.0, 0.045)
    s.blur = rng.uniform(0.0, 0.7) * size / 128
    s.bg_texture = rng.uniform(0.0, 1.0)
    s.hair_texture = rng.uniform(0.0, 1.0)
    s.hair_shine = rng.uniform(0.0, 1.0)
    s.skin = _jitter(rng, _SKIN[attrs["skin_tone"]], 0.5)
    s.hair = _jitter(rng, _HAIR[attrs["hair_color"]])
    s.eye = _jitter(rng, _EYE[attrs["eye_color"]])
    s.bg = _jitter(rng, _BG[attrs["background"]], 0.5)
    s.rng_spike = rng.uniform(0.0, 1.0)
    s.fringe_drop = rng.uniform(0.0, 0.08)
    return s


def _shade(s: _Scene, w: _Win, strength: float | None = None) -> np.ndarray:
    """Multiplicative lighting (h, w) on the head sphere: soft gradient or two-tone cel."""
    k = s.shade_strength if strength is None else strength
    hr = 1.3 * s.R
    t = ((w.X - s.fx) * s.light[0] + (w.Y - (s.fy - 0.1 * s.R)) * s.light[1]) / hr
    q = np.clip((0.25 - t) / 1.1, 0.0, 1.0)
    if s.cel:
        return 1.0 - 0.7 * k * np.clip((q - 0.45) * hr * 0.8 + 0.5, 0.0, 1.0)
    return 1.0 - k * q


def _shaded(color: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(3,) colour x (h, w) factor -> (3, h, w)."""
    return color[:, None, None] * f[None]


def _outline(cv: _Canvas, s: _Scene, w: _Win, sd: np.ndarray, color: np.ndarray) -> None:
    if s.outline > 0:
        cv.paint(w, np.abs(sd + 0.3 * s.outline) - 0.5 * s.outline, color)


# ---- background, clutter, body
def _background(s: _Scene) -> _Canvas:
    size, rng = s.size, s.rng
    cv = _Canvas(size, s.bg)
    g = rng.uniform(0.05, 0.25)                                         # vertical gradient
    fld = 1.0 + g * (0.5 - cv.ys / size)                                # (H, 1)
    if s.bg_texture > 0.05:                          # smooth blotches (blurred look): low-freq waves
        amp = 0.22 * s.bg_texture / 3.0
        for fx, fy, px, py in rng.uniform((1.0, 1.0, 0.0, 0.0), (9.0, 9.0, 6.3, 6.3), (3, 4)):
            fld = fld + (amp * np.cos(cv.xs * (fx / size) + px)) * np.cos(cv.ys * (fy / size) + py)
    np.multiply(np.broadcast_to(fld, (size, size))[None], s.bg[:, None, None], out=cv.img)
    for _ in range(int(rng.integers(0, 4) * s.bg_texture)):            # bokeh discs
        x, y, r = rng.uniform(0, size), rng.uniform(0, size * 0.7), rng.uniform(0.04, 0.1) * size
        w = cv.win(x - r, y - r, x + r, y + r)
        if w:
            cv.paint(w, _ellipse_sd(w.X, w.Y, x, y, r, r) / 3.0, (1.0, 1.0, 0.95), 0.25)
    return cv


def _clutter(cv: _Canvas, s: _Scene) -> None:
    """Busy background: random saturated shapes and face-like blobs (dark dots + line)."""
    size, rng = s.size, s.rng
    for _ in range(int(rng.integers(14, 24))):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        a, b = rng.uniform(0.03, 0.12) * size, rng.uniform(0.03, 0.12) * size
        w = cv.win(x - max(a, b), y - max(a, b), x + max(a, b), y + max(a, b))
        if w:
            col = rng.uniform(0.05, 1.0, 3)
            if rng.random() < 0.5:
                cv.paint(w, _ellipse_sd(w.X, w.Y, x, y, a, b, rng.uniform(0, 3.14)), col)
            else:
                cv.paint(w, _superellipse_sd(w.X, w.Y, x, y, a, b, 6.0), col)
    for _ in range(int(rng.integers(2, 5))):                          # face-like blobs
        r = rng.uniform(0.07, 0.13) * size
        x = rng.choice([rng.uniform(r, 0.22 * size), rng.uniform(0.78 * size, size - r)])
        y = rng.uniform(r, size - r)
        w = cv.win(x - r, y - 1.2 * r, x + r, y + 1.2 * r)
        if not w:
            continue
        cv.paint(w, _ellipse_sd(w.X, w.Y, x, y, r, 1.2 * r), _jitter(rng, _SKIN[rng.choice(list(_SKIN))]))
        for sx in (-0.4, 0.4):
            cv.paint(w, _ellipse_sd(w.X, w.Y, x + sx * r, y - 0.1 * r, 0.13 * r, 0.16 * r), _INK)
        cv.paint(w, _curve_sd(w.X, w.Y, x, y + 0.5 * r, 0.3 * r, 0.0, max(1.0, 0.08 * r)), _INK)


def _body(cv: _Canvas, s: _Scene) -> None:
    R, rng = s.R, s.rng
    cloth = np.clip(rng.uniform(0.1, 0.95, 3), 0, 1).astype(np.float32)
    x, y = s.px(0, 0.55)
    w = cv.win(x - 0.42 * R, y, x + 0.42 * R, s.fy + 2.5 * R)
    if w:
        sd = np.maximum(np.abs(w.X - x) - 0.38 * R, y - w.Y)
        cv.paint(w, sd, _shaded(s.skin * 0.86, _shade(s, w)))
        _outline(cv, s, w, sd, _INK)
    cx, cy = s.px(0, 2.05)
    w = cv.win(cx - 1.8 * R, cy - 0.8 * R, cx + 1.8 * R, s.size)
    if w:
        sd = np.minimum(_ellipse_sd(w.X, w.Y, cx, cy, 1.8 * R, 0.8 * R),         # shoulders + torso
                        np.maximum(np.abs(w.X - cx) - 1.8 * R, cy - w.Y))
        cv.paint(w, sd, _shaded(cloth, _shade(s, w)))
        _outline(cv, s, w, sd, _INK)


# ---- hair
@dataclass
class _Hair:
    """Hair geometry evaluated once on one window: angle around the head, cap sd, fill colour."""
    w: _Win
    ang: np.ndarray      # (h, w) polar angle around the head centre
    cap: np.ndarray      # (h, w) signed distance of the head of hair (behind the face)
    color: np.ndarray    # (h, w, 3) shaded/textured hair colour


def _hair_prepare(cv: _Canvas, s: _Scene) -> _Hair | None:
    """Evaluate the hair silhouette (style-specific) and its colouring on the head window."""
    R, st = s.R, s.attrs["hair_style"]
    half = s.fa + {"short": 0.16, "spiky": 0.16, "bob": 0.32, "long": 0.34}[st]
    top = 0.12 + s.fb * 0.95 + (0.45 if st == "spiky" else 0.17)
    bottom = {"short": 0.9, "spiky": 0.9, "bob": 0.9, "long": 2.2}[st]   # >= 0.9 for the fringe
    w = cv.win(s.fx - half * R, s.fy - top * R, s.fx + half * R, s.fy + bottom * R)
    if not w:
        return None
    hx, hy = s.px(0, -0.12)
    a, b = (s.fa + 0.14) * R, (s.fb * 0.95 + 0.14) * R
    dx, dy = w.X - hx, w.Y - hy
    ang = np.arctan2(dy, dx)
    sd = _ellipse_sd(w.X, w.Y, hx, hy, a, b)
    if st == "short":
        sd = np.maximum(sd, w.Y - s.px(0, 0.12)[1])
    elif st == "spiky":
        up = np.clip(-dy / b + 0.1, 0.0, 1.0)
        sd = sd - 0.28 * R * _tri(ang * (7.0 / math.pi) + s.rng_spike) * up
        sd = np.maximum(sd, w.Y - s.px(0, 0.05)[1])
    elif st == "bob":
        a2 = (s.fa + 0.3) * R
        bob = np.maximum(_ellipse_sd(w.X, w.Y, hx, hy + 0.1 * R, a2, b + 0.15 * R),
                         w.Y - s.px(0, 0.78)[1])
        sd = np.minimum(sd, bob)
    else:  # long: curtains down to the shoulders
        a2 = (s.fa + 0.32) * R
        cur = np.maximum(np.maximum(np.abs(dx) - a2, -dy),
                         w.Y - s.px(0, 1.75)[1] - 0.4 * R * (1 - (np.abs(dx) / a2) ** 2).clip(0))
        sd = np.minimum(sd, cur)
    # colour: head-sphere shading, strand texture, anime-style shine band
    f = _shade(s, w, min(0.9, s.shade_strength * 1.3))
    if s.hair_texture > 0.15:
        f = f * (1.0 - 0.16 * s.hair_texture * (0.5 + 0.5 * np.sin(ang * 38.0 + 0.05 * dx)))
    col = _shaded(s.hair, f)
    if s.hair_shine > 0.4:
        r = np.sqrt(dx * dx + dy * dy) / b
        ring = np.clip(1.0 - np.abs(r - 0.78) / 0.06, 0.0, 1.0) * (dy < -0.3 * R)
        col += (1.0 - col) * (0.45 * (s.hair_shine - 0.4) * ring)[None]
    return _Hair(w, ang, sd, col)


def _hair_back(cv: _Canvas, s: _Scene, h: _Hair) -> None:
    cv.paint(h.w, h.cap, h.color)
    _outline(cv, s, h.w, h.cap, s.hair * 0.25)


def _hair_front(cv: _Canvas, s: _Scene, h: _Hair, over_eyes: bool = False) -> None:
    """Bangs (wavy, or jagged for spiky) and side locks (bob/long) drawn over the face."""
    R, st = s.R, s.attrs["hair_style"]
    rows = min(h.w.Y.shape[0], max(1, int(s.fy + 0.9 * R) - h.w.sy.start))   # nothing below v=0.9
    w = _Win(slice(h.w.sy.start, h.w.sy.start + rows), h.w.sx, h.w.X, h.w.Y[:rows])
    cap = h.cap[:rows]
    if over_eyes:      # a curtain of hair over the whole face width, whatever the style
        curtain = np.maximum(np.abs(w.X - s.fx) - (s.fa + 0.06) * R, (s.fy - (s.fb + 0.1) * R) - w.Y)
        cap = np.minimum(cap, curtain)
    u = (w.X - s.fx) / R
    base = 0.32 if over_eyes else -0.5 + s.fringe_drop
    if st == "spiky":
        line = base + 0.2 * _tri(u * 2.6 + s.rng_spike)
    else:
        line = base + 0.07 * np.abs(np.sin(u * 5.0 + 3.0 * s.rng_spike))
    sd = np.maximum(cap, w.Y - (s.fy + line * R))
    if st in ("bob", "long"):
        side = np.maximum(np.maximum(cap, (s.fa * 0.8) * R - np.abs(w.X - s.fx)),
                          w.Y - s.px(0, 0.55 if st == "long" else 0.35)[1])
        sd = np.minimum(sd, side)
    cv.paint(w, sd, h.color[:, :rows])
    _outline(cv, s, w, sd, s.hair * 0.25)


# ---- face
def _face(cv: _Canvas, s: _Scene) -> None:
    R = s.R
    for side in (-1, 1):                                              # ears
        ex, ey = s.px(side * (s.fa - 0.02), 0.08)
        w = cv.win(ex - 0.14 * R, ey - 0.22 * R, ex + 0.14 * R, ey + 0.22 * R)
        if w:
            sd = _ellipse_sd(w.X, w.Y, ex, ey, 0.13 * R, 0.21 * R)
            cv.paint(w, sd, _shaded(s.skin * 0.93, _shade(s, w)))
            _outline(cv, s, w, sd, _INK)
    a, b = s.fa * R, s.fb * R
    w = cv.win(s.fx - a, s.fy - b, s.fx + a, s.fy + b)
    if not w:
        return
    sd = _superellipse_sd(w.X, w.Y, s.fx, s.fy, a, b, s.fp)
    f = _shade(s, w)
    if not s.cel:                                                     # soft rim darkening
        f = f * (1.0 - 0.5 * s.shade_strength * np.clip(1.0 + sd / (0.25 * R), 0.0, 1.0))
    cv.paint(w, sd, _shaded(s.skin, f))
    _outline(cv, s, w, sd, _INK)
    if s.rng.random() < 0.5:                                          # cheeks blush (both domains)
        for side in (-1, 1):
            bx, by = s.px(side * 0.52, 0.38)
            w = cv.win(bx - 0.2 * R, by - 0.12 * R, bx + 0.2 * R, by + 0.12 * R)
            if w:
                cv.paint(w, _ellipse_sd(w.X, w.Y, bx, by, 0.18 * R, 0.1 * R) / (0.08 * R + 1.0),
                         (0.95, 0.45, 0.5), 0.25)


def _eyebrows(cv: _Canvas, s: _Scene, v: float, half: float, thick: float, spread: float) -> None:
    R = s.R
    col = s.hair * 0.6
    for side in (-1, 1):
        bx, by = s.px(side * spread, v)
        w = cv.win(bx - half * R, by - 0.1 * R, bx + half * R, by + 0.1 * R)
        if w:
            cv.paint(w, _curve_sd(w.X, w.Y, bx, by, half * R, 1.6 / R, max(0.9, thick * R)), col)


def _human_eyes(cv: _Canvas, s: _Scene) -> list[tuple[float, float, float, float]]:
    """Small almond eyes: sclera, iris ring, pupil, lid line; returns (cx, cy, hw, hh)."""
    R, rng = s.R, s.rng
    spread, v = rng.uniform(0.33, 0.39), rng.uniform(-0.02, 0.05)
    hw, hh = R * rng.uniform(0.16, 0.19), R * rng.uniform(0.085, 0.1)
    gaze = rng.uniform(-0.25, 0.25) * hw
    tiny_glint = rng.random() < 0.5
    out = []
    for side, part in ((-1, "leye"), (1, "reye")):
        cx, cy = s.px(side * spread, v)
        w = cv.win(cx - hw - 2, cy - hh - 0.1 * R, cx + hw + 2, cy + hh + 2)
        if not w:
            continue
        eye = np.maximum(_ellipse_sd(w.X, w.Y, cx, cy - 0.15 * hh, hw, hh * 1.1),
                         _ellipse_sd(w.X, w.Y, cx, cy + 0.3 * hh, hw * 1.2, hh * 1.2))  # almond
        cv.paint(w, eye, (0.93, 0.9, 0.88), part=part)
        ix = cx + gaze
        ri = 0.95 * hh
        iris = np.maximum(_ellipse_sd(w.X, w.Y, ix, cy, ri, ri), eye)
        cv.paint(w, iris, s.eye * 0.75)
        cv.paint(w, np.maximum(_ellipse_sd(w.X, w.Y, ix, cy, ri * 0.72, ri * 0.72), eye), s.eye)
        cv.paint(w, np.maximum(_ellipse_sd(w.X, w.Y, ix, cy, ri * 0.36, ri * 0.36), eye), (0.05, 0.04, 0.05))
        if tiny_glint:
            cv.paint(w, _ellipse_sd(w.X, w.Y, ix - 0.3 * ri, cy - 0.3 * ri, 0.5, 0.5), (1, 1, 1), 0.7)
        # upper lid line + crease, lower lid shadow
        lid = np.maximum(np.abs(_ellipse_sd(w.X, w.Y, cx, cy - 0.15 * hh, hw, hh * 1.1)) - max(0.45, 0.1 * hh),
                         w.Y - cy)
        cv.paint(w, lid, (0.2, 0.12, 0.1), 0.9, part=part)
        crease = np.maximum(np.abs(_ellipse_sd(w.X, w.Y, cx, cy - 0.2 * hh, hw * 1.05, hh * 1.6)) - 0.4,
                            w.Y - cy + 0.6 * hh)
        cv.paint(w, crease, s.skin * 0.6, 0.5)
        out.append((cx, cy, hw, hh))
    _eyebrows(cv, s, v - rng.uniform(0.2, 0.26), 0.2, 0.05, spread)
    return out


def _anime_eyes(cv: _Canvas, s: _Scene) -> list[tuple[float, float, float, float]]:
    """Large anime eyes: white, two-tone iris, pupil, big white highlights, thick lash line."""
    R, rng = s.R, s.rng
    spread, v = rng.uniform(0.38, 0.43), rng.uniform(0.08, 0.15)
    hw, hh = R * rng.uniform(0.19, 0.22), R * rng.uniform(0.24, 0.28)
    lash = max(1.2, 0.07 * R)
    gaze = rng.uniform(-0.15, 0.15) * hw
    out = []
    for side, part in ((-1, "leye"), (1, "reye")):
        cx, cy = s.px(side * spread, v)
        w = cv.win(cx - hw - lash - 0.1 * R, cy - hh - 2 * lash, cx + hw + lash + 0.1 * R, cy + hh + 2)
        if not w:
            continue
        eye = _ellipse_sd(w.X, w.Y, cx, cy, hw, hh)
        cv.paint(w, eye, (1.0, 1.0, 1.0), part=part)
        ix, iy = cx + gaze, cy + 0.12 * hh
        iris = np.maximum(_ellipse_sd(w.X, w.Y, ix, iy, 0.78 * hw, 0.86 * hh), eye)
        col = np.where((w.Y < iy - 0.15 * hh)[None], (s.eye * 0.55)[:, None, None],
                       s.eye[:, None, None])                                       # cel two-tone
        cv.paint(w, iris, col)
        cv.paint(w, np.maximum(_ellipse_sd(w.X, w.Y, ix, iy + 0.05 * hh, 0.36 * hw, 0.42 * hh), eye),
                 (0.06, 0.04, 0.08))
        cv.paint(w, _ellipse_sd(w.X, w.Y, ix - side * 0.3 * hw, iy - 0.35 * hh, 0.3 * hw, 0.26 * hh),
                 (1, 1, 1))                                                           # big highlight
        cv.paint(w, _ellipse_sd(w.X, w.Y, ix + side * 0.3 * hw, iy + 0.4 * hh, 0.13 * hw, 0.12 * hh),
                 (1, 1, 1))
        # thick upper lash line with an outer flick
        top = np.maximum(np.abs(eye + 0.3 * lash) - 0.6 * lash, w.Y - cy + 0.25 * hh)
        fx0, fy0 = cx + side * 0.75 * hw, cy - 0.7 * hh
        flick = _segment_sd(w.X, w.Y, fx0, fy0, fx0 + side * 0.35 * hw, fy0 - 0.12 * hh, lash)
        cv.paint(w, np.minimum(top, flick), _INK, part=part)
        cv.paint(w, np.maximum(np.abs(eye) - 0.35, cy + 0.6 * hh - w.Y), _INK, 0.7)  # lower lid
        out.append((cx, cy, hw, hh))
    _eyebrows(cv, s, v - rng.uniform(0.38, 0.45), 0.2, 0.03, spread)
    return out


def _human_nose(cv: _Canvas, s: _Scene) -> None:
    R, side = s.R, (1 if s.light[0] < 0 else -1)          # shadow away from the light
    tx, ty = s.px(0, s.rng.uniform(0.33, 0.38))
    w = cv.win(tx - 0.2 * R, ty - 0.4 * R, tx + 0.2 * R, ty + 0.12 * R)
    if not w:
        return
    soft = 0.07 * R + 1.0
    cv.paint(w, _ellipse_sd(w.X, w.Y, tx + side * 0.07 * R, ty - 0.15 * R, 0.05 * R, 0.24 * R) / soft,
             s.skin * 0.55, 0.35 + 0.6 * s.shade_strength, part="nose")          # side shadow
    cv.paint(w, _ellipse_sd(w.X, w.Y, tx, ty + 0.03 * R, 0.14 * R, 0.05 * R) / soft, s.skin * 0.6, 0.5,
             part="nose")
    for sx in (-1, 1):                                                              # nostrils
        cv.paint(w, _ellipse_sd(w.X, w.Y, tx + sx * 0.065 * R, ty + 0.02 * R, 0.04 * R, 0.022 * R) / 1.3,
                 s.skin * 0.3, 0.85, part="nose")
    cv.paint(w, _ellipse_sd(w.X, w.Y, tx - side * 0.03 * R, ty - 0.05 * R, 0.035 * R, 0.035 * R) / soft,
             np.minimum(s.skin * 1.15, 1.0), 0.6)                                   # tip highlight


def _anime_nose(cv: _Canvas, s: _Scene) -> None:
    R = s.R
    tx, ty = s.px(s.rng.uniform(-0.03, 0.03), s.rng.uniform(0.4, 0.45))
    w = cv.win(tx - 0.08 * R, ty - 0.1 * R, tx + 0.08 * R, ty + 0.05 * R)
    if not w:
        return
    if s.rng.random() < 0.5:
        cv.paint(w, _segment_sd(w.X, w.Y, tx - 0.02 * R, ty - 0.06 * R, tx + 0.03 * R, ty, max(0.9, 0.03 * R)),
                 s.skin * 0.55, part="nose")
    else:
        cv.paint(w, _ellipse_sd(w.X, w.Y, tx, ty, 0.025 * R + 0.4, 0.02 * R + 0.4), s.skin * 0.55, part="nose")


def _human_mouth(cv: _Canvas, s: _Scene) -> None:
    """Shaded lips; closed (lips meet), open (dark cavity + teeth), smile (corners up)."""
    R, rng, state = s.R, s.rng, s.attrs["mouth"]
    mx, my = s.px(0, rng.uniform(0.6, 0.66))
    mw = R * rng.uniform(0.23, 0.27) * (1.12 if state == "smile" else 1.0)
    up, lo = R * 0.06, R * 0.085
    opening = R * 0.13 if state == "open" else 0.0
    k = 0.2 * R / mw if state == "smile" else 0.0           # corner rise (face units) / mw
    w = cv.win(mx - mw - 2, my - up - opening - k * mw - 2, mx + mw + 2, my + lo + opening + 2)
    if not w:
        return
    dx = w.X - mx
    Yb = w.Y + k * dx * dx / mw                               # bend: corners go up
    b = np.where(Yb < my, up + 0.4 * opening, lo + 0.6 * opening)
    bow = 1.0 - 0.3 * np.exp(-(dx / (0.22 * mw)) ** 2) * (Yb < my)   # cupid's bow
    lipcol = np.clip(s.skin * 0.55 + np.array((0.36, 0.06, 0.08), np.float32), 0, 1)
    lips = _ellipse_sd(w.X, Yb, mx, my + 0.1 * opening, mw, b * bow)
    cv.paint(w, lips, np.where((Yb < my)[None], (lipcol * 0.85)[:, None, None], lipcol[:, None, None]),
             part="mouth")
    cv.paint(w, _ellipse_sd(w.X, Yb, mx, my + 0.55 * lo + 0.6 * opening, 0.35 * mw, 0.2 * lo) / 2.0,
             np.minimum(lipcol * 1.35, 1.0), 0.6)                         # lower-lip sheen
    if state == "open":
        cav = _ellipse_sd(w.X, Yb, mx, my + 0.1 * opening, 0.8 * mw, 0.55 * opening)
        cv.paint(w, cav, (0.22, 0.05, 0.07))
        cv.paint(w, np.maximum(cav, Yb - (my - 0.1 * opening)), (0.93, 0.92, 0.88))   # teeth
    else:
        cv.paint(w, _curve_sd(w.X, Yb, mx, my, 0.95 * mw, 0.0, max(0.7, 0.025 * R)), lipcol * 0.45)
    if state == "smile":                                      # dimple creases at the corners
        for sd_ in (-1, 1):
            cx, cy = mx + sd_ * 1.08 * mw, my - k * mw - 0.02 * R
            w2 = cv.win(cx - 0.06 * R, cy - 0.1 * R, cx + 0.06 * R, cy + 0.1 * R)
            if w2:
                cv.paint(w2, _segment_sd(w2.X, w2.Y, cx, cy - 0.06 * R, cx + sd_ * 0.03 * R, cy + 0.06 * R,
                                         max(0.6, 0.02 * R)), s.skin * 0.6, 0.6)


def _anime_mouth(cv: _Canvas, s: _Scene) -> None:
    """Simple mouth: a line (closed), a D-shape with tongue (open), an upward arc (smile)."""
    R, rng, state = s.R, s.rng, s.attrs["mouth"]
    mx, my = s.px(rng.uniform(-0.02, 0.02), rng.uniform(0.64, 0.7))
    th = max(1.0, 0.04 * R)
    w = cv.win(mx - 0.25 * R, my - 0.15 * R, mx + 0.25 * R, my + 0.22 * R)
    if not w:
        return
    if state == "closed":
        cv.paint(w, _curve_sd(w.X, w.Y, mx, my, R * rng.uniform(0.08, 0.12), 0.0, th), _INK * 2, part="mouth")
    elif state == "open":
        a, lo = R * rng.uniform(0.13, 0.16), R * rng.uniform(0.15, 0.19)
        b = np.where(w.Y < my, 0.04 * R, lo)
        sd = _ellipse_sd(w.X, w.Y, mx, my, a, b)
        cv.paint(w, sd, (0.55, 0.12, 0.16))
        cv.paint(w, np.maximum(sd, _ellipse_sd(w.X, w.Y, mx, my + lo, 0.6 * a, 0.45 * lo)), (0.95, 0.5, 0.55))
        cv.paint(w, np.abs(sd) - 0.5 * th * 0.8, _INK, part="mouth")
    else:
        hw = R * rng.uniform(0.15, 0.18)
        cv.paint(w, _curve_sd(w.X, w.Y, mx, my + 0.04 * R, hw, -0.1 * R / hw ** 2, th), _INK * 2,
                 part="mouth")


def _glasses(cv: _Canvas, s: _Scene, eyes: list[tuple[float, float, float, float]]) -> None:
    """A dark frame around each eye + bridge + temples; same look in both domains."""
    if len(eyes) != 2:
        return
    R = s.R
    th = max(1.1, 0.05 * R)
    col = np.array((0.08, 0.07, 0.1), np.float32)
    m = 0.08 * R
    for cx, cy, hw, hh in eyes:
        fw, fh = hw + m, max(hh + m, 0.55 * (hw + m))
        w = cv.win(cx - fw - th, cy - fh - th, cx + fw + th, cy + fh + th)
        if w:
            sd = _superellipse_sd(w.X, w.Y, cx, cy, fw, fh, 4.0)
            cv.paint(w, sd, (0.8, 0.9, 1.0), 0.12)                          # faint lens tint
            cv.paint(w, np.abs(sd) - 0.5 * th, col)
    (lx, ly, lw, lh), (rx, ry, rw, rh) = sorted(eyes)
    x0, x1, y = lx + lw + m, rx - rw - m, 0.5 * (ly + ry) - 0.2 * max(lh, rh)
    w = cv.win(x0, y - 0.1 * R, x1, y + 0.1 * R)
    if w:
        cv.paint(w, _curve_sd(w.X, w.Y, 0.5 * (x0 + x1), y, 0.5 * (x1 - x0), 0.6 / R, th), col)
    for ex, ey, hw, hh, side in ((lx, ly, lw, lh, -1), (rx, ry, rw, rh, 1)):
        xa = ex + side * (hw + m)
        xb = s.fx + side * (s.fa + 0.02) * R
        w = cv.win(min(xa, xb), ey - 0.2 * R, max(xa, xb), ey + 0.1 * R)
        if w:
            cv.paint(w, _segment_sd(w.X, w.Y, xa, ey - 0.05 * R, xb, ey - 0.12 * R, th), col)


# ---- hard-image occluders
def _hand(cv: _Canvas, s: _Scene, cy_u: float, half_h: float) -> None:
    """A hand (palm + four fingers) lying across the face at height cy_u (face units)."""
    R, rng = s.R, s.rng
    side = 1 if rng.random() < 0.5 else -1
    col = s.skin * rng.uniform(0.95, 1.02)
    cy = s.fy + cy_u * R
    px_, py_ = s.fx + side * 0.75 * R, cy + 0.1 * R
    w = cv.win(s.fx - 1.3 * R, cy - half_h * R - 0.2 * R, s.fx + 1.3 * R, cy + half_h * R + 0.5 * R)
    if not w:
        return
    f = _shade(s, w)
    sds = [_ellipse_sd(w.X, w.Y, px_, py_, 0.45 * R, (half_h + 0.1) * R)]
    fw = 2 * half_h * R / 4
    for i in range(4):
        y = cy - half_h * R + (i + 0.5) * fw
        sds.append(_segment_sd(w.X, w.Y, px_, y, s.fx - side * rng.uniform(0.55, 0.75) * R, y, fw * 1.05))
    sd = np.minimum.reduce(sds)
    cv.paint(w, sd, _shaded(col, f))
    for i in range(1, 4):                                                   # finger gaps
        y = cy - half_h * R + i * fw
        cv.paint(w, _segment_sd(w.X, w.Y, px_ - side * 0.2 * R, y, s.fx - side * 0.5 * R, y, 0.8),
                 col * 0.55, 0.8)
    cv.paint(w, np.abs(sd) - 0.5, col * 0.5, 0.7)


def _occlude_eyes(cv: _Canvas, s: _Scene, eyes: list[tuple[float, float, float, float]],
                  hair: _Hair | None) -> None:
    kind = int(s.rng.integers(3))
    if kind == 0 or len(eyes) != 2:                                    # dark sunglasses bar
        R = s.R
        ys = [e[1] for e in eyes] or [s.fy]
        cy = float(np.mean(ys))
        hh = max((e[3] for e in eyes), default=0.2 * R) + 0.12 * R
        x0, x1 = s.fx - (s.fa - 0.02) * R, s.fx + (s.fa - 0.02) * R
        w = cv.win(x0, cy - hh, x1, cy + hh)
        if w:
            sd = _superellipse_sd(w.X, w.Y, s.fx, cy, 0.5 * (x1 - x0), hh, 5.0)
            cv.paint(w, sd, (0.05, 0.05, 0.07))
            cv.paint(w, _ellipse_sd(w.X, w.Y, s.fx - 0.4 * R, cy - 0.3 * hh, 0.15 * R, 0.04 * R), (0.5, 0.5, 0.6), 0.6)
    elif kind == 1:
        v = float(np.mean([(e[1] - s.fy) / s.R for e in eyes]))
        _hand(cv, s, v, 0.34 if s.domain == "character" else 0.22)
    elif hair is not None:
        _hair_front(cv, s, hair, over_eyes=True)


def _occlude_mouth(cv: _Canvas, s: _Scene) -> None:
    R = s.R
    if s.rng.random() < 0.5:                                           # face mask
        col = np.array((0.75, 0.86, 0.95) if s.rng.random() < 0.5 else (0.94, 0.94, 0.95), np.float32)
        top = 0.36
        w = cv.win(s.fx - s.fa * R, s.fy + top * R, s.fx + s.fa * R, s.fy + s.fb * R + 2)
        if w:
            sd = np.maximum(_superellipse_sd(w.X, w.Y, s.fx, s.fy, s.fa * R * 0.98, s.fb * R * 1.0, s.fp),
                            s.fy + top * R - w.Y)
            sd = np.maximum(sd, np.abs(w.X - s.fx) - 0.85 * s.fa * R)
            cv.paint(w, sd, _shaded(col, _shade(s, w, 0.2)))
            for i in (1, 2, 3):                                              # pleats
                y = s.fy + (top + i * 0.16) * R
                cv.paint(w, np.maximum(np.abs(w.Y - y) - 0.4, sd), col * 0.7, 0.8)
            cv.paint(w, np.abs(sd) - 0.5, col * 0.6)
        for side in (-1, 1):                                                 # straps
            x0, y0 = s.fx + side * 0.85 * s.fa * R, s.fy + (top + 0.05) * R
            x1, y1 = s.fx + side * s.fa * R, s.fy + 0.1 * R
            w = cv.win(min(x0, x1), y1, max(x0, x1), y0)
            if w:
                cv.paint(w, _segment_sd(w.X, w.Y, x0, y0, x1, y1, max(0.8, 0.03 * R)), col * 0.85)
    else:
        _hand(cv, s, 0.66, 0.2)


_NOISE_BANKS: dict[int, np.ndarray] = {}


def _noise_bank(size: int) -> np.ndarray:
    """A fixed planar (3, size+32, size+32) standard-normal field; images use random crops.

    Cheaper than fresh noise per image and just as deterministic (fixed seed)."""
    bank = _NOISE_BANKS.get(size)
    if bank is None:
        bank = np.random.default_rng(20240611).standard_normal((3, size + 32, size + 32), dtype=np.float32)
        _NOISE_BANKS[size] = bank
    return bank


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
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


def _low_contrast(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    c = rng.uniform(0.2, 0.32)
    grey = img.mean() * rng.uniform(0.9, 1.1)
    return grey + (img - grey) * c


# --------------------------------------------------------------------------- render
def render(attrs: dict[str, str], domain: str, hard_kind: str, size: int,
           rng: np.random.Generator) -> tuple[np.ndarray, dict[str, tuple[float, float, float, float]]]:
    """Render one face.

    Returns ``(image, boxes)``: a uint8 (size, size, 3) RGB array and, per part in
    :data:`PARTS`, a tight box (x0, y0, x1, y1) normalised to [0, 1]. ``rng`` supplies all
    continuous variation (it is the image's RNG after the attribute draws).
    """
    if domain not in _DOMAIN_ID:
        raise UserError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})")
    if hard_kind and hard_kind not in HARD_KINDS:
        raise UserError(f"unknown hard_kind {hard_kind!r}; one of {', '.join(HARD_KINDS)}")
    s = _make_scene(attrs, domain, hard_kind, size, rng)
    cv = _background(s)
    if hard_kind == "clutter":
        _clutter(cv, s)
    _body(cv, s)
    hair = _hair_prepare(cv, s)
    if hair is not None:
        _hair_back(cv, s, hair)
    _face(cv, s)
    human = domain == "human"
    (_human_nose if human else _anime_nose)(cv, s)
    (_human_mouth if human else _anime_mouth)(cv, s)
    eyes = (_human_eyes if human else _anime_eyes)(cv, s)
    if hair is not None:
        _hair_front(cv, s, hair)
    if attrs["glasses"] == "yes":
        _glasses(cv, s, eyes)
    if hard_kind == "occluded_eyes":
        _occlude_eyes(cv, s, eyes, hair)
    elif hard_kind == "occluded_mouth":
        _occlude_mouth(cv, s)
    img = cv.img                                             # (3, H, W) float in [0, 1]
    if hard_kind == "low_contrast":
        img = _low_contrast(img, rng)
    if s.blur > 0.05:
        img = _blur(img, s.blur)
    img *= 255.0
    if s.noise > 0.002:
        bank = _noise_bank(size)
        oy, ox = (int(v) for v in rng.integers(0, bank.shape[1] - size + 1, 2))
        img += bank[:, oy:oy + size, ox:ox + size] * np.float32(s.noise * 255.0)
    img += 0.5
    np.clip(img, 0.0, 255.0, out=img)
    out = np.empty((size, size, 3), np.uint8)
    out.transpose(2, 0, 1)[...] = img                        # planar float -> interleaved uint8
    boxes = {p: cv.part_box(p) for p in PARTS}
    return out, boxes


def render_one(seed: int, domain: str, index: int, size: int, hard_kind: str = ""
               ) -> tuple[np.ndarray, dict[str, str], dict[str, tuple[float, float, float, float]]]:
    """Render image ``index`` of ``domain``: ``(uint8 image (size,size,3), attrs, boxes)``."""
    rng = image_rng(seed, domain, index)
    attrs = _draw_attributes(rng)
    img, boxes = render(attrs, domain, hard_kind, size, rng)
    return img, attrs, boxes


def render_counterpart(seed: int, domain: str, index: int, size: int, hard_kind: str = "",
                       as_domain: str = "character"
                       ) -> tuple[np.ndarray, dict[str, str], dict[str, tuple[float, float, float, float]]]:
    """Image ``index`` of ``domain`` rendered as ``as_domain``: the same attributes and hard kind
    and, since both domains draw their scene (face position and size, light, shading,
    outline, noise, colours) identically from the image's RNG, the same pose and colours;
    only the domain's own parts (eyes, mouth, nose) and shading style differ. The ideal
    translation of that image (the ceiling of evaluation). ``as_domain == domain`` gives
    exactly :func:`render_one`'s image."""
    if as_domain not in _DOMAIN_ID:
        raise UserError(f"unknown domain {as_domain!r} (expected one of {', '.join(DOMAINS)})")
    rng = image_rng(seed, domain, index)
    attrs = _draw_attributes(rng)
    img, boxes = render(attrs, as_domain, hard_kind, size, rng)
    return img, attrs, boxes


# --------------------------------------------------------------------------- data set
def _check_args(n_human: int, n_character: int, size: int, hard_share: float,
                share_name: str = "hard_share") -> None:
    for name, n in (("n_human", n_human), ("n_character", n_character)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > 99999:
            raise UserError(f"synthetic {name} must be an integer in [0, 99999], got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not _MIN_SIZE <= size <= _MAX_SIZE:
        raise UserError(f"synthetic size must be an integer in [{_MIN_SIZE}, {_MAX_SIZE}], got {size!r}")
    if not isinstance(hard_share, (int, float)) or not 0.0 <= hard_share <= 1.0:
        raise UserError(f"synthetic {share_name} must be in [0, 1], got {hard_share!r}")


def _png_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 (H, W, 3) RGB array as PNG: 'Sub' row filter + zlib RLE (level 1).

    About 2.5x faster than PIL's encoder at these sizes, with smaller files."""
    h, w, _ = arr.shape
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 1                                        # filter type 1 (Sub) on every row
    body = raw[:, 1:].reshape(h, w, 3)
    body[:, 0] = arr[:, 0]
    np.subtract(arr[:, 1:], arr[:, :-1], out=body[:, 1:])  # uint8 wrap-around, as PNG defines
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = z.compress(raw.tobytes()) + z.flush()

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + tag + payload
                + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _write_png(arr: np.ndarray, path: Path) -> None:
    """Atomic PNG write (temp file beside ``path``, then os.replace)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(_png_bytes(arr))


def manifest_columns() -> list[str]:
    """Manifest column order: id, domain, file, clean, hard_kind, attributes, part boxes."""
    return (["id", "domain", "file", "clean", "hard_kind", *ATTRIBUTES]
            + [f"{p}_{k}" for p in PARTS for k in _BOX_KEYS])


def generate(out_dir: Path, n_human: int, n_character: int, size: int, hard_share: float,
             seed: int, progress: bool = True, hard_share_character: float = 0.0) -> pd.DataFrame:
    """Render the data set and return its manifest (one row per image).

    Writes ``out_dir/human/h00000.png ...`` and ``out_dir/character/c00000.png ...``
    (size x size RGB PNGs, atomically). Stale ``h*.png``/``c*.png`` beyond the requested
    counts from an earlier, larger run are removed. Columns: see :func:`manifest_columns`;
    box coordinates are floats in [0, 1]. Exactly ``round(hard_share * n_human)`` human
    and ``round(hard_share_character * n_character)`` character images are hard (``clean=False``).
    """
    _check_args(n_human, n_character, size, hard_share)
    _check_args(n_human, n_character, size, hard_share_character, "hard_share_character")
    out_dir = Path(out_dir)
    hard = {"human": hard_assignment(n_human, float(hard_share), seed, "human"),
            "character": hard_assignment(n_character, float(hard_share_character), seed, "character")}
    jobs = [("human", i) for i in range(n_human)] + [("character", i) for i in range(n_character)]
    for dom, n in (("human", n_human), ("character", n_character)):
        d = out_dir / dom
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob(f"{_PREFIX[dom]}[0-9][0-9][0-9][0-9][0-9].png"):
            if int(old.stem[1:]) >= n:
                old.unlink()
    rows: list[dict] = []
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("rendering synthetic faces", total=len(jobs))
        for dom, i in jobs:
            kind = hard[dom].get(i, "")
            img, attrs, boxes = render_one(seed, dom, i, size, kind)
            ident = f"{_PREFIX[dom]}{i:05d}"
            rel_file = f"{dom}/{ident}.png"
            _write_png(img, out_dir / rel_file)
            row = {"id": ident, "domain": dom, "file": rel_file, "clean": not kind, "hard_kind": kind,
                   **attrs}
            for p in PARTS:
                for k, v in zip(_BOX_KEYS, boxes[p]):
                    row[f"{p}_{k}"] = v
            rows.append(row)
            bar.advance(task)
    return pd.DataFrame(rows, columns=manifest_columns())


# --------------------------------------------------------------------------- contact sheet
def _match_character(hrow: pd.Series, chars: pd.DataFrame, used: set[str]) -> str | None:
    """The unused character whose attributes agree most with ``hrow`` (hair colour first)."""
    if chars.empty:
        return None
    score = sum((chars[a] == hrow[a]).astype(int) for a in ATTRIBUTES)
    score = score + 10 * (chars["hair_color"] == hrow["hair_color"]).astype(int)
    score = score - 100 * chars["id"].isin(used).astype(int)
    return str(chars.loc[score.idxmax(), "id"])


def contact_sheet(manifest: pd.DataFrame, root: Path, out_png: Path, per_row: int = 8) -> None:
    """One PNG grid: human rows (clean, then hard if any) and below them, in the same order,
    character rows whose images match the human above them (hair colour first, then as many
    other attributes as possible). Uses ``torchvision.utils.make_grid`` (padding 2)."""
    import torch
    from torchvision.utils import make_grid

    if per_row < 1:
        raise UserError(f"contact sheet per_row must be >= 1, got {per_row}")
    missing = {"id", "domain", "file", "clean", *ATTRIBUTES} - set(manifest.columns)
    if missing:
        raise UserError(f"manifest lacks columns: {', '.join(sorted(missing))}")
    humans = manifest[manifest["domain"] == "human"]
    chars = manifest[manifest["domain"] == "character"]
    if humans.empty and chars.empty:
        raise UserError("contact sheet: the manifest has no images")
    clean = humans[humans["clean"].astype(bool)].head(per_row)
    hard_df = humans[~humans["clean"].astype(bool)]
    order = hard_df.groupby("hard_kind", sort=True).cumcount()          # round-robin over kinds
    hard_rows = hard_df.assign(_o=order).sort_values(["_o", "hard_kind"], kind="stable").head(per_row)
    human_rows = [r for r in (clean, hard_rows) if not r.empty]
    used: set[str] = set()
    char_rows = []
    for hr in human_rows:
        ids = []
        for _, row in hr.iterrows():
            cid = _match_character(row, chars, used)
            if cid is not None:
                used.add(cid)
                ids.append(cid)
        char_rows.append(chars.set_index("id").loc[ids].reset_index() if ids else chars.head(0))
    if not human_rows:                           # characters only
        char_rows = [chars.head(per_row)]
    rows = human_rows + char_rows
    tiles: list[torch.Tensor] = []
    shape = None
    for r in rows:
        for f in r["file"]:
            with Image.open(Path(root) / f) as im:
                t = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
            if shape is None:
                shape = t.shape
            elif t.shape != shape:
                t = torch.nn.functional.interpolate(t[None].float(), size=shape[1:], mode="bilinear",
                                                    align_corners=False)[0].round().clamp(0, 255).byte()
            tiles.append(t)
        tiles.extend(torch.full(shape, 255, dtype=torch.uint8) for _ in range(per_row - len(r)))
    grid = make_grid(torch.stack(tiles).float() / 255.0, nrow=per_row, padding=2, pad_value=1.0)
    arr = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    save_image(Image.fromarray(arr), out_png)


# --------------------------------------------------------------------------- benchmark
def bench(n: int = 400, size: int = 128) -> float:
    """Render and write ``n`` images (half per domain, 30% hard humans) into a temp dir on
    this process's single thread; print and return images per second (wall clock).

    The CPU-time rate is printed too: on a busy shared machine it is the fairer number."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise UserError(f"bench needs an integer n >= 2, got {n!r}")
    with tempfile.TemporaryDirectory(prefix="f2a-bench-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        generate(Path(tmp), n // 2, n - n // 2, size, 0.3, seed=0, progress=False)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    rate = n / dt
    print(f"synthetic faces: {n} images at {size}px in {dt:.2f} s = {rate:.0f} images/s "
          f"(one thread, incl. PNG writing; CPU time: {n / max(dc, 1e-9):.0f} images/s)")
    return rate
