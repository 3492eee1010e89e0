"""Numbers comparable with papers: plain Inception KID and FID, and U-GAT-IT's "mean KID".

Everything else in evaluation measures in the *judge's* feature space, which no paper shares.
This module computes the two metrics papers quote, in the feature space they use: the 2048-d
pool features of the FID Inception-v3, the network of TensorFlow's original FID code
("inception-2015-12-05") as ported to PyTorch by pytorch-fid and also used by torch-fidelity.

**The weights.** They cannot be downloaded here and nothing fetches them: set
``evaluate.inception_weights`` to a local copy of pytorch-fid's
``pt_inception-2015-12-05-6726825d.pth`` (:data:`WEIGHTS_FILE`; published as a release asset
of the pytorch-fid repository, fid_weights). Put it at :data:`SUGGESTED_PATH` (not under
``inputs/pretrained/``, which the classifier stage depends on) and set
``evaluate.inputs.inception`` to the same path: that is evaluate's DVC dependency on the
file (:func:`check_input`). ``''`` (the default) = off: the eval JSON then says so under
``inception`` and holds no Inception number at all.

The file is a plain ``state_dict`` of torchvision's ``Inception3`` module built with
``num_classes=1008`` and no auxiliary classifier (pytorch-fid's ``fid_inception_v3()``), so
its keys are the module names of :class:`FidInception`: ``Conv2d_1a_3x3.conv.weight``,
``Conv2d_1a_3x3.bn.{weight,bias,running_mean,running_var}``, ..., ``Mixed_5b.branch1x1.conv.weight``,
..., ``Mixed_7c.branch_pool.bn.running_var``, ``fc.weight`` ``[1008, 2048]``, ``fc.bias``
(BatchNorm's ``num_batches_tracked`` may be present or not). It is loaded with
``weights_only=True`` and strictly: a missing, unreadable or foreign file (wrong keys or
shapes) is a one-line :class:`~face2anime.core.params.UserError` naming the param.

**The network** (:class:`FidInception`) differs from torchvision's ImageNet Inception-v3 in
the ways TF's graph did: 1008 classes; the average-pool branch of every InceptionA, C and E
block ignores the zero padding (``count_include_pad=False``); the last E block
(``Mixed_7c``) max-pools in that branch. Input: RGB in [0, 1], resized bilinearly to
299 x 299 (``align_corners=False``, as pytorch-fid does; torch-fidelity resizes with its
own TF-exact bilinear code and so differs slightly), then scaled to [-1, 1]. Always fp32.

**The metrics** (:func:`inception_metrics`, under ``inception`` in ``metrics/eval/METHOD.json``):

- ``kid``: unbiased KID (Binkowski et al. 2018; cubic polynomial kernel) between the
  translated human test images and the real character test images, with the project's one
  KID function (:func:`face2anime.evaluation.measures.kid`): mean and std over
  ``evaluate.kid_subsets`` random subsets of ``evaluate.inception_kid_subset_size`` images
  (capped at the smaller set; at the cap every subset is the whole set and std is 0).
  ``x100`` is the mean times 100, as U-GAT-IT's and most translation papers' tables print it.
- ``fid``: Frechet distance between Gaussians fitted to the same two feature sets
  (Heusel et al. 2017). FID is biased upwards at small N: compare only values of equal N.
- ``mean_kid_ugatit``: the number U-GAT-IT's paper tables (their GAN_Metrics-Tensorflow
  ``mean_kernel_inception_distance``): the mean of KID(translations, real *target* images)
  and KID(translations, real *source* images), here the translations' own human test
  sources. Only the photo -> character direction: evaluate translates only that way.
  It is *not* plain KID; the issue's example: U-GAT-IT's released selfie2anime model had
  plain KID x100 2.72 but this average 11.15 (the paper's 11.61 is of this kind).

Each entry counts the images it covers (``n_fake``, ``n_real``, ``n_source``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import (
    BasicConv2d,
    Inception3,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from face2anime.core.io import torch_load
from face2anime.core.params import UserError
from face2anime.core.paths import RESIZED_DIR
from face2anime.core.schema import Evaluate
from face2anime.evaluation.measures import kid

#: pytorch-fid's file name of the FID Inception weights (its hash prefix 6726825d)
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
#: where the docs tell users to put it (a declared DVC dependency via evaluate.inputs.inception)
SUGGESTED_PATH = f"inputs/{WEIGHTS_FILE}"
#: ``evaluate.inputs.inception`` when the weights are off: a file evaluate reads anyway
NOTHING = str(RESIZED_DIR / "manifest.csv")
WEIGHTS_PARAM = "evaluate.inception_weights"
INPUT_PARAM = "evaluate.inputs.inception"
#: the network's input side and feature width
SIZE = 299
N_FEATURES = 2048
N_CLASSES = 1008
#: images per forward pass
BATCH = 32
WHERE_TO_GET = (f"pytorch-fid's {WEIGHTS_FILE} (release asset 'fid_weights' of github.com/mseitzer/pytorch-fid; "
                f"copy it here by hand, e.g. to {SUGGESTED_PATH}: nothing downloads it)")


# --------------------------------------------------------------------------- the network
def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """TF's 3x3 stride-1 SAME average pool: the padding does not count in the average."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _chain(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    for layer in layers:
        x = layer(x)
    return x


