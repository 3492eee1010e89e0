"""face2anime.sources.archive on generated benign and malicious archives."""
from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from face2anime.core.params import UserError
from face2anime.sources import archive


def _all_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            z.writestr(info, target)
    return path


def _tar(path: Path, build, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as t:
        build(t)
    return path


def _add_file(t: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    t.addfile(info, io.BytesIO(data))


def _add_link(t: tarfile.TarFile, name: str, target: str, kind=tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    t.addfile(info)


@pytest.fixture
def sandbox(tmp_path):
    """tmp_path/work is where archives extract; tmp_path/outside must stay untouched."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "work").mkdir()
    return tmp_path


def _assert_nothing_outside(sandbox: Path) -> None:
    assert list((sandbox / "outside").iterdir()) == []
    top = {p.name for p in sandbox.iterdir()}
    assert top <= {"outside", "work", "a.zip", "a.tar.gz", "a.tar", "a.tar.bz2", "a.tar.xz"}, top


def test_good_zip_extracts_fully(sandbox):
    members = {"top.png": b"1", "d/e/f.jpg": b"22", "d/g.txt": b"333"}
    rep = archive.extract(_zip(sandbox / "a.zip", members), sandbox / "work" / "out")
    out = sandbox / "work" / "out"
    for name, data in members.items():
        assert (out / name).read_bytes() == data
    assert sorted(rep.files) == sorted(members)
    assert rep.refused == [] and rep.bytes_written == 6
    assert [p.name for p in (sandbox / "work").iterdir()] == ["out"]   # temp dir renamed away


@pytest.mark.parametrize("mode,suffix", [("w", ".tar"), ("w:gz", ".tar.gz"), ("w:bz2", ".tar.bz2"),
                                         ("w:xz", ".tar.xz")])
def test_good_tar_all_compressions(sandbox, mode, suffix):
    def build(t):
        _add_file(t, "./imgs/a.png", b"aaaa")
        _add_file(t, "imgs/b.png", b"bb")
    rep = archive.extract(_tar(sandbox / f"a{suffix}", build, mode), sandbox / "work" / "out")
    assert (sandbox / "work/out/imgs/a.png").read_bytes() == b"aaaa"
    assert sorted(rep.files) == ["imgs/a.png", "imgs/b.png"]


def test_zip_slip_and_absolute_paths_refused(sandbox):
    members = {"../evil.txt": b"x", "ok/../../evil2.txt": b"x", "/abs/evil3.txt": b"x",
               "..\\win_evil.txt": b"x", "C:/drive.txt": b"x", "fine.png": b"ok"}
    out = sandbox / "work" / "out"
    rep = archive.extract(_zip(sandbox / "a.zip", members), out)
    assert rep.files == ["fine.png"]
    reasons = dict(rep.refused)
    assert reasons["../evil.txt"] == archive.DOTDOT
    assert reasons["ok/../../evil2.txt"] == archive.DOTDOT
    assert reasons["/abs/evil3.txt"] == archive.ABSOLUTE
    assert reasons["..\\win_evil.txt"] == archive.DOTDOT
    assert reasons["C:/drive.txt"] == archive.ABSOLUTE
    assert _all_files(out) == {"fine.png"}
    _assert_nothing_outside(sandbox)
    assert "5 refused" in rep.summary()


def test_tar_symlink_escape_refused_and_no_link_created(sandbox):
    def build(t):
        _add_link(t, "esc", "../../outside")                 # dir link out of the target
        _add_link(t, "abs", "/etc/passwd")
        _add_file(t, "esc/pwned.txt", b"through the link")   # write-through attempt
        _add_file(t, "real.png", b"png")
        _add_link(t, "alias.png", "real.png")                # internal: materialised as a copy
        _add_link(t, "sub/up.png", "../real.png")            # internal, relative to its dir
    out = sandbox / "work" / "out"
    rep = archive.extract(_tar(sandbox / "a.tar.gz", build), out)
    reasons = dict(rep.refused)
    assert reasons["esc"] == archive.SYMLINK_ESCAPES
    assert reasons["abs"] == archive.SYMLINK_ESCAPES
    assert "esc/pwned.txt" in rep.files   # written as a plain directory + file inside the target
    assert (out / "alias.png").read_bytes() == b"png" and not (out / "alias.png").is_symlink()
    assert (out / "sub/up.png").read_bytes() == b"png"
    assert not any(p.is_symlink() for p in out.rglob("*"))
    _assert_nothing_outside(sandbox)


def test_tar_hardlink_escape_refused(sandbox):
    secret = sandbox / "outside" / "secret.txt"

    def build(t):
        _add_link(t, "hl", "../outside/secret.txt", tarfile.LNKTYPE)
        _add_link(t, "hl_abs", str(secret), tarfile.LNKTYPE)
        _add_file(t, "a.png", b"A")
        _add_link(t, "hl_ok.png", "a.png", tarfile.LNKTYPE)
        _add_link(t, "hl_missing.png", "nope.png", tarfile.LNKTYPE)
    out = sandbox / "work" / "out"
    rep = archive.extract(_tar(sandbox / "a.tar", build, "w"), out)
    reasons = dict(rep.refused)
    assert reasons["hl"] == archive.HARDLINK_ESCAPES
    assert reasons["hl_abs"] == archive.HARDLINK_ESCAPES
    assert reasons["hl_missing.png"] == archive.LINK_UNRESOLVED
    assert (out / "hl_ok.png").read_bytes() == b"A"
    assert (out / "hl_ok.png").stat().st_nlink == 1    # a copy, not a hard link
    assert _all_files(out) == {"a.png", "hl_ok.png"}
    _assert_nothing_outside(sandbox)


def test_zip_symlink_member_escape_refused(sandbox):
    out = sandbox / "work" / "out"
    rep = archive.extract(_zip(sandbox / "a.zip", {"x.png": b"X"},
                               symlinks={"evil": "../../outside", "good.png": "x.png"}), out)
    assert dict(rep.refused)["evil"] == archive.SYMLINK_ESCAPES
    assert (out / "good.png").read_bytes() == b"X"
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_device_and_fifo_refused(sandbox):
    def build(t):
        for name, typ in (("dev", tarfile.CHRTYPE), ("blk", tarfile.BLKTYPE), ("fifo", tarfile.FIFOTYPE)):
            info = tarfile.TarInfo(name)
            info.type = typ
            t.addfile(info)
        _add_file(t, "ok.png", b"1")
    rep = archive.extract(_tar(sandbox / "a.tar", build, "w"), sandbox / "work" / "out")
    assert rep.refused_by_reason() == {archive.SPECIAL: 3}
    assert rep.files == ["ok.png"]


def test_bomb_too_many_entries(sandbox):
    members = {f"f{i}.png": b"" for i in range(50)}
    with pytest.raises(UserError, match="download.max_entries"):
        archive.extract(_zip(sandbox / "a.zip", members), sandbox / "work" / "out", max_entries=20)

    def build(t):
        for i in range(50):
            _add_file(t, f"f{i}.png", b"")
    with pytest.raises(UserError, match="more than 20 entries"):
        archive.extract(_tar(sandbox / "a.tar.gz", build), sandbox / "work" / "out", max_entries=20)
    assert list((sandbox / "work").iterdir()) == []    # nothing left behind, target not created


def test_bomb_too_many_bytes(sandbox):
    # 4 MB of zeros compresses to a few KB: a small archive that expands a lot.
    z = _zip(sandbox / "a.zip", {"zeros.bin": bytes(4_000_000)})
    assert z.stat().st_size < 50_000
    with pytest.raises(UserError, match="download.max_extract_bytes"):
        archive.extract(z, sandbox / "work" / "out", max_bytes=1_000_000)

    def build(t):
        for i in range(4):
            _add_file(t, f"z{i}.bin", bytes(400_000))
    with pytest.raises(UserError, match="uncompressed bytes"):
        archive.extract(_tar(sandbox / "a.tar.gz", build), sandbox / "work" / "out", max_bytes=1_000_000)
    assert list((sandbox / "work").iterdir()) == []


def test_zip_lying_about_its_size_is_caught(sandbox):
    """Declared size patched down in both headers: must not write past the declared size."""
    data = bytes(200_000)
    z = _zip(sandbox / "a.zip", {"lie.bin": data})
    raw = bytearray(z.read_bytes())
    size_le = len(data).to_bytes(4, "little")
    small = (1000).to_bytes(4, "little")
    assert raw.count(size_le) == 2          # local header + central directory
    z.write_bytes(bytes(raw.replace(size_le, small)))
    with pytest.raises(UserError):
        archive.extract(z, sandbox / "work" / "out", max_bytes=10_000_000)
    assert list((sandbox / "work").iterdir()) == []


def test_members_filter_and_existing_target_replaced(sandbox):
    out = sandbox / "work" / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    rep = archive.extract(_zip(sandbox / "a.zip", {"a.png": b"1", "b.txt": b"2", "c/d.png": b"3"}), out,
                          members_filter=lambda n: n.endswith(".png"))
    assert _all_files(out) == {"a.png", "c", "c/d.png"}
    assert rep.skipped == 1
    assert [p.name for p in (sandbox / "work").iterdir()] == ["out"]


def test_not_an_archive_and_damaged(sandbox):
    bad = sandbox / "a.zip"
    bad.write_bytes(b"this is not an archive at all")
    with pytest.raises(UserError, match="not a readable zip or tar"):
        archive.extract(bad, sandbox / "work" / "out")
    good = _tar(sandbox / "a.tar.gz", lambda t: _add_file(t, "x.bin", os.urandom(100_000)))
    good.write_bytes(good.read_bytes()[:20_000])       # truncated download
    with pytest.raises(UserError, match="damaged"):
        archive.extract(good, sandbox / "work" / "out")
    assert list((sandbox / "work").iterdir()) == []


def test_list_files_matches_extract(sandbox):
    members = {"../evil.png": b"x", "a/b.png": b"1", "dir/": b"", "c.txt": b"2"}
    z = _zip(sandbox / "a.zip", members)
    assert archive.list_files(z) == ["a/b.png", "c.txt"]
    with pytest.raises(UserError, match="entries"):
        archive.list_files(z, max_entries=2)
