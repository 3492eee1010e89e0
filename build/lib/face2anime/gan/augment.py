"""Differentiable augmentation for the discriminators (DiffAugment, Zhao et al. 2020).

A discriminator trained on a few hundred images memorises them and then rejects everything
else: its loss goes to ~0, the generators get no usable gradient and drift into noise. With
DiffAugment every image a discriminator sees, real *and* generated, in the discriminator's
update *and* in the generators' (through which the gradient flows back), first passes
through the same family of random, differentiable transformations, each image with its own
random draw. D then cannot memorise the exact training pixels, and it never learns to
accept augmented images as "real" because fakes are augmented in the same way.

Policies (``cyclegan.train.diffaug``, comma-separated, the paper's defaults):

* ``color``: brightness + U(-0.5, 0.5), saturation x U(0, 2), contrast x U(0.5, 1.5)
  (images in [-1, 1]);
* ``translation``: shift by up to 1/8 of the size in x and y, zero fill;
* ``cutout``: zero a square of half the size at a random centre.

The random parameters are drawn by :func:`draw` from a dedicated, seeded generator outside
any compiled graph (so a resumed run continues the same draws, and torch.compile sees plain
tensors); :func:`apply` is pure tensor code. A CAM that accompanies an image (what the
discriminator multiplies in) gets the same translation and cutout (:func:`warp_cam`), so
its weights stay on the image content they describe.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

POLICIES = ("color", "translation", "cutout")
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def parse_policy(text: str) -> tuple[str, ...]:
    """``"color,translation,cutout"`` -> the policy names in canonical order (``""`` -> none).

    Raises ValueError naming the unknown part."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    bad = [p for p in parts if p not in POLICIES]
    if bad:
        raise ValueError(f"unknown DiffAugment policy {bad[0]!r} (choose from {', '.join(POLICIES)})")
    return tuple(p for p in POLICIES if p in parts)


def draw(policy: tuple[str, ...], n: int, size: int, gen: torch.Generator,
         device: torch.device) -> dict[str, torch.Tensor]:
    """Random parameters for ``n`` images of ``size`` px: float ``[n, 1, 1, 1]`` factors and
    int64 ``[n]`` offsets, drawn on the CPU from ``gen`` and moved to ``device``."""
    p: dict[str, torch.Tensor] = {}
    if "color" in policy:
        p["brightness"] = torch.rand(n, 1, 1, 1, generator=gen) - 0.5
        p["saturation"] = torch.rand(n, 1, 1, 1, generator=gen) * 2
        p["contrast"] = torch.rand(n, 1, 1, 1, generator=gen) + 0.5
    if "translation" in policy:
        s = int(size * TRANSLATION_RATIO + 0.5)
        p["shift"] = torch.randint(-s, s + 1, (2, n), generator=gen)
    if "cutout" in policy:
        c = int(size * CUTOUT_RATIO + 0.5)
        p["cutout"] = torch.randint(0, size + (1 - c % 2), (2, n), generator=gen)
    return {k: v.to(device) for k, v in p.items()}


def split(params: dict[str, torch.Tensor], sizes: list[int]) -> list[dict[str, torch.Tensor]]:
    """Split a draw for ``sum(sizes)`` images into per-part draws (along the image dimension)."""
    out: list[dict[str, torch.Tensor]] = [{} for _ in sizes]
    for k, v in params.items():
        dim = 1 if k in ("shift", "cutout") else 0
        for i, part in enumerate(v.split(sizes, dim=dim)):
            out[i][k] = part
    return out


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift each image ``x[i]`` by ``shift[:, i]`` (rows, cols) pixels, zero fill (DiffAugment's
    gather formulation, written as two gathers so it is cheap to differentiate and compile)."""
    n, c, h, w = x.shape
    xp = F.pad(x, (1, 1, 1, 1))
    rows = (torch.arange(h, device=x.device)[None, :] + shift[0][:, None] + 1).clamp(0, h + 1)   # [n, h]
    cols = (torch.arange(w, device=x.device)[None, :] + shift[1][:, None] + 1).clamp(0, w + 1)   # [n, w]
    xp = xp.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2))
    return xp.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _cutout_mask(n: int, h: int, w: int, centre: torch.Tensor, device: torch.device,
                 dtype: torch.dtype) -> torch.Tensor:
    """``[n, 1, h, w]``: 0 inside each image's cutout square (half the size, centred at ``centre``), else 1."""
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    r = torch.arange(h, device=device)[None, :] - (centre[0][:, None] - ch // 2)   # [n, h]
    q = torch.arange(w, device=device)[None, :] - (centre[1][:, None] - cw // 2)   # [n, w]
    inside = ((r >= 0) & (r < ch))[:, :, None] & ((q >= 0) & (q < cw))[:, None, :]
    return (~inside).to(dtype)[:, None]


def apply(x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
    """The augmented images ``[n, 3, H, W]`` (differentiable in ``x``)."""
    if "brightness" in p:
        x = x + p["brightness"].to(x.dtype)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * p["saturation"].to(x.dtype) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * p["contrast"].to(x.dtype) + mean
    if "shift" in p:
        x = _translate(x, p["shift"])
    if "cutout" in p:
        x = x * _cutout_mask(x.shape[0], x.shape[2], x.shape[3], p["cutout"], x.device, x.dtype)
    return x


def geometric(policy: tuple[str, ...]) -> bool:
    """Whether ``policy`` moves or masks pixels (then CAMs must follow, see :func:`warp_cam`)."""
    return "translation" in policy or "cutout" in policy


def warp_cam(cam: torch.Tensor, p: dict[str, torch.Tensor], size: int, out: int) -> torch.Tensor:
    """The CAM ``[n, 1, h, w]`` of an image of ``size`` px, moved and masked like the image
    (bilinear up to ``size``, the image's translation and cutout, then area-averaged to ``out``)."""
    full = F.interpolate(cam.float(), size=(size, size), mode="bilinear", align_corners=False)
    if "shift" in p:
        full = _translate(full, p["shift"])
    if "cutout" in p:
        full = full * _cutout_mask(full.shape[0], size, size, p["cutout"], full.device, full.dtype)
    return F.adaptive_avg_pool2d(full, out)
