"""``face2anime bench``: how fast training runs and how close that is to the hardware.

For the quick profile (the params' size) and the paper's (256 px, 64 channels, batch 1), in one
run and interleaved (so a busy machine slows every variant alike):

* ``eager fp32``: a plain textbook CycleGAN step written here (the project's networks and
  losses, fp32, NCHW, default Adam, per-image history pool, no EMA);
* ``pipeline``: the pipeline's own :class:`~face2anime.gan.train.CycleGAN` with the params'
  options (precision, compile, channels_last, adam, fuse_passes, EMA ...);
* ``pipeline fast``: the same with ``compile``, ``channels_last``, ``adam: fused`` and
  ``fuse_passes`` on (skipped when the params already set them);

each as ms/step, images/s (2 x batch per step), the ratio to eager fp32, GFLOP/s from the
FLOP count of one step (``torch.utils.flop_counter``: forward and backward of every conv) and
that as a share of this machine's conv peak, measured in the same run on a big 3x3 conv
(forward + backward, fp32 NCHW and bf16 NHWC). Compile time is reported apart (``compile_s``);
the pipeline counts it in its training time. ``--json PATH`` writes the same numbers.

``--side-by-side N`` also measures the machine as ``face2anime repro`` uses it: N processes at
one thread each run the same variant at the same time (a barrier starts every timed round in
all of them), and their images/s are summed; beside that, the eager fp32 step once in one
process at N threads (what a plain loop does with the machine) and N side by side at one
thread each. Only the quick profile (the paper's steps are too long for it).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import typer
from rich.console import Console
from rich.table import Table

from face2anime.core.io import write_json
from face2anime.core.params import load_params
from face2anime.core.schema import ParamsFile, method_names
from face2anime.core.runtime import cpu_has_bf16, pick_device, resolve_precision

PAPER = {"size": 256, "ngf": 64, "ndf": 64, "n_res": 4, "batch_size": 1}
FAST = {"compile": True, "channels_last": True, "adam": "fused", "fuse_passes": True}


# --------------------------------------------------------------------------- the plain reference
def eager_reference(size: int, ngf: int, ndf: int, n_res: int, batch_size: int, attention: bool,
                    gan_loss: str, lambda_cyc: float, lambda_idt: float, lambda_tv: float, upsample: str, d_blur: bool,
                    attention_mode: str, device: torch.device, pool_size: int = 50) -> Callable[[], None]:
    """One textbook CycleGAN step (fp32, eager, NCHW) on fixed random data, as a closure."""
    from face2anime.gan.model import total_variation
    from face2anime.models.networks import Discriminator, Generator

    torch.manual_seed(0)
    g_xy, g_yx = (Generator(ngf, n_res, attention_mode, upsample).to(device) for _ in range(2))
    d_x, d_y = (Discriminator(ndf, attention_mode, d_blur).to(device) for _ in range(2))
    opt_g = torch.optim.Adam(list(g_xy.parameters()) + list(g_yx.parameters()), 2e-4, (0.5, 0.999))
    opt_d = torch.optim.Adam(list(d_x.parameters()) + list(d_y.parameters()), 2e-4, (0.5, 0.999))
    x = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1
    y = torch.rand(batch_size, 3, size, size, device=device) * 2 - 1
    cx = torch.rand(batch_size, 1, size // 4, size // 4, device=device) if attention else None
    cy = torch.rand(batch_size, 1, size // 4, size // 4, device=device) if attention else None
    pools: dict[str, list[torch.Tensor]] = {"x": [], "y": []}

    def gan(logits: torch.Tensor, real: bool) -> torch.Tensor:
        t = torch.full_like(logits, 1.0 if real else 0.0)
        return F.mse_loss(logits, t) if gan_loss == "lsgan" else F.binary_cross_entropy_with_logits(logits, t)

    def pool(key: str, imgs: torch.Tensor) -> torch.Tensor:
        out, p = [], pools[key]
        for img in imgs.detach().split(1):
            if len(p) < pool_size:
                p.append(img)
                out.append(img)
            elif torch.rand(()) > 0.5:
                j = int(torch.randint(0, pool_size, ()))
                out.append(p[j])
                p[j] = img
            else:
                out.append(img)
        return torch.cat(out)

    def step() -> None:
        d_x.requires_grad_(False), d_y.requires_grad_(False)
        fake_y, fake_x = g_xy(x, cx), g_yx(y, cy)
        loss = gan(d_y(fake_y, cx), True) + gan(d_x(fake_x, cy), True) \
            + lambda_cyc * ((g_yx(fake_y, cx) - x).abs().mean() + (g_xy(fake_x, cy) - y).abs().mean())
        if lambda_idt > 0:
            loss = loss + lambda_idt * lambda_cyc * ((g_xy(y, cy) - y).abs().mean() + (g_yx(x, cx) - x).abs().mean())
        if lambda_tv > 0:
            loss = loss + lambda_tv * total_variation(fake_y)
        opt_g.zero_grad()
        loss.backward()
        opt_g.step()
        d_x.requires_grad_(True), d_y.requires_grad_(True)
        py, px = pool("y", fake_y), pool("x", fake_x)
        loss_d = 0.5 * (gan(d_y(y, cy), True) + gan(d_y(py, cx), False)) \
            + 0.5 * (gan(d_x(x, cx), True) + gan(d_x(px, cy), False))
        opt_d.zero_grad()
        loss_d.backward()
        opt_d.step()
        loss.item(), loss_d.item()  # what a loop that logs every step reads

    return step


def pipeline_step(size: int, batch_size: int, attention: bool, device: torch.device, base: Any,
                  **cfg: Any) -> tuple[Callable[[], None], Any]:
    """One step of the pipeline's own CycleGAN class: the TrainConfig ``base`` (the params'
    first method) with ``cfg`` (TrainConfig fields) replaced, as a closure."""
    from dataclasses import replace

    from face2anime.gan.data import d_feature_size, resize_cams
    from face2anime.gan.model import CycleGAN

    tc = replace(base, method="bench", subset="random", attention=attention, seed=0, max_images=1,
                 batch_size=batch_size, epochs=1, steps_per_epoch=10 ** 6, lr_decay_epochs=0, d_cam="source",
                 diffaug="", **cfg)
    model = CycleGAN(tc, device, notify=lambda m: Console(stderr=True).print(f"bench: {m}", markup=False))
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1).to(device)
    y = (torch.rand(batch_size, 3, size, size, generator=gen) * 2 - 1).to(device)
    cx = torch.rand(batch_size, 1, size // 4, size // 4, generator=gen).to(device) if attention else None
    cy = torch.rand(batch_size, 1, size // 4, size // 4, generator=gen).to(device) if attention else None
    ds = d_feature_size(size)
    dcx = None if cx is None else resize_cams(cx, ds)
    dcy = None if cy is None else resize_cams(cy, ds)

    def step() -> None:
        model.step(x, y, cx, cy, dcx, dcy)

    return step, model


def step_flops(size: int, ngf: int, ndf: int, n_res: int, batch_size: int, attention: bool, **kw: Any) -> float:
    """FLOPs of one training step (forward + backward), counted on the eager reference."""
    from torch.utils.flop_counter import FlopCounterMode

    step = eager_reference(size, ngf, ndf, n_res, batch_size, attention, device=torch.device("cpu"), **kw)
    with FlopCounterMode(display=False) as fc:
        step()
    return float(fc.get_total_flops())


# --------------------------------------------------------------------------- the machine's peak
def conv_peak(dtype: torch.dtype, channels_last: bool, device: torch.device, reps: int = 3) -> float:
    """GFLOP/s of a big 3x3 conv (256 -> 256 channels, 64 x 64, batch 2), forward + backward."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1).to(device, dtype)
    x = torch.randn(2, 256, 64, 64, device=device, dtype=dtype)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(True)
    flops = 3 * 2 * 256 * 256 * 9 * 64 * 64 * 2

    def once() -> None:
        out = conv(x)
        out.backward(torch.ones_like(out))

    once()
    best = float("inf")
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        once()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return flops / best / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --------------------------------------------------------------------------- side by side
#: seconds a side-by-side process waits for its siblings at a round's start
BARRIER_TIMEOUT = 900


