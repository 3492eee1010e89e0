"""``face2anime export [METHOD ...]``: every trained method's photo-to-anime generator as ONNX.

Writes ``models/onnx/METHOD.onnx`` (the generator and, for attention methods, the guiding
classifier's closed-form Grad-CAM: one graph from uint8 face crops to characters) and
``METHOD.json`` (size, framing, warnings), then runs the export with onnxruntime on the
held-out human test images and compares it with PyTorch: the largest absolute difference
(images in [-1, 1]) must stay under ``--tolerance``, else the export is an error. The
numbers go to ``models/onnx/export.json``. ``face2anime convert --backend onnx`` then runs
without PyTorch.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import typer
from rich.console import Console

from face2anime.core.io import rel, write_json
from face2anime.core.params import UserError, load_params
from face2anime.core.paths import CLASSIFIER_DIR, CYCLEGAN_DIR, ONNX_DIR, RESIZED_DIR

#: |onnxruntime - PyTorch| in [-1, 1] units: one 8-bit level of the output image. Measured:
#: 6.5e-5 (attention) and 2.7e-6 (plain) on a trained 64 px model; up to 4e-3 with an untrained
#: classifier, where a CAM cell rarely lands on the other side of a float16 rounding or tie
TOLERANCE = 2 / 255
CHECK_IMAGES = 32    # held-out test humans compared per method


def export_all(methods: list[str], params_file: Path = Path("params.yaml"), cyclegan_dir: Path = CYCLEGAN_DIR,
               classifier_dir: Path = CLASSIFIER_DIR, data_dir: Path = RESIZED_DIR,
               out_dir: Path = ONNX_DIR, tolerance: float = TOLERANCE) -> dict[str, dict]:
    """Export ``methods`` (all trained ones when empty) and check them; returns per-method results."""
    import torch

    from face2anime.data.images import load_images
    from face2anime.gan.inference import Translator
    from face2anime.gan.onnx_export import export_method, max_difference

    params = load_params(params_file)
    trained = sorted(p.parent.name for p in Path(cyclegan_dir).glob("*/config.json")
                   if not p.parent.name.startswith("."))   # not a half-swapped .M.incoming / .M.old
    methods = methods or trained
    if not methods:
        raise UserError(f"no trained models under {cyclegan_dir}: run `dvc repro` first")
    unknown = [m for m in methods if m not in trained]
    if unknown:
        raise UserError(f"no trained model for {', '.join(unknown)} in {cyclegan_dir} (trained: {', '.join(trained) or 'none'})")
    manifest = Path(data_dir) / "manifest.csv"
    if not manifest.is_file():
        raise UserError(f"{manifest} not found: the check runs on the resized test images (dvc repro resize)")
    rows = pd.read_csv(manifest)
    test = rows[(rows["domain"] == "human") & (rows["split"] == "test")].head(CHECK_IMAGES)
    results: dict[str, dict] = {}
    out = Console()
    for m in methods:
        meta = export_method(m, cyclegan_dir, classifier_dir, out_dir, params.cam.method, params.cam.target_layer)
        translator = Translator(Path(cyclegan_dir) / m, torch.device("cpu"), params.cam.method,
                                params.cam.target_layer, classifier_dir)
        x = load_images(test["file"], data_dir)
        if x.shape[-1] != meta["size"]:
            raise UserError(f"export {m}: the model runs at {meta['size']} px but {data_dir} holds "
                            f"{x.shape[-1]} px images; re-run the pipeline")
        diff = max_difference(m, out_dir, translator, x)
        onnx_file = out_dir / f"{m}.onnx"
        results[m] = {"file": str(onnx_file), "bytes": onnx_file.stat().st_size, "attention": meta["attention"],
                      "size": meta["size"], "checked_images": len(x), "max_abs_diff": diff, "tolerance": tolerance}
        out.print(f"export: {m} -> {rel(onnx_file)} ({onnx_file.stat().st_size / 1e6:.1f} MB, "
                  f"{'with' if meta['attention'] else 'no'} CAM); onnxruntime vs PyTorch on {len(x)} test images: "
                  f"max |diff| {diff:.2e} (tolerance {tolerance:g})", highlight=False, soft_wrap=True)
        if not diff <= tolerance:
            raise UserError(f"export {m}: onnxruntime differs from PyTorch by {diff:.3g} > {tolerance:g}")
    write_json(out_dir / "export.json", results)
    return results


def main(methods: list[str] = typer.Argument(None, help="methods to export (default: every trained one)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file"),
         out: Path = typer.Option(ONNX_DIR, help="output folder"),
         tolerance: float = typer.Option(TOLERANCE, help="largest allowed |onnxruntime - PyTorch|")) -> None:
    """Export trained generators (with their CAM) to ONNX and check them against PyTorch."""
    export_all(list(methods or []), params, out_dir=out, tolerance=tolerance)
