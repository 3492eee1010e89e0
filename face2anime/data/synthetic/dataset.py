"""The dataset writer: :func:`generate` renders every image to a PNG and returns the manifest.

Layout: ``out_dir/human/h00000.png ...`` and ``out_dir/character/c00000.png ...`` (RGB,
size x size). The manifest has one row per image, columns :func:`manifest_columns`: ``id``,
``domain``, ``file`` (relative to ``out_dir``), ``clean``, ``hard_kind``, the attributes and the
normalised part boxes ``{leye,reye,mouth,nose}_{x0,y0,x1,y1}``.

Every image depends only on (seed, domain, index), so :func:`generate` renders in parallel
worker processes (``workers``) and gets the same bytes with any number of them. The PNGs are
written plainly, without a flush per file: render into a staging folder and put it in place
with :func:`face2anime.core.io.replace_dir`, which flushes them all, as ``download`` does.
"""
from __future__ import annotations

import contextlib
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

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


def _write_png(arr: np.ndarray, path: Path) -> None:
    """Write a uint8 (H, W, 3) RGB array as a PNG with Pillow at ``compress_level=1`` (its
    fastest level). Deterministic: the same pixels give the same bytes (for a given Pillow and
    zlib). Not flushed to disk: see the module docstring.

    Measured at 128 px on one core (render + write, :func:`generate`): about 210 images/s,
    against 290 with the hand-written 'Sub'-filter + zlib-RLE encoder this replaced (files 4%
    smaller) and 170 with Pillow's default level 6."""
    Image.fromarray(arr).save(path, format="PNG", compress_level=1)


def _render_job(job: tuple[int, str, int, int, str, str]) -> dict:
    """Render and write one image; returns its manifest row. ``job``: (seed, domain, index,
    size, hard kind or "", out_dir)."""
    seed, dom, i, size, kind, out_dir = job
    img, attrs, boxes = render_one(seed, dom, i, size, kind)
    ident = f"{_PREFIX[dom]}{i:05d}"
    rel_file = f"{dom}/{ident}.png"
    _write_png(img, Path(out_dir) / rel_file)
    row = {"id": ident, "domain": dom, "file": rel_file, "clean": not kind, "hard_kind": kind, **attrs}
    for p in PARTS:
        for k, v in zip(_BOX_KEYS, boxes[p]):
            row[f"{p}_{k}"] = v
    return row


def manifest_columns() -> list[str]:
    """Manifest column order: id, domain, file, clean, hard_kind, attributes, part boxes."""
    return (["id", "domain", "file", "clean", "hard_kind", *ATTRIBUTES]
            + [f"{p}_{k}" for p in PARTS for k in _BOX_KEYS])


def generate(out_dir: Path, n_human: int, n_character: int, size: int, hard_share: float,
             seed: int, progress: bool = True, hard_share_character: float = 0.0, workers: int = 1) -> pd.DataFrame:
    """Render the data set and return its manifest (one row per image).

    Writes ``out_dir/human/h00000.png ...`` and ``out_dir/character/c00000.png ...``
    (size x size RGB PNGs, not flushed: see the module docstring), with ``workers`` processes
    (the same files and manifest for any number). Stale ``h*.png``/``c*.png`` beyond the requested
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
    from rich.progress import Progress

    args = [(seed, dom, i, size, hard[dom].get(i, ""), str(out_dir)) for dom, i in jobs]
    rows: list[dict] = []
    with Progress(disable=not progress, transient=True) as bar, contextlib.ExitStack() as stack:
        task = bar.add_task("rendering synthetic faces", total=len(jobs))
        if workers > 1 and len(jobs) > 1:   # a fresh server process forks the workers: no parent threads
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")))
            results = pool.map(_render_job, args, chunksize=32)
        else:
            results = map(_render_job, args)
        for row in results:           # in job order, whatever the workers
            rows.append(row)
            bar.advance(task)
    return pd.DataFrame(rows, columns=manifest_columns())
