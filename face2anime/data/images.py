"""Loading the resized data set (``data/resized``) as tensors.

Images are small (``resize.size`` px), so a split of one domain is loaded once into a
uint8 tensor ``[N, 3, H, W]``; :func:`to_model` turns a batch into floats in [-1, 1], the
range every network in this project consumes (CycleGAN's tanh range).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from face2anime.core.paths import RESIZED_DIR
from face2anime.core.params import UserError

DOMAINS = ("human", "character")


def read_manifest(data_dir: Path = RESIZED_DIR) -> pd.DataFrame:
    """The resized manifest (one row per image, with ``split``), ``id`` kept as str."""
    path = data_dir / "manifest.csv"
    if not path.is_file():
        raise UserError(f"{path} not found: run the resize stage first (dvc repro resize)")
    return pd.read_csv(path, dtype={"id": str, "hard_kind": str}, keep_default_na=True)


def subset_size(n_candidates: int, max_images: int, share: float) -> int:
    """Human training images per method: ``select.max_images``, but at most ``select.share``
    of the ``n_candidates`` train images (rounded up, at least 1). The CAM selection and the
    random subset both use it, so the baseline trains on as many images as the proposed method."""
    return max(1, min(max_images, n_candidates, math.ceil(share * n_candidates - 1e-9)))


def rows(manifest: pd.DataFrame, domain: str, split: str | None = None) -> pd.DataFrame:
    """Rows of one domain (and split), sorted by id for a stable order."""
    sel = manifest["domain"] == domain
    if split is not None:
        sel &= manifest["split"] == split
    return manifest[sel].sort_values("id").reset_index(drop=True)


def load_images(files: list[str] | pd.Series, data_dir: Path = RESIZED_DIR) -> torch.Tensor:
    """Load RGB PNGs as a uint8 tensor ``[N, 3, H, W]`` (all must share one size; ValueError
    otherwise). Decoded straight into one preallocated array: the peak memory is the result's."""
    files = list(files)
    if not files:
        return torch.zeros((0, 3, 1, 1), dtype=torch.uint8)
    out: np.ndarray | None = None
    for i, f in enumerate(files):
        with Image.open(data_dir / f) as im:
            arr = np.asarray(im.convert("RGB"))
        if out is None:
            out = np.empty((len(files), arr.shape[2], arr.shape[0], arr.shape[1]), dtype=np.uint8)
        elif arr.shape[:2] != out.shape[2:]:
            raise ValueError(f"{f} is {arr.shape[1]}x{arr.shape[0]} px, the first image "
                             f"{out.shape[3]}x{out.shape[2]}")
        out[i] = arr.transpose(2, 0, 1)
    return torch.from_numpy(out)


class ImageFiles(torch.utils.data.Dataset):
    """The images of ``files`` (under ``data_dir``), read from disk when asked for: a training
    set that is never held in memory as a whole (FFHQ-scale data).

    ``ds[i]`` is ``(uint8 [3, H, W], i)`` (a :class:`torch.utils.data.DataLoader` batches it);
    :meth:`stack` reads several at once; ``shape`` is ``(n, 3, H, W)`` like a loaded tensor's.
    All images must share one size: checked up front from the file headers, a one-line error.
    """

    def __init__(self, files: list[str] | pd.Series, data_dir: Path = RESIZED_DIR):
        self.paths = [Path(data_dir) / f for f in files]
        sizes = set()
        for p in self.paths:
            with Image.open(p) as im:        # reads the header only
                sizes.add(im.size)
        if len(sizes) > 1:
            raise UserError(f"images in {data_dir} do not share one size ({', '.join(map(str, sorted(sizes)[:3]))}"
                            "...); re-run the resize stage")
        w, h = sizes.pop() if sizes else (1, 1)
        self.shape = (len(self.paths), 3, h, w)
        self.dtype = torch.uint8

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        with Image.open(self.paths[i]) as im:
            arr = np.array(im.convert("RGB"))   # a writable copy
        return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), i

    def stack(self, idx: Any) -> torch.Tensor:
        """uint8 ``[len(idx), 3, H, W]`` of the images at ``idx`` (ints, a range or a tensor)."""
        items = [self[int(i)][0] for i in idx]
        return torch.stack(items) if items else torch.zeros((0, *self.shape[1:]), dtype=torch.uint8)

    def digest(self, h: Any) -> None:
        """Feed every file's bytes to the hash ``h`` (one file in memory at a time)."""
        for p in self.paths:
            h.update(p.read_bytes())


def gather_rows(images: torch.Tensor | ImageFiles, idx: Any) -> torch.Tensor:
    """``images[idx]`` for a loaded tensor or an :class:`ImageFiles` set."""
    return images.stack(idx) if isinstance(images, ImageFiles) else images[idx]


def load_split(manifest: pd.DataFrame, domain: str, split: str | None,
               data_dir: Path = RESIZED_DIR) -> tuple[pd.DataFrame, torch.Tensor]:
    """(rows, uint8 images ``[N, 3, H, W]``) of one domain/split."""
    r = rows(manifest, domain, split)
    return r, load_images(r["file"], data_dir)


def is_clean(s: pd.Series) -> pd.Series:
    """The manifest's ``clean`` flag as bool, however pandas read it (bool, 'True', 1, 1.0)."""
    return s.astype(str).str.lower().isin(["true", "1", "1.0"])


#: A manifest row that does not say whether its image is an aligned face crop counts as
#: aligned (every built-in source says; an aligned crop is neither face-cropped again in
#: ``resize`` nor face-detected in ``cam``).
ALIGNED_DEFAULT = True


def is_aligned(value: Any, default: bool = ALIGNED_DEFAULT) -> bool:
    """The manifest's ``aligned`` cell as bool (bool, 0/1, 'True'/'false'/'yes'); empty/NaN -> ``default``.

    The one parser of this flag: ``resize`` and ``cam`` both use it.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer, float)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("", "nan", "none"):
        return default
    return text in ("true", "1", "yes", "y", "t")


def to_model(x: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, 3, H, W]`` in [0, 255] -> float ``[B, 3, H, W]`` in [-1, 1]."""
    return x.float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float in [-1, 1] -> uint8 in [0, 255] (clamped); inverse of :func:`to_model`."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)


def to_pil(x: torch.Tensor) -> Image.Image:
    """One uint8 or [-1, 1] float image ``[3, H, W]`` -> PIL RGB."""
    if x.dtype != torch.uint8:
        x = to_uint8(x)
    return Image.fromarray(x.permute(1, 2, 0).cpu().numpy())


def pairs_grid(rows: list[torch.Tensor], per_row: int = 8) -> torch.Tensor:
    """Interleave equally long uint8 image sets ``[N,3,S,S]`` as blocks of ``per_row`` columns:
    set 1's first ``per_row`` images, set 2's same images below, ...; returns a uint8 grid."""
    n = len(rows[0])
    tiles = []
    for start in range(0, n, per_row):
        for r in rows:
            chunk = r[start:start + per_row]
            pad = per_row - len(chunk)
            tiles.append(torch.cat([chunk, torch.full((pad, *chunk.shape[1:]), 255, dtype=torch.uint8)]) if pad else chunk)
    from torchvision.utils import make_grid   # here: importing torchvision costs ~1 s per stage process

    return make_grid(torch.cat(tiles), nrow=per_row, padding=2, pad_value=255)
