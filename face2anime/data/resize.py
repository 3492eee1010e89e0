"""Stage 2, ``resize``: raw images -> square ``size`` x ``size`` PNGs split into train/test.

Reads ``data/raw/manifest.csv`` (made by ``download``) and writes::

    data/resized/{human,character}/{train,test}/{id}.png
    data/resized/manifest.csv     input rows that survived + ``split`` + ``conversions``
    metrics/resize.json           written per domain/split, skips by reason, conversions

Every image is loaded with :func:`face2anime.data.imageio.load_rgb` (one at a time, so memory stays
bounded). Rows with ``aligned`` False (ordinary photos) are, by ``crop``:

* ``align`` (default): landmark-aligned with :mod:`face2anime.data.align` (dlib), framed
  like anime face crops; the eye, mouth and nose boxes come from the landmarks and are
  written into the manifest for the CAM ``part_focus`` score. With ``align.faces: all``
  every face of a group photo becomes one image (``{id}``, ``{id}.f2``, ... by size);
  faces whose eye distance is under ``align.min_eye_px`` are counted, not written.
* ``face``: a square around OpenCV's Haar face box (no landmarks, no part boxes).
* ``none``: the whole photo.

Then every image is centre-cropped to a square and resized with LANCZOS. Part boxes
(normalised to the raw image) follow the crop. Unusable images are skipped and counted by
reason (``no_face``, ``face_too_small``, ...), never crash the run; every input row ends up
either written (once per face) or counted as skipped.

The test split holds exactly ``test_count`` images per domain, drawn with a numpy
Generator seeded from ``seed`` and the domain, among the images that loaded, sorted by id,
so it does not depend on file order on disk.
"""
from __future__ import annotations

import math
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from face2anime.core.io import rel, save_csv, save_image, write_json
from face2anime.core.params import UserError
from face2anime.data.imageio import BadImage, load_rgb, square_crop_box
from face2anime.data.images import ALIGNED_DEFAULT, is_aligned
from face2anime.data.align import AlignConfig


DOMAINS: tuple[str, ...] = ("human", "character")
PARTS: tuple[str, ...] = ("leye", "reye", "mouth", "nose")
CROPS: tuple[str, ...] = ("none", "face", "align")
FACE_MARGIN = 0.4
MAX_SKIPPED_EXAMPLES = 20
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")


