"""Training data of a CycleGAN run: the human subset and the characters, their CAMs, and
seeded, resumable index streams and batches.

* ``subset: random`` draws ``select.max_images`` (at most ``select.share`` of them) human train
  ids at random (seeded) from all human train ids and never opens ``data/select``;
  ``subset: selected`` reads ``data/select/selected.csv`` (rank order, capped).
* ``attention: true`` loads the precomputed CAMs ``data/cam/{human,character}.npz``.
* Images of up to ``preload_mb`` MiB are held in memory as one uint8 tensor; larger sets stream
  from disk through a DataLoader, with the same batches.
"""
from __future__ import annotations


import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from face2anime.core.params import UserError
from face2anime.data.images import (
    subset_size,
    ImageFiles,
    load_images,
    read_manifest,
    rows,
    to_model,
)
from face2anime.gan.speed import (
    take,
)
from face2anime.gan.config import TrainConfig

# --------------------------------------------------------------------------- data
@dataclass
class DomainData:
    """The training images of one domain: ``ids`` (n), ``images`` uint8 ``[n, 3, H, W]``,
    ``cams`` float32 ``[n, 1, h, w]`` in [0, 1] or None (non-attention methods).

    ``dcams``: the CAMs the discriminator multiplies in, resized once (bilinear, as
    :func:`~face2anime.models.networks.cam_weight` would on every call) to D's feature size
    ``[n, 1, d, d]`` (see :func:`d_feature_size`); set by :func:`prepare_dcams`."""

    ids: list[str]
    images: torch.Tensor | ImageFiles   # ImageFiles: streamed from disk (cyclegan.train.preload_mb)
    cams: torch.Tensor | None
    dcams: torch.Tensor | None = None


def d_feature_size(size: int) -> int:
    """Spatial size of the PatchGAN's conv3 output (where D's CAM is applied) for ``size`` px:
    three (4, stride 2, pad 1) convs halve it (floor), the (4, stride 1, pad 1) conv takes one off."""
    return size // 2 // 2 // 2 - 1


def resize_cams(cams: torch.Tensor, size: int) -> torch.Tensor:
    """CAMs ``[n, 1, h, w]`` -> ``[n, 1, size, size]``: bilinear, ``align_corners=False`` (fp32)."""
    cams = cams.float()
    if tuple(cams.shape[-2:]) == (size, size):
        return cams
    return F.interpolate(cams, size=(size, size), mode="bilinear", align_corners=False)


def prepare_dcams(d: DomainData, image_size: int) -> None:
    """Precompute ``d.dcams`` (no-op without CAMs): the discriminator's CAM resizing done once."""
    if d.cams is not None:
        d.dcams = resize_cams(d.cams, d_feature_size(image_size))


def random_subset(ids: list[str], k: int, seed: int) -> list[str]:
    """A seeded random subset of ``min(k, len(ids))`` ids, independent of the input order."""
    pool = sorted(ids)
    order = np.random.default_rng([seed, 20240601]).permutation(len(pool))
    return [pool[i] for i in order[:k]]


def read_selected(select_csv: Path, train_ids: set[str], k: int) -> list[str]:
    """The CAM-selected ids (rank order, first ``k``); must be non-empty human train ids."""
    if not select_csv.is_file():
        raise UserError(f"{select_csv} not found: run the select stage first (dvc repro select)")
    df = pd.read_csv(select_csv, dtype={"id": str})
    if "id" not in df.columns:
        raise UserError(f"{select_csv} has no 'id' column")
    ids = list(dict.fromkeys(df["id"].dropna()))[:k]
    if not ids:
        raise UserError(f"{select_csv} selects no human images: relax select.threshold / select.* in params.yaml")
    unknown = [i for i in ids if i not in train_ids]
    if unknown:
        raise UserError(f"{select_csv}: {len(unknown)} ids are not human train images (e.g. {unknown[:3]}); "
                        "re-run the select stage (dvc repro select)")
    return ids


def load_cams(cam_dir: Path, domain: str) -> dict[str, np.ndarray]:
    """``{id: cam [h, w] float32}`` from ``cam_dir/{domain}.npz``."""
    path = cam_dir / f"{domain}.npz"
    if not path.is_file():
        raise UserError(f"{path} not found: run the cam stage first (dvc repro cam)")
    with np.load(path, allow_pickle=False) as z:
        ids, cams = z["ids"], z["cams"]
    if cams.ndim != 3 or len(ids) != len(cams):
        raise UserError(f"{path}: expected ids [N] and cams [N, h, w], got {ids.shape} and {cams.shape}")
    return {str(i): c for i, c in zip(ids, cams)}   # as stored (float16): no float32 copy of every CAM


