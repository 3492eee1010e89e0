"""One image's continuous parameters (:class:`Scene`) and the head-sphere shading.

:func:`make_scene` draws, from the image's RNG right after the attributes and in the same
order for both domains, the face position and size (px), face shape, light direction and the
global style (shading strength, cel vs soft, outline width, noise, blur, textures, jittered
colours). Both domains drawing it identically is what makes
:func:`~face2anime.data.synthetic.render.render_counterpart` the same face in the other
domain. :func:`shade` gives an (h, w) lighting factor on a window, :func:`shaded` turns a
(3,) colour and that factor into a (3, h, w) colour, :func:`draw_outline` strokes a shape's
contour.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from face2anime.data.synthetic.attributes import (
    BACKGROUND_RGB,
    CEL_SHARE,
    EYE_RGB,
    FACE_SHAPES,
    HAIR_RGB,
    SKIN_RGB,
)
from face2anime.data.synthetic.geometry import Canvas, Win


# --------------------------------------------------------------------------- the scene
@dataclass
class Scene:
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
    blur: float = 0.0        # blur sigma, px (effects.blur)
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


def jitter(rng: np.random.Generator, base: Sequence[float], scale: float = 1.0) -> np.ndarray:
    """A base RGB colour (3,) with a random brightness factor and a per-channel shift, in [0, 1]."""
    c = np.asarray(base, np.float32) * rng.uniform(0.92, 1.06) + rng.uniform(-0.03, 0.03, 3) * scale
    return np.clip(c, 0.0, 1.0).astype(np.float32)


def make_scene(attrs: dict[str, str], domain: str, hard_kind: str, size: int,
               rng: np.random.Generator) -> Scene:
    """Draw the scene of one image from ``rng`` (the image RNG after the attribute draws)."""
    s = Scene(domain, attrs, hard_kind, size, rng)
    s.R = size * rng.uniform(0.27, 0.31)
    s.fx = size * (0.5 + rng.uniform(-0.03, 0.03))
    s.fy = size * (0.54 + rng.uniform(-0.02, 0.02))
    fa, fb, fp = FACE_SHAPES[attrs["face_shape"]]
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
    s.skin = jitter(rng, SKIN_RGB[attrs["skin_tone"]], 0.5)
    s.hair = jitter(rng, HAIR_RGB[attrs["hair_color"]])
    s.eye = jitter(rng, EYE_RGB[attrs["eye_color"]])
    s.bg = jitter(rng, BACKGROUND_RGB[attrs["background"]], 0.5)
    s.rng_spike = rng.uniform(0.0, 1.0)
    s.fringe_drop = rng.uniform(0.0, 0.08)
    return s


def shade(s: Scene, w: Win, strength: float | None = None) -> np.ndarray:
    """Multiplicative lighting (h, w) on the head sphere: soft gradient or two-tone cel."""
    k = s.shade_strength if strength is None else strength
    hr = 1.3 * s.R
    t = ((w.X - s.fx) * s.light[0] + (w.Y - (s.fy - 0.1 * s.R)) * s.light[1]) / hr
    q = np.clip((0.25 - t) / 1.1, 0.0, 1.0)
    if s.cel:
        return 1.0 - 0.7 * k * np.clip((q - 0.45) * hr * 0.8 + 0.5, 0.0, 1.0)
    return 1.0 - k * q


def shaded(color: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(3,) colour x (h, w) factor -> (3, h, w)."""
    return color[:, None, None] * f[None]


def draw_outline(cv: Canvas, s: Scene, w: Win, sd: np.ndarray, color: np.ndarray) -> None:
    """Stroke the contour of ``sd`` (``s.outline`` px wide, mostly inside it); nothing when 0."""
    if s.outline > 0:
        cv.paint(w, np.abs(sd + 0.3 * s.outline) - 0.5 * s.outline, color)
