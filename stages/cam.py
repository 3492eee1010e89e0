"""Stage ``cam``: Grad-CAM of every training image and the per-human ``part_focus`` score."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.cam.scoring import run_cam
from face2anime.core.runtime import load_torch_params
from face2anime.core.timing import count_images


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Grad-CAM every training image; score human images by CAM mass on eyes + mouth."""
    count_images(len(run_cam(load_torch_params(params))))
