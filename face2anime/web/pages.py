"""HTML of the web app: small server-rendered pages, one inline stylesheet, no scripts and
no external assets (it works offline). Every value that reaches a page is escaped."""
from __future__ import annotations

import base64
from html import escape
from typing import Any

CSS = """
:root { --fg:#1d2330; --muted:#5d6678; --line:#dde1e8; --bg:#f5f6f9; --card:#fff; --acc:#5b4bdb; --acc2:#ece9fd;
        --err:#b3261e; --errbg:#fdecea; }
* { box-sizing: border-box; }
body { margin:0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:var(--card); border-bottom:1px solid var(--line); }
header .in { max-width:980px; margin:0 auto; padding:10px 20px; display:flex; gap:24px; align-items:center; }
header .brand { font-weight:700; letter-spacing:.2px; }
header nav a { color:var(--muted); text-decoration:none; padding:6px 10px; border-radius:8px; }
header nav a.on { color:var(--acc); background:var(--acc2); font-weight:600; }
main { max-width:980px; margin:0 auto; padding:20px; }
h1 { font-size:22px; margin:6px 0 4px; } h2 { font-size:17px; margin:18px 0 8px; }
p.lead { color:var(--muted); margin:0 0 16px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:16px 18px; margin:0 0 16px; }
.row { display:flex; flex-wrap:wrap; gap:16px; }
figure { margin:0; text-align:center; }
figure img { width:192px; height:192px; border-radius:10px; border:1px solid var(--line); background:#fff;
             image-rendering:auto; display:block; }
figure.big img { width:256px; height:256px; }
figcaption { font-size:13px; color:var(--muted); margin-top:6px; }
figcaption b { color:var(--fg); }
.btn, button { display:inline-block; font:inherit; border:0; border-radius:8px; padding:8px 16px; cursor:pointer;
               background:var(--acc); color:#fff; text-decoration:none; }
.btn.ghost, button.ghost { background:transparent; color:var(--acc); border:1px solid var(--acc); }
a.dl { font-size:13px; color:var(--acc); }
.err { background:var(--errbg); color:var(--err); border:1px solid #f3c2bd; border-radius:10px; padding:10px 14px;
       margin:0 0 16px; }
.warn { background:#fff6db; color:#6b4b00; border:2px solid #e8b923; border-radius:10px; padding:10px 14px;
        margin:0 0 16px; }
.warn ul { margin:6px 0 0; padding-left:20px; }
.note { color:var(--muted); font-size:13px; }
table { border-collapse:collapse; font-size:13px; }
th, td { text-align:left; padding:4px 10px 4px 0; border-bottom:1px solid var(--line); }
th { color:var(--muted); font-weight:600; }
fieldset { border:0; padding:0; margin:0 0 14px; }
legend { font-weight:600; margin-bottom:6px; }
.scale { display:flex; gap:6px; align-items:center; flex-wrap:wrap; }
.scale label { display:inline-flex; align-items:center; justify-content:center; min-width:44px; padding:6px 0;
               border:1px solid var(--line); border-radius:8px; cursor:pointer; background:#fff; }
.scale input { position:absolute; opacity:0; pointer-events:none; }
.scale input:checked + span { font-weight:700; color:var(--acc); }
.scale label:has(input:checked) { border-color:var(--acc); background:var(--acc2); }
.scale .end { color:var(--muted); font-size:12px; min-width:auto; border:0; background:transparent; }
.choice label { display:block; padding:6px 10px; border:1px solid var(--line); border-radius:8px; margin:0 0 6px;
                background:#fff; cursor:pointer; }
.choice label:has(input:checked) { border-color:var(--acc); background:var(--acc2); }
progress { width:100%; height:10px; accent-color:var(--acc); }
.progress { display:flex; justify-content:space-between; color:var(--muted); font-size:13px; margin-bottom:4px; }
.actions { display:flex; gap:12px; align-items:center; margin-top:8px; }
input[type=file] { font:inherit; }
code { background:#eef0f4; padding:1px 5px; border-radius:5px; }
"""


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def layout(title: str, active: str, body: str) -> str:
    def tab(href: str, name: str, label: str) -> str:
        return f'<a href="{href}" class="{"on" if active == name else ""}">{label}</a>'

    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)} · face2anime</title><style>{CSS}</style></head><body>"
            f'<header><div class="in"><span class="brand">face2anime</span><nav>'
            f'{tab("/", "convert", "Convert")}{tab("/survey", "survey", "Survey")}</nav></div></header>'
            f"<main>{body}</main></body></html>")


def error_box(message: str | None) -> str:
    return f'<div class="err" role="alert">{escape(message)}</div>' if message else ""


def figure(src: str, caption: str, alt: str, cls: str = "", extra: str = "") -> str:
    return (f'<figure class="{cls}"><img src="{escape(src)}" alt="{escape(alt)}">'
            f"<figcaption>{caption}{extra}</figcaption></figure>")


