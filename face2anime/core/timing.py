"""What each stage cost: wall time, CPU time, peak memory and images per second.

The CLI times every stage command and writes ``metrics/stages/NAME.json`` (``NAME`` is the
stage's DVC name: ``train_cyclegan@baseline``...) when it succeeds. A stage reports how many
images it processed with :func:`count_images`; the unit is the stage's natural one (images
generated, resized, CAM'd, translated, evaluated; for training stages, images seen). Timings
of its own (a training loop's seconds and images/s) go in the same file with :func:`note`.

Timings change from run to run on one machine, so they live only here: these files are
plain outputs in dvc.yaml, not DVC metrics, and no metrics file holds a timing (a clean
clone's ``dvc repro`` then changes no metric on the committed fingerprint, and
``dvc metrics diff`` shows results only).
"""
from __future__ import annotations

import os
import platform
import re
import resource
import sys
import time
from pathlib import Path
from typing import Any

from face2anime.core.paths import STAGES_DIR
from face2anime.core.io import write_json

_images: list[int] = []
_notes: dict[str, Any] = {}


def count_images(n: int) -> None:
    """Add ``n`` to the images this process's stage processed."""
    _images.append(int(n))


def note(**timings: Any) -> None:
    """Record timings of the stage's own (``train_seconds=...``) in its ``metrics/stages`` file."""
    _notes.update(timings)


#: CPU features that change which kernels (and so which bits) torch uses
_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def fingerprint() -> dict[str, Any]:
    """What produced a result, so that a different number can be told from a different machine:
    CPU model and kernel-relevant flags, cores, OS, Python, and (when the process uses it)
    torch's and oneDNN's versions, the ISA torch's CPU kernels use, intra-op threads and the
    CUDA device. (Precision and device are in each training stage's own metrics.)"""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                cpu = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    out: dict[str, Any] = {"cpu": cpu, "cpu_flags": [f for f in _FLAGS if f in flags],
                           "cores": os.cpu_count(), "os": f"{platform.system()} {platform.release()}",
                           "python": platform.python_version()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.__version__
        m = re.search(r"(?:MKL-DNN|oneDNN) v([\d.]+)", torch.__config__.show())
        out["onednn"] = m.group(1) if m else None     # the CPU kernels (their sums depend on it)
        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()   # the ISA torch's kernels use
        out["threads"] = torch.get_num_threads()
        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return out


class StageTimer:
    """Measure one stage command from construction to :meth:`write`."""

    def __init__(self, name: str):
        self.name = name
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        _images.clear()
        _notes.clear()

    def result(self) -> dict:
        wall = time.perf_counter() - self.t0
        images = sum(_images) if _images else None
        return {"stage": self.name, "wall_seconds": round(wall, 2),
                "cpu_seconds": round(time.process_time() - self.c0, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "images": images, "images_per_s": None if images is None else round(images / max(wall, 1e-9), 2),
                **_notes, "machine": fingerprint()}

    def write(self, stages_dir: Path = STAGES_DIR) -> dict:
        r = self.result()
        write_json(stages_dir / f"{self.name}.json", r)
        return r
