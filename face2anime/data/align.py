"""Landmark alignment of face photos, framed like anime face crops.

Faces are found with dlib's HOG frontal-face detector and their landmarks with one of
the shape predictors that the ``face-recognition-models`` package ships (nothing is
downloaded at run time):

* ``landmarks: 5`` (default): ``shape_predictor_5_face_landmarks.dat`` - two corners of
  each eye and the bottom of the nose (licence: CC0, trained on dlib's own data set). The
  mouth is placed from the nose (:data:`NOSE_TO_MOUTH`).
* ``landmarks: 68``: ``shape_predictor_68_face_landmarks.dat`` - also the mouth and jaw.
  It was trained on iBUG 300-W, whose licence allows **research use only**.

The crop follows FFHQ's alignment recipe (NVlabs' ``download_ffhq.py``; re-derived here,
not copied): with the eye midpoint ``e``, the eye-to-eye vector ``x_e`` and the
eye-to-mouth vector ``y_m``, the crop is an oriented square whose x axis is
``x_e - rot90(y_m)`` (so eye and mouth both set the roll), whose half side is
``max(2 * |x_e|, 1.8 * |y_m|)`` and whose centre is ``e + 0.1 * y_m``. Two params change
that framing to the one of anime face crops (see :class:`Framing`): ``scale`` multiplies
the side (FFHQ: 1.0) and ``shift`` moves the centre down in units of ``y_m`` (FFHQ: 0.1).

Points are ``(x, y)`` pixels, x to the right and y down. ``leye`` / ``reye`` are the eyes
on the *image's* left / right, as in :mod:`face2anime.data.faces`.
"""
from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from face2anime.core.params import UserError

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

#: Mouth centre = eye midpoint + NOSE_TO_MOUTH x (nose point - eye midpoint), for the
#: 5-point model. Measured with the 68-point model (mouth corners' midpoint) on 84 real
#: photos: median 1.35, interquartile range 1.25-1.44; the 5-point mouth estimate then
#: lies a median 0.16 eye distances from the 68-point one (eyes: 0.02).
NOSE_TO_MOUTH = 1.35
#: Photos whose shorter side is below this are upsampled once for the HOG detector (its
#: smallest face is ~80 px); larger ones are downscaled to DETECT_MAX_SIDE for speed.
UPSAMPLE_BELOW = 400
DETECT_MAX_SIDE = 1024
LANDMARK_MODELS = {5: "shape_predictor_5_face_landmarks.dat", 68: "shape_predictor_68_face_landmarks.dat"}
SELECTIONS = ("largest", "all")


@dataclass(frozen=True)
class Framing:
    """How an aligned crop is framed.

    Attributes:
        scale: crop side as a multiple of FFHQ's (``2 * max(2 |x_e|, 1.8 |y_m|)``, about
            4 eye distances). Smaller is tighter.
        shift: crop centre below the eye midpoint, in eye-to-mouth distances (FFHQ 0.1).
    """
    scale: float = 0.85
    shift: float = 0.3

    def eye_height(self, e2m_over_d: float = 1.1) -> float:
        """Where the eye line lands (fraction of the side from the top) for a frontal face
        whose eye-to-mouth distance is ``e2m_over_d`` eye distances."""
        half = max(2.0, 1.8 * e2m_over_d) * self.scale
        return 0.5 - self.shift * e2m_over_d / (2 * half)


