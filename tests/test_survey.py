"""The survey's library: blind items, the crash-safe responses file, answer validation and the
report's statistics (Krippendorff's alpha against Krippendorff's published example)."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cfgutil import typed_params
from face2anime.core.params import UserError
from face2anime.survey.build import build_items
from face2anime.survey.items import QUESTIONS, TOKEN_RE, ItemSet
from face2anime.survey.report import run_survey_report, summarise
from face2anime.survey.responses import (
    FIELDS,
    HEADER,
    Answer,
    BadAnswer,
    ResponseStore,
    read_responses,
    validate_answer,
)
from face2anime.survey.simulate import simulate
from face2anime.survey.stats import (
    crossed_bootstrap,
    krippendorff_alpha,
    mean_ci,
    paired,
    wilcoxon_p,
)

METHODS = ["baseline", "proposed"]


def fake_survey(root: Path, n_faces: int = 6, faces: int = 5, pairwise: bool = True, seed: int = 0) -> tuple[Path, Path]:
    """Random 32 px 'sources' and 'translations' -> a built item set; returns (items dir, key file)."""
    rng = np.random.default_rng(seed)
    sources = {}
    for i in range(n_faces):
        fid = f"h{i:04d}"
        sources[fid] = root / "src" / f"{fid}.png"
        sources[fid].parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(sources[fid])
        for m in METHODS:
            (root / "tr" / m).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "tr" / m / f"{fid}.png")
    items, key = root / "survey" / "items", root / "survey" / "key.json"
    build_items(METHODS, faces, pairwise, 0, sources, root / "tr", items, key)
    return items, key


# --------------------------------------------------------------------------- items
def test_items_are_blind_paired_and_the_key_is_elsewhere(tmp_path: Path) -> None:
    items_dir, key_file = fake_survey(tmp_path)
    public = (items_dir / "items.json").read_text()
    assert "baseline" not in public and "proposed" not in public and "h000" not in public
    assert sorted(p.name for p in items_dir.iterdir() if not p.name.endswith(".png")) == ["items.json"]
    key = json.loads(key_file.read_text())
    assert not key_file.resolve().is_relative_to(items_dir.resolve())
    rate = {k: v for k, v in key["items"].items() if v["kind"] == "rate"}
    pair = {k: v for k, v in key["items"].items() if v["kind"] == "pair"}
    assert len(rate) == 10 and len(pair) == 5
    # the same 5 faces for both methods (paired design), one pair item per face
    faces = {m: sorted(v["face"] for v in rate.values() if v["method"] == m) for m in METHODS}
    assert faces["baseline"] == faces["proposed"] and len(set(faces["baseline"])) == 5
    items = ItemSet(items_dir)
    assert all(TOKEN_RE.match(t) for t in items.images) and len(items.images) == 5 + 10
    assert all((items_dir / f"{t}.png").is_file() for t in items.images)
    # deterministic: a rebuild gives the same tokens; a changed image gives a new token
    before = sorted(key["items"])
    build_items(METHODS, 5, True, 0, {f"h{i:04d}": tmp_path / "src" / f"h{i:04d}.png" for i in range(6)},
                tmp_path / "tr", items_dir, key_file)
    assert sorted(json.loads(key_file.read_text())["items"]) == before
    face = rate[before[0]]["face"] if before[0] in rate else next(iter(rate.values()))["face"]
    Image.new("RGB", (32, 32), "red").save(tmp_path / "tr" / "proposed" / f"{face}.png")
    build_items(METHODS, 5, True, 0, {f"h{i:04d}": tmp_path / "src" / f"h{i:04d}.png" for i in range(6)},
                tmp_path / "tr", items_dir, key_file)
    after = json.loads(key_file.read_text())["items"]
    assert len(set(after) - set(before)) == 2   # the changed rate item and its pair item


def test_order_is_seeded_per_rater_and_pairs_come_last(tmp_path: Path) -> None:
    items = ItemSet(fake_survey(tmp_path)[0])
    a, a2, b = items.order("rater-aaaaaaaa"), items.order("rater-aaaaaaaa"), items.order("rater-bbbbbbbb")
    assert a == a2 and a != b and sorted(a) == sorted(b) == sorted(items.items)
    kinds = [items.items[i]["kind"] for i in a]
    assert kinds == ["rate"] * 10 + ["pair"] * 5
    pair = a[-1]
    assert items.pair_sides("rater-aaaaaaaa", pair) == items.pair_sides("rater-aaaaaaaa", pair)
    assert {tuple(items.pair_sides(f"rater-{i:08d}", pair)) for i in range(20)} == {
        tuple(items.items[pair]["options"]), tuple(reversed(items.items[pair]["options"]))}


def test_too_few_faces_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="survey.faces"):
        fake_survey(tmp_path, n_faces=3, faces=5)


# --------------------------------------------------------------------------- answers
@pytest.fixture
def items(tmp_path: Path) -> ItemSet:
    return ItemSet(fake_survey(tmp_path)[0])


def first(items: ItemSet, kind: str) -> dict:
    return next(it for it in items.items.values() if it["kind"] == kind)


@pytest.mark.parametrize("change,status,message", [
    ({"rater": None}, 400, "missing field 'rater'"),
    ({"rater": "../../etc"}, 400, "invalid rater id"),
    ({"item": None}, 400, "missing field 'item'"),
    ({"item": "../key.json"}, 400, "invalid item id"),
    ({"item": "0123456789abcdef"}, 404, "unknown item"),
    ({"natural": None}, 400, "missing field 'natural'"),
    ({"match": "6"}, 400, "rating 'match' must be an integer from 1 to 5"),
    ({"atmosphere": "0"}, 400, "from 1 to 5"),
    ({"natural": "3.5"}, 400, "from 1 to 5"),
])
def test_bad_answers_are_refused(items: ItemSet, change: dict, status: int, message: str) -> None:
    form = {"rater": "rater-aaaaaaaa", "item": first(items, "rate")["id"], "natural": "3", "match": "4",
            "atmosphere": "5"}
    form.update(change)
    form = {k: v for k, v in form.items() if v is not None}
    with pytest.raises(BadAnswer) as e:
        validate_answer(form, items)
    assert e.value.status == status and message in e.value.message


def test_pair_answers(items: ItemSet) -> None:
    it = first(items, "pair")
    base = {"rater": "rater-aaaaaaaa", "item": it["id"]}
    assert validate_answer({**base, "better": it["options"][1]}, items).better == it["options"][1]
    assert validate_answer({**base, "better": "same"}, items).better == "same"
    assert validate_answer(base, items).better == ""           # optional
    with pytest.raises(BadAnswer, match="better"):
        validate_answer({**base, "better": first(items, "rate")["id"]}, items)


# --------------------------------------------------------------------------- responses file
def ans(rater: str, item: str, v: int = 3) -> Answer:
    return Answer(rater, item, {q: v for q in QUESTIONS}, "")


def test_store_header_idempotence_and_torn_tail(tmp_path: Path, items: ItemSet) -> None:
    path = tmp_path / "inputs" / "survey" / "responses.csv"
    store = ResponseStore(path)
    assert path.read_text() == HEADER
    ids = sorted(i for i, it in items.items.items() if it["kind"] == "rate")
    assert store.append(ans("rater-aaaaaaaa", ids[0])) is True
    assert store.append(ans("rater-aaaaaaaa", ids[0], 5)) is False          # idempotent, nothing written
    assert store.append(ans("rater-bbbbbbbb", ids[0])) is True
    rows, dropped = read_responses(path)
    assert [(r["rater"], r["natural"]) for r in rows] == [("rater-aaaaaaaa", "3"), ("rater-bbbbbbbb", "3")]
    # a kill in the middle of a write: a torn last line. Readers drop it, the next writer cuts it
    with open(path, "ab") as fh:
        fh.write(b"2026-01-01T00:00:00Z,rater-cccccccc,")
    rows, dropped = read_responses(path)
    assert len(rows) == 2 and dropped["torn"] == 1
    other = ResponseStore(path)        # another process, as after a restart
    assert other.answered("rater-aaaaaaaa") == {ids[0]}
    assert other.append(ans("rater-cccccccc", ids[1])) is True
    assert path.read_text().count("\n") == 4 and read_responses(path)[1]["torn"] == 0
    # two stores on one file (two processes) see each other's rows: still idempotent
    assert store.append(ans("rater-cccccccc", ids[1])) is False


def test_store_is_safe_under_concurrent_threads(tmp_path: Path, items: ItemSet) -> None:
    path = tmp_path / "r.csv"
    stores = [ResponseStore(path), ResponseStore(path)]
    ids = sorted(items.items)
    results: list[bool] = []

    def worker(k: int) -> None:
        for i in ids:
            it = items.items[i]
            a = ans(f"rater-{k:08d}", i) if it["kind"] == "rate" else Answer(f"rater-{k:08d}", i, {}, "same")
            results.append(stores[k % 2].append(a))
            results.append(stores[(k + 1) % 2].append(a))       # the same answer again: a no-op

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows, _ = read_responses(path)
    assert len(rows) == 8 * len(ids) == sum(results)
    assert len({(r["rater"], r["item"]) for r in rows}) == len(rows)


def test_corrupt_row_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "2026,rater-aaaaaaaa,0123456789abcdef,9,1,1,\n")
    with pytest.raises(UserError, match="line 2"):
        read_responses(path)
    path.write_text("time,who\n")
    with pytest.raises(UserError, match="header"):
        read_responses(path)
    assert read_responses(tmp_path / "absent.csv") == ([], {"torn": 0})
    assert FIELDS[:3] == ["time", "rater", "item"]


# --------------------------------------------------------------------------- statistics
def test_krippendorff_alpha_matches_the_published_example() -> None:
    """Krippendorff (2011), 'Computing Krippendorff's Alpha-Reliability': 4 coders x 12 units."""
    n = np.nan
    coders = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n],
                       [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
                       [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n],
                       [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]])
    assert krippendorff_alpha(coders.T, "nominal") == pytest.approx(0.743, abs=5e-4)
    assert krippendorff_alpha(coders.T, "ordinal") == pytest.approx(0.815, abs=5e-4)
    assert krippendorff_alpha(coders.T, "interval") == pytest.approx(0.849, abs=5e-4)
    perfect = np.array([[1, 1, 1], [3, 3, 3], [5, 5, n]], float)
    assert krippendorff_alpha(perfect) == pytest.approx(1.0)
    assert krippendorff_alpha(np.array([[2, 2], [2, 2]], float)) is None     # no variation: undefined
    assert krippendorff_alpha(np.array([[1, n], [n, 2]], float)) is None     # nothing pairable


