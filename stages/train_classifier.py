"""Stage ``train_classifier``: the guiding human-vs-character classifier and the independent judge."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.runtime import load_torch_params
from face2anime.models.classify import train_classifiers


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Train the human-vs-character classifier (for CAM) and the independent judge."""
    train_classifiers(load_torch_params(params))

