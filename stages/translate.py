"""Stage ``translate@METHOD``: held-out human test images -> characters (+ a grid)."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.runtime import load_torch_params
from face2anime.core.timing import count_images
from face2anime.gan.translate import translate


def main(method: str = typer.Argument(..., help="an entry of cyclegan.methods"),
         params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Translate the held-out human test images with METHOD's generator."""
    count_images(len(list(translate(method, load_torch_params(params)).glob("*.png"))))
