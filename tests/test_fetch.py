"""face2anime.sources.fetch against a local HTTP server on 127.0.0.1 (no internet)."""
from __future__ import annotations

import hashlib
import http.server
import random
import threading
from pathlib import Path

import pytest

from face2anime.core.params import UserError
from face2anime.sources import fetch

PAYLOAD = random.Random(0).randbytes(300_000)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


class _State:
    """Per-server knobs and a log of the requests seen."""

    def __init__(self) -> None:
        self.drop_once = False          # first full-body reply is cut in the middle
        self.ignore_range = False       # always answer 200 with the whole body
        self.requests: list[tuple[str, str | None]] = []   # (path, Range header)
        self.fail_5xx = 0               # this many 503 answers first
        self.drop_always = False        # every reply is cut in the middle


class _Handler(http.server.BaseHTTPRequestHandler):
    state: _State

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        st = self.state
        st.requests.append((self.path, self.headers.get("Range")))
        if self.path == "/missing.zip":
            self.send_error(404, "Not Found")
            return
        if self.path == "/quota.zip":
            body = b"<!DOCTYPE html><html><title>Google Drive - Quota exceeded</title></html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")  # lies; body sniffed
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path == "/scan.zip":
            body = b"<html><body>Google Drive can't scan this file for viruses.</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if st.fail_5xx > 0:
            st.fail_5xx -= 1
            self.send_error(503, "Busy")
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and not st.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if st.drop_always or (st.drop_once and start == 0):
            st.drop_once = False
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return  # connection closes with the body incomplete
        self.wfile.write(body)


@pytest.fixture
def server():
    state = _State()
    handler = type("H", (_Handler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(5)


FAST = dict(backoff=0.001, progress=False, timeout=5)


def test_plain_download_verifies_and_renames(server, tmp_path):
    url, st = server
    dest = fetch.download(url + "/data.zip", tmp_path / "data.zip", sha256=SHA, md5=MD5,
                          size=len(PAYLOAD), **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "data.zip.part").exists()
    # present with the right checksum: no second request
    n = len(st.requests)
    fetch.download(url + "/data.zip", tmp_path / "data.zip", sha256=SHA, **FAST)
    assert len(st.requests) == n


def test_resume_after_dropped_connection(server, tmp_path):
    url, st = server
    st.drop_once = True
    dest = fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert len(st.requests) == 2
    assert st.requests[0][1] is None
    assert st.requests[1][1] == f"bytes={len(PAYLOAD) // 3}-"   # resumed, not restarted


def test_resume_existing_part_file_on_rerun(server, tmp_path):
    url, st = server
    (tmp_path / "d.zip.part").write_bytes(PAYLOAD[:1000])
    dest = fetch.download(url + "/data.zip", tmp_path / "d.zip", md5=MD5, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert st.requests == [("/data.zip", "bytes=1000-")]


def test_complete_part_file_gets_416_and_is_accepted(server, tmp_path):
    url, st = server
    (tmp_path / "d.zip.part").write_bytes(PAYLOAD)
    dest = fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    url, st = server
    st.ignore_range = True
    (tmp_path / "d.zip.part").write_bytes(b"garbage-prefix" * 10)
    dest = fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD   # 200 reply overwrote the part instead of appending
    assert st.requests[0][1] is not None


def test_drop_with_server_ignoring_range(server, tmp_path):
    url, st = server
    st.ignore_range, st.drop_once = True, True
    dest = fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_part_and_says_expected_vs_got(server, tmp_path):
    url, _ = server
    wrong = "0" * 64
    with pytest.raises(UserError) as e:
        fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=wrong, **FAST)
    msg = str(e.value)
    assert wrong in msg and SHA in msg and "expected" in msg
    assert list(tmp_path.iterdir()) == []


def test_html_instead_of_archive(server, tmp_path):
    url, _ = server
    for path in ("/quota.zip", "/scan.zip"):
        with pytest.raises(UserError) as e:
            fetch.download(url + path, tmp_path / "x.zip", **FAST)
        msg = str(e.value)
        assert "download.local.human" in msg and "download.source" in msg and "local" in msg
        assert "\n" not in msg
    assert list(tmp_path.iterdir()) == []


def test_404_fails_fast_without_retries(server, tmp_path):
    url, st = server
    with pytest.raises(UserError, match="404"):
        fetch.download(url + "/missing.zip", tmp_path / "m.zip", retries=5, backoff=10, progress=False)
    assert len(st.requests) == 1   # backoff=10 s would have made a retry obvious


def test_5xx_is_retried(server, tmp_path):
    url, st = server
    st.fail_5xx = 2
    dest = fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, retries=3, **FAST)
    assert dest.read_bytes() == PAYLOAD
    assert len(st.requests) == 3


def test_retries_exhausted_is_user_error(server, tmp_path):
    url, st = server
    st.fail_5xx = 10
    with pytest.raises(UserError, match="after 3 attempts"):
        fetch.download(url + "/data.zip", tmp_path / "d.zip", retries=2, **FAST)


def test_connection_refused_is_user_error(tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(UserError, match="failed after 2 attempts"):
        fetch.download(f"http://127.0.0.1:{port}/x.zip", tmp_path / "x.zip", retries=1, **FAST)


def test_file_url_and_plain_path_are_used_in_place(tmp_path):
    src = tmp_path / "local.bin"
    src.write_bytes(PAYLOAD)
    assert fetch.download(src.as_uri(), tmp_path / "elsewhere.bin", sha256=SHA, progress=False) == src
    assert fetch.download(str(src), tmp_path / "elsewhere.bin", md5=MD5, progress=False) == src
    assert not (tmp_path / "elsewhere.bin").exists()
    with pytest.raises(UserError, match="checksum"):
        fetch.download(src.as_uri(), tmp_path / "e.bin", sha256="1" * 64, progress=False)
    assert src.exists()   # a user's own file is never deleted
    with pytest.raises(UserError, match="not found"):
        fetch.download((tmp_path / "nope.zip").as_uri(), tmp_path / "e.bin", progress=False)


def test_stale_destination_is_fetched_again(server, tmp_path):
    url, st = server
    (tmp_path / "d.zip").write_bytes(b"old contents")
    dest = fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, **FAST)
    assert dest.read_bytes() == PAYLOAD


def test_unsupported_scheme():
    with pytest.raises(UserError, match="scheme"):
        fetch.download("ftp://example.org/x.zip", Path("x.zip"), progress=False)


def test_server_that_ignores_range_and_always_drops_gives_up(server, tmp_path):
    """Each attempt receives bytes (which resets the retry count) but never the whole file, and
    the restarts from zero never finish: total attempts are capped, so this cannot loop forever."""
    url, st = server
    st.ignore_range, st.drop_always = True, True
    with pytest.raises(UserError, match="gave up after 7 attempts"):
        fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, retries=2, max_attempts=7, **FAST)
    assert len(st.requests) == 7


def test_total_time_is_capped(server, tmp_path):
    url, st = server
    st.ignore_range, st.drop_always = True, True
    with pytest.raises(UserError, match="gave up after"):
        fetch.download(url + "/data.zip", tmp_path / "d.zip", sha256=SHA, retries=2, max_seconds=0.0, **FAST)
    assert len(st.requests) == 1
