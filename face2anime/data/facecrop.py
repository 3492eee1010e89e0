"""The faces of a user's photo, cropped the way a trained model's training photos were.

``face2anime convert`` and the web Convert page use :class:`FaceCropper`, built from the
model's ``config.json`` (``training_data.crop`` and ``.align``, written by training), so a
photo meets the model framed like the photos it learned from: landmark-aligned by
:mod:`face2anime.data.align` (``crop: align``), a square around OpenCV's Haar face box
(``crop: face``), or the centre square (``none``). Models trained before the framing was
recorded fall back to the current ``params.yaml`` resize settings.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from face2anime.data.align import AlignConfig
from face2anime.data.imageio import center_square

CROPS = ("none", "face", "align")
HAAR_MARGIN = 0.4   # the resize stage's crop: face margin
MAX_FACES = 16      # faces converted per photo at most (bounds a request); the rest are counted


@dataclass
class PhotoFaces:
    """The usable faces of one photo, largest first, and what was left out.

    Attributes:
        faces: ``size`` x ``size`` RGB crops.
        too_small: faces found but too small to convert (eye distance under ``min_eye_px``).
        over_limit: faces beyond :data:`MAX_FACES` (not converted).
    """
    faces: list[Image.Image] = field(default_factory=list)
    too_small: int = 0
    over_limit: int = 0

    @property
    def found(self) -> int:
        return len(self.faces) + self.too_small + self.over_limit


class FaceCropper:
    """Crop faces like a model's training data.

    Args:
        crop: ``align``, ``face`` or ``none``.
        align: the alignment settings (needed for ``align``).
        max_faces: at most this many faces per photo.
    """

    def __init__(self, crop: str, align: AlignConfig | None = None, max_faces: int = MAX_FACES):
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if crop == "align" and align is None:
            raise ValueError("crop 'align' needs an AlignConfig")
        self.crop, self.align, self.max_faces = crop, align, max_faces
        self._landmarker: Any = None

    @classmethod
    def for_model(cls, config: dict[str, Any], resize: Any) -> "FaceCropper":
        """From a model's config.json; falls back to the typed ``resize`` section
        (:class:`~face2anime.core.schema.Resize`: ``crop``, ``align``)."""
        data = config.get("training_data") or {}
        crop = data.get("crop")
        if crop in CROPS:
            align = AlignConfig(**data["align"]) if crop == "align" and data.get("align") else None
            if crop != "align" or align is not None:
                return cls(crop, align)
        crop = resize.crop
        return cls(crop, AlignConfig.from_section(resize.align) if crop == "align" else None)

    def __call__(self, img: Image.Image, size: int, detect: bool = True) -> PhotoFaces:
        """The faces of an RGB photo as ``size`` px crops (``detect=False``: the photo is one)."""
        if not detect or self.crop == "none":
            return PhotoFaces([center_square(img).resize((size, size), Image.Resampling.LANCZOS)])
        if self.crop == "face":
            from face2anime.data.faces import crop_face

            face = crop_face(img, margin=HAAR_MARGIN)
            return PhotoFaces([] if face is None else
                              [center_square(face).resize((size, size), Image.Resampling.LANCZOS)])
        from face2anime.data.align import Landmarker, align_faces

        if self._landmarker is None:
            self._landmarker = Landmarker(self.align.landmarks)
        aligned, small = align_faces(img, self._landmarker, size, self.align.framing, self.align.min_eye_px)
        return PhotoFaces([a.image for a in aligned[: self.max_faces]], len(small),
                          max(0, len(aligned) - self.max_faces))
