"""compare's paired table and the seeds summary on hand-made metrics and per-image tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from face2anime.apps.seeds import same_but_seed
from face2anime.evaluation.compare import flatten, markdown, paired_comparison


def test_flatten_keeps_numeric_leaves() -> None:
    d = {"a": 1, "b": {"c": 0.5, "d": None, "e": "x", "f": {"g": 2}}, "h": True}
    assert flatten(d) == {"a": 1.0, "b.c": 0.5, "b.f.g": 2.0}


def _run(values: dict[str, dict[str, list[float]]], valid: dict[str, bool] | None = None, shuffle: bool = False) -> dict:
    """A run from per-image values ``{method: {column: [per image]}}`` (ids i0, i1, ...)."""
    evals, tables = {}, {}
    for m, cols in values.items():
        n = len(next(iter(cols.values())))
        t = pd.DataFrame({"id": [f"i{k}" for k in range(n)], "clean": [k % 2 == 0 for k in range(n)],
                          "hard_kind": ["" if k % 2 == 0 else "clutter" for k in range(n)], **cols})
        if shuffle and m == "proposed":
            t = t.iloc[::-1].reset_index(drop=True)       # rows in another order: pairing is by id
        tables[m] = t
        ic = np.array(cols["is_character"])
        evals[m] = {"n_test": n, "char_rate": float(ic.mean()),
                    "char_rate_by_kind": {"clean": {"char_rate": float(ic[::2].mean()), "n": len(ic[::2])},
                                          "hard": {"char_rate": float(ic[1::2].mean()), "n": len(ic[1::2])}},
                    "edge_ssim": float(np.mean(cols["edge_ssim"])),
                    "valid": {k: {"ok": ok, "reasons": [] if ok else [f"{k} fooled"]} for k, ok in (valid or {}).items()}}
    return {"evals": evals, "tables": tables, "features": {}}


def test_paired_comparison_verdicts() -> None:
    n = 40
    base = {"is_character": [k % 2 for k in range(n)], "edge_ssim": [0.5] * n}
    prop = {"is_character": [1] * n, "edge_ssim": [0.5 + 0.001 * ((-1) ** k) for k in range(n)]}
    t = paired_comparison([_run({"baseline": base, "proposed": prop}, shuffle=True)], "baseline", "proposed",
                          n_boot=2000, n_perm=2000)
    cr = t["char_rate"]
    assert cr["baseline"] == 0.5 and cr["proposed"] == 1.0 and cr["delta"] == pytest.approx(0.5)
    assert cr["ci_low"] > 0.3 and cr["p"] < 0.001 and cr["verdict"] == "proposed better" and cr["n"] == n
    assert t["edge_ssim"]["verdict"] == "no detectable difference"
    assert t["edge_ssim"]["ci_low"] < 0 < t["edge_ssim"]["ci_high"]
    # subgroups come from the same rows: clean (even ids) were characters for both methods
    assert t["char_rate_by_kind.clean.char_rate"]["delta"] == 1.0 and t["char_rate_by_kind.clean.char_rate"]["n"] == n // 2
    assert t["char_rate_by_kind.hard.char_rate"]["delta"] == 0.0
    # the same data with char_rate flagged invalid by evaluate: no winner named
    t = paired_comparison([_run({"baseline": base, "proposed": prop}, valid={"char_rate": False})],
                          "baseline", "proposed", n_boot=500, n_perm=500)
    assert t["char_rate"]["verdict"] == "not judged: invalid metric" and t["char_rate"]["valid"] is False
    assert t["char_rate"]["reasons"] == ["char_rate fooled"]
    # the same data from a run whose proposed training was flagged as collapsed: no winner named
    run = _run({"baseline": base, "proposed": prop})
    run["evals"]["proposed"]["training"] = {"collapsed": True, "collapse_reasons": ["D wins"]}
    c = paired_comparison([run], "baseline", "proposed", n_boot=500, n_perm=500)
    assert c["char_rate"]["verdict"] == "not judged: training collapsed (proposed)"
    assert c["edge_ssim"]["verdict"] == "no detectable difference" and "training.collapsed" not in c
    md = markdown(t, ["baseline", "proposed"], "baseline", "proposed")
    assert "| char_rate | 0.5000 | 1.0000 | +0.5000 |" in md and "not judged: invalid metric" in md
    assert "`char_rate`: char_rate fooled" in md


def test_several_seeds_widen_the_interval() -> None:
    rng = np.random.default_rng(0)
    n = 60
    b = rng.normal(0.5, 0.1, n)
    runs = []
    for shift in (0.05, -0.03, 0.04):   # the seeds disagree about the effect
        runs.append(_run({"baseline": {"is_character": [1] * n, "edge_ssim": list(b)},
                          "proposed": {"is_character": [1] * n, "edge_ssim": list(b + shift + rng.normal(0, 0.01, n))}}))
    one = paired_comparison(runs[:1], "baseline", "proposed", 2000, 500)["edge_ssim"]
    three = paired_comparison(runs, "baseline", "proposed", 2000, 500)["edge_ssim"]
    assert one["verdict"] == "proposed better" and one["n_seeds"] == 1
    assert three["n_seeds"] == 3 and three["ci_high"] - three["ci_low"] > 5 * (one["ci_high"] - one["ci_low"])
    assert three["delta"] == pytest.approx(np.mean([0.05, -0.03, 0.04]), abs=0.005)


def test_seed_experiments_are_those_that_differ_only_in_the_seed() -> None:
    """The aggregator pools runs that differ only in cyclegan.train.seed, never a variant."""
    base = {"seed": 0, "cyclegan.train.seed": 0, "cyclegan.train.d_cam": "source"}
    assert same_but_seed({**base, "cyclegan.train.seed": 3}, base)
    assert not same_but_seed({**base, "cyclegan.train.d_cam": "self"}, base)
    assert not same_but_seed({**base, "select.threshold": 0.1}, base)


def test_load_run_reads_the_workspace_or_any_file_source(tmp_path) -> None:
    import io
    import json

    from face2anime.core.params import UserError
    from face2anime.evaluation.compare import load_run

    (tmp_path / "metrics/eval").mkdir(parents=True)
    (tmp_path / "metrics/eval/baseline.json").write_text(json.dumps({"char_rate": 0.5}))
    (tmp_path / "metrics/eval/baseline_images.csv").write_text("id,is_character\n007,1\n008,0\n")
    run = load_run(["baseline"], tmp_path / "metrics", tmp_path / "data/eval")
    assert run["evals"]["baseline"]["char_rate"] == 0.5 and run["features"] == {}
    assert list(run["tables"]["baseline"]["id"]) == ["007", "008"]          # ids stay strings
    files = {"m/eval/baseline.json": b'{"char_rate": 0.25}'}                 # e.g. dvc.api.open(p, rev=...)

    def open_file(p: str):
        if p not in files:
            raise FileNotFoundError(p)
        return io.BytesIO(files[p])

    run = load_run(["baseline"], Path("m"), Path("d"), open_file)
    assert run["evals"]["baseline"]["char_rate"] == 0.25 and run["tables"] == {}
    with pytest.raises(UserError, match="evaluate@proposed"):
        load_run(["proposed"], Path("m"), Path("d"), open_file)


def test_kid_test_matches_mmd_and_detects_a_shift() -> None:
    """The paired KID test's statistic is the full-set unbiased MMD^2 difference; a candidate far from
    the real features is worse with a CI excluding 0, the same features give no difference."""
    import torch

    from face2anime.evaluation.compare import _kid_test
    from face2anime.evaluation.measures import mmd2_unbiased

    rng = np.random.default_rng(0)
    real = rng.normal(0, 1, (40, 8))
    near, far = rng.normal(0, 1, (30, 8)), rng.normal(0.8, 1, (30, 8))
    ids = np.array([f"i{k}" for k in range(30)])
    feats = {"baseline": {"ids": ids, "fake": near, "real": real},
             "proposed": {"ids": ids[::-1], "fake": far[::-1], "real": real}}   # other order: paired by id
    t = _kid_test([{"features": feats}], "baseline", "proposed", 300, 300, 0)
    want = (mmd2_unbiased(torch.from_numpy(far), torch.from_numpy(real))
            - mmd2_unbiased(torch.from_numpy(near), torch.from_numpy(real)))
    assert t["ci_low"] > 0 and t["p"] < 0.01 and t["n"] == 30
    assert t["ci_low"] < want < t["ci_high"]
    same = _kid_test([{"features": {"baseline": feats["baseline"], "proposed": feats["baseline"]}}],
                     "baseline", "proposed", 100, 100, 0)
    # zero up to rounding (the two blocks of one kernel matrix are summed in different orders)
    assert abs(same["ci_low"]) < 1e-12 and abs(same["ci_high"]) < 1e-12 and same["p"] == 1.0


def test_kid_test_over_seeds_equals_indexing_each_drawn_block() -> None:
    """Two seeds with different numbers of paired images: the batched KID test gives what drawing
    each replicate's seeds and images and indexing their kernel blocks one by one gives."""
    from face2anime.evaluation.compare import _kid_test
    from face2anime.evaluation.measures import polynomial_kernel
    import torch

    rng = np.random.default_rng(1)
    runs, blocks = [], []
    for n_img, shift in ((12, 0.3), (10, 0.5)):
        ids = np.array([f"i{k}" for k in range(n_img)])
        a, b, real = rng.normal(0, 1, (n_img, 6)), rng.normal(shift, 1, (n_img, 6)), rng.normal(0, 1, (15, 6))
        runs.append({"features": {"baseline": {"ids": ids, "fake": a, "real": real},
                                  "proposed": {"ids": ids, "fake": b, "real": real}}})
        k = lambda x, y: polynomial_kernel(torch.from_numpy(x), torch.from_numpy(y)).numpy()  # noqa: E731
        kyy = k(real, real)
        blocks.append((np.vstack([a, b]), real, k(np.vstack([a, b]), np.vstack([a, b])),
                       k(np.vstack([a, b]), real).mean(1), (kyy.sum() - np.trace(kyy)) / (15 * 14)))

    def mmd2(s: int, rows: np.ndarray) -> float:
        _, _, kaa, kar, syy = blocks[s]
        sub = kaa[np.ix_(rows, rows)]
        return (sub.sum() - np.trace(sub)) / (len(rows) * (len(rows) - 1)) + syy - 2 * kar[rows].mean()

    n, sizes = 10, (12, 10)
    draw = np.random.default_rng(0)
    reps = []
    for _ in range(200):
        seeds, imgs = draw.integers(0, 2, 2), draw.integers(0, n, n)
        reps.append(np.mean([mmd2(s, imgs + sizes[s]) - mmd2(s, imgs) for s in seeds]))
    lo, hi = np.quantile(reps, [0.025, 0.975])
    draw = np.random.default_rng(0)

    def swapped(w: np.ndarray) -> float:
        i = np.arange(n)
        return np.mean([mmd2(s, np.where(w, i, i + sizes[s])) - mmd2(s, np.where(w, i + sizes[s], i)) for s in (0, 1)])
    obs = abs(swapped(np.zeros(n, bool)))
    hits = sum(abs(swapped(draw.integers(0, 2, n).astype(bool))) >= obs - 1e-12 for _ in range(150))
    t = _kid_test(runs, "baseline", "proposed", 200, 150, 0)
    assert t["n"] == n and t["n_seeds"] == 2
    assert abs(t["ci_low"] - lo) < 1e-12 and abs(t["ci_high"] - hi) < 1e-12
    assert t["p"] == (1 + hits) / 151