# --------------------------------------------------------------------------- geometry
def transform_box(box: tuple[float, float, float, float], w: int, h: int,
                  crop: tuple[int, int, int, int]) -> tuple[float, float, float, float]:
    """Map a box normalised to a ``w`` x ``h`` image into the normalised frame of ``crop``.

    ``box`` is ``(x0, y0, x1, y1)`` in [0, 1] of the raw image; ``crop`` is a pixel box
    ``(left, top, right, bottom)``. The result is clipped to [0, 1]; a box that is unknown
    (any NaN) or falls fully outside the crop (no area left) is all-NaN.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    nan = (math.nan,) * 4
    if any(math.isnan(v) for v in (x0, y0, x1, y1)):
        return nan
    left, top, right, bottom = crop
    cw, ch = right - left, bottom - top
    if (left, top, cw, ch) == (0, 0, w, h):  # identity: keep the values exactly
        nx0, ny0, nx1, ny1 = x0, y0, x1, y1
    else:
        nx0, nx1 = (x0 * w - left) / cw, (x1 * w - left) / cw
        ny0, ny1 = (y0 * h - top) / ch, (y1 * h - top) / ch
    nx0, nx1 = sorted((min(max(nx0, 0.0), 1.0), min(max(nx1, 0.0), 1.0)))
    ny0, ny1 = sorted((min(max(ny0, 0.0), 1.0), min(max(ny1, 0.0), 1.0)))
    if nx1 <= nx0 or ny1 <= ny0:
        return nan
    return nx0, ny0, nx1, ny1


def _box_columns(df: pd.DataFrame) -> list[str]:
    """Part-box columns present in the manifest, in PARTS order, 4 per part."""
    return [f"{p}_{c}" for p in PARTS for c in ("x0", "y0", "x1", "y1") if f"{p}_{c}" in df.columns]


def choose_test_ids(ids_by_domain: dict[str, list[str]], test_count: int, seed: int) -> set[str]:
    """Pick exactly ``test_count`` test ids per domain, deterministically.

    Each domain gets its own Generator seeded with ``(seed, domain index)``, drawing from
    its ids sorted, so one domain's losses never change the other's split and the order
    of files on disk does not matter.

    Raises:
        UserError: a domain has ``<= test_count`` usable images (no training images left).
    """
    test: set[str] = set()
    for index, domain in enumerate(DOMAINS):
        ids = sorted(ids_by_domain.get(domain, []))
        if len(ids) <= test_count:
            raise UserError(
                f"resize: only {len(ids)} usable '{domain}' image(s), but resize.test_count is "
                f"{test_count} per domain and training needs at least one more; lower "
                f"resize.test_count in params.yaml (or provide more {domain} images)")
        rng = np.random.default_rng([seed, index])
        test.update(ids[i] for i in rng.choice(len(ids), size=test_count, replace=False))
    return test


# --------------------------------------------------------------------------- manifest
def read_manifest(raw_dir: Path) -> pd.DataFrame:
    """Read and sanity-check ``raw_dir/manifest.csv``; problems are one-line UserErrors."""
    path = raw_dir / "manifest.csv"
    if not path.is_file():
        raise UserError(f"resize: {rel(path)} not found (run the download stage first: dvc repro download)")
    try:
        df = pd.read_csv(path, dtype={"id": str, "domain": str, "file": str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise UserError(f"resize: {rel(path)} is not a readable CSV ({str(e).splitlines()[0]})") from None
    missing = [c for c in ("id", "domain", "file") if c not in df.columns]
    if missing:
        raise UserError(f"resize: {rel(path)} lacks column(s) {', '.join(missing)}")
    if df["id"].isna().any():
        raise UserError(f"resize: {rel(path)} has {int(df['id'].isna().sum())} row(s) without an id")
    dup = df["id"][df["id"].duplicated()].unique().tolist()
    if dup:
        raise UserError(f"resize: {rel(path)} has duplicate ids, e.g. {dup[:5]}")
    bad = sorted(set(df["domain"].fillna("<empty>")) - set(DOMAINS))
    if bad:
        raise UserError(f"resize: {rel(path)} has unknown domain value(s) {bad}; expected {list(DOMAINS)}")
    return df


# --------------------------------------------------------------------------- stage
def process_image(img: Image.Image, size: int) -> tuple[Image.Image, tuple[int, int, int, int]]:
    """Centre-crop ``img`` (W, H) to a square and resize it (LANCZOS) to ``size`` x ``size``.

    Returns the new image and the crop box used, in ``img``'s pixel coordinates.
    """
    crop = square_crop_box(*img.size)
    out = img.resize((size, size), Image.Resampling.LANCZOS, box=crop)
    return out, crop


def resize_dataset(raw_dir: Path, out_dir: Path, metrics_path: Path, size: int, test_count: int,
                   crop: str, seed: int, max_pixels: int, progress: bool = True,
                   align: AlignConfig | None = None) -> pd.DataFrame:
    """Resize every image listed in ``raw_dir/manifest.csv`` and split it into train/test.

    Args:
        raw_dir: folder with ``manifest.csv``; its ``file`` column is relative to it.
        out_dir: output folder; replaced as a whole (stale files from earlier runs vanish).
        metrics_path: where ``resize.json`` goes.
        size: output side in pixels (square ``size`` x ``size`` RGB PNGs).
        test_count: exact number of test images per domain.
        crop: ``'none'``, ``'face'`` (Haar box) or ``'align'`` (landmarks; needs ``align``),
            applied to rows with ``aligned`` False.
        seed: seed for the train/test split.
        max_pixels: larger images are skipped as ``too_large`` without being decoded.
        progress: show a rich progress bar.
        align: the alignment settings for ``crop='align'``.

    Returns:
        The output manifest (also written to ``out_dir/manifest.csv``): surviving input rows
        sorted by (domain, id), ``file`` relative to ``out_dir``, boxes in the new frame,
        plus ``split`` and ``conversions`` (``;``-joined) columns.

    Raises:
        UserError: bad manifest, bad arguments, or too few usable images in a domain.
    """
    if crop not in CROPS:
        raise UserError(f"resize: crop must be one of {', '.join(CROPS)}, got {crop!r}")
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    df = read_manifest(raw_dir)
    n_input = len(df)
    # cheap early check: no point decoding anything if a domain cannot possibly fill the split
    for domain in DOMAINS:
        n = int((df["domain"] == domain).sum())
        if n <= test_count:
            raise UserError(
                f"resize: the manifest lists only {n} '{domain}' image(s), but resize.test_count "
                f"is {test_count} per domain and training needs at least one more; lower "
                f"resize.test_count in params.yaml (or provide more {domain} images)")

    cropper: Any = None
    if crop == "face":
        from face2anime.data.faces import crop_face  # lazy: OpenCV is only needed here

        cropper = lambda img: crop_face(img, margin=FACE_MARGIN)  # noqa: E731
    elif crop == "align":
        if align is None:
            raise UserError("resize: crop 'align' needs the resize.align settings")
        cropper = _Aligner(align, size)

    boxes = _box_columns(df)
    for col in boxes:
        df[col] = pd.to_numeric(df[col], errors="coerce")
    parts = [c[: -len("_x0")] for c in boxes if c.endswith("_x0")
             and all(f"{c[:-3]}_{k}" in boxes for k in ("y0", "x1", "y1"))]

    staging = out_dir.parent / f".{out_dir.name}.partial"
    _remove(staging)
    staging.mkdir(parents=True)
    try:
        kept, skipped = _process_all(df, raw_dir, staging, size, max_pixels, cropper, parts,
                                     progress)
        test_ids = choose_test_ids(
            {d: [r["id"] for r in kept if r["domain"] == d] for d in DOMAINS}, test_count, seed)
        out = _finish_outputs(df, kept, test_ids, staging, boxes)
        _remove(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out_dir)
    finally:
        _remove(staging)

    metrics = _metrics(size, out, skipped, kept)
    if isinstance(cropper, _Aligner):
        metrics["faces"] = cropper.summary()
    written = sum(sum(v.values()) for v in metrics["written"].values())
    extra = sum(1 for r in kept if r.get("face_rank", 1) > 1)
    if written - extra + metrics["skipped_total"] != n_input:
        raise AssertionError(f"resize: {n_input} input rows but written - extra faces + skipped = "
                             f"{written} - {extra} + {metrics['skipped_total']}")
    write_json(metrics_path, metrics)
    Console().print(_summary(metrics), highlight=False, soft_wrap=True)
    return out


def _remove(path: Path) -> None:
    """Delete a file or a folder tree if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


