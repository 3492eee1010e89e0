"""Helpers for the web app tests: a free localhost port, a real `face2anime serve` process."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from conftest import BIN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(cwd: Path, *args: str, timeout: float = 60.0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``face2anime serve --port P ARGS`` on 127.0.0.1 in ``cwd``; yield (base url, process)."""
    port = free_port()
    log = open(Path(cwd) / f".serve-{port}.log", "w+")  # noqa: SIM115 - closed in the finally below
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(BIN / "face2anime"), "serve", "--host", "127.0.0.1", "--port", str(port), *args],
                            cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError(f"face2anime serve exited ({proc.returncode}):\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"face2anime serve did not start within {timeout} s")
            time.sleep(0.1)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


#: the stage commands the web app needs, run in one process (no DVC: the DVC wiring of these
#: stages is covered by test_pipeline's `dvc repro`); one thread, which on a busy 2-core
#: machine is several times faster than two for these tiny networks
WEB_STAGES = [["download"], ["resize"], ["train-classifier"], ["cam"], ["select"], ["train-cyclegan", "baseline"],
              ["train-cyclegan", "proposed"], ["translate", "baseline"], ["translate", "proposed"], ["survey-items"]]
_RUN_STAGES = """
import sys, torch
from stages.cli import build_app
torch.set_num_threads(1)
for args in {stages!r}:
    build_app([args[0]])(args=args, standalone_mode=False)
"""


def train_for_web(proj: Path) -> None:
    """Run the stages up to ``survey_items`` in ``proj`` (tiny params), in one Python process."""
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", _RUN_STAGES.format(stages=WEB_STAGES)], cwd=proj, env=env,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise AssertionError(f"training the web test project failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
