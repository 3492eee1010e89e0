"""End to end: the real `dvc repro` of the whole pipeline on tiny params in a temporary git repo,
then the re-run scope of `dvc exp run -S select.threshold=...`."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import BIN, run
from goldenutil import check_golden
from test_dvc_deps import check_file_trace, check_param_trace

from face2anime.core.params import TRACE_ENV, flat_items

DVC = str(BIN / "dvc")


#: key metrics of the tiny run: file -> keys (``/`` steps into a mapping)
GOLDEN_KEYS = {
    "metrics/classifier.json": ["test_accuracy"],
    "metrics/select.json": ["selected"],
    "metrics/eval/baseline.json": ["char_rate", "edge_ssim", "cycle_l1/human", "kid_judge/mean"],
    "metrics/eval/proposed.json": ["char_rate", "edge_ssim", "cycle_l1/human", "kid_judge/mean"],
    "metrics/compare.json": ["edge_ssim/delta", "cycle_l1.human/delta"],
}


def stages_run(out: str) -> set[str]:
    """Stage names that `dvc repro`/`dvc exp run` actually executed (not skipped)."""
    return {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage '")}


def stale_stages(project: Path) -> set[str]:
    """Stages whose own deps changed (`dvc status`), by name."""
    out = run([DVC, "status", "--json"], project).stdout
    return {name.split(":")[-1] for name in json.loads(out or "{}")}


@pytest.mark.e2e
def test_dvc_repro_end_to_end_then_select_threshold_scope(project: Path, tmp_path: Path) -> None:
    # a third method, the variant whose discriminator takes each image's own CAM (d_cam: self):
    # its training reads the guiding classifier, so the traces check that path's deps too
    params = yaml.safe_load((project / "params.yaml").read_text())
    methods = params["cyclegan"]["methods"]
    methods["dcam_self"] = {**methods["proposed"], "train": {"d_cam": "self"},
                            "inputs": {**methods["proposed"]["inputs"],
                                       "classifier_config": "models/classifier/classifier.json"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "the d_cam: self variant"], project)
    trace = tmp_path / "param-trace.jsonl"
    res = run([DVC, "repro"], project, env={TRACE_ENV: str(trace)})
    ran = stages_run(res.stdout)
    assert {"download", "resize", "train_classifier", "cam", "select", "train_attributes",
            "train_cyclegan@baseline", "train_cyclegan@proposed", "train_cyclegan@dcam_self", "translate@baseline",
            "translate@proposed", "evaluate@baseline", "evaluate@proposed", "compare"} <= ran, res.stdout

    for f in ["data/raw/manifest.csv", "data/resized/manifest.csv", "metrics/resize.json",
              "reports/contact_sheet.png", "models/classifier/classifier.pt", "models/classifier/judge.pt",
              "data/cam/human.npz", "data/cam/scores.csv", "reports/cam_overlay.png",
              "data/select/selected.csv", "models/cyclegan/proposed/G_XY.pt", "reports/compare.png",
              "reports/compare.md", "reports/translate_proposed.png"]:
        assert (project / f).is_file(), f
    comp = json.loads((project / "metrics/compare.json").read_text())
    assert {"baseline", "proposed", "reference", "candidate", "delta", "ci_low", "ci_high", "p", "verdict",
            "mde80", "valid"} <= set(comp["char_rate"])
    assert comp["char_rate"]["ci_low"] <= comp["char_rate"]["delta"] <= comp["char_rate"]["ci_high"]
    ev = json.loads((project / "metrics/eval/proposed.json").read_text())
    assert 0.0 <= ev["char_rate"] <= 1.0 and ev["n_test"] == 6
    assert ev["attr_preservation"]["chance"] > 0
    # floors, validity, realism and the ceiling, measured with the real (tiny) judge
    from face2anime.evaluation.references import REFERENCE_NAMES

    assert set(ev["references"]) == set(REFERENCE_NAMES)
    assert all(0.0 <= r["char_rate"] <= 1.0 and "junk_rate" in r for r in ev["references"].values())
    assert {"char_rate", "realism", "kid_judge", "attr_preservation", "edge_ssim", "cam_overlap", "cycle_l1"} <= set(ev["valid"])
    assert all(isinstance(v["ok"], bool) and isinstance(v["reasons"], list) for v in ev["valid"].values())
    assert ev["ceiling"]["n"] == 6 and set(ev["of_ceiling"]) >= {"char_rate", "edge_ssim"}
    assert 0.0 <= ev["realism"]["inside_rate"] <= 1.0 and "junk_rate" in ev
    table = pd.read_csv(project / "metrics/eval/proposed_images.csv")
    assert len(table) == 6 and {"id", "verdict", "p_character", "p_junk", "is_character", "attr_mean", "edge_ssim",
                                "cam_overlap", "cycle_l1", "realism", "clean", "hard_kind"} <= set(table.columns)
    assert (project / "data/eval/proposed.npz").is_file()
    assert "test_accuracy_junk" in json.loads((project / "metrics/judge.json").read_text())
    sel = json.loads((project / "metrics/select.json").read_text())
    assert sel["selected"] == 16 and sel["base_rate"] is not None

    # every param key each stage read during this run is declared for that stage in dvc.yaml,
    # and every file it opened is a declared dep (or its own out), and every data dep is read
    assert check_param_trace(trace, project) == {}
    assert check_file_trace(trace, project) == {}
    check_golden(project, "e2e_metrics.json", GOLDEN_KEYS)

    # every stage recorded its wall time, CPU time and peak memory (and images/s where it counts images)
    for name in ran:
        t = json.loads((project / "metrics" / "stages" / f"{name}.json").read_text())
        assert t["stage"] == name and t["wall_seconds"] > 0 and t["peak_rss_mb"] > 50, t
    assert json.loads((project / "metrics/stages/translate@proposed.json").read_text())["images"] == 6
    t = json.loads((project / "metrics/stages/train_cyclegan@proposed.json").read_text())
    assert t["train_seconds"] > 0 and t["images_per_s"] > 0 and "judge_train_seconds" in json.loads(
        (project / "metrics/stages/train_classifier.json").read_text())
    # ... and only there: no DVC metric is a timing (they change from run to run, so `dvc metrics
    # diff` after a re-run on the same machine shows nothing)
    shown = json.loads(run([DVC, "metrics", "show", "--json"], project).stdout)
    keys = [k for ws in shown.values() for f in ws["data"].values() for k in flat_items(f.get("data") or {})]
    assert len(keys) > 100 and not [k for k in keys if "seconds" in k or "per_s" in k or "rss" in k], keys

    # every stage recorded what `precision: auto` resolved to on this machine
    for f in ("classifier.json", "judge.json", "attributes.json", "cyclegan/proposed/metrics.json"):
        m = json.loads((project / "metrics" / f).read_text())
        assert m["precision"] in ("fp32", "bf16") and m["device"] in ("cpu", "cuda"), f

    # everything is cached: a second repro runs nothing
    again = run([DVC, "repro"], project)
    assert stages_run(again.stdout) == set(), again.stdout

    # editing a library function only evaluate uses makes exactly evaluate@* stale; changing
    # `precision` makes every stage that trains with it stale (DVC sees what the code reads)
    assert stale_stages(project) == set()
    lib = project / "face2anime/evaluation/evaluate.py"
    code = lib.read_text()
    assert "def attr_preservation(" in code
    lib.write_text(code.replace("def attr_preservation(", "def attr_preservation(  # edited\n", 1))
    assert stale_stages(project) == {"evaluate@baseline", "evaluate@proposed", "evaluate@dcam_self"}
    lib.write_text(code)
    params = (project / "params.yaml").read_text()
    (project / "params.yaml").write_text(params.replace("precision: auto", "precision: fp32", 1))
    assert stale_stages(project) == {"train_classifier", "train_attributes", "train_cyclegan@baseline",
                                     "train_cyclegan@proposed", "train_cyclegan@dcam_self"}
    (project / "params.yaml").write_text(params)

    # commit the results and share them through a DVC remote (a local folder here; S3/SSH the
    # same way): a fresh clone pulls models and metrics, and `dvc repro` then runs nothing
    run([DVC, "remote", "add", "-d", "shared", str(tmp_path / "remote")], project)
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "results"], project)
    run([DVC, "push"], project)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "models/cyclegan/proposed/G_XY.pt").exists()
    run([DVC, "pull"], clone)
    assert (clone / "models/cyclegan/proposed/G_XY.pt").read_bytes() == \
        (project / "models/cyclegan/proposed/G_XY.pt").read_bytes()
    assert stages_run(run([DVC, "repro"], clone).stdout) == set()

    # the seed and threshold experiments below run without the d_cam: self variant: its deps
    # and scope are checked above, and each experiment would re-train, translate and evaluate it
    # too (a quarter of this test's time)
    params = yaml.safe_load((project / "params.yaml").read_text())
    del params["cyclegan"]["methods"]["dcam_self"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "without the d_cam: self variant"], project)

    # seeds and variants through DVC's queue: each runs in a temporary copy, so the workspace
    # keeps its params, its files and its branch (no detached HEAD, even if a run dies)
    head = run(["git", "rev-parse", "--abbrev-ref", "HEAD"], project).stdout.strip()
    # (one queued run keeps the suite short; test_compare_seeds covers which runs the aggregator takes)
    # (up to the evaluations, which are what `face2anime seeds` reads: compare and the survey
    # would only repeat what the threshold experiment below runs)
    run([DVC, "exp", "run", "--queue", "-n", "seed-1", "-S", "cyclegan.train.seed=1",
         "evaluate@baseline", "evaluate@proposed"], project)
    run([DVC, "exp", "run", "--run-all"], project)
    assert run(["git", "rev-parse", "--abbrev-ref", "HEAD"], project).stdout.strip() == head != "HEAD"
    assert run(["git", "status", "--porcelain", "--untracked-files=no"], project).stdout == ""
    # a named experiment compares with plain `dvc metrics diff`, every metric
    diff = json.loads(run([DVC, "metrics", "diff", "HEAD", "seed-1", "--all", "--json"], project).stdout)
    assert "char_rate" in diff["metrics/eval/proposed.json"] and "kid_judge.mean" in diff["metrics/eval/baseline.json"]
    # the seed aggregator: workspace (seed 0) + seed-1, paired over seeds and images
    run([str(BIN / "face2anime"), "seeds"], project)
    seeds = json.loads((project / "metrics/seeds.json").read_text())
    assert seeds["runs"] == ["workspace", "seed-1 (seed 1)"]
    assert seeds["metrics"]["char_rate"]["n_seeds"] == 2 and seeds["metrics"]["char_rate"]["ci_low"] is not None
    (project / "metrics/seeds.json").unlink()
    (project / "reports/seeds.md").unlink()

    # an experiment on the selection threshold re-runs select and its dependants only:
    # never download/resize/classifier/cam, nor the baseline's training
    # a threshold that keeps at most the 8 best-scored humans (ties included), so the selection
    # really changes
    scores = pd.read_csv(project / "data/cam/scores.csv")["part_focus"]
    keeps = [v for v in scores.unique() if 2 <= (scores >= v).sum() <= 8]
    assert keeps, scores.value_counts().head()
    threshold = float(min(keeps))
    exp = run([DVC, "exp", "run", "-S", f"select.threshold={threshold!r}"], project)
    assert json.loads((project / "metrics/select.json").read_text())["selected"] <= 8
    ran = stages_run(exp.stdout)
    assert "select" in ran and "train_cyclegan@proposed" in ran, exp.stdout
    assert not ran & {"download", "resize", "train_classifier", "cam", "train_attributes",
                      "train_cyclegan@baseline", "translate@baseline", "evaluate@baseline"}, exp.stdout


@pytest.mark.e2e
def test_bad_param_is_one_line_error(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["select"]["threshold"] = "high"
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    res = run([str(BIN / "face2anime"), "select"], project, check=False)
    assert res.returncode == 2
    assert "select.threshold" in res.stderr and "Traceback" not in res.stderr
