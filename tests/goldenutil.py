"""Golden numbers of the tiny end-to-end runs: the same params on the same fingerprint give the
same metrics, so on the fingerprint a golden file was made on, a run must give its numbers
exactly; elsewhere (another CPU, torch or oneDNN) only that every key exists and is finite.
``FACE2ANIME_WRITE_GOLDEN=1`` rewrites the files from the run (then commit them)."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

GOLDEN_DIR = Path(__file__).parent / "golden"
#: what decides the numbers of a run with pinned threads (the fingerprint's stable part)
GOLDEN_MACHINE = ("cpu", "cpu_flags", "torch", "onednn", "cpu_capability", "threads")


def key_metrics(project: Path, keys: dict[str, list[str]]) -> dict[str, float]:
    """``{"file:key": value}`` of the ``keys`` (file -> keys; ``/`` steps into a mapping)."""
    out = {}
    for f, names in keys.items():
        data = json.loads((project / f).read_text())
        for k in names:
            v = data
            for part in k.split("/"):
                v = v[part]
            out[f"{f}:{k}"] = v
    return out


def check_golden(project: Path, name: str, keys: dict[str, list[str]],
                 machine_file: str = "metrics/stages/train_cyclegan@proposed.json") -> None:
    machine = json.loads((project / machine_file).read_text())["machine"]
    here = {k: machine.get(k) for k in GOLDEN_MACHINE}
    got = key_metrics(project, keys)
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in got.values()), got
    path = GOLDEN_DIR / name
    if os.environ.get("FACE2ANIME_WRITE_GOLDEN") == "1":
        GOLDEN_DIR.mkdir(exist_ok=True)
        path.write_text(json.dumps({"machine": here, "values": got}, indent=1) + "\n")
    golden = json.loads(path.read_text())
    assert set(golden["values"]) == set(got)
    if golden["machine"] == here:
        assert got == golden["values"], {k: (got[k], golden["values"][k]) for k in got if got[k] != golden["values"][k]}
