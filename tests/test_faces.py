"""face2anime.data.faces: API contract, crop geometry, canonical boxes, one drawn-face detection."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from face2anime.data import faces


def drawn_face(size: int = 200) -> Image.Image:
    """A blurred grey cartoon face the frontal-face, eye and smile cascades all fire on
    (dark hair, light oval, brows, dark eyes at (0.38|0.62, 0.44), nose shade, mouth)."""
    s, c = size, size / 2
    im = Image.new("L", (s, s), 60)
    d = ImageDraw.Draw(im)
    d.ellipse([c - 0.36 * s, c - 0.46 * s, c + 0.36 * s, c + 0.2 * s], fill=40)
    d.ellipse([c - 0.28 * s, c - 0.36 * s, c + 0.28 * s, c + 0.40 * s], fill=220)
    for sx in (-1, 1):
        ex, ey = c + sx * 0.12 * s, c - 0.06 * s
        d.rectangle([ex - 0.08 * s, ey - 0.085 * s, ex + 0.08 * s, ey - 0.06 * s], fill=60)
        d.ellipse([ex - 0.065 * s, ey - 0.04 * s, ex + 0.065 * s, ey + 0.04 * s], fill=40)
        d.ellipse([ex - 0.02 * s, ey - 0.02 * s, ex + 0.02 * s, ey + 0.02 * s], fill=10)
    d.polygon([(c, c - 0.02 * s), (c - 0.04 * s, c + 0.12 * s), (c + 0.04 * s, c + 0.12 * s)], fill=185)
    d.ellipse([c - 0.1 * s, c + 0.18 * s, c + 0.1 * s, c + 0.24 * s], fill=90)
    return im.filter(ImageFilter.GaussianBlur(4)).convert("RGB")


def noise(w: int = 160, h: int = 120, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_no_face_in_noise_or_flat_images():
    for img in (noise(), noise(300, 200, 1), Image.new("RGB", (64, 64), "white"),
                Image.new("RGBA", (50, 40), (0, 0, 0, 0)), Image.new("L", (10, 10))):
        assert faces.detect_faces(img) == []
        assert faces.crop_face(img) is None
        assert faces.part_boxes(img, aligned=False) is None


def test_canonical_boxes_for_aligned_faces():
    boxes = faces.part_boxes(noise(), aligned=True)   # pixels are not even looked at
    assert set(boxes) == {"leye", "reye", "mouth", "nose"}
    for x0, y0, x1, y1 in boxes.values():
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    le, re_, mo = boxes["leye"], boxes["reye"], boxes["mouth"]
    assert le[2] <= re_[0]                                   # left eye left of right eye
    assert max(le[3], re_[3]) <= mo[1]                       # eyes above the mouth
    assert abs((le[0] + re_[2]) / 2 - 0.5) < 1e-9            # symmetric about the centre
    boxes["leye"] = (0, 0, 0, 0)
    assert faces.part_boxes(noise(), aligned=True)["leye"] != (0, 0, 0, 0)   # a copy


def test_square_around_geometry():
    # margin 0.4 -> side 1.8 x the face box, centred
    assert faces.square_around((100, 100, 200, 200), (1000, 800), 0.4) == (60, 60, 240, 240)
    # near the border it is shifted inside, not padded
    x0, y0, x1, y1 = faces.square_around((0, 0, 100, 100), (1000, 800), 0.4)
    assert (x0, y0) == (0, 0) and x1 - x0 == y1 - y0 == 180
    # larger than the image -> shrunk to the short side
    x0, y0, x1, y1 = faces.square_around((10, 10, 90, 50), (100, 60), 1.0)
    assert x1 - x0 == y1 - y0 == 60 and 0 <= x0 and x1 <= 100 and y0 == 0


def test_crop_face_uses_largest_face(monkeypatch):
    img = Image.new("RGB", (400, 300), "grey")
    monkeypatch.setattr(faces, "detect_faces", lambda im: [(200, 100, 300, 200), (0, 0, 20, 20)])
    out = faces.crop_face(img, margin=0.25)
    assert out.size == (150, 150)                      # 100 px face * 1.5
    monkeypatch.setattr(faces, "detect_faces", lambda im: [])
    assert faces.crop_face(img) is None


def test_cascades_are_loaded_once():
    a = faces.cascade("haarcascade_eye.xml")
    assert faces.cascade("haarcascade_eye.xml") is a


def test_drawn_face_is_detected_with_parts():
    img = drawn_face(200)
    found = faces.detect_faces(img)
    assert found, "frontal-face cascade should fire on the drawn face"
    x0, y0, x1, y1 = found[0]
    assert x0 < 0.3 * 200 < 0.7 * 200 < x1 and y0 < 0.44 * 200 < y1   # covers the drawn eyes
    crop = faces.crop_face(img)
    assert crop is not None and crop.width == crop.height
    parts = faces.part_boxes(img, aligned=False)
    assert parts is not None and {"leye", "reye", "mouth"} <= set(parts)
    for name, cx in (("leye", 0.38), ("reye", 0.62)):
        bx0, by0, bx1, by1 = parts[name]
        assert bx0 < cx < bx1 and by0 < 0.44 < by1, (name, parts[name])
    mx0, my0, mx1, my1 = parts["mouth"]
    assert mx0 < 0.5 < mx1 and my0 > 0.6                 # below the eyes, centred
    nx0, ny0, nx1, ny1 = parts["nose"]
    assert 0.4 < (nx0 + nx1) / 2 < 0.6 and ny0 < ny1


def test_large_photo_is_downscaled_for_detection_and_boxes_scaled_back():
    big = Image.new("RGB", (2400, 1600), (60, 60, 60))
    big.paste(drawn_face(600), (1500, 500))
    found = faces.detect_faces(big)
    assert found
    x0, y0, x1, y1 = found[0]
    assert 1450 < x0 < 1650 and 450 < y0 < 650 and 1850 < x1 < 2150   # in full-res pixels


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_any_pil_mode_is_accepted(mode):
    img = drawn_face(200).convert(mode) if mode != "I;16" else drawn_face(200).convert("I;16")
    faces.detect_faces(img)   # must not raise