class _FidA(InceptionA):
    """InceptionA with TF's average pool in the pool branch (same parameters and names)."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.branch1x1(x), _chain(x, self.branch5x5_1, self.branch5x5_2),
                _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                self.branch_pool(_tf_avg_pool(x))]


class _FidC(InceptionC):
    """InceptionC with TF's average pool in the pool branch."""

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.branch1x1(x), _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
                _chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                       self.branch7x7dbl_5),
                self.branch_pool(_tf_avg_pool(x))]


class _FidE(InceptionE):
    """InceptionE whose pool branch pools with :attr:`pool` (TF's average pool; the FID
    graph's last E block, ``Mixed_7c``, max-pools instead)."""

    pool: Callable[[torch.Tensor], torch.Tensor] = staticmethod(_tf_avg_pool)

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        b3 = self.branch3x3_1(x)
        d3 = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        return [self.branch1x1(x), torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1),
                torch.cat([self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3)], 1),
                self.branch_pool(self.pool(x))]


class FidInception(Inception3):
    """The FID Inception-v3 (see the module doc); :meth:`features` gives the 2048-d pool features.
    Randomly initialised (PyTorch's default init) until :func:`load_inception` fills it."""

    def __init__(self) -> None:
        super().__init__(num_classes=N_CLASSES, aux_logits=False, transform_input=False, init_weights=False,
                         inception_blocks=[BasicConv2d, _FidA, InceptionB, _FidC, InceptionD, _FidE, InceptionAux])
        self.Mixed_7c.pool = _max_pool
        self.eval()

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """RGB ``[B, 3, H, W]`` float in [0, 1] -> pool features ``[B, 2048]``."""
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False) * 2 - 1
        x = _chain(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                   self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2,
                   self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                   self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c, self.avgpool)
        return torch.flatten(x, 1)


def _weight_keys(keys) -> set[str]:
    return {k for k in keys if not k.endswith("num_batches_tracked")}


