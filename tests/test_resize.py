"""The resize stage on a tiny raw set with one of each bad kind mixed in."""
from __future__ import annotations

import json
import math
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import tiny_params
from PIL import Image

from face2anime.core.params import UserError
from face2anime.data.resize import resize_dataset, transform_box
from stages.resize import main

N_PER_DOMAIN = 12
BOX_COLS = [f"{p}_{k}" for p in ("leye", "reye", "mouth", "nose") for k in ("x0", "y0", "x1", "y1")]

# human ids h00..h11: even ones 40x30 (non-square), odd ones 48x48; character c00..c11 48x48.
# Bad rows, extra to the 12 good ones per domain:
BAD = {
    "hbad_empty": ("human", "empty"),
    "hbad_text": ("human", "not_an_image"),
    "hbad_cut": ("human", "truncated"),
    "cbad_missing": ("character", "missing"),
    "cbad_cutjpg": ("character", "truncated"),
}
ODD = {"hodd_gray": ("human", "grayscale"), "codd_rgba": ("character", "transparency")}


def _noise(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def _row(rid: str, domain: str, file: str, **extra: object) -> dict[str, object]:
    row: dict[str, object] = {"id": rid, "domain": domain, "file": file, "clean": True,
                              "hard_kind": "", "hair_colour": "black", "aligned": True}
    # default boxes: centred eyes/mouth/nose
    row.update(dict(zip(BOX_COLS, [0.30, 0.35, 0.45, 0.45, 0.55, 0.35, 0.70, 0.45,
                                   0.35, 0.70, 0.65, 0.80, 0.45, 0.50, 0.55, 0.62])))
    row.update(extra)
    return row


def make_raw(raw: Path, n: int = N_PER_DOMAIN, bad: bool = True) -> pd.DataFrame:
    """Write raw/{human,character}/... and raw/manifest.csv; returns the manifest."""
    rows = []
    for d, prefix in (("human", "h"), ("character", "c")):
        (raw / d).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            rid = f"{prefix}{i:02d}"
            w, h = (40, 30) if (d == "human" and i % 2 == 0) else (48, 48)
            _noise(w, h, seed=zlib.crc32(rid.encode())).save(raw / d / f"{rid}.png")
            rows.append(_row(rid, d, f"{d}/{rid}.png"))
    if bad:
        (raw / "human" / "hbad_empty.png").write_bytes(b"")
        (raw / "human" / "hbad_text.png").write_text("<html>quota exceeded</html>")
        _noise(48, 48, 1).save(raw / "human" / "hbad_cut.png")
        b = (raw / "human" / "hbad_cut.png").read_bytes()
        (raw / "human" / "hbad_cut.png").write_bytes(b[: len(b) // 2])
        _noise(48, 48, 2).save(raw / "character" / "cbad_cutjpg.jpg", quality=95)
        b = (raw / "character" / "cbad_cutjpg.jpg").read_bytes()
        (raw / "character" / "cbad_cutjpg.jpg").write_bytes(b[: len(b) // 2])
        Image.new("L", (48, 48), 90).save(raw / "human" / "hodd_gray.png")
        Image.new("RGBA", (48, 48), (0, 0, 0, 0)).save(raw / "character" / "codd_rgba.png")
        for rid, (d, _) in {**BAD, **ODD}.items():
            ext = ".jpg" if rid == "cbad_cutjpg" else ".png"
            rows.append(_row(rid, d, f"{d}/{rid}{ext}"))
    df = pd.DataFrame(rows).sample(frac=1.0, random_state=3)  # manifest order is arbitrary
    df.to_csv(raw / "manifest.csv", index=False)
    return df


def run(tmp: Path, raw: Path, out_name: str = "resized", **kw: object) -> pd.DataFrame:
    args = dict(size=16, test_count=3, crop="none", seed=0, max_pixels=10_000_000, progress=False)
    args.update(kw)
    return resize_dataset(raw, tmp / out_name, tmp / "metrics" / "resize.json", **args)  # type: ignore[arg-type]


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture()
def raw(tmp_path: Path) -> Path:
    r = tmp_path / "raw"
    make_raw(r)
    return r


def test_outputs_sizes_splits_and_metrics(tmp_path: Path, raw: Path) -> None:
    out = run(tmp_path, raw)
    out_dir = tmp_path / "resized"
    metrics = json.loads((tmp_path / "metrics" / "resize.json").read_text())

    n_good = N_PER_DOMAIN + 1  # + the odd-but-usable image of each domain
    assert metrics["written"] == {"human": {"train": n_good - 3, "test": 3},
                                  "character": {"train": n_good - 3, "test": 3}}
    assert metrics["skipped"] == {"empty": 1, "missing": 1, "not_an_image": 1, "truncated": 2}
    assert metrics["skipped_total"] == len(BAD)
    assert metrics["converted"] == {"grayscale": 1, "transparency": 1}
    assert metrics["size"] == 16
    total_written = sum(sum(v.values()) for v in metrics["written"].values())
    assert total_written + metrics["skipped_total"] == 2 * N_PER_DOMAIN + len(BAD) + len(ODD)
    assert {(e["id"], e["reason"]) for e in metrics["skipped_examples"]} == \
        {(rid, reason) for rid, (_, reason) in BAD.items()}

    # every written file: 16x16 RGB PNG at domain/split/id.png, listed in the manifest
    saved = _files(out_dir)
    assert saved == set(out["file"]) | {"manifest.csv"}
    for f in out["file"]:
        with Image.open(out_dir / f) as im:
            assert im.size == (16, 16) and im.mode == "RGB" and im.format == "PNG"
    assert (out.groupby(["domain", "split"]).size().to_dict()
            == {("character", "test"): 3, ("character", "train"): n_good - 3,
                ("human", "test"): 3, ("human", "train"): n_good - 3})
    assert all(f == f"{d}/{s}/{i}.png" for f, d, s, i in zip(out["file"], out["domain"], out["split"], out["id"]))
    assert set(out["id"]).isdisjoint(BAD)

    # manifest on disk == returned frame; other columns survive; conversions recorded
    disk = pd.read_csv(out_dir / "manifest.csv", dtype={"id": str}, keep_default_na=False)
    assert list(disk["id"]) == list(out["id"])
    assert {"split", "conversions", "hair_colour", "clean", "aligned"} <= set(disk.columns)
    conv = dict(zip(disk["id"], disk["conversions"]))
    assert conv["hodd_gray"] == "grayscale" and conv["codd_rgba"] == "transparency" and conv["h01"] == ""

    # the transparent RGBA image was composited on white, not black
    rgba_file = out.loc[out["id"] == "codd_rgba", "file"].item()
    assert np.asarray(Image.open(out_dir / rgba_file)).min() == 255


def test_split_deterministic_and_independent_of_manifest_order(tmp_path: Path, raw: Path) -> None:
    a = run(tmp_path, raw, "a")
    m = pd.read_csv(raw / "manifest.csv", dtype={"id": str})
    m.iloc[::-1].to_csv(raw / "manifest.csv", index=False)      # reverse the listing order
    b = run(tmp_path, raw, "b")
    c = run(tmp_path, raw, "c", seed=1)
    test = lambda df: set(df.loc[df["split"] == "test", "id"])  # noqa: E731
    assert test(a) == test(b)
    assert test(a) != test(c)
    assert len(test(c)) == 6
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a" / a["file"][0])),
                          np.asarray(Image.open(tmp_path / "b" / a["file"][0])))


def test_boxes_follow_centre_crop_of_non_square_image(tmp_path: Path, raw: Path) -> None:
    out = run(tmp_path, raw).set_index("id")
    src = pd.read_csv(raw / "manifest.csv", dtype={"id": str}).set_index("id")
    # h00 is 40x30: centre crop x in [5, 35), y unchanged; x' = (x*40 - 5) / 30
    for part in ("leye", "reye", "mouth", "nose"):
        x0, x1 = src.at["h00", f"{part}_x0"], src.at["h00", f"{part}_x1"]
        assert out.at["h00", f"{part}_x0"] == pytest.approx((x0 * 40 - 5) / 30)
        assert out.at["h00", f"{part}_x1"] == pytest.approx((x1 * 40 - 5) / 30)
        assert out.at["h00", f"{part}_y0"] == pytest.approx(src.at["h00", f"{part}_y0"])
    # h01 is square: boxes unchanged
    for c in BOX_COLS:
        assert out.at["h01", c] == pytest.approx(src.at["h01", c])


def test_transform_box_clip_and_outside() -> None:
    crop = (5, 0, 35, 30)  # 40x30 -> centre 30x30
    assert transform_box((0.0, 0.0, 0.5, 0.5), 40, 30, crop) == pytest.approx((0.0, 0.0, 0.5, 0.5))
    x0, y0, x1, y1 = transform_box((0.0, 0.2, 0.1, 0.4), 40, 30, crop)   # x in [0, 4) px: outside
    assert all(math.isnan(v) for v in (x0, y0, x1, y1))
    assert transform_box((0.8, 0.1, 1.0, 0.2), 40, 30, crop) == pytest.approx((0.9, 0.1, 1.0, 0.2))  # clipped
    assert all(math.isnan(v) for v in transform_box((math.nan,) * 4, 40, 30, crop))


def test_centre_crop_keeps_the_middle(tmp_path: Path) -> None:
    """A 40x30 image whose left/right 5 px are red: after the crop no red remains."""
    raw = tmp_path / "raw"
    make_raw(raw, bad=False)
    im = Image.new("RGB", (40, 30), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 5, 30))
    im.paste((255, 0, 0), (35, 0, 40, 30))
    im.save(raw / "human" / "h00.png")
    out = run(tmp_path, raw, size=30)
    arr = np.asarray(Image.open(tmp_path / "resized" / out.loc[out["id"] == "h00", "file"].item()))
    assert arr[..., 0].max() < 10 and arr[..., 2].min() > 245


def test_crop_face(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    df = make_raw(raw, bad=False)
    df["aligned"] = True
    df.loc[df["id"].isin(["h02", "h03", "h04"]), "aligned"] = False  # unaligned real photos
    df.to_csv(raw / "manifest.csv", index=False)
    calls: list[tuple[tuple[int, int], float]] = []

    def fake_crop_face(img: Image.Image, margin: float = 0.4) -> Image.Image | None:
        calls.append((img.size, margin))
        if len(calls) == 2:     # second unaligned photo (h03): no face found
            return None
        return img.crop((0, 0, 20, 24))

    monkeypatch.setitem(sys.modules, "face2anime.data.faces",
                        types.SimpleNamespace(crop_face=fake_crop_face))
    out = run(tmp_path, raw, crop="face").set_index("id")
    metrics = json.loads((tmp_path / "metrics" / "resize.json").read_text())
    assert len(calls) == 3 and all(m == 0.4 for _, m in calls)      # aligned rows skip detection
    assert metrics["skipped"] == {"no_face": 1} and "h03" not in out.index
    assert metrics["converted"] == {"face_crop": 2}
    assert out.at["h02", "conversions"] == "face_crop"
    assert all(math.isnan(out.at["h02", c]) for c in BOX_COLS)      # face-cropped: boxes unknown
    assert not any(math.isnan(out.at["h05", c]) for c in BOX_COLS)
    assert Image.open(tmp_path / "resized" / out.at["h04", "file"]).size == (16, 16)

    calls.clear()
    run(tmp_path, raw, "plain", crop="none")
    assert calls == []      # crop: none never calls the detector


def test_too_few_images_is_user_error(tmp_path: Path, raw: Path) -> None:
    with pytest.raises(UserError, match=r"only 13 .*human.*resize\.test_count"):
        run(tmp_path, raw, test_count=13)       # manifest lists 12 + 4 human, 13 usable
    with pytest.raises(UserError, match=r"only 16 .*human.*resize\.test_count"):
        run(tmp_path, raw, test_count=16)       # caught before decoding anything
    assert not (tmp_path / "resized").exists()
    assert not any(p.name.startswith(".resized") for p in tmp_path.iterdir())  # staging cleaned


def test_rerun_with_fewer_images_leaves_no_stale_files(tmp_path: Path, raw: Path) -> None:
    first = run(tmp_path, raw)
    m = pd.read_csv(raw / "manifest.csv", dtype={"id": str})
    m = m[~m["id"].isin(["h05", "c07"])]
    m.to_csv(raw / "manifest.csv", index=False)
    (tmp_path / "resized" / "stray.txt").write_text("old")
    second = run(tmp_path, raw)
    assert len(second) == len(first) - 2
    assert _files(tmp_path / "resized") == set(second["file"]) | {"manifest.csv"}


def test_bad_manifest_is_user_error(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    with pytest.raises(UserError, match="download"):
        run(tmp_path, raw)
    df = make_raw(raw, bad=False)
    pd.concat([df, df.iloc[:1]]).to_csv(raw / "manifest.csv", index=False)
    with pytest.raises(UserError, match="duplicate"):
        run(tmp_path, raw)
    df.assign(domain="cat").to_csv(raw / "manifest.csv", index=False)
    with pytest.raises(UserError, match="domain"):
        run(tmp_path, raw)


def test_path_escape_and_bad_id_skipped(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    df = make_raw(raw, bad=False)
    (tmp_path / "outside.png").write_bytes((raw / "human" / "h01.png").read_bytes())
    extra = pd.DataFrame([_row("hx", "human", "../outside.png"), _row("../evil", "human", "human/h01.png")])
    pd.concat([df, extra]).to_csv(raw / "manifest.csv", index=False)
    run(tmp_path, raw)
    metrics = json.loads((tmp_path / "metrics" / "resize.json").read_text())
    assert metrics["skipped"] == {"bad_id": 1, "bad_path": 1}
    assert not (tmp_path / "evil.png").exists()


def test_main_reads_params(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_raw(tmp_path / "data" / "raw", bad=False)
    def write(**over) -> None:
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params(
            {"seed": 3, "resize.test_count": 2, "resize.crop": "none", "resize.max_pixels": 1000000, **over})))

    write(**{"resize.size": 20})
    main(Path("params.yaml"))
    metrics = json.loads((tmp_path / "metrics" / "resize.json").read_text())
    assert metrics["size"] == 20 and metrics["written"]["human"] == {"train": 10, "test": 2}
    write(**{"resize.size": 8})
    with pytest.raises(UserError, match="resize.size"):
        main(Path("params.yaml"))
    write(**{"resize.size": 32, "resize.crop": "haar"})
    with pytest.raises(UserError, match="resize.crop"):
        main(Path("params.yaml"))
