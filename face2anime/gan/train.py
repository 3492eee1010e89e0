"""Stage 6, ``train_cyclegan@{method}``: one CycleGAN training loop for every method.

X = human, Y = character. A method is an entry of ``cyclegan.methods`` in params.yaml::

    baseline:       {subset: random,   attention: false}   # random human subset, plain nets
    proposed:       {subset: selected, attention: true}    # CAM-selected humans + CAM attention
    select_only:    {subset: selected, attention: false}   # ablations: just more entries
    attention_only: {subset: random,   attention: true}

* ``subset: random`` draws ``select.max_images`` (at most ``select.share`` of them) human
  train ids at random (seeded by
  ``seed``) from *all* human train ids; it never opens ``data/select`` (so changing the
  selection or its threshold never re-trains it). ``subset: selected`` uses
  ``data/select/selected.csv`` (capped at ``select.max_images``, in rank order).
* The character set (all character train images) is the same for every method, and every
  method runs ``epochs x steps_per_epoch`` optimisation steps, each on ``batch_size`` humans
  and ``batch_size`` characters drawn from seeded, reshuffled-per-pass streams.
* ``attention: true`` loads the precomputed CAMs (``data/cam/{human,character}.npz``) and
  feeds each image's CAM to the networks (see :mod:`face2anime.models.networks`). A generated image
  carries the CAM of its *source*: ``D_Y(G_XY(x), cam_x)``, ``G_YX(G_XY(x), cam_x)`` ...;
  images in the discriminators' history pools keep their CAM with them.

Losses (paper + CycleGAN): ``L_G = adv(D_Y(G_XY(x))) + adv(D_X(G_YX(y)))
+ lambda_cyc * (|G_YX(G_XY(x)) - x|_1 + |G_XY(G_YX(y)) - y|_1)
+ lambda_idt * lambda_cyc * (|G_XY(y) - y|_1 + |G_YX(x) - x|_1)``; each D minimises
``0.5 * (gan(D(real), 1) + gan(D(pool(fake)), 0))``. ``gan`` is BCE-with-logits (vanilla, the
paper's log loss) or MSE (lsgan). Adam(lr, (beta1, beta2)); the learning rate decays linearly
(per step) to ~0 over the last ``lr_decay_epochs`` epochs. Losses are computed in fp32; the
network forwards run under bf16 autocast when ``precision`` asks for it. With ``ema > 0``
the saved (and sampled) generators are exponential moving averages of the trained weights.

``model: ugatit`` trains U-GAT-IT light instead (its networks learn their own CAM; its
losses add the discriminators' CAM outputs and the generators' CAM loss, logged as
``loss_cam``; see :class:`face2anime.gan.model.UGATIT`), with everything else the same.

The discriminators' CAM (``cyclegan.train.d_cam``, attention methods): ``source`` as above
(a fake carries its source's CAM), ``self`` (every image D sees gets the frozen guiding
classifier's CAM of that very image, see :mod:`face2anime.gan.dcam`) or ``none`` (attention in
the generators only). ``cyclegan.train.diffaug`` puts DiffAugment in front of both
discriminators (:mod:`face2anime.gan.augment`; D's CAMs move with the image).

Every ``val_every`` steps the saved generators are scored on a fixed probe of training
images without labels (:mod:`face2anime.gan.monitor`: patch-SWD realism, cycle L1,
diversity); ``snapshot: best`` saves the generators of the best score instead of the last,
and a run that collapses (D over-fitted, realism or diversity falling) says so in the log and
in its metrics (``collapsed``, ``collapse_reasons``).

Speed (:mod:`face2anime.gan.speed`): the defaults are the exact mode (bit-identical to the
plain loop); ``compile``, ``channels_last``, ``adam: fused``, ``fuse_passes`` and
``threads`` trade bit-identity with the exact mode for speed and stay deterministic and
resumable on the same machine. The step never reads a value on the host: losses are summed
on the device and read at log steps.

Outputs: ``models/cyclegan/{method}/`` (G_XY.pt, G_YX.pt, D_X.pt, D_Y.pt state dicts,
config.json, human_train_ids.csv, samples/epoch_XXX.png) and a dvclive directory
``metrics/cyclegan/{method}/`` (plots/metrics/*.tsv with x = ``step`` = optimisation step,
metrics.json). An epoch-end checkpoint ``checkpoints/cyclegan/{method}/last.pt`` (not a DVC
output) lets a killed run resume bit-exactly on CPU; it is deleted on success.
"""
from __future__ import annotations


