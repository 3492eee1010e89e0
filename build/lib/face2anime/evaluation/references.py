"""Evaluation's floors: fixed degenerate "translations" of the test sources.

Each is scored by ``evaluate`` exactly like a method's translations, so every metric comes
with the values that noise, a grey square, no translation at all, a smeared or
colour-shifted source, shuffled characters and real characters get (issue 11: a two-class
judge called colour noise 100% "character"). Built from the primitives of
:mod:`face2anime.data.junk`, with settings the judge's junk training never used (blur
sigma ``S/24`` is weaker than any training junk blur, 4x4 shuffles are not among the
training grids, colour shifts are not junk).
"""
from __future__ import annotations

import torch

from face2anime.data.junk import (
    blur,
    colour_shift,
    constant,
    patch_shuffle,
    uniform_noise,
)

#: the patch-shuffle grid and the blur (sigma = size / BLUR_DIVISOR px) of the references
REFERENCE_GRID = 4
REFERENCE_BLUR_DIVISOR = 24
#: evaluation's degenerate references, in report order; ``real_chars`` is the positive control
REFERENCE_NAMES = ("noise", "grey", "source", "source_blur", "source_colour", "shuffled_chars", "real_chars")
#: the references that are NOT characters (a character judge must reject them all)
DEGENERATE = REFERENCE_NAMES[:-1]


def references(src: torch.Tensor, chars: torch.Tensor, real_chars: torch.Tensor, seed: int
               ) -> dict[str, torch.Tensor]:
    """The fixed degenerate "translations" of the test sources ``src [N,3,S,S]``, each of N images
    (paired with the sources by position): uniform noise, constant grey 128, the source itself,
    the source blurred (sigma ``S/24`` px), the source colour-shifted (:func:`colour_shift`),
    character test images ``chars`` shuffled in a 4x4 grid and real held-out characters
    ``real_chars`` (cycled when fewer than N)."""
    n, size = len(src), src.shape[-1]
    g = torch.Generator().manual_seed(seed)

    def take(x: torch.Tensor) -> torch.Tensor:
        if not len(x):
            raise ValueError("no character images for the references")
        return x[torch.arange(n) % len(x)]

    return {
        "noise": uniform_noise(n, size, g),
        "grey": constant(n, size, 128),
        "source": src.clone(),
        "source_blur": blur(src, size / REFERENCE_BLUR_DIVISOR),
        "source_colour": colour_shift(src),
        "shuffled_chars": patch_shuffle(take(chars), min(REFERENCE_GRID, size), g),
        "real_chars": take(real_chars),
    }