def _collect(procs: list[Any], queue: Any) -> list[dict[str, float]]:
    """Each process's result from ``queue``; a process that failed, or exited without a result,
    is a one-line error."""
    import queue as queue_mod

    from face2anime.core.params import UserError

    results: list[dict[str, float]] = []
    while len(results) < len(procs):
        try:
            results.append(queue.get(timeout=2))
        except queue_mod.Empty:
            dead = [pr.exitcode for pr in procs if pr.exitcode not in (None, 0)]
            if dead or all(pr.exitcode is not None for pr in procs) and queue.empty():
                for pr in procs:
                    pr.terminate()
                raise UserError(f"bench --side-by-side: a benchmark process ended without a result (exit code "
                                f"{dead[0] if dead else 0})") from None
    for pr in procs:
        pr.join()
    errors = sorted({r["error"] for r in results if "error" in r})
    if errors:
        raise UserError(f"bench --side-by-side: a benchmark process failed: {errors[0]}")
    return results


def _side_worker(params: Path, method: str, steps: int, rounds: int, barrier: Any, queue: Any) -> None:
    """One of N processes of :func:`side_by_side`: puts the best seconds per step of each variant,
    at one thread, every round started together with the other processes (``barrier``), or
    ``{"error": one line}`` (and breaks the barrier, so the others stop too)."""
    try:
        queue.put(_side_times(params, method, steps, rounds, barrier))
    except Exception as e:  # noqa: BLE001 - reported by the parent as one line
        barrier.abort()
        queue.put({"error": f"{type(e).__name__}: {e}"})


