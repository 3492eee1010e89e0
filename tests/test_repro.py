"""face2anime repro: dvc repro with independent stages side by side, on a toy DVC project
(shell commands, no torch): the same lock file as a plain ``dvc repro``, the trainings overlap
in time, a failing stage stops what depends on it with a one-line error."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from conftest import BIN, run
from face2anime.apps import repro
from face2anime.core.params import UserError

#: a pipeline shaped like the real one: up -> train_cyclegan@{a,b} -> evaluate@{a,b} -> compare,
#: plus a stage that hangs off "up" only. Each training records when it started and ended.
DVC_YAML = {
    "stages": {
        "up": {"cmd": "echo up > up.txt", "outs": ["up.txt"]},
        "side": {"cmd": "cat up.txt > side.txt", "deps": ["up.txt"], "outs": ["side.txt"]},
        "train_cyclegan": {
            "foreach": ["a", "b"],
            "do": {
                "cmd": "date +%s.%N > t_${item}.start && test ! -e fail_${item} && sleep 2 && cat up.txt > m_${item}.txt "
                       "&& date +%s.%N > t_${item}.end",
                "deps": ["up.txt"],
                "outs": ["m_${item}.txt", {"t_${item}.start": {"cache": False}}, {"t_${item}.end": {"cache": False}}],
            },
        },
        "evaluate": {
            "foreach": ["a", "b"],
            "do": {"cmd": "cat m_${item}.txt > e_${item}.txt", "deps": ["m_${item}.txt"], "outs": ["e_${item}.txt"]},
        },
        "compare": {"cmd": "cat e_a.txt e_b.txt > c.txt", "deps": ["e_a.txt", "e_b.txt"], "outs": ["c.txt"]},
    }
}


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    proj = tmp_path / "toy"
    proj.mkdir()
    (proj / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    run(["git", "init", "-q"], proj)
    run([str(BIN / "dvc"), "init", "-q"], proj)
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "init"], proj)
    return proj


def _lock_stages(proj: Path) -> dict:
    """dvc.lock without the timing outputs (they differ between any two runs)."""
    lock = yaml.safe_load((proj / "dvc.lock").read_text())["stages"]
    for entry in lock.values():
        entry["outs"] = [o for o in entry.get("outs", []) if not o["path"].startswith("t_")]
    return lock


#: the toy's weights: the trainings one core each (as cyclegan.train.threads: 1), the rest two
WEIGHTS = {"train_cyclegan@a": 1, "train_cyclegan@b": 1}


def _plan(**kw: object) -> repro.Plan:
    stages = ["up", "side", "train_cyclegan@a", "train_cyclegan@b", "evaluate@a", "evaluate@b", "compare"]
    return repro.plan(jobs=2, weight={s: WEIGHTS.get(s, 2) for s in stages}, **kw)


@pytest.fixture
def in_toy(toy: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(toy)       # as the command runs: in the project (DVC resolves deps from there)
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")
    return toy


def test_plan_orders_by_dependencies_then_the_longest_path(in_toy: Path) -> None:
    p = _plan()
    pos = {s: i for i, s in enumerate(p.order)}
    for s, deps in p.deps.items():
        assert all(pos[d] < pos[s] for d in deps), s
    assert p.deps["compare"] >= {"up", "train_cyclegan@a", "evaluate@b"} and p.order[0] == "up"
    # with recorded times, the stage on the longer path starts first: "side" (no dependents)
    # waits behind the trainings once they are known to take long
    (in_toy / "metrics").mkdir()
    (in_toy / "metrics" / "repro.json").write_text(json.dumps({"stage_seconds": {
        "train_cyclegan@a": 50, "train_cyclegan@b": 60, "side": 5}}))
    order = _plan().order
    assert order.index("train_cyclegan@b") < order.index("train_cyclegan@a") < order.index("side")
    assert repro.path_lengths({"a": set(), "b": {"a"}}, {"a": 2, "b": 3}) == {"a": 5.0, "b": 3.0}
    with pytest.raises(UserError, match="--jobs"):
        repro.plan(jobs=-1)


def test_side_by_side_gives_the_lock_of_a_plain_dvc_repro(in_toy: Path) -> None:
    toy = in_toy
    plain = toy.parent / "plain"
    shutil.copytree(toy, plain)
    run([str(BIN / "dvc"), "repro"], plain)

    record = repro.run(_plan())
    assert _lock_stages(toy) == _lock_stages(plain)
    assert json.loads((toy / "metrics" / "repro.json").read_text()) == record
    assert record["cores"] == 2 and sorted(record["ran"]) == sorted(_plan().order)
    assert set(record["stage_seconds"]) == set(record["ran"]) and record["wall_seconds"] > 2
    assert "up to date" in run([str(BIN / "dvc"), "status"], toy).stdout
    start = {m: float((toy / f"t_{m}.start").read_text()) for m in "ab"}
    end = {m: float((toy / f"t_{m}.end").read_text()) for m in "ab"}
    assert max(start.values()) < min(end.values()), "the two trainings did not run at the same time"

    # nothing changed: every stage is found up to date, nothing re-runs, the times are kept
    before = {m: (toy / f"t_{m}.start").stat().st_mtime for m in "ab"}
    again = repro.run(_plan())
    assert {m: (toy / f"t_{m}.start").stat().st_mtime for m in "ab"} == before
    assert again["ran"] == [] and again["stage_seconds"] == record["stage_seconds"]


def test_it_runs_with_the_environment_not_activated(in_toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``.venv/bin/face2anime repro`` without ``source .venv/bin/activate``: dvc is found beside
    the interpreter (it ended in FileNotFoundError: 'dvc')."""
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    record = repro.run(_plan())
    assert sorted(record["ran"]) == sorted(_plan().order)


