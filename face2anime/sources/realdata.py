"""Real data sets -> image files + manifest rows, for the ``download`` stage.

:func:`collect` materialises a source's images into ``out_dir/human/`` and
``out_dir/character/`` (original format kept, renamed to ``<domain>_<NNNNNN>.<ext>``) and
returns the manifest. Each domain comes from one *kind* of data:

========================  =============================  ================================
``download.source``       human                          character
========================  =============================  ================================
``ffhq``                  FFHQ (aligned)                 ``download.ffhq.character``
                                                         (default ``animeface``)
``animeface``             ``download.animeface.human``   AnimeFace (aligned crops)
                          (default ``ffhq``)
``selfie2anime``          trainA + testA (aligned)       trainB + testB (aligned)
``local``                 ``download.local.human``       ``download.local.character``
========================  =============================  ================================

so the paper's FFHQ + AnimeFace pairing is ``source: ffhq`` (or ``animeface``), and
``download.animeface.human: local`` pairs your own photos with AnimeFace.

Where a domain has more images than ``count``, a fixed, seed-free subset is taken: the
files whose SHA-1 of their relative path is smallest (spread over all folders and
characters, unlike the first N by name); FFHQ takes images 0..count-1 in NVIDIA's order.
Files are written into a staging folder next to the outputs and swapped in at the end,
so a failed run leaves the previous outputs as they were.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Callable

import pandas as pd
from rich.console import Console

from face2anime.core.io import INPUTS_DIR, inside_inputs
from face2anime.core.params import UserError
from face2anime.core.schema import Download
from face2anime.sources import archive, fetch
from face2anime.sources import registry as sources

SOURCES = ("ffhq", "animeface", "selfie2anime", "local")
DOMAINS = ("human", "character")
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
FFHQ_VARIANTS = {"thumbs128": "thumbnail", "images1024": "image"}
MANIFEST_COLUMNS = ["id", "domain", "file", "origin", "aligned", "clean"]
_SELFIE_DIRS = {"traina": "human", "testa": "human", "trainb": "character", "testb": "character"}


@dataclass
class _Item:
    """A source image ready to be placed: ``src`` on disk, moved (extracted temp) or copied."""

    src: Path
    origin: str
    aligned: bool
    move: bool
    order: str  # sort key inside the domain (relative path / index)


@dataclass
class _Ctx:
    """Everything a gatherer needs: the typed ``download`` params, folders, limits, counters."""

    p: Download
    staging: Path
    cache_dir: Path
    out_dir: Path
    progress: bool
    report: dict[str, Any]

    def fetch(self, url: str, dest: Path, spec: sources.Remote | None = None,
              progress: bool | None = None) -> Path:
        return fetch.download(
            url, dest, sha256=spec.sha256 if spec else None, md5=spec.md5 if spec else None,
            size=spec.size if spec else None,
            retries=self.p.retries, backoff=self.p.backoff, timeout=self.p.timeout,
            progress=self.progress if progress is None else progress)

    def extract(self, path: Path, keep: set[str], label: str) -> Path:
        """Extract the members in ``keep`` into a fresh staging folder; record refusals."""
        target = Path(tempfile.mkdtemp(prefix="x-", dir=self.staging))
        rep = archive.extract(path, target, members_filter=keep.__contains__,
                              max_bytes=self.max_bytes, max_entries=self.max_entries,
                              progress=self.progress)
        for name, reason in rep.refused:
            self.report["refused"].append({"archive": label, "member": name, "reason": reason})
        if rep.refused:
            from rich.console import Console

            Console(stderr=True).print(f"[yellow]warning:[/] {rep.summary()}", highlight=False)
        return target

    def list_files(self, path: Path) -> list[str]:
        try:
            return archive.list_files(path, max_entries=self.max_entries)
        except UserError as e:
            if self.cache_dir.resolve() in path.resolve().parents and "damaged" in str(e):
                raise UserError(f"{e}; delete {path} to download it again") from None
            raise

    @property
    def max_bytes(self) -> int:
        return self.p.max_extract_bytes

    @property
    def max_entries(self) -> int:
        return self.p.max_entries

    def urls(self) -> dict[str, Any]:
        return dict(self.p.urls)


# --------------------------------------------------------------------------- helpers
def is_image_name(path: str) -> bool:
    """An image file by extension, not hidden and not macOS zip debris (``__MACOSX``, ``._x``)."""
    pp = PurePosixPath(path)
    if pp.suffix.lower() not in IMAGE_EXTS:
        return False
    return not any(part.startswith(".") or part == "__MACOSX" for part in pp.parts)


def choose(names: list[str], count: int) -> list[str]:
    """``count`` names (all if 0 or fewer exist) with the smallest SHA-1, returned sorted."""
    if count <= 0 or count >= len(names):
        return sorted(names)
    ranked = sorted(names, key=lambda n: (hashlib.sha1(n.encode("utf-8", "surrogateescape")).hexdigest(), n))
    return sorted(ranked[:count])


def _domain_plan(source: str, p: Download) -> dict[str, str]:
    if source == "ffhq":
        return {"human": "ffhq", "character": p.ffhq.character}
    if source == "animeface":
        return {"human": p.animeface.human, "character": "animeface"}
    return {"human": source, "character": source}


# --------------------------------------------------------------------------- gatherers
def _gather_archive(ctx: _Ctx, path: Path, label: str, route: Callable[[str], str | None],
                    domains: list[str], count: int, aligned: dict[str, bool]) -> dict[str, list[_Item]]:
    """Images of an archive routed to domains by ``route(member) -> domain | None``."""
    by_domain: dict[str, list[str]] = {d: [] for d in domains}
    for n in ctx.list_files(path):
        if not is_image_name(n):
            ctx.report["skipped_files"] += 1
        elif (d := route(n)) in by_domain:
            by_domain[d].append(n)
    chosen = {d: choose(v, count) for d, v in by_domain.items()}
    keep = {n for v in chosen.values() for n in v}
    root = ctx.extract(path, keep, label) if keep else ctx.staging
    out: dict[str, list[_Item]] = {}
    for d, members in chosen.items():
        items = []
        for m in members:
            src = root.joinpath(*m.split("/"))
            if src.is_file():  # a refused member is reported by extract and simply absent here
                items.append(_Item(src, f"{label}!{m}", aligned[d], True, m))
        out[d] = items
    return out


def _gather_selfie2anime(ctx: _Ctx, domains: list[str]) -> dict[str, list[_Item]]:
    spec = sources.resolve("selfie2anime", ctx.urls())
    path = ctx.fetch(spec.url, ctx.cache_dir / spec.filename, spec)

    def route(name: str) -> str | None:
        for part in PurePosixPath(name).parts[:-1]:
            if part.lower() in _SELFIE_DIRS:
                return _SELFIE_DIRS[part.lower()]
        return None

    count = ctx.p.selfie2anime.count
    return _gather_archive(ctx, path, spec.url, route, domains, count, {"human": True, "character": True})


def _gather_animeface(ctx: _Ctx, domains: list[str]) -> dict[str, list[_Item]]:
    spec = sources.resolve("animeface", ctx.urls())
    path = ctx.fetch(spec.url, ctx.cache_dir / spec.filename, spec)

    def route(name: str) -> str | None:  # animeface-character-dataset/thumb/<id>_<name>/*.png
        parts = PurePosixPath(name).parts
        return "character" if "thumb" in parts[:-2] else None

    count = ctx.p.animeface.count
    return _gather_archive(ctx, path, spec.url, route, ["character"], count, {"character": True})


def _ffhq_hook(d: dict[str, Any]) -> dict[str, Any]:
    """json object_hook keeping only what we need (drops 68-point landmarks etc. on the fly)."""
    if "file_url" in d and "file_path" in d:
        return {k: d.get(k) for k in ("file_url", "file_path", "file_size", "file_md5")}
    if "thumbnail" in d or "image" in d:
        return {"image": d.get("image"), "thumbnail": d.get("thumbnail")}
    return d


def load_ffhq_records(json_path: Path, variant: str) -> list[tuple[int, dict[str, Any]]]:
    """``(index, {file_url, file_path, file_size, file_md5})`` for every image, by index."""
    field = FFHQ_VARIANTS[variant]
    try:
        with open(json_path, "rb") as f:
            data = json.load(f, object_hook=_ffhq_hook)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{json_path}: not valid FFHQ metadata JSON ({e}); delete it to re-download") from None
    if not isinstance(data, dict):
        raise UserError(f"{json_path}: not FFHQ metadata (expected a mapping of image index -> record)")
    out = []
    for k, rec in data.items():
        fr = rec.get(field) if isinstance(rec, dict) else None
        if not (isinstance(fr, dict) and fr.get("file_path") and str(k).isdigit()):
            raise UserError(f"{json_path}: record {k!r} has no '{field}' file entry; not FFHQ metadata?")
        out.append((int(k), fr))
    out.sort(key=lambda t: t[0])
    return out


def _gather_ffhq(ctx: _Ctx, domains: list[str]) -> dict[str, list[_Item]]:
    count, variant, workers = ctx.p.ffhq.count, ctx.p.ffhq.variant, ctx.p.ffhq.workers
    urls = ctx.urls()
    spec = sources.resolve("ffhq_json", urls)
    json_path = ctx.fetch(spec.url, ctx.cache_dir / "ffhq" / spec.filename, spec)
    records = load_ffhq_records(json_path, variant)
    if len(records) < count:
        raise UserError(f"download.ffhq.count is {count} but {json_path.name} lists only {len(records)} images")
    records = records[:count]
    base = sources.resolve("ffhq_files", urls).url

    def one(rec: tuple[int, dict[str, Any]]) -> _Item:
        idx, fr = rec
        rel = PurePosixPath(fr["file_path"])
        if rel.is_absolute() or ".." in rel.parts:
            raise UserError(f"{json_path.name}: unsafe file_path {fr['file_path']!r} for image {idx}")
        url = (base.rstrip("/") + "/" + rel.as_posix()) if base else fr["file_url"]
        path = ctx.fetch(url, ctx.cache_dir / "ffhq" / rel, sources.Remote(
            "ffhq_image", url, rel.name, md5=fr.get("file_md5"), size=fr.get("file_size")), progress=False)
        return _Item(path, url, True, False, f"{idx:06d}")

    from rich.progress import Progress

    items: list[_Item] = []
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        with Progress(transient=True, disable=not ctx.progress) as bar:
            task = bar.add_task(f"FFHQ {variant}", total=len(records))
            for item in pool.map(one, records):
                items.append(item)
                bar.advance(task)
    finally:  # on the first error, drop the queued downloads instead of finishing them all
        pool.shutdown(wait=True, cancel_futures=True)
    return {"human": items}


def _resolve_local_spec(ctx: _Ctx, domain: str) -> tuple[Path, str]:
    key = f"download.local.{domain}"
    spec = getattr(ctx.p.local, domain)
    if spec == "":
        raise UserError(f"param '{key}' is not set: point it at a folder, zip/tar archive or file:// URL of "
                        f"{'face photos' if domain == 'human' else 'anime face images'} "
                        f"(e.g. dvc exp run -S download.source=local -S {key}=/path/to/dir)")
    path = fetch.local_path(spec)
    if path is None:  # http(s): fetch once into the cache, unverified (no checksum known)
        name = PurePosixPath(spec.split("?")[0]).name or "download"
        digest = hashlib.sha1(spec.encode()).hexdigest()[:10]
        return ctx.fetch(spec, ctx.cache_dir / "local" / f"{digest}-{name}"), spec
    if not path.exists():
        raise UserError(f"param '{key}': {spec} does not exist")
    if not inside_inputs(path):
        ctx.report["outside_inputs"].append(spec)
        Console(stderr=True).print(
            f"[yellow]warning:[/] {key} = {spec} is outside {INPUTS_DIR}/, so DVC cannot see when its "
            f"files change: move them to {INPUTS_DIR}/local/{domain}/ (a declared dependency) or run "
            "`dvc repro -f download` after changing them", highlight=False, soft_wrap=True)
    res, out = path.resolve(), ctx.out_dir.resolve()
    if res == out or out in res.parents or res in out.parents:
        raise UserError(f"param '{key}': {spec} overlaps the pipeline's output folder {ctx.out_dir}; "
                        "point it at a folder outside it")
    return path, spec


def _gather_local(ctx: _Ctx, domains: list[str]) -> dict[str, list[_Item]]:
    count = ctx.p.local.count
    out: dict[str, list[_Item]] = {}
    for d in domains:
        aligned = getattr(ctx.p.local, f"{d}_aligned")
        path, label = _resolve_local_spec(ctx, d)
        if path.is_dir():
            names = []
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(x for x in dirs if not x.startswith(".") and x != "__MACOSX")
                for f in files:
                    if f == ".gitkeep":  # keeps the empty inputs/ folders in git; not data
                        continue
                    rel = Path(root, f).relative_to(path).as_posix()
                    if is_image_name(rel):
                        names.append(rel)
                    else:
                        ctx.report["skipped_files"] += 1
            out[d] = [_Item(path / n, str(path / n), aligned, False, n) for n in choose(names, count)]
        elif archive.is_archive(path):
            got = _gather_archive(ctx, path, label, lambda n, d=d: d, [d], count, {d: aligned})
            out[d] = got[d]
        elif path.is_file() and path.suffix.lower() in IMAGE_EXTS:
            out[d] = [_Item(path, label, aligned, False, path.name)]
        else:
            raise UserError(f"param 'download.local.{d}': {label} is not a folder, an image or a "
                            "zip/tar archive")
        if not out[d]:
            raise UserError(f"param 'download.local.{d}': no images ({', '.join(sorted(IMAGE_EXTS))}) "
                            f"found in {label}")
    return out


_GATHERERS: dict[str, Callable[[_Ctx, list[str]], dict[str, list[_Item]]]] = {
    "selfie2anime": _gather_selfie2anime,
    "animeface": _gather_animeface,
    "ffhq": _gather_ffhq,
    "local": _gather_local,
}


# --------------------------------------------------------------------------- public API
def collect(source: str, cfg: Download, out_dir: Path, cache_dir: Path,
            progress: bool = True) -> pd.DataFrame:
    """Materialise ``source``'s images into ``out_dir/{human,character}/`` and return the manifest.

    ``cfg`` is the typed ``download`` section of params.yaml. Returns one row per image with columns
    ``id`` (``<domain>_<NNNNNN>``), ``domain``, ``file`` (POSIX path relative to
    ``out_dir``), ``origin`` (URL, ``archive!member`` or path), ``aligned`` (bool) and
    ``clean`` (None: unknown). ``df.attrs["collect_report"]`` holds counts for metrics:
    images per domain, refused archive members (with reasons) and skipped files
    (not images by extension, hidden, or macOS metadata).
    Downloads are cached in ``cache_dir``. Every user-fixable problem is a UserError.
    """
    if source not in SOURCES:
        raise UserError(f"download.source '{source}' is not a real-data source (one of {', '.join(SOURCES)})")
    p = cfg
    plan = _domain_plan(source, p)
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".collect-", dir=out_dir))
    report: dict[str, Any] = {"source": source, "plan": plan, "refused": [], "skipped_files": 0,
                              "outside_inputs": []}
    ctx = _Ctx(p, staging, cache_dir, out_dir, progress, report)
    try:
        gathered: dict[str, list[_Item]] = {}
        for kind in _GATHERERS:  # fixed order: deterministic, archives before FFHQ's many files
            doms = [d for d in DOMAINS if plan[d] == kind]
            if doms:
                gathered.update(_GATHERERS[kind](ctx, doms))
        rows = _place(gathered, staging, progress)
        for d in DOMAINS:
            archive.swap_into_place(staging / "out" / d, out_dir / d)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    report["images"] = {d: int((df["domain"] == d).sum()) for d in DOMAINS}
    report["refused_by_reason"] = {}
    for r in report["refused"]:
        report["refused_by_reason"][r["reason"]] = report["refused_by_reason"].get(r["reason"], 0) + 1
    df.attrs["collect_report"] = report
    return df


def _place(gathered: dict[str, list[_Item]], staging: Path, progress: bool) -> list[dict[str, Any]]:
    """Move/copy every item to ``staging/out/<domain>/<domain>_<NNNNNN><ext>``; manifest rows."""
    from rich.progress import Progress

    rows: list[dict[str, Any]] = []
    total = sum(len(v) for v in gathered.values())
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("placing images", total=total)
        for d in DOMAINS:
            dest_dir = staging / "out" / d
            dest_dir.mkdir(parents=True, exist_ok=True)
            items = sorted(gathered.get(d, []), key=lambda it: it.order)
            if not items:
                raise UserError(f"no {d} images were collected (check the download.* params)")
            for i, it in enumerate(items):
                ext = it.src.suffix.lower()
                ext = ".jpg" if ext == ".jpeg" else ext
                name = f"{d}_{i:06d}{ext}"
                dest = dest_dir / name
                try:
                    if it.move:
                        os.replace(it.src, dest)
                    else:
                        shutil.copyfile(it.src, dest)
                except OSError as e:
                    raise UserError(f"could not copy {it.origin} to {dest_dir}: {e.strerror or e}") from None
                rows.append({"id": f"{d}_{i:06d}", "domain": d, "file": f"{d}/{name}", "origin": it.origin,
                             "aligned": bool(it.aligned), "clean": None})
                bar.advance(task)
    return rows
