"""``face2anime face-check PHOTOS``: how the photos of a folder will be aligned, before training.

For every image under ``PHOTOS`` it runs the landmark alignment that ``resize`` uses
(``resize.align.*`` from params.yaml) and, beside it, OpenCV's Haar cascade (the old
``crop: face``), and prints per photo and in total: faces found by each, faces too small,
unreadable files. ``--sheet`` writes a contact sheet: aligned faces with their eye and
mouth boxes in the top rows and, with ``--character``, anime crops at the same size below,
so the framing of the two domains can be compared by eye.
"""
from __future__ import annotations

from pathlib import Path

import typer
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table

from face2anime.core.io import rel, save_image
from face2anime.core.params import UserError, load_params
from face2anime.data.imageio import BadImage, load_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def image_files(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursive), sorted; a missing folder is a UserError."""
    if not folder.is_dir():
        raise UserError(f"face-check: {folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def check(photos: list[Path], landmarks: int, scale: float, shift: float, min_eye_px: float,
          size: int = 96) -> tuple[list[dict], list[tuple[Image.Image, dict]]]:
    """Per photo: ``file``, ``landmark_faces``, ``too_small``, ``haar_faces``, ``error``; and
    the aligned faces (crop of ``size`` px, part boxes) in photo order, largest face first."""
    from face2anime.data.align import Framing, Landmarker, align_faces
    from face2anime.data.faces import detect_faces

    lm, framing = Landmarker(landmarks), Framing(scale, shift)
    rows, crops = [], []
    for path in photos:
        try:
            img, _ = load_rgb(path)
        except BadImage as e:
            rows.append({"file": path.name, "landmark_faces": 0, "too_small": 0, "haar_faces": 0, "error": e.reason})
            continue
        aligned, small = align_faces(img, lm, size, framing, min_eye_px)
        rows.append({"file": path.name, "landmark_faces": len(aligned) + len(small), "too_small": len(small),
                     "haar_faces": len(detect_faces(img)), "error": ""})
        crops += [(a.image, a.boxes) for a in aligned]
    return rows, crops


def contact_sheet(crops: list[tuple[Image.Image, dict]], characters: list[Path], size: int = 96,
                  columns: int = 8, rows: int = 2) -> Image.Image:
    """Up to ``rows`` rows of aligned faces (eye/mouth boxes drawn) over one row of characters."""
    faces = crops[: columns * rows]
    chars = characters[:columns]
    n_rows = -(-len(faces) // columns) + (1 if chars else 0)
    sheet = Image.new("RGB", (columns * size, max(1, n_rows) * size), "white")
    for i, (img, boxes) in enumerate(faces):
        tile = img.resize((size, size), Image.Resampling.LANCZOS)
        draw = ImageDraw.Draw(tile)
        for name in ("leye", "reye", "mouth"):
            if name in boxes:
                x0, y0, x1, y1 = boxes[name]
                draw.rectangle([x0 * size, y0 * size, x1 * size - 1, y1 * size - 1], outline=(0, 255, 0))
        sheet.paste(tile, ((i % columns) * size, (i // columns) * size))
    top = -(-len(faces) // columns) * size
    for i, path in enumerate(chars):
        try:
            img, _ = load_rgb(path)
        except BadImage:
            continue
        from face2anime.data.imageio import center_square

        sheet.paste(center_square(img).resize((size, size), Image.Resampling.LANCZOS), (i * size, top))
    return sheet


def main(photos: Path = typer.Argument(..., help="folder of photos (searched recursively)"),
         character: Path = typer.Option(None, help="folder of anime face crops, shown under the faces"),
         sheet: Path = typer.Option(None, help="write a contact sheet (PNG) here"),
         params: Path = typer.Option(Path("params.yaml"), help="params file (resize.align.*)"),
         verbose: bool = typer.Option(False, "-v", help="one row per photo")) -> None:
    """Check how the photos of a folder will be face-aligned (landmarks vs Haar), before training."""
    p = load_params(params)
    a = p.resize.align
    rows, crops = check(image_files(photos), a.landmarks, a.scale, a.shift, a.min_eye_px)
    out = Console()
    if verbose:
        t = Table("file", "landmark faces", "too small", "Haar faces", "error")
        for r in rows:
            t.add_row(r["file"], str(r["landmark_faces"]), str(r["too_small"]), str(r["haar_faces"]), r["error"])
        out.print(t)
    n = len(rows)
    found = sum(r["landmark_faces"] - r["too_small"] > 0 for r in rows)
    haar = sum(r["haar_faces"] > 0 for r in rows)
    errors = sum(bool(r["error"]) for r in rows)
    out.print(f"face-check: {n} files; landmarks: a usable face in {found} ({sum(r['landmark_faces'] for r in rows)} "
              f"faces, {sum(r['too_small'] for r in rows)} too small, {sum(r['landmark_faces'] > 1 for r in rows)} "
              f"photos with several); Haar: a face in {haar} ({sum(r['haar_faces'] for r in rows)} faces); "
              f"unreadable {errors}", highlight=False, soft_wrap=True)
    if sheet is not None:
        chars = image_files(character) if character is not None else []
        save_image(contact_sheet(crops, chars), sheet)
        out.print(f"face-check: contact sheet {rel(sheet)}")