def test_bootstrap_ci_and_paired_test() -> None:
    rng = np.random.default_rng(0)
    const = np.full((6, 5), 4.0)
    const[0, 0] = np.nan
    d = mean_ci(const, 200, rng)
    assert d["mean"] == 4.0 and d["ci"] == [4.0, 4.0] and d["n"] == 29 and d["n_raters"] == 6
    assert mean_ci(np.full((2, 2), np.nan), 200, rng)["mean"] is None
    m = rng.integers(1, 6, (12, 5)).astype(float)
    boots = crossed_bootstrap(m, 500, rng)
    assert boots.shape == (500,) and abs(boots.mean() - m.mean()) < 0.1
    better = np.clip(m + 1, 1, 5)
    p = paired(m, better, 500, rng)
    assert p["delta"] > 0 and p["ci"][0] > 0 and p["p_wilcoxon"] < 0.01 and p["n_raters"] == 12
    assert wilcoxon_p(np.zeros(5)) is None


def test_report_with_no_responses_then_simulated_raters(tmp_path: Path) -> None:
    items_dir, key = fake_survey(tmp_path)
    resp = tmp_path / "responses.csv"
    out = [tmp_path / "metrics/survey.json", tmp_path / "reports/survey.md", tmp_path / "reports/survey.png"]
    params = typed_params({"seed": 0, "survey.bootstrap": 300})
    s = run_survey_report(params, resp, key, *out)
    assert s["status"] == "no_responses" and json.loads(out[0].read_text())["n_rows"] == 0
    assert "No responses yet" in out[1].read_text()
    from PIL import Image

    with Image.open(out[2]) as im:       # a real picture (a placeholder chart), not an empty file
        im.load()
        assert im.format == "PNG" and min(im.size) >= 100

    assert simulate(10, items_dir, key, resp, seed=1) == 10 * 15
    assert simulate(10, items_dir, key, resp, seed=1) == 0          # same raters again: idempotent
    s = run_survey_report(params, resp, key, *out)
    assert s["status"] == "ok" and s["n_raters"] == s["n_simulated_raters"] == 10 and s["n_ratings"] == 100
    for m in METHODS:
        for q in QUESTIONS:
            d = s["methods"][m][q]
            assert 1 <= d["ci"][0] <= d["mean"] <= d["ci"][1] <= 5 and d["n"] == 50
    pq = s["paired"]["proposed - baseline"]["questions"]
    assert pq["match"]["delta"] > 0 and pq["natural"]["delta"] < 0     # the simulated effect is found
    assert set(s["agreement"]) == set(QUESTIONS)
    pw = s["pairwise"]["baseline vs proposed"]
    assert pw["first"] + pw["second"] + pw["same"] + pw["skipped"] == 50
    md = out[1].read_text()
    assert "simulated raters" in md and "| match |" in md
    # answers to an older item set are left out, not attributed to the new images
    with open(resp, "a") as fh:
        fh.write("2026-01-01T00:00:00.000000Z,rater-olderone,0123456789abcdef,5,5,5,\n")
    assert summarise(read_responses(resp)[0], json.loads(key.read_text()), 100, 0)["dropped"]["stale"] == 1
    os.remove(resp)
