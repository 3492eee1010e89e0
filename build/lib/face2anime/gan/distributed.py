"""Data-parallel CycleGAN training: torchrun launches the processes, PyTorch DDP syncs them.

One training loop serves every case (:func:`face2anime.gan.train.train`); this module only
supplies what differs when several processes train one model:

- :func:`current` reads the rank and world size that ``torchrun`` puts in the environment
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); without them the world is one process.
- :func:`init` joins the process group: ``gloo`` on the CPU, ``nccl`` on CUDA (each rank on
  ``cuda:LOCAL_RANK``).
- :func:`wrap` puts one optimisation phase (the generators' or the discriminators' loss
  computation) behind :class:`torch.nn.parallel.DistributedDataParallel`: its forward is the
  loss function, so DDP averages exactly the gradients of the networks that phase updates.
  The other phase's networks are called directly there (frozen, no gradients, no sync).
- :func:`launch` is what ``dvc repro`` runs when ``cyclegan.train.nproc`` > 1: the stage
  re-runs itself under ``torchrun --standalone --nproc_per_node N``.

``cyclegan.train.batch_size`` is the global batch: each rank takes its own disjoint
``batch_size / N`` slice of every batch, drawn from the same seeded index stream, so N
processes see the same images per step as one process does. Each rank keeps its own
history pool of fakes (seeded per rank); rank 0 writes models, metrics, samples and
checkpoints. A checkpoint holds no per-rank state except rank 0's pools, so a run resumes
with any N.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that logs and writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current() -> World:
    """The world torchrun describes in the environment (one process without it)."""
    env = os.environ
    if "WORLD_SIZE" not in env:
        return World()
    return World(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))


def init(world: World, device: torch.device) -> torch.device:
    """Join the process group (once) and return this rank's device."""
    if not world.distributed:
        return device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def shutdown(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def all_mean(t: torch.Tensor, world: World) -> torch.Tensor:
    """In place: the mean of ``t`` over all ranks (``t`` unchanged with one process)."""
    if world.distributed:
        import torch.distributed as dist

        dist.all_reduce(t)
        t /= world.size
    return t


class _Phase(nn.Module):
    """The networks one optimiser updates, with the phase's loss function as forward."""

    def __init__(self, nets: dict[str, nn.Module], fn: Callable[..., Any]):
        super().__init__()
        self.nets = nn.ModuleDict(nets)
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def wrap(nets: dict[str, nn.Module], fn: Callable[..., Any], device: torch.device) -> nn.Module:
    """DDP over ``nets`` whose forward is ``fn`` (which must use exactly those networks' weights)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(_Phase(nets, fn), device_ids=[device.index] if device.type == "cuda" else None,
               broadcast_buffers=False)


def launch(method: str, nproc: int, params_file: Path) -> int:
    """Run ``stages.train_cyclegan METHOD`` under ``torchrun --standalone`` with ``nproc`` processes
    on this machine; returns torchrun's exit status. Multi-node runs call torchrun themselves
    (docs/performance.md)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "stages.train_cyclegan", method, "--params", str(params_file)]
    print(f"train_cyclegan[{method}]: {' '.join(cmd[1:])}", file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=False).returncode
