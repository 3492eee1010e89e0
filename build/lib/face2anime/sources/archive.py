"""Safe extraction of zip and tar (.tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) archives.

:func:`extract` never trusts member names: it refuses (and reports, with a reason)
absolute paths, ``..`` components, links that point outside the target, device files
and the like; it never creates a link on disk (links that stay inside the archive are
materialised as copies of the file they point to); it caps the entry count and the
total uncompressed size (declared sizes *and* bytes actually written, so a zip that
lies about its sizes is still caught); and it extracts into a temporary directory next
to the target that is renamed into place only when everything went well.
"""
from __future__ import annotations

import errno
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterator

from face2anime.core.params import UserError

DEFAULT_MAX_BYTES = 20 * 1024**3     # 20 GiB uncompressed
DEFAULT_MAX_ENTRIES = 500_000
_COPY_CHUNK = 1 << 20
_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EILSEQ, errno.EINVAL}
_MAX_LINK_TARGET = 4096              # a zip "symlink" member holds its target as data

# Refusal reasons (stable strings: tests and summaries group by them).
ABSOLUTE = "absolute path"
DOTDOT = "'..' in path"
BAD_NAME = "invalid name"
SYMLINK_ESCAPES = "symlink points outside the target"
HARDLINK_ESCAPES = "hardlink points outside the target"
LINK_UNRESOLVED = "link to a directory or missing member"
SPECIAL = "device, fifo or other special file"
ENCRYPTED = "encrypted member"
PARENT_IS_FILE = "a parent path is a file"
IS_DIRECTORY = "path is already a directory"
WRITE_ERROR = "write error"


@dataclass
class ExtractReport:
    """What :func:`extract` did.

    ``files``: extracted regular files as POSIX paths relative to the target, in archive
    order; ``refused``: ``(member name, reason)`` for every refused member; ``skipped``:
    members left out by ``members_filter`` (not an error); ``bytes_written``: total size
    of the extracted files.
    """

    archive: str
    files: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    bytes_written: int = 0

    def refused_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason for _, reason in self.refused))

    def summary(self) -> str:
        """One line, e.g. ``a.zip: 120 files (3.1 MB), 2 refused (absolute path: 2), 5 skipped``."""
        s = f"{self.archive}: {len(self.files)} files ({self.bytes_written / 1e6:.1f} MB)"
        if self.refused:
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.refused_by_reason().items()))
            s += f", {len(self.refused)} refused ({reasons})"
        if self.skipped:
            s += f", {self.skipped} skipped by filter"
        return s


@dataclass
class _Entry:
    """An archive member, format-independent. kind: file | dir | symlink | hardlink | special."""

    name: str
    kind: str
    size: int = 0
    link: str = ""
    opener: Callable[[], IO[bytes]] | None = None
    refuse: str | None = None


def normalise(name: str) -> tuple[list[str] | None, str | None]:
    """Split a member name into safe path parts, or say why it is refused.

    Backslashes count as separators. Returns ``(parts, None)``, ``([], None)`` for the
    archive root (``./``), or ``(None, reason)``.
    """
    if "\x00" in name:
        return None, BAD_NAME
    n = name.replace("\\", "/")
    if n.startswith("/") or re.match(r"^[A-Za-z]:", n):
        return None, ABSOLUTE
    parts = [p for p in n.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, DOTDOT
    return parts, None


def _zip_entries(zf: zipfile.ZipFile) -> Iterator[_Entry]:
    for info in zf.infolist():
        mode = info.external_attr >> 16
        if info.flag_bits & 0x1:
            yield _Entry(info.filename, "file", info.file_size, refuse=ENCRYPTED)
        elif stat.S_ISLNK(mode):
            if info.file_size > _MAX_LINK_TARGET:
                yield _Entry(info.filename, "symlink", refuse=BAD_NAME)
                continue
            target = zf.read(info).decode("utf-8", "replace")
            yield _Entry(info.filename, "symlink", link=target)
        elif info.is_dir():
            yield _Entry(info.filename, "dir")
        elif mode and (stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode)
                       or stat.S_ISSOCK(mode)):
            yield _Entry(info.filename, "special", refuse=SPECIAL)
        else:
            yield _Entry(info.filename, "file", info.file_size,
                         opener=lambda info=info: zf.open(info))


