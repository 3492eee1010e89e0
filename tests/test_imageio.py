"""face2anime.data.imageio.load_rgb on every bad or odd kind of file, each generated on the fly."""
from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image, ImageFile

from face2anime.data.imageio import BadImage, load_rgb

RNG = np.random.default_rng(0)


def _noise(w: int, h: int) -> Image.Image:
    """Random RGB noise: compresses badly, so a cut-off file really lacks pixel data."""
    return Image.fromarray(RNG.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# ----------------------------------------------------------------------------- bad files
def make_empty(p: Path) -> None:
    p.write_bytes(b"")


def make_text(p: Path) -> None:
    p.write_text("hello, this is not a picture\n")


def make_html(p: Path) -> None:
    p.write_text("<!DOCTYPE html><html><body>Google Drive: quota exceeded</body></html>")


def make_truncated_png(p: Path) -> None:
    _noise(64, 64).save(p, format="PNG")
    _truncate(p)


def make_truncated_jpeg(p: Path) -> None:
    _noise(64, 64).save(p, format="JPEG", quality=95)
    _truncate(p)


def make_truncated_header(p: Path) -> None:
    _noise(64, 64).save(p, format="PNG")
    p.write_bytes(p.read_bytes()[:20])  # signature + part of IHDR


def make_bomb_header(p: Path) -> None:
    """A valid PNG header declaring 100000 x 100000 px (10 Gpx) with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                  + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


@pytest.mark.parametrize("make, name, reason", [
    (make_empty, "empty.png", "empty"),
    (make_text, "text.png", "not_an_image"),
    (make_html, "page.jpg", "not_an_image"),
    (make_truncated_png, "cut.png", "truncated"),
    (make_truncated_jpeg, "cut.jpg", "truncated"),
    (make_truncated_header, "head.png", "truncated"),
    (make_bomb_header, "bomb.png", "too_large"),
])
def test_bad_files_raise_reason(tmp_path: Path, make: Callable[[Path], None], name: str,
                                reason: str) -> None:
    p = tmp_path / name
    make(p)
    with pytest.raises(BadImage) as info:
        load_rgb(p)
    assert info.value.reason == reason, info.value


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadImage) as info:
        load_rgb(tmp_path / "nope.png")
    assert info.value.reason == "missing"


def test_max_pixels_checked_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "big.png"
    _noise(40, 30).save(p)
    decoded: list[bool] = []
    orig_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load",
                        lambda self: decoded.append(True) or orig_load(self))
    with pytest.raises(BadImage) as info:
        load_rgb(p, max_pixels=40 * 30 - 1)
    assert info.value.reason == "too_large"
    assert not decoded, "pixels were decoded before the size check"
    img, conv = load_rgb(p, max_pixels=40 * 30)
    assert img.size == (40, 30) and conv == []


def test_truncation_detected_even_if_globally_relaxed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Some other library may set LOAD_TRUNCATED_IMAGES; load_rgb must still refuse."""
    p = tmp_path / "cut.jpg"
    make_truncated_jpeg(p)
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(BadImage) as info:
        load_rgb(p)
    assert info.value.reason == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored, not changed for everyone


def test_global_flag_left_alone(tmp_path: Path) -> None:
    p = tmp_path / "cut.png"
    make_truncated_png(p)
    with pytest.raises(BadImage):
        load_rgb(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


# ----------------------------------------------------------------------------- odd but usable files
def _px(img: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    return tuple(img.getpixel(xy))  # type: ignore[return-value]


def test_plain_rgb_has_no_conversions(tmp_path: Path) -> None:
    p = tmp_path / "rgb.png"
    src = _noise(40, 30)
    src.save(p)
    img, conv = load_rgb(p)
    assert conv == [] and img.mode == "RGB" and img.size == (40, 30)
    assert np.array_equal(np.asarray(img), np.asarray(src))


def test_grayscale_L(tmp_path: Path) -> None:
    p = tmp_path / "l.png"
    Image.new("L", (10, 8), 77).save(p)
    img, conv = load_rgb(p)
    assert conv == ["grayscale"] and img.mode == "RGB" and img.size == (10, 8)
    assert _px(img, (3, 3)) == (77, 77, 77)


def test_grayscale_alpha_LA_composited_on_white(tmp_path: Path) -> None:
    p = tmp_path / "la.png"
    im = Image.new("LA", (10, 8), (50, 0))       # fully transparent
    im.paste((50, 255), (0, 0, 5, 8))            # left half opaque
    im.save(p)
    img, conv = load_rgb(p)
    assert conv == ["grayscale", "transparency"]
    assert _px(img, (1, 1)) == (50, 50, 50)
    assert _px(img, (8, 1)) == (255, 255, 255)


def test_rgba_composited_on_white_not_black(tmp_path: Path) -> None:
    p = tmp_path / "rgba.png"
    im = Image.new("RGBA", (10, 8), (0, 0, 0, 0))  # transparent black: must become white
    im.paste((200, 10, 10, 255), (0, 0, 5, 8))
    im.paste((0, 0, 200, 128), (5, 0, 10, 4))    # half-transparent blue over white
    im.save(p)
    img, conv = load_rgb(p)
    assert conv == ["transparency"] and img.mode == "RGB"
    assert _px(img, (1, 1)) == (200, 10, 10)
    assert _px(img, (8, 6)) == (255, 255, 255)
    r, g, b = _px(img, (8, 1))
    assert 120 <= r <= 135 and 120 <= g <= 135 and 225 <= b <= 230


def test_palette_with_transparency(tmp_path: Path) -> None:
    p = tmp_path / "p.png"
    im = Image.new("P", (10, 8), 0)
    im.putpalette([0, 0, 0, 255, 0, 0] + [0] * (254 * 3))
    im.paste(1, (0, 0, 5, 8))
    im.save(p, transparency=0)                   # index 0 (black) is transparent
    img, conv = load_rgb(p)
    assert conv == ["palette", "transparency"]
    assert _px(img, (1, 1)) == (255, 0, 0)
    assert _px(img, (8, 1)) == (255, 255, 255)


def test_palette_opaque(tmp_path: Path) -> None:
    p = tmp_path / "p.gif"
    im = Image.new("P", (10, 8), 1)
    im.putpalette([0, 0, 0, 0, 255, 0] + [0] * (254 * 3))
    im.save(p)
    img, conv = load_rgb(p)
    assert conv == ["palette"]
    assert _px(img, (1, 1)) == (0, 255, 0)


def test_cmyk_jpeg(tmp_path: Path) -> None:
    p = tmp_path / "cmyk.jpg"
    im = Image.new("CMYK", (16, 16), (0, 255, 255, 0))   # pure red in CMYK
    im.paste((255, 0, 0, 0), (8, 0, 16, 16))            # pure cyan
    im.save(p, quality=95)
    img, conv = load_rgb(p)
    assert conv == ["cmyk"] and img.mode == "RGB"
    r, g, b = _px(img, (2, 8))
    assert r > 240 and g < 15 and b < 15, (r, g, b)
    r, g, b = _px(img, (13, 8))
    assert r < 15 and g > 240 and b > 240, (r, g, b)


@pytest.mark.parametrize("value, expected", [(32768, 128), (65535, 255), (0, 0), (1000, 4)])
def test_16bit_png_scaled_not_clipped(tmp_path: Path, value: int, expected: int) -> None:
    p = tmp_path / "g16.png"
    Image.fromarray(np.full((6, 9), value, np.uint16)).save(p)
    assert Image.open(p).mode.startswith("I")   # really a 16-bit file
    img, conv = load_rgb(p)
    assert conv == ["16bit", "grayscale"] and img.size == (9, 6) and img.mode == "RGB"
    assert _px(img, (4, 3)) == (expected,) * 3


def test_16bit_gradient_keeps_order(tmp_path: Path) -> None:
    p = tmp_path / "ramp16.png"
    ramp = np.tile(np.linspace(0, 65535, 16).astype(np.uint16), (4, 1))
    Image.fromarray(ramp).save(p)
    img, _ = load_rgb(p)
    row = np.asarray(img)[0, :, 0].astype(int)
    assert row[0] == 0 and row[-1] == 255 and np.all(np.diff(row) > 0)


def test_exif_orientation_6_rotated_upright(tmp_path: Path) -> None:
    """Orientation 6 = stored rotated; viewer must rotate 90 deg clockwise."""
    p = tmp_path / "phone.jpg"
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 10, 10))    # red mark at stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(p, exif=exif, quality=95)
    img, conv = load_rgb(p)
    assert conv == ["exif_rotated"]
    assert img.size == (20, 40)                  # width and height swapped
    r, g, b = _px(img, (15, 4))                  # top-left -> top-right after 90 deg CW
    assert r > 200 and b < 60, (r, g, b)
    r, g, b = _px(img, (4, 4))
    assert b > 200 and r < 60, (r, g, b)


def test_exif_orientation_1_untouched(tmp_path: Path) -> None:
    p = tmp_path / "up.jpg"
    exif = Image.Exif()
    exif[0x0112] = 1
    Image.new("RGB", (40, 20), (0, 0, 255)).save(p, exif=exif)
    img, conv = load_rgb(p)
    assert conv == [] and img.size == (40, 20)


def test_result_is_detached_from_file(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    _noise(12, 12).save(p)
    img, _ = load_rgb(p)
    p.unlink()
    assert img.resize((6, 6)).size == (6, 6)    # usable after the file is gone