def test_seeds_output_name_must_be_a_plain_file_name(tmp_path) -> None:
    import pytest

    from face2anime.apps.seeds import run_seeds
    from face2anime.core.params import UserError

    with pytest.raises(UserError, match="--out must be a plain file name"):
        run_seeds(tmp_path / "params.yaml", out_name="../x")


def test_more_junk_is_worse() -> None:
    """``junk_rate`` (translations the judge calls junk) is lower-is-better: a candidate that
    makes more junk loses (it was once read the other way round)."""
    n = 40
    base = {"is_character": [1] * n, "edge_ssim": [0.5] * n, "verdict": ["character"] * n}
    cand = {"is_character": [1] * n, "edge_ssim": [0.5] * n, "verdict": ["junk" if k % 2 else "character" for k in range(n)]}
    run = _run({"baseline": base, "proposed": cand})
    for m, cols in (("baseline", base), ("proposed", cand)):
        run["evals"][m]["junk_rate"] = sum(v == "junk" for v in cols["verdict"]) / n
    t = paired_comparison([run], "baseline", "proposed", n_boot=1000, n_perm=1000)
    assert t["junk_rate"]["delta"] == pytest.approx(0.5) and t["junk_rate"]["verdict"] == "baseline better"


def _write_run(root: Path, values: dict[str, dict[str, list[float]]]) -> Path:
    """A finished project folder (metrics/eval/M.json and M_images.csv) from per-image values."""
    import json

    run = _run(values)
    (root / "metrics" / "eval").mkdir(parents=True)
    for m in values:
        (root / "metrics" / "eval" / f"{m}.json").write_text(json.dumps(run["evals"][m]))
        run["tables"][m].to_csv(root / "metrics" / "eval" / f"{m}_images.csv", index=False)
    return root


