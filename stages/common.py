"""Things every stage needs: params, atomic writes, seeding, device choice, user errors.

Stage modules import from here so that a wrong param, a half-written file or a
non-deterministic run behaves the same way in every stage.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

PARAMS_FILE = "params.yaml"


class UserError(Exception):
    """A problem the user can fix (bad param, missing input). Printed as one line, exit 2."""


# --------------------------------------------------------------------------- params
_MISSING = object()


class Params:
    """Typed, validated access to params.yaml by dotted key.

    >>> p = Params({"select": {"threshold": 0.3}})
    >>> p.float("select.threshold", lo=0, hi=1)
    0.3

    Every getter raises :class:`UserError` naming the param on a wrong type,
    an out-of-range value or a missing key (unless ``default`` is given).
    """

    def __init__(self, data: dict[str, Any], source: str = PARAMS_FILE):
        self.data = data
        self.source = source

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not _MISSING:
                    return default
                raise UserError(f"{self.source}: missing param '{key}'")
            node = node[part]
        return node

    def _bad(self, key: str, what: str, value: Any) -> UserError:
        return UserError(f"{self.source}: param '{key}' must be {what}, got {value!r}")

    def int(self, key: str, default: Any = _MISSING, lo: float | None = None,
            hi: float | None = None) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad(key, "an integer", v)
        self._range(key, v, lo, hi)
        return v

    def float(self, key: str, default: Any = _MISSING, lo: float | None = None,
              hi: float | None = None) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self._bad(key, "a number", v)
        self._range(key, v, lo, hi)
        return float(v)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self._bad(key, "true or false", v)
        return v

    def str(self, key: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str):
            raise self._bad(key, "a string", v)
        if choices is not None and v not in choices:
            raise self._bad(key, "one of " + ", ".join(choices), v)
        return v

    def dict(self, key: str, default: Any = _MISSING) -> dict[str, Any]:
        v = self.raw(key, default)
        if not isinstance(v, dict):
            raise self._bad(key, "a mapping", v)
        return v

    def _range(self, key: str, v: float, lo: float | None, hi: float | None) -> None:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise self._bad(key, rng, v)


def load_params(path: str | os.PathLike = PARAMS_FILE) -> Params:
    """Read params.yaml; a missing or malformed file is a one-line :class:`UserError`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"params file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: top level must be a mapping")
    return Params(data, str(p))


# --------------------------------------------------------------------------- atomic writes
@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only on success."""
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp" + dest.suffix, dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


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

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def torch_load(path: str | os.PathLike, map_location: Any = "cpu") -> Any:
    """Load a checkpoint safely (``weights_only=True``); a missing file is a UserError."""
    import torch

    p = Path(path)
    if not p.is_file():
        raise UserError(f"checkpoint not found: {p} (run the stage that makes it first)")
    return torch.load(p, map_location=map_location, weights_only=True)


# --------------------------------------------------------------------------- determinism & device
def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch; make CPU torch deterministic."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def pick_device(name: str = "auto") -> "Any":
    """``auto`` -> CUDA when present, else CPU. An unavailable explicit device is a UserError."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available (use device: auto)")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use auto, cpu or cuda)") from None


def cpu_has_bf16() -> bool:
    """True when this CPU has native bf16 dot-product instructions (AVX512-BF16 / AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast(device: Any, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA, and on CPUs with native bf16 when ``precision`` is auto/bf16."""
    import torch

    use = precision == "bf16" or (precision == "auto" and (device.type == "cuda" or cpu_has_bf16()))
    if not use:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def rel(path: str | os.PathLike) -> str:
    """A path as shown to users: relative to the current directory where possible."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)