class _Aligner:
    """``crop: align`` for :func:`_process_one`: the landmarker, loaded once, and counts."""

    def __init__(self, cfg: AlignConfig, size: int):
        from face2anime.data.align import Landmarker

        self.cfg, self.size = cfg, size
        self.framing = cfg.framing
        self.landmarker = Landmarker(cfg.landmarks)
        self.counts: Counter[str] = Counter()

    def __call__(self, img: Image.Image) -> list[tuple[Image.Image, dict[str, Any]]]:
        """Aligned faces of one photo with their manifest fields; raises BadImage if none."""
        from face2anime.data.align import align_faces

        faces, small = align_faces(img, self.landmarker, self.size, self.framing, self.cfg.min_eye_px)
        found = len(faces) + len(small)
        self.counts["photos"] += 1
        self.counts["faces_found"] += found
        self.counts["photos_with_several_faces"] += found > 1
        self.counts["faces_too_small"] += len(small)
        if not faces:
            if small:
                raise BadImage("face_too_small", f"{len(small)} face(s), eye distance under "
                               f"{self.cfg.min_eye_px:g} px")
            raise BadImage("no_face", "no face detected")
        taken = faces if self.cfg.faces == "all" else faces[:1]
        self.counts["faces_written"] += len(taken)
        self.counts["faces_not_taken"] += len(faces) - len(taken)
        return [(a.image, {"boxes": {f"{p}_{k}": v for p, b in a.boxes.items()
                                     for k, v in zip(("x0", "y0", "x1", "y1"), b)},
                           "faces_in_photo": found, "face_rank": rank, "eye_px": round(a.eye_px, 1)})
                for rank, a in enumerate(taken, start=1)]

    def summary(self) -> dict[str, Any]:
        return {"detector": "dlib HOG frontal face", **self.cfg.to_dict(),
                **{k: int(self.counts[k]) for k in ("photos", "faces_found", "faces_written",
                                                    "photos_with_several_faces", "faces_too_small",
                                                    "faces_not_taken")}}


