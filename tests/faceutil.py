"""Rendered faces with known landmarks, and group photos made of them (no real photos)."""
from __future__ import annotations

import numpy as np
from PIL import Image

from face2anime.data.synthetic.render import render_one

#: rendered humans (seed 0, 256 px) that dlib's HOG detector finds with a clear margin
#: (detector score > 0.5 on the machine that chose them; the threshold is 0)
DETECTED = (6, 9, 41, 42)


def known_eyes(index: int, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rendered human ``index``: the image and the centres of its eye boxes (pixels)."""
    img, _, boxes = render_one(0, "human", index, size)
    centre = lambda b: np.array([(b[0] + b[2]) / 2 * size, (b[1] + b[3]) / 2 * size])  # noqa: E731
    return img, centre(boxes["leye"]), centre(boxes["reye"])


def group_photo(scales: tuple[float, ...] = (1.0, 0.8, 0.6, 0.2)) -> Image.Image:
    """Rendered faces side by side on one canvas, each scaled down by its factor."""
    tiles = [Image.fromarray(known_eyes(i)[0]).resize((round(256 * s),) * 2, Image.Resampling.LANCZOS)
             for i, s in zip(DETECTED, scales)]
    canvas = Image.new("RGB", (sum(t.width for t in tiles) + 40 * len(tiles), 300), (90, 110, 120))
    x = 20
    for t in tiles:
        canvas.paste(t, (x, 300 - t.height - 10))
        x += t.width + 40
    return canvas