def test_before_after_compares_each_method_with_itself_over_seed_pairs(tmp_path: Path) -> None:
    from face2anime.apps.seeds import code_comparison
    from face2anime.core.params import UserError

    n = 30
    rng = np.random.default_rng(0)
    before, after = [], []
    for s in range(2):      # baseline unchanged by the change; proposed's edge_ssim 0.1 higher on every image
        edge = list(rng.uniform(0.3, 0.6, n))
        ic = [int(v) for v in rng.integers(0, 2, n)]
        old = {"baseline": {"is_character": ic, "edge_ssim": edge}, "proposed": {"is_character": ic, "edge_ssim": edge}}
        new = {"baseline": old["baseline"], "proposed": {"is_character": ic, "edge_ssim": [e + 0.1 for e in edge]}}
        before.append(_write_run(tmp_path / f"old{s}", old))
        after.append(_write_run(tmp_path / f"new{s}", new))
    t = code_comparison(before, after, ["baseline", "proposed"], n_boot=500, n_perm=500)
    assert t["baseline"]["edge_ssim"]["delta"] == 0 and t["baseline"]["edge_ssim"]["verdict"] == "no detectable difference"
    e = t["proposed"]["edge_ssim"]
    assert e["delta"] == pytest.approx(0.1) and e["n_seeds"] == 2 and e["n"] == n
    assert e["ci_low"] > 0 and e["verdict"] == "after better"
    with pytest.raises(UserError, match="pair up by position: got 2 and 1"):
        code_comparison(before, after[:1], ["baseline"])

    # the results page's section, from the file face2anime seeds --before/--after writes
    import json

    from face2anime.apps.report import _before_after

    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "before_after.json").write_text(json.dumps({"seed_pairs": 2, "methods": t}))
    rows = [r for r in _before_after(tmp_path) if r.startswith("| `proposed` | `edge_ssim`")]
    assert len(rows) == 1 and "**+0.100 [" in rows[0] and rows[0].endswith("| after better |")
    assert "2 seed pairs, 30 paired test images each." in _before_after(tmp_path)
