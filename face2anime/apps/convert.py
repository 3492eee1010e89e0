"""``face2anime convert PHOTO -o OUT``: turn one user photo into an anime-style avatar.

The photo (any size or format PIL reads; EXIF rotation honoured) is cropped to the largest
face found by OpenCV's Haar cascade unless ``--no-detect`` says it already is a face crop,
resized to the model's size, and translated by the chosen method's generator (with its CAM
attention where the method has it). No face found is a one-line error, exit status 2. A model
trained on synthetic faces or flagged as collapsing gets a one-line warning (on stderr) each.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import typer
from PIL import Image
from rich.console import Console

from face2anime.core.io import rel, save_image
from face2anime.core.params import UserError, load_params
from face2anime.data.imageio import BadImage, load_rgb
from face2anime.data.images import to_pil, to_uint8
from face2anime.data.ops import center_square
from face2anime.gan.inference import CYCLEGAN_DIR, Translator


def prepare(photo: Path, size: int, detect: bool = True, margin: float = 0.4) -> Image.Image:
    """Load ``photo`` as RGB, crop the largest face (if ``detect``), centre-square and resize."""
    try:
        img, _ = load_rgb(photo)
    except BadImage as e:
        raise UserError(f"cannot read {photo}: {e.reason}") from None
    face = face_square(img, size, detect, margin)
    if face is None:
        raise UserError(f"no face found in {photo}; if it already is a face crop, pass --no-detect")
    return face


def face_square(img: Image.Image, size: int, detect: bool = True, margin: float = 0.4) -> Image.Image | None:
    """The largest face of an RGB image (if ``detect``), centre-squared and resized to ``size``;
    None when no face is found. Shared by ``convert`` and the web app."""
    if detect:
        from face2anime.data.faces import crop_face

        img = crop_face(img, margin=margin)
        if img is None:
            return None
    return center_square(img).resize((size, size), Image.Resampling.LANCZOS)


def convert(photo: Path, out: Path, method: str = "proposed", params_file: Path = Path("params.yaml"),
            detect: bool = True, upscale: int = 256, cyclegan_dir: Path = CYCLEGAN_DIR) -> Path:
    """Write the anime version of ``photo`` to ``out`` (resized to ``upscale`` px for viewing)."""
    if not photo.is_file():
        raise UserError(f"photo not found: {photo}")
    params = load_params(params_file)
    if not (cyclegan_dir / method / "config.json").is_file():
        raise UserError(f"no trained model for method '{method}' in {cyclegan_dir / method}: run `dvc repro` first")
    translator = Translator.from_params(method, params, cyclegan_dir)
    for w in translator.warnings:
        Console(stderr=True).print(f"[yellow]convert: warning: {w}[/yellow]", highlight=False, soft_wrap=True)
    face = prepare(photo, translator.size, detect)
    x = torch.from_numpy(np.array(face)).permute(2, 0, 1)[None].contiguous()
    anime = to_pil(to_uint8(translator.to_character(x))[0])
    if upscale and upscale != translator.size:
        anime = anime.resize((upscale, upscale), Image.Resampling.BICUBIC)
    save_image(anime, out)
    Console().print(f"convert: {rel(photo)} -> {rel(out)} (method {method}, model size {translator.size}px)")
    return out


def main(photo: Path = typer.Argument(..., help="a photo (any format/size) with a face"),
         out: Path = typer.Option(Path("avatar.png"), "-o", "--out", help="output image"),
         method: str = typer.Option("proposed", help="trained method under models/cyclegan/"),
         detect: bool = typer.Option(True, "--detect/--no-detect", help="find and crop the face first"),
         size: int = typer.Option(256, help="output size in px (the model runs at resize.size)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Convert one photo of a face into an anime-style face with a trained model."""
    convert(photo, out, method, params, detect, size)
