"""The ``face2anime`` console command: one sub-command per pipeline stage, plus the apps.

Stage commands live in ``stages/`` (one thin module per DVC stage); the other commands
(``convert``, ``bench``, ...) in :mod:`face2anime.apps`. Only the module of the command
being run is imported, so a stage's process loads exactly the project code that its DVC
dependencies declare (``tests/test_dvc_deps.py`` checks this). A
:class:`~face2anime.core.params.UserError` is printed as one red line and exits with
status 2 instead of a traceback.
"""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import typer
from rich.console import Console

from face2anime.core.params import UserError

#: sub-command -> module exposing ``main``, in pipeline order.
COMMANDS: dict[str, str] = {
    "download": "stages.download",
    "resize": "stages.resize",
    "train-classifier": "stages.train_classifier",
    "cam": "stages.cam",
    "select": "stages.select",
    "train-attributes": "stages.train_attributes",
    "train-cyclegan": "stages.train_cyclegan",
    "translate": "stages.translate",
    "evaluate": "stages.evaluate",
    "compare": "stages.compare",
    "survey-items": "stages.survey_items",
    "survey-report": "stages.survey_report",
    "convert": "face2anime.apps.convert",
    "seeds": "face2anime.apps.seeds",
    "bench": "face2anime.apps.bench",
    "gpu-check": "face2anime.apps.gpu_check",
    "rss-check": "face2anime.apps.rsscheck",
    "serve": "face2anime.apps.serve",
    "repro": "face2anime.apps.repro",
    "profile": "face2anime.apps.profile",
    "face-check": "face2anime.apps.facecheck",
    "report": "face2anime.apps.report",
    "record": "face2anime.apps.record",
    "export": "face2anime.apps.export",
}


def build_app(names: list[str]) -> typer.Typer:
    """A Typer app with the given sub-commands (their modules are imported here)."""
    app = typer.Typer(
        help="face2anime: photo -> anime faces with CycleGAN guided by Grad-CAM (DVC pipeline stages).",
        no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.callback()(lambda: None)  # keep sub-command syntax even with one command registered
    for name in names:
        app.command(name)(importlib.import_module(COMMANDS[name]).main)
    return app


def checkout_in_cwd() -> Path | None:
    """The project checkout in the current directory, when it is not the one this code came from.

    DVC runs each stage in a checkout: the workspace, a ``dvc exp run --queue`` temp copy, a
    test's throw-away project. The code that runs must be the code DVC hashed as the stage's
    deps, i.e. the one in the current directory, not whatever checkout the ``face2anime``
    console script was installed from.
    """
    cwd, here = Path.cwd().resolve(), Path(__file__).resolve().parents[1]
    if cwd != here and (cwd / "stages" / "cli.py").is_file() and (cwd / "face2anime" / "__init__.py").is_file():
        return cwd
    return None


def main() -> None:
    local = checkout_in_cwd()
    if local is not None:  # hand over to the checkout's own code
        sys.path.insert(0, str(local))
        for name in [m for m in sys.modules if m.split(".")[0] in ("stages", "face2anime")]:
            del sys.modules[name]
        return importlib.import_module("stages.cli").main()
    first = sys.argv[1] if len(sys.argv) > 1 else ""
    names = [first] if first in COMMANDS else list(COMMANDS)
    timer = None
    if COMMANDS.get(first, "").startswith("stages.") and "--help" not in sys.argv:
        from face2anime.core.timing import StageTimer

        per_method = first in ("train-cyclegan", "translate", "evaluate") and len(sys.argv) > 2
        timer = StageTimer(COMMANDS[first].split(".")[1] + (f"@{sys.argv[2]}" if per_method else ""))
    try:
        try:
            build_app(names)()
        except SystemExit as e:  # typer ends with sys.exit; record a stage only when it succeeded
            if timer is not None and e.code in (0, None):
                timer.write()
            raise
    except UserError as e:
        Console(stderr=True).print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("[yellow]interrupted[/]")
        sys.exit(130)


if __name__ == "__main__":
    main()
