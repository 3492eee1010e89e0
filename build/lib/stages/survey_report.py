"""Stage ``survey_report``: means with CIs, paired tests and rater agreement of the survey."""
from __future__ import annotations

from pathlib import Path

import typer

from face2anime.core.params import load_params
from face2anime.survey.report import run_survey_report


def main(params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Summarise the survey's responses (metrics/survey.json, reports/survey.md, reports/survey.png)."""
    run_survey_report(load_params(params))
