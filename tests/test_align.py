"""Landmark alignment (face2anime.data.align): geometry against known points, detection on
rendered faces whose eye positions the renderer knows, group photos, skips, and resize."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from face2anime.data import align
from face2anime.data.align import AlignConfig
from face2anime.data.resize import resize_dataset
from face2anime.data.synthetic.render import render_one
from faceutil import DETECTED, group_photo, known_eyes

@pytest.fixture(scope="module")
def landmarker() -> align.Landmarker:
    return align.Landmarker(5)


def dots(size: int, points: list[tuple[float, float]], r: int = 3) -> Image.Image:
    """A mid-grey image with one pure colour dot per point (red, green, blue, ...)."""
    arr = np.full((size, size, 3), 128, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for (x, y), colour in zip(points, [(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        arr[(xx - x) ** 2 + (yy - y) ** 2 <= r * r] = colour
    return Image.fromarray(arr)


def centroid(img: Image.Image, colour: tuple[int, int, int]) -> np.ndarray:
    a = np.asarray(img).astype(int)
    mask = (np.abs(a - np.array(colour)).sum(-1) < 120)
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("angle", [0.0, 25.0, -40.0])
def test_warp_puts_eyes_and_mouth_where_the_framing_says(angle: float) -> None:
    """Dots at the eyes and mouth of a rolled face land at the framing's positions: the eye
    line level, eyes 0.5 -/+ d/2 about the centre, at Framing.eye_height (independent maths)."""
    d, e2m = 60.0, 66.0   # eye distance and eye-to-mouth distance (e2m = 1.1 d)
    t = math.radians(angle)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    c = np.array([300.0, 260.0])
    leye, reye, mouth = (c + rot @ v for v in (np.array([-d / 2, 0]), np.array([d / 2, 0]), np.array([0, e2m])))
    framing = align.Framing(scale=0.8, shift=0.25)
    quad = align.align_quad(leye, reye, mouth, framing)
    out = align.warp(dots(600, [tuple(leye), tuple(reye), tuple(mouth)]), quad, 128)
    side = 2 * max(2 * d, 1.8 * e2m) * 0.8                 # crop side in photo pixels
    eye_y = 0.5 - 0.25 * e2m / side                        # the eye midpoint sits shift * e2m above the centre
    want = {(255, 0, 0): (0.5 - d / side / 2, eye_y), (0, 255, 0): (0.5 + d / side / 2, eye_y),
            (0, 0, 255): (0.5, eye_y + e2m / side)}
    for colour, (x, y) in want.items():
        got = centroid(out, colour)
        assert np.hypot(*(got - np.array([x, y]) * 128)) < 1.0, (colour, got, (x * 128, y * 128))
    assert framing.eye_height(1.1) == pytest.approx(eye_y)


def test_quad_follows_ffhq_recipe_at_ffhq_settings() -> None:
    """FFHQ's own numbers (scale 1, shift 0.1): side 4 d for e2m < 1.11 d, centre 0.1 e2m below."""
    quad = align.align_quad(np.array([100.0, 100.0]), np.array([150.0, 100.0]), np.array([125.0, 150.0]),
                            align.Framing(1.0, 0.1))
    side = np.hypot(*(quad[3] - quad[0]))
    assert side == pytest.approx(2 * max(2 * 50, 1.8 * 50))
    assert quad.mean(0) == pytest.approx([125.0, 105.0])
    assert quad[0] == pytest.approx([125 - side / 2, 105 - side / 2])   # top-left, axis-aligned


def test_five_point_anchors_order() -> None:
    """dlib's 5-point order: image-right eye corners, image-left eye corners, nose."""
    pts = np.array([[80, 50], [60, 50], [20, 50], [40, 50], [50, 70]], float)
    a = align.anchors(pts)
    assert a["leye"] == pytest.approx([30, 50]) and a["reye"] == pytest.approx([70, 50])
    assert a["mouth"] == pytest.approx([50, 50 + align.NOSE_TO_MOUTH * 20])
    with pytest.raises(ValueError):
        align.anchors(pts[:4])


