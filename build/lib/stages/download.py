"""Stage ``download``: raw human and character images -> data/raw (+ manifest, contact sheet)."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.params import load_params
from face2anime.core.timing import count_images
from face2anime.sources.download import download


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Download or generate the raw face images (data/raw) and a contact sheet."""
    count_images(len(download(load_params(params))))
