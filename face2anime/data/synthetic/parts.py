"""Part painters drawn alike in both domains: background, clutter, body, hair, face, glasses
and the occluders of hard images.

Each painter takes the :class:`~face2anime.data.synthetic.geometry.Canvas` ``cv`` and the
image's :class:`~face2anime.data.synthetic.scene.Scene` ``s`` (positions in px, sizes in
face units ``s.R``) and paints in place; random choices come from ``s.rng``, so the call
order in :func:`~face2anime.data.synthetic.render.render` is part of the output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from face2anime.data.synthetic.attributes import INK, SKIN_RGB
from face2anime.data.synthetic.geometry import (
    Canvas,
    Win,
    curve_sd,
    ellipse_sd,
    segment_sd,
    superellipse_sd,
    tri,
)
from face2anime.data.synthetic.scene import Scene, draw_outline, jitter, shade, shaded


# --------------------------------------------------------------------------- background, clutter, body
def background(s: Scene) -> Canvas:
    """A new canvas: background colour with a vertical gradient, low-frequency blotches and bokeh
    discs (both scaled by ``s.bg_texture``)."""
    size, rng = s.size, s.rng
    cv = Canvas(size, s.bg)
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
            cv.paint(w, ellipse_sd(w.X, w.Y, x, y, r, r) / 3.0, (1.0, 1.0, 0.95), 0.25)
    return cv


def clutter(cv: Canvas, s: Scene) -> None:
    """Busy background: random saturated shapes and face-like blobs (dark dots + line)."""
    size, rng = s.size, s.rng
    for _ in range(int(rng.integers(14, 24))):
        x, y = rng.uniform(0, size), rng.uniform(0, size)
        a, b = rng.uniform(0.03, 0.12) * size, rng.uniform(0.03, 0.12) * size
        w = cv.win(x - max(a, b), y - max(a, b), x + max(a, b), y + max(a, b))
        if w:
            col = rng.uniform(0.05, 1.0, 3)
            if rng.random() < 0.5:
                cv.paint(w, ellipse_sd(w.X, w.Y, x, y, a, b, rng.uniform(0, 3.14)), col)
            else:
                cv.paint(w, superellipse_sd(w.X, w.Y, x, y, a, b, 6.0), col)
    for _ in range(int(rng.integers(2, 5))):                          # face-like blobs
        r = rng.uniform(0.07, 0.13) * size
        x = rng.choice([rng.uniform(r, 0.22 * size), rng.uniform(0.78 * size, size - r)])
        y = rng.uniform(r, size - r)
        w = cv.win(x - r, y - 1.2 * r, x + r, y + 1.2 * r)
        if not w:
            continue
        cv.paint(w, ellipse_sd(w.X, w.Y, x, y, r, 1.2 * r), jitter(rng, SKIN_RGB[rng.choice(list(SKIN_RGB))]))
        for sx in (-0.4, 0.4):
            cv.paint(w, ellipse_sd(w.X, w.Y, x + sx * r, y - 0.1 * r, 0.13 * r, 0.16 * r), INK)
        cv.paint(w, curve_sd(w.X, w.Y, x, y + 0.5 * r, 0.3 * r, 0.0, max(1.0, 0.08 * r)), INK)


def body(cv: Canvas, s: Scene) -> None:
    """Neck and shoulders in a random cloth colour, shaded like the head, outlined."""
    R, rng = s.R, s.rng
    cloth = np.clip(rng.uniform(0.1, 0.95, 3), 0, 1).astype(np.float32)
    x, y = s.px(0, 0.55)
    w = cv.win(x - 0.42 * R, y, x + 0.42 * R, s.fy + 2.5 * R)
    if w:
        sd = np.maximum(np.abs(w.X - x) - 0.38 * R, y - w.Y)
        cv.paint(w, sd, shaded(s.skin * 0.86, shade(s, w)))
        draw_outline(cv, s, w, sd, INK)
    cx, cy = s.px(0, 2.05)
    w = cv.win(cx - 1.8 * R, cy - 0.8 * R, cx + 1.8 * R, s.size)
    if w:
        sd = np.minimum(ellipse_sd(w.X, w.Y, cx, cy, 1.8 * R, 0.8 * R),         # shoulders + torso
                        np.maximum(np.abs(w.X - cx) - 1.8 * R, cy - w.Y))
        cv.paint(w, sd, shaded(cloth, shade(s, w)))
        draw_outline(cv, s, w, sd, INK)


# --------------------------------------------------------------------------- hair
@dataclass
class Hair:
    """Hair geometry evaluated once on one window: angle around the head, cap sd, fill colour."""
    w: Win
    ang: np.ndarray      # (h, w) polar angle around the head centre
    cap: np.ndarray      # (h, w) signed distance of the head of hair (behind the face)
    color: np.ndarray    # (h, w, 3) shaded/textured hair colour


def hair_prepare(cv: Canvas, s: Scene) -> Hair | None:
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
    sd = ellipse_sd(w.X, w.Y, hx, hy, a, b)
    if st == "short":
        sd = np.maximum(sd, w.Y - s.px(0, 0.12)[1])
    elif st == "spiky":
        up = np.clip(-dy / b + 0.1, 0.0, 1.0)
        sd = sd - 0.28 * R * tri(ang * (7.0 / math.pi) + s.rng_spike) * up
        sd = np.maximum(sd, w.Y - s.px(0, 0.05)[1])
    elif st == "bob":
        a2 = (s.fa + 0.3) * R
        bob = np.maximum(ellipse_sd(w.X, w.Y, hx, hy + 0.1 * R, a2, b + 0.15 * R),
                         w.Y - s.px(0, 0.78)[1])
        sd = np.minimum(sd, bob)
    else:  # long: curtains down to the shoulders
        a2 = (s.fa + 0.32) * R
        cur = np.maximum(np.maximum(np.abs(dx) - a2, -dy),
                         w.Y - s.px(0, 1.75)[1] - 0.4 * R * (1 - (np.abs(dx) / a2) ** 2).clip(0))
        sd = np.minimum(sd, cur)
    # colour: head-sphere shading, strand texture, anime-style shine band
    f = shade(s, w, min(0.9, s.shade_strength * 1.3))
    if s.hair_texture > 0.15:
        f = f * (1.0 - 0.16 * s.hair_texture * (0.5 + 0.5 * np.sin(ang * 38.0 + 0.05 * dx)))
    col = shaded(s.hair, f)
    if s.hair_shine > 0.4:
        r = np.sqrt(dx * dx + dy * dy) / b
        ring = np.clip(1.0 - np.abs(r - 0.78) / 0.06, 0.0, 1.0) * (dy < -0.3 * R)
        col += (1.0 - col) * (0.45 * (s.hair_shine - 0.4) * ring)[None]
    return Hair(w, ang, sd, col)


def hair_back(cv: Canvas, s: Scene, h: Hair) -> None:
    """The head of hair behind the face, outlined in a darker hair colour."""
    cv.paint(h.w, h.cap, h.color)
    draw_outline(cv, s, h.w, h.cap, s.hair * 0.25)


def hair_front(cv: Canvas, s: Scene, h: Hair, over_eyes: bool = False) -> None:
    """Bangs (wavy, or jagged for spiky) and side locks (bob/long) drawn over the face."""
    R, st = s.R, s.attrs["hair_style"]
    rows = min(h.w.Y.shape[0], max(1, int(s.fy + 0.9 * R) - h.w.sy.start))   # nothing below v=0.9
    w = Win(slice(h.w.sy.start, h.w.sy.start + rows), h.w.sx, h.w.X, h.w.Y[:rows])
    cap = h.cap[:rows]
    if over_eyes:      # a curtain of hair over the whole face width, whatever the style
        curtain = np.maximum(np.abs(w.X - s.fx) - (s.fa + 0.06) * R, (s.fy - (s.fb + 0.1) * R) - w.Y)
        cap = np.minimum(cap, curtain)
    u = (w.X - s.fx) / R
    base = 0.32 if over_eyes else -0.5 + s.fringe_drop
    if st == "spiky":
        line = base + 0.2 * tri(u * 2.6 + s.rng_spike)
    else:
        line = base + 0.07 * np.abs(np.sin(u * 5.0 + 3.0 * s.rng_spike))
    sd = np.maximum(cap, w.Y - (s.fy + line * R))
    if st in ("bob", "long"):
        side = np.maximum(np.maximum(cap, (s.fa * 0.8) * R - np.abs(w.X - s.fx)),
                          w.Y - s.px(0, 0.55 if st == "long" else 0.35)[1])
        sd = np.minimum(sd, side)
    cv.paint(w, sd, h.color[:, :rows])
    draw_outline(cv, s, w, sd, s.hair * 0.25)


# --------------------------------------------------------------------------- face and glasses
def face(cv: Canvas, s: Scene) -> None:
    """Ears, the face (superellipse of ``s.fa`` x ``s.fb`` face units, soft rim darkening when not
    cel-shaded) and, half the time, blushed cheeks."""
    R = s.R
    for side in (-1, 1):                                              # ears
        ex, ey = s.px(side * (s.fa - 0.02), 0.08)
        w = cv.win(ex - 0.14 * R, ey - 0.22 * R, ex + 0.14 * R, ey + 0.22 * R)
        if w:
            sd = ellipse_sd(w.X, w.Y, ex, ey, 0.13 * R, 0.21 * R)
            cv.paint(w, sd, shaded(s.skin * 0.93, shade(s, w)))
            draw_outline(cv, s, w, sd, INK)
    a, b = s.fa * R, s.fb * R
    w = cv.win(s.fx - a, s.fy - b, s.fx + a, s.fy + b)
    if not w:
        return
    sd = superellipse_sd(w.X, w.Y, s.fx, s.fy, a, b, s.fp)
    f = shade(s, w)
    if not s.cel:                                                     # soft rim darkening
        f = f * (1.0 - 0.5 * s.shade_strength * np.clip(1.0 + sd / (0.25 * R), 0.0, 1.0))
    cv.paint(w, sd, shaded(s.skin, f))
    draw_outline(cv, s, w, sd, INK)
    if s.rng.random() < 0.5:                                          # cheeks blush (both domains)
        for side in (-1, 1):
            bx, by = s.px(side * 0.52, 0.38)
            w = cv.win(bx - 0.2 * R, by - 0.12 * R, bx + 0.2 * R, by + 0.12 * R)
            if w:
                cv.paint(w, ellipse_sd(w.X, w.Y, bx, by, 0.18 * R, 0.1 * R) / (0.08 * R + 1.0),
                         (0.95, 0.45, 0.5), 0.25)


def glasses(cv: Canvas, s: Scene, eyes: list[tuple[float, float, float, float]]) -> None:
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
            sd = superellipse_sd(w.X, w.Y, cx, cy, fw, fh, 4.0)
            cv.paint(w, sd, (0.8, 0.9, 1.0), 0.12)                          # faint lens tint
            cv.paint(w, np.abs(sd) - 0.5 * th, col)
    (lx, ly, lw, lh), (rx, ry, rw, rh) = sorted(eyes)
    x0, x1, y = lx + lw + m, rx - rw - m, 0.5 * (ly + ry) - 0.2 * max(lh, rh)
    w = cv.win(x0, y - 0.1 * R, x1, y + 0.1 * R)
    if w:
        cv.paint(w, curve_sd(w.X, w.Y, 0.5 * (x0 + x1), y, 0.5 * (x1 - x0), 0.6 / R, th), col)
    for ex, ey, hw, hh, side in ((lx, ly, lw, lh, -1), (rx, ry, rw, rh, 1)):
        xa = ex + side * (hw + m)
        xb = s.fx + side * (s.fa + 0.02) * R
        w = cv.win(min(xa, xb), ey - 0.2 * R, max(xa, xb), ey + 0.1 * R)
        if w:
            cv.paint(w, segment_sd(w.X, w.Y, xa, ey - 0.05 * R, xb, ey - 0.12 * R, th), col)


# --------------------------------------------------------------------------- occluders (hard images)
def hand(cv: Canvas, s: Scene, cy_u: float, half_h: float) -> None:
    """A hand (palm + four fingers) lying across the face at height cy_u (face units)."""
    R, rng = s.R, s.rng
    side = 1 if rng.random() < 0.5 else -1
    col = s.skin * rng.uniform(0.95, 1.02)
    cy = s.fy + cy_u * R
    px_, py_ = s.fx + side * 0.75 * R, cy + 0.1 * R
    w = cv.win(s.fx - 1.3 * R, cy - half_h * R - 0.2 * R, s.fx + 1.3 * R, cy + half_h * R + 0.5 * R)
    if not w:
        return
    f = shade(s, w)
    sds = [ellipse_sd(w.X, w.Y, px_, py_, 0.45 * R, (half_h + 0.1) * R)]
    fw = 2 * half_h * R / 4
    for i in range(4):
        y = cy - half_h * R + (i + 0.5) * fw
        sds.append(segment_sd(w.X, w.Y, px_, y, s.fx - side * rng.uniform(0.55, 0.75) * R, y, fw * 1.05))
    sd = np.minimum.reduce(sds)
    cv.paint(w, sd, shaded(col, f))
    for i in range(1, 4):                                                   # finger gaps
        y = cy - half_h * R + i * fw
        cv.paint(w, segment_sd(w.X, w.Y, px_ - side * 0.2 * R, y, s.fx - side * 0.5 * R, y, 0.8),
                 col * 0.55, 0.8)
    cv.paint(w, np.abs(sd) - 0.5, col * 0.5, 0.7)


def occlude_eyes(cv: Canvas, s: Scene, eyes: list[tuple[float, float, float, float]],
                 hair: Hair | None) -> None:
    """Hide both eyes: a dark sunglasses bar, a hand, or a curtain of hair (one of three)."""
    kind = int(s.rng.integers(3))
    if kind == 0 or len(eyes) != 2:                                    # dark sunglasses bar
        R = s.R
        ys = [e[1] for e in eyes] or [s.fy]
        cy = float(np.mean(ys))
        hh = max((e[3] for e in eyes), default=0.2 * R) + 0.12 * R
        x0, x1 = s.fx - (s.fa - 0.02) * R, s.fx + (s.fa - 0.02) * R
        w = cv.win(x0, cy - hh, x1, cy + hh)
        if w:
            sd = superellipse_sd(w.X, w.Y, s.fx, cy, 0.5 * (x1 - x0), hh, 5.0)
            cv.paint(w, sd, (0.05, 0.05, 0.07))
            cv.paint(w, ellipse_sd(w.X, w.Y, s.fx - 0.4 * R, cy - 0.3 * hh, 0.15 * R, 0.04 * R), (0.5, 0.5, 0.6), 0.6)
    elif kind == 1:
        v = float(np.mean([(e[1] - s.fy) / s.R for e in eyes]))
        hand(cv, s, v, 0.34 if s.domain == "character" else 0.22)
    elif hair is not None:
        hair_front(cv, s, hair, over_eyes=True)


def occlude_mouth(cv: Canvas, s: Scene) -> None:
    """Hide the mouth: a pleated face mask or a hand (half the time each)."""
    R = s.R
    if s.rng.random() < 0.5:                                           # face mask
        col = np.array((0.75, 0.86, 0.95) if s.rng.random() < 0.5 else (0.94, 0.94, 0.95), np.float32)
        top = 0.36
        w = cv.win(s.fx - s.fa * R, s.fy + top * R, s.fx + s.fa * R, s.fy + s.fb * R + 2)
        if w:
            sd = np.maximum(superellipse_sd(w.X, w.Y, s.fx, s.fy, s.fa * R * 0.98, s.fb * R * 1.0, s.fp),
                            s.fy + top * R - w.Y)
            sd = np.maximum(sd, np.abs(w.X - s.fx) - 0.85 * s.fa * R)
            cv.paint(w, sd, shaded(col, shade(s, w, 0.2)))
            for i in (1, 2, 3):                                              # pleats
                y = s.fy + (top + i * 0.16) * R
                cv.paint(w, np.maximum(np.abs(w.Y - y) - 0.4, sd), col * 0.7, 0.8)
            cv.paint(w, np.abs(sd) - 0.5, col * 0.6)
        for side in (-1, 1):                                                 # straps
            x0, y0 = s.fx + side * 0.85 * s.fa * R, s.fy + (top + 0.05) * R
            x1, y1 = s.fx + side * s.fa * R, s.fy + 0.1 * R
            w = cv.win(min(x0, x1), y1, max(x0, x1), y0)
            if w:
                cv.paint(w, segment_sd(w.X, w.Y, x0, y0, x1, y1, max(0.8, 0.03 * R)), col * 0.85)
    else:
        hand(cv, s, 0.66, 0.2)
