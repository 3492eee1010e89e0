"""``face2anime repro``: ``dvc repro`` with independent stages side by side (``make -j`` for DVC).

``dvc repro`` runs one stage at a time and has no jobs option. DVC's own locks allow more
than one ``dvc repro`` process in a workspace when their stages write different outputs
(each stage takes a read lock on its deps and a write lock on its outs; the repo lock is
held only while a stage is checked and recorded, not while its command runs). So this
command walks DVC's stage graph and runs ``dvc --wait-for-lock repro -s STAGE`` for each
stage once everything it depends on has finished, as many at a time as the cores allow:

- a stage *weighs* the intra-op threads it pins: ``cyclegan.train.threads`` x ``nproc`` for
  ``train_cyclegan@*``, the top-level ``threads`` for every other stage (on a GPU a training
  weighs all cores: one training on the device at a time);
- ready stages start while the running weights add up to at most the usable cores (a stage
  heavier than the machine runs alone), the one with the longest path to the end of the
  pipeline first (the critical path; lengths from the wall times the last run recorded, 1 s
  for a stage it did not time); each line of their output is prefixed with the stage's name;
- a failing stage stops nothing that is already running; the stages that depend on it are
  not started, and the command ends with a one-line error naming both.

The results are those of a plain ``dvc repro``: every stage is its own process with its own
seeded state at its own fixed thread count, whoever runs beside it, and DVC records each
stage as usual (``dvc.lock``, the cache, the run cache). Only the wall time differs:
``metrics/repro.json`` records it per stage (as seen from here, DVC's own checks included)
and in all. ``--force`` adds ``-f`` to every stage.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from face2anime.core.io import write_json
from face2anime.core.params import UserError, load_params
from face2anime.core.paths import METRICS_DIR
from face2anime.core.runtime import cores

TRAIN_PREFIX = "train_cyclegan@"
#: the last run's wall times (what ``dvc repro`` alone cannot say when stages overlap)
RECORD = METRICS_DIR / "repro.json"


@dataclass(frozen=True)
class Plan:
    """What :func:`run` will do: every stage in dependency order, what each depends on, its
    weight (threads) and the cores to fill."""

    order: list[str]              # dependencies first, then the longer path to the end first
    deps: dict[str, set[str]]     # every stage a stage depends on, directly or not
    weight: dict[str, int]
    cores: int
    force: bool = False

    def argv(self, stage: str) -> list[str]:
        return ["dvc", "--wait-for-lock", "repro", "-s", *(["-f"] if self.force else []), stage]


def stage_graph() -> dict[str, set[str]]:
    """``{stage: every stage it depends on, directly or not}`` from DVC's own graph of the
    project in the current directory (DVC resolves deps from there)."""
    import networkx as nx
    from dvc.repo import Repo

    with Repo(".") as repo:
        graph = repo.index.graph            # edges: stage -> a stage it depends on
        return {s.addressing: {d.addressing for d in nx.descendants(graph, s)} for s in graph.nodes}


def tool_env() -> dict[str, str]:
    """The environment for ``dvc`` and the stages' ``face2anime`` commands: this interpreter's
    bin folder first on PATH, so they are the ones installed beside it even when its virtual
    environment is not activated (``.venv/bin/face2anime repro``)."""
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def weights(stages: list[str], params_path: Path, n_cores: int) -> dict[str, int]:
    """Threads each stage pins (see the module doc); a stage the params do not describe
    (not a pipeline stage of this project) weighs the top-level ``threads``."""
    from face2anime.core.runtime import pick_device
    from face2anime.gan.config import read_config

    params = load_params(params_path)
    on_gpu = pick_device(params.device).type == "cuda"
    out = {}
    for s in stages:
        method = s.removeprefix(TRAIN_PREFIX)
        if s.startswith(TRAIN_PREFIX) and method in params.cyclegan.methods:
            cfg = read_config(method, params)
            out[s] = n_cores if on_gpu else cfg.threads * cfg.nproc
        else:
            out[s] = params.threads
    return out


def path_lengths(deps: dict[str, set[str]], seconds: dict[str, float]) -> dict[str, float]:
    """Each stage's own seconds plus those of the longest chain of stages that depend on it."""
    topo = sorted(deps, key=lambda s: (len(deps[s]), s))   # a stage's deps strictly contain its deps' deps
    length: dict[str, float] = {}
    for s in reversed(topo):
        after = [length[d] for d in deps if s in deps[d]]
        length[s] = max(float(seconds.get(s, 1.0)), 0.01) + max(after, default=0.0)
    return length


