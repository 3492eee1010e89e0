"""Stage 7, ``translate@METHOD``: held-out human test images through the method's
human -> character generator.

Outputs ``data/translated/METHOD/<id>.png`` (one per human test image) and
``reports/translate_METHOD.png`` (rows of sources above their translations).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import typer
from rich.console import Console
from torchvision.utils import make_grid

from stages.common import Params, load_params, rel, save_image
from stages.data import RESIZED_DIR, load_split, read_manifest, to_pil, to_uint8
from stages.inference import CYCLEGAN_DIR, Translator

TRANSLATED_DIR = Path("data/translated")


def pairs_grid(rows: list[torch.Tensor], per_row: int = 8) -> torch.Tensor:
    """Interleave equally long uint8 image sets ``[N,3,S,S]`` as blocks of ``per_row`` columns:
    set 1's first ``per_row`` images, set 2's same images below, ...; returns a uint8 grid."""
    n = len(rows[0])
    tiles = []
    for start in range(0, n, per_row):
        for r in rows:
            chunk = r[start:start + per_row]
            pad = per_row - len(chunk)
            tiles.append(torch.cat([chunk, torch.full((pad, *chunk.shape[1:]), 255, dtype=torch.uint8)]) if pad else chunk)
    return make_grid(torch.cat(tiles), nrow=per_row, padding=2, pad_value=255)


def translate(method: str, params: Params, data_dir: Path = RESIZED_DIR, out_root: Path = TRANSLATED_DIR,
              cyclegan_dir: Path = CYCLEGAN_DIR, reports_dir: Path = Path("reports")) -> Path:
    grid_count = params.int("translate.grid_count", lo=1)
    translator = Translator.from_params(method, params, cyclegan_dir)
    rows, x = load_split(read_manifest(data_dir), "human", "test", data_dir)
    fake = to_uint8(translator.to_character(x))
    out_dir = out_root / method
    staging = out_root / f".{method}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for img_id, img in zip(rows["id"], fake):
        to_pil(img).save(staging / f"{img_id}.png")
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    k = min(grid_count, len(x))
    grid_png = reports_dir / f"translate_{method}.png"
    save_image(to_pil(pairs_grid([x[:k], fake[:k]])), grid_png)
    Console().print(f"translate[{method}]: {len(x)} human test images -> {rel(out_dir)}; grid {rel(grid_png)}")
    return out_dir


def main(method: str = typer.Argument(..., help="an entry of cyclegan.methods"),
         params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Translate the held-out human test images with METHOD's generator."""
    translate(method, load_params(params))
