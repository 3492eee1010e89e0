"""``face2anime convert PHOTO -o OUT``: turn one user photo into an anime-style avatar.

The photo (any size or format PIL reads; EXIF rotation honoured) is searched for faces,
and every face is cropped the way the model's training photos were (landmark alignment,
:mod:`face2anime.data.facecrop`) unless ``--no-detect`` says the photo already is a face
crop, and translated by the chosen method's generator (with its CAM attention where the
method has it). Several faces give one avatar each plus a sheet of them all; faces too
small to convert are counted in the output line. No face found is a one-line error, exit status 2. A model
trained on synthetic faces or flagged as collapsing gets a one-line warning (on stderr) each.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import typer
from PIL import Image
from rich.console import Console

from face2anime.core.io import rel, save_image
from face2anime.core.params import UserError, load_params
from face2anime.core.paths import CYCLEGAN_DIR, ONNX_DIR
from face2anime.data.facecrop import MAX_FACES, FaceCropper, PhotoFaces
from face2anime.data.imageio import BadImage, load_rgb

BACKENDS = ("torch", "onnx")


def faces_of(photo: Path, size: int, cropper: FaceCropper, detect: bool = True) -> PhotoFaces:
    """Load ``photo`` as RGB and crop its faces as the model's training photos were."""
    try:
        img, _ = load_rgb(photo)
    except BadImage as e:
        raise UserError(f"cannot read {photo}: {e.reason}") from None
    found = cropper(img, size, detect)
    if not found.faces:
        small = f" ({found.too_small} face(s) too small to convert)" if found.too_small else ""
        raise UserError(f"no face found in {photo}{small}; if it already is a face crop, pass --no-detect")
    return found


def pair_sheet(faces: list[Image.Image], avatars: list[Image.Image], tile: int = 128) -> Image.Image:
    """One picture of every face: photo crops on the top row, their avatars below."""
    sheet = Image.new("RGB", (tile * len(faces), 2 * tile), "white")
    for i, (f, a) in enumerate(zip(faces, avatars)):
        sheet.paste(f.resize((tile, tile), Image.Resampling.LANCZOS), (i * tile, 0))
        sheet.paste(a.resize((tile, tile), Image.Resampling.BICUBIC), (i * tile, tile))
    return sheet


def load_backend(backend: str, method: str, params: Any, cyclegan_dir: Path, onnx_dir: Path
                 ) -> tuple[Any, Callable[[list[Image.Image]], list[Image.Image]]]:
    """(model, faces -> avatars) for ``torch`` (the trained checkpoint) or ``onnx`` (the export,
    run by onnxruntime: PyTorch is never imported)."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "onnx":
        from face2anime.deploy.onnx_runner import OnnxTranslator, to_uint8_images

        model = OnnxTranslator(onnx_dir, method)
        batch = lambda faces: np.stack([np.asarray(f).transpose(2, 0, 1) for f in faces])  # noqa: E731
        return model, lambda faces: [Image.fromarray(a) for a in to_uint8_images(model.to_character(batch(faces)))]
    import torch

    from face2anime.data.images import to_pil, to_uint8
    from face2anime.gan.inference import Translator

    if not (cyclegan_dir / method / "config.json").is_file():
        raise UserError(f"no trained model for method '{method}' in {cyclegan_dir / method}: run `dvc repro` first")
    model = Translator.from_params(method, params, cyclegan_dir)

    def run(faces: list[Image.Image]) -> list[Image.Image]:
        x = torch.stack([torch.from_numpy(np.array(f)).permute(2, 0, 1) for f in faces]).contiguous()
        return [to_pil(a) for a in to_uint8(model.to_character(x))]
    return model, run


def convert(photo: Path, out: Path, method: str = "proposed", params_file: Path = Path("params.yaml"),
            detect: bool = True, upscale: int = 256, cyclegan_dir: Path = CYCLEGAN_DIR,
            backend: str = "torch", onnx_dir: Path = ONNX_DIR) -> list[Path]:
    """Write the anime version of every face of ``photo``; returns the files written.

    One face: ``out``. Several: ``out`` is a sheet (faces over their avatars) and each
    avatar is ``OUT-1.png``, ``OUT-2.png``, ... (largest face first).
    """
    if not photo.is_file():
        raise UserError(f"photo not found: {photo}")
    params = load_params(params_file)
    model, run = load_backend(backend, method, params, cyclegan_dir, onnx_dir)
    err = Console(stderr=True)
    for w in model.warnings:
        err.print(f"[yellow]convert: warning: {w}[/yellow]", highlight=False, soft_wrap=True)
    found = faces_of(photo, model.size, FaceCropper.for_model(model.config, params.resize), detect)
    avatars = run(found.faces)
    if upscale and upscale != model.size:
        avatars = [a.resize((upscale, upscale), Image.Resampling.BICUBIC) for a in avatars]
    if len(avatars) == 1:
        written = [out]
        save_image(avatars[0], out)
    else:
        written = [out.with_name(f"{out.stem}-{i}{out.suffix or '.png'}") for i in range(1, len(avatars) + 1)]
        for a, path in zip(avatars, written):
            save_image(a, path)
        save_image(pair_sheet(found.faces, avatars), out)
        written.insert(0, out)
    left = [f"{n} {what}" for n, what in ((found.too_small, "too small to convert"),
                                          (found.over_limit, f"over the limit of {MAX_FACES}")) if n]
    Console().print(f"convert: {rel(photo)}: {found.found} face(s), converted {len(avatars)}"
                    + (f" ({', '.join(left)})" if left else "")
                    + f" -> {', '.join(rel(p) for p in written)} (method {method}, {backend}, "
                    f"model size {model.size}px)", highlight=False, soft_wrap=True)
    return written


def main(photo: Path = typer.Argument(..., help="a photo (any format/size) with a face"),
         out: Path = typer.Option(Path("avatar.png"), "-o", "--out", help="output image"),
         method: str = typer.Option("proposed", help="trained method under models/cyclegan/"),
         detect: bool = typer.Option(True, "--detect/--no-detect", help="find and align the faces first"),
         size: int = typer.Option(256, help="output size in px (the model runs at resize.size)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file"),
         backend: str = typer.Option("torch", help="torch (the trained checkpoint) | onnx (models/onnx/, "
                                                   "from `face2anime export`; runs without PyTorch)")) -> None:
    """Convert every face of a photo into an anime-style face with a trained model."""
    convert(photo, out, method, params, detect, size, backend=backend)
