"""Resume checkpoints of a training run: the config hash that keys them, reading them safely
(``weights_only``), and snapshots of the files written so far (logs, samples)."""
from __future__ import annotations


import hashlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from rich.console import Console


from face2anime.core.io import (
    rel,
    torch_load,
)
from face2anime.core.runtime import resolve_precision
from face2anime.data.images import (
    ImageFiles,
)
from face2anime.gan.config import CKPT_VERSION, TrainConfig
from face2anime.gan.data import DomainData

def config_hash(cfg: TrainConfig, x: DomainData, y: DomainData, device: torch.device) -> str:
    """sha256 over the config, the device type, the subset ids and the exact pixels/CAMs."""
    # resume works for any N and any number of loader processes
    fields = {k: v for k, v in asdict(cfg).items() if k not in ("nproc", "loader_workers")}
    # precision: auto is hashed as what it resolves to here (a checkpoint of bf16 steps never
    # resumes as fp32 steps)
    h = hashlib.sha256(json.dumps({**fields, "device": device.type, "ckpt": CKPT_VERSION,
                                   "precision_used": resolve_precision(device, cfg.precision),
                                   "torch": torch.__version__}, sort_keys=True).encode())
    for d in (x, y):
        h.update("\n".join(d.ids).encode())
        if isinstance(d.images, ImageFiles):
            d.images.digest(h)               # the files, one at a time
        else:
            h.update(d.images.numpy().tobytes())
        if d.cams is not None:
            h.update(d.cams.float().numpy().tobytes())
    return h.hexdigest()


def snapshot_files(dirs: dict[str, Path]) -> dict[str, dict[str, torch.Tensor]]:
    """The files under each dir as ``{key: {relpath: uint8 tensor}}`` (stored in the checkpoint)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, d in dirs.items():
        files = {}
        if d.is_dir():
            for f in sorted(p for p in d.rglob("*") if p.is_file()):
                data = f.read_bytes()
                files[f.relative_to(d).as_posix()] = torch.frombuffer(bytearray(data), dtype=torch.uint8) \
                    if data else torch.zeros(0, dtype=torch.uint8)
        out[key] = files
    return out


def restore_files(snapshot: dict[str, dict[str, torch.Tensor]], dirs: dict[str, Path]) -> None:
    """Replace each dir by its snapshot (logs/samples written after the checkpoint are dropped)."""
    for key, d in dirs.items():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
        for name, data in snapshot.get(key, {}).items():
            dest = d / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data.numpy().tobytes())



def read_checkpoint(path: Path, chash: str, who: str, console: Console) -> dict[str, Any] | None:
    """The resume checkpoint at ``path`` if it exists, loads and matches ``chash``; else None.

    A file that cannot be read (truncated, corrupt, not ours) is reported and ignored, so the
    stage starts fresh instead of crashing.
    """
    if not path.is_file():
        return None
    try:
        ck = torch_load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means "start fresh"
        console.print(f"{who}: ignoring unreadable checkpoint {rel(path)} ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); starting fresh", markup=False)
        return None
    if not isinstance(ck, dict) or ck.get("config_hash") != chash:
        console.print(f"{who}: ignoring {rel(path)} (other config/data)", markup=False)
        return None
    return ck
