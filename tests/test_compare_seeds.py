"""compare's metric table and the seeds summary on hand-made metrics."""
from __future__ import annotations

import pytest

from face2anime.apps.seeds import markdown as seeds_markdown
from face2anime.apps.seeds import summarize
from face2anime.evaluation.compare import comparison, flatten, markdown


def test_flatten_keeps_numeric_leaves() -> None:
    d = {"a": 1, "b": {"c": 0.5, "d": None, "e": "x", "f": {"g": 2}}, "h": True}
    assert flatten(d) == {"a": 1.0, "b.c": 0.5, "b.f.g": 2.0}


def test_comparison_delta_and_missing() -> None:
    evals = {"baseline": {"char_rate": 0.5, "attr_preservation": None, "kid_judge": {"mean": 0.3}},
             "proposed": {"char_rate": 0.75, "attr_preservation": {"mean": 0.6}, "kid_judge": {"mean": 0.2}}}
    t = comparison(evals, "baseline", "proposed")
    assert t["char_rate"] == {"baseline": 0.5, "proposed": 0.75, "delta": 0.25}
    assert t["attr_preservation.mean"]["baseline"] is None and t["attr_preservation.mean"]["delta"] is None
    assert t["kid_judge.mean"]["delta"] == pytest.approx(-0.1)
    md = markdown(t, ["baseline", "proposed"], "baseline", "proposed")
    # higher char_rate is better, lower KID is better: proposed wins both
    assert "| char_rate | 0.5000 | 0.7500 | 0.2500 | proposed |" in md
    assert "| kid_judge.mean | 0.3000 | 0.2000 | -0.1000 | proposed |" in md
    assert "n/a" in md


def test_seeds_summary_mean_and_std() -> None:
    runs = {0: {"baseline": {"char_rate": 0.4}}, 1: {"baseline": {"char_rate": 0.6}},
            2: {"baseline": {"char_rate": 0.5}}}
    s = summarize(runs)["baseline"]["char_rate"]
    assert s["mean"] == pytest.approx(0.5) and s["std"] == pytest.approx(0.1) and s["n"] == 3
    assert "0.500 ± 0.100" in seeds_markdown(summarize(runs), [0, 1, 2])