def _side_times(params: Path, method: str, steps: int, rounds: int, barrier: Any) -> dict[str, float]:
    from face2anime.core.runtime import set_threads

    set_threads(1)
    p = load_params(params)
    base_cfg, opts = train_options(p)
    device = pick_device(p.device)
    shape = profiles(p, ["quick"])["quick"]
    attention = method == "attention"
    loss_kw = _loss_kw(opts)
    net = {k: v for k, v in shape.items() if k not in ("size", "batch_size")}
    base = {k: v for k, v in opts.items() if k != "threads"}
    variants = {"eager fp32": eager_reference(**shape, attention=attention, device=device, **loss_kw),
                "pipeline": pipeline_step(shape["size"], shape["batch_size"], attention, device, base_cfg, **net,
                                          **base)[0]}
    for fn in variants.values():
        fn(), fn()   # warm up (and compile, if the params ask for it)
    # every round starts in all processes together; a sibling that died breaks the barrier: no hang
    return measure(variants, steps, rounds, device, start=lambda: barrier.wait(timeout=BARRIER_TIMEOUT))


def side_by_side(params: Path, p: ParamsFile, methods: list[str], n: int, steps: int, rounds: int,
                 console: Console) -> list[dict[str, Any]]:
    """The quick profile's step as ``face2anime repro`` runs trainings: ``n`` processes at one
    thread each, side by side (summed images/s), against the eager fp32 step in one process at
    ``n`` threads and ``n`` of it side by side. Rows with images/s and ratios to both."""
    import multiprocessing as mp

    from face2anime.core.runtime import set_threads

    shape = profiles(p, ["quick"])["quick"]
    per_step = 2 * shape["batch_size"]
    _, opts = train_options(p)
    device = pick_device(p.device)
    rows = []
    for method in methods:
        ctx = mp.get_context("spawn")
        barrier, queue = ctx.Barrier(n), ctx.Queue()
        procs = [ctx.Process(target=_side_worker, args=(params, method, steps, rounds, barrier, queue))
                 for _ in range(n)]
        for pr in procs:
            pr.start()
        results = _collect(procs, queue)
        before = torch.get_num_threads()
        set_threads(n)
        alone = eager_reference(**shape, attention=method == "attention", device=device, **_loss_kw(opts))
        alone()
        one = measure({"eager": alone}, steps, rounds, device)["eager"]
        set_threads(before)
        ref_machine = per_step / one
        ref_side = sum(per_step / r["eager fp32"] for r in results)
        for name, ips in ((f"eager fp32, 1 process at {n} threads", ref_machine),
                          (f"eager fp32, {n} side by side at 1 thread", ref_side),
                          (f"pipeline, {n} side by side at 1 thread", sum(per_step / r["pipeline"] for r in results))):
            rows.append({"profile": "quick", "method": method, "layout": name, "processes": n,
                         "images_per_s": round(ips, 2), "x_eager_fp32_machine": round(ips / ref_machine, 3),
                         "x_eager_fp32_side_by_side": round(ips / ref_side, 3)})
        console.print(f"side by side/{method}: " + ", ".join(f"{r['layout']} {r['images_per_s']:.1f} img/s"
                                                             for r in rows if r["method"] == method), highlight=False)
    return rows


