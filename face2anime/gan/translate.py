"""Stage 7, ``translate@METHOD``: held-out human test images through the method's
human -> character generator.

Outputs ``data/translated/METHOD/<id>.png`` (one per human test image) and
``reports/translate_METHOD.png`` (rows of sources above their translations). A method with
attention also writes ``data/translated/METHOD/cam/<id>.png``: the source overlaid with the
heatmap the generator attended to (U-GAT-IT: its learned CAM; an attention method: the
Grad-CAM it was given), shown by ``compare.png``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console

from face2anime.core.paths import REPORTS_DIR, RESIZED_DIR, TRANSLATED_DIR
from face2anime.core.io import rel, replace_dir, save_image, staging_dir
from face2anime.core.schema import ParamsFile
from face2anime.data.images import load_split, pairs_grid, read_manifest, to_pil, to_uint8
from face2anime.gan.inference import CYCLEGAN_DIR, Translator


def heat_overlay(img: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """uint8 ``[3, S, S]`` overlaid with a heatmap ``[1, h, w]`` in [0, 1] (resized bilinearly;
    grad-cam's jet overlay) -> uint8 ``[3, S, S]``."""
    from pytorch_grad_cam.utils.image import show_cam_on_image

    s = img.shape[-1]
    h = F.interpolate(heat[None].float(), size=(s, s), mode="bilinear", align_corners=False)[0, 0]
    rgb = img.permute(1, 2, 0).numpy().astype(np.float32) / 255.0
    return torch.from_numpy(show_cam_on_image(rgb, h.numpy(), use_rgb=True)).permute(2, 0, 1)


def translate(method: str, params: ParamsFile, data_dir: Path = RESIZED_DIR, out_root: Path = TRANSLATED_DIR,
              cyclegan_dir: Path = CYCLEGAN_DIR, reports_dir: Path = REPORTS_DIR) -> Path:
    grid_count = params.translate.grid_count
    translator = Translator.from_params(method, params, cyclegan_dir)
    rows, x = load_split(read_manifest(data_dir), "human", "test", data_dir)
    fake, heat = translator.to_character_with_heatmaps(x)
    fake = to_uint8(fake)
    out_dir = out_root / method
    staging = staging_dir(out_dir)
    for img_id, img in zip(rows["id"], fake):
        to_pil(img).save(staging / f"{img_id}.png")
    if heat is not None:
        (staging / "cam").mkdir()
        for img_id, src, h in zip(rows["id"], x, heat):
            to_pil(heat_overlay(src, h)).save(staging / "cam" / f"{img_id}.png")
    replace_dir(staging, out_dir)
    k = min(grid_count, len(x))
    grid_png = reports_dir / f"translate_{method}.png"
    save_image(to_pil(pairs_grid([x[:k], fake[:k]])), grid_png)
    Console().print(f"translate[{method}]: {len(x)} human test images -> {rel(out_dir)}; grid {rel(grid_png)}")
    return out_dir
