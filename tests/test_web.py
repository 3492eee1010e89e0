"""`face2anime serve`: every refusal (4xx, nothing written), the survey's flow, a SIGKILL in the
middle of a stream of answers, and a load test of 20 concurrent raters. The app runs in
process (Starlette's TestClient) or as a real server on a free 127.0.0.1 port."""
from __future__ import annotations

import glob
import http.client
import io
import json
import os
import signal
import struct
import tempfile
import threading
import time
import urllib.parse
import zlib
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from test_survey import fake_survey
from webutil import serve

from face2anime.survey.items import QUESTIONS, ItemSet
from face2anime.survey.responses import FIELDS, HEADER, read_responses
from face2anime.web.app import COOKIE, Settings, create_app

HTML = {"Accept": "text/html"}


@pytest.fixture
def site(tmp_path: Path):
    items, _ = fake_survey(tmp_path)
    settings = Settings(items_dir=items, responses=tmp_path / "responses.csv", cyclegan_dir=tmp_path / "no-models",
                        classifier_dir=tmp_path / "no-classifier", params_file=tmp_path / "params.yaml",
                        max_upload_bytes=200_000, max_pixels=1_000_000)
    with TestClient(create_app(settings), base_url="http://127.0.0.1") as client:
        yield client, ItemSet(items), settings