def _process_all(df: pd.DataFrame, raw_dir: Path, staging: Path, size: int, max_pixels: int,
                 cropper: Any, parts: list[str], progress: bool
                 ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Load, crop, resize and save every row (in id order) into ``staging/{domain}/{id}.png``.

    Returns ``(kept, skipped)``: per written image a record with ``index`` (row label in
    ``df``), ``id``, ``domain``, ``conversions`` and new ``boxes`` ({column: value}); per
    skipped row ``{"id", "file", "reason"}``.
    """
    kept: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    has_aligned = "aligned" in df.columns
    order = df.sort_values("id", kind="stable").index
    columns = [BarColumn(), MofNCompleteColumn(), TextColumn("skipped {task.fields[skips]}"),
               TimeRemainingColumn()]
    with Progress(TextColumn("resize"), *columns, console=Console(stderr=True), transient=True,
                  disable=not progress) as bar:
        task = bar.add_task("resize", total=len(order), skips=0)
        for idx in order:
            row = df.loc[idx]
            rid, domain, file = str(row["id"]), str(row["domain"]), row["file"]
            file = "" if not isinstance(file, str) else file
            reason = None
            try:
                if not _SAFE_ID.match(rid):
                    reason = "bad_id"
                elif not file.strip():
                    reason = "missing"
                elif Path(file).is_absolute() or ".." in Path(file).parts:
                    reason = "bad_path"
                else:
                    for record in _process_one(raw_dir / file, rid, domain, row, size, max_pixels,
                                               cropper, parts, has_aligned, staging):
                        record["index"] = idx
                        kept.append(record)
            except BadImage as e:
                reason = e.reason
            if reason is not None:
                skipped.append({"id": rid, "file": file, "reason": reason})
            bar.update(task, advance=1, skips=len(skipped))
    return kept, skipped


def _process_one(path: Path, rid: str, domain: str, row: pd.Series, size: int, max_pixels: int,
                 cropper: Any, parts: list[str], has_aligned: bool, staging: Path
                 ) -> list[dict[str, Any]]:
    """One row -> ``staging/{domain}/{id}.png`` (one per face with ``crop: align``); returns
    their records. Raises BadImage to skip."""
    img, conversions = load_rgb(path, max_pixels=max_pixels)
    aligned = is_aligned(row["aligned"]) if has_aligned else ALIGNED_DEFAULT
    new_boxes: dict[str, float] = {}
    if isinstance(cropper, _Aligner) and not aligned:
        records = []
        for face, extra in cropper(img):
            fid = rid if extra["face_rank"] == 1 else f"{rid}.f{extra['face_rank']}"
            out, _ = process_image(face, size)
            save_image(out, staging / domain / f"{fid}.png")
            boxes = {c: math.nan for p in parts for c in (f"{p}_x0", f"{p}_y0", f"{p}_x1", f"{p}_y1")}
            boxes.update(extra.pop("boxes"))
            records.append({"id": fid, "domain": domain, "conversions": conversions + ["aligned"],
                            "boxes": boxes, "fields": {**extra, "boxes_from": "landmarks"}, **extra})
        return records
    if cropper is not None and not aligned:
        face = cropper(img)
        if face is None:
            raise BadImage("no_face", "no face detected")
        img = face if face.mode == "RGB" else face.convert("RGB")
        conversions.append("face_crop")
        new_boxes = {f"{p}_{k}": math.nan for p in parts for k in ("x0", "y0", "x1", "y1")}
        out, _ = process_image(img, size)
    else:
        w, h = img.size
        out, crop_box = process_image(img, size)
        for p in parts:
            cols = [f"{p}_{k}" for k in ("x0", "y0", "x1", "y1")]
            box = transform_box(tuple(row[c] for c in cols), w, h, crop_box)  # type: ignore[arg-type]
            new_boxes.update(zip(cols, box))
    save_image(out, staging / domain / f"{rid}.png")
    return [{"id": rid, "domain": domain, "conversions": conversions, "boxes": new_boxes}]


def _finish_outputs(df: pd.DataFrame, kept: list[dict[str, Any]], test_ids: set[str],
                    staging: Path, boxes: list[str]) -> pd.DataFrame:
    """Move staged PNGs into their split folders and write ``staging/manifest.csv``."""
    ids = [r["id"] for r in kept]
    dup = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if dup:
        raise UserError(f"resize: a second face's id {dup[0]!r} is also an input id; rename that file")
    out = df.loc[[r["index"] for r in kept]].reset_index(drop=True)
    out["id"] = ids
    splits, files, convs = [], [], []
    for pos, r in enumerate(kept):
        split = "test" if r["id"] in test_ids else "train"
        dest = staging / r["domain"] / split / f"{r['id']}.png"
        dest.parent.mkdir(parents=True, exist_ok=True)
        (staging / r["domain"] / f"{r['id']}.png").rename(dest)
        splits.append(split)
        files.append(f"{r['domain']}/{split}/{r['id']}.png")
        convs.append(";".join(r["conversions"]))
        for col, value in {**r["boxes"], **r.get("fields", {})}.items():
            if col not in out.columns:
                out[col] = math.nan if not isinstance(value, str) else ""
            out.at[pos, col] = value
    out["file"] = files
    out["split"] = splits
    out["conversions"] = convs
    out["_order"] = out["domain"].map({d: i for i, d in enumerate(DOMAINS)})
    out = out.sort_values(["_order", "id"], kind="stable").drop(columns="_order")
    out = out.reset_index(drop=True)
    save_csv(out, staging / "manifest.csv")
    return out


def _metrics(size: int, out: pd.DataFrame, skipped: list[dict[str, str]],
             kept: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``metrics/resize.json`` object."""
    written = {d: {s: int(((out["domain"] == d) & (out["split"] == s)).sum()) for s in ("train", "test")}
               for d in DOMAINS}
    reasons = Counter(s["reason"] for s in skipped)
    converted = Counter(c for r in kept for c in r["conversions"])
    return {
        "size": size,
        "input_rows": len(kept) + len(skipped),
        "written": written,
        "skipped": dict(sorted(reasons.items())),
        "skipped_total": len(skipped),
        "converted": dict(sorted(converted.items())),
        "skipped_examples": skipped[:MAX_SKIPPED_EXAMPLES],
    }


def _summary(m: dict[str, Any]) -> str:
    """One line: written per domain (train/test), skipped by reason."""
    written = ", ".join(f"{d} {v['train']} train + {v['test']} test" for d, v in m["written"].items())
    skips = ", ".join(f"{k} {v}" for k, v in m["skipped"].items()) or "none"
    return f"resize: {m['size']}px; wrote {written}; skipped {m['skipped_total']} ({skips})"
