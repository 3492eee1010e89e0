"""The fast path of CycleGAN training: torch.compile with a safe eager fallback, its cache,
thread settings and host/device data placement (CPU and CUDA alike).

* :func:`compile_cache` points inductor's on-disk cache at ``.cache/torchinductor`` in the
  project (git- and DVC-ignored) unless ``TORCHINDUCTOR_CACHE_DIR`` is set, so a re-run reuses
  the compiled kernels (a clean clone pays the compile once; its time counts in the stage's
  training time).
* :class:`Compiled` wraps one pure function (a loss computation, no side effects besides the
  autograd graph it builds) compiled with inductor; if compiling or running it fails, it
  prints one line and runs the plain function from then on. Never a crash.
* :func:`place` keeps a domain's uint8 images on the training device when they fit (then a
  batch is an index into device memory, no copy); otherwise they stay in pinned host memory
  and each batch is copied with ``non_blocking=True``.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import torch

from face2anime.core.params import UserError
from face2anime.data.images import ImageFiles

#: where inductor keeps compiled kernels (ignored by git and DVC); relative to the project root (cwd)
CACHE_DIR = Path(".cache/torchinductor")


def compile_cache(root: Path | None = None) -> Path:
    """Set ``TORCHINDUCTOR_CACHE_DIR`` to ``root/.cache/torchinductor`` unless the user chose one; return it.

    Inductor writes its default (``/tmp/torchinductor_USER``) into the variable the first time
    anything asks for the cache directory, so that value counts as "not chosen" too."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    current = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if not current or os.path.abspath(current) == os.path.abspath(default_cache_dir()):
        path = ((root or Path.cwd()) / CACHE_DIR).resolve()
        path.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])


def compiler_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the compiler failed" (Dynamo/Inductor, the C++/CUDA compilers):
    only these switch a step to eager. Anything else, a bug or an out-of-memory, propagates."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor import exc

    return (TorchDynamoException, exc.CppCompileError, exc.CUDACompileError, exc.LoweringException)


def is_compiler_error(err: BaseException) -> bool:
    return isinstance(err, compiler_errors()) and not isinstance(err, torch.OutOfMemoryError)


OOM_HINT = ("out of memory: lower cyclegan.train.batch_size or resize.size, or set "
            "cyclegan.train.compile: false (compiled graphs keep more activations)")


class Compiled:
    """``fn`` compiled with ``torch.compile`` (inductor, static shapes, one graph), falling back
    to plain ``fn`` with a one-line notice when the *compiler* fails (:func:`compiler_errors`);
    any other error (a real bug, out-of-memory) propagates.

    ``fn`` must be pure apart from building its autograd graph, so that calling it again
    eagerly after a failed compiled call is safe. A failure inside the *backward* of a compiled
    call surfaces in ``loss.backward()``; the caller then calls :meth:`fail` and recomputes
    eagerly (see ``CycleGAN.step``). ``seconds`` is the wall time of the first (compiling)
    call(s); ``mode`` is ``inductor`` or ``eager`` (after a fallback, or when disabled).
    """

    def __init__(self, fn: Callable[..., Any], name: str, enabled: bool, notify: Callable[[str], None]):
        self.fn, self.name, self.notify = fn, name, notify
        self.compiled: Callable[..., Any] | None = None
        if enabled:
            compile_cache()
            self.compiled = torch.compile(fn, dynamic=False, fullgraph=True)
        self.calls = 0
        self.seconds = 0.0
        self.error: str | None = None
        self.fallback = True    # False under DDP: every rank must take the same path

    @property
    def mode(self) -> str:
        return "inductor" if self.compiled is not None else "eager"

    def fail(self, err: BaseException) -> None:
        """Switch to eager for good, with one line naming the compiler error; re-raise any other
        error (an out-of-memory with a hint)."""
        if isinstance(err, torch.OutOfMemoryError):
            raise UserError(f"{self.name}: {OOM_HINT}") from err
        if self.compiled is None or not is_compiler_error(err):
            raise err
        msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
        self.error = f"{type(err).__name__}: {msg}"[:300]
        if not self.fallback:
            raise UserError(f"torch.compile failed for {self.name} under DDP ({self.error}); no rank falls back "
                            "alone (their collectives would desynchronise): set cyclegan.train.compile: false") from err
        self.notify(f"torch.compile failed for {self.name} ({self.error}); continuing in eager mode")
        self.compiled = None

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        t0 = time.perf_counter() if self.calls < 2 else 0.0
        try:
            out = self.compiled(*args)
        except Exception as e:  # noqa: BLE001 - fail() keeps only compiler errors, re-raises the rest
            self.fail(e)
            return self.fn(*args)
        if self.calls < 2:
            self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def device_budget(device: torch.device) -> int:
    """Bytes of training data allowed to live on ``device`` (a quarter of free CUDA memory; CPU: all)."""
    if device.type != "cuda":
        return 1 << 62
    free, _ = torch.cuda.mem_get_info(device)
    return free // 4


def place(images: torch.Tensor, device: torch.device, budget: int) -> torch.Tensor:
    """``images`` on ``device`` if they fit in ``budget`` bytes, else pinned host memory (CUDA)."""
    if device.type == "cpu" or images.numel() * images.element_size() <= budget:
        return images.to(device)
    return images.pin_memory()


def take(images: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``images[idx]`` on ``device``: an index on the device, or a pinned gather + async copy
    (:class:`~face2anime.data.images.ImageFiles`: read from disk)."""
    if isinstance(images, ImageFiles):
        return images.stack(idx).to(device)
    if images.device == device:
        return images[idx.to(device)]
    batch = torch.empty((len(idx), *images.shape[1:]), dtype=images.dtype, pin_memory=True)
    torch.index_select(images, 0, idx, out=batch)
    return batch.to(device, non_blocking=True)
