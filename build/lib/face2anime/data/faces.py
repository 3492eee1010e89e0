"""Faces and face parts in ordinary photos, with OpenCV's Haar cascades.

* :func:`detect_faces` - frontal faces, largest first (pixel boxes).
* :func:`crop_face` - a square crop around the largest face, with a margin, for
  ``resize.crop: face``; None when there is no face (the caller skips and counts it).
* :func:`part_boxes` - normalised eye/mouth(/nose) boxes for the CAM ``part_focus``
  score: fixed canonical boxes for aligned faces (FFHQ-style alignment), cascade
  detections otherwise; None when no part is found.

Boxes are ``(x0, y0, x1, y1)`` with x to the right and y down; ``leye``/``reye`` are the
eyes on the *image's* left/right. The cascades come with opencv-python-headless
(``cv2.data.haarcascades``) and are loaded once per process.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from face2anime.core.params import UserError

if TYPE_CHECKING:  # pragma: no cover
    import cv2
    from PIL import Image

Box = tuple[int, int, int, int]
NBox = tuple[float, float, float, float]

DETECT_MAX_SIDE = 800       # photos are downscaled to this for face detection (speed)
PART_MIN_FACE = 240         # face regions are upscaled to this width for eye/mouth search

# Canonical part boxes for FFHQ-style aligned faces. FFHQ's alignment (NVlabs
# download_ffhq.py) makes the crop side 4x the eye-to-eye distance d whenever the
# eye-to-mouth distance is below 1.11 d (typical faces: ~1.0-1.1 d), and centres the
# crop 0.1 x eye-to-mouth below the eye midpoint. With e2m = 1.1 d that puts the eye
# centres at x = 0.5 -/+ 0.125, y = 0.4725 and the mouth centre at (0.5, 0.7475).
# Box sizes: eye ~0.16 x 0.10 of the side (eye width ~0.48 d plus margin), mouth
# ~0.26 x 0.12 (mouth width ~0.8 d plus margin), nose between them.
CANONICAL_BOXES: dict[str, NBox] = {
    "leye": (0.295, 0.4225, 0.455, 0.5225),
    "reye": (0.545, 0.4225, 0.705, 0.5225),
    "nose": (0.430, 0.5000, 0.570, 0.6800),
    "mouth": (0.370, 0.6875, 0.630, 0.8075),
}

_CASCADES: dict[str, "cv2.CascadeClassifier"] = {}


def cascade(name: str) -> "cv2.CascadeClassifier":
    """The OpenCV cascade ``name`` (e.g. ``haarcascade_eye.xml``), loaded once."""
    if name not in _CASCADES:
        import cv2

        path = cv2.data.haarcascades + name
        c = cv2.CascadeClassifier(path)
        if c.empty():
            raise UserError(f"OpenCV cascade {name} not found at {path} "
                            "(reinstall opencv-python-headless<5)")
        _CASCADES[name] = c
    return _CASCADES[name]


def _gray(img: "Image.Image") -> np.ndarray:
    """uint8 (H, W) luminance of any PIL image (alpha composited on grey)."""
    from PIL import Image

    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        bg = Image.new("RGBA", img.size, (128, 128, 128, 255))
        img = Image.alpha_composite(bg, img.convert("RGBA"))
    return np.asarray(img.convert("L"), dtype=np.uint8)


def _detect(c: "cv2.CascadeClassifier", gray: np.ndarray, min_neighbors: int,
            min_size: tuple[int, int], max_size: tuple[int, int] | None = None,
            scale: float = 1.1) -> list[Box]:
    """detectMultiScale as (x0, y0, x1, y1) boxes, largest first."""
    kw = dict(scaleFactor=scale, minNeighbors=min_neighbors, minSize=min_size)
    if max_size is not None:
        kw["maxSize"] = max_size
    found = c.detectMultiScale(gray, **kw)
    boxes = [(int(x), int(y), int(x + w), int(y + h)) for (x, y, w, h) in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b[0], b[1]))


def detect_faces(img: "Image.Image") -> list[Box]:
    """Frontal faces in ``img`` as pixel boxes (x0, y0, x1, y1), largest first; [] if none.

    Images are downscaled to at most ``DETECT_MAX_SIDE`` px for detection; faces smaller
    than 8% of the shorter side (or 24 px) are ignored.
    """
    import cv2

    gray = _gray(img)
    h, w = gray.shape
    s = min(1.0, DETECT_MAX_SIDE / max(h, w))
    if s < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    m = max(24, int(0.08 * min(gray.shape)))
    if min(gray.shape) < m:
        return []
    boxes = _detect(cascade("haarcascade_frontalface_default.xml"), gray, 5, (m, m))
    return [(max(0, round(x0 / s)), max(0, round(y0 / s)), min(w, round(x1 / s)), min(h, round(y1 / s)))
            for x0, y0, x1, y1 in boxes]


def square_around(box: Box, size: tuple[int, int], margin: float) -> Box:
    """Square box centred on ``box``, side ``max(w, h) * (1 + 2 * margin)``, moved (and if
    need be shrunk) to lie inside an image of ``size`` = (W, H)."""
    W, H = size
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    side = int(round(min(side, W, H)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = int(round(min(max(cx - side / 2, 0), W - side)))
    top = int(round(min(max(cy - side / 2, 0), H - side)))
    return left, top, left + side, top + side


def crop_face(img: "Image.Image", margin: float = 0.4) -> "Image.Image | None":
    """Square crop around the largest detected face, ``margin`` x face size added on each
    side (0.4 gives ~1.8x the Haar box, close to FFHQ's framing); None if no face."""
    faces = detect_faces(img)
    if not faces:
        return None
    return img.crop(square_around(faces[0], img.size, margin))


def _norm(box: tuple[float, float, float, float], W: int, H: int) -> NBox:
    x0, y0, x1, y1 = box
    c = lambda v: float(min(1.0, max(0.0, v)))  # noqa: E731
    return c(x0 / W), c(y0 / H), c(x1 / W), c(y1 / H)


def part_boxes(img: "Image.Image", aligned: bool) -> dict[str, NBox] | None:
    """Normalised [0, 1] boxes of face parts: keys ``leye``, ``reye``, ``mouth``, ``nose``.

    ``aligned=True`` (FFHQ-like crops) returns :data:`CANONICAL_BOXES` without looking at
    the pixels. Otherwise the largest face is detected and searched with
    ``haarcascade_eye`` (upper half of the face) and ``haarcascade_smile`` (lower part);
    the nose box is only given when both eyes and the mouth were found. Parts that are
    not found are left out; None when no face or no part is found.
    """
    if aligned:
        return dict(CANONICAL_BOXES)
    import cv2

    faces = detect_faces(img)
    if not faces:
        return None
    W, H = img.size
    fx0, fy0, fx1, fy1 = faces[0]
    roi = _gray(img)[fy0:fy1, fx0:fx1]
    if roi.size == 0:
        return None
    r = max(1.0, PART_MIN_FACE / roi.shape[1])
    if r > 1.0:
        roi = cv2.resize(roi, (round(roi.shape[1] * r), round(roi.shape[0] * r)), interpolation=cv2.INTER_CUBIC)
    roi = cv2.equalizeHist(roi)
    fh, fw = roi.shape

    def to_img(b: Box, ox: int, oy: int) -> tuple[float, float, float, float]:
        return (fx0 + (b[0] + ox) / r, fy0 + (b[1] + oy) / r, fx0 + (b[2] + ox) / r, fy0 + (b[3] + oy) / r)

    out: dict[str, NBox] = {}
    # Eyes: upper band of the face box; best candidate on each side of the midline.
    ey0, ey1 = int(0.15 * fh), int(0.60 * fh)
    eyes = _detect(cascade("haarcascade_eye.xml"), roi[ey0:ey1], 5,
                   (max(8, int(0.10 * fw)),) * 2, (int(0.40 * fw),) * 2)
    left = [b for b in eyes if (b[0] + b[2]) / 2 < fw / 2]
    right = [b for b in eyes if (b[0] + b[2]) / 2 >= fw / 2]
    if left:
        out["leye"] = _norm(to_img(left[0], 0, ey0), W, H)
    if right:
        out["reye"] = _norm(to_img(right[0], 0, ey0), W, H)
    # Mouth: lower part of the face box, central columns; the smile cascade needs many
    # neighbours to stay quiet on chins and nostrils.
    my0, mx0, mx1 = int(0.60 * fh), int(0.15 * fw), int(0.85 * fw)
    mouths = _detect(cascade("haarcascade_smile.xml"), roi[my0:, mx0:mx1], 20,
                     (max(12, int(0.25 * fw)), max(6, int(0.10 * fh))))
    if mouths:
        out["mouth"] = _norm(to_img(mouths[0], mx0, my0), W, H)
    if {"leye", "reye", "mouth"} <= out.keys():
        le, re_, mo = out["leye"], out["reye"], out["mouth"]
        cx = ((le[0] + le[2]) / 2 + (re_[0] + re_[2]) / 2) / 2
        half = 0.25 * ((re_[0] + re_[2]) / 2 - (le[0] + le[2]) / 2)
        top = max((le[1] + le[3]) / 2, (re_[1] + re_[3]) / 2)
        out["nose"] = _norm((cx - half, top, cx + half, max(top, mo[1])), 1, 1)
    return out or None
