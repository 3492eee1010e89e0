"""The ``face2anime`` console command: one sub-command per pipeline stage.

Each stage module exposes ``main`` (a Typer command over a plain function that tests
call directly). A :class:`~stages.common.UserError` is printed as one red line and
exits with status 2 instead of a traceback.
"""
from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console

from stages.common import UserError

# (sub-command, module) in pipeline order.
COMMANDS: list[tuple[str, str]] = [
    ("download", "stages.download"),
    ("resize", "stages.resize"),
    ("train-classifier", "stages.train_classifier"),
    ("cam", "stages.cam"),
    ("select", "stages.selection"),
    ("train-attributes", "stages.train_attributes"),
    ("train-cyclegan", "stages.train_cyclegan"),
    ("translate", "stages.translate"),
    ("evaluate", "stages.evaluate"),
    ("compare", "stages.compare"),
    ("convert", "stages.convert"),
    ("seeds", "stages.seeds"),
    ("bench", "stages.bench"),
]

app = typer.Typer(
    help="face2anime: photo -> anime faces with CycleGAN guided by Grad-CAM (DVC pipeline stages).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for _name, _module in COMMANDS:
    app.command(_name)(importlib.import_module(_module).main)


def main() -> None:
    try:
        app()
    except UserError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
