"""``face2anime rss-check``: peak memory (RSS) of pipeline stages as the data set grows.

For each image count it builds a throw-away copy of the project in a temporary folder with
synthetic data of that size (``download`` is only the data generator here, not measured),
then runs the measured stages there as the pipeline would (``face2anime STAGE``), each in
its own process, and reads that process's peak RSS from the kernel (``os.wait4``). Memory
that does not grow with the image count is what FFHQ-scale data needs.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer
import yaml
from rich.console import Console
from rich.table import Table

from face2anime.core.params import UserError

ROOT = Path(__file__).resolve().parents[2]


def peak_rss_mb(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run ``cmd``; return (peak RSS in MiB of that process, seconds, exit status)."""
    t0 = time.perf_counter()
    # stderr goes to a file, not a pipe: a stage that logs more than a pipe buffer would block
    # on a pipe nobody reads while we wait for it
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.stderr.write(err.read().decode(errors="replace")[-2000:])
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def make_project(where: Path, n_images: int, size: int, overrides: dict) -> Path:
    """A copy of the project's code and params in ``where`` with ``n_images`` per domain."""
    for d in ("stages", "face2anime"):
        shutil.copytree(ROOT / d, where / d, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["download"]["source"] = "synthetic"
    params["download"]["synthetic"].update(n_human=n_images, n_character=n_images, size=size)
    params["resize"]["size"] = size
    for key, value in overrides.items():
        node = params
        *path, last = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return where


def rss_check(counts: list[int], size: int, stages: list[str], overrides: dict | None = None,
              keep: Path | None = None) -> dict:
    """``{count: {stage: {rss_mb, seconds}}}`` for each image count (per domain)."""
    exe = str(Path(sys.executable).parent / "face2anime")
    out: dict = {}
    for n in counts:
        with tempfile.TemporaryDirectory(prefix=f"rss{n}-", dir=keep) as tmp:
            proj = make_project(Path(tmp), n, size, overrides or {})
            _, secs, rc = peak_rss_mb([exe, "download"], proj)
            if rc != 0:
                raise UserError(f"rss-check: generating {n} images failed")
            out[n] = {}
            for stage in stages:
                rss, secs, rc = peak_rss_mb([exe, *stage.split()], proj)
                if rc != 0:
                    raise UserError(f"rss-check: `face2anime {stage}` failed on {n} images")
                out[n][stage] = {"rss_mb": round(rss, 1), "seconds": round(secs, 1)}
    return out


def main(counts: str = typer.Option("2000,20000", help="comma-separated images per domain"),
         size: int = typer.Option(256, help="image size (px)"),
         stages: str = typer.Option("resize", help="comma-separated stage commands to measure, "
                                    "e.g. 'resize,train-classifier,cam,train-cyclegan baseline'"),
         set_: list[str] = typer.Option([], "--set", help="param override KEY=VALUE (YAML value), repeatable"),
         json_out: Path = typer.Option(None, "--json", help="also write the numbers here")) -> None:
    """Peak RSS of pipeline stages at several data set sizes (memory must not grow with N)."""
    try:
        ns = [int(c) for c in counts.split(",") if c.strip()]
    except ValueError:
        raise UserError(f"--counts must be comma-separated integers, got {counts!r}") from None
    overrides = {}
    for item in set_:
        if "=" not in item:
            raise UserError(f"--set wants KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k] = yaml.safe_load(v)
    res = rss_check(ns, size, [s.strip() for s in stages.split(",") if s.strip()], overrides)
    table = Table(title=f"peak RSS (MiB) at {size} px")
    table.add_column("stage")
    for n in ns:
        table.add_column(f"{n} images/domain", justify="right")
    for stage in res[ns[0]]:
        table.add_row(stage, *[f"{res[n][stage]['rss_mb']:.0f} MiB ({res[n][stage]['seconds']:.0f} s)" for n in ns])
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps(res, indent=2) + "\n")
