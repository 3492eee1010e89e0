"""Stage 4, ``cam``: Grad-CAM of every training image and the ``part_focus`` score.

For each train image of both domains the guiding classifier's CAM for the image's own
class (human images -> "human", character images -> "character") is computed with the
grad-cam package (method and target layer from params), normalised to [0, 1], and stored
at the CycleGAN residual-block resolution (``resize.size // 4``) so training never
recomputes it:

- ``data/cam/{human,character}.npz``: ``ids`` [N] and ``cams`` float16 [N, S/4, S/4]
- ``data/cam/scores.csv``: per human train image ``part_focus`` (share of CAM mass inside
  the eye and mouth boxes), ``boxes_from`` and, on synthetic data, ``clean``/``hard_kind``
- ``metrics/cam.json``: part_focus of clean vs hard images, boxes found/missing
- ``reports/cam_overlay.png``: highest- and lowest-scored images with their CAMs
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.progress import track

from face2anime.core.paths import CAM_DIR, CAM_OVERLAY, METRICS_DIR, RESIZED_DIR
from face2anime.cam.maps import compute_cams, downsample
from face2anime.core.io import atomic_path, rel, save_csv, write_json
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.core.runtime import pick_device
from face2anime.data.images import (
    ALIGNED_DEFAULT,
    is_aligned,
    is_clean,
    load_images,
    read_manifest,
    to_pil,
)
from face2anime.data.images import rows as split_rows
from face2anime.models.classifiers import find_layer
from face2anime.models.classify import LABELS, load_classifier
from face2anime.core.paths import CLASSIFIER_DIR

CHUNK_BATCHES = 4   # a chunk of cam.batch_size x 4 images is loaded at a time: memory does not grow with N
OVERLAY_K = 8
FOCUS_PARTS = ("leye", "reye", "mouth")


def box_mask(boxes: list[tuple[float, float, float, float]], size: int) -> np.ndarray:
    """Union of normalised boxes ``(x0,y0,x1,y1)`` as a ``[size,size]`` float mask with
    fractional edge coverage, so a box's area is exact at any resolution."""
    grid = np.arange(size, dtype=np.float64)
    mask = np.zeros((size, size))
    for x0, y0, x1, y1 in boxes:
        cov_x = np.clip(np.minimum(grid + 1, x1 * size) - np.maximum(grid, x0 * size), 0, 1)
        cov_y = np.clip(np.minimum(grid + 1, y1 * size) - np.maximum(grid, y0 * size), 0, 1)
        mask = np.maximum(mask, np.outer(cov_y, cov_x))
    return mask


def part_focus(cam: np.ndarray, boxes: list[tuple[float, float, float, float]]) -> float:
    """Share of the CAM's mass inside the union of ``boxes`` (0 when there is no mass or box)."""
    total = float(cam.sum())
    if total <= 0 or not boxes:
        return 0.0
    return float((cam * box_mask(boxes, cam.shape[0])).sum() / total)


def manifest_boxes(row: pd.Series) -> list[tuple[float, float, float, float]] | None:
    """The eye and mouth boxes of a manifest row, or None when the row has none."""
    boxes = []
    for p in FOCUS_PARTS:
        cols = [f"{p}_{c}" for c in ("x0", "y0", "x1", "y1")]
        if not all(c in row.index for c in cols):
            return None
        vals = [row[c] for c in cols]
        if any(pd.isna(v) for v in vals):
            continue
        boxes.append(tuple(float(v) for v in vals))
    return boxes or None


def detected_boxes(img: torch.Tensor, aligned: bool) -> list[tuple[float, float, float, float]] | None:
    """Eye/mouth boxes for a real photo: canonical when aligned, Haar-detected otherwise."""
    from face2anime.data import faces

    found = faces.part_boxes(to_pil(img), aligned=aligned)
    if not found:
        return None
    return [tuple(found[p]) for p in FOCUS_PARTS if p in found] or None


