"""``face2anime seeds``: the paired comparison over several training seeds, from finished DVC
experiments.

Seeds run through DVC's own machinery (each in a temporary copy of the repo, so the
workspace, its params and its HEAD are never touched, even when a run is interrupted)::

    for s in 1 2; do dvc exp run --queue -n seed-$s -S cyclegan.train.seed=$s; done
    dvc queue start -j 1          # or: dvc exp run --run-all -j 1
    face2anime seeds              # the workspace (seed 0) + every finished seed experiment

This command only aggregates. It picks the experiments of the current commit whose params
equal the workspace's except ``cyclegan.train.seed`` (or the ones named with ``--exp``),
reads each one's eval JSONs, per-image tables and judge features with ``dvc.api.open``,
and runs :func:`~face2anime.evaluation.compare.paired_comparison` over all of them: the CI
is a two-way bootstrap over seeds and test images. It writes ``metrics/seeds.json`` and
``reports/seeds.md``.

``face2anime seeds --before OLD_S0 --before OLD_S1 --after NEW_S0 --after NEW_S1`` asks another
question: did a code change (a speed-up, say) change what each method gives? Each folder is a
finished project run; the old and new run of one seed pair up, and each method is compared
with itself (``metrics/before_after.json``, ``reports/before_after.md``).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import IO, Any, Callable

import typer
from rich.console import Console

from face2anime.core.paths import METRICS_DIR, REPORTS_DIR
from face2anime.core.io import write_json, write_text
from face2anime.core.params import UserError, flat_items, load_params, read_yaml
from face2anime.evaluation.compare import load_run, markdown, paired_comparison

SEED_KEY = "cyclegan.train.seed"


def finished_experiments(repo: str = ".", all_commits: bool = False) -> list[dict[str, Any]]:
    """Finished experiments of the current commit (or of every commit):
    ``[{name, rev, params (flat)}]``."""
    from dvc.repo import Repo

    with Repo(repo) as r:
        baseline = r.scm.get_rev()
        listed = r.experiments.ls(all_commits=True) if all_commits else r.experiments.ls(rev=baseline)
        found = []
        for ref_info in [e for refs in listed.values() for e in refs]:   # {commit: [(name, rev), ...]}
            name, rev = ref_info if isinstance(ref_info, tuple) else (ref_info, None)
            if rev is None:
                continue
            params = r.params.show(revs=[rev]).get(rev, {}).get("data", {}).get("params.yaml", {}).get("data", {})
            found.append({"name": name, "rev": rev, "params": flat_items(params)})
    return found


def same_but_seed(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = (set(a) | set(b)) - {SEED_KEY}
    return all(a.get(k) == b.get(k) for k in keys)


def training_cost(methods: list[str], open_file: Callable[[str], IO[bytes]] | None = None) -> dict[str, Any]:
    """What training each method cost in one run: steps, seconds of the training loop and ms per
    step (from ``metrics/cyclegan/M/metrics.json`` and the stage's timing file
    ``metrics/stages/train_cyclegan@M.json``), and the CPU it ran on. ``open_file`` as in
    :func:`~face2anime.evaluation.compare.load_run`; a missing file gives None for that method."""
    def read(path: str) -> dict | None:
        try:
            if open_file is None:
                return json.loads(Path(path).read_text())
            with open_file(path) as fh:
                return json.loads(fh.read())
        except (FileNotFoundError, ValueError):
            return None

    out: dict[str, Any] = {}
    for m in methods:
        summary, stage = read(f"metrics/cyclegan/{m}/metrics.json"), read(f"metrics/stages/train_cyclegan@{m}.json")
        if not summary or not stage or "train_seconds" not in stage:
            out[m] = None
            continue
        steps = summary["steps"]
        out[m] = {"steps": steps, "train_seconds": stage["train_seconds"],
                  "ms_per_step": round(1000 * stage["train_seconds"] / steps, 1),
                  "precision": summary.get("precision"), "threads": summary.get("threads"),
                  "cpu": stage.get("machine", {}).get("cpu")}
    return out


def cost_lines(cost: dict[str, Any], methods: list[str]) -> str:
    """Markdown lines: each method's training steps and mean ms per step over the runs."""
    from face2anime.apps.report import mean_costs

    lines = [f"- `{c['method']}`: {c['steps']} steps, {c['ms_per_step']:.0f} ms per step (mean of {c['runs']} runs; "
             f"{c['machine']})" for c in mean_costs(list(cost.values()), methods)]
    return ("Training cost (measured in these runs):\n\n" + "\n".join(lines) + "\n") if lines else ""


