"""Evaluation's ceiling: the ideal translation, where the data can render it.

On the built-in synthetic data every test human has a known character counterpart (the same
attributes, hard kind, pose and colours: :func:`face2anime.data.synthetic.render.render_counterpart`).
``evaluate`` scores those images exactly like a method's translations (``ceiling`` in
``metrics/eval/METHOD.json``) and reports the method's headline metrics as a fraction of
them (:func:`of_ceiling`). On other data there is no ceiling (None).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import torch

from face2anime.core.schema import ParamsFile

_SYNTH_ID = re.compile(r"^h(\d{5})$")


def ceiling_images(src_rows: pd.DataFrame, params: ParamsFile, size: int) -> torch.Tensor | None:
    """Each synthetic test human rendered as a character (same attributes, hard kind, pose),
    at the download size and then centre-cropped and LANCZOS-resized to ``size`` exactly as
    the resize stage does. None for data that is not the built-in synthetic set."""
    if params.download.source != "synthetic":
        return None
    from PIL import Image

    from face2anime.data.imageio import square_crop_box
    from face2anime.data.synthetic.render import render_counterpart

    raw_size = params.download.synthetic.size
    seed = params.seed
    out = []
    for rid, kind in zip(src_rows["id"], src_rows["hard_kind"].fillna("") if "hard_kind" in src_rows else [""] * len(src_rows)):
        m = _SYNTH_ID.match(str(rid))
        if m is None:
            return None
        arr, _, _ = render_counterpart(seed, "human", int(m.group(1)), raw_size, str(kind))
        img = Image.fromarray(arr)
        img = img.resize((size, size), Image.Resampling.LANCZOS, box=square_crop_box(*img.size))
        out.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))
    return torch.stack(out).contiguous()


def of_ceiling(m: dict, ceil: dict) -> dict:
    """The method's headline metrics as a fraction of the ceiling's (None where undefined;
    ``attr_preservation_above_chance``: of the ceiling's margin above chance)."""
    def frac(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or abs(b) < 1e-12 else a / b

    ap = m["attr_preservation"]
    return {
        "char_rate": frac(m["char_rate"], ceil["char_rate"]),
        "attr_preservation_above_chance": None if ap is None or ceil["attr_preservation"] is None
        else frac(ap["above_chance"], ceil["attr_preservation"] - ap["chance"]),
        "edge_ssim": frac(m["edge_ssim"], ceil["edge_ssim"]),
        "cam_overlap": frac(m["cam_overlap"], ceil["cam_overlap"]),
        "realism_inside_rate": frac(m["realism"]["inside_rate"], ceil["realism"]["inside_rate"]),
    }
