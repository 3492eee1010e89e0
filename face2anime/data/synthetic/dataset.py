"""The dataset writer: :func:`generate` renders every image to a PNG and returns the manifest.

Layout: ``out_dir/human/h00000.png ...`` and ``out_dir/character/c00000.png ...`` (RGB,
size x size). The manifest has one row per image, columns :func:`manifest_columns`: ``id``,
``domain``, ``file`` (relative to ``out_dir``), ``clean``, ``hard_kind``, the attributes and the
normalised part boxes ``{leye,reye,mouth,nose}_{x0,y0,x1,y1}``.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from face2anime.core.io import atomic_path
from face2anime.core.params import UserError
from face2anime.data.synthetic.attributes import ATTRIBUTES, PARTS, hard_assignment
from face2anime.data.synthetic.render import render_one

_PREFIX = {"human": "h", "character": "c"}
_BOX_KEYS = ("x0", "y0", "x1", "y1")
_MIN_SIZE, _MAX_SIZE = 16, 1024


def _check_args(n_human: int, n_character: int, size: int, hard_share: float,
                share_name: str = "hard_share") -> None:
    """Raise a UserError naming the first bad argument of :func:`generate`."""
    for name, n in (("n_human", n_human), ("n_character", n_character)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or n > 99999:
            raise UserError(f"synthetic {name} must be an integer in [0, 99999], got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or not _MIN_SIZE <= size <= _MAX_SIZE:
        raise UserError(f"synthetic size must be an integer in [{_MIN_SIZE}, {_MAX_SIZE}], got {size!r}")
    if not isinstance(hard_share, (int, float)) or not 0.0 <= hard_share <= 1.0:
        raise UserError(f"synthetic {share_name} must be in [0, 1], got {hard_share!r}")


def _png_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 (H, W, 3) RGB array as PNG: 'Sub' row filter + zlib RLE (level 1).

    About 2.5x faster than PIL's encoder at these sizes, with smaller files."""
    h, w, _ = arr.shape
    raw = np.empty((h, w * 3 + 1), np.uint8)
    raw[:, 0] = 1                                        # filter type 1 (Sub) on every row
    body = raw[:, 1:].reshape(h, w, 3)
    body[:, 0] = arr[:, 0]
    np.subtract(arr[:, 1:], arr[:, :-1], out=body[:, 1:])  # uint8 wrap-around, as PNG defines
    z = zlib.compressobj(1, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    data = z.compress(raw.tobytes()) + z.flush()

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + tag + payload
                + struct.pack(">I", zlib.crc32(tag + payload) & 0xFFFFFFFF))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def _write_png(arr: np.ndarray, path: Path) -> None:
    """Atomic PNG write (temp file beside ``path``, then os.replace)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(_png_bytes(arr))


def manifest_columns() -> list[str]:
    """Manifest column order: id, domain, file, clean, hard_kind, attributes, part boxes."""
    return (["id", "domain", "file", "clean", "hard_kind", *ATTRIBUTES]
            + [f"{p}_{k}" for p in PARTS for k in _BOX_KEYS])


def generate(out_dir: Path, n_human: int, n_character: int, size: int, hard_share: float,
             seed: int, progress: bool = True, hard_share_character: float = 0.0) -> pd.DataFrame:
    """Render the data set and return its manifest (one row per image).

    Writes ``out_dir/human/h00000.png ...`` and ``out_dir/character/c00000.png ...``
    (size x size RGB PNGs, atomically). Stale ``h*.png``/``c*.png`` beyond the requested
    counts from an earlier, larger run are removed. Columns: see :func:`manifest_columns`;
    box coordinates are floats in [0, 1]. Exactly ``round(hard_share * n_human)`` human
    and ``round(hard_share_character * n_character)`` character images are hard (``clean=False``).
    """
    _check_args(n_human, n_character, size, hard_share)
    _check_args(n_human, n_character, size, hard_share_character, "hard_share_character")
    out_dir = Path(out_dir)
    hard = {"human": hard_assignment(n_human, float(hard_share), seed, "human"),
            "character": hard_assignment(n_character, float(hard_share_character), seed, "character")}
    jobs = [("human", i) for i in range(n_human)] + [("character", i) for i in range(n_character)]
    for dom, n in (("human", n_human), ("character", n_character)):
        d = out_dir / dom
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob(f"{_PREFIX[dom]}[0-9][0-9][0-9][0-9][0-9].png"):
            if int(old.stem[1:]) >= n:
                old.unlink()
    rows: list[dict] = []
    from rich.progress import Progress

    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("rendering synthetic faces", total=len(jobs))
        for dom, i in jobs:
            kind = hard[dom].get(i, "")
            img, attrs, boxes = render_one(seed, dom, i, size, kind)
            ident = f"{_PREFIX[dom]}{i:05d}"
            rel_file = f"{dom}/{ident}.png"
            _write_png(img, out_dir / rel_file)
            row = {"id": ident, "domain": dom, "file": rel_file, "clean": not kind, "hard_kind": kind,
                   **attrs}
            for p in PARTS:
                for k, v in zip(_BOX_KEYS, boxes[p]):
                    row[f"{p}_{k}"] = v
            rows.append(row)
            bar.advance(task)
    return pd.DataFrame(rows, columns=manifest_columns())
