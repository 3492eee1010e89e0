"""Stage 5, ``select``: the proposed method's human training set, picked by CAM score.

Reads ``data/cam/scores.csv`` only, so changing ``select.*`` re-runs nothing upstream.
Keeps human train images with ``part_focus >= select.threshold``, best first (ties broken
by id), at most ``select.max_images`` (the paper used 500) and at most ``select.share`` of
the candidates (for data sets whose size a fixed count cannot anticipate). Fewer than
``select.min_images`` is an error that shows the score distribution.

Outputs ``data/select/selected.csv`` (id, part_focus, rank) and ``metrics/select.json``
(count, score quantiles and, where ground truth exists, ``precision`` = share of clean
images among the selected next to ``base_rate`` = share of clean among all candidates).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console

from face2anime.core.paths import CAM_SCORES, METRICS_DIR, SELECT_CSV
from face2anime.core.io import rel, save_csv, write_json
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.data.images import is_clean, subset_size

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def quantiles(s: pd.Series) -> dict[str, float]:
    return {f"q{int(q * 100):02d}": round(float(s.quantile(q)), 4) for q in QUANTILES}


def select(scores: pd.DataFrame, threshold: float, max_images: int, min_images: int,
           share: float = 1.0) -> pd.DataFrame:
    """Rows with ``part_focus >= threshold``, best first (ties by id), capped at
    :func:`~face2anime.data.images.subset_size` (``max_images``, ``share`` of the candidates).

    Raises :class:`UserError` (with the score distribution) when fewer than ``min_images`` pass.
    """
    passing = scores[scores["part_focus"] >= threshold]
    ranked = passing.sort_values(["part_focus", "id"], ascending=[False, True], kind="mergesort")
    chosen = ranked.head(subset_size(len(scores), max_images, share)).reset_index(drop=True)
    if len(chosen) < min_images:
        q = ", ".join(f"{k}={v:.3f}" for k, v in quantiles(scores["part_focus"]).items())
        n_at = int((scores["part_focus"] >= threshold).sum())
        raise UserError(
            f"select.threshold={threshold} keeps {n_at} of {len(scores)} human images, fewer than "
            f"select.min_images={min_images}; part_focus quantiles: {q}. Lower select.threshold."
        )
    chosen.insert(2, "rank", np.arange(1, len(chosen) + 1))
    return chosen


def select_metrics(scores: pd.DataFrame, chosen: pd.DataFrame, threshold: float, max_images: int) -> dict:
    m: dict = {"threshold": threshold, "max_images": max_images, "candidates": int(len(scores)),
               "selected": int(len(chosen)),
               "selected_share": round(len(chosen) / max(1, len(scores)), 4),
               "part_focus_all": quantiles(scores["part_focus"]),
               "part_focus_selected": quantiles(chosen["part_focus"]),
               "precision": None, "base_rate": None, "precision_gain": None}
    if "clean" in scores.columns and scores["clean"].notna().all():
        base = float(is_clean(scores["clean"]).mean())
        prec = float(is_clean(chosen["clean"]).mean())
        m.update(precision=round(prec, 4), base_rate=round(base, 4), precision_gain=round(prec - base, 4))
    return m


def run_select(params: ParamsFile, scores_csv: Path = CAM_SCORES, out_csv: Path = SELECT_CSV,
               metrics_path: Path = METRICS_DIR / "select.json") -> pd.DataFrame:
    cfg = params.select
    threshold, max_images, min_images, share = cfg.threshold, cfg.max_images, cfg.min_images, cfg.share
    if min_images > max_images:
        raise UserError(f"{params.source}: select.min_images ({min_images}) exceeds select.max_images ({max_images})")
    if not scores_csv.is_file():
        raise UserError(f"{scores_csv} not found: run the cam stage first")
    scores = pd.read_csv(scores_csv, dtype={"id": str, "hard_kind": str})
    chosen = select(scores, threshold, max_images, min_images, share)
    save_csv(chosen, out_csv)
    m = select_metrics(scores, chosen, threshold, max_images)
    m["share"] = share
    write_json(metrics_path, m)
    extra = (f"; precision {m['precision']:.3f} vs base rate {m['base_rate']:.3f}"
             if m["precision"] is not None else "")
    Console().print(f"select: {len(chosen)} of {len(scores)} human images with part_focus >= {threshold}"
                    f"{extra} -> {rel(out_csv)}")
    return chosen