@pytest.mark.parametrize("index", DETECTED)
def test_detected_eyes_match_the_renderer(landmarker: align.Landmarker, index: int) -> None:
    """On rendered humans the landmark eyes are within 0.15 eye distances (~7 px at 256) of
    the renderer's eye centres, and the aligned part boxes contain those centres."""
    img, leye, reye = known_eyes(index)
    faces = landmarker.detect(Image.fromarray(img))
    assert len(faces) == 1
    a, d = faces[0].anchors(), float(np.hypot(*(reye - leye)))
    assert np.hypot(*(a["leye"] - leye)) < 0.15 * d
    assert np.hypot(*(a["reye"] - reye)) < 0.15 * d
    quad = align.align_quad(a["leye"], a["reye"], a["mouth"], align.Framing(0.8, 0.25))
    boxes = align.part_boxes(faces[0], quad)
    for name, true in (("leye", leye), ("reye", reye)):
        x, y = align.transform_points(true, quad)[0]
        x0, y0, x1, y1 = boxes[name]
        assert x0 < x < x1 and y0 < y < y1, name
    assert boxes["mouth"][1] > boxes["leye"][3]   # mouth below the eyes


def test_every_face_of_a_group_photo_largest_first_small_ones_counted(landmarker: align.Landmarker) -> None:
    faces, small = align.align_faces(group_photo(), landmarker, 64, align.Framing(0.8, 0.25), min_eye_px=20)
    assert [f.image.size for f in faces] == [(64, 64)] * 3
    eyes = [f.eye_px for f in faces]
    assert eyes == sorted(eyes, reverse=True) and eyes[0] > 40
    # the 0.2-scaled face (eye distance ~10 px) is either too small or not found at all
    assert all(f.eye_distance() < 20 for f in small) and len(small) <= 1


def test_no_face_in_noise(landmarker: align.Landmarker) -> None:
    rng = np.random.default_rng(0)
    assert landmarker.detect(Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))) == []
    assert landmarker.detect(Image.new("RGB", (50, 40), "white")) == []


def test_unknown_landmark_model_is_a_user_error() -> None:
    from face2anime.core.params import UserError

    with pytest.raises(UserError, match="resize.align.landmarks"):
        align.Landmarker(17)


def test_resize_aligns_every_face_and_counts_skips(tmp_path: Path) -> None:
    """crop: align on photos: one image per face ({id}, {id}.f2, ...), landmark part boxes
    in the manifest, no_face / face_too_small / unreadable counted, nothing lost silently."""
    raw = tmp_path / "raw"
    (raw / "human").mkdir(parents=True)
    (raw / "character").mkdir()
    rows = []
    for i in DETECTED[:3]:
        Image.fromarray(known_eyes(i)[0]).save(raw / "human" / f"p{i}.png")
        rows.append({"id": f"p{i}", "domain": "human", "file": f"human/p{i}.png", "aligned": False})
    group_photo().save(raw / "human" / "group.jpg", quality=95)
    rows.append({"id": "group", "domain": "human", "file": "human/group.jpg", "aligned": False})
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(raw / "human" / "noise.png")
    rows.append({"id": "noise", "domain": "human", "file": "human/noise.png", "aligned": False})
    far = Image.new("RGB", (800, 800), (90, 110, 120))
    far.paste(Image.fromarray(known_eyes(DETECTED[0])[0]).resize((128, 128), Image.Resampling.LANCZOS), (336, 336))
    far.save(raw / "human" / "far.png")   # eye distance ~24 px: fine at min_eye_px 20, too small at 40
    rows.append({"id": "far", "domain": "human", "file": "human/far.png", "aligned": False})
    (raw / "human" / "broken.jpg").write_bytes(b"not a jpeg")
    rows.append({"id": "broken", "domain": "human", "file": "human/broken.jpg", "aligned": False})
    for i in range(5):
        render = render_one(0, "character", i, 64)[0]
        Image.fromarray(render).save(raw / "character" / f"c{i}.png")
        rows.append({"id": f"c{i}", "domain": "character", "file": f"character/c{i}.png", "aligned": True})
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)

    out = resize_dataset(raw, tmp_path / "resized", tmp_path / "resize.json", size=32, test_count=1, crop="align",
                         seed=0, max_pixels=10_000_000, progress=False,
                         align=AlignConfig(landmarks=5, scale=0.8, shift=0.25, faces="all", min_eye_px=20))
    m = json.loads((tmp_path / "resize.json").read_text())
    humans = out[out["domain"] == "human"].set_index("id")
    assert {"p6", "p9", "p41", "group", "group.f2", "group.f3", "far"} <= set(humans.index)
    assert m["skipped"] == {"no_face": 1, "not_an_image": 1} or m["skipped"] == {"no_face": 1, "unreadable": 1}
    assert m["faces"]["photos_with_several_faces"] == 1
    assert m["faces"]["faces_written"] == len(humans)
    assert humans.loc["group", "faces_in_photo"] >= 3 and humans.loc["group.f2", "face_rank"] == 2
    assert (humans["boxes_from"] == "landmarks").all()
    for p in ("leye", "reye", "mouth"):
        assert humans[[f"{p}_x0", f"{p}_y0", f"{p}_x1", f"{p}_y1"]].notna().all().all()
    assert (humans["leye_x1"] <= humans["reye_x1"]).all() and (humans["mouth_y0"] > humans["leye_y0"]).all()
    # characters are aligned crops: untouched, no landmark fields
    chars = out[out["domain"] == "character"]
    assert len(chars) == 5 and chars["boxes_from"].fillna("").eq("").all()

    # a larger minimum: the far face is too small (a counted skip); the group keeps its
    # largest face (eye distance ~48 px) and counts its 0.8- and 0.6-scaled ones (~36, ~31 px)
    out2 = resize_dataset(raw, tmp_path / "resized2", tmp_path / "resize2.json", size=32, test_count=1,
                          crop="align", seed=0, max_pixels=10_000_000, progress=False,
                          align=AlignConfig(landmarks=5, scale=0.8, shift=0.25, faces="all", min_eye_px=40))
    m2 = json.loads((tmp_path / "resize2.json").read_text())
    assert m2["skipped"].get("face_too_small") == 1
    assert m2["faces"]["faces_too_small"] >= 3   # far's face + the group's two smaller ones
    assert "group" in set(out2["id"]) and "group.f2" not in set(out2["id"])


