"""``face2anime record``: a finished run's measurements kept as one JSON, rendered into
docs/real-data.md by ``face2anime report``. The run here is hand-made, so every expected cell
is known in advance."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from face2anime.apps import record, report
from face2anime.core.params import UserError

MACHINE = {"cpu": "Test CPU", "cpu_flags": ["avx2"], "cores": 2, "torch": "2.x"}


def _eval(method: str, kid: float, char_valid: bool) -> dict:
    ref = {"char_rate": 0.3, "junk_rate": 0.7, "edge_ssim": 0.05, "kid_judge": {"mean": 0.9}, "cycle_l1": 0.5,
           "realism": {"mean": 0.2, "inside_rate": 0.0}}
    return {"method": method, "n_test": 16, "char_rate": 0.75, "junk_rate": 0.125, "edge_ssim": 0.4,
            "kid_judge": {"mean": kid}, "cycle_l1": {"human": 0.2, "character": 0.21},
            "realism": {"mean": 0.6, "inside_rate": 0.25}, "machine": MACHINE,
            "training": {"collapsed": False},
            "valid": {"char_rate": {"ok": char_valid}, "kid_judge": {"ok": True}, "edge_ssim": {"ok": True},
                      "cycle_l1": {"ok": True}, "realism": {"ok": True}},
            "references": {"shuffled_chars": ref, "real_chars": {**ref, "kid_judge": {"mean": 0.06}}, "source": ref}}


def _run(root: Path) -> Path:
    m = root / "metrics"
    files = {
        "eval/baseline.json": _eval("baseline", 0.5, False), "eval/proposed.json": _eval("proposed", 0.25, False),
        "cyclegan/baseline/metrics.json": {"steps": 2500, "val_best_step": 2250, "d_acc_tail": 0.7},
        "cyclegan/proposed/metrics.json": {"steps": 2500, "val_best_step": 2500, "d_acc_tail": 0.8},
        "stages/train_cyclegan@baseline.json": {"wall_seconds": 600.0, "images_per_s": 8.0},
        "stages/train_cyclegan@proposed.json": {"wall_seconds": 610.0, "images_per_s": 7.9},
        "stages/resize.json": {"wall_seconds": 10.0}, "stages/compare.json": {"wall_seconds": 20.0},
        "repro.json": {"wall_seconds": 700.0, "ran": ["resize", "compare"], "cores": 2},
        "download.json": {"images": {"human": 30, "character": 40}},
        "resize.json": {"written": {"human": {"train": 24, "test": 6}, "character": {"train": 34, "test": 6}},
                        "skipped": {}, "skipped_examples": [{"file": "secret_name.jpg"}],
                        "faces": {"detector": "dlib", "landmarks": 5, "photos": 30, "faces_found": 31}},
        "select.json": {"selected": 18, "candidates": 24}, "cam.json": {"part_focus_mean": 0.1},
        "compare.json": {
            "edge_ssim": {"baseline": 0.4, "proposed": 0.4, "delta": 0.01, "ci_low": -0.02, "ci_high": 0.04,
                          "p": 0.5, "mde80": 0.04, "valid": True, "verdict": "no detectable difference"},
            "char_rate": {"delta": 0.0, "ci_low": -0.1, "ci_high": 0.1, "p": 1.0, "valid": False,
                          "verdict": "not judged: invalid metric"}},
    }
    for name, obj in files.items():
        (m / name).parent.mkdir(parents=True, exist_ok=True)
        (m / name).write_text(json.dumps(obj))
    (root / "params.yaml").write_text(yaml.safe_dump({
        "resize": {"size": 64, "crop": "align"}, "select": {"share": 0.75},
        "compare": {"reference": "baseline", "candidate": "proposed"},
        "cyclegan": {"methods": {"baseline": {"model": "cyclegan"}, "proposed": {"model": "cyclegan"}},
                     "train": {"ngf": 32, "ndf": 32, "batch_size": 2, "diffaug": "color", "snapshot": "best"}}}))
    return root


def _before_after() -> dict:
    """The shape `face2anime seeds --before A --after B` writes (metrics/OUT.json), cut to one metric."""
    row = {"before": 0.47, "after": 0.22, "reference": 0.47, "candidate": 0.22, "delta": -0.25,
           "ci_low": -0.49, "ci_high": -0.05, "se": 0.1, "p": 0.021, "mde80": 0.31, "n": 16, "n_seeds": 1,
           "valid": True, "reasons": [], "verdict": "after better"}
    return {"kind": "before_after", "seed_pairs": 1, "methods": {"baseline": {"kid_judge.mean": row}}}


def _row(block: str, label: str) -> list[str]:
    line = next(x for x in block.splitlines() if x.startswith(f"| {label} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_the_rendered_tables_hold_the_run_s_numbers(tmp_path: Path) -> None:
    block = record.render(record.summarize(_run(tmp_path / "run")), "docs/measured/x.json")
    begin, end = record.markers("x")
    assert block.startswith(begin) and block.rstrip().endswith(end)
    # metric, baseline, proposed, validity, shuffled / real anime crops / untranslated photos
    assert _row(block, "`kid_judge` (lower is better)") == ["`kid_judge` (lower is better)", "0.500", "0.250",
                                                           "yes/yes", "0.900", "0.060", "0.900"]
    assert _row(block, "`char_rate`")[3] == "**no**/**no**"
    assert _row(block, "`cycle_l1` (human) (lower is better)")[4] == "0.500"   # a floor's one cycle_l1 number
    assert _row(block, "`train_cyclegan@baseline`")[1] == "600 s"
    assert _row(block, "all other stages, one after another")[1] == "30 s"    # resize 10 + compare 20
    assert "| 700 s (12 min) |" in block
    assert _row(block, "baseline")[2:4] == ["2500", "2250"]                  # steps, best validation step
    assert block.index("| baseline |") < block.index("| proposed |")
    assert "**proposed vs baseline**" in block
    verdicts = block.split("**proposed vs baseline**")[1]
    assert _row(verdicts, "`edge_ssim`")[1:3] == ["+0.0100", "[-0.0200, +0.0400]"]
    assert "`char_rate` |" not in verdicts                                  # invalid rows are not judged
    assert "Test CPU" in block and "31 faces found in 30 photos" in block


def test_flat_share_has_a_row_only_where_the_run_measured_it(tmp_path: Path) -> None:
    """A run whose evaluation wrote ``flat_share`` gets its row (no validity: a diagnostic); an
    older run without it gets no row of "n/a"s."""
    label = record.METRICS[-1][1]
    assert record.METRICS[-1][0] == "flat_share"
    old = record.render(record.summarize(_run(tmp_path / "old")), "x.json")
    assert "`flat_share`" not in old
    run = _run(tmp_path / "new")
    for name, value in (("baseline", 0.125), ("proposed", 0.25)):
        path = run / "metrics" / "eval" / f"{name}.json"
        ev = json.loads(path.read_text())
        ev["flat_share"] = value
        ev["references"]["real_chars"]["flat_share"] = 0.3
        path.write_text(json.dumps(ev))
    row = _row(record.render(record.summarize(run), "x.json"), label)
    assert row[1:5] == ["0.125", "0.250", "-", "n/a"] and row[5] == "0.300"


def test_the_record_keeps_no_file_names(tmp_path: Path) -> None:
    rec = record.summarize(_run(tmp_path / "run"))
    assert "secret_name" not in json.dumps(rec)


def test_report_puts_the_record_into_the_page_and_keeps_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from stages.cli import build_app

    project = tmp_path / "project"
    (project / "docs").mkdir(parents=True)
    (project / "README.md").write_text(f"# x\n{report.BEGIN}\n{report.END}\n")
    page = project / "docs" / "real-data.md"
    begin, end = record.markers("real-dev-cpu")
    page.write_text(f"intro\n\n{begin}\nold\n{end}\n\noutro\n")
    monkeypatch.chdir(project)
    res = CliRunner().invoke(build_app(["record"]), ["record", str(_run(tmp_path / "run")), "--name", "real-dev-cpu"])
    assert res.exit_code == 0, res.output
    assert report.write(project)[-1] == page
    text = page.read_text()
    assert text.startswith("intro\n\n" + begin) and text.endswith(end + "\n\noutro\n")
    assert "old" not in text and "| 0.500 | 0.250 |" in text
    assert page not in report.write(project)                                # unchanged record: page untouched


def test_a_run_without_results_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "params.yaml").write_text("{}\n")
    with pytest.raises(UserError, match="has no metrics/eval: run its pipeline to the end first"):
        record.summarize(tmp_path)
    run = _run(tmp_path / "run")
    with pytest.raises(UserError, match="not found"):
        record.summarize(run, [run / "missing.json"])


def test_the_committed_pages_show_every_committed_record() -> None:
    from conftest import ROOT

    texts = [(ROOT / rel).read_text() for rel in report.RECORD_PAGES]
    records = sorted((ROOT / record.MEASURED_DIR).glob("*.json"))
    assert ROOT / record.MEASURED_DIR / report.REAL_RECORD in records
    for rec in records:
        block = record.render(json.loads(rec.read_text()), str(record.MEASURED_DIR / rec.name))
        assert sum(block.rstrip("\n") in text for text in texts) == 1, \
            f"no page (or more than one) shows {record.MEASURED_DIR / rec.name} as recorded: run: face2anime report"


def test_report_writes_each_record_into_the_page_that_holds_its_block(tmp_path: Path) -> None:
    (tmp_path / "docs" / "measured").mkdir(parents=True)
    (tmp_path / "docs" / "measured" / "a-vs-b.json").write_text(json.dumps(_before_after()))
    begin, end = record.markers("a-vs-b")
    (tmp_path / "docs" / "real-data.md").write_text("# real\n")
    (tmp_path / "docs" / "performance.md").write_text(f"# perf\n{begin}\nold\n{end}\ntail\n")
    (tmp_path / "README.md").write_text(f"# x\n{report.BEGIN}\n{report.END}\n")
    assert tmp_path / "docs" / "performance.md" in report.write(tmp_path)
    perf = (tmp_path / "docs" / "performance.md").read_text()
    assert "old" not in perf and perf.endswith("tail\n") and "after better" in perf
    assert (tmp_path / "docs" / "real-data.md").read_text() == "# real\n"


def test_a_run_without_repro_json_is_recorded_without_the_pipeline_time(tmp_path: Path, capsys) -> None:
    run = _run(tmp_path / "run")
    (run / "metrics" / "repro.json").unlink()
    rec = record.summarize(run)
    assert rec["repro"] == [] and "whole-pipeline time is left out" in capsys.readouterr().out
    block = record.render(rec, "docs/measured/x.json")
    assert "whole `face2anime repro`" not in block and _row(block, "`train_cyclegan@baseline`")[1] == "600 s"
    with pytest.raises(UserError, match="not found"):     # a file named on the command line must exist
        record.summarize(run, [run / "metrics" / "repro.json"])


def test_a_before_after_comparison_renders_its_paired_table() -> None:
    block = record.render(_before_after(), "docs/measured/a-vs-b.json")
    begin, end = record.markers("a-vs-b")
    assert block.startswith(begin) and block.rstrip().endswith(end)
    assert "`baseline`, after against before (1 seed pair(s)" in block
    line = next(x for x in block.splitlines() if x.startswith("| kid_judge.mean"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:4] == ["0.4700", "0.2200", "-0.2500"]
    assert "-0.49" in cells[4] and "-0.05" in cells[4] and cells[-1] == "after better"