def test_a_failing_training_stops_only_what_depends_on_it(in_toy: Path) -> None:
    toy = in_toy
    (toy / "fail_b").write_text("")
    with pytest.raises(UserError, match=r"^repro: train_cyclegan@b failed \(see its log above\); "
                                        r"not run: (evaluate@b, compare|compare, evaluate@b)$"):
        repro.run(_plan())
    assert (toy / "e_a.txt").is_file() and (toy / "side.txt").is_file()   # independent work finished
    assert not (toy / "c.txt").exists() and not (toy / "e_b.txt").exists()


def test_weights_are_the_threads_each_stage_pins(tmp_path: Path) -> None:
    from conftest import tiny_params

    path = tmp_path / "params.yaml"

    def weights(**over: object) -> dict[str, int]:
        path.write_text(yaml.safe_dump(tiny_params({"device": "cpu", **over})))
        return repro.weights(["train_cyclegan@baseline", "train_cyclegan@proposed", "evaluate@baseline"], path, 2)

    assert weights(**{"threads": 2, "cyclegan.train.threads": 1}) == {
        "train_cyclegan@baseline": 1, "train_cyclegan@proposed": 1, "evaluate@baseline": 2}
    assert weights(**{"threads": 1, "cyclegan.train.threads": 2, "cyclegan.train.nproc": 2})[
        "train_cyclegan@baseline"] == 4


def test_a_profile_runs_as_one_saved_experiment(in_toy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """face2anime profile = dvc exp run -n NAME -S ...: the overrides land in params.yaml
    (comments kept), the pipeline runs, and the workspace is saved as experiment NAME."""
    from face2anime.apps import profile

    toy = in_toy
    monkeypatch.setattr(profile, "plan_for", lambda params_file, jobs: _plan())
    (toy / "params.yaml").write_text("# kept\nresize:\n  size: 48   # px\n  crop: align\n")
    run(["git", "add", "-A"], toy)
    run(["git", "commit", "-qm", "params"], toy)
    profile.run_profile(["dvc", "exp", "run", "-n", "mine", "-S", "resize.size=64", "-S", "resize.crop='face'"],
                        toy / "params.yaml", jobs=2)
    text = (toy / "params.yaml").read_text()
    assert yaml.safe_load(text) == {"resize": {"size": 64, "crop": "face"}} and "# kept" in text
    assert (toy / "c.txt").is_file()
    shown = run([str(BIN / "dvc"), "exp", "show", "--json"], toy).stdout
    assert '"mine"' in shown
