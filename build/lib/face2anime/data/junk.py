"""Degenerate images: the judge's third class ("junk") and the primitives of evaluation's
floor references (:mod:`face2anime.evaluation.references`).

A human-vs-character judge must pick one of two answers, so anything that is not a photo
(noise, a flat colour, a smeared or shuffled face) tends to land on "character" (issue 11:
real-data runs that produced colour noise scored ``char_rate`` 1.00). Two uses:

* :func:`junk_images` makes a random mix of junk from real images for the judge's training
  (``judge.junk``): uniform noise, blotchy low-frequency colour noise, flat colours and
  gradients, strong blur, patch shuffles and images drowned in noise. Drawn with random
  strengths from the *train* split.
* :func:`face2anime.evaluation.references.references` makes evaluation's fixed degenerate
  "translations" of the *test* sources from the same primitives. Some of their settings lie
  outside what the judge was trained on as junk on purpose (blur sigma ``size/24`` is weaker
  than any training junk blur, 4x4 shuffles are never used in training, colour shifts are
  not junk at all), so passing them is evidence that the judge generalises, not that it
  memorised the test.

All functions take and return uint8 tensors ``[N, 3, S, S]`` and are deterministic for a
``torch.Generator``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from face2anime.data.ops import gaussian_blur

#: kinds of training junk, drawn uniformly per image
JUNK_KINDS = ("noise", "blotches", "flat", "blur", "shuffle", "drowned")
#: patch grids used for training junk (evaluation's references use 4x4, never seen in training)
TRAIN_GRIDS = (2, 3, 5, 6, 8)
#: training junk blur: sigma in [lo, hi] * size (at 48 px: 2.4-5.8 px)
TRAIN_BLUR = (0.05, 0.12)


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round().clamp(0, 255).to(torch.uint8)


def uniform_noise(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Independent uniform RGB noise per pixel."""
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def constant(n: int, size: int, value: int = 128) -> torch.Tensor:
    """A flat image of one grey level."""
    return torch.full((n, 3, size, size), value, dtype=torch.uint8)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur (kernel 6 sigma + 1, odd, replicate borders)."""
    k = int(2 * round(3 * sigma) + 1)
    return to_uint8(gaussian_blur(x.float(), k, sigma))


def colour_shift(x: torch.Tensor) -> torch.Tensor:
    """Rotate the colour channels (R, G, B) -> (G, B, R): a 120-degree hue turn that keeps
    every shape and brightness edge (skin turns green-blue, a blue background turns red)."""
    return x[:, [1, 2, 0]].contiguous()


def patch_shuffle(x: torch.Tensor, grid: int, g: torch.Generator) -> torch.Tensor:
    """Cut each image into ``grid`` x ``grid`` square patches of ``S // grid`` px and put them
    back in a random order (its own permutation per image, never the identity). When ``grid``
    does not divide ``S``, the leftover strip at the right and bottom stays in place."""
    n, c, s, _ = x.shape
    p = s // grid
    if p < 1:
        raise ValueError(f"patch grid {grid} is larger than the image ({s} px)")
    out = x.clone()
    core = x[:, :, :p * grid, :p * grid].reshape(n, c, grid, p, grid, p).permute(0, 2, 4, 1, 3, 5)
    core = core.reshape(n, grid * grid, c, p, p)
    for i in range(n):
        perm = torch.randperm(grid * grid, generator=g)
        while grid > 1 and torch.equal(perm, torch.arange(grid * grid)):
            perm = torch.randperm(grid * grid, generator=g)
        shuffled = core[i, perm].reshape(grid, grid, c, p, p).permute(2, 0, 3, 1, 4).reshape(c, grid * p, grid * p)
        out[i, :, :p * grid, :p * grid] = shuffled
    return out


def _blotches(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Low-frequency colour noise: a random 2..12 px grid of colours upsampled (bilinear),
    half of them with fine noise on top (what a collapsed GAN often produces)."""
    out = torch.empty(n, 3, size, size)
    for i in range(n):
        cells = int(torch.randint(2, 13, (1,), generator=g))
        small = torch.rand(1, 3, cells, cells, generator=g) * 255
        out[i] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)[0]
        if torch.rand(1, generator=g) < 0.5:
            out[i] += torch.randn(3, size, size, generator=g) * float(torch.rand(1, generator=g) * 40)
    return to_uint8(out)


def _flat(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """A random flat colour (a third of them grey), half of them with a linear gradient."""
    col = torch.rand(n, 3, 1, 1, generator=g) * 255
    grey = torch.rand(n, generator=g) < 1 / 3
    col[grey] = col[grey, :1].expand(-1, 3, -1, -1)
    ramp = torch.linspace(-1, 1, size)
    angle = torch.rand(n, generator=g) * 2 * torch.pi
    field = torch.cos(angle)[:, None, None] * ramp[None, None, :] + torch.sin(angle)[:, None, None] * ramp[None, :, None]
    amp = torch.where(torch.rand(n, generator=g) < 0.5, torch.rand(n, generator=g) * 60, torch.zeros(n))
    return to_uint8(col + (amp[:, None, None] * field)[:, None])


def junk_images(x: torch.Tensor, n: int, g: torch.Generator) -> tuple[torch.Tensor, list[str]]:
    """``n`` random junk images made from (or beside) the real images ``x [M,3,S,S]``, and
    their kinds (:data:`JUNK_KINDS`, uniform). Deterministic for ``g``."""
    if n <= 0:
        return torch.zeros((0, *x.shape[1:]), dtype=torch.uint8), []
    size = x.shape[-1]
    kinds = [JUNK_KINDS[int(k)] for k in torch.randint(len(JUNK_KINDS), (n,), generator=g)]
    src = x[torch.randint(len(x), (n,), generator=g)]
    out = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i, kind in enumerate(kinds):
        xi = src[i:i + 1]
        if kind == "noise":
            out[i] = uniform_noise(1, size, g)[0]
        elif kind == "blotches":
            out[i] = _blotches(1, size, g)[0]
        elif kind == "flat":
            out[i] = _flat(1, size, g)[0]
        elif kind == "blur":
            lo, hi = TRAIN_BLUR
            out[i] = blur(xi, size * (lo + (hi - lo) * float(torch.rand(1, generator=g))))[0]
        elif kind == "shuffle":
            grid = TRAIN_GRIDS[int(torch.randint(len(TRAIN_GRIDS), (1,), generator=g))]
            out[i] = patch_shuffle(xi, min(grid, size), g)[0]
        else:  # drowned: the image blended with uniform noise at 50-90% noise
            a = 0.5 + 0.4 * float(torch.rand(1, generator=g))
            out[i] = to_uint8((1 - a) * xi[0].float() + a * uniform_noise(1, size, g)[0].float())
    return out, kinds
