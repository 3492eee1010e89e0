"""Tests for the procedural two-domain face data set (the face2anime/data/synthetic/ package).

Small sizes (32-48 px, a few dozen images) so the whole file runs in seconds.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from face2anime.core.params import UserError
from face2anime.data.synthetic.attributes import (
    ATTRIBUTES,
    DOMAINS,
    HARD_KINDS,
    PARTS,
    hard_assignment,
    sample_attributes,
)
from face2anime.data.synthetic.bench import bench
from face2anime.data.synthetic.contact_sheet import _match_character, contact_sheet
from face2anime.data.synthetic.dataset import _write_png, generate
from face2anime.data.synthetic.render import render_one

SIZE = 40


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("synth")
    m = generate(root, n_human=40, n_character=16, size=SIZE, hard_share=0.3, seed=3, progress=False)
    return root, m


def _files_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.png"))}


# --------------------------------------------------------------------------- layout & manifest
def test_files_and_columns(dataset: tuple[Path, pd.DataFrame]) -> None:
    root, m = dataset
    expected = (["id", "domain", "file", "clean", "hard_kind", *ATTRIBUTES]
                + [f"{p}_{k}" for p in PARTS for k in ("x0", "y0", "x1", "y1")])
    assert list(m.columns) == expected
    assert len(m) == 56
    assert list(m["id"][:2]) == ["h00000", "h00001"] and m["id"].iloc[-1] == "c00015"
    assert list(m["file"][:1]) == ["human/h00000.png"]
    assert (m[m.domain == "character"]["file"].str.match(r"^character/c\d{5}\.png$")).all()
    assert set(m["domain"]) == {"human", "character"}
    for f in m["file"]:
        with Image.open(root / f) as im:
            assert im.format == "PNG" and im.mode == "RGB" and im.size == (SIZE, SIZE)
    for a, cats in ATTRIBUTES.items():
        assert len(cats) >= 2 and m[a].isin(cats).all() and m[a].map(type).eq(str).all()
    assert len(ATTRIBUTES) >= 6
    assert not list(root.rglob("*.tmp*")), "temp files left behind"


def test_boxes_valid_and_plausible(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, m = dataset
    for p in PARTS:
        x0, y0, x1, y1 = (m[f"{p}_{k}"] for k in ("x0", "y0", "x1", "y1"))
        assert ((0 <= x0) & (x0 < x1) & (x1 <= 1) & (0 <= y0) & (y0 < y1) & (y1 <= 1)).all(), p
    cx = lambda p: (m[f"{p}_x0"] + m[f"{p}_x1"]) / 2  # noqa: E731
    cy = lambda p: (m[f"{p}_y0"] + m[f"{p}_y1"]) / 2  # noqa: E731
    assert (cx("leye") < cx("reye")).all()                     # leye = image left
    assert (cy("mouth") > cy("leye")).all() and (cy("mouth") > cy("nose")).all()
    assert (cy("nose") > (cy("leye") + cy("reye")) / 2).all()
    # tight: an eye box is a small part of the image, never the face
    area = (m["leye_x1"] - m["leye_x0"]) * (m["leye_y1"] - m["leye_y0"])
    assert (area < 0.06).all()
    # anime eyes are LARGE, realistic eyes small (the decisive style cue)
    by_dom = area.groupby(m["domain"]).mean()
    assert by_dom["character"] > 2.0 * by_dom["human"]


def test_hard_share_exact_and_characters_clean(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, m = dataset
    h, c = m[m.domain == "human"], m[m.domain == "character"]
    assert (~h["clean"]).sum() == round(0.3 * 40)
    assert c["clean"].all() and (c["hard_kind"] == "").all()
    assert (h.loc[h["clean"], "hard_kind"] == "").all()
    assert h.loc[~h["clean"], "hard_kind"].isin(HARD_KINDS).all()
    assert set(h.loc[~h["clean"], "hard_kind"]) == set(HARD_KINDS)   # 12 hard -> every kind
    for n, share in [(0, 0.3), (1, 0.3), (7, 0.5), (10, 0.0), (10, 1.0), (800, 0.3), (33, 0.25)]:
        hard = hard_assignment(n, share, seed=1)
        assert len(hard) == round(share * n)
        assert all(0 <= i < n for i in hard)


def test_hard_characters(tmp_path: Path) -> None:
    m = generate(tmp_path, n_human=10, n_character=20, size=24, hard_share=0.3, seed=3, progress=False,
                   hard_share_character=0.25)
    h, c = m[m.domain == "human"], m[m.domain == "character"]
    assert (~h["clean"]).sum() == 3 and (~c["clean"]).sum() == 5
    assert set(c.loc[~c["clean"], "hard_kind"]) == set(HARD_KINDS)   # 5 hard -> every kind once
    # the human assignment does not depend on the characters' share; the domains use separate streams
    m0 = generate(tmp_path / "b", n_human=10, n_character=20, size=24, hard_share=0.3, seed=3, progress=False)
    assert m0.loc[m0.domain == "human", "hard_kind"].tolist() == h["hard_kind"].tolist()
    assert hard_assignment(20, 0.5, 3, "character") != hard_assignment(20, 0.5, 3, "human")


# --------------------------------------------------------------------------- determinism
def test_deterministic_same_seed_and_differs_otherwise(tmp_path: Path) -> None:
    kw = dict(n_human=10, n_character=6, size=32, hard_share=0.3, progress=False)
    m1 = generate(tmp_path / "a", seed=5, **kw)
    m2 = generate(tmp_path / "b", seed=5, **kw)
    m3 = generate(tmp_path / "c", seed=6, **kw)
    pd.testing.assert_frame_equal(m1, m2)
    assert _files_bytes(tmp_path / "a") == _files_bytes(tmp_path / "b")
    fa, fc = _files_bytes(tmp_path / "a"), _files_bytes(tmp_path / "c")
    assert sum(fa[k] != fc[k] for k in fa) == len(fa)
    assert not m1[list(ATTRIBUTES)].equals(m3[list(ATTRIBUTES)])


def test_worker_processes_write_the_same_files_and_manifest(tmp_path: Path) -> None:
    kw = dict(n_human=40, n_character=30, size=32, hard_share=0.3, seed=5, progress=False)
    one = generate(tmp_path / "one", **kw)
    two = generate(tmp_path / "two", workers=2, **kw)     # 70 images: 3 chunks of 32 over 2 processes
    pd.testing.assert_frame_equal(one, two)
    assert _files_bytes(tmp_path / "one") == _files_bytes(tmp_path / "two")


def test_per_image_rng_is_order_independent(dataset: tuple[Path, pd.DataFrame]) -> None:
    root, m = dataset
    for _, row in m.iloc[[0, 7, 39, 40, 55]].iterrows():     # rendered alone, out of order
        idx = int(row["id"][1:])
        img, attrs, boxes = render_one(3, row["domain"], idx, SIZE, row["hard_kind"])
        with Image.open(root / row["file"]) as im:
            assert np.array_equal(np.asarray(im), img)
        assert attrs == {a: row[a] for a in ATTRIBUTES}
        assert attrs == sample_attributes(3, row["domain"], idx)
        assert boxes["mouth"] == tuple(row[f"mouth_{k}"] for k in ("x0", "y0", "x1", "y1"))


def test_rerun_smaller_removes_stale_images(tmp_path: Path) -> None:
    generate(tmp_path, 6, 4, 32, 0.0, seed=0, progress=False)
    generate(tmp_path, 3, 2, 32, 0.0, seed=0, progress=False)
    assert sorted(p.name for p in (tmp_path / "human").iterdir()) == ["h00000.png", "h00001.png", "h00002.png"]
    assert sorted(p.name for p in (tmp_path / "character").iterdir()) == ["c00000.png", "c00001.png"]


# --------------------------------------------------------------------------- attributes
def test_attribute_coverage_without_rendering() -> None:
    for dom in DOMAINS:
        seen = {a: set() for a in ATTRIBUTES}
        for i in range(300):
            for a, v in sample_attributes(0, dom, i).items():
                seen[a].add(v)
        for a, cats in ATTRIBUTES.items():
            assert seen[a] == set(cats), (dom, a)


def test_background_hue_visible_in_both_domains() -> None:
    """The background attribute is the same hue family in both domains (corner patch)."""
    for dom in DOMAINS:
        for i in range(24):
            img, attrs, _ = render_one(2, dom, i, 48)
            r, g, b = img[:5, :5].reshape(-1, 3).mean(0)
            bg = attrs["background"]
            ok = {"blue": b > r + 15 and b > g, "green": g > r + 15 and g > b + 15,
                  "pink": r > g + 15 and r > b, "grey": max(r, g, b) - min(r, g, b) < 20}[bg]
            assert ok, (dom, i, bg, (r, g, b))


def test_hard_kinds_look_different() -> None:
    """Low contrast really lowers contrast; occluded eyes really hide the eye region."""
    stds, eye_dark = {"": [], "low_contrast": []}, {"": [], "occluded_eyes": []}
    for i in range(10):
        for kind in stds:
            img, _, _ = render_one(4, "human", i, 48, kind)
            stds[kind].append(img.std())
        for kind in eye_dark:
            img, _, b = render_one(4, "human", i, 48, kind)
            x0, y0, x1, y1 = (int(round(v * 48)) for v in b["leye"])
            eye_dark[kind].append(np.abs(img[y0:y1, x0:x1].astype(float) - img[y0:y1, x0:x1].mean((0, 1))).mean())
    assert np.mean(stds["low_contrast"]) < 0.6 * np.mean(stds[""])
    # clean eyes have sclera/iris/pupil structure; hidden eyes (bar, hand or hair) much less
    assert np.mean(eye_dark["occluded_eyes"]) < np.mean(eye_dark[""])


def test_tiny_sizes_and_every_hard_kind_render() -> None:
    for size in (16, 24):
        for kind in ("", *HARD_KINDS):
            for i in range(6):
                img, _, boxes = render_one(9, "human", i, size, kind)
                assert img.shape == (size, size, 3) and img.dtype == np.uint8
                assert all(0 <= b[0] < b[2] <= 1 and 0 <= b[1] < b[3] <= 1 for b in boxes.values())


# --------------------------------------------------------------------------- errors, png, sheet, bench
@pytest.mark.parametrize("kw", [dict(size=8), dict(size=64.0), dict(hard_share=1.5), dict(n_human=-1),
                                dict(n_character=True)])
def test_bad_arguments_are_user_errors(tmp_path: Path, kw: dict) -> None:
    args = dict(n_human=2, n_character=2, size=32, hard_share=0.3) | kw
    with pytest.raises(UserError):
        generate(tmp_path, seed=0, progress=False, **args)


def test_bad_character_hard_share_is_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="hard_share_character"):
        generate(tmp_path, n_human=2, n_character=2, size=32, hard_share=0.3, seed=0, progress=False,
                   hard_share_character=1.5)


def test_render_hard_characters_and_reject_unknown_kinds() -> None:
    clean, _, boxes = render_one(0, "character", 0, 32)
    for kind in HARD_KINDS:
        img, _, b = render_one(0, "character", 0, 32, kind)
        assert img.shape == (32, 32, 3) and b.keys() == boxes.keys()
        if kind != "small_offcentre":   # it redraws the face elsewhere; the others keep the layout
            assert not np.array_equal(img, clean)
    with pytest.raises(UserError, match="unknown hard_kind"):
        render_one(0, "character", 0, 32, "sunburn")


def test_png_writer_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for shape in [(5, 7, 3), (32, 32, 3)]:
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
        _write_png(arr, tmp_path / "x.png")
        with Image.open(tmp_path / "x.png") as im:
            assert im.format == "PNG" and im.mode == "RGB" and np.array_equal(np.asarray(im), arr)
    assert [p.name for p in tmp_path.iterdir()] == ["x.png"], "temp files left behind"


def test_contact_sheet(dataset: tuple[Path, pd.DataFrame], tmp_path: Path) -> None:
    root, m = dataset
    out = tmp_path / "sheet.png"
    contact_sheet(m, root, out, per_row=6)
    with Image.open(out) as im:
        im.load()
        assert im.format == "PNG"
        # rows: clean humans, hard humans, then their matched characters (2 rows); padding 2
        assert im.size == (6 * (SIZE + 2) + 2, 4 * (SIZE + 2) + 2)
    with pytest.raises(UserError):
        contact_sheet(m.drop(columns=["hair_color"]), root, tmp_path / "x.png")


def test_contact_sheet_matches_hair_colour(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, m = dataset
    chars = m[m.domain == "character"]
    used: set[str] = set()
    checked = 0
    for _, row in m[(m.domain == "human") & m.clean].head(6).iterrows():
        free_same_hair = chars[~chars["id"].isin(used) & (chars["hair_color"] == row["hair_color"])]
        cid = _match_character(row, chars, used)
        used.add(cid)
        if len(free_same_hair):   # a character with this hair colour was still free: it must be chosen
            assert chars.set_index("id").loc[cid, "hair_color"] == row["hair_color"]
            checked += 1
    assert checked >= 4, "the fixture must exercise the hair-colour match"


def test_bench_runs(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rate is images over wall time (a clock that says 2 s for 4 images gives 2 images/s),
    of images really written (the generator is called for n images, half per domain)."""
    import time

    from face2anime.data.synthetic import bench as bench_mod

    calls = []
    real_generate = bench_mod.generate

    def counting(out, n_human, n_character, *a, **kw):
        calls.append((n_human, n_character))
        m = real_generate(out, n_human, n_character, *a, **kw)
        assert len(list(Path(out).rglob("*.png"))) == n_human + n_character
        return m

    ticks = iter([100.0, 102.0])
    monkeypatch.setattr(bench_mod, "generate", counting)
    monkeypatch.setattr(time, "perf_counter", lambda: next(ticks))
    rate = bench(n=4, size=32)
    assert rate == 2.0 and calls == [(2, 2)]
    assert "4 images at 32px in 2.00 s = 2 images/s" in capsys.readouterr().out