def _tar_entries(tf: tarfile.TarFile, target: Path) -> Iterator[_Entry]:
    data_filter = getattr(tarfile, "data_filter", None)  # Python >= 3.11.4: extra checks
    for m in tf:
        if m.issym():
            e = _Entry(m.name, "symlink", link=m.linkname)
        elif m.islnk():
            e = _Entry(m.name, "hardlink", link=m.linkname)
        elif m.isdir():
            e = _Entry(m.name, "dir")
        elif m.isreg():
            e = _Entry(m.name, "file", m.size, opener=lambda m=m: tf.extractfile(m))
        else:
            e = _Entry(m.name, "special", refuse=SPECIAL)
        if e.refuse is None and data_filter is not None and normalise(m.name)[1] is None:
            try:
                data_filter(m, str(target))
            except tarfile.FilterError as err:
                # Ours are checked first (clearer reasons); this only adds what they miss.
                e.refuse = _own_link_reason(e) or f"refused by tarfile data filter: {type(err).__name__}"
        yield e


def _own_link_reason(e: _Entry) -> str | None:
    if e.kind == "symlink":
        return SYMLINK_ESCAPES if _link_target(e) is None else None
    if e.kind == "hardlink":
        return HARDLINK_ESCAPES if _link_target(e) is None else None
    return None


def _link_target(e: _Entry) -> list[str] | None:
    """Parts of the path a link points to (relative to the target root), None if outside."""
    link = e.link.replace("\\", "/")
    if not link or link.startswith("/") or re.match(r"^[A-Za-z]:", link):
        return None
    if e.kind == "symlink":  # relative to the link's own directory
        base = posixpath.dirname(e.name.replace("\\", "/").strip("/"))
        link = posixpath.join(base, link)
    norm = posixpath.normpath(link)
    if norm == ".." or norm.startswith("../") or norm.startswith("/"):
        return None
    return [p for p in norm.split("/") if p not in ("", ".")]


def _open_archive(archive: Path):
    if zipfile.is_zipfile(archive):
        return "zip", zipfile.ZipFile(archive)
    try:
        if tarfile.is_tarfile(archive):
            return "tar", tarfile.open(archive, "r:*")
    except (OSError, tarfile.TarError):
        pass
    raise UserError(f"{archive}: not a readable zip or tar archive")


