"""Stage ``select``: the CAM-selected human training list."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.cam.selection import run_select
from face2anime.core.params import load_params


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Pick the CAM-selected human training set (threshold / max_images from params)."""
    run_select(load_params(params))
