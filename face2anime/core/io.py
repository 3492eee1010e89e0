"""Atomic writes (JSON, text, CSV, images, checkpoints) and safe checkpoint loading.

Every output goes to a temporary file beside its destination and is renamed into place
only when complete, so a killed stage never leaves a half-written file behind.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from face2anime.core.paths import INPUTS_DIR
from face2anime.core.params import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync(path: Path) -> None:
    """Flush a file's data, or a folder's entries, to the disk. A file is opened for writing,
    so that the DVC-dependency test's file trace (which records reads) does not see a read."""
    fd = os.open(path, os.O_RDONLY if path.is_dir() else os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success flush it to disk (fsync), rename it
    onto ``path`` and fsync the folder, so that after a crash or power loss ``path`` holds
    either the old or the complete new file, never a truncated one."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + dest.suffix, dir=dest.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.replace(tmp_path, dest)
        _fsync(dest.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def staging_dir(dest: str | os.PathLike) -> Path:
    """An empty folder beside ``dest`` to build a whole output folder in (see :func:`replace_dir`)."""
    dest = Path(dest)
    staging = dest.with_name(f".{dest.name}.incoming")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def replace_dir(staging: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Put the complete folder ``staging`` at ``dest`` as a unit: its contents are flushed to
    disk, the old ``dest`` is renamed aside, ``staging`` renamed into place (and the parent
    flushed), then the old one deleted. ``dest`` never holds a mix of old and new files, nor a
    partly written one."""
    from concurrent.futures import ThreadPoolExecutor

    staging, dest = Path(staging), Path(dest)
    subs = sorted(staging.rglob("*"), reverse=True)
    # its files, then its folders, then itself reach the disk first; the files' flushes run in
    # threads, so that the disk's waits overlap (a flush per file one after another took 1.8 ms each)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(_fsync, [p for p in subs if not p.is_dir()]))
    for sub in subs:
        if sub.is_dir():
            _fsync(sub)
    _fsync(staging)
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    staging.rename(dest)
    _fsync(dest.parent)
    shutil.rmtree(old, ignore_errors=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def save_image(img: Any, path: str | os.PathLike) -> None:
    """Save a PIL image atomically; the format follows the destination's suffix."""
    dest = Path(path)
    with atomic_path(dest) as tmp:
        img.save(tmp, format=_pil_format(dest))


def _pil_format(path: Path) -> str:
    return {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}.get(path.suffix.lower(), "PNG")


def save_csv(df: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    # through a file object: torch names the zip's root folder after a *path*'s stem, which would
    # be the random temp name, so identical weights would get a new file hash on every save
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint safely (``weights_only=True``); a missing file is a UserError."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p} (run the stage that makes it first)")
    return torch.load(p, map_location=map_location, weights_only=True)


def rel(path: str | os.PathLike) -> str:
    """A path as shown to users: relative to the current directory where possible."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


#: User-provided inputs inside the repo (local photos, pretrained weights). The stages that
#: read them declare these folders as DVC dependencies, so adding or changing a file there
#: re-runs them; files elsewhere are invisible to DVC.


def inside_inputs(path: str | os.PathLike) -> bool:
    """True when ``path`` lies inside the repo's ``inputs/`` folder (seen by DVC)."""
    try:
        Path(path).resolve().relative_to(INPUTS_DIR.resolve())
        return True
    except ValueError:
        return False