import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from face2anime.core.io import (
    rel,
    replace_dir,
    save_csv,
    save_image,
    staging_dir,
    torch_save,
    write_json,
)
from face2anime.core import timing
from face2anime.core.live import open_live
from face2anime.core.paths import CAM_DIR, CHECKPOINT_DIR, CLASSIFIER_DIR, CYCLEGAN_DIR, CYCLEGAN_LIVE, RESIZED_DIR, SELECT_CSV
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.core.runtime import (
    pick_device,
    set_threads,
    resolve_precision,
    seed_everything,
)
from face2anime.data.images import ImageFiles, to_model, to_pil
from face2anime.gan import distributed
from face2anime.gan.monitor import Probe, RunMonitor, make_probe, validate
from face2anime.gan.speed import (
    compile_cache,
    device_budget,
    place,
)

from face2anime.gan.checkpoint import config_hash, read_checkpoint, restore_files, snapshot_files
from face2anime.gan.config import N_SAMPLES, TIMINGS, TIMINGS_FILE, TrainConfig, read_config, training_data
from face2anime.gan.data import (
    IndexStream,
    d_feature_size,
    epoch_batches,
    gather_batch,
    load_training_data,
    prepare_dcams,
)
from face2anime.gan.dcam import load_cam_net, self_cams
from face2anime.gan.model import D_STATS, LABEL_X, LABEL_Y, CycleGAN, make_model


def sample_picture(model: CycleGAN, xs: torch.Tensor, ys: torch.Tensor, cxs: torch.Tensor | None,
                   cys: torch.Tensor | None, path: Path) -> None:
    """Rows: humans | G_XY(humans) | characters | G_YX(characters); saved as PNG to ``path``."""
    from torchvision.utils import make_grid

    g = model.generators()
    with torch.no_grad(), model._ac():
        g["G_XY"].eval(), g["G_YX"].eval()
        fy = g["G_XY"](xs, cxs).float()
        fx = g["G_YX"](ys, cys).float()
        g["G_XY"].train(), g["G_YX"].train()
    grid = make_grid(torch.cat([xs, fy, ys, fx]).cpu(), nrow=xs.shape[0], padding=2, value_range=(-1, 1),
                     normalize=True, pad_value=1.0)
    save_image(to_pil(grid * 2 - 1), path)


def run_validation(model: CycleGAN, probe: Probe, monitor: RunMonitor, live: Any, step: int,
                   cfg: TrainConfig, notify: Callable[[str], None]) -> None:
    """Score the saved generators on the probe; log it, keep the best snapshot, warn on collapse."""
    g = model.generators()
    metrics = validate(g["G_XY"], g["G_YX"], probe, model.device, model._ac)
    monitor.add_validation(step, metrics, g, keep_best=cfg.snapshot == "best")
    prev = live.step
    live.step = step
    for k in ("realism", "cycle", "diversity", "score"):
        live.log_metric(f"val_{k}", metrics[k])
    live.step = prev
    collapsed, reasons = monitor.collapse()
    if collapsed and not monitor.warned:
        monitor.warned = True
        notify(f"step {step}: collapsing? " + "; ".join(reasons))


class _NoLive:
    """What ranks other than 0 log to: nothing (rank 0 logs the all-rank means)."""

    step = 0
    summary: dict[str, Any] = {}

    def log_metric(self, *_: Any) -> None: ...
    def make_summary(self) -> None: ...
    def end(self) -> None: ...


class _Stop(Exception):
    """Raised (tests only) to simulate a kill right after an epoch checkpoint."""


