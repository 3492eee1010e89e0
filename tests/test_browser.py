"""The web app in a real browser: headless Chromium (Debian's package) driven by Playwright,
against `face2anime serve` on a free 127.0.0.1 port in a tiny trained project. Uploads a
photo and sees every method's avatar; completes three survey items (with a stop and resume);
the responses file then holds exactly those rows. Then the survey_report stage's command, first
with no responses, then on simulated raters (`face2anime serve --simulate`). (The DVC wiring of
survey_items and survey_report is checked by test_dvc_deps.py and test_pipeline.py's repro.)

Chromium is never downloaded: `make test` installs Debian's `chromium` when it is missing.
Without it the browser tests FAIL, unless FACE2ANIME_NO_BROWSER=1 says to skip them (a
machine where chromium cannot be installed): never a silent skip.
Set FACE2ANIME_DOCS_OUT=DIR to keep the screenshots and the simulated report there
(that is how docs/ was made).
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import BIN, ROOT, run, tiny_params
from test_faces import drawn_face
from webutil import serve, train_for_web

from face2anime.survey.items import QUESTIONS, ItemSet
from face2anime.survey.responses import read_responses

CHROMIUM = Path(os.environ.get("FACE2ANIME_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def sync_playwright():
    """Playwright's sync API with Debian's chromium present; else a failure, or a skip that
    FACE2ANIME_NO_BROWSER=1 asked for (never under CI=true)."""
    problem = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        problem = "the playwright package is not installed (pip install -e '.[test]')"
    if problem is None and not CHROMIUM.is_file():
        problem = f"{CHROMIUM} not found (apt-get install chromium; `make test` does it)"
    if problem:
        if os.environ.get("FACE2ANIME_NO_BROWSER") == "1" and os.environ.get("CI", "").lower() != "true":
            pytest.skip(f"FACE2ANIME_NO_BROWSER=1: {problem}")
        pytest.fail(f"the browser tests need chromium and playwright: {problem} "
                    "(or set FACE2ANIME_NO_BROWSER=1 to skip them on this machine)")
    return sync_playwright


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project trained up to the survey items (both methods, translations, items)."""
    proj = tmp_path_factory.mktemp("web") / "proj"
    proj.mkdir()
    for d in ("stages", "face2anime", "inputs"):
        shutil.copytree(ROOT / d, proj / d, ignore=shutil.ignore_patterns("__pycache__"))
    (proj / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    train_for_web(proj)
    return proj


def docs_out() -> Path | None:
    d = os.environ.get("FACE2ANIME_DOCS_OUT")
    if d:
        Path(d).mkdir(parents=True, exist_ok=True)
    return Path(d) if d else None


@pytest.mark.browser
def test_browser_convert_then_three_survey_items(sync_playwright, trained: Path, tmp_path: Path) -> None:
    photo = tmp_path / "me.jpg"
    canvas = drawn_face(220).resize((300, 300))
    canvas.save(photo, quality=92)
    responses = tmp_path / "responses.csv"
    shots = docs_out() or tmp_path
    items = ItemSet(trained / "data/survey/items")

    with serve(trained, "--responses", str(responses)) as (url, _), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        external: list[str] = []
        page.on("request", lambda req: None if req.url.startswith((url, "data:")) else external.append(req.url))

        # Convert: upload a photo, see the face crop, the CAM overlay and one avatar per method
        page.goto(url + "/")
        assert page.locator("h1").inner_text().startswith("Convert")
        page.set_input_files("input[name=photo]", str(photo))
        page.click("button[type=submit]")
        page.wait_for_selector("#result", timeout=60_000)
        # the models were trained on synthetic faces at a small size: the page says so, prominently
        warn = page.locator("#model-warnings")
        assert warn.is_visible() and "synthetic faces" in warn.inner_text() and "px" in warn.inner_text()
        assert warn.bounding_box()["y"] < page.locator("#result").bounding_box()["y"]   # above the avatars
        avatars = page.locator("figure.avatar")
        assert avatars.count() == 2
        assert sorted(avatars.locator("figcaption b").all_inner_texts()) == ["baseline", "proposed"]
        for img in page.locator("#result img").all():
            assert img.evaluate("i => i.complete && i.naturalWidth") == 256
        assert page.locator("#result img[alt='CAM overlay']").count() == 1
        links = page.locator("#result a[download]")
        assert links.count() == 3 and all(h.startswith("data:image/png;base64,")
                                          for h in links.evaluate_all("as => as.map(a => a.href)"))
        table = page.locator("table").inner_text()
        assert "n_human_train" in table and "attention" in table
        page.screenshot(path=str(shots / "convert.png"), full_page=True)

        # Survey: start, answer two items, stop, resume from the link, answer a third
        page.goto(url + "/survey")
        page.click("text=Start")
        rater = next(c["value"] for c in page.context.cookies() if c["name"] == "face2anime_rater")
        order = items.order(rater)
        chosen = []
        for k in range(3):
            if k == 2:
                page.click("text=Stop for now")
                resume = page.locator("#resume").get_attribute("href")
                assert resume.endswith(f"/survey/r/{rater}")
                page.goto(url + "/")                   # leave, come back through the link
                page.goto(resume)
            assert f"Item {k + 1} of {len(order)}" in page.locator(".progress").inner_text()
            assert page.locator("input[name=item]").get_attribute("value") == order[k]
            html = page.content()
            assert "baseline" not in html and "proposed" not in html
            values = {q: (k + j) % 5 + 1 for j, q in enumerate(QUESTIONS)}
            for q, v in values.items():
                page.click(f".scale label:has(input[name={q}][value='{v}'])")
            chosen.append(values)
            if k == 1:
                page.screenshot(path=str(shots / "survey.png"), full_page=True)
            page.click("text=Save and next")
            page.wait_for_load_state()
        assert "Item 4 of" in page.locator(".progress").inner_text()
        assert external == [], f"the pages requested outside resources: {external}"
        browser.close()

    rows, dropped = read_responses(responses)
    assert dropped["torn"] == 0 and len(rows) == 3
    assert [r["item"] for r in rows] == order[:3] and {r["rater"] for r in rows} == {rater}
    assert [{q: int(r[q]) for q in QUESTIONS} for r in rows] == chosen


def test_no_face_is_a_clear_4xx(trained: Path, tmp_path: Path) -> None:
    import httpx2
    import numpy as np
    from PIL import Image

    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(noise)
    with serve(trained, "--responses", str(tmp_path / "r.csv")) as (url, _):
        r = httpx2.post(url + "/convert", files={"photo": ("noise.png", noise.read_bytes(), "image/png")}, timeout=60)
        assert r.status_code == 422 and "no face found" in r.json()["error"]
        r = httpx2.post(url + "/convert", files={"photo": ("noise.png", noise.read_bytes(), "image/png")},
                        data={"no_detect": "1"}, timeout=60)
        assert r.status_code == 200 and r.json() == {"methods": ["baseline", "proposed"], "cam": True}


def test_survey_report_stage_no_responses_then_simulated_raters(trained: Path) -> None:
    report = [str(BIN / "face2anime"), "survey-report"]
    res = run(report, trained)
    assert "no responses yet" in res.stdout
    m = json.loads((trained / "metrics/survey.json").read_text())
    assert m["status"] == "no_responses" and m["n_rows"] == 0
    assert "No responses yet" in (trained / "reports/survey.md").read_text()

    res = run([str(BIN / "face2anime"), "serve", "--simulate", "12", "--seed", "1"], trained)
    assert "12 simulated raters wrote 180 answers" in res.stdout
    run(report, trained)
    m = json.loads((trained / "metrics/survey.json").read_text())
    assert m["status"] == "ok" and m["n_raters"] == m["n_simulated_raters"] == 12 and m["n_ratings"] == 120
    for method in ("baseline", "proposed"):
        for q in QUESTIONS:
            d = m["methods"][method][q]
            assert d["n"] == 60 and d["ci"][0] <= d["mean"] <= d["ci"][1]
    assert set(m["paired"]["proposed - baseline"]["questions"]) == set(QUESTIONS)
    assert all(m["agreement"][q]["alpha_ordinal"] is not None for q in QUESTIONS)
    assert (trained / "reports/survey.png").stat().st_size > 5000
    if (out := docs_out()) is not None:
        (out / "survey_example").mkdir(exist_ok=True)
        for f in ("metrics/survey.json", "reports/survey.md", "reports/survey.png"):
            shutil.copy(trained / f, out / "survey_example" / Path(f).name)
