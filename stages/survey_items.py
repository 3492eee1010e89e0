"""Stage ``survey_items``: blind rating items (N test faces x every method) for the survey."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.params import load_params
from face2anime.survey.build import run_survey_items


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Copy N held-out faces and their translations by every method under blind ids."""
    run_survey_items(load_params(params))
