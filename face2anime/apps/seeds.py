"""``face2anime seeds``: repeat training with several seeds and report mean and std per method.

One GAN run is noise. For each seed this runs ``dvc exp run -S cyclegan.train.seed=S`` (so
only training and what follows re-run; data, classifier and CAMs come from the cache),
collects ``metrics/eval/*.json`` of that experiment, and writes ``metrics/seeds.json``
(``{method: {metric: {mean, std, n, values}}}``) and ``reports/seeds.md``.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import typer
from rich.console import Console

from face2anime.core.io import write_json, write_text
from face2anime.core.params import UserError, load_params
from face2anime.evaluation.compare import flatten

HEADLINE = ("char_rate", "attr_preservation.mean", "edge_ssim", "cam_overlap", "kid_judge.mean", "cycle_l1.human")


def summarize(runs: dict[int, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """``{seed: {method: eval json}}`` -> ``{method: {metric: {mean, std, n, values}}}``."""
    out: dict[str, dict[str, dict]] = {}
    methods = sorted({m for r in runs.values() for m in r})
    for m in methods:
        per_metric: dict[str, list[float]] = {}
        for seed in sorted(runs):
            for k, v in flatten(runs[seed].get(m, {})).items():
                per_metric.setdefault(k, []).append(v)
        out[m] = {k: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0,
                      "n": len(v), "values": v} for k, v in sorted(per_metric.items())}
    return out


def markdown(summary: dict[str, dict[str, dict]], seeds: list[int]) -> str:
    methods = list(summary)
    lines = [f"# Mean ± std over seeds {seeds}", "", "| metric | " + " | ".join(methods) + " |",
             "|---|" + "---|" * len(methods)]
    for k in HEADLINE:
        cells = []
        for m in methods:
            s = summary[m].get(k)
            cells.append("n/a" if s is None else f"{s['mean']:.3f} ± {s['std']:.3f}")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def dvc_executable() -> str:
    """The dvc installed beside this Python (the venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "dvc"
    return str(beside) if beside.is_file() else (shutil.which("dvc") or "dvc")


def run_seeds(seeds: list[int], params_file: Path = Path("params.yaml"), metrics_dir: Path = Path("metrics"),
              reports_dir: Path = Path("reports"), dvc: str | None = None) -> dict:
    methods = list(load_params(params_file).dict("cyclegan.methods"))
    runs: dict[int, dict[str, dict]] = {}
    for seed in seeds:
        Console().print(f"[bold]seeds: dvc exp run -S cyclegan.train.seed={seed}[/]")
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        try:
            res = subprocess.run([dvc or dvc_executable(), "exp", "run", "-S", f"cyclegan.train.seed={seed}"],
                                 env=env)
        except FileNotFoundError:
            raise UserError("dvc not found: run `make repro` once (it installs dvc into .venv)") from None
        if res.returncode != 0:
            raise UserError(f"dvc exp run for seed {seed} failed (exit {res.returncode})")
        runs[seed] = {m: json.loads((metrics_dir / "eval" / f"{m}.json").read_text()) for m in methods}
    summary = summarize(runs)
    write_json(metrics_dir / "seeds.json", {"seeds": seeds, "methods": summary})
    md = markdown(summary, seeds)
    write_text(reports_dir / "seeds.md", md)
    Console().print(md)
    return summary


def main(seeds: str = typer.Option("0,1,2", help="comma-separated cyclegan.train.seed values"),
         params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Train every method with several seeds (dvc exp run) and report mean ± std."""
    try:
        values = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    if not values:
        raise UserError("--seeds is empty")
    run_seeds(values, params)
