"""The README and docs/ pages: length, links, and the generated result tables (``face2anime report``)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from face2anime.apps.report import BEGIN, END, headline, render, write
from face2anime.core.params import UserError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: pages the README links to that are written on another branch; drop an entry once its file is committed.
WRITTEN_ELSEWHERE: set[str] = set()

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)|<img[^>]*\ssrc=\"([^\"]+)\"")
FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)


def _prose(text: str) -> str:
    """The text without fenced code blocks (their `#` lines are not headings, their brackets not links)."""
    return FENCE.sub("", text)


def _links(page: Path) -> list[str]:
    return [a or b for a, b in LINK.findall(_prose(page.read_text()))]


def _slugs(page: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown page (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in _prose(page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = counts.get(slug, 0)
        counts[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _external(target: str) -> bool:
    return re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) is not None   # https:, mailto:, ...


def test_readme_is_short() -> None:
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 250, f"README.md has {n} lines (at most 250: move details to docs/)"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_paths_outside_the_repository(page: Path) -> None:
    text = page.read_text()
    for bad in ("../", "/work/", "shared/paper"):
        assert bad not in text, f"{page.relative_to(ROOT)} mentions {bad!r}: users' clones have nothing outside the repository"
    for target in _links(page):
        if _external(target) or target.startswith("#"):
            continue
        assert not target.startswith("/"), f"{page.relative_to(ROOT)}: absolute link {target}"
        resolved = (page.parent / target.split("#")[0]).resolve()
        assert resolved == ROOT or ROOT in resolved.parents, f"{page.relative_to(ROOT)}: {target} leaves the repository"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files_and_headings(page: Path) -> None:
    missing = []
    for target in _links(page):
        if _external(target):
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        rel = dest.relative_to(ROOT).as_posix() if ROOT in dest.parents else str(dest)
        if not dest.exists():
            if rel not in WRITTEN_ELSEWHERE:
                missing.append(target)
            continue
        if anchor and dest.suffix == ".md" and anchor not in _slugs(dest):
            missing.append(target)
    assert not missing, f"{page.relative_to(ROOT)}: broken links {missing}"


def test_readme_links_every_docs_page() -> None:
    readme = set(_links(ROOT / "README.md"))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} | WRITTEN_ELSEWHERE
    assert not pages - readme, f"README's Documentation list misses {sorted(pages - readme)}"


def test_committed_results_match_the_metrics() -> None:
    from face2anime.apps import params_doc

    assert (ROOT / "docs" / "params.md").read_text() == params_doc.render(ROOT / "params.yaml"), \
        "docs/params.md differs from the schema and params.yaml: run: face2anime report"
    page = (ROOT / "docs" / "results.md").read_text()
    assert page == render(ROOT), "docs/results.md differs from the committed metrics: run: face2anime report"
    readme = (ROOT / "README.md").read_text()
    start, end = readme.find(BEGIN), readme.find(END)
    assert 0 <= start < end, f"README.md lacks the {BEGIN} ... {END} block"
    assert readme[start:end + len(END)] + "\n" == headline(ROOT), \
        "README.md's results table differs from the committed metrics: run: face2anime report"


# ------------------------------------------------------------------- render() on hand-made metrics

def _row(ref: str, cand: str, a: float, b: float, delta: float, lo: float | None, hi: float | None, verdict: str,
         valid: bool | None = True, reasons: list[str] | None = None, mde80: float | None = 0.1, n: int = 8,
         n_seeds: int = 1) -> dict:
    return {ref: a, cand: b, "reference": a, "candidate": b, "delta": delta, "ci_low": lo, "ci_high": hi,
            "se": None, "p": None if lo is None else 0.01, "mde80": None if lo is None else mde80,
            "n": None if lo is None else n, "n_seeds": n_seeds, "valid": valid, "reasons": reasons or [],
            "verdict": verdict}


def _dump(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    m = tmp_path / "metrics"
    _dump(m / "compare.json", {
        "char_rate": _row("plain", "cam", 0.5, 0.625, 0.125, 0.05, 0.2, "cam better"),
        "attr_preservation.mean": _row("plain", "cam", 0.6, 0.55, -0.05, -0.15, 0.05, "no detectable difference"),
        "edge_ssim": _row("plain", "cam", 0.25, 0.2, -0.05, None, None, "not tested: no per-image values", valid=None),
        "cam_overlap": _row("plain", "cam", 0.3, 0.4, 0.1, 0.0, 0.2, "not judged: invalid metric", valid=False,
                            reasons=["noise beats source"]),
    })
    refs = {"noise": {"n": 4, "char_rate": 0.0, "junk_rate": 1.0, "realism": {"inside_rate": 0.0}},
            "real_chars": {"n": 4, "char_rate": 0.75, "junk_rate": 0.0, "realism": {"inside_rate": 0.5}}}
    ceiling = {"n": 8, "char_rate": 0.9, "junk_rate": 0.0, "realism": {"inside_rate": 0.25}}
    _dump(m / "eval" / "plain.json", {"attr_preservation": {"chance": 0.25}, "references": refs, "ceiling": ceiling,
                                      "char_rate_by_kind": {"clean": {"char_rate": 0.6, "n": 5},
                                                            "hard": {"char_rate": 1 / 3, "n": 3}}})
    _dump(m / "eval" / "cam.json", {"attr_preservation": {"chance": 0.25}, "references": refs, "ceiling": ceiling,
                                    "char_rate_by_kind": {"clean": {"char_rate": 0.8, "n": 5},
                                                          "hard": {"char_rate": 1 / 3, "n": 3}}})
    _dump(m / "download.json", {"source": "synthetic", "images": {"human": 10, "character": 12},
                                "hard_human": 3, "hard_character": 4})
    _dump(m / "resize.json", {"written": {"human": {"train": 6, "test": 4}, "character": {"train": 8, "test": 4}}})
    _dump(m / "select.json", {"selected": 2, "candidates": 6, "precision": 0.75, "base_rate": 0.5,
                              "precision_gain": 0.25})
    _dump(m / "stages" / "train_cyclegan@plain.json", {"stage": "train_cyclegan@plain", "wall_seconds": 30.0,
                                                       "cpu_seconds": 29.4, "peak_rss_mb": 500.0, "images": 300,
                                                       "images_per_s": 10.0})
    _dump(m / "stages" / "download.json", {"stage": "download", "wall_seconds": 10.0, "cpu_seconds": 9.6,
                                           "peak_rss_mb": 700.2, "images": None, "images_per_s": None,
                                           "machine": {"cpu": "Fake CPU", "threads": 2}})
    kw = {"n_seeds": 2}
    _dump(m / "study_proposed_vs_baseline.json", {
        "runs": ["s0 (seed 0)", "s1 (seed 1)"], "reference": "baseline", "candidate": "proposed", "metrics": {
            "char_rate": _row("baseline", "proposed", 0.7, 0.8, 0.1, -0.05, 0.25, "no detectable difference",
                              mde80=0.2, **kw),
            "char_rate_by_kind.clean.char_rate": _row("baseline", "proposed", 0.9, 1.0, 0.1, 0.0, 0.2,
                                                      "no detectable difference", **kw),
            "attr_preservation.mean": _row("baseline", "proposed", 0.6, 0.65, 0.05, -0.01, 0.11,
                                           "no detectable difference", mde80=0.08, **kw),
            "attr_preservation.above_chance": _row("baseline", "proposed", 0.3, 0.29, -0.01, -0.02, 0.0,
                                                   "no detectable difference", **kw)}})
    _dump(m / "seeds.json", {"seeds": [0, 1], "methods": {
        "baseline": {"char_rate": {"mean": 0.5, "std": 0.1, "n": 2, "values": [0.4, 0.6]}, "n_test": {"mean": 6.0}},
        "proposed": {"char_rate": {"mean": 0.55, "std": 0.05, "n": 2, "values": [0.5, 0.6]}, "n_test": {"mean": 6.0}}}})
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(f"# x\n\nbefore\n{BEGIN}\nold table\n{END}\nafter\n")
    return tmp_path


def test_render_on_hand_made_metrics(fake: Path) -> None:
    page = render(fake)
    lines = page.splitlines()
    expected = [
        # the workspace run; method names come from the file, not from params
        "| metric | plain | cam | cam - plain [95% CI] | verdict |",
        "| `char_rate` | 0.500 | 0.625 | **+0.125 [+0.050, +0.200]** | cam better |",
        "| `attr_preservation.mean` (chance 0.250) | 0.600 | 0.550 | -0.050 [-0.150, +0.050] | no detectable difference |",
        "| `edge_ssim` | 0.250 | 0.200 | -0.050 | not tested: no per-image values |",
        "Not valid (not judged): `cam_overlap`; every other metric was valid.",
        "- `cam_overlap`: noise beats source",
        # floors, ceiling and hard kinds
        "| noise | 4 | 0.00 | 1.00 | 0.00 |",
        "| real held-out characters | 4 | 0.75 | 0.00 | 0.50 |",
        "| ceiling (each source rendered as its ideal character) | 8 | 0.90 | 0.00 | 0.25 |",
        "| `clean` | 5 | 0.600 | 0.800 |",
        "| `hard` | 3 | 0.333 | 0.333 |",
        # data and selection
        "| data | 10 humans (3 hard), 12 characters (4 hard), source `synthetic`; 4 held-out test images per domain "
        "(3 of the test humans are hard) |",
        "| select | 2 of 6 humans; precision 0.750 vs base rate 0.500 (+0.25) |",
        # timings, in pipeline order, and the machine
        "| `download` | 10 | 10 | 700 |  |",
        "| `train_cyclegan@plain` | 30 | 29 | 500 | 10.0 |",
        "Sum of the stage wall times: 40 s; CycleGAN training (`train_cyclegan@*`) is 75% of it.",
        "Machine, as the metrics record it: `cpu Fake CPU, threads 2`.",
        # the study
        "| metric | baseline | proposed |",
        "| `char_rate` | 0.700 | 0.800 |",
        "| `char_rate` | +0.100 [-0.050, +0.250] |",
        "This setup detects (80% power) a `char_rate` difference of 0.200 and an attribute difference of 0.080 (MDE80).",
        "On clean sources the judge's `char_rate` is 0.95 (mean of both methods over the seeds).",
        # seeds.json, made on another test split than the workspace run
        "| `char_rate` | 0.500 ± 0.100 (0.400 / 0.600) | 0.550 ± 0.050 (0.500 / 0.600) |",
    ]
    for line in expected:
        assert line in lines, f"missing: {line}\n\n{page}"
    assert lines.index("| `download` | 10 | 10 | 700 |  |") < lines.index("| `train_cyclegan@plain` | 30 | 29 | 500 | 10.0 |")
    assert "`char_rate` overall 0.700 / 0.800 (target 0.75: **not met**)" in page
    assert "attributes above chance 0.300 / 0.290 (target 0.28: met)" in page
    assert "made on 6 test images per seed, not the 8 of the workspace run" in page
    assert "run `face2anime report`" in lines[0]


def test_headline_prefers_the_study_then_the_workspace_run(fake: Path) -> None:
    block = headline(fake).splitlines()
    assert block[0] == BEGIN and block[-1] == END
    assert "| `char_rate` | 0.700 | 0.800 | +0.100 [-0.050, +0.250] | no detectable difference |" in block
    assert "Mean over 2 training seeds, 8 paired held-out test images" in block[2]
    (fake / "metrics" / "study_proposed_vs_baseline.json").unlink()
    block = headline(fake).splitlines()
    assert "| `char_rate` | 0.500 | 0.625 | +0.125 [+0.050, +0.200] | cam better |" in block   # no bold in the README
    assert "| `attr_preservation.mean` (chance 0.250) | 0.600 | 0.550 | -0.050 [-0.150, +0.050] | no detectable difference |" in block


def test_write_rewrites_the_page_and_only_the_readme_block(fake: Path) -> None:
    assert write(fake) == [fake / "docs" / "results.md", fake / "README.md"]
    assert (fake / "docs" / "results.md").read_text() == render(fake)
    readme = (fake / "README.md").read_text()
    assert readme == "# x\n\nbefore\n" + headline(fake) + "after\n"
    assert write(fake) == []                                   # unchanged metrics: nothing rewritten
    assert not list((fake / "docs").glob(".*tmp*"))            # atomic writes leave no temp file
    (fake / "README.md").write_text("# no markers\n")
    with pytest.raises(UserError, match="results:begin"):
        write(fake)


def test_report_command_is_registered(fake: Path) -> None:
    from typer.testing import CliRunner

    from stages.cli import COMMANDS, build_app

    assert COMMANDS["report"] == "face2anime.apps.report"
    result = CliRunner().invoke(build_app(["report"]), ["report", "--root", str(fake)])
    assert result.exit_code == 0, result.output
    assert (fake / "docs" / "results.md").read_text() == render(fake)


def test_the_ugatit_study_gets_its_own_section_with_the_training_cost(fake: Path) -> None:
    """A ``metrics/ugatit_*.json`` study (other budget) is its own section, not mixed into the
    three-seed table; its training cost per method is the mean ms per step over the runs."""
    cost = {"a (seed 0)": {"baseline": {"steps": 100, "train_seconds": 20.0, "ms_per_step": 200.0, "cpu": "Fake CPU",
                                        "threads": 2, "precision": "fp32"},
                           "ugatit": {"steps": 100, "train_seconds": 40.0, "ms_per_step": 400.0, "cpu": "Fake CPU",
                                      "threads": 2, "precision": "fp32"}},
            "b (seed 1)": {"baseline": {"steps": 100, "train_seconds": 22.0, "ms_per_step": 220.0, "cpu": "Fake CPU",
                                        "threads": 2, "precision": "fp32"},
                           "ugatit": None}}
    _dump(fake / "metrics" / "ugatit_vs_baseline.json", {
        "runs": ["a (seed 0)", "b (seed 1)"], "reference": "baseline", "candidate": "ugatit", "training_cost": cost,
        "metrics": {"char_rate": _row("baseline", "ugatit", 0.7, 0.6, -0.1, -0.2, -0.01, "baseline better",
                                      n_seeds=2)}})
    page = render(fake)
    main, ug = page.split("## U-GAT-IT light beside the paper's methods")
    assert "ugatit" not in main.split("## Three training seeds")[1].split("\n## ")[0]   # not in the main study
    assert "| `baseline` | 100 | 210 | 2 | Fake CPU, 2 threads, fp32 |" in ug      # (200 + 220) / 2
    assert "| `ugatit` | 100 | 400 | 1 | Fake CPU, 2 threads, fp32 |" in ug


def test_training_cost_of_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from face2anime.apps.seeds import training_cost

    _dump(tmp_path / "metrics/cyclegan/m/metrics.json", {"steps": 250, "precision": "bf16", "threads": 2})
    _dump(tmp_path / "metrics/stages/train_cyclegan@m.json", {"train_seconds": 50.0, "machine": {"cpu": "X"}})
    monkeypatch.chdir(tmp_path)
    assert training_cost(["m", "gone"]) == {"m": {"steps": 250, "train_seconds": 50.0, "ms_per_step": 200.0,
                                                  "precision": "bf16", "threads": 2, "cpu": "X"}, "gone": None}
