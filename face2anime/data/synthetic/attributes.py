"""The latent attribute space shared by both domains, and the per-image random streams.

* :data:`ATTRIBUTES`: attribute name -> its categories (strings); :data:`PARTS` (the part
  boxes of the manifest), :data:`HARD_KINDS`, :data:`DOMAINS` and :data:`CEL_SHARE`;
* the palettes: base RGB colours in [0, 1] per hair colour, skin tone, eye colour and
  background (each image jitters them, see :func:`~face2anime.data.synthetic.scene.jitter`),
  the face shapes ``(a, b, p)`` (half-axes in face units, superellipse power) and ``INK``;
* :func:`image_rng`: one image's ``numpy`` Generator, a pure function of
  ``(seed, domain, index)``; its first draws are the attributes (:func:`draw_attributes`),
  everything the renderer varies comes after them;
* :func:`hard_assignment`: which images are hard, and of which kind.

Numpy only: the attribute predictor's stage imports this module and nothing else of the
renderer.
"""
from __future__ import annotations

import numpy as np

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "hair_color": ("black", "brown", "blonde", "red", "blue"),
    "hair_style": ("short", "long", "bob", "spiky"),
    "skin_tone": ("light", "medium", "dark"),
    "eye_color": ("brown", "blue", "green", "violet"),
    "mouth": ("closed", "open", "smile"),
    "glasses": ("no", "yes"),
    "face_shape": ("round", "oval", "square"),
    "background": ("blue", "green", "pink", "grey"),
}
"""Shared latent attributes -> their categories (strings). Same space for both domains."""

PARTS: tuple[str, ...] = ("leye", "reye", "mouth", "nose")
"""Part boxes in the manifest; ``leye`` is the eye on the IMAGE's left (smaller x)."""

HARD_KINDS: tuple[str, ...] = ("occluded_eyes", "occluded_mouth", "clutter", "low_contrast",
                               "small_offcentre")
"""Kinds of hard (``clean=False``) human images."""

DOMAINS: tuple[str, ...] = ("human", "character")

CEL_SHARE: dict[str, float] = {"human": 0.3, "character": 0.7}
"""Share of images with two-tone cel shading (the rest: soft gradients). The only global
style cue whose distribution differs by domain; set both to 0.5 to remove it entirely."""
DOMAIN_ID = {"human": 1, "character": 2}

# Base colours (RGB in [0,1]); each image jitters them slightly within the hue family.
HAIR_RGB = {"black": (0.13, 0.12, 0.14), "brown": (0.46, 0.28, 0.14), "blonde": (0.94, 0.81, 0.45),
            "red": (0.82, 0.24, 0.14), "blue": (0.24, 0.42, 0.86)}
SKIN_RGB = {"light": (0.97, 0.85, 0.75), "medium": (0.84, 0.63, 0.46), "dark": (0.50, 0.34, 0.24)}
EYE_RGB = {"brown": (0.52, 0.29, 0.10), "blue": (0.18, 0.50, 0.96), "green": (0.18, 0.70, 0.28),
           "violet": (0.62, 0.28, 0.88)}
BACKGROUND_RGB = {"blue": (0.55, 0.75, 0.96), "green": (0.58, 0.84, 0.52), "pink": (0.97, 0.68, 0.80),
                  "grey": (0.62, 0.62, 0.64)}
FACE_SHAPES = {"round": (1.0, 1.06, 2.0), "oval": (0.86, 1.2, 2.0), "square": (0.98, 1.08, 3.6)}  # a, b, p
INK = np.array((0.10, 0.07, 0.08), np.float32)


def image_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    """The RNG of one image, a pure function of ``(seed, domain, index)``."""
    return np.random.default_rng(
        np.random.SeedSequence([seed & 0xFFFFFFFFFFFFFFFF, DOMAIN_ID[domain], index]))


def draw_attributes(rng: np.random.Generator) -> dict[str, str]:
    """Uniform independent categorical draws; always the first draws of an image's RNG."""
    return {k: v[int(rng.integers(len(v)))] for k, v in ATTRIBUTES.items()}


def sample_attributes(seed: int, domain: str, index: int) -> dict[str, str]:
    """Ground-truth attributes of image ``index`` of ``domain`` without rendering it."""
    return draw_attributes(image_rng(seed, domain, index))


def hard_assignment(n_images: int, hard_share: float, seed: int, domain: str = "human") -> dict[int, str]:
    """Which indices of ``domain`` are hard, and of which kind.

    Exactly ``round(hard_share * n_images)`` indices, chosen by a seeded permutation (its own
    stream per domain); kinds are dealt round-robin over :data:`HARD_KINDS`, so they are balanced.
    """
    k = int(round(hard_share * n_images))
    entropy = [seed & 0xFFFFFFFFFFFFFFFF, 7919] + ([] if domain == "human" else [DOMAIN_ID[domain]])
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    chosen = rng.permutation(n_images)[:k]
    return {int(i): HARD_KINDS[j % len(HARD_KINDS)] for j, i in enumerate(chosen)}
