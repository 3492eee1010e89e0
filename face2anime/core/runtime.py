"""Determinism, device and precision: seeding, ``device: auto`` and bf16 autocast."""
from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any

from face2anime.core.params import UserError


def cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> int:
    """``torch.set_num_threads(n)``; returns the count in use. Results on a CPU depend on the
    thread count (how sums are split), so the count is a param (``threads``), never "all cores"."""
    import torch

    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return torch.get_num_threads()


def load_torch_params(path: "str | os.PathLike[str]") -> "Any":
    """params.yaml for a stage that computes with torch: loaded, validated, and torch's
    intra-op threads pinned to ``threads`` before anything is computed."""
    from face2anime.core.params import load_params

    params = load_params(path)
    set_threads(params.threads)
    return params


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


PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(device: Any, precision: str = "auto") -> str:
    """What ``precision`` means on ``device``: ``bf16`` (autocast) or ``fp32``.

    ``auto`` is bf16 on CUDA and on CPUs with native bf16 instructions, else fp32.
    Stages record the resolved value in their metrics, since ``auto`` depends on the machine.
    """
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" or cpu_has_bf16() else "fp32"
    return precision


def autocast(device: Any, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast when ``precision`` resolves to bf16 on ``device`` (see :func:`resolve_precision`)."""
    import torch

    if resolve_precision(device, precision) != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
