"""Signed-distance shapes and the canvas that paints them with 1-px anti-aliasing.

Every shape is a signed distance in pixels (negative inside) over a window's pixel-centre
coordinates ``X`` (1, w) and ``Y`` (h, 1), broadcast to (h, w). :class:`Canvas` holds a planar
float32 (3, H, W) RGB image in [0, 1]; :meth:`Canvas.win` clips a rectangle to a
:class:`Win` and :meth:`Canvas.paint` blends a colour with coverage
``clip(0.5 - sd, 0, 1)``, growing the box of the part it paints.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_SMALL_WINDOW = 1600   # pixels; below this, painting skips the sparse/bbox bookkeeping


# --------------------------------------------------------------------------- signed distances
def ellipse_sd(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, a: float,
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


def superellipse_sd(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, a: float, b: float,
                    p: float) -> np.ndarray:
    """Superellipse |u|^p + |v|^p = 1 (half-axes ``a``, ``b``), first-order distance; p = 2 is
    :func:`ellipse_sd`."""
    if p == 2.0:
        return ellipse_sd(X, Y, cx, cy, a, b)
    u, v = np.abs(X - cx) / a, np.abs(Y - cy) / b
    up, vp = u ** p, v ** p
    d = (up + vp) ** (1.0 / p)
    dp = d ** (p - 1.0) + 1e-6
    g = np.sqrt((up / (u + 1e-6) / a) ** 2 + (vp / (v + 1e-6) / b) ** 2) / dp
    return (d - 1.0) / np.clip(g, 1.0 / max(a, b), 2.0 / min(a, b))


def curve_sd(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, hw: float, k: float,
             width: float) -> np.ndarray:
    """A thick parabolic stroke y = cy + k*(x-cx)^2 for |x-cx| <= hw, round caps."""
    dx = X - cx
    perp = np.abs(Y - (cy + k * dx * dx)) / np.sqrt(1.0 + (2.0 * k * dx) ** 2)
    ex = np.maximum(np.abs(dx) - hw, 0.0)
    return np.sqrt(perp * perp + ex * ex) - 0.5 * width


def segment_sd(X: np.ndarray, Y: np.ndarray, x0: float, y0: float, x1: float, y1: float,
               width: float) -> np.ndarray:
    """A capsule (thick segment with round caps)."""
    vx, vy = x1 - x0, y1 - y0
    L2 = vx * vx + vy * vy + 1e-9
    t = np.clip(((X - x0) * vx + (Y - y0) * vy) / L2, 0.0, 1.0)
    return np.sqrt((X - x0 - t * vx) ** 2 + (Y - y0 - t * vy) ** 2) - 0.5 * width


def tri(x: np.ndarray) -> np.ndarray:
    """Triangle wave in [0, 1] with period 1."""
    return np.abs((x % 1.0) * 2.0 - 1.0)


# --------------------------------------------------------------------------- canvas
@dataclass
class Win:
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


class Canvas:
    """A planar float32 (3, H, W) RGB image in [0, 1] with windowed signed-distance painting.

    Paints made with ``part=`` grow that part's pixel box (coverage > 0.25).
    """

    def __init__(self, size: int, color: np.ndarray):
        """A (3, size, size) canvas filled with ``color`` (3,)."""
        self.size = size
        self.img = np.empty((3, size, size), np.float32)     # planar: fast per-channel broadcasts
        self.img[:] = np.asarray(color, np.float32)[:, None, None]
        self.xs, self.ys = _grid(size)
        self.boxes: dict[str, list[int]] = {}
        self.weak_boxes: dict[str, list[int]] = {}

    def win(self, x0: float, y0: float, x1: float, y1: float, pad: float = 2.0) -> Win | None:
        """The window covering [x0,x1]x[y0,y1] (+pad px), or None when it is off the image."""
        s = self.size
        ix0, iy0 = max(int(x0 - pad), 0), max(int(y0 - pad), 0)
        ix1, iy1 = min(int(math.ceil(x1 + pad)), s), min(int(math.ceil(y1 + pad)), s)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return Win(slice(iy0, iy1), slice(ix0, ix1), self.xs[:, ix0:ix1], self.ys[iy0:iy1, :])

    def paint(self, w: Win, sd: np.ndarray, color: np.ndarray | Sequence[float],
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

    def _grow(self, part: str, w: Win, cov: np.ndarray) -> None:
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