# --------------------------------------------------------------------------- convert
def warnings_box(notes: dict[str, list[str]]) -> str:
    """The models' warnings (as ``face2anime convert`` prints them), one line per model and warning."""
    items = "".join(f"<li><b>{escape(m)}</b>: {escape(w)}</li>" for m, ws in notes.items() for w in ws)
    return (f'<div class="warn" id="model-warnings" role="alert"><b>Read this before judging the avatars</b>'
            f"<ul>{items}</ul></div>" if items else "")


def convert_page(methods: list[str], infos: dict[str, dict[str, Any]], data_source: str | None,
                 max_mb: float, result: Any = None, error: str | None = None,
                 notes: dict[str, list[str]] | None = None) -> str:
    form = (f'<form class="card" method="post" action="/convert" enctype="multipart/form-data">'
            f'<h2>Your photo</h2><p class="note">Any photo with a face (JPEG, PNG, WebP..., at most {max_mb:g} MB). '
            "It is processed in memory and not stored.</p>"
            '<div class="actions"><input type="file" name="photo" accept="image/*" required>'
            '<label><input type="checkbox" name="no_detect" value="1"> the photo is already a face crop</label>'
            '<button type="submit">Convert</button></div></form>')
    out = ""
    if result is not None:
        figs = [figure(data_uri(result.face), "<b>your face</b> (as the models see it)", "face crop"),]
        if result.cam is not None:
            figs.append(figure(data_uri(result.cam), "<b>Grad-CAM</b> of the guiding classifier",
                               "CAM overlay", extra='<br><a class="dl" download="cam.png" href="'
                               + data_uri(result.cam) + '">download</a>'))
        for m, img in result.heatmaps:
            figs.append(figure(data_uri(img), f"<b>learned attention</b> of {escape(m)} (U-GAT-IT's CAM)",
                               f"learned attention {m}"))
        for m, img in result.avatars:
            figs.append(figure(data_uri(img), f"<b>{escape(m)}</b>", f"avatar {m}", cls="avatar",
                               extra=f'<br><a class="dl" download="avatar-{escape(m)}.png" href="{data_uri(img)}">'
                                     "download</a>"))
        left = [f"{n} {what}" for n, what in ((result.too_small, "too small to convert"),
                                              (result.over_limit, "over the per-photo limit")) if n]
        note = (f'<p class="note" id="faces-found">{result.faces_found} faces found in the photo, '
                f"{1 + len(result.others)} converted (largest first)"
                + (f"; {', '.join(left)}" if left else "") + ".</p>" if result.faces_found > 1 else "")
        rows = "".join(
            '<div class="row other-face">' + figure(data_uri(f), f"<b>face {i}</b>", f"face crop {i}")
            + "".join(figure(data_uri(img), f"<b>{escape(m)}</b>", f"avatar {m} face {i}", cls="avatar")
                      for m, img in avatars) + "</div>"
            for i, (f, avatars) in enumerate(result.others, start=2))
        out = (f'<section class="card" id="result"><h2>Your avatars</h2>{note}'
               f'<div class="row">{"".join(figs)}</div>{rows}</section>')
    if methods:
        keys = list(dict.fromkeys(k for m in methods for k in infos.get(m, {})))
        head = "".join(f"<th>{escape(m)}</th>" for m in methods)
        rows = "".join(f"<tr><th>{escape(k)}</th>" + "".join(
            f"<td>{escape(str(infos.get(m, {}).get(k, '')))}</td>" for m in methods) + "</tr>" for k in keys)
        src = f" Training data: <code>{escape(data_source)}</code> source (params.yaml <code>download.source</code>)." \
            if data_source else ""
        links = "".join(f'<td><a href="/metrics/{escape(m)}">metrics/eval/{escape(m)}.json</a></td>' for m in methods)
        models = (f'<section class="card"><h2>The models</h2><p class="note">From '
                  f"<code>models/cyclegan/*/config.json</code>.{src} The evaluation of each model, with the "
                  "validity of every metric (whether it beat its degenerate floors), is linked below.</p>"
                  f'<table><tr><th></th>{head}</tr>{rows}<tr id="model-metrics"><th>evaluation</th>{links}</tr>'
                  "</table></section>")
    else:
        models = ('<section class="card"><h2>The models</h2><p>No trained models yet: run <code>dvc repro</code> '
                  "(models are read from <code>models/cyclegan/</code>).</p></section>")
    body = ("<h1>Convert a photo into an anime face</h1>"
            '<p class="lead">The face is found and cropped, then every trained method translates it.</p>'
            f"{error_box(error)}{warnings_box(notes or {})}{form}{out}{models}")
    return layout("Convert", "convert", body)