def test_largest_only(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    (raw / "human").mkdir(parents=True)
    (raw / "character").mkdir()
    group_photo().save(raw / "human" / "group.png")
    Image.fromarray(known_eyes(DETECTED[0])[0]).save(raw / "human" / "one.png")
    rows = [{"id": "group", "domain": "human", "file": "human/group.png", "aligned": False},
            {"id": "one", "domain": "human", "file": "human/one.png", "aligned": False}]
    for i in range(2):
        Image.fromarray(render_one(0, "character", i, 64)[0]).save(raw / "character" / f"c{i}.png")
        rows.append({"id": f"c{i}", "domain": "character", "file": f"character/c{i}.png", "aligned": True})
    pd.DataFrame(rows).to_csv(raw / "manifest.csv", index=False)
    out = resize_dataset(raw, tmp_path / "resized", tmp_path / "m.json", size=32, test_count=1, crop="align", seed=0,
                         max_pixels=10_000_000, progress=False,
                         align=AlignConfig(landmarks=5, scale=0.8, shift=0.25, faces="largest", min_eye_px=0))
    m = json.loads((tmp_path / "m.json").read_text())
    assert sorted(out[out["domain"] == "human"]["id"]) == ["group", "one"]
    assert m["faces"]["faces_not_taken"] >= 2


def test_face_cropper_every_face_bounded_and_counted() -> None:
    """convert / the web page: every usable face of a group photo, largest first; faces over
    the per-photo limit and faces too small are counted, not dropped silently."""
    from face2anime.data.facecrop import FaceCropper

    cfg = AlignConfig(landmarks=5, scale=0.8, shift=0.25, faces="all", min_eye_px=20)
    found = FaceCropper("align", cfg)(group_photo(), 64)
    assert len(found.faces) == 3 and found.over_limit == 0 and found.too_small <= 1
    assert all(f.size == (64, 64) for f in found.faces)
    capped = FaceCropper("align", cfg, max_faces=2)(group_photo(), 64)
    assert len(capped.faces) == 2 and capped.over_limit == 1 and capped.found == found.found
    # already a crop: the whole (centre-square) image, no detection
    assert len(FaceCropper("align", cfg)(group_photo(), 32, detect=False).faces) == 1


def test_face_cropper_follows_the_models_training_framing() -> None:
    from cfgutil import typed_params
    from face2anime.data.facecrop import FaceCropper

    params = typed_params({"resize.crop": "face", "resize.align": {"landmarks": 5, "scale": 0.8, "shift": 0.25,
                                                                   "faces": "all", "min_eye_px": 12}}).resize
    trained = {"training_data": {"crop": "align", "align": {"landmarks": 68, "scale": 0.7, "shift": 0.2,
                                                            "faces": "largest", "min_eye_px": 10}}}
    c = FaceCropper.for_model(trained, params)
    assert c.crop == "align" and c.align.landmarks == 68 and c.align.scale == 0.7
    # a model from before the framing was recorded: the current params
    assert FaceCropper.for_model({"training_data": {"source": "local"}}, params).crop == "face"
    with pytest.raises(ValueError, match="crop must be one of"):
        FaceCropper("tight")
