"""``face2anime bench``: speed benchmarks that print numbers (no timed tests).

- synthetic data generation (images/s on one core, PNG writing included; goal >= 200 at 128 px)
- CycleGAN training throughput at the params' network size, fp32 vs bf16 autocast
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import typer
from rich.console import Console

from face2anime.core.params import load_params
from face2anime.core.runtime import autocast, cpu_has_bf16, pick_device


def cyclegan_throughput(size: int, ngf: int, ndf: int, n_res: int, batch_size: int, precision: str,
                        steps: int = 5, device: torch.device | None = None) -> float:
    """Training images/s of one CycleGAN step (2 G + 2 D forward/backward) on random data."""
    from face2anime.models.networks import Discriminator, Generator

    device = device or torch.device("cpu")
    gs = [Generator(ngf, n_res).to(device, memory_format=torch.channels_last) for _ in range(2)]
    ds = [Discriminator(ndf).to(device, memory_format=torch.channels_last) for _ in range(2)]
    opt = torch.optim.Adam([p for m in gs + ds for p in m.parameters()], lr=2e-4)
    x = torch.randn(batch_size, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randn_like(x)

    def step() -> None:
        with autocast(device, precision):
            fy, fx = gs[0](x), gs[1](y)
            loss = (gs[1](fy) - x).abs().mean() + (gs[0](fx) - y).abs().mean()
            loss = loss + ds[1](fy).float().mean() + ds[0](fx).float().mean()
            loss = loss + ds[1](y).float().mean() + ds[0](x).float().mean()
        opt.zero_grad(set_to_none=True)
        loss.float().backward()
        opt.step()

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return 2 * batch_size * steps / (time.perf_counter() - t0)


def main(n: int = typer.Option(400, help="synthetic images to render"),
         size: int = typer.Option(128, help="synthetic render size (px)"),
         params: Path = typer.Option(Path("params.yaml"), help="params file (CycleGAN size)"),
         steps: int = typer.Option(5, help="CycleGAN steps per measurement")) -> None:
    """Print generation and training throughput numbers."""
    from face2anime.data import synthetic

    console = Console()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    synthetic.bench(n, size)
    torch.set_num_threads(threads)
    p = load_params(params)
    device = pick_device(p.str("device"))
    s, c = p.int("resize.size"), "cyclegan.train."
    cfg = dict(size=s, ngf=p.int(c + "ngf"), ndf=p.int(c + "ndf"), n_res=p.int(c + "n_res"),
               batch_size=p.int(c + "batch_size"))
    precisions = ["fp32"] + (["bf16"] if device.type == "cuda" or cpu_has_bf16() else [])
    for prec in precisions:
        ips = cyclegan_throughput(**cfg, precision=prec, steps=steps, device=device)
        console.print(f"cyclegan train {s}px ngf={cfg['ngf']} batch={cfg['batch_size']} {prec} on {device.type} "
                      f"({torch.get_num_threads()} threads): {ips:.1f} images/s")
