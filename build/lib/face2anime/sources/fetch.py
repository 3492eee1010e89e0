"""Resumable, verified HTTP downloads (standard library only).

:func:`download` streams a URL to ``<dest>.part`` with a progress bar, resumes that part
file with an HTTP ``Range`` request after a dropped connection (or on the next run),
retries connection errors and 5xx answers with exponential backoff, verifies size and
checksums and only then renames the file into place. ``file://`` URLs and plain paths
are verified and used where they are, never copied.

Every failure the user can act on (404, checksum mismatch, an HTML page where a file
was expected, retries exhausted) is a one-line :class:`~face2anime.core.params.UserError`.
"""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from face2anime.core.params import UserError

CHUNK = 1 << 20
USER_AGENT = "face2anime-downloader/0.1 (python urllib)"
# Statuses worth retrying: timeouts, rate limits and server-side failures.
_RETRY_STATUS = {408, 425, 429}

HAND_DOWNLOAD_HINT = (
    "download it by hand in a web browser, then run with download.source: local and "
    "download.local.human / download.local.character pointing at the downloaded archive or its "
    "unpacked folder (e.g. dvc exp run -S download.source=local "
    "-S download.local.human=/path/to/photos.zip -S download.local.character=/path/to/anime_dir)"
)


class _Retryable(Exception):
    """A transient failure; ``progressed`` says whether bytes arrived before it."""

    def __init__(self, msg: str, progressed: bool = False):
        super().__init__(msg)
        self.progressed = progressed


def local_path(url: str | os.PathLike) -> Path | None:
    """The filesystem path behind ``url`` (``file://`` URL or plain path); None for http(s).

    Other schemes (ftp, s3, ...) are a :class:`UserError`.
    """
    s = os.fspath(url)
    parsed = urllib.parse.urlparse(s)
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise UserError(f"unsupported file URL with a host: {s} (use file:///absolute/path)")
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise UserError(f"unsupported URL scheme '{parsed.scheme}' in {s} (use http(s)://, file:// or a path)")
    return Path(s).expanduser()


def file_digests(path: Path) -> tuple[str, str, int]:
    """(sha256 hex, md5 hex, size in bytes) of a file, read in 1 MiB chunks."""
    sha, md5, n = hashlib.sha256(), hashlib.md5(), 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            n += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), n


def mismatches(path: Path, sha256: str | None = None, md5: str | None = None,
               size: int | None = None) -> list[str]:
    """Human-readable 'expected X, got Y' strings for every check that fails (empty = ok)."""
    if size is not None:
        got_size = path.stat().st_size
        if got_size != size:
            return [f"size: expected {size} bytes, got {got_size}"]
    if sha256 is None and md5 is None:
        return []
    got_sha, got_md5, _ = file_digests(path)
    out = []
    if sha256 is not None and got_sha != sha256.lower():
        out.append(f"sha256: expected {sha256.lower()}, got {got_sha}")
    if md5 is not None and got_md5 != md5.lower():
        out.append(f"md5: expected {md5.lower()}, got {got_md5}")
    return out


def looks_like_html(head: bytes) -> bool:
    """True when a body starts like an HTML document (Drive quota / virus-scan pages)."""
    h = head[:512].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return h.startswith(b"<!doctype html") or h.startswith(b"<html")


def _html_error(url: str) -> UserError:
    return UserError(f"got an HTML page instead of the expected file from {url} (typical of "
                     f"Google Drive quota or virus-scan pages): {HAND_DOWNLOAD_HINT}")


_CR = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _content_range(value: str | None) -> tuple[int, int | None]:
    """(start, total) from a ``Content-Range: bytes a-b/total`` header; total None if '*'."""
    m = _CR.match(value or "")
    if not m:
        raise _Retryable(f"bad Content-Range header {value!r}")
    return int(m.group(1)), None if m.group(3) == "*" else int(m.group(3))


