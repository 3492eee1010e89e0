"""Stage 1, ``download``: materialise the raw human and character face images.

Writes ``data/raw/{human,character}/*``, ``data/raw/manifest.csv``, a contact sheet
``reports/contact_sheet.png`` and ``metrics/download.json`` (images per domain; for real
sources the archive entries refused with their reasons and the non-image files skipped). ``download.source`` picks the source: ``synthetic`` (default,
offline, procedural; see :mod:`face2anime.data.synthetic`) or a real one handled by
:mod:`face2anime.sources.realdata` (``ffhq``, ``animeface``, ``selfie2anime``, ``local``).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
from rich.console import Console

from face2anime.core.paths import CONTACT_SHEET, METRICS_DIR, RAW_DIR
from face2anime.core.io import rel, replace_dir, save_csv, staging_dir, write_json
from face2anime.core.params import UserError
from face2anime.core.runtime import cores
from face2anime.core.schema import ParamsFile

SOURCES = ("synthetic", "ffhq", "animeface", "selfie2anime", "local")
DOWNLOAD_CACHE = Path(".downloads")  # resumable partial downloads; not a DVC output


def download(params: ParamsFile, raw_dir: Path = RAW_DIR, contact_sheet: Path = CONTACT_SHEET,
             cache_dir: Path = DOWNLOAD_CACHE, metrics_path: Path = METRICS_DIR / "download.json",
             progress: bool = True) -> pd.DataFrame:
    """Fill ``raw_dir`` from ``download.source`` and return the manifest it wrote.

    The manifest has one row per image: ``id``, ``domain`` (human|character), ``file``
    (relative to ``raw_dir``), ``aligned`` and ``clean``; synthetic data adds its ground-truth
    attributes, ``hard_kind`` and normalised part boxes ``{leye,reye,mouth,nose}_{x0,y0,x1,y1}``.
    """
    cfg = params.download
    source, seed = cfg.source, params.seed
    staging = staging_dir(raw_dir)       # filled, then put in place as a unit (replace_dir)
    if source == "synthetic":
        from face2anime.data.synthetic.dataset import generate

        manifest = generate(
            staging,
            n_human=cfg.synthetic.n_human,
            n_character=cfg.synthetic.n_character,
            size=cfg.synthetic.size,
            hard_share=cfg.synthetic.hard_share,
            hard_share_character=cfg.synthetic.hard_share_character,
            seed=seed,
            progress=progress,
            workers=cores(),        # the same images for any number of workers
        )
        manifest["aligned"] = True
        report: dict = {"source": source}
        if cfg.synthetic.photo_like:
            report["photo_like"] = make_photo_like(manifest, staging, seed, progress)
    else:
        from face2anime.sources import realdata

        manifest = realdata.collect(source, cfg, staging, cache_dir, progress=progress)
        report = dict(manifest.attrs.get("collect_report", {"source": source}))
    counts = manifest["domain"].value_counts()
    for domain in ("human", "character"):
        if counts.get(domain, 0) == 0:
            raise UserError(f"download.source={source} gave no {domain} images")
    save_csv(manifest, staging / "manifest.csv")
    replace_dir(staging, raw_dir)        # flushed, then swapped in one step: an interrupted run leaves no mix
    _contact_sheet(manifest, raw_dir, contact_sheet)
    report["images"] = {d: int(counts.get(d, 0)) for d in ("human", "character")}
    if "clean" in manifest.columns and manifest["clean"].notna().all():
        for domain in ("human", "character"):
            report[f"hard_{domain}"] = int((~manifest.loc[manifest["domain"] == domain, "clean"].astype(bool)).sum())
    report["refused"] = report.get("refused", [])[:50]  # examples; totals are in refused_by_reason
    write_json(metrics_path, report)
    for reason, n in report.get("refused_by_reason", {}).items():
        Console().print(f"download: refused {n} archive entries: {reason}")
    if report.get("skipped_files"):
        Console().print(f"download: skipped {report['skipped_files']} non-image files")
    Console().print(
        f"download: {source}: {counts.get('human', 0)} human, {counts.get('character', 0)} character "
        f"images -> {rel(raw_dir)}; contact sheet {rel(contact_sheet)}"
    )
    return manifest


def make_photo_like(manifest: pd.DataFrame, root: Path, seed: int, progress: bool = True) -> int:
    """Re-render every human image under ``root`` photo-like (see :mod:`face2anime.data.photolike`),
    in place; returns how many. Deterministic per (seed, image index)."""
    import numpy as np
    from PIL import Image
    from rich.progress import track

    from face2anime.data.photolike import photo_like

    humans = manifest[manifest["domain"] == "human"]
    for _, row in track(list(humans.iterrows()), description="photo-like humans", disable=not progress,
                        transient=True):
        path = root / row["file"]
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
        Image.fromarray(photo_like(arr, seed, int(str(row["id"]).lstrip("h") or 0))).save(path)
    return len(humans)


def _contact_sheet(manifest: pd.DataFrame, raw_dir: Path, out_png: Path, per_row: int = 8) -> None:
    """Synthetic data: attribute-matched rows (see :func:`face2anime.data.synthetic.contact_sheet.contact_sheet`).
    Real data: the first readable images of each domain, one row per domain."""
    from face2anime.data.synthetic.attributes import ATTRIBUTES
    from face2anime.data.synthetic.contact_sheet import contact_sheet

    if all(a in manifest.columns for a in ATTRIBUTES):
        contact_sheet(manifest, raw_dir, out_png, per_row)
        return
    import numpy as np
    import torch
    from PIL import Image
    from torchvision.utils import make_grid

    from face2anime.core.io import save_image
    from face2anime.data.imageio import BadImage, load_rgb

    tiles = []
    for domain in ("human", "character"):
        shown = 0
        for f in manifest.loc[manifest["domain"] == domain, "file"].sort_values():
            if shown == per_row:
                break
            try:
                img, _ = load_rgb(raw_dir / f)
            except BadImage:
                continue
            img = img.resize((96, 96), Image.Resampling.LANCZOS)
            tiles.append(torch.from_numpy(np.asarray(img)).permute(2, 0, 1))
            shown += 1
        tiles += [torch.full((3, 96, 96), 255, dtype=torch.uint8)] * (per_row - shown)
    grid = make_grid(torch.stack(tiles), nrow=per_row, padding=2, pad_value=255)
    save_image(Image.fromarray(grid.permute(1, 2, 0).numpy()), out_png)