# --------------------------------------------------------------------------- survey
def survey_intro(n_items: int, error: str | None = None) -> str:
    body = ("<h1>Rate anime faces made from photos</h1>"
            f"{error_box(error)}"
            '<section class="card"><p>You will see a photo of a face and an anime version of it, '
            f"one at a time. Rate each on three questions from 1 (not at all) to 5 (completely). At the end a "
            f"few optional questions compare two versions of the same face ({n_items} items in all).</p>"
            "<p>It is anonymous: you get a random id; nothing else about you is recorded. You can stop at any "
            "time and "
            "resume later with the same browser or your personal link.</p>"
            '<a class="btn" href="/survey/start">Start</a></section>')
    return layout("Survey", "survey", body)


def no_items_page(message: str) -> str:
    return layout("Survey", "survey", f'<h1>Survey</h1><section class="card"><p>{escape(message)}</p></section>')


def progress(done: int, total: int) -> str:
    return (f'<div class="progress"><span>Item {min(done + 1, total)} of {total}</span>'
            f'<span>{done} answered</span></div><progress value="{done}" max="{total}"></progress>')


def rate_page(rater: str, item: dict, questions: dict[str, str], done: int, total: int,
              error: str | None = None) -> str:
    scales = []
    for q, text in questions.items():
        opts = "".join(f'<label><input type="radio" name="{q}" value="{v}" required><span>{v}</span></label>'
                       for v in range(1, 6))
        scales.append(f'<fieldset><legend>{escape(text)}</legend><div class="scale">'
                      f'<span class="end">not at all</span>{opts}<span class="end">completely</span></div></fieldset>')
    body = (f"<h1>Survey</h1>{progress(done, total)}{error_box(error)}"
            f'<form class="card" method="post" action="/survey/answer" id="item">'
            f'<input type="hidden" name="rater" value="{escape(rater)}">'
            f'<input type="hidden" name="item" value="{escape(item["id"])}">'
            '<div class="row" style="margin-bottom:14px">'
            + figure(f'/img/{item["source"]}.png', "<b>photo</b>", "source face", "big")
            + figure(f'/img/{item["image"]}.png', "<b>anime version</b>", "translation", "big")
            + f'</div>{"".join(scales)}<div class="actions"><button type="submit">Save and next</button>'
            f'<a href="/survey/r/{escape(rater)}/pause">Stop for now</a></div></form>')
    return layout("Survey", "survey", body)


def pair_page(rater: str, item: dict, sides: list[str], question: str, done: int, total: int,
              error: str | None = None) -> str:
    names = ["A", "B"]
    figs = figure(f'/img/{item["source"]}.png', "<b>photo</b>", "source face", "big") + "".join(
        figure(f"/img/{tok}.png", f"<b>{n}</b>", f"picture {n}", "big") for n, tok in zip(names, sides))
    choices = "".join(f'<label><input type="radio" name="better" value="{escape(tok)}"> {n}</label>'
                      for n, tok in zip(names, sides))
    body = (f"<h1>Survey</h1>{progress(done, total)}{error_box(error)}"
            f'<form class="card" method="post" action="/survey/answer" id="item">'
            f'<input type="hidden" name="rater" value="{escape(rater)}">'
            f'<input type="hidden" name="item" value="{escape(item["id"])}">'
            f'<div class="row" style="margin-bottom:14px">{figs}</div>'
            f'<fieldset class="choice"><legend>{escape(question)} <span class="note">(optional)</span></legend>'
            f'{choices}<label><input type="radio" name="better" value="same"> about the same</label></fieldset>'
            '<div class="actions"><button type="submit">Save and next</button>'
            '<button class="ghost" type="submit" name="skip" value="1" formnovalidate>Skip</button>'
            f'<a href="/survey/r/{escape(rater)}/pause">Stop for now</a></div></form>')
    return layout("Survey", "survey", body)


NEW_RATER = ('<p class="note">Someone else on this computer? <a href="/survey/start">Start as a new rater</a>.'
             "</p>")


def done_page(total: int) -> str:
    return layout("Survey", "survey", '<h1>Thank you!</h1><section class="card" id="done">'
                  f"<p>You answered all {total} items. Your answers are saved.</p>{NEW_RATER}</section>")


def pause_page(resume_url: str, done: int, total: int) -> str:
    return layout("Survey", "survey", f"<h1>Paused</h1>{progress(done, total)}"
                  '<section class="card"><p>Your answers so far are saved. To continue later, come back to '
                  "the Survey page in this browser, or open your personal link:</p>"
                  f'<p><a href="{escape(resume_url)}" id="resume">{escape(resume_url)}</a></p>'
                  '<p class="note">The link is your anonymous rater id: keep it to yourself.</p>'
                  f"{NEW_RATER}</section>")


def error_page(status: int, message: str, active: str = "") -> str:
    return layout(f"Error {status}", active, f"<h1>Error {status}</h1>{error_box(message)}"
                  '<p><a href="/">Convert</a> · <a href="/survey">Survey</a></p>')
