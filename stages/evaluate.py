"""Stage ``evaluate@METHOD``: objective metrics of one method's translations."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.runtime import load_torch_params
from face2anime.core.timing import count_images
from face2anime.evaluation.evaluate import evaluate


def main(method: str = typer.Argument(..., help="an entry of cyclegan.methods"),
         params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Objective metrics of METHOD's translations (metrics/eval/METHOD.json)."""
    count_images(evaluate(method, load_torch_params(params))["n_test"])