@dataclass(frozen=True)
class AlignConfig:
    """``resize.align.*``: how photos are aligned (also recorded with each trained model).

    Attributes:
        landmarks: 5 (dlib's 5-point model, CC0) or 68 (iBUG 300-W: research use only).
        scale: crop side relative to FFHQ's (smaller is tighter).
        shift: crop centre below the eye midpoint, in eye-to-mouth distances (FFHQ 0.1).
        faces: ``all`` (every face of a photo becomes an image) or ``largest``.
        min_eye_px: faces whose eye distance in the photo is below this are too small.
    """
    landmarks: int
    scale: float
    shift: float
    faces: str
    min_eye_px: float

    def __post_init__(self) -> None:
        if self.landmarks not in LANDMARK_MODELS:
            raise UserError(f"resize.align.landmarks must be 5 or 68, got {self.landmarks!r}")
        if self.faces not in SELECTIONS:
            raise UserError(f"resize.align.faces must be one of {', '.join(SELECTIONS)}, got {self.faces!r}")

    @property
    def framing(self) -> Framing:
        return Framing(self.scale, self.shift)

    def to_dict(self) -> dict[str, Any]:
        return {"landmarks": self.landmarks, "scale": self.scale, "shift": self.shift, "faces": self.faces,
                "min_eye_px": self.min_eye_px}

    @classmethod
    def from_section(cls, align: Any) -> "AlignConfig":
        """From the typed ``resize.align`` section (:class:`~face2anime.core.schema.Align`)."""
        return cls(landmarks=align.landmarks, scale=align.scale, shift=align.shift, faces=align.faces,
                   min_eye_px=align.min_eye_px)


@dataclass
class Face:
    """One detected face.

    Attributes:
        box: detector box ``(x0, y0, x1, y1)`` in pixels.
        points: ``[K, 2]`` landmark pixels (K = 5 or 68).
        score: the detector's confidence (larger is surer).
    """
    box: tuple[int, int, int, int]
    points: np.ndarray
    score: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def area(self) -> int:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])

    def anchors(self) -> dict[str, np.ndarray]:
        """``leye``, ``reye``, ``mouth`` centres (and ``nose``) in pixels, from the landmarks."""
        return anchors(self.points)

    def eye_distance(self) -> float:
        a = self.anchors()
        return float(np.hypot(*(a["reye"] - a["leye"])))


def anchors(points: np.ndarray) -> dict[str, np.ndarray]:
    """Eye centres, nose and mouth centre from 5 or 68 dlib landmarks (``[K, 2]``)."""
    p = np.asarray(points, dtype=np.float64)
    if len(p) == 68:
        # iBUG 300-W: 36-41 the image-left eye, 42-47 the image-right eye, 33 nose tip
        # (use 30-35 mean for the nose bottom), 48-67 the mouth.
        leye, reye = p[36:42].mean(0), p[42:48].mean(0)
        out = {"leye": leye, "reye": reye, "nose": p[31:36].mean(0),
               "mouth": (p[48] + p[54]) / 2, "mouth_box": _bbox(p[48:60])}
        out["eye_boxes"] = {"leye": _bbox(p[36:42]), "reye": _bbox(p[42:48])}
        return out
    if len(p) == 5:
        # dlib's 5-point model: 0/1 outer/inner corner of the image-right eye, 2/3
        # outer/inner corner of the image-left eye, 4 bottom of the nose.
        reye, leye = p[0:2].mean(0), p[2:4].mean(0)
        mid = (leye + reye) / 2
        return {"leye": leye, "reye": reye, "nose": p[4], "mouth": mid + NOSE_TO_MOUTH * (p[4] - mid),
                "eye_boxes": {"leye": _bbox(p[2:4]), "reye": _bbox(p[0:2])}}
    raise ValueError(f"expected 5 or 68 landmarks, got {len(p)}")


def _bbox(p: np.ndarray) -> np.ndarray:
    return np.array([p[:, 0].min(), p[:, 1].min(), p[:, 0].max(), p[:, 1].max()])


