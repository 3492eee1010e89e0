"""Stage ``train_cyclegan@METHOD``: one CycleGAN variant (one training loop for all methods)."""
from __future__ import annotations

import sys
from pathlib import Path

import typer

from face2anime.core.params import load_params
from face2anime.core.timing import count_images
from face2anime.gan.train import train


def main(method: str = typer.Argument(..., help="an entry of cyclegan.methods (baseline, proposed, ...)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Train the CycleGAN of one method (stage train_cyclegan@METHOD)."""
    summary = train(method, load_params(params), progress=sys.stderr.isatty())
    count_images(round(summary["images_per_s"] * summary["train_seconds"]))
