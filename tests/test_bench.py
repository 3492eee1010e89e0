"""``face2anime bench`` on tiny sizes: every row and number is there, in the table and the JSON."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.console import Console

from cfgutil import train_section
from face2anime.apps import bench
from cfgutil import typed_params


def test_bench_rows_and_json(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "PAPER", {"size": 32, "ngf": 4, "ndf": 4, "n_res": 1, "batch_size": 1})
    p = typed_params({"seed": 0, "device": "cpu", "precision": "fp32", "threads": 1, "resize.size": 32,
                      "select.max_images": 4, "select.share": 1.0,
                      "cyclegan.methods": {"baseline": {"model": "cyclegan", "subset": "random", "attention": False}},
                      "cyclegan.train": train_section(ngf=4, ndf=4, n_res=1, batch_size=2, epochs=1, steps_per_epoch=1,
                                                      lr_decay_epochs=0)})
    threads = torch.get_num_threads()
    try:
        out = bench.run_bench(p, ["quick", "paper"], ["plain", "attention"], {"quick": 1, "paper": 1}, 1,
                              Console(file=open(tmp_path / "log.txt", "w")), fast=False)
    finally:
        torch.set_num_threads(threads)
    assert out["peak_gflop_per_s"]["fp32"] > 0
    rows = out["rows"]
    assert {(r["profile"], r["method"], r["path"]) for r in rows} == {
        (pr, m, path) for pr in ("quick", "paper") for m in ("plain", "attention") for path in ("eager fp32", "pipeline")}
    for r in rows:
        assert r["ms_per_step"] > 0 and r["images_per_s"] > 0 and r["gflop_per_step"] > 0 and r["pct_fp32_peak"] > 0
        if r["path"] == "eager fp32":
            assert r["x_eager_fp32"] == 1.0
    json.dumps(out)
    ms = {r["method"]: r["ms_per_step"] for r in rows if r["profile"] == "paper" and r["path"] == "pipeline"}
    est = out["paper_estimate"]
    assert abs(est["baseline_h"] - ms["plain"] * 50000 / 3.6e6) < 0.01 + 1e-9 * ms["plain"]
    assert abs(est["total_h"] - est["baseline_h"] - est["proposed_h"]) < 0.011
    console = Console(file=open(tmp_path / "table.txt", "w"), width=140)
    bench.print_table(out, console)
    console.file.close()
    assert "eager fp32" in (tmp_path / "table.txt").read_text()


def test_the_threads_option_reaches_the_benchmark(tmp_path: Path, monkeypatch) -> None:
    """``face2anime bench --threads 2`` runs the benchmark at 2 threads, whatever
    ``cyclegan.train.threads`` says (it used to end in a traceback)."""
    from typer.testing import CliRunner

    from stages.cli import build_app

    seen = {}

    def fake_run_bench(p, which, methods, steps, rounds, console, fast=True, threads=None):
        seen["threads"] = threads
        return {"paper_estimate": None}

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    monkeypatch.setattr(bench, "print_table", lambda result, console: None)
    res = CliRunner().invoke(build_app(["bench"]), ["bench", "--threads", "2", "--no-synthetic",
                                                    "--params", str(Path(__file__).parents[1] / "params.yaml")])
    assert res.exit_code == 0, res.output
    assert seen["threads"] == 2


def test_side_by_side_sums_the_processes(tmp_path: Path) -> None:
    """``bench --side-by-side 2``: two spawned processes at one thread each time the pipeline
    and the eager step together; the rows give their summed images/s beside the eager step in
    one process at 2 threads, and each ratio is that row's images/s over its reference row's."""
    import yaml

    from conftest import tiny_params

    over = {"seed": 0, "device": "cpu", "precision": "fp32", "threads": 1, "resize.size": 32,
            "select.max_images": 4, "select.share": 1.0,
            "cyclegan.methods": {"baseline": {"model": "cyclegan", "subset": "random", "attention": False}},
            "cyclegan.train": train_section(ngf=4, ndf=4, n_res=1, batch_size=2, epochs=1, steps_per_epoch=1,
                                            lr_decay_epochs=0)}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params(over), sort_keys=False))
    threads = torch.get_num_threads()
    try:
        rows = bench.side_by_side(path, typed_params(over), ["plain"], 2, 2, 1,
                                  Console(file=open(tmp_path / "log.txt", "w")))
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(threads)
    assert after == threads   # the parent's thread count is left as it was
    by = {r["layout"]: r for r in rows}
    assert set(by) == {"eager fp32, 1 process at 2 threads", "eager fp32, 2 side by side at 1 thread",
                       "pipeline, 2 side by side at 1 thread"}
    machine, side = by["eager fp32, 1 process at 2 threads"], by["eager fp32, 2 side by side at 1 thread"]
    assert machine["x_eager_fp32_machine"] == 1.0 and side["x_eager_fp32_side_by_side"] == 1.0
    for r in rows:
        assert r["images_per_s"] > 0 and r["processes"] == 2
        assert abs(r["x_eager_fp32_machine"] - r["images_per_s"] / machine["images_per_s"]) < 0.01
        assert abs(r["x_eager_fp32_side_by_side"] - r["images_per_s"] / side["images_per_s"]) < 0.01
    console = Console(file=open(tmp_path / "table.txt", "w"), width=140)
    bench.print_side_table(rows, console)
    console.file.close()
    assert "side by side" in (tmp_path / "table.txt").read_text()


def test_side_by_side_reports_a_failed_process_instead_of_waiting(tmp_path: Path) -> None:
    """A process that fails (here: its params file is gone) is a one-line error naming the
    cause, not a hang."""
    import pytest

    from face2anime.core.params import UserError

    with pytest.raises(UserError, match="a benchmark process failed: .*missing.yaml"):
        bench.side_by_side(tmp_path / "missing.yaml", typed_params({"resize.size": 32}), ["plain"], 2, 1, 1,
                           Console(file=open(tmp_path / "log.txt", "w")))