def align_quad(leye: np.ndarray, reye: np.ndarray, mouth: np.ndarray, framing: Framing) -> np.ndarray:
    """The oriented crop square for one face, as its 4 corners ``[4, 2]`` in pixels:
    top-left, bottom-left, bottom-right, top-right (FFHQ's order).

    FFHQ's recipe with ``framing.scale`` and ``framing.shift`` (module docstring).
    """
    leye, reye, mouth = (np.asarray(v, dtype=np.float64) for v in (leye, reye, mouth))
    eye_avg = (leye + reye) / 2
    eye_to_eye = reye - leye
    eye_to_mouth = mouth - eye_avg
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])  # e2e - rot90(e2m)
    norm = np.hypot(*x)
    if norm == 0:
        raise ValueError("degenerate landmarks (eyes and mouth coincide)")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8) * framing.scale
    y = np.array([-x[1], x[0]])  # x rotated by +90 degrees (y down)
    c = eye_avg + eye_to_mouth * framing.shift
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def quad_matrix(quad: np.ndarray, size: int) -> np.ndarray:
    """The 2x3 affine matrix mapping source pixels into a ``size`` x ``size`` crop of ``quad``."""
    import cv2

    src = np.asarray(quad[[0, 1, 3]], dtype=np.float32)  # top-left, bottom-left, top-right
    dst = np.array([[0, 0], [0, size], [size, 0]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst)


def warp(img: "Image.Image", quad: np.ndarray, size: int) -> "Image.Image":
    """Crop the oriented square ``quad`` out of ``img`` into ``size`` x ``size`` RGB.

    Outside the photo the image is mirrored (FFHQ pads by reflection too). A quad much
    larger than ``size`` is first shrunk with area averaging, so there is no aliasing.
    """
    import cv2
    from PIL import Image

    arr = np.asarray(img.convert("RGB"))
    side = float(np.hypot(*(quad[3] - quad[0])))
    shrink = int(math.floor(side / (2 * size)))
    if shrink > 1:
        h, w = arr.shape[:2]
        arr = cv2.resize(arr, (max(1, round(w / shrink)), max(1, round(h / shrink))), interpolation=cv2.INTER_AREA)
        quad = quad * np.array([arr.shape[1] / w, arr.shape[0] / h])
    m = quad_matrix(quad, size)
    out = cv2.warpAffine(arr, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT_101)
    return Image.fromarray(out)


def transform_points(points: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Landmark pixels -> normalised [0, 1] coordinates of the aligned crop of ``quad``."""
    m = quad_matrix(quad, 1)
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return p @ m[:, :2].T + m[:, 2]


def part_boxes(face: Face, quad: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """Normalised eye, mouth and nose boxes ``(x0, y0, x1, y1)`` in the aligned crop.

    Boxes are the landmarks' extent plus a margin, with sizes tied to the eye distance
    ``d`` (in the crop): eyes at least 0.45 d x 0.3 d around their corners (5 points) or
    contour (68), the mouth 0.8 d x 0.4 d around its centre (5 points) or its outline plus
    0.1 d (68), the nose from the eye line to the nose bottom, 0.5 d wide.
    """
    a = face.anchors()
    t = lambda v: transform_points(v, quad)[0]  # noqa: E731
    leye, reye, nose, mouth = t(a["leye"]), t(a["reye"]), t(a["nose"]), t(a["mouth"])
    d = float(np.hypot(*(reye - leye)))
    out: dict[str, tuple[float, float, float, float]] = {}
    for name, centre in (("leye", leye), ("reye", reye)):
        b = a["eye_boxes"][name]
        corners = transform_points(np.array([[b[0], b[1]], [b[2], b[3]], [b[0], b[3]], [b[2], b[1]]]), quad)
        half_w = max((corners[:, 0].max() - corners[:, 0].min()) / 2 + 0.08 * d, 0.225 * d)
        half_h = max((corners[:, 1].max() - corners[:, 1].min()) / 2 + 0.08 * d, 0.15 * d)
        out[name] = _clip((centre[0] - half_w, centre[1] - half_h, centre[0] + half_w, centre[1] + half_h))
    if "mouth_box" in a:
        b = a["mouth_box"]
        c = transform_points(np.array([[b[0], b[1]], [b[2], b[3]], [b[0], b[3]], [b[2], b[1]]]), quad)
        m = 0.1 * d
        out["mouth"] = _clip((c[:, 0].min() - m, c[:, 1].min() - m, c[:, 0].max() + m, c[:, 1].max() + m))
    else:
        out["mouth"] = _clip((mouth[0] - 0.4 * d, mouth[1] - 0.2 * d, mouth[0] + 0.4 * d, mouth[1] + 0.2 * d))
    top = (leye[1] + reye[1]) / 2
    out["nose"] = _clip((nose[0] - 0.25 * d, min(top, nose[1]), nose[0] + 0.25 * d, max(top, nose[1])))
    return out


def _clip(b: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    return tuple(float(min(1.0, max(0.0, v))) for v in b)  # type: ignore[return-value]


# --------------------------------------------------------------------------- detection
def model_path(name: str) -> Path:
    """Path of a model file inside the installed ``face-recognition-models`` package
    (found without importing it: its ``__init__`` needs the retired ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.origin:
        raise UserError("resize: landmark alignment needs the face-recognition-models package "
                        "(pip install -e . installs it)")
    path = Path(spec.origin).parent / "models" / name
    if not path.is_file():
        raise UserError(f"resize: {name} is missing from the face-recognition-models package at {path}")
    return path


class Landmarker:
    """dlib's HOG face detector plus a shape predictor; models load once per instance.

    Args:
        landmarks: 5 or 68 (see the module docstring for their licences).
    """

    def __init__(self, landmarks: int = 5):
        if landmarks not in LANDMARK_MODELS:
            raise UserError(f"params.yaml: resize.align.landmarks must be 5 or 68, got {landmarks!r}")
        try:
            import dlib
        except ImportError:
            raise UserError("landmark alignment needs dlib (the dlib-bin wheel; pip install -e . installs it)") from None
        self.landmarks = landmarks
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_path(LANDMARK_MODELS[landmarks])))

    def detect(self, img: "Image.Image") -> list[Face]:
        """Every frontal face in ``img`` with its landmarks, largest first ([] if none).

        Small photos (shorter side < :data:`UPSAMPLE_BELOW`) are upsampled once by the
        detector; large ones are downscaled to :data:`DETECT_MAX_SIDE` for detection and
        the landmarks are fitted at full resolution.
        """
        import cv2

        rgb = np.asarray(img.convert("RGB"))
        h, w = rgb.shape[:2]
        s = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = rgb if s == 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                                interpolation=cv2.INTER_AREA)
        upsample = 1 if min(small.shape[:2]) < UPSAMPLE_BELOW else 0
        rects, scores, _ = self._detector.run(np.ascontiguousarray(small), upsample, 0.0)
        faces = []
        for r, score in zip(rects, scores):
            box = (r.left() / s, r.top() / s, r.right() / s, r.bottom() / s)
            rect = self._dlib.rectangle(*(int(round(v)) for v in box))
            shape = self._predictor(rgb, rect)
            pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64)
            faces.append(Face(tuple(int(round(v)) for v in box), pts, float(score)))  # type: ignore[arg-type]
        return sorted(faces, key=lambda f: (-f.area, f.box[0], f.box[1]))


@dataclass
class Aligned:
    """One aligned face: the crop, its part boxes (normalised) and where it came from."""
    image: "Image.Image"
    boxes: dict[str, tuple[float, float, float, float]]
    face: Face
    eye_px: float  # eye distance in the source photo, pixels


def align_faces(img: "Image.Image", landmarker: Landmarker, size: int, framing: Framing,
                min_eye_px: float = 0.0) -> tuple[list[Aligned], list[Face]]:
    """Detect, landmark and align every face of ``img``.

    Returns ``(aligned, too_small)``: aligned crops of ``size`` px, largest face first, and
    the faces whose eye distance is below ``min_eye_px`` source pixels (not aligned).
    """
    aligned, small = [], []
    for face in landmarker.detect(img):
        d = face.eye_distance()
        if d < min_eye_px:
            small.append(face)
            continue
        a = face.anchors()
        quad = align_quad(a["leye"], a["reye"], a["mouth"], framing)
        aligned.append(Aligned(warp(img, quad, size), part_boxes(face, quad), face, d))
    return aligned, small
