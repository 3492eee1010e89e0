"""``face2anime profile NAME --human DIR --character DIR``: run a params profile as one DVC experiment.

A profile is ``profiles/NAME.yaml``: a nested mapping of params that override
``params.yaml`` (the same keys). The command checks every key against ``params.yaml`` (an
unknown key is a one-line error naming the nearest valid one), adds the two data folders,
and runs what ``dvc exp run -n NAME -S key=value ...`` does, with the trainings side by side:
it sets the overrides in ``params.yaml`` (DVC's own ``-S`` code, comments kept), runs
:mod:`face2anime.apps.repro` and records the workspace as experiment NAME with
``dvc exp save`` (so it shows up in ``dvc exp show`` like any other). ``--serial`` runs the
plain ``dvc exp run`` instead (one stage at a time); ``--dry-run`` prints it.
"""
from __future__ import annotations

import copy
import difflib
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer
import yaml

from face2anime.core.params import UserError, flat_items, read_yaml, validate
from face2anime.core.schema import ParamsFile

PROFILES_DIR = Path("profiles")


def load_profile(name: str, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    """The flat ``{dotted key: value}`` overrides of ``profiles/NAME.yaml``."""
    path = profiles_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in profiles_dir.glob("*.yaml"))
        raise UserError(f"profile {name!r} not found in {profiles_dir}/ (profiles: {', '.join(known) or 'none'})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: top level must be a mapping of params")
    return flat_items(data)


def check_keys(overrides: dict[str, Any], params: dict[str, Any], source: str) -> None:
    """Every override must name a leaf of params.yaml; else a one-line error with the nearest key."""
    known = flat_items(params)
    for key in overrides:
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise UserError(f"{source}: unknown param '{key}'{hint}")


def merged(params: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``params`` with the flat dotted ``overrides`` set (what the experiment will run)."""
    out = copy.deepcopy(params)
    for key, value in overrides.items():
        *path, last = key.split(".")
        node = out
        for part in path:
            node = node.setdefault(part, {})
        node[last] = value
    return out


def set_arg(key: str, value: Any) -> str:
    """One ``-S`` value as DVC reads it: strings single-quoted (so ``a,b`` is no sweep)."""
    if isinstance(value, str):
        if "'" in value:
            raise UserError(f"param {key}: a quote in {value!r} cannot be passed to dvc exp run -S")
        plain = value != "" and "," not in value and value.strip() == value and yaml.safe_load(value or "''") == value
        return f"{key}={value}" if plain else f"{key}='{value}'"
    if isinstance(value, (list, dict)):
        raise UserError(f"param {key}: lists and mappings cannot be set from a profile; set its leaves")
    return f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"


def profile_command(name: str, human: str | None, character: str | None,
                    params_file: Path = Path("params.yaml"), profiles_dir: Path = PROFILES_DIR,
                    exp_name: str | None = None) -> list[str]:
    """The ``dvc exp run`` argv for a profile (with the data folders, when given)."""
    overrides = load_profile(name, profiles_dir)
    if human is not None:
        overrides["download.source"] = "local"
        overrides["download.local.human"] = human
    if character is not None:
        overrides["download.source"] = "local"
        overrides["download.local.character"] = character
    source = str(profiles_dir / f"{name}.yaml")
    base = read_yaml(params_file)
    check_keys(overrides, base, source)
    validate(ParamsFile, merged(base, overrides), source)   # types and ranges too
    argv = ["dvc", "exp", "run", "-n", exp_name or name]
    for key, value in overrides.items():
        argv += ["-S", set_arg(key, value)]
    return argv


def plan_for(params_file: Path, jobs: int) -> "Any":
    """The :mod:`face2anime.apps.repro` plan of the pipeline with the profile's params."""
    from face2anime.apps import repro

    return repro.plan(params_path=params_file, jobs=jobs)


def run_profile(argv: list[str], params_file: Path = Path("params.yaml"), jobs: int = 0) -> None:
    """What the ``dvc exp run -n NAME -S ...`` argv does, with the trainings side by side:
    the ``-S`` overrides written into ``params_file``, :func:`face2anime.apps.repro.run`,
    then ``dvc exp save -n NAME`` (the workspace as that experiment)."""
    from dvc.utils.hydra import apply_overrides

    from face2anime.apps import repro

    name, sets = argv[4], argv[6::2]
    apply_overrides(params_file, sets)
    repro.run(plan_for(params_file, jobs))
    status = subprocess.call(["dvc", "exp", "save", "-n", name], env=repro.tool_env())
    if status != 0:
        raise UserError(f"profile: the run finished but dvc exp save -n {name} failed (exit {status}); "
                        f"the results are in the workspace: dvc exp save -n {name}")
    typer.echo(f"profile: experiment {name} saved (dvc exp show)")


def main(name: str = typer.Argument(..., help="a profile in profiles/ (e.g. real-cpu, real-gpu)"),
         human: str = typer.Option(None, help="folder (or archive) of your photos"),
         character: str = typer.Option(None, help="folder (or archive) of anime face crops"),
         exp_name: str = typer.Option(None, "--name", help="experiment name (default: the profile's)"),
         serial: bool = typer.Option(False, help="run plain dvc exp run (one stage at a time) instead"),
         jobs: int = typer.Option(0, help="cores to fill (0 = the usable cores; see face2anime repro)"),
         dry_run: bool = typer.Option(False, help="print the equivalent dvc exp run command instead of running it")) -> None:
    """Run a params profile (profiles/NAME.yaml) on your data as one DVC experiment."""
    argv = profile_command(name, human, character, exp_name=exp_name)
    typer.echo(shlex.join(argv))
    if dry_run:
        return
    for folder in (human, character):
        if folder is not None and not Path(folder).exists():
            raise UserError(f"profile: {folder} does not exist")
    if serial:
        from face2anime.apps.repro import tool_env

        sys.exit(subprocess.call(argv, env=tool_env()))
    run_profile(argv, jobs=jobs)