def aggregate(methods: list[str], reference: str, candidate: str, experiments: list[dict[str, Any]],
              include_workspace: bool = True, n_boot: int = 10000, n_perm: int = 10000,
              repo: str = ".") -> tuple[dict, list[str], dict[str, Any]]:
    """The paired comparison over the workspace's run and ``experiments`` (one per seed), the
    run labels, and each run's training cost (:func:`training_cost`, by label)."""
    import dvc.api

    runs, labels, cost = [], [], {}
    if include_workspace:
        runs.append(load_run(methods))
        labels.append("workspace")
        cost["workspace"] = training_cost(methods)
    for e in experiments:
        def opener(p: str, rev: str = e["rev"]) -> IO[bytes]:
            return dvc.api.open(p, repo=repo, rev=rev, mode="rb")

        runs.append(load_run(methods, open_file=opener))
        labels.append(f"{e['name']} (seed {e['params'].get(SEED_KEY)})")
        cost[labels[-1]] = training_cost(methods, opener)
    if len(runs) < 2:
        raise UserError("seeds: fewer than two runs to aggregate; queue seeds first, e.g. "
                        "`dvc exp run --queue -n seed-1 -S cyclegan.train.seed=1` and `dvc queue start -j 1`")
    return paired_comparison(runs, reference, candidate, n_boot, n_perm), labels, cost


