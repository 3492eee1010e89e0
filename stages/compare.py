"""Stage ``compare``: the methods side by side (JSON, Markdown, picture)."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.runtime import load_torch_params
from face2anime.evaluation.compare import compare


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Compare all methods' metrics; write compare.json, a Markdown table and a picture."""
    compare(load_torch_params(params))
