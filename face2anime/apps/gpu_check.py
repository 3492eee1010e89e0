"""``face2anime gpu-check``: what a GPU user runs first, before the paper profile.

Three checks on the CUDA device, each printed with its number:

1. agreement: the same generator and discriminator (same weights, same input) on the CPU and
   on CUDA in fp32 (TF32 off) agree within ``--tol``; under bf16 autocast within a looser bound;
2. training: a few real CycleGAN steps (the pipeline's own :class:`~face2anime.gan.train.CycleGAN`,
   attention on, bf16 autocast) give finite losses;
3. speed: measured training images/s at the paper size (256 px, ngf/ndf 64, batch 1) and the
   estimated wall time of the paper profile (100 epochs of 500 images per domain).

Without CUDA it says so in one line and exits with status 2.
"""
from __future__ import annotations

import math
import time
from typing import Any

import torch
import typer
from rich.console import Console

from face2anime.core.params import UserError, load_params
from face2anime.core.runtime import autocast, pick_device
from face2anime.gan.config import TrainConfig
from face2anime.gan.model import LOSSES, CycleGAN
from face2anime.models.networks import Discriminator, Generator, init_weights

PAPER = {"size": 256, "ngf": 64, "ndf": 64, "n_res": 4, "batch_size": 1}
PAPER_IMAGES = 2 * 500 * 100  # both domains, 500 images each, 100 epochs


def agreement(device: torch.device, size: int = 64, ngf: int = 16, seed: int = 0) -> dict[str, float]:
    """Max |CPU - device| of a generator (with CAM attention) and a discriminator forward pass,
    in fp32 and under bf16 autocast, relative to the output's scale."""
    gen = torch.Generator().manual_seed(seed)
    g = init_weights(Generator(ngf, 2), gen).eval()
    d = init_weights(Discriminator(ngf), gen).eval()
    x = torch.rand(2, 3, size, size, generator=gen) * 2 - 1
    cam = torch.rand(2, 1, size // 4, size // 4, generator=gen)
    out: dict[str, float] = {}
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        with torch.no_grad():
            ref_g, ref_d = g(x, cam), d(x, None)
            gd, dd = g.to(device), d.to(device)
            for name, prec in (("fp32", "fp32"), ("bf16", "bf16")):
                with autocast(device, prec):
                    og = gd(x.to(device), cam.to(device)).float().cpu()
                    od = dd(x.to(device), None).float().cpu()
                out[f"generator_{name}"] = float((og - ref_g).abs().max() / ref_g.abs().max().clamp_min(1e-6))
                out[f"discriminator_{name}"] = float((od - ref_d).abs().max() / ref_d.abs().max().clamp_min(1e-6))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    return out


def train_steps(device: torch.device, train: Any, steps: int, size: int, ngf: int, ndf: int, n_res: int,
                batch_size: int, attention: bool = True) -> dict[str, Any]:
    """``steps`` real CycleGAN steps on random data with the project's ``cyclegan.train``
    options (``train``, a validated section) at the given size; the last losses and images/s."""
    cfg = TrainConfig.build(train, method="gpu-check", model="cyclegan", subset="random", attention=attention, seed=0, max_images=1,
                            threads=torch.get_num_threads(),
                            share=1.0, precision="auto", ngf=ngf, ndf=ndf, n_res=n_res, epochs=1,
                            steps_per_epoch=steps + 1, lr_decay_epochs=0, batch_size=batch_size, ema=0.999,
                            compile=False, nproc=1, snapshot="last", diffaug="", val_every=0, d_cam="source")
    model = CycleGAN(cfg, device)
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1).to(device)
    y = (torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1).to(device)
    c = torch.rand(batch_size, 1, size // 4, size // 4, generator=gen).to(device) if attention else None
    model.step(x, y, c, c)  # warm-up (cuDNN autotuning, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        out, _ = model.step(x, y, c, c)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    losses = dict(zip(LOSSES, out.tolist()))
    return {"losses": losses, "finite": all(math.isfinite(v) for v in losses.values()),
            "images_per_s": 2 * batch_size * steps / seconds}


def gpu_check(device_name: str = "cuda", steps: int = 5, tol: float = 1e-3,
              params_file: str = "params.yaml") -> dict[str, Any]:
    """Run the three checks on ``device_name``; raise :class:`UserError` when one fails."""
    if not device_name.startswith("cuda"):
        raise UserError(f"gpu-check needs a CUDA device, got {device_name!r}")
    device = pick_device(device_name)
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(device), "torch": torch.__version__,
                              "cuda": torch.version.cuda}
    report["agreement"] = agreement(device)
    train = load_params(params_file).cyclegan.train   # the project's training options
    report["train_small"] = train_steps(device, train, steps, 64, 16, 16, 2, 4)
    report["train_paper"] = train_steps(device, train, steps, **PAPER)
    ips = report["train_paper"]["images_per_s"]
    report["paper_profile_estimated_hours"] = PAPER_IMAGES / ips / 3600
    bad = [k for k, v in report["agreement"].items() if v > (tol if k.endswith("fp32") else 5e-2)]
    bad += [k for k in ("train_small", "train_paper") if not report[k]["finite"]]
    report["ok"] = not bad
    if bad:
        raise UserError(f"gpu-check failed: {', '.join(bad)} ({report})")
    return report


def main(device: str = typer.Option("cuda", help="CUDA device to check (cuda, cuda:1, ...)"),
         steps: int = typer.Option(5, min=1, help="timed training steps per size"),
         tol: float = typer.Option(1e-3, help="max relative CPU-vs-CUDA difference in fp32"),
         params: str = typer.Option("params.yaml", help="params file (its cyclegan.train options are used)")) -> None:
    """Check a CUDA machine before running the paper profile: agreement, training, speed."""
    if not torch.cuda.is_available():
        raise UserError("no CUDA device visible to PyTorch (torch.cuda.is_available() is False): "
                        "gpu-check is for GPU machines; on CPU run `face2anime bench`")
    r = gpu_check(device, steps, tol, params)
    con = Console()
    con.print(f"gpu-check on {r['device']} (torch {r['torch']}, CUDA {r['cuda']})")
    for k, v in r["agreement"].items():
        con.print(f"  agreement {k}: max relative difference {v:.2e}")
    for k in ("train_small", "train_paper"):
        con.print(f"  {k}: losses finite, {r[k]['images_per_s']:.1f} images/s")
    con.print(f"  paper profile (256 px, 64 ch, 100 epochs x 500 images): about "
              f"{r['paper_profile_estimated_hours']:.1f} h of training per method on this GPU")
    con.print("[green]ok[/]")
