"""Small image operations shared across the project: Gaussian blur (and the centre-square crop,
which lives in :mod:`face2anime.data.imageio` so that the ONNX runtime path needs no torch).

Tensors are ``[B, C, H, W]`` floats; PIL images are RGB. The synthetic renderer keeps its
own numpy blur (a fast separable approximation that is part of how its data looks).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F



def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float32,
                    device: torch.device | str = "cpu") -> torch.Tensor:
    """Normalised 2-D Gaussian kernel ``[size, size]`` (sums to 1), centred."""
    r = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g1 = torch.exp(-(r ** 2) / (2 * sigma ** 2))
    g1 = g1 / g1.sum()
    return g1[:, None] * g1[None, :]


def filter2d(x: torch.Tensor, kernel: torch.Tensor, pad_mode: str = "replicate") -> torch.Tensor:
    """Filter every channel of ``x [B, C, H, W]`` with the odd-sized 2-D ``kernel [k, k]``; same
    shape out (borders padded with ``pad_mode``: replicate or reflect)."""
    c, size = x.shape[1], kernel.shape[-1]
    k = kernel.to(x.dtype).expand(c, 1, size, size)
    return F.conv2d(F.pad(x, (size // 2,) * 4, mode=pad_mode), k, groups=c)


def gaussian_blur(x: torch.Tensor, size: int, sigma: float, pad_mode: str = "replicate") -> torch.Tensor:
    """Blur every channel of ``x [B, C, H, W]`` with a ``size`` x ``size`` Gaussian; same shape out
    (borders padded with ``pad_mode``: replicate or reflect)."""
    return filter2d(x, gaussian_window(size, sigma, x.dtype, x.device), pad_mode)
