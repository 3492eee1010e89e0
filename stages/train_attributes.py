"""Stage ``train_attributes``: the attribute predictor that grades preservation."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.runtime import load_torch_params
from face2anime.models.attributes import train_attributes


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Train the attribute predictor on labelled character images (for evaluation)."""
    train_attributes(load_torch_params(params))
