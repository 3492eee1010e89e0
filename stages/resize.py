"""Stage ``resize``: data/raw -> data/resized/{human,character}/{train,test} (+ manifest with split)."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.params import load_params
from face2anime.core.paths import RAW_DIR, RESIZED_DIR, RESIZE_METRICS
from face2anime.core.timing import count_images
from face2anime.data.align import AlignConfig
from face2anime.data.resize import CROPS, resize_dataset


def main(params: Path = typer.Option(Path("params.yaml"), help="params file (keys: seed, resize.*)")) -> None:
    """Resize and split the raw images into data/resized (see face2anime/data/resize.py)."""
    p = load_params(params)
    seed = p.int("seed")
    size = p.int("resize.size", lo=16, hi=1024)
    test_count = p.int("resize.test_count", lo=1)
    crop = p.str("resize.crop", choices=CROPS)
    max_pixels = p.int("resize.max_pixels", default=100_000_000, lo=1)
    align = AlignConfig.from_params(p) if crop == "align" else None
    count_images(len(resize_dataset(RAW_DIR, RESIZED_DIR, RESIZE_METRICS, size=size, test_count=test_count, crop=crop,
                   seed=seed, max_pixels=max_pixels, align=align)))