def print_side_table(rows: list[dict[str, Any]], console: Console) -> None:
    t = Table(title="The machine as face2anime repro uses it (quick profile; images/s summed over the processes)",
              title_justify="left")
    for col in ("method", "layout", "img/s", "x eager (1 process)", "x eager (side by side)"):
        t.add_column(col, justify="left" if col in ("method", "layout") else "right", no_wrap=True)
    for r in rows:
        t.add_row(r["method"], r["layout"], f"{r['images_per_s']:.1f}", f"{r['x_eager_fp32_machine']:.2f}",
                  f"{r['x_eager_fp32_side_by_side']:.2f}")
    console.print(t)


# --------------------------------------------------------------------------- the benchmark
def train_options(p: ParamsFile) -> tuple[Any, dict[str, Any]]:
    """The pipeline's training config (of the first method) and the options bench varies."""
    from face2anime.gan.config import read_config

    cfg = read_config(method_names(p)[0], p)
    keys = ("gan_loss", "lambda_cyc", "lambda_idt", "lambda_tv", "pool_size", "ema", "attention_mode", "upsample",
            "d_blur", "precision", "compile", "channels_last", "adam", "fuse_passes", "threads", "lr", "beta1", "beta2")
    return cfg, {k: getattr(cfg, k) for k in keys}


def _loss_kw(opts: dict[str, Any]) -> dict[str, Any]:
    """The training options that the eager reference step takes (from :func:`train_options`)."""
    return {k: opts[k] for k in ("gan_loss", "lambda_cyc", "lambda_idt", "lambda_tv", "upsample", "d_blur",
                                 "attention_mode")}


def profiles(p: ParamsFile, which: list[str]) -> dict[str, dict[str, Any]]:
    t = p.cyclegan.train
    quick = {"size": p.resize.size, "ngf": t.ngf, "ndf": t.ndf, "n_res": t.n_res, "batch_size": t.batch_size}
    out = {"quick": quick, "paper": dict(PAPER)}
    return {k: out[k] for k in which}


def measure(variants: dict[str, Callable[[], None]], steps: int, rounds: int, device: torch.device,
            start: Callable[[], None] | None = None) -> dict[str, float]:
    """Seconds per step of each variant: ``rounds`` interleaved rounds of ``steps`` steps, best round.
    ``start`` (if given) is called before each timed round (side by side: a barrier)."""
    best = {k: float("inf") for k in variants}
    for _ in range(rounds):
        for k, fn in variants.items():
            if start is not None:
                start()
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            _sync(device)
            best[k] = min(best[k], (time.perf_counter() - t0) / steps)
    return best


