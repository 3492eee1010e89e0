"""The ASGI app of ``face2anime serve`` (Starlette): the Convert and Survey pages.

Routes:
  GET  /                    Convert page        POST /convert           upload -> avatars
  GET  /survey              intro / resume      GET  /survey/start      new anonymous rater
  GET  /survey/r/{rater}    the rater's next item (or "done")
  GET  /survey/r/{rater}/pause                  the resume link
  POST /survey/answer       one answer (HTML form: 303 to the next item; else JSON)
  GET  /img/{token}.png     a survey image (only tokens listed in items.json)
  GET  /healthz             "ok"

Every refusal is a 4xx with a one-line message (an HTML page for a browser, JSON
``{"error": ...}`` otherwise) and writes nothing. The blind key is never read here.
"""
from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from face2anime.core.paths import CLASSIFIER_DIR, CYCLEGAN_DIR, METRICS_DIR, ONNX_DIR, RESPONSES_FILE, SURVEY_ITEMS
from face2anime.core.params import UserError
from face2anime.survey.items import ITEMS_FILE, TOKEN_RE, ItemSet
from face2anime.survey.responses import (
    RATER_RE,
    BadAnswer,
    ResponseStore,
    validate_answer,
)
from face2anime.web import pages
from face2anime.web.converter import Converter, UploadRefused, load_eval

COOKIE = "face2anime_rater"
SURVEY_BODY_LIMIT = 16 * 1024
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
}


@dataclass
class Settings:
    items_dir: Path = SURVEY_ITEMS
    responses: Path = RESPONSES_FILE
    cyclegan_dir: Path = CYCLEGAN_DIR
    classifier_dir: Path = CLASSIFIER_DIR
    params_file: Path = Path("params.yaml")
    metrics_dir: Path = METRICS_DIR
    backend: str = "torch"                 # torch (checkpoints) | onnx (models/onnx, no PyTorch)
    onnx_dir: Path = ONNX_DIR
    max_upload_bytes: int = 10 * 1024 * 1024
    max_pixels: int = 64_000_000


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) anything over ``limit`` bytes before reading it all."""
    length = request.headers.get("content-length")
    if length is not None:
        try:
            if int(length) > limit:
                raise Refused(413, f"request too large: {int(length):,} bytes, the limit is {limit:,}")
        except ValueError:
            raise Refused(400, "bad Content-Length header") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise Refused(413, f"request too large: over the limit of {limit:,} bytes")
    return bytes(body)


async def parse_form(request: Request, limit: int, max_part: int) -> Any:
    """Form fields of a body read under ``limit``; the body is replayed to Starlette's parser."""
    body = await read_body(request, limit)
    sent = False

    async def receive() -> dict:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        return await Request(request.scope, receive).form(max_files=1, max_fields=20, max_part_size=max_part)
    except (HTTPException, MultiPartException) as e:   # malformed multipart, too many parts...
        detail = getattr(e, "detail", None) or getattr(e, "message", None) or type(e).__name__
        raise Refused(400, f"malformed form data ({detail})") from None


