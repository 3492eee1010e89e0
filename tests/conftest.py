"""Shared fixtures: tiny params and a throw-away DVC project (git repo) for end-to-end tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one pytest-xdist worker per core: one intra-op thread each, so the
    # workers do not fight over the cores (the subprocesses get OMP_NUM_THREADS=1 below)
    import torch

    torch.set_num_threads(1)
BIN = Path(sys.executable).parent

#: overrides that make the whole pipeline run in well under a minute
TINY = {
    "threads": 1,
    "download.synthetic.n_human": 48,
    "download.synthetic.n_character": 40,
    "download.synthetic.size": 32,
    "resize.size": 32,
    "resize.test_count": 6,
    "classifier.epochs": 4,
    "classifier.batch_size": 8,
    "judge.epochs": 1,
    "attributes.epochs": 1,
    "select.threshold": 0.0,
    "select.max_images": 16,
    "select.min_images": 2,
    "cyclegan.train.ngf": 4,
    "cyclegan.train.ndf": 4,
    "cyclegan.train.n_res": 1,
    "cyclegan.train.epochs": 2,
    "cyclegan.train.steps_per_epoch": 2,
    "cyclegan.train.batch_size": 2,
    "cyclegan.train.lr_decay_epochs": 1,
    "cyclegan.train.log_every": 1,
    "translate.grid_count": 4,
    "evaluate.kid_subsets": 5,
    "evaluate.kid_subset_size": 4,
    "compare.faces": 3,
}


def set_dotted(d: dict, key: str, value: object) -> None:
    *path, last = key.split(".")
    for p in path:
        d = d.setdefault(p, {})
    d[last] = value


def tiny_params(overrides: dict | None = None) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for k, v in {**TINY, **(overrides or {})}.items():
        set_dotted(params, k, v)
    return params


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env or {}), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t", "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}")
    return res


@pytest.fixture
def project(tmp_path: Path):
    """A fresh git + DVC project with this repo's pipeline, stage code and tiny params; committed."""
    proj = tmp_path / "proj"
    proj.mkdir()
    for d in ("stages", "face2anime", "inputs"):
        shutil.copytree(ROOT / d, proj / d, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    shutil.copy(ROOT / ".gitignore", proj / ".gitignore")
    (proj / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    run(["git", "init", "-q"], proj)
    run([str(BIN / "dvc"), "init", "-q"], proj)
    run([str(BIN / "dvc"), "config", "core.autostage", "true"], proj)
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "init"], proj)
    return proj
