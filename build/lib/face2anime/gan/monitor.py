"""Watching a CycleGAN train without labels: a validation score, the best snapshot, collapse.

**Validation score** (lower is better), computed every ``val_every`` steps on a fixed probe
set (up to 16 human and 16 character *training* images chosen once, seeded; the generators
the run saves, i.e. the EMA copies, in eval mode, no gradient):

* ``realism``: how unlike the target domain the translations look, as the sliced Wasserstein
  distance (SWD) between 7x7 patches of the translations and of *other* real images of the
  target domain, on two levels of a Laplacian pyramid (Karras et al. 2018), divided by the
  same distance for the untranslated sources (1.0 = as far as the source images are; blurry
  early translations and noise score well above 1). The mean of both directions. It is a
  relative, per-run measure: it tracks whether a run's translations move towards the target
  domain or away from it.
* ``cycle``: mean L1 of ``G_YX(G_XY(x)) - x`` and ``G_XY(G_YX(y)) - y`` (in [-1, 1] units).
* ``score = realism + cycle``.
* ``diversity`` (reported, not scored): how much the translations of different sources differ
  from each other, relative to how much real target images differ (mean absolute difference
  of consecutive images). Near 0 means every source gets the same output: mode collapse.

No labels, no extra network: it runs on any data (real photos included).

**Collapse** (:func:`detect_collapse`), from the logged curves: the discriminator's accuracy
saturating (it separates real from fake patches almost perfectly) and the validation realism
getting worse (translations drifting away from the target domain after having been closer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from face2anime.data.images import gather_rows

PATCH = 7
N_PATCHES = 2048
N_DIRS = 64
PROBE = 16


def _pyramid(x: torch.Tensor, levels: int = 2) -> list[torch.Tensor]:
    """Laplacian pyramid of ``x [n, 3, H, W]``: the band-pass levels, finest first, then the residual."""
    out = []
    for _ in range(levels - 1):
        small = F.avg_pool2d(x, 2)
        out.append(x - F.interpolate(small, scale_factor=2, mode="bilinear", align_corners=False))
        x = small
    out.append(x)
    return out


def _patches(x: torch.Tensor, gen: torch.Generator, n: int) -> torch.Tensor:
    """``n`` random ``PATCH x PATCH`` patches of ``x [m, 3, H, W]`` as rows ``[n, 3 * PATCH**2]``."""
    m, c, h, w = x.shape
    i = torch.randint(0, m, (n,), generator=gen)
    r = torch.randint(0, h - PATCH + 1, (n,), generator=gen)
    q = torch.randint(0, w - PATCH + 1, (n,), generator=gen)
    ar = torch.arange(PATCH)
    rows = (r[:, None] + ar[None, :])[:, :, None].expand(n, PATCH, PATCH)
    cols = (q[:, None] + ar[None, :])[:, None, :].expand(n, PATCH, PATCH)
    p = x.permute(0, 2, 3, 1)[i[:, None, None], rows, cols]          # [n, P, P, 3]
    return p.reshape(n, -1)


def swd(a: torch.Tensor, b: torch.Tensor, seed: int = 0) -> float:
    """Sliced Wasserstein distance between the patch distributions of image sets ``a`` and ``b``
    (``[n, 3, H, W]`` in [-1, 1], any counts), averaged over two Laplacian levels. Deterministic."""
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    total = 0.0
    levels_a, levels_b = _pyramid(a), _pyramid(b)
    for lvl, (la, lb) in enumerate(zip(levels_a, levels_b)):
        if min(la.shape[-1], la.shape[-2]) < PATCH:
            continue
        gen = torch.Generator().manual_seed(seed * 1000 + lvl)
        pa, pb = _patches(la, gen, N_PATCHES), _patches(lb, gen, N_PATCHES)
        both = torch.cat([pa, pb])
        mean, std = both.mean(0, keepdim=True), both.std(0, keepdim=True) + 1e-6
        pa, pb = (pa - mean) / std, (pb - mean) / std
        dirs = torch.randn(pa.shape[1], N_DIRS, generator=gen)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        proj_a, proj_b = (pa @ dirs).sort(0).values, (pb @ dirs).sort(0).values
        total += float((proj_a - proj_b).abs().mean())
    return total / len(levels_a)


@dataclass
class Probe:
    """The fixed validation images: sources of each domain (with CAMs) and references."""

    x: torch.Tensor                 # [n, 3, S, S] humans in [-1, 1]
    cx: torch.Tensor | None
    y: torch.Tensor                 # characters
    cy: torch.Tensor | None
    x_ref: torch.Tensor             # other humans (realism reference for G_YX)
    y_ref: torch.Tensor             # other characters (reference for G_XY)
    base: dict[str, float] = field(default_factory=dict)   # SWD of the untranslated sources


def make_probe(x_imgs: torch.Tensor, x_cams: torch.Tensor | None, y_imgs: torch.Tensor,
               y_cams: torch.Tensor | None, seed: int, to_model: Any) -> Probe:
    """Choose the probe (seeded, up to ``PROBE`` per domain) from uint8 training images: the
    first half of a permutation are sources, the rest references (all of them when the set
    is small)."""
    def split(n: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7 + stream))
        k = min(PROBE, max(1, n // 2))
        src, ref = perm[:k], perm[k:k + 2 * PROBE]
        return src, (ref if len(ref) >= 4 else perm[:2 * PROBE])

    xs, xr = split(len(x_imgs), 1)
    ys, yr = split(len(y_imgs), 2)
    xf = lambda t: to_model(t.cpu())  # noqa: E731
    p = Probe(xf(gather_rows(x_imgs, xs)), None if x_cams is None else x_cams[xs].cpu().float(),
              xf(gather_rows(y_imgs, ys)), None if y_cams is None else y_cams[ys].cpu().float(),
              xf(gather_rows(x_imgs, xr)), xf(gather_rows(y_imgs, yr)))
    p.base = {"xy": swd(p.x, p.y_ref), "yx": swd(p.y, p.x_ref)}
    return p


def validate(g_xy: torch.nn.Module, g_yx: torch.nn.Module, probe: Probe, device: torch.device,
             autocast: Any) -> dict[str, float]:
    """``{"realism", "realism_xy", "realism_yx", "cycle", "score"}`` of the generators on ``probe``."""
    modes = (g_xy.training, g_yx.training)
    g_xy.eval(), g_yx.eval()
    try:
        with torch.no_grad(), autocast():
            x, y = probe.x.to(device), probe.y.to(device)
            cx = None if probe.cx is None else probe.cx.to(device)
            cy = None if probe.cy is None else probe.cy.to(device)
            fy = g_xy(x, cx).float()
            fx = g_yx(y, cy).float()
            rx, ry = g_yx(fy, cx).float(), g_xy(fx, cy).float()
    finally:
        g_xy.train(modes[0]), g_yx.train(modes[1])
    r_xy = swd(fy, probe.y_ref) / max(probe.base["xy"], 1e-8)
    r_yx = swd(fx, probe.x_ref) / max(probe.base["yx"], 1e-8)
    cycle = 0.5 * (float((rx - x).abs().mean()) + float((ry - y).abs().mean()))
    realism = 0.5 * (r_xy + r_yx)
    diversity = 0.5 * (spread(fy.cpu()) / max(spread(probe.y_ref), 1e-8) + spread(fx.cpu()) / max(spread(probe.x_ref), 1e-8))
    return {"realism": realism, "realism_xy": r_xy, "realism_yx": r_yx, "cycle": cycle, "diversity": diversity,
            "score": realism + cycle}


def spread(x: torch.Tensor) -> float:
    """Mean absolute difference between consecutive images of ``x`` (how much a set varies)."""
    x = x.detach().float()
    return float((x[1:] - x[:-1]).abs().mean()) if len(x) > 1 else 0.0


# --------------------------------------------------------------------------- collapse
#: D over-fits when its mean patch accuracy (real and fake) stays at or above this over the last
#: ``TAIL`` of the logged windows (ADA, Karras et al. 2020, calls D over-fitted well below this)
D_OVERFIT = 0.9
TAIL = 0.25
#: realism degraded: the last two validations this much (relative) above the best one before them
REALISM_RISE = 0.25
#: with an over-fitted D, realism has stalled when the last value is this much above the best ...
REALISM_STALL = 0.05
#: ... or diversity has fallen this much below its highest value
DIVERSITY_DROP = 0.3
#: mode collapse: the translations of different sources differ this little (relative to real images)
DIVERSITY_MIN = 0.25


def detect_collapse(d_acc: list[float], realism: list[float],
                    diversity: list[float] | None = None) -> tuple[bool, list[str]]:
    """Is the run collapsing? From the per-window mean D accuracy (mean of real and fake patch
    accuracy, in log order) and the validation realism and diversity values (in step order).

    Reasons (any of them flags ``collapsed``):

    * ``realism degraded``: the last two validations are both more than ``REALISM_RISE``
      above the best value before them: the translations got clearly less like the target
      domain than they had been;
    * ``mode collapse``: the last ``diversity`` is below ``DIVERSITY_MIN``: different sources
      get (nearly) the same output;
    * ``discriminator over-fitted and ...``: D's accuracy averaged over the last ``TAIL`` of the
      windows is >= ``D_OVERFIT`` and the generators are losing ground: realism more than
      ``REALISM_STALL`` above its best, or diversity more than ``DIVERSITY_DROP`` below its peak.

    An over-fitted D while the translations keep improving is reported (``discriminator
    over-fitted``) without flagging a collapse. Non-finite realism is a collapse. These are
    heuristics with thresholds set on this project's runs (docs/method.md).
    """
    reasons: list[str] = []
    collapsed = False
    diversity = diversity or []
    if any(not math.isfinite(r) for r in realism):
        return True, ["validation realism is not finite"]
    overfit = False
    if d_acc:
        k = max(1, int(math.ceil(TAIL * len(d_acc))))
        overfit = sum(d_acc[-k:]) / k >= D_OVERFIT
    if len(realism) >= 3:
        best = min(realism[:-2])
        if all(r > best * (1 + REALISM_RISE) for r in realism[-2:]):
            collapsed = True
            reasons.append(f"realism degraded (best {best:.2f}, last {realism[-1]:.2f})")
    if diversity and diversity[-1] < DIVERSITY_MIN:
        collapsed = True
        reasons.append(f"mode collapse (translations of different sources nearly identical: diversity "
                       f"{diversity[-1]:.2f})")
    if overfit:
        losing = []
        if realism and realism[-1] > min(realism) * (1 + REALISM_STALL):
            losing.append(f"realism stalled (best {min(realism):.2f}, last {realism[-1]:.2f})")
        if len(diversity) >= 3 and diversity[-1] < max(diversity) * (1 - DIVERSITY_DROP):
            losing.append(f"diversity falling (peak {max(diversity):.2f}, last {diversity[-1]:.2f})")
        if losing:
            collapsed = True
            reasons.append(f"discriminator over-fitted (accuracy >= {D_OVERFIT}) and " + " and ".join(losing))
        else:
            reasons.append(f"discriminator over-fitted (accuracy >= {D_OVERFIT})")
    return collapsed, reasons


class RunMonitor:
    """The run's validation history, D-accuracy history and best snapshot (checkpointed)."""

    def __init__(self) -> None:
        self.val: list[dict[str, float]] = []        # {"step", "realism", "cycle", "score", ...}
        self.d_acc: list[float] = []                 # per log window: mean of real and fake accuracy
        self.best_score = math.inf
        self.best_step = 0
        self.best_state: dict[str, dict[str, torch.Tensor]] | None = None
        self.warned = False

    def add_window(self, acc_real: float, acc_fake: float) -> None:
        self.d_acc.append(0.5 * (acc_real + acc_fake))

    def add_validation(self, step: int, metrics: dict[str, float],
                       generators: dict[str, torch.nn.Module], keep_best: bool) -> bool:
        """Record a validation; with ``keep_best``, copy the generators when it is the best so far.
        Returns whether it is the best."""
        self.val.append({"step": step, **metrics})
        best = metrics["score"] < self.best_score
        if best:
            self.best_score, self.best_step = metrics["score"], step
            if keep_best:
                self.best_state = {k: {n: t.detach().float().cpu().clone().contiguous()
                                       for n, t in g.state_dict().items()} for k, g in generators.items()}
        return best

    def collapse(self) -> tuple[bool, list[str]]:
        return detect_collapse(self.d_acc, [v["realism"] for v in self.val],
                               [v["diversity"] for v in self.val if "diversity" in v])

    def summary(self) -> dict[str, Any]:
        collapsed, reasons = self.collapse()
        last = self.val[-1] if self.val else {}
        k = max(1, int(math.ceil(TAIL * len(self.d_acc)))) if self.d_acc else 0
        return {"collapsed": collapsed, "collapse_reasons": reasons,
                "d_acc_tail": round(sum(self.d_acc[-k:]) / k, 4) if k else None,
                "val_best_step": self.best_step if self.val else None,
                "val_best_score": round(self.best_score, 4) if self.val else None,
                "val_last": {key: round(v, 4) for key, v in last.items() if key != "step"} or None,
                "val_best_realism": round(min(v["realism"] for v in self.val), 4) if self.val else None}

    def state_dict(self) -> dict[str, Any]:
        return {"val": [dict(v) for v in self.val], "d_acc": list(self.d_acc), "best_score": self.best_score,
                "best_step": self.best_step, "best_state": self.best_state, "warned": self.warned}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.val = [dict(v) for v in state["val"]]
        self.d_acc = list(state["d_acc"])
        self.best_score, self.best_step = float(state["best_score"]), int(state["best_step"])
        self.best_state, self.warned = state["best_state"], bool(state["warned"])
