"""What each stage cost: wall time, CPU time, peak memory and images per second.

The CLI times every stage command and writes ``metrics/stages/NAME.json`` (``NAME`` is the
stage's DVC name: ``train_cyclegan@baseline``...) when it succeeds. A stage reports how many
images it processed with :func:`count_images`; the unit is the stage's natural one (images
generated, resized, CAM'd, translated, evaluated; for training stages, images seen).
"""
from __future__ import annotations

import resource
import time
from pathlib import Path

from face2anime.core.io import write_json

STAGES_DIR = Path("metrics/stages")
_images: list[int] = []


def count_images(n: int) -> None:
    """Add ``n`` to the images this process's stage processed."""
    _images.append(int(n))


class StageTimer:
    """Measure one stage command from construction to :meth:`write`."""

    def __init__(self, name: str):
        self.name = name
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        _images.clear()

    def result(self) -> dict:
        wall = time.perf_counter() - self.t0
        images = sum(_images) if _images else None
        return {"stage": self.name, "wall_seconds": round(wall, 2),
                "cpu_seconds": round(time.process_time() - self.c0, 2),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                "images": images, "images_per_s": None if images is None else round(images / max(wall, 1e-9), 2)}

    def write(self, stages_dir: Path = STAGES_DIR) -> dict:
        r = self.result()
        write_json(stages_dir / f"{self.name}.json", r)
        return r