def _fetch_once(url: str, part: Path, size: int | None, timeout: float,
                on_total: Callable[[int | None, int], None], on_bytes: Callable[[int], None]) -> None:
    """One HTTP attempt: resume/extend ``part``; raise _Retryable on transient failures."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    if size is not None and offset == size and offset > 0:
        on_total(size, offset)
        return  # already complete; the caller verifies it
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    req = urllib.request.Request(url, headers=headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and offset:
                # Nothing left to send: complete if the server's total equals our part.
                m = re.search(r"/(\d+)\s*$", (e.headers or {}).get("Content-Range", "") or "")
                total = int(m.group(1)) if m else None
                if total == offset:
                    on_total(total, offset)
                    return
                part.unlink()
                raise _Retryable("server refused to resume the partial file; restarting") from None
            if e.code in _RETRY_STATUS or e.code >= 500:
                raise _Retryable(f"HTTP {e.code} {e.reason}") from None
            raise UserError(f"HTTP {e.code} {e.reason} for {url} (check the URL, or override it "
                            "in params download.urls)") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
        raise _Retryable(f"{type(e).__name__}: {getattr(e, 'reason', e)}") from None

    with resp:
        ctype = (resp.headers.get("Content-Type") or "").lower()
        if "text/html" in ctype:
            part.unlink(missing_ok=True)
            raise _html_error(url)
        length_hdr = resp.headers.get("Content-Length")
        length = int(length_hdr) if length_hdr and length_hdr.isdigit() else None
        if resp.status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Retryable(f"server resumed at byte {start}, not {offset}; restarting")
            mode = "ab"
        else:  # 200: the server ignored Range (or none was sent): start from byte 0
            offset, mode = 0, "wb"
            total = length
        on_total(total if total is not None else size, offset)
        got = 0
        try:
            with open(part, mode) as f:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        raise _Retryable(f"connection dropped: {type(e).__name__}", got > 0) from None
                    if not chunk:
                        break
                    if got == 0 and offset == 0 and looks_like_html(chunk):
                        raise _html_error(url)
                    f.write(chunk)
                    got += len(chunk)
                    on_bytes(len(chunk))
        except UserError:
            part.unlink(missing_ok=True)
            raise
        if length is not None and got < length:
            raise _Retryable(f"connection dropped after {got} of {length} bytes", got > 0)


def download(url: str, dest: Path, *, sha256: str | None = None, md5: str | None = None,
             size: int | None = None, retries: int = 4, backoff: float = 1.0,
             progress: bool = True, timeout: float = 30, max_attempts: int | None = None,
             max_seconds: float = 6 * 3600) -> Path:
    """Fetch ``url`` to ``dest`` (resumable, retried, verified, atomic); return the path.

    ``file://`` URLs and plain paths are verified and returned as they are (no copy).
    An existing ``dest`` that passes the checks is returned without network access; one
    that fails them is fetched again. Retries: ``retries`` extra attempts after the first,
    sleeping ``backoff * 2**k`` seconds; an attempt that received bytes resets that count.
    Whatever happens, at most ``max_attempts`` attempts in all (default ``10 * (retries + 1)``)
    and ``max_seconds`` of wall time: a server that ignores Range requests and always drops
    the connection cannot keep the download looping forever.
    A checksum mismatch after download deletes the part file and raises UserError.
    """
    src = local_path(url)
    if src is not None:
        if not src.exists():
            raise UserError(f"file not found: {src} (from {url})")
        if src.is_file():
            bad = mismatches(src, sha256, md5, size)
            if bad:
                raise UserError(f"{src} does not match the expected checksum ({'; '.join(bad)}); "
                                "fix or remove the checksum in params download.urls")
        return src

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if not mismatches(dest, sha256, md5, size):
            return dest
        dest.unlink()  # stale or corrupt cache entry
    part = dest.with_suffix(dest.suffix + ".part")

    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(), transient=True,
                  disable=not progress) as bar:
        task = bar.add_task(dest.name, total=size)
        attempt, total = 0, 0
        cap = max_attempts if max_attempts is not None else 10 * (retries + 1)
        deadline = time.monotonic() + max_seconds
        while True:
            total += 1
            try:
                _fetch_once(url, part, size, timeout,
                            lambda total, done: bar.update(task, total=total, completed=done),
                            lambda n: bar.advance(task, n))
                break
            except _Retryable as e:
                attempt = 1 if e.progressed else attempt + 1
                if total >= cap or time.monotonic() >= deadline:
                    raise UserError(f"download of {url} gave up after {total} attempts in "
                                    f"{max_seconds - (deadline - time.monotonic()):.0f} s: {e} (the server keeps "
                                    f"dropping the connection; {HAND_DOWNLOAD_HINT})") from None
                if attempt > retries:
                    raise UserError(f"download of {url} failed after {retries + 1} attempts: {e} "
                                    f"(re-run to resume from {part.name}; or {HAND_DOWNLOAD_HINT})"
                                    ) from None
                time.sleep(backoff * 2 ** (attempt - 1))

    bad = mismatches(part, sha256, md5, size)
    if bad:
        part.unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {url} ({'; '.join(bad)}); the partial file was "
                        "deleted: re-run, or if the file changed upstream set its checksum in "
                        "params download.urls")
    os.replace(part, dest)
    return dest