def run_bench(p: ParamsFile, which: list[str], methods: list[str], steps: dict[str, int], rounds: int,
              console: Console, fast: bool = True, threads: int | None = None) -> dict[str, Any]:
    """Every row of the benchmark; ``threads`` overrides the training's ``cyclegan.train.threads``."""
    from face2anime.core.runtime import set_threads

    base_cfg, opts = train_options(p)
    device = pick_device(p.device)
    threads = set_threads(threads or opts["threads"])
    prec = resolve_precision(device, opts["precision"])
    console.print(f"bench on {device.type} ({threads} threads, {platform.processor() or platform.machine()}), "
                  f"pipeline precision {prec}; measuring the conv peak ...", highlight=False)
    peak = {"fp32": conv_peak(torch.float32, False, device),
            "bf16": conv_peak(torch.bfloat16, True, device) if prec == "bf16" or cpu_has_bf16() else None}
    loss_kw = _loss_kw(opts)
    rows = []
    for prof, shape in profiles(p, which).items():
        for method in methods:
            attention = method == "attention"
            flops = step_flops(**shape, attention=attention, **loss_kw)
            net = {k: v for k, v in shape.items() if k not in ("size", "batch_size")}
            base = {k: v for k, v in opts.items() if k != "threads"}
            variants: dict[str, Callable[[], None]] = {
                "eager fp32": eager_reference(**shape, attention=attention, device=device, **loss_kw)}
            compile_s: dict[str, float] = {}
            paths = {"pipeline": base}
            if fast and any(base[k] != v for k, v in FAST.items()):
                paths["pipeline fast"] = {**base, **FAST}
            for name, o in paths.items():
                fn, model = pipeline_step(shape["size"], shape["batch_size"], attention, device, base_cfg, **net, **o)
                t0 = time.perf_counter()
                fn(), fn()  # compile (if on) and warm up
                compile_s[name] = time.perf_counter() - t0
                variants[name] = fn
                if o["compile"] and model.compile_mode() != "inductor":
                    console.print(f"[yellow]{prof}/{method}: {name} fell back to eager[/]")
            variants["eager fp32"]()
            sec = measure(variants, steps[prof], rounds, device)
            for name, s in sec.items():
                o = base if name == "pipeline" else {**base, **FAST} if name == "pipeline fast" else None
                vprec = "fp32" if o is None else resolve_precision(device, o["precision"])
                gflops = flops / s / 1e9
                rows.append({
                    "profile": prof, "method": method, "path": name, **shape,
                    "precision": vprec, "options": None if o is None else {k: o[k] for k in FAST},
                    "ms_per_step": round(s * 1e3, 2), "images_per_s": round(2 * shape["batch_size"] / s, 2),
                    "x_eager_fp32": round(sec["eager fp32"] / s, 3),
                    "gflop_per_step": round(flops / 1e9, 3), "gflop_per_s": round(gflops, 1),
                    "pct_fp32_peak": round(100 * gflops / peak["fp32"], 1),
                    "pct_bf16_peak": None if not peak["bf16"] else round(100 * gflops / peak["bf16"], 1),
                    "compile_s": round(compile_s[name], 1) if o is not None and o["compile"] else None})
            console.print(f"{prof}/{method}: " + ", ".join(f"{k} {v * 1e3:.1f} ms" for k, v in sec.items()),
                          highlight=False)
    return {"device": device.type, "threads": threads, "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(), "peak_gflop_per_s": {k: None if v is None else
                                                                                 round(v, 1) for k, v in peak.items()},
            "rows": rows, "paper_estimate": paper_estimate(rows)}


#: the paper's training length: 100 epochs of 500 steps (batch 1) per method
PAPER_STEPS = 100 * 500


def paper_estimate(rows: list[dict[str, Any]]) -> dict[str, float] | None:
    """Estimated training hours of the paper profile on this machine, from the pipeline rows
    (baseline = plain, proposed = attention networks): ``{"baseline_h", "proposed_h", "total_h"}``."""
    ms = {r["method"]: r["ms_per_step"] for r in rows if r["profile"] == "paper" and r["path"] == "pipeline"}
    if not ms:
        return None
    base = ms.get("plain", ms.get("attention"))
    prop = ms.get("attention", base)
    h = {"baseline_h": base * PAPER_STEPS / 3.6e6, "proposed_h": prop * PAPER_STEPS / 3.6e6}
    h["total_h"] = h["baseline_h"] + h["proposed_h"]
    return {k: round(v, 2) for k, v in h.items()}


