"""Stage 3, ``train_classifier``: the human-vs-character CNN whose Grad-CAM guides the
method, and the independent *judge* that only evaluation uses.

The judge differs in architecture (params), seed, data order and training subset, so the
method is not graded by the network that guided it. Both are trained from scratch on the
resized train split and scored on the held-out test split of both domains.

With ``judge.junk > 0`` the judge has a third class, *junk* (:data:`JUNK`): that many
generated degenerate images per real training image (noise, flat colours, strong blur,
patch shuffles, images drowned in noise; :func:`face2anime.data.junk.junk_images`), so it
can answer "neither" instead of calling everything that is not a photo "character". The
guiding classifier never gets junk (its training is unchanged). The judge's config records
the ids of the train images it did not train on (``held_out_ids``): evaluation uses those
characters as real held-out references.

Outputs: ``models/classifier/{classifier,judge}.pt`` (+ ``.json`` config),
``metrics/classifier.json``, ``metrics/judge.json`` and dvclive curves under
``metrics/train_classifier/{classifier,judge}``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console
from rich.progress import Progress

from face2anime.core.paths import CLASSIFIER_DIR, METRICS_DIR, RESIZED_DIR
from face2anime.core.io import (
    INPUTS_DIR,
    inside_inputs,
    rel,
    torch_load,
    torch_save,
    write_json,
)
from face2anime.core import timing
from face2anime.core.live import open_live
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.core.runtime import (
    autocast,
    pick_device,
    resolve_precision,
    seed_everything,
)
from face2anime.data.images import load_split, read_manifest, to_model
from face2anime.data.ops import gaussian_blur
from face2anime.models.classifiers import build_classifier

LABELS = {"human": 0, "character": 1}
#: the judge's third class (``judge.junk > 0``): neither a human nor a character
JUNK = 2
CLASS_NAMES = ("human", "character", "junk")
SEED_OFFSETS = {"classifier": 0, "judge": 7919}


def degrade(x: torch.Tensor, g: torch.Generator, p: float = 0.5, hue: float = 0.0) -> torch.Tensor:
    """Randomly degrade each uint8 image ``[B, 3, H, W]``, identically for both classes, each
    with probability ``p``: a global colour change (brightness x0.7-1.3, contrast x0.6-1.5,
    saturation x0.4-1.6, torchvision's ``adjust_*``; with ``hue > 0`` also a hue turn of up to
    ``hue`` (0.5 = any hue)), a Gaussian blur (sigma 0.4-1.2 px) and additive noise (std up to
    12 of 255).

    Used for the judge: it makes sharpness, noise and global colour useless as class cues
    (both domains draw them from the same distributions), so the judge decides "character"
    from face content (eye/mouth shapes, flat fills), not from how crisp or how tinted a
    GAN's output happens to be.
    """
    b = len(x)
    colour = torch.rand(b, generator=g) < p
    if colour.any():
        f = torch.rand(b, 3, generator=g) * torch.tensor([0.6, 0.9, 1.2]) + torch.tensor([0.7, 0.6, 0.4])
        h = (torch.rand(b, generator=g) * 2 - 1) * hue if hue > 0 else None
        import torchvision.transforms.v2.functional as TF   # here: torchvision costs ~2 s per process that loads a classifier

        x = x.clone()
        for i in colour.nonzero().flatten().tolist():
            xi = TF.adjust_brightness(x[i], float(f[i, 0]))
            xi = TF.adjust_contrast(xi, float(f[i, 1]))
            xi = TF.adjust_saturation(xi, float(f[i, 2]))
            x[i] = TF.adjust_hue(xi, float(h[i])) if h is not None else xi
    xf = x.float()
    blur = torch.rand(b, generator=g) < p
    if blur.any():
        sigma = 0.4 + 0.8 * torch.rand(1, generator=g).item()
        blurred = gaussian_blur(xf, 5, sigma)
        xf = torch.where(blur[:, None, None, None], blurred, xf)
    noise = torch.rand(b, generator=g) < p
    if noise.any():
        std = 12.0 * torch.rand(b, 1, 1, 1, generator=g)
        xf = xf + torch.where(noise[:, None, None, None], std, torch.zeros_like(std)) * torch.randn(xf.shape, generator=g)
    return xf.round().clamp(0, 255).to(torch.uint8)


def augment(x: torch.Tensor, g: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random horizontal flip and a random translation of up to ``shift`` px (reflect pad)."""
    b, _, h, w = x.shape
    flip = torch.rand(b, generator=g) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if shift:
        xp = F.pad(x, (shift,) * 4, mode="reflect")
        dx, dy = (int(v) for v in torch.randint(0, 2 * shift + 1, (2,), generator=g))
        x = xp[:, :, dy:dy + h, dx:dx + w]
    return x