def overlay_picture(x: torch.Tensor, cams: np.ndarray, order: np.ndarray, out_png: Path,
                    k: int = 8) -> None:
    """Rows: the ``k`` highest-scored images, their CAM overlays, the ``k`` lowest, theirs."""
    from pytorch_grad_cam.utils.image import show_cam_on_image
    from torchvision.utils import make_grid

    from face2anime.core.io import save_image

    k = min(k, len(order) // 2) or min(k, len(order))
    tiles = []
    for group in (order[:k], order[::-1][:k]):
        imgs = [x[i].permute(1, 2, 0).numpy().astype(np.float32) / 255.0 for i in group]
        tiles += [torch.from_numpy((im * 255).astype(np.uint8)).permute(2, 0, 1) for im in imgs]
        tiles += [torch.from_numpy(show_cam_on_image(im, cams[i], use_rgb=True)).permute(2, 0, 1)
                  for im, i in zip(imgs, group)]
    grid = make_grid(torch.stack(tiles), nrow=k, padding=2, pad_value=255)
    save_image(to_pil(grid), out_png)


def run_cam(params: ParamsFile, data_dir: Path = RESIZED_DIR, model_dir: Path = CLASSIFIER_DIR,
            cam_dir: Path = CAM_DIR, metrics_path: Path = METRICS_DIR / "cam.json",
            overlay_png: Path = CAM_OVERLAY) -> pd.DataFrame:
    """Compute and store the CAMs of all train images; score and return the human ones."""
    method, layer_name, batch_size = params.cam.method, params.cam.target_layer, params.cam.batch_size
    size = params.resize.size
    if size % 4:
        raise UserError(f"{params.source}: resize.size must be divisible by 4 (CAMs are stored at size/4), got {size}")
    device = pick_device(params.device)
    model = load_classifier("classifier", model_dir, device)
    try:
        layer = find_layer(model, layer_name)
    except KeyError as e:
        raise UserError(f"params.yaml: cam.target_layer: {e.args[0]}") from None
    manifest = read_manifest(data_dir)
    cam_dir.mkdir(parents=True, exist_ok=True)
    chunk = batch_size * CHUNK_BATCHES  # images in memory at once; CAM batches keep the same boundaries
    scores = pd.DataFrame()
    for domain in ("human", "character"):
        rows = split_rows(manifest, domain, "train")
        small, parts, peak = [], [], 0.0
        for start in track(range(0, len(rows), chunk), description=f"cam {domain}", transient=True):
            r = rows.iloc[start:start + chunk].reset_index(drop=True)
            x = load_images(r["file"], data_dir)
            cams = compute_cams(model, layer, x, LABELS[domain], method, batch_size, require_signal=False)
            peak = max(peak, float(cams.max(initial=0.0)))
            small.append(downsample(cams, size // 4))
            if domain == "human":
                parts.append(score_humans(r, x, cams))
        if len(rows) and peak <= 0:
            raise UserError(f"cam: every {method} map of the {len(rows)} {domain} train images is all zero: the "
                            "target layer has no usable gradient (check cam.target_layer and the classifier)")
        with atomic_path(cam_dir / f"{domain}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, ids=np.array(rows["id"], dtype=str),
                         cams=np.concatenate(small) if small else np.zeros((0, size // 4, size // 4), np.float16))
        if domain == "human":
            scores = pd.concat(parts, ignore_index=True) if parts else score_humans(rows, None, None)
            order = np.argsort(-scores["part_focus"].to_numpy(), kind="stable")
            k = min(OVERLAY_K, len(order) // 2) or min(OVERLAY_K, len(order))
            show = np.concatenate([order[:k], order[::-1][:k]])
            xs = load_images(rows["file"].iloc[show], data_dir)
            overlay_picture(xs, compute_cams(model, layer, xs, LABELS[domain], method, batch_size,
                                             require_signal=False), np.arange(2 * k), overlay_png, k)
    save_csv(scores, cam_dir / "scores.csv")
    metrics = cam_metrics(scores, method)
    write_json(metrics_path, metrics)
    Console().print(f"cam: {method} on {len(scores)} human + character train images; "
                    f"mean part_focus {metrics['part_focus_mean']:.3f}"
                    + (f" (clean {metrics['part_focus_clean_mean']:.3f}, hard {metrics['part_focus_hard_mean']:.3f})"
                       if metrics.get("part_focus_hard_mean") is not None else "")
                    + f"; overlay {rel(overlay_png)}")
    return scores


def score_humans(rows: pd.DataFrame, x: torch.Tensor, cams: np.ndarray) -> pd.DataFrame:
    """part_focus of each human image, with where its boxes came from."""
    focus, source = [], []
    for i, (_, row) in enumerate(rows.iterrows()):
        boxes = manifest_boxes(row)
        src = str(row["boxes_from"]) if isinstance(row.get("boxes_from"), str) and row["boxes_from"] else "manifest"
        if boxes is None:
            aligned = is_aligned(row["aligned"]) if "aligned" in row.index else ALIGNED_DEFAULT
            boxes = detected_boxes(x[i], aligned)
            src = ("canonical" if aligned else "detected") if boxes else "none"
        focus.append(part_focus(cams[i], boxes) if boxes else 0.0)
        source.append(src)
    out = pd.DataFrame({"id": rows["id"], "part_focus": np.round(focus, 6), "boxes_from": source})
    for col in ("clean", "hard_kind"):
        if col in rows.columns:
            out[col] = rows[col].to_numpy()
    return out


def cam_metrics(scores: pd.DataFrame, method: str) -> dict:
    """Summary of part_focus overall, for clean vs hard images and per hard kind."""
    pf = scores["part_focus"]
    m: dict = {"method": method, "n_human": int(len(scores)), "part_focus_mean": float(pf.mean()),
               "boxes_from": {k: int(v) for k, v in scores["boxes_from"].value_counts().items()},
               "no_parts_found": int((scores["boxes_from"] == "none").sum())}
    if "clean" in scores.columns and scores["clean"].notna().all():
        clean = is_clean(scores["clean"])
        m["part_focus_clean_mean"] = float(pf[clean].mean()) if clean.any() else None
        m["part_focus_hard_mean"] = float(pf[~clean].mean()) if (~clean).any() else None
        if "hard_kind" in scores.columns and (~clean).any():
            m["part_focus_by_hard_kind"] = {str(k): float(v) for k, v in pf[~clean].groupby(scores["hard_kind"][~clean]).mean().items()}
    return m