def print_table(result: dict[str, Any], console: Console) -> None:
    pk = result["peak_gflop_per_s"]
    t = Table(title=f"CycleGAN training step on {result['device']}, {result['threads']} threads; conv peak "
                    f"fp32 {pk['fp32']} GFLOP/s, bf16 {pk['bf16']} GFLOP/s", title_justify="left")
    for col in ("profile", "method", "path", "ms/step", "img/s", "x fp32", "GFLOP/s", "%fp32pk", "%bf16pk",
                "compile s"):
        t.add_column(col, justify="left" if col in ("profile", "method", "path") else "right", no_wrap=True)
    for r in result["rows"]:
        t.add_row(r["profile"], r["method"], r["path"], f"{r['ms_per_step']:.1f}", f"{r['images_per_s']:.1f}",
                  f"{r['x_eager_fp32']:.2f}", f"{r['gflop_per_s']:.0f}", f"{r['pct_fp32_peak']:.0f}",
                  "-" if r["pct_bf16_peak"] is None else f"{r['pct_bf16_peak']:.0f}",
                  "-" if r["compile_s"] is None else f"{r['compile_s']:.0f}")
    console.print(t)


def main(params: Path = typer.Option(Path("params.yaml"), help="params file (quick profile and training options)"),
         profile: list[str] = typer.Option(["quick", "paper"], help="quick and/or paper"),
         method: list[str] = typer.Option(["plain", "attention"], help="plain and/or attention"),
         steps: int = typer.Option(20, help="steps per timing round, quick profile"),
         paper_steps: int = typer.Option(2, help="steps per timing round, paper profile"),
         rounds: int = typer.Option(3, help="interleaved timing rounds (the best counts)"),
         threads: int = typer.Option(None, min=1, help="override cyclegan.train.threads (the training's threads)"),
         fast: bool = typer.Option(True, help="also time the pipeline with the fast options on"),
         synthetic: bool = typer.Option(True, help="also time synthetic data generation"),
         side: int = typer.Option(0, "--side-by-side", min=0,
                                  help="also time N trainings side by side at one thread each (quick profile)"),
         json_out: Path = typer.Option(None, "--json", help="also write the results here")) -> None:
    """Training speed: eager fp32 vs the pipeline's path, GFLOP/s and % of the conv peak."""
    console = Console(width=max(Console().width, 110))
    bad = [x for x in profile if x not in ("quick", "paper")] + [x for x in method if x not in ("plain", "attention")]
    if bad:
        from face2anime.core.params import UserError

        raise UserError(f"bench: unknown profile/method {bad[0]!r} (profiles: quick, paper; methods: plain, attention)")
    if synthetic:
        from face2anime.data.synthetic.bench import bench as synthetic_bench

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        synthetic_bench(400, 128)
        torch.set_num_threads(before)
    p = load_params(params)
    result = run_bench(p, profile, method, {"quick": steps, "paper": paper_steps}, rounds,
                       console, fast, threads)
    print_table(result, console)
    est = result["paper_estimate"]
    if est:
        console.print(f"paper profile on this machine (100 epochs x 500 steps, 256 px, 64 channels, batch 1, "
                      f"pipeline path): about {est['baseline_h']:.1f} h for baseline + {est['proposed_h']:.1f} h "
                      f"for proposed = {est['total_h']:.1f} h of training", highlight=False)
    if side > 1:
        result["side_by_side"] = side_by_side(params, p, method, side, steps, rounds, console)
        print_side_table(result["side_by_side"], console)
    if json_out is not None:
        write_json(json_out, result)
        console.print(f"wrote {json_out}")
