"""How fast the synthetic data set is made: :func:`bench` (called by ``face2anime bench``)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from face2anime.core.params import UserError
from face2anime.data.synthetic.dataset import generate


def bench(n: int = 400, size: int = 128) -> float:
    """Render and write ``n`` images (half per domain, 30% hard humans) into a temp dir on
    this process's single thread; print and return images per second (wall clock).

    The CPU-time rate is printed too: on a busy shared machine it is the fairer number."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise UserError(f"bench needs an integer n >= 2, got {n!r}")
    with tempfile.TemporaryDirectory(prefix="f2a-bench-") as tmp:
        t0, c0 = time.perf_counter(), time.process_time()
        generate(Path(tmp), n // 2, n - n // 2, size, 0.3, seed=0, progress=False)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    rate = n / dt
    print(f"synthetic faces: {n} images at {size}px in {dt:.2f} s = {rate:.0f} images/s "
          f"(one thread, incl. PNG writing; CPU time: {n / max(dc, 1e-9):.0f} images/s)")
    return rate