def domain_data(manifest: pd.DataFrame, ids: list[str], data_dir: Path,
                cams: dict[str, np.ndarray] | None, domain: str, preload_mb: int = 1 << 40) -> DomainData:
    """The images (and CAMs) of ``ids`` (in that order) of ``domain``: loaded into one uint8
    tensor when they take at most ``preload_mb`` MiB, else an :class:`ImageFiles` set read
    from disk during training (the CAMs then stay float16, as stored)."""
    by_id = rows(manifest, domain, "train").set_index("id")
    files = by_id.loc[ids, "file"].tolist()
    missing = [f for f in files if not (data_dir / f).is_file()]
    if missing:
        raise UserError(f"{len(missing)} {domain} training images are missing (e.g. {data_dir / missing[0]}); "
                        "re-run the resize stage")
    try:
        images: torch.Tensor | ImageFiles = ImageFiles(files, data_dir)
        if np.prod(images.shape) <= preload_mb * 2 ** 20:
            images = load_images(files, data_dir)
    except ValueError as e:  # np.stack of differently sized images
        raise UserError(f"{domain} training images in {data_dir} do not share one size ({e}); re-run resize") from None
    cam_t = None
    if cams is not None:
        lacking = [i for i in ids if i not in cams]
        if lacking:
            raise UserError(f"no CAM for {len(lacking)} {domain} training images (e.g. {lacking[0]}); "
                            "re-run the cam stage (dvc repro cam)")
        arr = np.stack([cams[i] for i in ids])
        cam_t = torch.from_numpy(np.clip(arr, 0.0, 1.0)).unsqueeze(1)
        cam_t = cam_t.half() if isinstance(images, ImageFiles) else cam_t.float()
    return DomainData(ids, images, cam_t)


def load_training_data(cfg: TrainConfig, data_dir: Path, cam_dir: Path,
                       select_csv: Path) -> tuple[DomainData, DomainData]:
    """(human X, character Y) training data of ``cfg.method``.

    ``subset: random`` never touches ``select_csv``; non-attention methods never touch ``cam_dir``.
    """
    manifest = read_manifest(data_dir)
    human_ids = rows(manifest, "human", "train")["id"].tolist()
    char_ids = rows(manifest, "character", "train")["id"].tolist()
    if not human_ids or not char_ids:
        raise UserError(f"{data_dir / 'manifest.csv'} has {len(human_ids)} human and {len(char_ids)} character "
                        "train images; both are needed")
    cap = subset_size(len(human_ids), cfg.max_images, cfg.share)
    if cfg.subset == "random":
        x_ids = random_subset(human_ids, cap, cfg.seed)
    else:
        x_ids = read_selected(select_csv, set(human_ids), cap)
    cams_x = load_cams(cam_dir, "human") if cfg.attention else None
    cams_y = load_cams(cam_dir, "character") if cfg.attention else None
    x = domain_data(manifest, x_ids, data_dir, cams_x, "human", cfg.preload_mb)
    y = domain_data(manifest, char_ids, data_dir, cams_y, "character", cfg.preload_mb)
    size = tuple(x.images.shape[-2:])
    if tuple(y.images.shape[-2:]) != size or size[0] != size[1] or size[0] % 4 or size[0] < 24:
        raise UserError(f"training images must be square, the same size in both domains, divisible by 4 and "
                        f">= 24 px (resize.size); got human {tuple(x.images.shape[-2:])}, "
                        f"character {tuple(y.images.shape[-2:])}")
    return x, y


class IndexStream:
    """An endless stream of indices into ``range(n)``: pass ``p`` is a permutation seeded by
    ``(seed, stream, p)``. Its whole state is the position ``pos`` (an int), so a resumed run
    continues the exact same sequence."""

    def __init__(self, n: int, seed: int, stream: int, pos: int = 0):
        self.n, self.seed, self.stream, self.pos = n, seed, stream, pos
        self._cache: tuple[int, torch.Tensor] | None = None

    def _perm(self, p: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != p:
            g = torch.Generator().manual_seed(int.from_bytes(
                hashlib.sha256(f"{self.seed}/{self.stream}/{p}".encode()).digest()[:8], "little") >> 1)
            self._cache = (p, torch.randperm(self.n, generator=g))
        return self._cache[1]

    def take(self, k: int) -> torch.Tensor:
        """The next ``k`` indices (int64 ``[k]``)."""
        out = [int(self._perm(i // self.n)[i % self.n]) for i in range(self.pos, self.pos + k)]
        self.pos += k
        return torch.tensor(out, dtype=torch.long)



def gather_batch(d: DomainData, idx: torch.Tensor, device: torch.device, images: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(images in [-1, 1], G's CAMs, D's CAMs) of the batch ``idx`` on ``device``; ``images``:
    the batch's uint8 images when they were already read (a DataLoader's)."""
    x = to_model(take(d.images, idx, device) if images is None else images.to(device, non_blocking=True))
    c = None if d.cams is None else take(d.cams, idx, device).float()
    dc = None if d.dcams is None else take(d.dcams, idx, device)
    return x, c, dc


def epoch_batches(d: DomainData, stream: "IndexStream", steps: int, batch: int, mine: slice,
                  device: torch.device, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None,
                                                                         torch.Tensor | None]]:
    """The ``steps`` batches of one epoch for this rank, as :func:`gather_batch` gives them.

    Loaded images are indexed in memory. Streamed ones (:class:`ImageFiles`) are read by a
    :class:`~torch.utils.data.DataLoader` with ``workers`` processes that reads ahead; the
    batches are the same: the index stream is drawn for the whole epoch first (so a checkpoint
    at the epoch's end holds the same stream position either way)."""
    if not isinstance(d.images, ImageFiles):
        for _ in range(steps):
            yield gather_batch(d, stream.take(batch)[mine], device)
        return
    plan = [stream.take(batch)[mine].tolist() for _ in range(steps)]
    loader = torch.utils.data.DataLoader(d.images, batch_sampler=plan, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    for images, idx in loader:
        yield gather_batch(d, idx, device, images)