def fit(model: nn.Module, x: torch.Tensor, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        idx_target: torch.Tensor | dict, *, epochs: int, batch_size: int, lr: float, seed: int,
        device: torch.device, live=None, evaluate: Callable[[], dict] | None = None,
        desc: str = "train", precision: str = "auto", degrade_p: float = 0.0,
        degrade_hue: float = 0.0) -> list[dict]:
    """Train ``model`` on uint8 images ``x [N,3,S,S]`` with targets (tensor or dict of tensors).

    ``loss_fn(output, target_batch)`` computes the loss; ``evaluate()`` (optional) returns held-out
    metrics logged after each epoch. Runs channels-last under :func:`~face2anime.core.runtime.autocast`
    (bf16 where the hardware has it: about 3-5x faster on this project's CPUs); the loss is
    computed in fp32. Deterministic for ``seed`` on CPU. Returns per-epoch history.
    """
    g = torch.Generator().manual_seed(seed)
    model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
    n = len(x)
    history = []
    with Progress(transient=True) as bar:
        task = bar.add_task(desc, total=epochs * ((n + batch_size - 1) // batch_size))
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(n, generator=g)
            total, seen = 0.0, 0
            for i in range(0, n, batch_size):
                b = perm[i:i + batch_size]
                xa = augment(x[b], g)
                if degrade_p > 0:
                    xa = degrade(xa, g, degrade_p, degrade_hue)
                xb = to_model(xa).to(device, memory_format=torch.channels_last)
                tb = ({k: v[b].to(device) for k, v in idx_target.items()} if isinstance(idx_target, dict)
                      else idx_target[b].to(device))
                with autocast(device, precision):
                    out = model(xb)
                out = {k: v.float() for k, v in out.items()} if isinstance(out, dict) else out.float()
                loss = loss_fn(out, tb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(b)
                seen += len(b)
                bar.advance(task)
            sched.step()
            row = {"epoch": epoch + 1, "train_loss": total / seen}
            if evaluate is not None:
                row.update(evaluate())
            history.append(row)
            if live is not None:
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, float):
                        live.log_metric(k, v)
                live.next_step()
    model.eval()
    return history


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Logits of a uint8 image tensor ``[N,3,S,S]``, evaluated in batches (eval mode)."""
    model.eval().to(device)
    outs = [model(to_model(x[i:i + batch_size]).to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(outs) if outs else torch.zeros((0, 2))


def load_domain_pair(manifest, split: str, data_dir: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Images of both domains in one split with labels (0 human, 1 character) and ids."""
    rh, xh = load_split(manifest, "human", split, data_dir)
    rc, xc = load_split(manifest, "character", split, data_dir)
    y = torch.cat([torch.zeros(len(xh), dtype=torch.long), torch.ones(len(xc), dtype=torch.long)])
    return torch.cat([xh, xc]), y, list(rh["id"]) + list(rc["id"])


def classifier_config(params: ParamsFile, role: str) -> dict:
    """The training config of ``role`` (classifier | judge) from the typed params. The guiding
    classifier trains on the whole train split without degradation (``train_share`` 1,
    ``degrade`` 0: the judge's own params)."""
    c = params.judge if role == "judge" else params.classifier
    judge = role == "judge"
    return {
        "arch": c.arch, "widths": list(c.widths), "dropout": c.dropout, "epochs": c.epochs,
        "batch_size": c.batch_size, "lr": c.lr,
        "train_share": c.train_share if judge else 1.0,
        "degrade": c.degrade if judge else 0.0,
        "pretrained": c.pretrained,
        "seed": params.seed + SEED_OFFSETS[role],
        "precision": params.precision,
        **({"junk": c.junk, "degrade_hue": c.degrade_hue} if judge else {}),
    }


def n_classes(cfg: dict) -> int:
    """3 for a judge trained with junk, else 2."""
    return 3 if cfg.get("junk", 0.0) > 0 else 2


def with_junk(x: torch.Tensor, y: torch.Tensor, share: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Append ``round(share * len(x))`` junk images made from ``x`` (label :data:`JUNK`)."""
    from face2anime.data.junk import junk_images

    junk, kinds = junk_images(x, int(round(share * len(x))), torch.Generator().manual_seed(seed))
    return torch.cat([x, junk]), torch.cat([y, torch.full((len(junk),), JUNK, dtype=torch.long)]), kinds


def load_pretrained(model: nn.Module, path: Path, key: str) -> None:
    """Start ``model`` from a local state dict (``weights_only`` load).

    Keys may be missing or extra (a torchvision ResNet's ``fc``, say), but a tensor whose
    shape differs from the model's is a :class:`UserError` naming it. A file outside
    ``inputs/`` gets a warning: DVC cannot see when it changes.
    """
    if not inside_inputs(path):
        Console(stderr=True).print(
            f"[yellow]warning:[/] {key} = {path} is outside {INPUTS_DIR}/, so DVC cannot see when it "
            f"changes: put it under {INPUTS_DIR}/pretrained/ (a declared dependency)", highlight=False,
            soft_wrap=True)
    try:
        state = torch_load(path)
    except UserError:
        raise
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"param '{key}': cannot load {path} as a state dict ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"param '{key}': {path} is not a state dict of tensors")
    own = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items()
             if k in own and v.shape != own[k].shape]
    if wrong:
        raise UserError(f"param '{key}': {path} does not fit this model ({len(wrong)} tensors of the wrong "
                        f"shape, e.g. {wrong[0]}); check the arch and widths params")
    missing, unexpected = model.load_state_dict(state, strict=False)
    Console().print(f"loaded {rel(path)} ({len(missing)} missing, {len(unexpected)} unexpected keys)")


def train_one(role: str, cfg: dict, manifest, data_dir: Path, model_dir: Path, metrics_dir: Path,
              device: torch.device) -> dict:
    """Train one classifier ``role`` and write its weights, config, metrics and curves."""
    seed_everything(cfg["seed"])
    x, y, ids = load_domain_pair(manifest, "train", data_dir)
    held_out_ids: list[str] = []
    if cfg["train_share"] < 1.0:  # the judge sees a different random subset of the train split
        keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg["seed"]))
        keep = keep[: int(round(cfg["train_share"] * len(x)))].sort().values
        kept = set(keep.tolist())
        held_out_ids = [ids[i] for i in range(len(ids)) if i not in kept]
        x, y = x[keep], y[keep]
    xt, yt, _ = load_domain_pair(manifest, "test", data_dir)
    classes = n_classes(cfg)
    if classes == 3:  # the judge's junk class; own generators, so the global RNG stream is untouched
        x, y, _ = with_junk(x, y, cfg["junk"], cfg["seed"] + 1)
    model = build_classifier(cfg["arch"], cfg["widths"], cfg["dropout"], classes)
    if cfg["pretrained"]:
        load_pretrained(model, Path(cfg["pretrained"]), f"{role}.pretrained")

    def held_out() -> dict:
        logits = predict(model, xt, device)
        model.train()
        return {"test_loss": float(F.cross_entropy(logits, yt)),
                "test_accuracy": float((logits.argmax(1) == yt).float().mean())}

    t0 = time.perf_counter()
    with open_live(metrics_dir / "train_classifier" / role) as live:
        history = fit(model, x, F.cross_entropy, y, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
                      lr=cfg["lr"], seed=cfg["seed"], device=device, live=live, evaluate=held_out, desc=role,
                      precision=cfg["precision"], degrade_p=cfg["degrade"],
                      degrade_hue=cfg.get("degrade_hue", 0.0))
    seconds = time.perf_counter() - t0
    timing.note(**{f"{role}_train_seconds": round(seconds, 2)})
    final = history[-1]
    logits = predict(model, xt, device)
    pred = logits.argmax(1)
    metrics = {
        "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"],
        "test_accuracy_human": float((pred[yt == 0] == 0).float().mean()),
        "test_accuracy_character": float((pred[yt == 1] == 1).float().mean()),
        "n_train": int((y != JUNK).sum()), "n_test": len(xt), "epochs": cfg["epochs"], "arch": cfg["arch"],
        "device": device.type, "precision": resolve_precision(device, cfg["precision"]),
    }
    if classes == 3:  # held-out junk made from the test images (other draws than training's)
        xj, yj, _ = with_junk(xt, yt, cfg["junk"], cfg["seed"] + 2)
        pj = predict(model, xj[len(xt):], device).argmax(1)
        metrics["test_accuracy_junk"] = float((pj == JUNK).float().mean())
        metrics["n_train_junk"] = int((y == JUNK).sum())
        for name, label in LABELS.items():   # real test images the judge calls junk
            metrics[f"test_{name}_as_junk"] = float((pred[yt == label] == JUNK).float().mean())
    torch_save(model.cpu().state_dict(), model_dir / f"{role}.pt")
    write_json(model_dir / f"{role}.json", {**cfg, "n_classes": classes, "held_out_ids": held_out_ids}
               if role == "judge" else cfg)
    write_json(metrics_dir / f"{role}.json", metrics)
    Console().print(f"{role}: held-out accuracy {metrics['test_accuracy']:.3f} "
                    f"(loss {metrics['test_loss']:.3f}) on {len(xt)} test images, {seconds:.1f}s")
    return metrics


def load_classifier(role: str, model_dir: Path = CLASSIFIER_DIR, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild and load a trained ``classifier`` or ``judge`` (eval mode, weights_only load)."""
    import json

    cfg_path = model_dir / f"{role}.json"
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path} not found: run the train_classifier stage first")
    cfg = json.loads(cfg_path.read_text())
    model = build_classifier(cfg["arch"], cfg["widths"], cfg.get("dropout", 0.0), int(cfg.get("n_classes", 2)))
    model.load_state_dict(torch_load(model_dir / f"{role}.pt"))
    return model.to(device).eval()


def train_classifiers(params: ParamsFile, data_dir: Path = RESIZED_DIR, model_dir: Path = CLASSIFIER_DIR,
                      metrics_dir: Path = METRICS_DIR) -> dict:
    """Train the guiding classifier and the judge; return both metrics dicts."""
    device = pick_device(params.device)
    cfgs = {role: classifier_config(params, role) for role in ("classifier", "judge")}
    manifest = read_manifest(data_dir)
    return {role: train_one(role, cfg, manifest, data_dir, model_dir, metrics_dir, device)
            for role, cfg in cfgs.items()}