def extract(archive: Path, target: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
            max_entries: int = DEFAULT_MAX_ENTRIES,
            members_filter: Callable[[str], bool] | None = None,
            progress: bool = False) -> ExtractReport:
    """Extract ``archive`` (zip or tar, any compression) into directory ``target``.

    ``members_filter(path)`` gets each regular file's normalised POSIX path and returns
    False to skip it (counted in ``report.skipped``). ``max_entries`` caps the number of
    members in the archive and ``max_bytes`` the uncompressed bytes of the selected
    files; exceeding either raises :class:`UserError` and leaves ``target`` untouched.
    An existing ``target`` is replaced only after a successful extraction.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise UserError(f"archive not found: {archive}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.extract-", dir=target.parent))
    report = ExtractReport(archive=archive.name)
    try:
        kind, handle = _open_archive(archive)
        with handle:
            if kind == "zip":
                _check_zip_declared(handle, archive, max_bytes, max_entries, members_filter)
                entries = _zip_entries(handle)
                total = len(handle.infolist())
            else:
                entries = _tar_entries(handle, tmp)
                total = None
            _extract_entries(entries, tmp, report, archive, max_bytes, max_entries,
                             members_filter, progress, total)
        swap_into_place(tmp, target)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError,
            NotImplementedError) as e:  # NotImplementedError: unsupported zip compression
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"{archive}: damaged or unreadable archive ({type(e).__name__}: {e})") from None
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno is None:  # gzip/bz2 stream errors carry no errno; filesystem errors do
            raise UserError(f"{archive}: damaged or unreadable archive ({type(e).__name__}: {e})") from None
        raise UserError(f"could not extract {archive} into {target.parent}: "
                        f"{e.strerror or e} (disk full or not writable?)") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report


def list_files(archive: Path, *, max_entries: int = DEFAULT_MAX_ENTRIES) -> list[str]:
    """Normalised POSIX paths of the regular files in ``archive`` that :func:`extract`
    would accept by name (refused names are left out), in archive order. Reads only the
    zip directory or the tar headers; more than ``max_entries`` members is a UserError."""
    archive = Path(archive)
    if not archive.is_file():
        raise UserError(f"archive not found: {archive}")
    out: list[str] = []
    try:
        kind, handle = _open_archive(archive)
        with handle:
            if kind == "zip":
                infos = handle.infolist()
                if len(infos) > max_entries:
                    raise _bomb(archive, f"{len(infos)} entries > limit {max_entries}")
                names = ((i.filename, not i.is_dir()) for i in infos)
            else:
                names = ((m.name, m.isreg() or m.issym() or m.islnk()) for m in handle)
            for n, (name, is_file) in enumerate(names, 1):
                if n > max_entries:
                    raise _bomb(archive, f"more than {max_entries} entries")
                parts, reason = normalise(name)
                if is_file and reason is None and parts:
                    out.append("/".join(parts))
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as e:
        raise UserError(f"{archive}: damaged or unreadable archive ({type(e).__name__}: {e})") from None
    return out


def is_archive(path: Path) -> bool:
    """True for a file that zipfile or tarfile can open."""
    try:
        return Path(path).is_file() and (zipfile.is_zipfile(path) or tarfile.is_tarfile(path))
    except OSError:
        return False


def _bomb(archive: Path, what: str) -> UserError:
    return UserError(f"{archive}: refusing to extract, {what} (possible archive bomb; raise "
                     "params download.max_extract_bytes / download.max_entries if the archive is genuine)")


def _check_zip_declared(zf: zipfile.ZipFile, archive: Path, max_bytes: int, max_entries: int,
                        members_filter: Callable[[str], bool] | None) -> None:
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise _bomb(archive, f"{len(infos)} entries > limit {max_entries}")
    declared = 0
    for i in infos:
        if i.is_dir():
            continue
        parts, _ = normalise(i.filename)
        if parts and members_filter is not None and not members_filter("/".join(parts)):
            continue
        declared += i.file_size
    if declared > max_bytes:
        raise _bomb(archive, f"declared uncompressed size {declared} bytes > limit {max_bytes}")


def _extract_entries(entries: Iterator[_Entry], root: Path, report: ExtractReport, archive: Path,
                     max_bytes: int, max_entries: int,
                     members_filter: Callable[[str], bool] | None, progress: bool,
                     total: int | None) -> None:
    from rich.progress import Progress

    written: dict[tuple[str, ...], Path] = {}   # file parts -> path on disk
    made: set[tuple[str, ...]] = set()          # directories created so far
    links: list[tuple[_Entry, list[str]]] = []
    declared = 0
    count = 0
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task(f"extracting {archive.name}", total=total)
        for e in entries:
            count += 1
            bar.advance(task)
            if count > max_entries:
                raise _bomb(archive, f"more than {max_entries} entries")
            parts, reason = normalise(e.name)
            reason = reason or e.refuse
            if reason is not None:
                report.refused.append((e.name, reason))
                continue
            if not parts:  # the archive root itself ("./")
                continue
            if e.kind in ("file", "symlink", "hardlink") and members_filter is not None \
                    and not members_filter("/".join(parts)):
                report.skipped += 1
                continue
            if e.kind in ("symlink", "hardlink"):
                links.append((e, parts))
                continue
            dest = root.joinpath(*parts)
            problem = _prepare_parent(root, parts, e.kind == "dir", made)
            if problem:
                report.refused.append((e.name, problem))
                continue
            if e.kind == "dir":
                dest.mkdir(exist_ok=True)
                continue
            declared += e.size
            if declared > max_bytes:
                raise _bomb(archive, f"more than {max_bytes} uncompressed bytes")
            try:
                n = _copy_member(e, dest, max_bytes - report.bytes_written, archive, max_bytes)
            except OSError as err:
                if err.errno not in _NAME_ERRNOS:
                    raise
                dest.unlink(missing_ok=True)
                report.refused.append((e.name, f"{WRITE_ERROR}: {err.strerror or err}"))
                continue
            report.bytes_written += n
            key = tuple(parts)
            if key not in written:
                report.files.append("/".join(parts))
            written[key] = dest
        for e, parts in links:  # after all files, so forward references resolve
            _materialise_link(e, parts, root, written, report, archive, max_bytes)


def _prepare_parent(root: Path, parts: list[str], is_dir: bool,
                    made: set[tuple[str, ...]] | None = None) -> str | None:
    """Create the parent directories of ``parts`` under ``root``; a reason if impossible.

    ``made`` caches directories already created and checked, so deep archives with many
    files per folder cost one set lookup per file instead of a stat per path component.
    """
    made = set() if made is None else made
    parent = tuple(parts[:-1])
    if parent not in made:
        cur = root
        for i, p in enumerate(parent):
            cur = cur / p
            if parent[: i + 1] in made:
                continue
            if cur.is_symlink() or (cur.exists() and not cur.is_dir()):
                return PARENT_IS_FILE
            cur.mkdir(exist_ok=True)
            # Defence in depth: a resolved directory must stay under root (no links are created).
            real_root = os.path.realpath(root)
            if os.path.commonpath([os.path.realpath(cur), real_root]) != real_root:
                return DOTDOT
            made.add(parent[: i + 1])
    dest = root.joinpath(*parts)
    if not is_dir and dest.is_dir():
        return IS_DIRECTORY
    if is_dir and dest.exists() and not dest.is_dir():
        return PARENT_IS_FILE
    if dest.is_symlink():
        return PARENT_IS_FILE
    return None


def _copy_member(e: _Entry, dest: Path, budget: int, archive: Path, max_bytes: int) -> int:
    """Stream a member to ``dest`` counting real bytes; abort past its declared size or the budget."""
    assert e.opener is not None
    n = 0
    with e.opener() as src, open(dest, "wb") as out:
        while chunk := src.read(_COPY_CHUNK):
            n += len(chunk)
            if n > budget:
                raise _bomb(archive, f"more than {max_bytes} bytes actually written")
            if n > e.size:
                raise _bomb(archive, f"member {e.name!r} holds more data than it declares ({e.size} bytes)")
            out.write(chunk)
    return n


def _materialise_link(e: _Entry, parts: list[str], root: Path, written: dict[tuple[str, ...], Path],
                      report: ExtractReport, archive: Path, max_bytes: int) -> None:
    """Write an in-archive link as a copy of the regular file it names; refuse the rest."""
    target = _link_target(e)
    if target is None:
        report.refused.append((e.name, SYMLINK_ESCAPES if e.kind == "symlink" else HARDLINK_ESCAPES))
        return
    src = written.get(tuple(target))
    if src is None or not src.is_file():
        report.refused.append((e.name, LINK_UNRESOLVED))
        return
    problem = _prepare_parent(root, parts, is_dir=False)
    if problem:
        report.refused.append((e.name, problem))
        return
    size = src.stat().st_size
    if report.bytes_written + size > max_bytes:
        raise _bomb(archive, f"more than {max_bytes} bytes actually written")
    dest = root.joinpath(*parts)
    if dest.resolve() != src.resolve():
        shutil.copyfile(src, dest)
    report.bytes_written += size
    if tuple(parts) not in written:
        report.files.append("/".join(parts))
    written[tuple(parts)] = dest


def swap_into_place(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` onto ``target``; an existing target is moved aside first, then deleted."""
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.replace(target, old / "x")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