# --------------------------------------------------------------------------- training
def train(method: str, params: ParamsFile, data_dir: Path = RESIZED_DIR, cam_dir: Path = CAM_DIR,
          select_csv: Path = SELECT_CSV, out_dir: Path | None = None, live_dir: Path | None = None,
          ckpt_dir: Path | None = None, progress: bool = True, classifier_dir: Path = CLASSIFIER_DIR,
          _stop_after_epochs: int | None = None) -> dict[str, Any]:
    """Train the CycleGAN of ``method`` (an entry of ``cyclegan.methods``); returns the summary.

    Resumes from ``ckpt_dir/last.pt`` when it holds a checkpoint of the same config hash.
    ``_stop_after_epochs`` (tests) raises :class:`_Stop` after that many epochs' checkpoints.
    """
    cfg = read_config(method, params)
    world = distributed.current()
    if cfg.batch_size % world.size:
        raise UserError(f"cyclegan.train.batch_size ({cfg.batch_size}) is the global batch: it must be a "
                        f"multiple of the {world.size} training processes")
    device = distributed.init(world, pick_device(params.device))
    out_dir = out_dir or CYCLEGAN_DIR / method
    live_dir = live_dir or CYCLEGAN_LIVE / method
    ckpt_dir = ckpt_dir or CHECKPOINT_DIR / method
    ckpt_path = ckpt_dir / "last.pt"
    console = Console(stderr=True)
    who = f"train_cyclegan[{method}]"

    def notify(msg: str) -> None:
        if world.main:
            console.print(f"{who}: {msg}", markup=False, highlight=False, soft_wrap=True)

    seed_everything(cfg.seed)
    threads = set_threads(cfg.threads)
    if cfg.compile:
        compile_cache()

    X, Y = load_training_data(cfg, data_dir, cam_dir, select_csv)
    size = int(X.images.shape[-1])
    chash = config_hash(cfg, X, Y, device)
    budget = device_budget(device)
    cam_net = load_cam_net(classifier_dir) if cfg.attention and cfg.d_cam == "self" else None
    for d, label in ((X, LABEL_X), (Y, LABEL_Y)):
        if cfg.attention and cfg.d_cam == "source":
            prepare_dcams(d, size)   # D's CAMs resized once, not on every forward
        elif cam_net is not None and not cfg.diffaug:
            d.dcams = self_cams(cam_net, d.images, label, d_feature_size(size))  # the real images' own, once
        if not isinstance(d.images, ImageFiles):
            d.images = place(d.images, device, budget)
        if d.cams is not None:
            d.cams = place(d.cams, device, budget)
        if d.dcams is not None:
            d.dcams = place(d.dcams, device, budget)
    probe = (make_probe(X.images, X.cams, Y.images, Y.cams, cfg.seed, to_model)
             if cfg.val_every and world.main else None)   # validation: rank 0 only
    monitor = RunMonitor()

    def new_model() -> CycleGAN:
        m = make_model(cfg, device, notify, rank=world.rank, size=size)
        if cam_net is not None:
            m.set_cam_net(cam_net)
        return m

    model = new_model()
    sx, sy = IndexStream(len(X.ids), cfg.seed, 0), IndexStream(len(Y.ids), cfg.seed, 1)
    # fixed sample images: the first few (by id) of each training set
    ix = torch.tensor(sorted(range(len(X.ids)), key=lambda i: X.ids[i])[:N_SAMPLES])
    iy = torch.tensor(sorted(range(len(Y.ids)), key=lambda i: Y.ids[i])[:N_SAMPLES])
    xs, cxs, _ = gather_batch(X, ix, device)
    ys, cys, _ = gather_batch(Y, iy, device)
    samples_dir = out_dir / "samples"
    mirrored = {"live": live_dir, "samples": samples_dir}

    start_epoch, elapsed = 0, 0.0
    ck = read_checkpoint(ckpt_path, chash, f"train_cyclegan[{method}]", console)
    if ck is not None:
        try:
            model.load_state_dict(ck["model"])
            sx.pos, sy.pos = int(ck["stream_x"]), int(ck["stream_y"])
            torch.set_rng_state(ck["torch_rng"])
            start_epoch, elapsed = int(ck["epoch"]), float(ck["elapsed"])
            monitor.load_state_dict(ck["monitor"])
            restore_files(ck["files"], mirrored)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            console.print(f"train_cyclegan[{method}]: ignoring damaged checkpoint {rel(ckpt_path)} "
                          f"({type(e).__name__}: {e}); starting fresh", markup=False)
            model, start_epoch, elapsed, ck, monitor = new_model(), 0, 0.0, None, RunMonitor()
            sx.pos = sy.pos = 0
            seed_everything(cfg.seed)
    if ck is not None:
        notify(f"resuming after epoch {start_epoch}/{cfg.epochs} from {rel(ckpt_path)}")
    elif world.main:
        for d in (samples_dir, live_dir):
            shutil.rmtree(d, ignore_errors=True)
    del ck
    model.distribute(world)
    if world.distributed:
        notify(f"{world.size} processes (DDP, {'nccl' if device.type == 'cuda' else 'gloo'}), "
               f"{cfg.batch_size // world.size} images per domain and rank per step")

    live = open_live(live_dir, resume=start_epoch > 0) if world.main else _NoLive()
    b_rank = cfg.batch_size // world.size
    mine = slice(world.rank * b_rank, (world.rank + 1) * b_rank)  # this rank's disjoint share of each batch
    val_seconds = 0.0
    imgs_per_step = 2 * cfg.batch_size
    bar = Progress(TextColumn(f"train_cyclegan[{method}]", markup=False), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=not (progress and world.main))
    with bar:
        task = bar.add_task("train", total=cfg.total_steps, completed=start_epoch * cfg.steps_per_epoch, info="")
        for epoch in range(start_epoch, cfg.epochs):
            # running sums stay on the device (float64: the same sums as adding Python floats);
            # they are read on the host only at log steps, so a CUDA step never waits for a sync
            names = model.loss_names + D_STATS
            acc = torch.zeros(len(names), dtype=torch.float64, device=device)
            ep_sum = torch.zeros_like(acc)
            n_acc, t_win, t_epoch = 0, time.perf_counter(), elapsed
            bx = epoch_batches(X, sx, cfg.steps_per_epoch, cfg.batch_size, mine, device, cfg.loader_workers)
            by = epoch_batches(Y, sy, cfg.steps_per_epoch, cfg.batch_size, mine, device, cfg.loader_workers)
            for s in range(cfg.steps_per_epoch):
                step = epoch * cfg.steps_per_epoch + s
                x, cx, dcx = next(bx)
                y, cy, dcy = next(by)
                lr_used = model.opt_G.param_groups[0]["lr"]
                losses, d_stats = model.step(x, y, cx, cy, dcx, dcy)
                both = torch.cat([losses, d_stats])
                acc += both
                ep_sum += both
                n_acc += 1
                if (s + 1) % cfg.log_every == 0 or s == cfg.steps_per_epoch - 1:
                    distributed.all_mean(acc, world)                 # all ranks' images (a no-op for one)
                    mean = dict(zip(names, (acc / n_acc).tolist()))  # the one host read (sync) of the window
                    bad = [k for k, v in mean.items() if not math.isfinite(v)]
                    if bad:   # diverged: stop before any checkpoint or model file holds the weights
                        raise UserError(f"train-cyclegan {method}: training diverged (non-finite {', '.join(bad)} "
                                        f"by step {step + 1}); no model was written. Lower cyclegan.train.lr "
                                        "or use precision: fp32")
                    now = time.perf_counter()
                    elapsed += now - t_win  # training time: the windows' steps, not logging/samples/checkpoints
                    live.step = step + 1
                    for k, v in mean.items():
                        live.log_metric(k, v)
                    live.log_metric("lr", lr_used)  # the lr of the window's last step
                    live.log_metric("images_per_s", n_acc * imgs_per_step / max(now - t_win, 1e-9))
                    monitor.add_window(mean["d_acc_real"], mean["d_acc_fake"])
                    bar.update(task, info=f"cyc {mean['loss_cyc']:.3f} D {mean['loss_D']:.3f}")
                    acc.zero_()
                    n_acc = 0
                if probe is not None and ((step + 1) % cfg.val_every == 0 or step + 1 == cfg.total_steps):
                    t_val = time.perf_counter()
                    run_validation(model, probe, monitor, live, step + 1, cfg, notify)
                    val_seconds += time.perf_counter() - t_val
                if n_acc == 0:
                    t_win = time.perf_counter()
                bar.update(task, advance=1)
            live.make_summary()
            n = cfg.steps_per_epoch
            distributed.all_mean(ep_sum, world)
            if world.main:
                console.print(f"train_cyclegan[{method}] epoch {epoch + 1}/{cfg.epochs}: "
                              + " ".join(f"{k} {v / n:.3f}" for k, v in zip(names, ep_sum.tolist()))
                              + f" | {n * imgs_per_step / max(elapsed - t_epoch, 1e-9):.1f} images/s",
                              markup=False, highlight=False, soft_wrap=True)
            if world.main and ((epoch + 1) % cfg.sample_every == 0 or epoch + 1 == cfg.epochs):
                sample_picture(model, xs, ys, cxs, cys, samples_dir / f"epoch_{epoch + 1:03d}.png")
            if epoch + 1 < cfg.epochs and world.main:
                torch_save({"config_hash": chash, "epoch": epoch + 1, "elapsed": elapsed,
                            "model": model.state_dict(), "monitor": monitor.state_dict(), "stream_x": sx.pos, "stream_y": sy.pos,
                            "torch_rng": torch.get_rng_state(), "dvclive_step": live.step,
                            "files": snapshot_files(mirrored)}, ckpt_path)
            if epoch + 1 < cfg.epochs and _stop_after_epochs is not None and epoch + 1 >= _stop_after_epochs:
                distributed.shutdown(world)
                raise _Stop(f"stopped after epoch {epoch + 1}")

    steps = cfg.total_steps
    n_images = steps * imgs_per_step
    ips = n_images / max(elapsed, 1e-9)
    summary = {"train_seconds": round(elapsed, 3), "images_per_s": round(ips, 3), "n_human_train": len(X.ids),
               "n_character_train": len(Y.ids), "steps": steps,
               "device": device.type, "precision": resolve_precision(device, cfg.precision),
               "threads": threads, "compile": model.compile_mode(),
               "compile_seconds": round(model.compile_seconds(), 3), "val_seconds": round(val_seconds, 3),
               "diffaug": cfg.diffaug, "d_cam": model.d_cam, "snapshot": cfg.snapshot, "nproc": world.size,
               **monitor.summary()}
    distributed.shutdown(world)
    if not world.main:
        return summary
    if summary["collapsed"]:
        notify("WARNING: this run looks collapsed (" + "; ".join(summary["collapse_reasons"])
               + "): its translations are likely noise; try cyclegan.train.diffaug, more data or fewer steps")
    for k, v in summary.items():
        if k not in TIMINGS:
            live.summary[k] = v
    live.summary.pop("images_per_s", None)   # the last logged window's rate: a timing (plots keep the series)
    live.end()
    timing.note(**{k: summary[k] for k in TIMINGS})
    write_json(live_dir / TIMINGS_FILE, {k: summary[k] for k in TIMINGS})   # what torchrun's parent reads

    saved = {name: {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
             for name, net in {**model.nets(), **model.generators()}.items()}  # generators: the EMA copies if any
    if cfg.snapshot == "best" and monitor.best_state is not None:
        saved.update(monitor.best_state)       # the generators of the best validation score
    # the model folder is written as a unit: built beside out_dir, then swapped in
    final_dir, out_dir = out_dir, staging_dir(out_dir)
    if samples_dir.is_dir():
        samples_dir.rename(out_dir / "samples")
    samples_dir = final_dir / "samples"
    for name, state in saved.items():
        torch_save(state, out_dir / f"{name}.pt")
    save_csv(pd.DataFrame({"id": X.ids}), out_dir / "human_train_ids.csv")
    write_json(out_dir / "config.json", {
        "method": method, "model": cfg.model, "subset": cfg.subset, "attention": cfg.attention, "attention_mode": cfg.attention_mode,
        "upsample": cfg.upsample, "d_blur": cfg.d_blur,
        "ngf": cfg.ngf, "ndf": cfg.ndf, "n_res": cfg.n_res, "size": size, "cam_size": None if X.cams is None
        else int(X.cams.shape[-1]), "n_human_train": len(X.ids), "n_character_train": len(Y.ids),
        "epochs": cfg.epochs, "steps": steps, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "precision": cfg.precision, "device": device.type, "gan_loss": cfg.gan_loss, "ema": cfg.ema, "lambda_cyc": cfg.lambda_cyc,
        "lambda_idt": cfg.lambda_idt, "lambda_tv": cfg.lambda_tv, "diffaug": cfg.diffaug, "d_cam": model.d_cam, "snapshot": cfg.snapshot,
        "snapshot_step": monitor.best_step if cfg.snapshot == "best" and monitor.best_state is not None else steps,
        "collapsed": summary["collapsed"], "collapse_reasons": summary["collapse_reasons"], "config_hash": chash,
        "training_data": training_data(params)})
    replace_dir(out_dir, final_dir)
    out_dir = final_dir
    if ckpt_path.is_file():
        ckpt_path.unlink()
    with contextlib.suppress(OSError):
        ckpt_dir.rmdir()
    print(f"train_cyclegan[{method}]: {n_images} images ({steps} steps x {imgs_per_step}) in {elapsed:.1f} s "
          f"= {ips:.1f} images/s on {device.type} (precision {cfg.precision}); human {len(X.ids)}, "
          f"character {len(Y.ids)}; samples {rel(samples_dir)}", flush=True)
    return summary