def create_app(settings: Settings | None = None) -> Starlette:
    s = settings or Settings()
    converter = Converter(s.cyclegan_dir, s.classifier_dir, s.params_file, s.max_pixels, s.backend, s.onnx_dir)
    state: dict[str, Any] = {}

    def survey() -> tuple[ItemSet, ResponseStore]:
        """The item set and the responses store, opened on first use (so the Convert page
        works in a project that has no survey items yet)."""
        listing = s.items_dir / ITEMS_FILE
        try:
            mtime = listing.stat().st_mtime_ns
        except OSError:
            mtime = None
        if state.get("mtime") != mtime or "items" not in state:   # new items (survey_items re-ran): reload
            try:
                state["items"] = ItemSet(s.items_dir)
            except UserError as e:
                state.pop("items", None)
                raise Refused(503, str(e)) from None
            state["mtime"] = mtime
        if "store" not in state:
            state["store"] = ResponseStore(s.responses)
        return state["items"], state["store"]

    def refuse(request: Request, status: int, message: str, active: str = "") -> Response:
        if wants_html(request):
            return HTMLResponse(pages.error_page(status, message, active), status)
        return JSONResponse({"error": message}, status)

    def handled(active: str) -> Callable[[Callable[[Request], Awaitable[Response]]], Callable]:
        def wrap(fn: Callable[[Request], Awaitable[Response]]) -> Callable:
            async def endpoint(request: Request) -> Response:
                try:
                    resp = await fn(request)
                except Refused as e:
                    resp = refuse(request, e.status, e.message, active)
                for k, v in SECURITY_HEADERS.items():
                    resp.headers.setdefault(k, v)
                return resp
            return endpoint
        return wrap

    def convert_html(result: Any = None, error: str | None = None) -> str:
        methods = converter.methods()
        return pages.convert_page(methods, {m: converter.info(m) for m in methods},
                                  converter.data_source(), s.max_upload_bytes / 1024 / 1024, result, error,
                                  {m: converter.notes(m) for m in methods})

    @handled("convert")
    async def index(request: Request) -> Response:
        return HTMLResponse(await run_in_threadpool(convert_html), headers={"Cache-Control": "no-store"})

    @handled("convert")
    async def convert(request: Request) -> Response:
        try:
            form = await parse_form(request, s.max_upload_bytes + 64 * 1024, 64 * 1024)
            try:
                photo = form.get("photo")
                if not isinstance(photo, UploadFile) or not photo.filename:
                    raise Refused(400, "missing field 'photo' (choose a photo file)")
                data = await photo.read()
            finally:
                await form.close()   # Starlette's spooled upload buffer
            if len(data) > s.max_upload_bytes:
                raise Refused(413, f"photo too large: {len(data):,} bytes, the limit is {s.max_upload_bytes:,}")
            result = await run_in_threadpool(converter.convert, data, not form.get("no_detect"))
            del data
        except (Refused, UploadRefused) as e:
            if not wants_html(request):
                return JSONResponse({"error": e.message}, e.status)
            html = await run_in_threadpool(convert_html, None, e.message)
            return HTMLResponse(html, e.status)
        except UserError as e:   # e.g. a broken model or params file
            return refuse(request, 500, str(e), "convert")
        if not wants_html(request):
            return JSONResponse({"methods": [m for m, _ in result.avatars], "cam": result.cam is not None})
        return HTMLResponse(await run_in_threadpool(convert_html, result), headers={"Cache-Control": "no-store"})

    @handled("convert")
    async def model_metrics(request: Request) -> Response:
        """A served model's evaluation: every metric with its validity (floors passed or the
        reasons they failed), whether its training was flagged as collapsed, and the machine."""
        method = request.path_params["method"]
        if method not in converter.methods():
            raise Refused(404, f"no trained model named {method!r}")
        ev = load_eval(s.metrics_dir, method)
        if ev is None:
            raise Refused(404, f"no evaluation for {method} yet: run `dvc repro evaluate@{method}`")
        return JSONResponse(ev, headers={"Cache-Control": "no-store"})

    def rater_cookie(resp: Response, rater: str) -> Response:
        resp.set_cookie(COOKIE, rater, max_age=365 * 24 * 3600, httponly=True, samesite="lax")
        return resp

    def check_rater(rater: str) -> str:
        if not RATER_RE.match(rater):
            raise Refused(400, "invalid rater id in the link (8-64 letters, digits, '-' or '_')")
        return rater

    @handled("survey")
    async def survey_index(request: Request) -> Response:
        try:
            items, _ = survey()
        except Refused as e:
            return HTMLResponse(pages.no_items_page(e.message), 503)
        rater = request.cookies.get(COOKIE, "")
        if RATER_RE.match(rater):
            return RedirectResponse(f"/survey/r/{rater}", 303)
        return HTMLResponse(pages.survey_intro(len(items.items)), headers={"Cache-Control": "no-store"})

    @handled("survey")
    async def survey_start(request: Request) -> Response:
        survey()
        rater = secrets.token_urlsafe(12)
        return rater_cookie(RedirectResponse(f"/survey/r/{rater}", 303), rater)

    def item_html(items: ItemSet, rater: str, answered: set[str], error: str | None = None) -> str | None:
        order = items.order(rater)
        todo = [i for i in order if i not in answered]
        if not todo:
            return None
        item = items.items[todo[0]]
        done = len(order) - len(todo)
        if item["kind"] == "rate":
            return pages.rate_page(rater, item, items.questions, done, len(order), error)
        return pages.pair_page(rater, item, items.pair_sides(rater, item["id"]), items.pair_question,
                               done, len(order), error)

    @handled("survey")
    async def survey_rater(request: Request) -> Response:
        rater = check_rater(request.path_params["rater"])
        items, store = survey()
        answered = await run_in_threadpool(store.answered, rater)
        html = item_html(items, rater, answered) or pages.done_page(len(items.items))
        return rater_cookie(HTMLResponse(html, headers={"Cache-Control": "no-store"}), rater)

    @handled("survey")
    async def survey_pause(request: Request) -> Response:
        rater = check_rater(request.path_params["rater"])
        items, store = survey()
        done = len(await run_in_threadpool(store.answered, rater) & set(items.items))
        url = str(request.url_for("survey_rater", rater=rater))
        return HTMLResponse(pages.pause_page(url, done, len(items.items)), headers={"Cache-Control": "no-store"})

    @handled("survey")
    async def answer(request: Request) -> Response:
        items, store = survey()
        form = await parse_form(request, SURVEY_BODY_LIMIT, SURVEY_BODY_LIMIT)
        if any(isinstance(v, UploadFile) for v in form.values()):
            raise Refused(400, "unexpected file in an answer")
        fields = {k: str(v) for k, v in form.items()}
        if fields.get("skip"):
            fields["better"] = ""
        try:
            ans = validate_answer(fields, items)
        except BadAnswer as e:
            rater = fields.get("rater", "")
            if wants_html(request) and e.status == 400 and RATER_RE.match(rater) and fields.get("item") in items.items:
                answered = await run_in_threadpool(store.answered, rater)   # show the same item again
                html = item_html(items, rater, answered, e.message)
                if html is not None:
                    return HTMLResponse(html, 400)
            raise Refused(e.status, e.message) from None
        recorded = await run_in_threadpool(store.append, ans)
        if wants_html(request):
            return RedirectResponse(f"/survey/r/{ans.rater}", 303)
        return JSONResponse({"status": "recorded" if recorded else "duplicate"})

    @handled("")
    async def image(request: Request) -> Response:
        items, _ = survey()
        tok = request.path_params["token"]
        path = items.image_path(tok)
        if path is None:
            raise Refused(404 if TOKEN_RE.match(tok) else 400, "unknown image" if TOKEN_RE.match(tok) else "invalid image id")
        return FileResponse(path, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        msg = "page not found" if status == 404 else ("method not allowed" if status == 405 else str(exc))
        resp = refuse(request, status, msg)
        for k, v in SECURITY_HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/convert", convert, methods=["POST"]),
        Route("/survey", survey_index, methods=["GET"]),
        Route("/survey/start", survey_start, methods=["GET"]),
        Route("/survey/r/{rater}", survey_rater, methods=["GET"], name="survey_rater"),
        Route("/survey/r/{rater}/pause", survey_pause, methods=["GET"]),
        Route("/survey/answer", answer, methods=["POST"]),
        Route("/img/{token}.png", image, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/metrics/{method}", model_metrics, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})
