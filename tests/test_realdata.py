"""face2anime.sources.realdata.collect on generated folders/archives; registry overrides -> file:// (offline)."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from face2anime.core.params import UserError, read_yaml, validate
from face2anime.core.schema import Download
from face2anime.sources import realdata


def _img_bytes(seed: int, size: tuple[int, int], fmt: str, mode: str = "RGB") -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], len(mode) if mode != "L" else 1), dtype=np.uint8)
    img = Image.fromarray(arr.squeeze(-1) if mode == "L" else arr, mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


# name -> bytes: mixed formats, modes and sizes, plus things that are not images
HUMAN = {
    "a.png": _img_bytes(1, (40, 30), "PNG"),
    "b.JPG": _img_bytes(2, (64, 80), "JPEG"),
    "sub/c.jpeg": _img_bytes(3, (90, 50), "JPEG", "L"),
    "sub/deeper/d.png": _img_bytes(4, (33, 33), "PNG", "RGBA"),
    "notes.txt": b"not an image",
    ".hidden.png": _img_bytes(5, (8, 8), "PNG"),
}
CHARACTER = {
    "x.png": _img_bytes(10, (48, 48), "PNG"),
    "y.webp": _img_bytes(11, (20, 60), "WEBP"),
    "z.bmp": _img_bytes(12, (16, 16), "BMP"),
}
N_HUMAN, N_CHAR = 4, 3


def _write_tree(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def _write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def _write_tgz(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return path


def _sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _check_manifest(df: pd.DataFrame, out: Path, n_human: int, n_char: int) -> None:
    assert list(df.columns) == ["id", "domain", "file", "origin", "aligned", "clean"]
    assert df["id"].is_unique
    assert (df["domain"] == "human").sum() == n_human and (df["domain"] == "character").sum() == n_char
    assert df["clean"].isna().all()
    for _, r in df.iterrows():
        f = out / r["file"]
        assert f.is_file() and r["file"].startswith(r["domain"] + "/")
        with Image.open(f) as im:
            im.verify()
    on_disk = {p.relative_to(out).as_posix() for d in ("human", "character") for p in (out / d).iterdir()}
    assert on_disk == set(df["file"])
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []   # staging cleaned up


def _cfg(**kw) -> dict:
    return {"source": "local", "retries": 0, "backoff": 0.001, **kw}


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) and k != "urls" else v
    return out


def _dl(over: dict) -> Download:
    """The typed ``download`` section: the shipped params.yaml's with ``over`` merged in
    (validated like a stage validates it)."""
    base = read_yaml(Path(__file__).resolve().parents[1] / "params.yaml")["download"]
    return validate(Download, _merge(base, over), "params.yaml", "download.")


def test_local_folders(tmp_path):
    h = _write_tree(tmp_path / "photos", HUMAN)
    c = _write_tree(tmp_path / "anime", CHARACTER)
    out = tmp_path / "raw"
    df = realdata.collect("local", _dl(_cfg(local={"human": str(h), "character": str(c)})), out,
                          tmp_path / "cache", progress=False)
    _check_manifest(df, out, N_HUMAN, N_CHAR)
    hum = df[df.domain == "human"]
    assert not hum["aligned"].any() and df[df.domain == "character"]["aligned"].all()
    # extension kept (lower-cased; .jpeg -> .jpg), bytes copied unchanged
    assert sorted(Path(f).suffix for f in hum["file"]) == [".jpg", ".jpg", ".png", ".png"]
    by_origin = dict(zip(hum["origin"], hum["file"]))
    assert (out / by_origin[str(h / "sub/c.jpeg")]).read_bytes() == HUMAN["sub/c.jpeg"]
    assert df.attrs["collect_report"]["skipped_files"] == 2   # notes.txt, .hidden.png
    assert df.attrs["collect_report"]["images"] == {"human": N_HUMAN, "character": N_CHAR}
    # deterministic: a second run gives the same manifest and replaces the outputs
    (out / "human" / "stale.png").write_bytes(b"x")
    df2 = realdata.collect("local", _dl(_cfg(local={"human": str(h), "character": str(c)})), out,
                           tmp_path / "cache", progress=False)
    pd.testing.assert_frame_equal(df, df2)
    assert not (out / "human" / "stale.png").exists()


def test_local_archives_zip_and_tgz_and_file_url(tmp_path):
    hz = _write_zip(tmp_path / "photos.zip", {
        **{f"photos/{k}": v for k, v in HUMAN.items()},
        "__MACOSX/photos/._a.png": b"resource fork junk",
        "../evil.png": HUMAN["a.png"],
    })
    ct = _write_tgz(tmp_path / "anime.tar.gz", CHARACTER)
    out = tmp_path / "raw"
    df = realdata.collect("local", _dl(_cfg(local={"human": str(hz), "character": ct.as_uri(),
                                               "human_aligned": True})),
                          out, tmp_path / "cache", progress=False)
    _check_manifest(df, out, N_HUMAN, N_CHAR)
    assert df[df.domain == "human"]["aligned"].all()
    assert all("!" in o for o in df["origin"])                 # archive!member
    rep = df.attrs["collect_report"]
    assert rep["refused_by_reason"] == {"'..' in path": 1}
    assert rep["refused"][0]["member"] == "../evil.png"
    assert not (tmp_path / "evil.png").exists() and not (out / "evil.png").exists()
    assert not (tmp_path / "cache").joinpath("local").exists()  # file:// used in place, not copied


def test_local_count_takes_a_stable_subset(tmp_path):
    h = _write_tree(tmp_path / "photos", HUMAN)
    c = _write_tree(tmp_path / "anime", CHARACTER)
    cfg = _cfg(local={"human": str(h), "character": str(c), "count": 2})
    a = realdata.collect("local", _dl(cfg), tmp_path / "o1", tmp_path / "cache", progress=False)
    b = realdata.collect("local", _dl(cfg), tmp_path / "o2", tmp_path / "cache", progress=False)
    assert len(a) == 4 and list(a["origin"]) == list(b["origin"])


def test_local_errors(tmp_path):
    c = _write_tree(tmp_path / "anime", CHARACTER)
    out, cache = tmp_path / "raw", tmp_path / "cache"
    with pytest.raises(UserError, match=r"download\.local\.human.*does not exist"):
        realdata.collect("local", _dl(_cfg(local={"human": str(tmp_path / "nope"), "character": str(c)})),
                         out, cache, progress=False)
    with pytest.raises(UserError, match=r"download\.local\.human' is not set"):
        realdata.collect("local", _dl(_cfg(local={"human": "", "character": str(c)})), out, cache, progress=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(UserError, match="no images"):
        realdata.collect("local", _dl(_cfg(local={"human": str(tmp_path / "empty"), "character": str(c)})),
                         out, cache, progress=False)
    (tmp_path / "odd.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(UserError, match="not a folder, an image or a zip/tar"):
        realdata.collect("local", _dl(_cfg(local={"human": str(tmp_path / "odd.bin"), "character": str(c)})),
                         out, cache, progress=False)
    out.mkdir(exist_ok=True)
    with pytest.raises(UserError, match="overlaps"):
        realdata.collect("local", _dl(_cfg(local={"human": str(out), "character": str(c)})), out, cache,
                         progress=False)
    with pytest.raises(UserError, match="not a real-data source"):
        realdata.collect("synthetic", _dl({}), out, cache, progress=False)
    with pytest.raises(UserError, match="download.local.count"):
        realdata.collect("local", _dl(_cfg(local={"human": str(c), "character": str(c), "count": -1})),
                         out, cache, progress=False)


def test_failed_run_keeps_previous_outputs(tmp_path):
    h = _write_tree(tmp_path / "photos", HUMAN)
    c = _write_tree(tmp_path / "anime", CHARACTER)
    out = tmp_path / "raw"
    realdata.collect("local", _dl(_cfg(local={"human": str(h), "character": str(c)})), out, tmp_path / "c",
                     progress=False)
    before = sorted(p.name for p in (out / "human").iterdir())
    with pytest.raises(UserError):
        realdata.collect("local", _dl(_cfg(local={"human": str(h), "character": str(tmp_path / "gone")})),
                         out, tmp_path / "c", progress=False)
    assert sorted(p.name for p in (out / "human").iterdir()) == before
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def _selfie_zip(path: Path) -> Path:
    members = {}
    for split, n in (("trainA", 3), ("testA", 1), ("trainB", 2), ("testB", 2)):
        for i in range(n):
            members[f"selfie2anime/{split}/female_{i}.jpg"] = _img_bytes(100 + i, (32, 32), "JPEG")
    return _write_zip(path, members)


def test_selfie2anime_via_registry_override(tmp_path):
    z = _selfie_zip(tmp_path / "s2a.zip")
    cfg = {"urls": {"selfie2anime": {"url": z.as_uri(), "sha256": _sha256(z)}}}
    out = tmp_path / "raw"
    df = realdata.collect("selfie2anime", _dl(cfg), out, tmp_path / "cache", progress=False)
    _check_manifest(df, out, 4, 4)
    assert df["aligned"].all()
    hum = df[df.domain == "human"]["origin"]
    assert hum.str.contains("/trainA/").sum() == 3 and hum.str.contains("/testA/").sum() == 1
    # a URL-only override keeps the registry's published SHA-256: this zip is not that file
    with pytest.raises(UserError, match="sha256: expected c2a79b0b"):
        realdata.collect("selfie2anime", _dl({"urls": {"selfie2anime": z.as_uri()}}), out, tmp_path / "cache",
                         progress=False)
    with pytest.raises(UserError, match="unknown key"):
        realdata.collect("selfie2anime", _dl({"urls": {"selfie2anim": z.as_uri()}}), out, tmp_path / "cache",
                         progress=False)
    # per-domain count
    df = realdata.collect("selfie2anime", _dl({**cfg, "selfie2anime": {"count": 2}}), out, tmp_path / "cache",
                          progress=False)
    assert df.attrs["collect_report"]["images"] == {"human": 2, "character": 2}


def test_animeface_with_local_humans(tmp_path):
    members = {f"animeface-character-dataset/thumb/{cid:03d}_name{cid}/face_{i}.png":
               _img_bytes(cid * 10 + i, (16, 16), "PNG") for cid in range(3) for i in range(2)}
    members["animeface-character-dataset/README.html"] = b"<html></html>"
    members["animeface-character-dataset/thumb/000_name0/color.csv"] = b"1,2,3"
    z = _write_zip(tmp_path / "af.zip", members)
    h = _write_tree(tmp_path / "photos", HUMAN)
    cfg = {"urls": {"animeface": z.as_uri()}, "animeface": {"human": "local", "count": 4},
           "local": {"human": str(h)}}
    df = realdata.collect("animeface", _dl(cfg), tmp_path / "raw", tmp_path / "cache", progress=False)
    _check_manifest(df, tmp_path / "raw", N_HUMAN, 4)
    assert df[df.domain == "character"]["aligned"].all()
    assert df.attrs["collect_report"]["plan"] == {"human": "local", "character": "animeface"}


def _fake_ffhq(root: Path, n: int = 3) -> tuple[Path, Path]:
    """A miniature ffhq-dataset-v2.json plus the files it lists under root/mirror/."""
    mirror, meta = root / "mirror", {}
    for i in range(n):
        rel = f"thumbnails128x128/00000/{i:05d}.png"
        data = _img_bytes(200 + i, (24, 24), "PNG")
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (mirror / rel).write_bytes(data)
        meta[str(i)] = {
            "category": "training",
            "metadata": {"photo_url": "https://flickr/x", "author": "a", "license": "CC"},
            "image": {"file_url": "https://drive.google.com/uc?id=img", "file_path": f"images1024x1024/00000/{i:05d}.png",
                      "file_size": 1, "file_md5": "0" * 32, "face_landmarks": [[1.0, 2.0]] * 68},
            "thumbnail": {"file_url": "https://drive.google.com/uc?id=t", "file_path": rel,
                          "file_size": len(data), "file_md5": hashlib.md5(data).hexdigest(),
                          "pixel_size": [24, 24]},
            "in_the_wild": {"file_url": "https://x", "file_path": "in-the-wild/x.png", "face_landmarks": [[0, 0]] * 68},
        }
    js = root / "ffhq-dataset-v2.json"
    js.write_text(json.dumps(meta))
    return js, mirror


def test_ffhq_from_mirror_override(tmp_path):
    js, mirror = _fake_ffhq(tmp_path)
    c = _write_tree(tmp_path / "anime", CHARACTER)
    cfg = {"urls": {"ffhq_json": {"url": js.as_uri(), "md5": None}, "ffhq_files": mirror.as_uri()},
           "ffhq": {"count": 2, "character": "local"}, "local": {"character": str(c)}}
    df = realdata.collect("ffhq", _dl(cfg), tmp_path / "raw", tmp_path / "cache", progress=False)
    _check_manifest(df, tmp_path / "raw", 2, N_CHAR)
    hum = df[df.domain == "human"]
    assert list(hum["origin"].str[-9:]) == ["00000.png", "00001.png"]      # images 0..count-1
    assert hum["aligned"].all()
    with pytest.raises(UserError, match="lists only 3"):
        realdata.collect("ffhq", _dl({**cfg, "ffhq": {"count": 5, "character": "local"}}), tmp_path / "raw",
                         tmp_path / "cache", progress=False)
    # a corrupted mirror file fails its per-image md5 from the metadata
    (mirror / "thumbnails128x128/00000/00001.png").write_bytes(b"corrupt")
    with pytest.raises(UserError, match="md5|size"):
        realdata.collect("ffhq", _dl(cfg), tmp_path / "raw", tmp_path / "cache", progress=False)


def test_ffhq_json_checksum_from_registry_is_enforced(tmp_path):
    js, mirror = _fake_ffhq(tmp_path)
    cfg = {"urls": {"ffhq_json": js.as_uri(), "ffhq_files": mirror.as_uri()},
           "ffhq": {"count": 1, "character": "local"}, "local": {"character": str(tmp_path)}}
    with pytest.raises(UserError, match="size: expected 267793842"):
        realdata.collect("ffhq", _dl(cfg), tmp_path / "raw", tmp_path / "cache", progress=False)


def test_load_ffhq_records_drops_heavy_fields(tmp_path):
    js, _ = _fake_ffhq(tmp_path, 2)
    recs = realdata.load_ffhq_records(js, "thumbs128")
    assert [i for i, _ in recs] == [0, 1]
    assert set(recs[0][1]) == {"file_url", "file_path", "file_size", "file_md5"}
    bad = tmp_path / "bad.json"
    bad.write_text('{"0": {"foo": 1}}')
    with pytest.raises(UserError, match="not FFHQ metadata"):
        realdata.load_ffhq_records(bad, "thumbs128")


def test_choose_is_spread_and_stable():
    names = [f"thumb/{c:03d}_x/{i}.png" for c in range(20) for i in range(10)]
    pick = realdata.choose(names, 20)
    assert pick == realdata.choose(list(reversed(names)), 20) and len(pick) == 20
    assert len({p.split("/")[1] for p in pick}) > 5          # not just the first characters
    assert realdata.choose(names, 0) == sorted(names)