def png_bytes(w: int = 64, h: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG that claims w x h pixels (a decompression bomb as far as the header goes)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def upload_leftovers() -> list[str]:
    return glob.glob(os.path.join(tempfile.gettempdir(), "face2anime-upload-*"))


@pytest.mark.parametrize("files,status,message", [
    (None, 400, "missing field 'photo'"),
    ({"photo": ("x.jpg", b"<html>quota exceeded</html>", "image/jpeg")}, 400, "not an image"),
    ({"photo": ("x.png", png_bytes()[:300], "image/png")}, 400, "truncated"),
    ({"photo": ("x.png", b"", "image/png")}, 400, "empty"),
    ({"photo": ("x.png", os.urandom(300_000), "image/png")}, 413, "too large"),
    ({"photo": ("bomb.png", png_header_only(2000, 2000), "image/png")}, 413, "image too large"),
    ({"photo": ("bomb.png", png_header_only(30000, 30000), "image/png")}, 413, "image too large"),
    ({"photo": ("ok.png", png_bytes(), "image/png")}, 409, "no trained models"),
])
def test_upload_refusals_are_4xx_and_keep_nothing(site, files, status: int, message: str) -> None:
    client, _, settings = site
    before = set(upload_leftovers())
    r = client.post("/convert", files=files or {}, data={"x": "1"} if files is None else None)
    assert r.status_code == status and message in r.json()["error"], r.text
    r = client.post("/convert", files=files or {}, data={"x": "1"} if files is None else None, headers=HTML)
    assert r.status_code == status and message in unescape(r.text) and "<form" in r.text   # the page again + error
    assert "Traceback" not in r.text and set(upload_leftovers()) == before
    assert not settings.responses.exists() or settings.responses.read_text() == HEADER


def test_oversized_request_is_refused_before_it_is_read(site) -> None:
    client, _, _ = site
    r = client.post("/convert", content=b"x" * 10, headers={"Content-Length": str(50 * 1024 * 1024),
                                                           "Content-Type": "multipart/form-data; boundary=b"})
    assert r.status_code == 413 and "too large" in r.json()["error"]


def answer_form(rater: str, item: dict, v: int = 4) -> dict:
    if item["kind"] == "rate":
        return {"rater": rater, "item": item["id"], **{q: str(v) for q in QUESTIONS}}
    return {"rater": rater, "item": item["id"], "better": "same"}


def test_survey_flow_resume_idempotence_and_refusals(site) -> None:
    client, items, settings = site
    assert client.get("/", headers=HTML).status_code == 200               # convert page without models
    r = client.get("/survey", headers=HTML)
    assert r.status_code == 200 and "Start" in r.text
    r = client.get("/survey/start", follow_redirects=False)
    assert r.status_code == 303 and COOKIE in r.cookies
    rater = r.cookies[COOKIE]
    assert r.headers["location"] == f"/survey/r/{rater}"
    assert client.get("/survey", follow_redirects=False).headers["location"] == f"/survey/r/{rater}"  # resume
    order = items.order(rater)
    page = client.get(f"/survey/r/{rater}").text
    assert "Item 1 of 15" in page and order[0] in page
    assert "baseline" not in page and "proposed" not in page and "h000" not in page       # blind
    # answer the first item as a browser would: 303 to the next item
    r = client.post("/survey/answer", data=answer_form(rater, items.items[order[0]]), headers=HTML,
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/survey/r/{rater}"
    assert "Item 2 of 15" in client.get(f"/survey/r/{rater}").text
    # the same answer again: 200, not duplicated
    r = client.post("/survey/answer", data=answer_form(rater, items.items[order[0]], 1))
    assert r.status_code == 200 and r.json() == {"status": "duplicate"}
    rows_before = settings.responses.read_bytes()
    bad = [
        ({"rater": rater, "item": order[1]}, 400, "missing field 'natural'"),
        ({**answer_form(rater, items.items[order[1]]), "match": "7"}, 400, "from 1 to 5"),
        ({**answer_form(rater, items.items[order[1]]), "item": "../../data/survey/key"}, 400, "invalid item id"),
        ({**answer_form(rater, items.items[order[1]]), "item": "0123456789abcdef"}, 404, "unknown item"),
        ({**answer_form(rater, items.items[order[1]]), "rater": "a/b"}, 400, "invalid rater id"),
        ({}, 400, "missing field 'rater'"),
    ]
    for form, status, message in bad:
        r = client.post("/survey/answer", data=form)
        assert r.status_code == status and message in r.json()["error"], (form, r.text)
    # in a browser, a bad rating shows the same item again with the message
    r = client.post("/survey/answer", data={"rater": rater, "item": order[1], "natural": "9"}, headers=HTML)
    assert r.status_code == 400 and "Item 2 of 15" in r.text and "from 1 to 5" in unescape(r.text)
    r = client.post("/survey/answer", content=b"rater=" + b"a" * 20_000,
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert settings.responses.read_bytes() == rows_before                  # nothing written by any of them
    # pause shows the resume link; a rater id with path characters is refused
    assert f"/survey/r/{rater}" in client.get(f"/survey/r/{rater}/pause").text
    assert client.get("/survey/r/..%2F..%2Fetc").status_code in (400, 404)
    # finish: all 15, then the thank-you page
    for i in order[1:]:
        assert client.post("/survey/answer", data=answer_form(rater, items.items[i])).json()["status"] == "recorded"
    assert "Thank you" in client.get(f"/survey/r/{rater}").text
    rows, _ = read_responses(settings.responses)
    assert [r["item"] for r in rows] == order and {r["rater"] for r in rows} == {rater}


def test_images_only_listed_tokens_and_never_the_key(site) -> None:
    client, items, _ = site
    tok = min(items.images)
    r = client.get(f"/img/{tok}.png")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content[:4] == b"\x89PNG"
    assert client.get("/img/0123456789abcdef.png").status_code == 404
    for path in ("/img/key.png", "/img/..%2Fkey.json.png", "/img/items.png", "/key.json", "/data/survey/key.json",
                 "/img/%2e%2e%2f%2e%2e%2fkey.png"):
        r = client.get(path)
        assert r.status_code in (400, 404) and "faces" not in r.text, path
    assert client.get("/").headers["content-security-policy"].startswith("default-src 'none'")


def test_survey_without_items_says_how_to_make_them_then_picks_them_up(tmp_path: Path) -> None:
    app = create_app(Settings(items_dir=tmp_path / "survey" / "items", responses=tmp_path / "r.csv",
                              cyclegan_dir=tmp_path, params_file=tmp_path / "p.yaml"))
    with TestClient(app) as client:
        r = client.get("/survey", headers=HTML)
        assert r.status_code == 503 and "dvc repro survey_items" in r.text
        assert client.get("/").status_code == 200 and "No trained models" in client.get("/").text
        assert not (tmp_path / "r.csv").exists()
        fake_survey(tmp_path)                  # `dvc repro survey_items` while the server runs
        assert client.get("/survey", headers=HTML).status_code == 200
        assert (tmp_path / "r.csv").read_text() == HEADER


# --------------------------------------------------------------------------- real server process
def post_answer(conn: http.client.HTTPConnection, form: dict) -> tuple[int, dict, float]:
    body = urllib.parse.urlencode(form)
    t0 = time.perf_counter()
    conn.request("POST", "/survey/answer", body, {"Content-Type": "application/x-www-form-urlencoded",
                                                  "Accept": "application/json"})
    resp = conn.getresponse()
    data = json.loads(resp.read())
    return resp.status, data, time.perf_counter() - t0


def assert_intact(path: Path) -> list[dict]:
    """Every line of the responses file is a complete row (the reader is strict)."""
    lines = path.read_bytes().split(b"\n")
    assert lines[0].decode() + "\n" == HEADER
    rows, dropped = read_responses(path)
    assert dropped["torn"] <= 1
    assert all(len(r) == len(FIELDS) for r in rows)
    return rows


def test_kill_mid_stream_loses_at_most_the_answer_in_flight(tmp_path: Path) -> None:
    items_dir, _ = fake_survey(tmp_path)
    items = ItemSet(items_dir)
    responses = tmp_path / "responses.csv"
    acked: set[tuple[str, str]] = set()
    sent: set[tuple[str, str]] = set()
    lock = threading.Lock()
    raters = [f"killtest-{k:04d}" for k in range(4)]

    def rater_loop(url: str, rater: str) -> None:
        host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            for i in items.order(rater):
                with lock:
                    sent.add((rater, i))
                status, _, _ = post_answer(conn, answer_form(rater, items.items[i]))
                assert status == 200
                with lock:
                    acked.add((rater, i))
        except (OSError, http.client.HTTPException):
            return                                   # the server was killed under us

    with serve(tmp_path, "--items", str(items_dir), "--responses", str(responses)) as (url, proc):
        threads = [threading.Thread(target=rater_loop, args=(url, r)) for r in raters]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked) < 20 and time.monotonic() < deadline:
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for t in threads:
            t.join(10)
    assert 20 <= len(acked) < len(raters) * len(items.items), "the kill came too late to be mid-stream"
    rows = assert_intact(responses)
    written = {(r["rater"], r["item"]) for r in rows}
    assert len(written) == len(rows)                 # no duplicates
    assert acked <= written <= sent                  # every acknowledged answer survived
    assert len(written - acked) <= len(raters)       # at most the answers in flight
    # a restarted server carries on with the same file: resumes, and repeats stay idempotent
    with serve(tmp_path, "--items", str(items_dir), "--responses", str(responses)) as (url, _):
        conn = http.client.HTTPConnection("127.0.0.1", urllib.parse.urlsplit(url).port, timeout=10)
        rater, item = min(acked)
        assert post_answer(conn, answer_form(rater, items.items[item]))[1]["status"] == "duplicate"
        for i in items.order(raters[0]):
            assert post_answer(conn, answer_form(raters[0], items.items[i]))[0] == 200
    rows = assert_intact(responses)
    assert {r["item"] for r in rows if r["rater"] == raters[0]} == set(items.items)
    assert len({(r["rater"], r["item"]) for r in rows}) == len(rows)


def test_load_20_concurrent_raters_200_answers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    items_dir, _ = fake_survey(tmp_path)
    items = ItemSet(items_dir)
    responses = tmp_path / "responses.csv"
    raters = [f"loadtest-{k:04d}" for k in range(20)]

    with serve(tmp_path, "--items", str(items_dir), "--responses", str(responses)) as (url, _):
        port = urllib.parse.urlsplit(url).port

        def rater_loop(rater: str) -> list[tuple[int, str, float]]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
            out = []
            for i in items.order(rater)[:10]:
                status, data, dt = post_answer(conn, answer_form(rater, items.items[i]))
                out.append((status, data.get("status", data.get("error")), dt))
            conn.close()
            return out

        t0 = time.perf_counter()
        with ThreadPoolExecutor(len(raters)) as pool:
            results = [r for fut in [pool.submit(rater_loop, r) for r in raters] for r in fut.result(timeout=60)]
        wall = time.perf_counter() - t0
    assert len(results) == 200
    assert {(s, d) for s, d, _ in results} == {(200, "recorded")}
    lat = np.array([dt for _, _, dt in results]) * 1000
    with capsys.disabled():   # shown in every run, not only with -s
        print(f"\nload test: 20 raters x 10 answers = 200 in {wall:.2f} s ({200 / wall:.0f}/s); latency ms "
              f"p50 {np.percentile(lat, 50):.1f}, p95 {np.percentile(lat, 95):.1f}, max {lat.max():.1f}")
    rows = assert_intact(responses)
    assert len(rows) == 200 and len({(r["rater"], r["item"]) for r in rows}) == 200
    assert all(r[q] == "4" for r in rows if items.items[r["item"]]["kind"] == "rate" for q in QUESTIONS)


def test_convert_page_shows_every_face_and_the_models_warnings() -> None:
    from face2anime.web import pages
    from face2anime.web.converter import Result

    img = b"\x89PNG-fake"
    result = Result(face=img, cam=None, avatars=[("baseline", img), ("proposed", img)], faces_found=4,
                    others=[(img, [("baseline", img), ("proposed", img)]), (img, [("baseline", img), ("proposed", img)])],
                    too_small=1)
    html = pages.convert_page(["baseline", "proposed"], {}, "synthetic", 10, result,
                              notes={"baseline": ["trained on <synthetic> faces"], "proposed": []})
    assert html.count('class="row other-face"') == 2 and html.count("figure class=\"avatar\"") == 6
    assert "4 faces found in the photo, 3 converted (largest first); 1 too small to convert." in unescape(html)
    assert 'id="model-warnings" role="alert"' in html and "trained on &lt;synthetic&gt; faces" in html
    # no warnings: no box
    assert "model-warnings" not in pages.convert_page(["baseline"], {}, None, 10, None, notes={"baseline": []})


def test_model_warnings_name_synthetic_data_small_size_and_collapse() -> None:
    from face2anime.gan.inference import model_warnings

    assert model_warnings({"size": 256, "training_data": {"source": "local"}}) == []
    (small,) = model_warnings({"size": 64, "training_data": {"source": "local"}})
    assert "64 px" in small
    assert len(model_warnings({"size": 48, "training_data": {"source": "synthetic"}, "collapsed": True})) == 3


def test_model_metrics_page_shows_validity_and_refuses_unknown_models(tmp_path: Path) -> None:
    cyclegan, metrics = tmp_path / "cyclegan", tmp_path / "metrics"
    (cyclegan / "baseline").mkdir(parents=True)
    (cyclegan / "baseline" / "config.json").write_text(json.dumps({"size": 32, "attention": False}))
    (metrics / "eval").mkdir(parents=True)
    (metrics / "eval" / "baseline.json").write_text(json.dumps({
        "n_test": 6, "char_rate": 0.5, "edge_ssim": 0.4, "training": {"collapsed": True, "collapse_reasons": ["x"]},
        "valid": {"char_rate": {"ok": False, "reasons": ["shuffled_chars char_rate 0.25 <= 0.05"]},
                  "edge_ssim": {"ok": True, "reasons": []}}}))
    client = TestClient(create_app(Settings(items_dir=tmp_path / "items", responses=tmp_path / "r.csv",
                                            cyclegan_dir=cyclegan, metrics_dir=metrics,
                                            params_file=tmp_path / "none.yaml")))
    r = client.get("/metrics/baseline")
    assert r.status_code == 200
    body = r.json()
    assert body["metrics"]["char_rate"] == {"value": 0.5, "valid": False,
                                            "reasons": ["shuffled_chars char_rate 0.25 <= 0.05"]}
    assert body["metrics"]["edge_ssim"]["valid"] is True and body["training"]["collapsed"] is True
    for bad in ("proposed", "..%2Fsecrets", "baseline.json"):
        assert client.get(f"/metrics/{bad}").status_code == 404
    page = client.get("/", headers={"accept": "text/html"}).text
    assert 'href="/metrics/baseline"' in page


def test_convert_page_shows_a_learned_attention_overlay() -> None:
    """A U-GAT-IT model's learned CAM is laid over the face (hot = red, as the Grad-CAM overlay)
    and shown on the page beside the avatars."""
    import torch
    from PIL import Image

    from face2anime.web import pages
    from face2anime.web.converter import Result, learned_overlay

    class Fake:
        learned_cam = True

        def to_character_with_heatmaps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            assert x.dtype == torch.uint8 and x.shape == (1, 3, 16, 16)
            heat = torch.zeros(1, 1, 4, 4)
            heat[..., :2, :2] = 1.0                        # attention on the top-left quarter
            return torch.zeros(1, 3, 16, 16), heat

    face = Image.new("RGB", (64, 64), (128, 128, 128))
    out = np.asarray(learned_overlay(Fake(), face, np.zeros((1, 3, 16, 16), np.uint8))).astype(int)
    assert out.shape == (64, 64, 3)
    hot, cold = out[:16, :16].mean((0, 1)), out[-16:, -16:].mean((0, 1))
    assert hot[0] > hot[2] + 40 and cold[2] > cold[0] + 40     # red where it looks, blue elsewhere

    img = b"\x89PNG-fake"
    html = pages.convert_page(["ugatit"], {}, None, 10, Result(face=img, cam=None, avatars=[("ugatit", img)],
                                                                heatmaps=[("ugatit", img)]))
    assert 'alt="learned attention ugatit"' in html and "U-GAT-IT's CAM" in html
