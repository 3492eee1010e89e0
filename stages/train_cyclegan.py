"""Stage ``train_cyclegan@METHOD``: one CycleGAN variant (one training loop for all methods).

With ``cyclegan.train.nproc`` > 1 the stage re-runs this module under ``torchrun
--standalone --nproc_per_node N`` (DDP, see :mod:`face2anime.gan.distributed`). Multi-node
runs start it with torchrun's own flags: ``torchrun --nnodes 2 ... -m stages.train_cyclegan
proposed``.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from face2anime.core.params import UserError
from face2anime.core.runtime import load_torch_params
from face2anime.core.timing import count_images, note
from face2anime.gan import distributed
from face2anime.gan.config import TIMINGS_FILE, read_config
from face2anime.core.paths import CYCLEGAN_LIVE
from face2anime.gan.train import train


def main(method: str = typer.Argument(..., help="an entry of cyclegan.methods (baseline, proposed, ...)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file")) -> None:
    """Train the CycleGAN of one method (stage train_cyclegan@METHOD)."""
    p = load_torch_params(params)
    nproc = read_config(method, p).nproc
    if nproc > 1 and not distributed.current().distributed:
        status = distributed.launch(method, nproc, params)
        if status != 0:
            raise UserError(f"train_cyclegan[{method}]: torchrun with {nproc} processes failed (exit {status}); "
                            "see its log above")
        summary = json.loads((CYCLEGAN_LIVE / method / TIMINGS_FILE).read_text())
        note(**summary)
    else:
        summary = train(method, p, progress=sys.stderr.isatty())
    count_images(round(summary["images_per_s"] * summary["train_seconds"]))


if __name__ == "__main__":   # torchrun's entry (one process per rank): python -m stages.train_cyclegan METHOD
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)
    app.command()(main)
    try:
        app()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
