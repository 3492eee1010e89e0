"""The render API: one face as a uint8 (size, size, 3) RGB array with its part boxes.

:func:`render` paints a scene in a fixed order (background, clutter, body, hair behind,
face, nose, mouth, eyes, hair in front, glasses, occluders), then applies the effects and
quantises; the order fixes which random draws each step gets, so it is part of the output.
:func:`render_one` renders image ``index`` of a domain; :func:`render_counterpart` renders
it as the other domain (the ideal translation, used for the evaluation ceiling).
"""
from __future__ import annotations

import numpy as np

from face2anime.core.params import UserError
from face2anime.data.synthetic.attributes import (
    DOMAIN_ID,
    DOMAINS,
    HARD_KINDS,
    PARTS,
    draw_attributes,
    image_rng,
)
from face2anime.data.synthetic.effects import blur, low_contrast, noise_bank
from face2anime.data.synthetic.features import (
    anime_eyes,
    anime_mouth,
    anime_nose,
    human_eyes,
    human_mouth,
    human_nose,
)
from face2anime.data.synthetic.parts import (
    background,
    body,
    clutter,
    face,
    glasses,
    hair_back,
    hair_front,
    hair_prepare,
    occlude_eyes,
    occlude_mouth,
)
from face2anime.data.synthetic.scene import make_scene


def render(attrs: dict[str, str], domain: str, hard_kind: str, size: int,
           rng: np.random.Generator) -> tuple[np.ndarray, dict[str, tuple[float, float, float, float]]]:
    """Render one face.

    Returns ``(image, boxes)``: a uint8 (size, size, 3) RGB array and, per part in
    :data:`PARTS`, a tight box (x0, y0, x1, y1) normalised to [0, 1]. ``rng`` supplies all
    continuous variation (it is the image's RNG after the attribute draws).
    """
    if domain not in DOMAIN_ID:
        raise UserError(f"unknown domain {domain!r} (expected one of {', '.join(DOMAINS)})")
    if hard_kind and hard_kind not in HARD_KINDS:
        raise UserError(f"unknown hard_kind {hard_kind!r}; one of {', '.join(HARD_KINDS)}")
    s = make_scene(attrs, domain, hard_kind, size, rng)
    cv = background(s)
    if hard_kind == "clutter":
        clutter(cv, s)
    body(cv, s)
    hair = hair_prepare(cv, s)
    if hair is not None:
        hair_back(cv, s, hair)
    face(cv, s)
    human = domain == "human"
    (human_nose if human else anime_nose)(cv, s)
    (human_mouth if human else anime_mouth)(cv, s)
    eyes = (human_eyes if human else anime_eyes)(cv, s)
    if hair is not None:
        hair_front(cv, s, hair)
    if attrs["glasses"] == "yes":
        glasses(cv, s, eyes)
    if hard_kind == "occluded_eyes":
        occlude_eyes(cv, s, eyes, hair)
    elif hard_kind == "occluded_mouth":
        occlude_mouth(cv, s)
    img = cv.img                                             # (3, H, W) float in [0, 1]
    if hard_kind == "low_contrast":
        img = low_contrast(img, rng)
    if s.blur > 0.05:
        img = blur(img, s.blur)
    img *= 255.0
    if s.noise > 0.002:
        bank = noise_bank(size)
        oy, ox = (int(v) for v in rng.integers(0, bank.shape[1] - size + 1, 2))
        img += bank[:, oy:oy + size, ox:ox + size] * np.float32(s.noise * 255.0)
    img += 0.5
    np.clip(img, 0.0, 255.0, out=img)
    out = np.empty((size, size, 3), np.uint8)
    out.transpose(2, 0, 1)[...] = img                        # planar float -> interleaved uint8
    boxes = {p: cv.part_box(p) for p in PARTS}
    return out, boxes


def render_one(seed: int, domain: str, index: int, size: int, hard_kind: str = ""
               ) -> tuple[np.ndarray, dict[str, str], dict[str, tuple[float, float, float, float]]]:
    """Render image ``index`` of ``domain``: ``(uint8 image (size,size,3), attrs, boxes)``."""
    rng = image_rng(seed, domain, index)
    attrs = draw_attributes(rng)
    img, boxes = render(attrs, domain, hard_kind, size, rng)
    return img, attrs, boxes


def render_counterpart(seed: int, domain: str, index: int, size: int, hard_kind: str = "",
                       as_domain: str = "character"
                       ) -> tuple[np.ndarray, dict[str, str], dict[str, tuple[float, float, float, float]]]:
    """Image ``index`` of ``domain`` rendered as ``as_domain``: the same attributes and hard kind
    and, since both domains draw their scene (face position and size, light, shading,
    outline, noise, colours) identically from the image's RNG, the same pose and colours;
    only the domain's own parts (eyes, mouth, nose) and shading style differ. The ideal
    translation of that image (the ceiling of evaluation). ``as_domain == domain`` gives
    exactly :func:`render_one`'s image."""
    if as_domain not in DOMAIN_ID:
        raise UserError(f"unknown domain {as_domain!r} (expected one of {', '.join(DOMAINS)})")
    rng = image_rng(seed, domain, index)
    attrs = draw_attributes(rng)
    img, boxes = render(attrs, as_domain, hard_kind, size, rng)
    return img, attrs, boxes
