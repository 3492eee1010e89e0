"""Stage 7, ``translate@METHOD``: held-out human test images through the method's
human -> character generator.

Outputs ``data/translated/METHOD/<id>.png`` (one per human test image) and
``reports/translate_METHOD.png`` (rows of sources above their translations).
"""
from __future__ import annotations

from pathlib import Path

from rich.console import Console

from face2anime.core.paths import REPORTS_DIR, RESIZED_DIR, TRANSLATED_DIR
from face2anime.core.io import rel, replace_dir, save_image, staging_dir
from face2anime.core.schema import ParamsFile
from face2anime.data.images import load_split, pairs_grid, read_manifest, to_pil, to_uint8
from face2anime.gan.inference import CYCLEGAN_DIR, Translator


def translate(method: str, params: ParamsFile, data_dir: Path = RESIZED_DIR, out_root: Path = TRANSLATED_DIR,
              cyclegan_dir: Path = CYCLEGAN_DIR, reports_dir: Path = REPORTS_DIR) -> Path:
    grid_count = params.translate.grid_count
    translator = Translator.from_params(method, params, cyclegan_dir)
    rows, x = load_split(read_manifest(data_dir), "human", "test", data_dir)
    fake = to_uint8(translator.to_character(x))
    out_dir = out_root / method
    staging = staging_dir(out_dir)
    for img_id, img in zip(rows["id"], fake):
        to_pil(img).save(staging / f"{img_id}.png")
    replace_dir(staging, out_dir)
    k = min(grid_count, len(x))
    grid_png = reports_dir / f"translate_{method}.png"
    save_image(to_pil(pairs_grid([x[:k], fake[:k]])), grid_png)
    Console().print(f"translate[{method}]: {len(x)} human test images -> {rel(out_dir)}; grid {rel(grid_png)}")
    return out_dir
