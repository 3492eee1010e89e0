"""Robust image loading: any file on disk -> an upright 8-bit RGB PIL image, or a reasoned skip.

Real data sets contain everything: empty files, HTML error pages saved as ``.jpg``,
truncated downloads, grayscale, 16-bit, CMYK, palette and alpha images, EXIF-rotated
phone photos and the occasional decompression bomb. :func:`load_rgb` turns each of these
either into an ``RGB`` image plus the list of conversions it applied, or into a
:class:`BadImage` carrying a short machine-readable ``reason`` that the resize stage
counts in its metrics. No PIL exception escapes as a traceback.

Skip reasons: ``missing``, ``empty``, ``not_an_image``, ``truncated``, ``too_large``,
``unreadable``.
Conversion names: ``exif_rotated``, ``palette``, ``grayscale``, ``16bit``, ``float``,
``transparency``, ``cmyk``, and ``<mode>`` (lower-cased) for other exotic modes.
"""
from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

#: Colour that transparent pixels are composited onto (neutral, like a page background).
BACKGROUND: tuple[int, int, int] = (255, 255, 255)

_EXIF_ORIENTATION = 0x0112


class BadImage(Exception):
    """An image that cannot be used; ``reason`` is a short key such as ``'truncated'``."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@contextlib.contextmanager
def _strict_decoding() -> Iterator[None]:
    """Make sure truncated files raise, even if some other library relaxed PIL globally.

    PIL's own decompression-bomb *warning* is silenced here because :func:`load_rgb`
    applies its own ``max_pixels`` limit; PIL's *error* (> 2x its limit) is still raised.
    """
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old


def _decode_error(e: BaseException) -> BadImage:
    """Map an exception raised while opening/decoding to a :class:`BadImage`."""
    msg = str(e).strip() or type(e).__name__
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return BadImage("too_large", msg)
    if isinstance(e, UnidentifiedImageError):
        return BadImage("not_an_image", msg)
    if isinstance(e, EOFError) or "truncated" in msg.lower():
        return BadImage("truncated", msg)
    if isinstance(e, ValueError) and "too large" in msg.lower():  # PNG text-chunk bomb
        return BadImage("too_large", msg)
    return BadImage("unreadable", f"{type(e).__name__}: {msg}")


def load_rgb(path: Path, max_pixels: int = 100_000_000) -> tuple[Image.Image, list[str]]:
    """Open any image file as an upright 8-bit RGB image.

    Args:
        path: the image file (any format PIL reads).
        max_pixels: images with width*height above this are refused *before* decoding.
            (PIL's own hard limit, 2 x ``Image.MAX_IMAGE_PIXELS`` ~ 179 Mpx, also applies.)

    Returns:
        ``(image, conversions)``: ``image`` is a fully decoded, detached ``RGB`` image of
        size (W, H) after EXIF rotation; ``conversions`` lists what was done to get there,
        in order, e.g. ``['exif_rotated', 'grayscale']``; empty for a plain RGB file.

    Raises:
        BadImage: with ``reason`` one of ``missing``, ``empty``, ``not_an_image``,
            ``truncated``, ``too_large``, ``unreadable``.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadImage("missing", str(path)) from None
    except OSError as e:
        raise BadImage("unreadable", f"{type(e).__name__}: {e}") from None
    if not path.is_file():
        raise BadImage("unreadable", f"not a regular file: {path}")
    if size == 0:
        raise BadImage("empty", str(path))

    try:
        with _strict_decoding(), Image.open(path) as img:
            w, h = img.size
            if w <= 0 or h <= 0:
                raise BadImage("unreadable", f"zero-sized image {w}x{h}")
            if w * h > max_pixels:
                raise BadImage("too_large", f"{w}x{h} = {w * h} px > max_pixels {max_pixels}")
            img.load()  # full decode now: truncation surfaces here, not later
            return _to_rgb(img)
    except BadImage:
        raise
    except MemoryError:
        raise BadImage("too_large", "out of memory while decoding") from None
    except Exception as e:  # PIL plugins raise OSError, SyntaxError, ValueError, struct.error...
        raise _decode_error(e) from None


def _to_rgb(img: Image.Image) -> tuple[Image.Image, list[str]]:
    """Decoded image of any mode -> (new detached RGB image, conversions applied)."""
    conversions: list[str] = []

    orientation = 1
    try:
        orientation = int(img.getexif().get(_EXIF_ORIENTATION, 1) or 1)
    except Exception:  # broken EXIF block: keep the pixels as stored
        orientation = 1
    if orientation in range(2, 9):
        rotated = ImageOps.exif_transpose(img)
        if rotated is not None:
            img = rotated
            conversions.append("exif_rotated")

    mode = img.mode
    if mode == "P" or mode == "PA":
        conversions.append("palette")
        has_alpha = mode == "PA" or "transparency" in img.info
        img = img.convert("RGBA" if has_alpha else "RGB")
        mode = img.mode
    if mode in ("1", "L", "LA", "La"):
        conversions.append("grayscale")
    elif mode.startswith("I") or mode == "F":
        conversions.append("16bit" if mode.startswith("I") else "float")
        conversions.append("grayscale")
        # (a tRNS colour key on a 16-bit image is rare and dropped here)
        img = Image.fromarray(_to_uint8(np.asarray(img), mode))
        mode = "L"

    if mode in ("RGBA", "RGBa", "LA", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        alpha = rgba.getchannel("A")
        conversions.append("transparency")
        out = Image.new("RGB", rgba.size, BACKGROUND)
        out.paste(rgba.convert("RGB"), mask=alpha)
        return out, conversions
    if mode == "RGB":
        return img.copy(), conversions
    if mode == "CMYK":
        conversions.append("cmyk")  # PIL already undoes Adobe's inverted CMYK on decode
    elif mode not in ("1", "L"):
        conversions.append(mode.lower().replace(";", "_"))
    return img.convert("RGB"), conversions


def _to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    """High-bit-depth grayscale (H, W) -> uint8 (H, W).

    Integer data that fits 16 bits (PNG/TIFF 16-bit, incl. PIL's ``I`` mode for them) is
    scaled by 255/65535 so brightness is kept (32768 -> 128; PIL's ``convert('L')``
    would clip it to 255). Anything else (negative, > 16 bit, float) is min-max scaled.
    """
    a = arr.astype(np.float64)
    if a.size == 0:
        return np.zeros(arr.shape, np.uint8)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if mode != "F" and lo >= 0 and hi <= 65535:
        scaled = a / 257.0
    elif hi > lo:
        scaled = (a - lo) * (255.0 / (hi - lo))
    else:
        scaled = np.zeros_like(a)
    return np.clip(np.rint(np.nan_to_num(scaled)), 0, 255).astype(np.uint8)


def square_crop_box(w: int, h: int) -> tuple[int, int, int, int]:
    """Centre square ``(left, top, right, bottom)`` of a ``w`` x ``h`` image (side min(w, h))."""
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return left, top, left + s, top + s


def center_square(img: Image.Image) -> Image.Image:
    """The centre square of a PIL image (side min(w, h))."""
    return img.crop(square_crop_box(*img.size))