def plan(params_path: Path = Path("params.yaml"), jobs: int = 0, force: bool = False,
         weight: dict[str, int] | None = None, record: Path = RECORD) -> Plan:
    """The plan for the project in the current directory. ``jobs`` is the number of cores to
    fill (0 = the usable cores); ``weight`` replaces :func:`weights` (tests); ``record`` is
    the last run's record, whose stage times rank the stages."""
    if jobs < 0:
        raise UserError(f"repro: --jobs must be >= 0 (0 = the usable cores), got {jobs}")
    deps = stage_graph()
    length = path_lengths(deps, _last_seconds(record))
    order = sorted(deps, key=lambda s: (-length[s], len(deps[s]), s))   # a dependency's path is longer
    n = jobs or cores()
    w = weight if weight is not None else weights(order, params_path, n)
    return Plan(order=order, deps=deps, weight={s: max(1, w.get(s, 1)) for s in order}, cores=n, force=force)


#: what ``dvc repro -s`` prints for a stage it does not run
UP_TO_DATE = "didn't change, skipping"


def _relay(proc: subprocess.Popen[str], tag: str, lock: threading.Lock, seen: dict[str, bool]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        seen[tag] = seen.get(tag, False) or UP_TO_DATE in line
        with lock:
            sys.stdout.write(f"{tag} | {line}")
            sys.stdout.flush()


def run(p: Plan, record: Path | None = RECORD) -> dict:
    """Run the plan (see the module doc). Returns, and writes to ``record`` (a git-tracked
    file outside DVC's outputs), the wall seconds of every stage that ran (the earlier record's
    for the stages found up to date) and of the whole run."""
    from face2anime.core.timing import fingerprint

    lock = threading.Lock()
    up_to_date: dict[str, bool] = {}
    pending, done, failed, skipped = list(p.order), set(), [], []
    running: dict[str, tuple[subprocess.Popen[str], threading.Thread, float]] = {}
    seconds: dict[str, float] = {}
    t_all = time.perf_counter()
    while pending or running:
        for s in list(pending):
            if p.deps[s] & (set(failed) | set(skipped)):
                pending.remove(s)
                skipped.append(s)
        used = sum(p.weight[s] for s in running)
        for s in list(pending):
            if not p.deps[s] <= done:
                continue
            if running and used + p.weight[s] > p.cores:
                break   # nothing with a shorter path jumps ahead of a waiting stage
            proc = subprocess.Popen(p.argv(s), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                    env=tool_env())
            relay = threading.Thread(target=_relay, args=(proc, s, lock, up_to_date), daemon=True)
            relay.start()
            running[s] = (proc, relay, time.perf_counter())
            pending.remove(s)
            used += p.weight[s]
        time.sleep(0.1)
        for s, (proc, relay, t0) in list(running.items()):
            if proc.poll() is not None:
                relay.join()
                seconds[s] = round(time.perf_counter() - t0, 2)
                del running[s]
                (done.add(s) if proc.returncode == 0 else failed.append(s))
    if failed:
        later = f"; not run: {', '.join(skipped)}" if skipped else ""
        raise UserError(f"repro: {', '.join(failed)} failed (see its log above){later}")
    ran = [s for s in p.order if not up_to_date.get(s, False)]
    earlier = _last_seconds(record) if record is not None else {}
    out = {"wall_seconds": round(time.perf_counter() - t_all, 2), "ran": ran,
           "stage_seconds": {s: seconds[s] if s in ran else earlier.get(s, seconds[s]) for s in p.order},
           "cores": p.cores, "weights": p.weight, "force": p.force, "machine": fingerprint()}
    if record is not None:
        write_json(record, out)
    return out


def _last_seconds(record: Path) -> dict[str, float]:
    """The stage times of the last recorded run ({} when there is none or it is unreadable)."""
    import json

    try:
        last = json.loads(record.read_text()).get("stage_seconds", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return last if isinstance(last, dict) else {}


def main(jobs: int = typer.Option(0, help="cores to fill (0 = the usable cores)"),
         force: bool = typer.Option(False, "--force", "-f", help="re-run every stage (dvc repro -f)"),
         dry_run: bool = typer.Option(False, help="print the stages, their weights and commands instead")) -> None:
    """dvc repro, with independent stages side by side (same results, less wall time)."""
    p = plan(jobs=jobs, force=force)
    if dry_run:
        typer.echo(f"# {p.cores} cores; stages in dependency order (weight = threads)")
        for s in p.order:
            typer.echo(f"{shlex.join(p.argv(s))}   # weight {p.weight[s]}")
        return
    t0 = time.perf_counter()
    rec = run(p)
    typer.echo(f"repro: {len(p.order)} stages in {time.perf_counter() - t0:.0f} s ({p.cores} cores)")
    del rec