def load_inception(path: str | Path, device: torch.device | str = "cpu") -> FidInception:
    """:class:`FidInception` with the weights of ``path`` (a state dict in pytorch-fid's key
    layout, loaded ``weights_only`` and strictly); any problem is a one-line UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"param '{WEIGHTS_PARAM}': {path} not found; it must be {WHERE_TO_GET}")
    try:
        state = torch_load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(f"param '{WEIGHTS_PARAM}': cannot load {path} as a state dict ({type(e).__name__}); "
                        f"it must be {WHERE_TO_GET}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"param '{WEIGHTS_PARAM}': {path} is not a state dict of tensors; it must be {WHERE_TO_GET}")
    net = FidInception()
    own = net.state_dict()
    missing, extra = sorted(_weight_keys(own) - set(state)), sorted(_weight_keys(state) - set(own))
    wrong = [k for k in _weight_keys(state) & set(own) if state[k].shape != own[k].shape]
    if missing or extra or wrong:
        example = (f"missing {missing[0]}" if missing else f"unexpected {extra[0]}" if extra
                   else f"{wrong[0]} {tuple(state[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
        raise UserError(f"param '{WEIGHTS_PARAM}': {path} is not the FID Inception ({len(missing)} missing, "
                        f"{len(extra)} unexpected, {len(wrong)} wrongly shaped keys, e.g. {example}); "
                        f"it must be {WHERE_TO_GET}")
    # a plain dict (no version metadata): BatchNorm fills an absent num_batches_tracked itself
    net.load_state_dict({k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}, strict=True)
    return net.to(device).eval()


@torch.no_grad()
def inception_features(net: FidInception, x: torch.Tensor, device: torch.device | str = "cpu",
                       batch_size: int = BATCH) -> torch.Tensor:
    """Pool features of uint8 images ``[N, 3, S, S]`` -> ``[N, 2048]`` float64 (fp32 inside)."""
    if not len(x):
        return torch.zeros((0, N_FEATURES), dtype=torch.float64)
    return torch.cat([net.features(x[i:i + batch_size].to(device).float() / 255).double().cpu()
                      for i in range(0, len(x), batch_size)])


# --------------------------------------------------------------------------- FID
def trace_sqrt_product(x: np.ndarray, y: np.ndarray) -> float:
    """``tr((S_x S_y)^(1/2))`` for the (unbiased) covariances of ``x [m, d]`` and ``y [n, d]``.

    With ``A = (x - mean) / sqrt(m - 1)`` and ``B`` likewise, ``S_x = A^T A`` and ``S_y = B^T B``, and
    the square roots of the eigenvalues of ``S_x S_y`` are the singular values of ``A B^T``: their
    sum (an ``m x n`` SVD) when a set is smaller than ``d`` (the covariances are then singular
    anyway); else the eigenvalues of the symmetric PSD ``S_x^(1/2) S_y S_x^(1/2)`` (two ``d x d``
    symmetric eigen-decompositions). Either way no complex round-off, unlike
    ``scipy.linalg.sqrtm(S_x @ S_y)``."""
    a = (x - x.mean(0)) / np.sqrt(len(x) - 1)
    b = (y - y.mean(0)) / np.sqrt(len(y) - 1)
    if min(len(x), len(y)) < x.shape[1]:
        return float(np.linalg.svd(a @ b.T, compute_uv=False).sum())
    w, v = np.linalg.eigh(a.T @ a)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root @ (b.T @ b) @ root), 0, None)).sum())


def frechet_distance(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to features ``x [m, d]`` and ``y [n, d]``:
    ``|mu_x - mu_y|^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2))`` with unbiased covariances
    (as pytorch-fid and torch-fidelity; :func:`trace_sqrt_product`), float64, clipped at 0."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) < 2 or len(y) < 2 or x.ndim != 2 or y.shape[1:] != x.shape[1:]:
        raise ValueError("FID needs two [N >= 2, d] feature sets of one width")
    diff = x.mean(0) - y.mean(0)
    traces = x.var(0, ddof=1).sum() + y.var(0, ddof=1).sum()
    return float(max(diff @ diff + traces - 2 * trace_sqrt_product(x, y), 0.0))


# --------------------------------------------------------------------------- the params
def check_input(cfg: Evaluate, where: str) -> None:
    """Set weights must exist, and ``evaluate.inputs.inception`` (the evaluate stage's DVC dep)
    must be the file read: the weights when set, else the stand-in :data:`NOTHING` (no needless
    re-runs)."""
    weights, declared = cfg.inception_weights, cfg.inputs.inception
    if weights and not Path(weights).is_file():
        raise UserError(f"param '{WEIGHTS_PARAM}': {weights} not found; it must be {WHERE_TO_GET}")
    if weights and Path(declared) != Path(weights):
        raise UserError(f"{where}: {WEIGHTS_PARAM} reads {weights}; set {INPUT_PARAM} to it "
                        f"(DVC re-runs evaluate only when a declared input changes)")
    if not weights and Path(declared) != Path(NOTHING):
        raise UserError(f"{where}: {WEIGHTS_PARAM} is off, so {declared} is not read; set {INPUT_PARAM} "
                        f"to {NOTHING}")


# --------------------------------------------------------------------------- the metrics
def _kid(a: torch.Tensor, b: torch.Tensor, subsets: int, subset_size: int, seed: int) -> dict:
    mean, std = kid(a, b, subsets, subset_size, seed)
    return {"mean": mean, "std": std, "x100": 100 * mean, "subsets": subsets,
            "subset_size": min(subset_size, len(a), len(b))}


def inception_scores(fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor, subsets: int,
                     subset_size: int, seed: int) -> dict:
    """The ``inception`` entry from pool features of the translations ``fake``, the real
    target-domain images ``real`` and the translations' sources ``source`` (see the module doc)."""
    to_target = _kid(fake, real, subsets, subset_size, seed)
    to_source = _kid(fake, source, subsets, subset_size, seed)
    return {
        "computed": True,
        "kid": {**to_target, "n_fake": len(fake), "n_real": len(real)},
        "fid": {"value": frechet_distance(fake, real), "n_fake": len(fake), "n_real": len(real)},
        "mean_kid_ugatit": {
            "mean": (to_target["mean"] + to_source["mean"]) / 2,
            "std": (to_target["std"] + to_source["std"]) / 2,
            "x100": (to_target["x100"] + to_source["x100"]) / 2,
            "kid_to_target": to_target["mean"], "kid_to_source": to_source["mean"],
            "n_fake": len(fake), "n_real": len(real), "n_source": len(source),
            "averages": "KID(translations, real characters) and KID(translations, their human sources); "
                        "photo -> character only (U-GAT-IT's mean_kernel_inception_distance)"},
    }


def inception_metrics(cfg: Evaluate, fake: torch.Tensor, real: torch.Tensor, source: torch.Tensor,
                      seed: int, device: torch.device | str = "cpu") -> dict:
    """The ``inception`` entry of the eval JSON for uint8 translations ``fake``, real character
    test images ``real`` and the human test sources ``source``; without weights
    (``evaluate.inception_weights: ''``) only ``{computed: false, reason}``. The caller checks
    the params with :func:`check_input` first."""
    if not cfg.inception_weights:
        return {"computed": False,
                "reason": f"{WEIGHTS_PARAM} is '' (off): no local FID Inception weights; set it to {WHERE_TO_GET}"}
    net = load_inception(cfg.inception_weights, device)
    feats = [inception_features(net, x, device) for x in (fake, real, source)]
    out = inception_scores(*feats, cfg.kid_subsets, cfg.inception_kid_subset_size, seed)
    return {**out, "weights": str(cfg.inception_weights)}