def check_name(out_name: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", out_name):
        raise UserError(f"seeds: --out must be a plain file name (letters, digits, _ . -), got {out_name!r}")


def run_seeds(params_file: Path = Path("params.yaml"), names: list[str] | None = None,
              metrics_dir: Path = METRICS_DIR, reports_dir: Path = REPORTS_DIR,
              reference: str | None = None, candidate: str | None = None, workspace: bool = True,
              out_name: str = "seeds", all_commits: bool = False) -> dict:
    """The paired comparison of ``candidate`` with ``reference`` (default: ``compare.*``) over the
    workspace (unless ``workspace`` is False) and the chosen finished experiments; writes
    ``metrics/OUT_NAME.json`` and ``reports/OUT_NAME.md``."""
    check_name(out_name)
    p = load_params(params_file)
    reference = reference or p.compare.reference
    candidate = candidate or p.compare.candidate
    methods = [reference, candidate]
    exps = finished_experiments(all_commits=all_commits)
    if names:
        missing = sorted(set(names) - {e["name"] for e in exps})
        if missing:
            raise UserError(f"seeds: no finished experiment named {', '.join(missing)} on "
                            f"{'any' if all_commits else 'this'} commit (see `dvc exp show`)")
        chosen = [e for e in exps if e["name"] in names]
    else:
        here = flat_items(read_yaml(params_file))
        chosen = [e for e in exps if same_but_seed(e["params"], here) and e["params"].get(SEED_KEY) != here.get(SEED_KEY)]
    seeds = {e["params"].get(SEED_KEY) for e in chosen}
    if len(seeds) != len(chosen):
        raise UserError("seeds: two experiments share a seed; name the ones to use with --exp")
    table, labels, cost = aggregate(methods, reference, candidate, chosen, include_workspace=workspace,
                                    n_boot=p.compare.bootstrap, n_perm=p.compare.permutations)
    write_json(metrics_dir / f"{out_name}.json", {"runs": labels, "reference": reference, "candidate": candidate,
                                                  "metrics": table, "training_cost": cost})
    md = (f"# {candidate} vs {reference} over {len(labels)} training seeds\n\nRuns: {', '.join(labels)}. "
          "CIs: two-way bootstrap over seeds and test images.\n\n" + markdown(table, methods, reference, candidate)
          + "\n" + cost_lines(cost, methods))
    write_text(reports_dir / f"{out_name}.md", md)
    Console().print(md, highlight=False)
    return table


def code_comparison(before: list[Path], after: list[Path], methods: list[str], n_boot: int = 10000,
                    n_perm: int = 10000) -> dict[str, dict]:
    """Each method of ``methods`` after a code change against itself before it: ``before[s]`` and
    ``after[s]`` are two finished project folders (their ``metrics/`` and ``data/eval/``) with the
    same params and seed ``s``, run by the old and the new code. Returns ``{method: table}`` of
    :func:`~face2anime.evaluation.compare.paired_comparison` with reference ``before`` and candidate
    ``after``: the CI is a two-way bootstrap over the seed pairs and the test images."""
    if len(before) != len(after) or not before:
        raise UserError(f"seeds: --before and --after pair up by position: got {len(before)} and {len(after)} folders")
    loaded = [(load_run(methods, Path(b) / "metrics", Path(b) / "data" / "eval"),
               load_run(methods, Path(a) / "metrics", Path(a) / "data" / "eval")) for b, a in zip(before, after)]
    out = {}
    for m in methods:
        runs = [{k: {"before": rb[k][m], "after": ra[k][m]} for k in ("evals", "tables", "features")
                 if m in rb[k] and m in ra[k]} for rb, ra in loaded]
        out[m] = paired_comparison(runs, "before", "after", n_boot, n_perm)
    return out


def run_code_comparison(before: list[Path], after: list[Path], params_file: Path = Path("params.yaml"),
                        metrics_dir: Path = METRICS_DIR, reports_dir: Path = REPORTS_DIR,
                        out_name: str = "before_after") -> dict:
    """:func:`code_comparison` for ``compare.reference`` and ``compare.candidate``; writes
    ``metrics/OUT_NAME.json`` and ``reports/OUT_NAME.md`` (no folder names: they are the user's)."""
    p = load_params(params_file)
    methods = list(dict.fromkeys([p.compare.reference, p.compare.candidate]))
    tables = code_comparison(before, after, methods, p.compare.bootstrap, p.compare.permutations)
    write_json(metrics_dir / f"{out_name}.json", {"kind": "before_after", "seed_pairs": len(before),
                                                  "methods": tables})
    md = f"# The same methods before and after a code change, over {len(before)} seed pairs\n\n" + "\n".join(
        f"## {m}\n\n" + markdown(t, ["before", "after"], "before", "after") for m, t in tables.items())
    write_text(reports_dir / f"{out_name}.md", md)
    Console().print(md, highlight=False)
    return tables


def main(exp: list[str] = typer.Option([], "--exp", help="experiment names to use (default: every finished "
                                       "experiment of this commit that differs from the workspace only in "
                                       "cyclegan.train.seed)"),
         reference: str = typer.Option(None, help="reference method (default: compare.reference)"),
         candidate: str = typer.Option(None, help="candidate method (default: compare.candidate)"),
         workspace: bool = typer.Option(True, "--workspace/--no-workspace",
                                        help="include the workspace's own run (seed 0)"),
         out: str = typer.Option(None, help="writes metrics/OUT.json and reports/OUT.md (default: seeds; "
                                            "with --before/--after: before_after)"),
         all_commits: bool = typer.Option(False, "--all-commits", help="also experiments based on other commits "
                                          "(results of other code: use it knowingly)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file"),
         before: list[Path] = typer.Option([], "--before", help="with --after: finished project folders run by "
                                           "the old code, one per seed (compares each method with itself)"),
         after: list[Path] = typer.Option([], "--after", help="the same seeds run by the new code, in the same "
                                          "order as --before")) -> None:
    """Paired comparison over the workspace and finished seed experiments (metrics/seeds.json)."""
    if before or after:
        out = out or "before_after"
        check_name(out)
        run_code_comparison(before, after, params, out_name=out)
        return
    run_seeds(params, exp or None, reference=reference, candidate=candidate, workspace=workspace, out_name=out or "seeds",
              all_commits=all_commits)
