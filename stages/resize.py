"""Stage ``resize``: data/raw -> data/resized/{human,character}/{train,test} (+ manifest with split)."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.params import load_params
from face2anime.core.paths import RAW_DIR, RESIZED_DIR, RESIZE_METRICS
from face2anime.core.timing import count_images
from face2anime.data.align import AlignConfig
from face2anime.data.resize import resize_dataset


def main(params: Path = typer.Option(Path("params.yaml"), help="params file (keys: seed, resize.*)")) -> None:
    """Resize and split the raw images into data/resized (see face2anime/data/resize.py)."""
    p = load_params(params)
    cfg = p.resize
    align = AlignConfig.from_section(cfg.align) if cfg.crop == "align" else None
    count_images(len(resize_dataset(RAW_DIR, RESIZED_DIR, RESIZE_METRICS, size=cfg.size, test_count=cfg.test_count,
                                    crop=cfg.crop, seed=p.seed, max_pixels=cfg.max_pixels, align=align)))
