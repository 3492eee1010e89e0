"""The photo-like stand-in for real photos: deterministic, really different, ground truth intact."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from face2anime.data.photolike import photo_like
from face2anime.data.synthetic.dataset import generate
from face2anime.data.synthetic.render import render_one
from face2anime.sources.download import make_photo_like


def test_deterministic_per_seed_and_index() -> None:
    img, _, _ = render_one(0, "human", 3, 64)
    a, b = photo_like(img, 0, 3), photo_like(img, 0, 3)
    assert a.shape == img.shape and a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, photo_like(img, 0, 4)) and not np.array_equal(a, photo_like(img, 1, 3))


def test_adds_photo_statistics_but_keeps_the_face() -> None:
    """Lighting/exposure changes (a low-frequency difference of several grey levels), yet the same
    picture underneath (strong correlation)."""
    from PIL import ImageFilter

    def low(a: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(6)), dtype=float)

    corr, shift = [], []
    for i in range(6):
        img, _, _ = render_one(0, "human", i, 64)
        out = photo_like(img, 0, i)
        corr.append(np.corrcoef(img.mean(2).ravel(), out.astype(float).mean(2).ravel())[0, 1])
        shift.append(np.abs(low(out) - low(img)).mean())
    assert np.mean(shift) > 8, shift
    assert min(corr) > 0.6, corr   # still the same face layout


def test_download_applies_it_to_humans_only(tmp_path: Path) -> None:
    m = generate(tmp_path, n_human=4, n_character=3, size=32, hard_share=0.0, seed=0, progress=False)
    before = {f: np.asarray(Image.open(tmp_path / f)).copy() for f in m["file"]}
    assert make_photo_like(m, tmp_path, seed=0, progress=False) == 4
    for _, row in m.iterrows():
        now = np.asarray(Image.open(tmp_path / row["file"]))
        assert np.array_equal(now, before[row["file"]]) == (row["domain"] == "character")
    assert isinstance(m, pd.DataFrame)
