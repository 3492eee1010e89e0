"""Take the README's screenshots (docs/convert.png, docs/survey.png) with headless Chromium.

Run in a project whose pipeline has run up to ``survey_items`` (``dvc repro survey_items``):

    python docs/screenshots.py PHOTO [--no-detect] [--out docs]

It starts ``face2anime serve`` on a free 127.0.0.1 port with a throw-away responses file,
converts PHOTO on the Convert page, answers the first survey item and photographs the
second. Needs Debian's chromium (/usr/bin/chromium) and the playwright package.
"""
from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("photo", type=Path)
    ap.add_argument("--no-detect", action="store_true", help="the photo already is a face crop")
    ap.add_argument("--out", type=Path, default=Path("docs"))
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(["face2anime", "serve", "--port", str(port), "--responses", f"{tmp}/r.csv"])
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
                page = browser.new_page(viewport={"width": 1100, "height": 860})
                page.goto(url + "/")
                page.set_input_files("input[name=photo]", str(a.photo))
                if a.no_detect:
                    page.check("input[name=no_detect]")
                page.click("button[type=submit]")
                page.wait_for_selector("#result", timeout=120_000)
                a.out.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(a.out / "convert.png"), full_page=True)
                page.goto(url + "/survey")
                page.click("text=Start")
                for k in range(2):
                    for j, q in enumerate(("natural", "match", "atmosphere")):
                        page.click(f".scale label:has(input[name={q}][value='{(k + j) % 5 + 1}'])")
                    if k == 1:
                        page.screenshot(path=str(a.out / "survey.png"), full_page=True)
                    else:
                        page.click("text=Save and next")
                        page.wait_for_load_state()
                browser.close()
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"wrote {a.out / 'convert.png'} and {a.out / 'survey.png'}", file=sys.stderr)


if __name__ == "__main__":
    main()
