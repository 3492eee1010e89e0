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

import copy

import contextlib
import hashlib
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from face2anime.core.io import (
    rel,
    save_csv,
    save_image,
    torch_load,
    torch_save,
    write_json,
)
from face2anime.core.live import open_live
from face2anime.core.params import Params, UserError
from face2anime.core.runtime import (
    pick_device,
    resolve_precision,
    seed_everything,
)
from face2anime.data.align import AlignConfig
from face2anime.data.images import (
    subset_size,
    RESIZED_DIR,
    ImageFiles,
    gather_rows,
    load_images,
    read_manifest,
    rows,
    to_model,
    to_pil,
)
from face2anime.gan import augment, dcam, distributed
from face2anime.gan.augment import parse_policy
from face2anime.gan.monitor import Probe, RunMonitor, make_probe, validate
from face2anime.gan.speed import (
    Compiled,
    compile_cache,
    device_budget,
    place,
    set_threads,
    take,
)
from face2anime.models.networks import (
    ATTENTION_MODES,
    UPSAMPLES,
    Discriminator,
    Generator,
    init_weights,
)

MODEL_ROOT = Path("models/cyclegan")
LIVE_ROOT = Path("metrics/cyclegan")
CKPT_ROOT = Path("checkpoints/cyclegan")
CAM_DIR = Path("data/cam")
CLASSIFIER_DIR = Path("models/classifier")
SELECT_CSV = Path("data/select/selected.csv")
SUBSETS = ("random", "selected")
ADAM_IMPLS = ("default", "foreach", "fused")
D_CAMS = ("source", "self", "none")
SNAPSHOTS = ("last", "best")
N_SAMPLES = 4          # images per domain in each sample picture
CKPT_VERSION = 3
#: metrics logged to dvclive every ``log_every`` steps (plots/metrics/<name>.tsv, x = step)
LOGGED = ("loss_G_adv", "loss_D", "loss_cyc", "loss_idt", "d_acc_real", "d_acc_fake", "lr", "images_per_s")
#: logged at each validation (every ``val_every`` steps; see :mod:`face2anime.gan.monitor`)
VAL_LOGGED = ("val_realism", "val_cycle", "val_diversity", "val_score")


# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (its hash keys the resume checkpoint)."""

    method: str
    subset: str
    attention: bool
    seed: int
    max_images: int
    ngf: int = 32
    ndf: int = 32
    n_res: int = 4
    epochs: int = 5
    steps_per_epoch: int = 100
    batch_size: int = 4
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_epochs: int = 2
    lambda_cyc: float = 10.0
    lambda_idt: float = 0.5
    gan_loss: str = "vanilla"
    pool_size: int = 50
    ema: float = 0.0
    attention_mode: str = "residual"
    upsample: str = "transpose"
    precision: str = "auto"
    sample_every: int = 1
    log_every: int = 25
    # speed (issue 12); the defaults are the exact mode: bit-identical to the plain eager loop
    compile: bool = False        # torch.compile (inductor) the G and D loss computations
    channels_last: bool = False  # NHWC activations/weights (oneDNN's fast bf16 kernels)
    adam: str = "default"        # default (torch's choice: for-loop on CPU) | foreach | fused
    fuse_passes: bool = False    # one call per network where inputs share its weights
    threads: int = 0             # intra-op threads (0 = torch's default: all cores)
    nproc: int = 1               # processes (DDP) that dvc repro launches with torchrun (issue 15)
    preload_mb: int = 256        # training images up to this size are loaded into memory, larger sets stream
    loader_workers: int = 2      # DataLoader processes that read streamed images
    # small data and monitoring (issue 11), the discriminator's CAM (issue 13)
    diffaug: str = ""            # DiffAugment policies for D's inputs: "" or e.g. "color,translation,cutout"
    d_cam: str = "source"        # source | self | none: the CAM multiplied into D's features (attention methods)
    snapshot: str = "last"       # last | best: which EMA generators are saved (best = lowest validation score)
    val_every: int = 200         # steps between validations (0 = off)
    share: float = 1.0           # select.share: the human subset is at most this share of the train images

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch


def method_names(params: Params) -> list[str]:
    """The configured method names (``cyclegan.methods`` keys), in params order."""
    return list(params.dict("cyclegan.methods"))


#: what a method entry's ``inputs`` (its DVC deps in dvc.yaml) must name for what it reads
SUBSET_INPUT = {"selected": str(SELECT_CSV)}
CAM_INPUT = str(CAM_DIR)


def check_inputs(method: str, entry: dict, where: str) -> None:
    """A method's declared ``inputs`` must be the files it reads, or DVC would not re-run it
    when they change (or would re-run it needlessly). Absent ``inputs`` is allowed (tests)."""
    inputs = entry.get("inputs")
    if inputs is None:
        return
    if not isinstance(inputs, dict) or not {"subset", "cams"} <= set(inputs):
        raise UserError(f"{where}.inputs must be a mapping with keys subset and cams (DVC deps), got {inputs!r}")
    need_subset = SUBSET_INPUT.get(entry["subset"])
    if need_subset is not None and inputs["subset"] != need_subset:
        raise UserError(f"{where}: subset {entry['subset']} reads {need_subset}; set inputs.subset to it")
    if need_subset is None and inputs["subset"] == str(SELECT_CSV):
        raise UserError(f"{where}: subset random must not depend on {SELECT_CSV} (the selection would "
                        f"re-train it); set inputs.subset to data/resized/manifest.csv")
    if entry["attention"] and inputs["cams"] != CAM_INPUT:
        raise UserError(f"{where}: attention reads {CAM_INPUT}; set inputs.cams to it")
    if not entry["attention"] and inputs["cams"] == CAM_INPUT:
        raise UserError(f"{where}: a method without attention must not depend on {CAM_INPUT}; "
                        f"set inputs.cams to data/resized/manifest.csv")


#: what an attention method with ``d_cam: self`` reads (the guiding classifier); its DVC dep
CLASSIFIER_INPUT = "models/classifier/classifier.pt"


def check_classifier_input(cfg: TrainConfig, entry: dict, where: str) -> None:
    """``d_cam: self`` makes attention methods read the classifier: their ``inputs.classifier``
    (a DVC dep) must name it; a method without attention must not (needless re-runs)."""
    inputs = entry.get("inputs")
    if not isinstance(inputs, dict):
        return
    declared = inputs.get("classifier")
    if cfg.attention and cfg.d_cam == "self" and declared != CLASSIFIER_INPUT:
        raise UserError(f"{where}: cyclegan.train.d_cam: self reads {CLASSIFIER_INPUT}; set inputs.classifier to it")
    if not cfg.attention and declared == CLASSIFIER_INPUT:
        raise UserError(f"{where}: a method without attention never reads {CLASSIFIER_INPUT}; set "
                        f"inputs.classifier to data/resized/manifest.csv")


def with_train_overrides(params: Params, entry: dict, where: str) -> Params:
    """``params`` with the method's optional ``train:`` mapping merged over ``cyclegan.train``.

    A variant that differs in one training param (for example ``train: {d_cam: self}``) is then
    one more entry of ``cyclegan.methods`` and its own DVC stage; the other methods do not re-run.
    Only keys that ``cyclegan.train`` has can be overridden (a typo is an error, not a no-op).
    """
    over = entry.get("train", {})
    if not isinstance(over, dict):
        raise UserError(f"{where}.train must be a mapping of cyclegan.train keys, got {over!r}")
    if not over:
        return params
    base = params.dict("cyclegan.train")
    unknown = sorted(set(over) - set(base))
    if unknown:
        raise UserError(f"{where}.train: {', '.join(unknown)} not in cyclegan.train "
                        f"(known: {', '.join(base)})")
    data = copy.deepcopy(params.data)
    data["cyclegan"]["train"].update(over)
    return Params(data, f"{params.source} ({where.split(': ', 1)[-1]}.train over cyclegan.train)")


def training_data(params: Params) -> dict[str, Any]:
    """Where the training images came from (``download.source``, photo-like rendering) and how
    photos were cropped (``resize.crop``, ``resize.align``), kept in config.json so that
    ``convert`` crops a user's photo the same way and warns when a synthetic-data model meets
    a real photo."""
    source = params.raw("download.source", None)   # None: unknown (e.g. a library call without it)
    crop = params.raw("resize.crop", None)
    return {"source": source,
            "photo_like": source == "synthetic" and params.bool("download.synthetic.photo_like", False),
            "crop": crop, "align": AlignConfig.from_params(params).to_dict() if crop == "align" else None}


def read_config(method: str, params: Params) -> TrainConfig:
    """Validate the params of ``method``; unknown method or a bad entry -> UserError."""
    # Only this method's entry is read (the stage declares cyclegan.methods.METHOD as its param);
    # the list of all methods is read only to word the error for an unknown one.
    entry = params.raw(f"cyclegan.methods.{method}", None)
    if entry is None:
        methods = params.raw("cyclegan.methods", {})
        raise UserError(f"unknown cyclegan method {method!r}; configured methods: {', '.join(methods) or '(none)'} "
                        f"(cyclegan.methods in {params.source})")
    where = f"{params.source}: cyclegan.methods.{method}"
    # other keys (e.g. per-method dependency paths that dvc.yaml interpolates) are ignored here
    if not isinstance(entry, dict) or not {"subset", "attention"} <= set(entry):
        raise UserError(f"{where} must be a mapping with the keys subset ({'|'.join(SUBSETS)}) and "
                        f"attention (true|false), got {entry!r}")
    if entry["subset"] not in SUBSETS:
        raise UserError(f"{where}.subset must be one of {', '.join(SUBSETS)}, got {entry['subset']!r}")
    if not isinstance(entry["attention"], bool):
        raise UserError(f"{where}.attention must be true or false, got {entry['attention']!r}")
    check_inputs(method, entry, where)
    params = with_train_overrides(params, entry, where)
    c = "cyclegan.train."
    D = TrainConfig(method, "random", False, 0, 1)  # the defaults of the optional keys
    cfg = TrainConfig(
        method=method, subset=entry["subset"], attention=entry["attention"],
        seed=params.int("seed", lo=0) + params.int(c + "seed", 0, lo=0),
        max_images=params.int("select.max_images", lo=1),
        ngf=params.int(c + "ngf", lo=1), ndf=params.int(c + "ndf", lo=1), n_res=params.int(c + "n_res", lo=0),
        epochs=params.int(c + "epochs", lo=1), steps_per_epoch=params.int(c + "steps_per_epoch", lo=1),
        batch_size=params.int(c + "batch_size", lo=1),
        lr=params.float(c + "lr", lo=0), beta1=params.float(c + "beta1", lo=0, hi=1),
        beta2=params.float(c + "beta2", lo=0, hi=1),
        lr_decay_epochs=params.int(c + "lr_decay_epochs", D.lr_decay_epochs, lo=0),
        lambda_cyc=params.float(c + "lambda_cyc", lo=0), lambda_idt=params.float(c + "lambda_idt", D.lambda_idt, lo=0),
        gan_loss=params.str(c + "gan_loss", D.gan_loss, choices=("vanilla", "lsgan")),
        pool_size=params.int(c + "pool_size", D.pool_size, lo=0),
        ema=params.float(c + "ema", D.ema, lo=0.0, hi=0.9999),
        attention_mode=params.str(c + "attention_mode", D.attention_mode, choices=ATTENTION_MODES),
        upsample=params.str(c + "upsample", D.upsample, choices=UPSAMPLES),
        precision=params.str("precision", D.precision, choices=("auto", "fp32", "bf16")),
        sample_every=params.int(c + "sample_every", D.sample_every, lo=1),
        log_every=params.int(c + "log_every", D.log_every, lo=1),
        compile=params.bool(c + "compile", D.compile),
        channels_last=params.bool(c + "channels_last", D.channels_last),
        adam=params.str(c + "adam", D.adam, choices=ADAM_IMPLS),
        fuse_passes=params.bool(c + "fuse_passes", D.fuse_passes),
        threads=params.int(c + "threads", D.threads, lo=0),
        nproc=params.int(c + "nproc", D.nproc, lo=1),
        preload_mb=params.int(c + "preload_mb", D.preload_mb, lo=0),
        loader_workers=params.int(c + "loader_workers", D.loader_workers, lo=0),
        diffaug=params.str(c + "diffaug", D.diffaug),
        d_cam=params.str(c + "d_cam", D.d_cam, choices=D_CAMS),
        snapshot=params.str(c + "snapshot", D.snapshot, choices=SNAPSHOTS),
        val_every=params.int(c + "val_every", D.val_every, lo=0),
        share=params.float("select.share", lo=0.0, hi=1.0),
    )
    try:
        cfg = replace(cfg, diffaug=",".join(parse_policy(cfg.diffaug)))
    except ValueError as e:
        raise UserError(f"{params.source}: cyclegan.train.diffaug: {e}") from None
    check_classifier_input(cfg, entry, where)
    if cfg.snapshot == "best" and cfg.val_every == 0:
        raise UserError(f"{params.source}: cyclegan.train.snapshot: best needs validation "
                        f"(cyclegan.train.val_every > 0)")
    if cfg.lr_decay_epochs > cfg.epochs:
        raise UserError(f"{params.source}: cyclegan.train.lr_decay_epochs ({cfg.lr_decay_epochs}) must be <= "
                        f"cyclegan.train.epochs ({cfg.epochs})")
    return cfg


# --------------------------------------------------------------------------- data
@dataclass
class DomainData:
    """The training images of one domain: ``ids`` (n), ``images`` uint8 ``[n, 3, H, W]``,
    ``cams`` float32 ``[n, 1, h, w]`` in [0, 1] or None (non-attention methods).

    ``dcams``: the CAMs the discriminator multiplies in, resized once (bilinear, as
    :func:`~face2anime.models.networks.cam_weight` would on every call) to D's feature size
    ``[n, 1, d, d]`` (see :func:`d_feature_size`); set by :func:`prepare_dcams`."""

    ids: list[str]
    images: torch.Tensor | ImageFiles   # ImageFiles: streamed from disk (cyclegan.train.preload_mb)
    cams: torch.Tensor | None
    dcams: torch.Tensor | None = None


def d_feature_size(size: int) -> int:
    """Spatial size of the PatchGAN's conv3 output (where D's CAM is applied) for ``size`` px:
    three (4, stride 2, pad 1) convs halve it (floor), the (4, stride 1, pad 1) conv takes one off."""
    return size // 2 // 2 // 2 - 1


def resize_cams(cams: torch.Tensor, size: int) -> torch.Tensor:
    """CAMs ``[n, 1, h, w]`` -> ``[n, 1, size, size]``: bilinear, ``align_corners=False`` (fp32)."""
    cams = cams.float()
    if tuple(cams.shape[-2:]) == (size, size):
        return cams
    return F.interpolate(cams, size=(size, size), mode="bilinear", align_corners=False)


def prepare_dcams(d: DomainData, image_size: int) -> None:
    """Precompute ``d.dcams`` (no-op without CAMs): the discriminator's CAM resizing done once."""
    if d.cams is not None:
        d.dcams = resize_cams(d.cams, d_feature_size(image_size))


def random_subset(ids: list[str], k: int, seed: int) -> list[str]:
    """A seeded random subset of ``min(k, len(ids))`` ids, independent of the input order."""
    pool = sorted(ids)
    order = np.random.default_rng([seed, 20240601]).permutation(len(pool))
    return [pool[i] for i in order[:k]]


def read_selected(select_csv: Path, train_ids: set[str], k: int) -> list[str]:
    """The CAM-selected ids (rank order, first ``k``); must be non-empty human train ids."""
    if not select_csv.is_file():
        raise UserError(f"{select_csv} not found: run the select stage first (dvc repro select)")
    df = pd.read_csv(select_csv, dtype={"id": str})
    if "id" not in df.columns:
        raise UserError(f"{select_csv} has no 'id' column")
    ids = list(dict.fromkeys(df["id"].dropna()))[:k]
    if not ids:
        raise UserError(f"{select_csv} selects no human images: relax select.threshold / select.* in params.yaml")
    unknown = [i for i in ids if i not in train_ids]
    if unknown:
        raise UserError(f"{select_csv}: {len(unknown)} ids are not human train images (e.g. {unknown[:3]}); "
                        "re-run the select stage (dvc repro select)")
    return ids


def load_cams(cam_dir: Path, domain: str) -> dict[str, np.ndarray]:
    """``{id: cam [h, w] float32}`` from ``cam_dir/{domain}.npz``."""
    path = cam_dir / f"{domain}.npz"
    if not path.is_file():
        raise UserError(f"{path} not found: run the cam stage first (dvc repro cam)")
    with np.load(path, allow_pickle=False) as z:
        ids, cams = z["ids"], z["cams"]
    if cams.ndim != 3 or len(ids) != len(cams):
        raise UserError(f"{path}: expected ids [N] and cams [N, h, w], got {ids.shape} and {cams.shape}")
    return {str(i): c for i, c in zip(ids, cams)}   # as stored (float16): no float32 copy of every CAM


def domain_data(manifest: pd.DataFrame, ids: list[str], data_dir: Path,
                cams: dict[str, np.ndarray] | None, domain: str, preload_mb: int = 1 << 40) -> DomainData:
    """The images (and CAMs) of ``ids`` (in that order) of ``domain``: loaded into one uint8
    tensor when they take at most ``preload_mb`` MiB, else an :class:`ImageFiles` set read
    from disk during training (the CAMs then stay float16, as stored)."""
    by_id = rows(manifest, domain, "train").set_index("id")
    files = by_id.loc[ids, "file"].tolist()
    missing = [f for f in files if not (data_dir / f).is_file()]
    if missing:
        raise UserError(f"{len(missing)} {domain} training images are missing (e.g. {data_dir / missing[0]}); "
                        "re-run the resize stage")
    try:
        images: torch.Tensor | ImageFiles = ImageFiles(files, data_dir)
        if np.prod(images.shape) <= preload_mb * 2 ** 20:
            images = load_images(files, data_dir)
    except ValueError as e:  # np.stack of differently sized images
        raise UserError(f"{domain} training images in {data_dir} do not share one size ({e}); re-run resize") from None
    cam_t = None
    if cams is not None:
        lacking = [i for i in ids if i not in cams]
        if lacking:
            raise UserError(f"no CAM for {len(lacking)} {domain} training images (e.g. {lacking[0]}); "
                            "re-run the cam stage (dvc repro cam)")
        arr = np.stack([cams[i] for i in ids])
        cam_t = torch.from_numpy(np.clip(arr, 0.0, 1.0)).unsqueeze(1)
        cam_t = cam_t.half() if isinstance(images, ImageFiles) else cam_t.float()
    return DomainData(ids, images, cam_t)


def load_training_data(cfg: TrainConfig, data_dir: Path, cam_dir: Path,
                       select_csv: Path) -> tuple[DomainData, DomainData]:
    """(human X, character Y) training data of ``cfg.method``.

    ``subset: random`` never touches ``select_csv``; non-attention methods never touch ``cam_dir``.
    """
    manifest = read_manifest(data_dir)
    human_ids = rows(manifest, "human", "train")["id"].tolist()
    char_ids = rows(manifest, "character", "train")["id"].tolist()
    if not human_ids or not char_ids:
        raise UserError(f"{data_dir / 'manifest.csv'} has {len(human_ids)} human and {len(char_ids)} character "
                        "train images; both are needed")
    cap = subset_size(len(human_ids), cfg.max_images, cfg.share)
    if cfg.subset == "random":
        x_ids = random_subset(human_ids, cap, cfg.seed)
    else:
        x_ids = read_selected(select_csv, set(human_ids), cap)
    cams_x = load_cams(cam_dir, "human") if cfg.attention else None
    cams_y = load_cams(cam_dir, "character") if cfg.attention else None
    x = domain_data(manifest, x_ids, data_dir, cams_x, "human", cfg.preload_mb)
    y = domain_data(manifest, char_ids, data_dir, cams_y, "character", cfg.preload_mb)
    size = tuple(x.images.shape[-2:])
    if tuple(y.images.shape[-2:]) != size or size[0] != size[1] or size[0] % 4 or size[0] < 24:
        raise UserError(f"training images must be square, the same size in both domains, divisible by 4 and "
                        f">= 24 px (resize.size); got human {tuple(x.images.shape[-2:])}, "
                        f"character {tuple(y.images.shape[-2:])}")
    return x, y


class IndexStream:
    """An endless stream of indices into ``range(n)``: pass ``p`` is a permutation seeded by
    ``(seed, stream, p)``. Its whole state is the position ``pos`` (an int), so a resumed run
    continues the exact same sequence."""

    def __init__(self, n: int, seed: int, stream: int, pos: int = 0):
        self.n, self.seed, self.stream, self.pos = n, seed, stream, pos
        self._cache: tuple[int, torch.Tensor] | None = None

    def _perm(self, p: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != p:
            g = torch.Generator().manual_seed(int.from_bytes(
                hashlib.sha256(f"{self.seed}/{self.stream}/{p}".encode()).digest()[:8], "little") >> 1)
            self._cache = (p, torch.randperm(self.n, generator=g))
        return self._cache[1]

    def take(self, k: int) -> torch.Tensor:
        """The next ``k`` indices (int64 ``[k]``)."""
        out = [int(self._perm(i // self.n)[i % self.n]) for i in range(self.pos, self.pos + k)]
        self.pos += k
        return torch.tensor(out, dtype=torch.long)


# --------------------------------------------------------------------------- model & step
class ImagePool:
    """CycleGAN's history of generated images (``size`` 0 = off); each image keeps its CAM.

    ``query(images [B,3,H,W], cams [B,1,h,w] | None)`` returns a batch of the same shape: while
    the pool fills, the inputs; then, per image, with probability 1/2 a random stored image
    (replaced by the new one), else the new image. Randomness from its own seeded generator.

    Storage is one preallocated tensor per kind (no per-image tensors): a query draws its
    decisions first (the same draws, in the same order, as the classic per-image loop), then
    moves the data with one gather and one scatter.
    """

    def __init__(self, size: int, seed: int):
        self.size = size
        self.n = 0
        self.images: torch.Tensor | None = None
        self.cams: torch.Tensor | None = None
        self.gen = torch.Generator().manual_seed(seed)

    def _plan(self, b: int) -> tuple[list[int], list[tuple[int, int]]]:
        """(indices of new images to append, [(batch index, pool slot) swaps]) for a batch of ``b``."""
        append, swap = [], []
        n = self.n
        for i in range(b):
            if n < self.size:
                append.append(i)
                n += 1
            elif float(torch.rand((), generator=self.gen)) > 0.5:
                swap.append((i, int(torch.randint(0, self.size, (), generator=self.gen))))
        return append, swap

    def query(self, images: torch.Tensor, cams: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.size == 0:
            return images, cams
        images = images.detach()
        append, swap = self._plan(images.shape[0])
        if self.images is None:
            self.images = images.new_empty((self.size, *images.shape[1:]))
            self.cams = None if cams is None else cams.new_empty((self.size, *cams.shape[1:]))
        if append:  # appends come first in the batch (the pool fills up), so a swap may pick them
            a = torch.tensor(append, device=images.device)
            self.images[self.n:self.n + len(append)] = images[a]
            if cams is not None and self.cams is not None:
                self.cams[self.n:self.n + len(append)] = cams[a]
            self.n += len(append)
        out_i, out_c = images, cams
        if swap:
            rows = torch.tensor([i for i, _ in swap], device=images.device)
            slots = torch.tensor([j for _, j in swap], device=images.device)
            # a slot drawn twice in one batch: the later image sees the earlier one's swap (as the loop did)
            out_i, out_c = images.clone(), (None if cams is None else cams.clone())
            if len(set(slots.tolist())) == len(swap):
                out_i[rows] = self.images[slots]
                self.images[slots] = images[rows]
                if cams is not None and self.cams is not None and out_c is not None:
                    out_c[rows] = self.cams[slots]
                    self.cams[slots] = cams[rows]
            else:
                for i, j in swap:
                    out_i[i] = self.images[j]
                    self.images[j] = images[i]
                    if cams is not None and self.cams is not None and out_c is not None:
                        out_c[i] = self.cams[j]
                        self.cams[j] = cams[i]
        return out_i, out_c

    def state_dict(self) -> dict[str, Any]:
        return {"images": None if self.images is None else self.images[:self.n].cpu(),
                "cams": None if self.cams is None else self.cams[:self.n].cpu(),
                "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        imgs, cams = state["images"], state["cams"]
        self.n = 0 if imgs is None else len(imgs)
        self.images = self.cams = None
        if imgs is not None:
            self.images = imgs.new_empty((self.size, *imgs.shape[1:])).to(device)
            self.images[:self.n] = imgs.to(device)
            if cams is not None:
                self.cams = cams.new_empty((self.size, *cams.shape[1:])).to(device)
                self.cams[:self.n] = cams.to(device)
        self.gen.set_state(state["gen"])


def gan_loss(logits: torch.Tensor, real: bool, kind: str) -> torch.Tensor:
    """Vanilla (BCE-with-logits) or LSGAN (MSE) loss of D's patch logits vs the label, in fp32."""
    logits = logits.float()
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    if kind == "lsgan":
        return F.mse_loss(logits, target)
    return F.binary_cross_entropy_with_logits(logits, target)


#: class indices of the guiding classifier (0 = human = domain X, 1 = character = Y)
LABEL_X, LABEL_Y = 0, 1
#: the losses :meth:`CycleGAN.step` returns, in order (fp32 tensor ``[4]``)
LOSSES = ("loss_G_adv", "loss_D", "loss_cyc", "loss_idt")
#: the discriminator statistics it returns (fp32 tensor ``[2]``): share of real / fake patches D gets right
D_STATS = ("d_acc_real", "d_acc_fake")


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    return None if a is None or b is None else torch.cat([a, b])


class CycleGAN:
    """Two generators, two discriminators, their optimisers, schedulers and image pools.

    ``step(x, y, cx, cy, dcx, dcy)`` runs one CycleGAN optimisation step on a human batch ``x``
    and a character batch ``y`` (float ``[B, 3, H, W]`` in [-1, 1]) with their CAMs for the
    generators (``[B, 1, h, w]``) and for the discriminators (``[B, 1, d, d]``, see
    :func:`d_feature_size`), or None. It returns the losses (:data:`LOSSES`) and D's accuracies
    (:data:`D_STATS`) as detached fp32 tensors, without reading them on the host (no sync).

    With ``cfg.ema > 0`` it also keeps an exponential moving average of both generators'
    weights (``w_ema <- ema * w_ema + (1 - ema) * w`` after every step); :meth:`generators`
    returns those averaged copies, which are what gets saved and sampled. Averaging over the
    last ~1/(1-ema) steps damps the step-to-step oscillation of adversarial training.

    Speed options (``cfg``): ``compile`` runs the G and D loss computations as inductor graphs
    (:class:`~face2anime.gan.speed.Compiled`, eager fallback), ``channels_last`` keeps weights
    and activations NHWC, ``adam`` picks the optimiser implementation, ``fuse_passes`` runs
    each network once per phase on the concatenated inputs that share its weights
    (``G_XY([x; y])`` gives the translation and the identity image; D sees real and pooled
    fake in one call; instance norm is per image, so this is the same function).
    """

    def __init__(self, cfg: TrainConfig, device: torch.device, notify: Callable[[str], None] | None = None,
                 rank: int = 0):
        self.cfg, self.device = cfg, device
        self._bf16 = resolve_precision(device, cfg.precision) == "bf16"
        self.notify = notify or (lambda msg: print(msg, flush=True))
        gen = torch.Generator().manual_seed(cfg.seed)
        self.G_XY = init_weights(Generator(cfg.ngf, cfg.n_res, cfg.attention_mode, cfg.upsample), gen).to(device)
        self.G_YX = init_weights(Generator(cfg.ngf, cfg.n_res, cfg.attention_mode, cfg.upsample), gen).to(device)
        self.D_X = init_weights(Discriminator(cfg.ndf, cfg.attention_mode), gen).to(device)
        self.D_Y = init_weights(Discriminator(cfg.ndf, cfg.attention_mode), gen).to(device)
        if cfg.channels_last:
            for net in self.nets().values():
                net.to(memory_format=torch.channels_last)
        betas = (cfg.beta1, cfg.beta2)
        impl = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}[cfg.adam]
        self.opt_G = torch.optim.Adam(list(self.G_XY.parameters()) + list(self.G_YX.parameters()), cfg.lr, betas,
                                      **impl)
        self.opt_D = torch.optim.Adam(list(self.D_X.parameters()) + list(self.D_Y.parameters()), cfg.lr, betas,
                                      **impl)
        total, decay = cfg.total_steps, cfg.lr_decay_epochs * cfg.steps_per_epoch
        start = total - decay

        def factor(step: int) -> float:  # linear decay to 0 over the last `decay` steps
            return 1.0 if decay == 0 or step < start else max(0.0, 1.0 - (step - start) / decay)

        self.sched_G = torch.optim.lr_scheduler.LambdaLR(self.opt_G, factor)
        self.sched_D = torch.optim.lr_scheduler.LambdaLR(self.opt_D, factor)
        rs = 7919 * rank                                        # other ranks: their own pool and augmentation draws
        self.pool_X = ImagePool(cfg.pool_size, cfg.seed + 1 + rs)  # fakes G_YX(y) for D_X, with D's cam for them
        self.pool_Y = ImagePool(cfg.pool_size, cfg.seed + 2 + rs)  # fakes G_XY(x) for D_Y, with D's cam for them
        self.ema: dict[str, AveragedModel] = {}
        if cfg.ema > 0:
            for k, g in (("G_XY", self.G_XY), ("G_YX", self.G_YX)):
                avg = AveragedModel(g, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema)).requires_grad_(False)
                avg.update_parameters(g)  # the first update copies: the average starts at the initial weights
                self.ema[k] = avg
        self.policy = parse_policy(cfg.diffaug)
        self.geo_aug = augment.geometric(self.policy)
        self.aug_gen = torch.Generator().manual_seed(cfg.seed + 3 + rs)   # DiffAugment's draws (own stream)
        #: the CAM D multiplies in: none without attention; with d_cam: self, cam_net must be set
        self.d_cam = cfg.d_cam if cfg.attention else "none"
        self.cam_net: nn.Module | None = None
        self.image_size = 0                                            # set by the first step
        self.g_fn = Compiled(self._g_loss, "the generator step", cfg.compile, self.notify)
        self.d_fn = Compiled(self._d_loss, "the discriminator step", cfg.compile, self.notify)
        self._ddp: dict[Compiled, nn.Module] = {}   # set by distribute() when several processes train

    def distribute(self, world: "distributed.World") -> None:
        """Several processes: DDP over each phase (G's loss for the generators, D's for the
        discriminators); call after loading a checkpoint (DDP starts from rank 0's weights)."""
        if world.distributed:
            self._ddp = {self.g_fn: distributed.wrap({"G_XY": self.G_XY, "G_YX": self.G_YX}, self.g_fn, self.device),
                         self.d_fn: distributed.wrap({"D_X": self.D_X, "D_Y": self.D_Y}, self.d_fn, self.device)}

    def compile_mode(self) -> str:
        """``inductor`` when both loss computations run compiled, ``eager`` otherwise."""
        return "inductor" if self.g_fn.mode == self.d_fn.mode == "inductor" else "eager"

    def compile_seconds(self) -> float:
        """Wall time of the compiled functions' first two calls (compile + warm-up), this process."""
        return self.g_fn.seconds + self.d_fn.seconds

    def nets(self) -> dict[str, nn.Module]:
        return {"G_XY": self.G_XY, "G_YX": self.G_YX, "D_X": self.D_X, "D_Y": self.D_Y}

    def generators(self) -> dict[str, nn.Module]:
        """The generators to save and sample: the EMA copies when ``cfg.ema > 0``, else the trained ones."""
        if self.ema:
            return {k: avg.module for k, avg in self.ema.items()}
        return {"G_XY": self.G_XY, "G_YX": self.G_YX}

    def _update_ema(self) -> None:
        for k, avg in self.ema.items():
            avg.update_parameters(self.nets()[k])

    def _ac(self):
        """bf16 autocast when the precision resolves to bf16 (resolved once: traceable by dynamo)."""
        return torch.autocast(self.device.type, torch.bfloat16, enabled=self._bf16)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in the networks' memory format (NHWC with ``channels_last``)."""
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    # ---- the two loss computations (pure: the compiled graphs) ----
    def set_cam_net(self, net: nn.Module) -> None:
        """The frozen guiding classifier for ``d_cam: self`` (eval mode, no gradients)."""
        self.cam_net = net.to(self.device).eval().requires_grad_(False)
        if self.cfg.channels_last:
            self.cam_net.to(memory_format=torch.channels_last)

    def _d_view(self, img: torch.Tensor, cam: torch.Tensor | None, aug: dict[str, torch.Tensor] | None,
                target: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(image, CAM) as a discriminator of class ``target`` sees them: DiffAugment applied to
        the image, the CAM per ``d_cam`` (``source``: the given CAM, moved like the image;
        ``self``: the given one, or when None the classifier's CAM of the augmented image;
        ``none``: no CAM)."""
        if aug is not None:
            img = augment.apply(img, aug)
        if self.d_cam == "none":
            return img, None
        if self.d_cam == "self":
            if cam is None:
                assert self.cam_net is not None, "d_cam: self needs set_cam_net()"
                cam = dcam.self_cam(self.cam_net, img, target, d_feature_size(self.image_size))
            return img, cam
        if cam is not None and aug is not None and self.geo_aug:
            cam = augment.warp_cam(cam, aug, self.image_size, d_feature_size(self.image_size))
        return img, cam

    def _g_loss(self, x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor | None, cy: torch.Tensor | None,
                dcx: torch.Tensor | None, dcy: torch.Tensor | None, aug_y: dict[str, torch.Tensor] | None = None,
                aug_x: dict[str, torch.Tensor] | None = None):
        """Generator loss with D frozen -> (loss_G, fake_y, fake_x (detached fp32), [adv, cyc, idt],
        the CAMs to store with fake_y and fake_x in the pools (as given; self mode: as computed)).

        ``dcx``/``dcy``: the CAM D gets with each fake (source mode: the source's; self mode
        without augmentation: None, computed here)."""
        cfg = self.cfg
        idt_y = idt_x = None
        with self._ac():
            if cfg.fuse_passes:
                b = x.shape[0]
                if cfg.lambda_idt > 0:
                    fake_y, idt_y = self.G_XY(torch.cat([x, y]), _cat(cx, cy)).split(b)
                    fake_x, idt_x = self.G_YX(torch.cat([y, x]), _cat(cy, cx)).split(b)
                else:
                    fake_y, fake_x = self.G_XY(x, cx), self.G_YX(y, cy)
                rec_x = self.G_YX(fake_y, cx)
                rec_y = self.G_XY(fake_x, cy)
                (vy, cvy), (vx, cvx) = self._d_view(fake_y, dcx, aug_y, LABEL_Y), self._d_view(fake_x, dcy, aug_x, LABEL_X)
                d_fy, d_fx = self.D_Y(vy, cvy), self.D_X(vx, cvx)
            else:  # the classic order (the order autograd accumulates gradients in)
                fake_y = self.G_XY(x, cx)
                rec_x = self.G_YX(fake_y, cx)
                fake_x = self.G_YX(y, cy)
                rec_y = self.G_XY(fake_x, cy)
                (vy, cvy), (vx, cvx) = self._d_view(fake_y, dcx, aug_y, LABEL_Y), self._d_view(fake_x, dcy, aug_x, LABEL_X)
                d_fy, d_fx = self.D_Y(vy, cvy), self.D_X(vx, cvx)
                if cfg.lambda_idt > 0:
                    idt_y, idt_x = self.G_XY(y, cy), self.G_YX(x, cx)
        fake_y, rec_x, fake_x, rec_y = fake_y.float(), rec_x.float(), fake_x.float(), rec_y.float()
        adv = gan_loss(d_fy, True, cfg.gan_loss) + gan_loss(d_fx, True, cfg.gan_loss)
        cyc = F.l1_loss(rec_x, x) + F.l1_loss(rec_y, y)
        if idt_y is not None and idt_x is not None:
            idt = F.l1_loss(idt_y.float(), y) + F.l1_loss(idt_x.float(), x)
        else:
            idt = torch.zeros((), device=x.device)
        loss_G = adv + cfg.lambda_cyc * cyc + cfg.lambda_idt * cfg.lambda_cyc * idt
        if self.d_cam == "self":    # the pools keep what the fakes were given: self mode, the computed CAM
            dcx, dcy = cvy, cvx
        return loss_G, fake_y.detach(), fake_x.detach(), torch.stack([adv, cyc, idt]).detach(), dcx, dcy

    def _d_loss(self, x: torch.Tensor, y: torch.Tensor, px: torch.Tensor, py: torch.Tensor,
                dcx: torch.Tensor | None, dcy: torch.Tensor | None, dpx: torch.Tensor | None,
                dpy: torch.Tensor | None, aug: list[dict[str, torch.Tensor]] | None = None):
        """Discriminator loss on reals and pooled fakes -> (loss_D, [acc real, acc fake] (detached)).

        ``aug``: DiffAugment draws for ``[y, py, x, px]`` (in that order) or None."""
        cfg = self.cfg
        a = aug or [None, None, None, None]  # type: ignore[list-item]
        with self._ac():
            if cfg.fuse_passes:
                b = y.shape[0]
                cat_aug = lambda i, j: None if aug is None else {  # noqa: E731
                    k: torch.cat([a[i][k], a[j][k]], dim=1 if k in ("shift", "cutout") else 0) for k in a[i]}
                r_y, f_y = self.D_Y(*self._d_view(torch.cat([y, py]), _cat(dcy, dpy), cat_aug(0, 1), LABEL_Y)).split(b)
                r_x, f_x = self.D_X(*self._d_view(torch.cat([x, px]), _cat(dcx, dpx), cat_aug(2, 3), LABEL_X)).split(b)
            else:
                r_y, f_y = self.D_Y(*self._d_view(y, dcy, a[0], LABEL_Y)), self.D_Y(*self._d_view(py, dpy, a[1], LABEL_Y))
                r_x, f_x = self.D_X(*self._d_view(x, dcx, a[2], LABEL_X)), self.D_X(*self._d_view(px, dpx, a[3], LABEL_X))
        loss_D = 0.5 * (gan_loss(r_y, True, cfg.gan_loss) + gan_loss(f_y, False, cfg.gan_loss)) \
            + 0.5 * (gan_loss(r_x, True, cfg.gan_loss) + gan_loss(f_x, False, cfg.gan_loss))
        with torch.no_grad():
            thr = 0.5 if cfg.gan_loss == "lsgan" else 0.0  # the decision boundary between the targets
            acc_r = 0.5 * ((r_y.float() > thr).float().mean() + (r_x.float() > thr).float().mean())
            acc_f = 0.5 * ((f_y.float() < thr).float().mean() + (f_x.float() < thr).float().mean())
        return loss_D, torch.stack([acc_r, acc_f])

    def _minimise(self, fn: Compiled, opt: torch.optim.Optimizer, *args: Any) -> tuple:
        """``fn(*args)``, backward of its loss (first output) and one optimiser step; a compiled
        backward that fails switches ``fn`` to eager and recomputes (nothing was stepped yet)."""
        call = self._ddp.get(fn, fn)      # the DDP wrapper averages the gradients over the ranks
        out = call(*args)
        opt.zero_grad(set_to_none=True)
        try:
            out[0].backward()
        except Exception as e:  # noqa: BLE001 - see Compiled: a failing fast path must not crash
            if fn.compiled is None:
                raise
            fn.fail(e)
            out = call(*args)
            opt.zero_grad(set_to_none=True)
            out[0].backward()
        opt.step()
        return out

    def step(self, x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor | None, cy: torch.Tensor | None,
             dcx: torch.Tensor | None = None, dcy: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step -> (losses ``[4]`` in :data:`LOSSES` order, D stats ``[2]``).

        ``dcx``/``dcy``: the real images' CAMs for D (:func:`prepare_dcams`); by default ``cx``/``cy``
        resized to D's feature size (``d_cam: source``) or computed (``self``)."""
        self.image_size = size = int(x.shape[-1])
        ds = d_feature_size(size)
        if self.d_cam == "source":
            if self.geo_aug:          # D's CAMs are moved with the image: start from G's resolution
                dcx, dcy = cx, cy
            else:
                dcx = resize_cams(cx, ds) if cx is not None and dcx is None else dcx
                dcy = resize_cams(cy, ds) if cy is not None and dcy is None else dcy
        elif self.d_cam == "self":
            if self.policy:           # the CAM of the augmented image, computed in the step
                dcx = dcy = None
            else:
                dcx = dcam.self_cam(self.cam_net, x, LABEL_X, ds) if dcx is None else dcx  # type: ignore[arg-type]
                dcy = dcam.self_cam(self.cam_net, y, LABEL_Y, ds) if dcy is None else dcy  # type: ignore[arg-type]
        else:
            dcx = dcy = None
        x, y = self.layout(x), self.layout(y)
        b = x.shape[0]
        aug_g = aug_d = None
        if self.policy:
            aug_g = augment.split(augment.draw(self.policy, 2 * b, size, self.aug_gen, self.device), [b, b])
            aug_d = augment.split(augment.draw(self.policy, 4 * b, size, self.aug_gen, self.device), [b] * 4)
        for d in (self.D_X, self.D_Y):
            d.requires_grad_(False)
        # source mode: a fake character carries its source human's CAM (G's fakes are the source's)
        fdx = None if self.d_cam == "self" else dcx
        fdy = None if self.d_cam == "self" else dcy
        out = self._minimise(self.g_fn, self.opt_G, x, y, cx, cy, fdx, fdy,
                             *(aug_g if aug_g is not None else (None, None)))
        _, fake_y, fake_x, parts, cam_fy, cam_fx = out
        if self.d_cam == "self" and self.policy:   # pooled fakes get the CAM of their augmented view
            cam_fy = cam_fx = None

        for d in (self.D_X, self.D_Y):
            d.requires_grad_(True)
        py, dpy = self.pool_Y.query(fake_y, cam_fy)
        px, dpx = self.pool_X.query(fake_x, cam_fx)
        loss_D, d_stats = self._minimise(self.d_fn, self.opt_D, x, y, px, py, dcx, dcy, dpx, dpy, aug_d)
        self.sched_G.step()
        self.sched_D.step()
        self._update_ema()
        losses = torch.stack([parts[0], loss_D.detach(), parts[1], parts[2]])
        return losses, d_stats

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v.state_dict() for k, v in self.nets().items()}
        out.update({f"ema_{k}": v.state_dict() for k, v in self.ema.items()})
        out.update(opt_G=self.opt_G.state_dict(), opt_D=self.opt_D.state_dict(),
                   sched_G=self.sched_G.state_dict(), sched_D=self.sched_D.state_dict(),
                   pool_X=self.pool_X.state_dict(), pool_Y=self.pool_Y.state_dict())
        if self.policy:
            out["aug_gen"] = self.aug_gen.get_state()
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, net in self.nets().items():
            net.load_state_dict(state[k])
        for k, net in self.ema.items():
            net.load_state_dict(state[f"ema_{k}"])
        self.opt_G.load_state_dict(state["opt_G"])
        self.opt_D.load_state_dict(state["opt_D"])
        self.sched_G.load_state_dict(state["sched_G"])
        self.sched_D.load_state_dict(state["sched_D"])
        self.pool_X.load_state_dict(state["pool_X"], self.device)
        self.pool_Y.load_state_dict(state["pool_Y"], self.device)
        if self.policy:
            self.aug_gen.set_state(state["aug_gen"])


# --------------------------------------------------------------------------- helpers
def config_hash(cfg: TrainConfig, x: DomainData, y: DomainData, device: torch.device) -> str:
    """sha256 over the config, the device type, the subset ids and the exact pixels/CAMs."""
    # resume works for any N and any number of loader processes
    fields = {k: v for k, v in asdict(cfg).items() if k not in ("nproc", "loader_workers")}
    h = hashlib.sha256(json.dumps({**fields, "device": device.type, "ckpt": CKPT_VERSION,
                                   "torch": torch.__version__}, sort_keys=True).encode())
    for d in (x, y):
        h.update("\n".join(d.ids).encode())
        if isinstance(d.images, ImageFiles):
            d.images.digest(h)               # the files, one at a time
        else:
            h.update(d.images.numpy().tobytes())
        if d.cams is not None:
            h.update(d.cams.float().numpy().tobytes())
    return h.hexdigest()


def _snapshot(dirs: dict[str, Path]) -> dict[str, dict[str, torch.Tensor]]:
    """The files under each dir as ``{key: {relpath: uint8 tensor}}`` (stored in the checkpoint)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, d in dirs.items():
        files = {}
        if d.is_dir():
            for f in sorted(p for p in d.rglob("*") if p.is_file()):
                data = f.read_bytes()
                files[f.relative_to(d).as_posix()] = torch.frombuffer(bytearray(data), dtype=torch.uint8) \
                    if data else torch.zeros(0, dtype=torch.uint8)
        out[key] = files
    return out


def _restore(snapshot: dict[str, dict[str, torch.Tensor]], dirs: dict[str, Path]) -> None:
    """Replace each dir by its snapshot (logs/samples written after the checkpoint are dropped)."""
    for key, d in dirs.items():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True, exist_ok=True)
        for name, data in snapshot.get(key, {}).items():
            dest = d / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data.numpy().tobytes())


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


def _gather(d: DomainData, idx: torch.Tensor, device: torch.device, images: torch.Tensor | None = None
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(images in [-1, 1], G's CAMs, D's CAMs) of the batch ``idx`` on ``device``; ``images``:
    the batch's uint8 images when they were already read (a DataLoader's)."""
    x = to_model(take(d.images, idx, device) if images is None else images.to(device, non_blocking=True))
    c = None if d.cams is None else take(d.cams, idx, device).float()
    dc = None if d.dcams is None else take(d.dcams, idx, device)
    return x, c, dc


def epoch_batches(d: DomainData, stream: "IndexStream", steps: int, batch: int, mine: slice,
                  device: torch.device, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None,
                                                                         torch.Tensor | None]]:
    """The ``steps`` batches of one epoch for this rank, as :func:`_gather` gives them.

    Loaded images are indexed in memory. Streamed ones (:class:`ImageFiles`) are read by a
    :class:`~torch.utils.data.DataLoader` with ``workers`` processes that reads ahead; the
    batches are the same: the index stream is drawn for the whole epoch first (so a checkpoint
    at the epoch's end holds the same stream position either way)."""
    if not isinstance(d.images, ImageFiles):
        for _ in range(steps):
            yield _gather(d, stream.take(batch)[mine], device)
        return
    plan = [stream.take(batch)[mine].tolist() for _ in range(steps)]
    loader = torch.utils.data.DataLoader(d.images, batch_sampler=plan, num_workers=workers,
                                         pin_memory=device.type == "cuda")
    for images, idx in loader:
        yield _gather(d, idx, device, images)


def read_checkpoint(path: Path, chash: str, who: str, console: Console) -> dict[str, Any] | None:
    """The resume checkpoint at ``path`` if it exists, loads and matches ``chash``; else None.

    A file that cannot be read (truncated, corrupt, not ours) is reported and ignored, so the
    stage starts fresh instead of crashing.
    """
    if not path.is_file():
        return None
    try:
        ck = torch_load(path)
    except Exception as e:  # noqa: BLE001 - any unreadable checkpoint means "start fresh"
        console.print(f"{who}: ignoring unreadable checkpoint {rel(path)} ({type(e).__name__}: "
                      f"{str(e).splitlines()[0] if str(e) else ''}); starting fresh", markup=False)
        return None
    if not isinstance(ck, dict) or ck.get("config_hash") != chash:
        console.print(f"{who}: ignoring {rel(path)} (other config/data)", markup=False)
        return None
    return ck


def load_cam_net(classifier_dir: Path) -> nn.Module:
    """The frozen guiding classifier (``d_cam: self``)."""
    from face2anime.models.classify import load_classifier

    net = load_classifier("classifier", classifier_dir)
    dcam.head_weight(net)  # a ConvNet or ResNet18 (GAP + linear head), else a clear error below
    return net


def self_cams(net: nn.Module, images: torch.Tensor, label: int, size: int, batch: int = 256) -> torch.Tensor:
    """The classifier's CAM (see :mod:`face2anime.gan.dcam`) of uint8 ``images`` for ``label``:
    ``[n, 1, size, size]`` on the CPU, fp32."""
    return torch.cat([dcam.self_cam(net, to_model(gather_rows(images, range(i, min(i + batch, len(images))))),
                                    label, size) for i in range(0, len(images), batch)])


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
def train(method: str, params: Params, data_dir: Path = RESIZED_DIR, cam_dir: Path = CAM_DIR,
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
    device = distributed.init(world, pick_device(params.str("device", "auto")))
    out_dir = out_dir or MODEL_ROOT / method
    live_dir = live_dir or LIVE_ROOT / method
    ckpt_dir = ckpt_dir or CKPT_ROOT / method
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
        m = CycleGAN(cfg, device, notify, rank=world.rank)
        if cam_net is not None:
            m.set_cam_net(cam_net)
        return m

    model = new_model()
    sx, sy = IndexStream(len(X.ids), cfg.seed, 0), IndexStream(len(Y.ids), cfg.seed, 1)
    # fixed sample images: the first few (by id) of each training set
    ix = torch.tensor(sorted(range(len(X.ids)), key=lambda i: X.ids[i])[:N_SAMPLES])
    iy = torch.tensor(sorted(range(len(Y.ids)), key=lambda i: Y.ids[i])[:N_SAMPLES])
    xs, cxs, _ = _gather(X, ix, device)
    ys, cys, _ = _gather(Y, iy, device)
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
            _restore(ck["files"], mirrored)
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
            names = LOSSES + D_STATS
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
                            "files": _snapshot(mirrored)}, ckpt_path)
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
        live.summary[k] = v
    live.end()

    saved = {name: {k: v.detach().float().cpu().contiguous() for k, v in net.state_dict().items()}
             for name, net in {**model.nets(), **model.generators()}.items()}  # generators: the EMA copies if any
    if cfg.snapshot == "best" and monitor.best_state is not None:
        saved.update(monitor.best_state)       # the generators of the best validation score
    for name, state in saved.items():
        torch_save(state, out_dir / f"{name}.pt")
    save_csv(pd.DataFrame({"id": X.ids}), out_dir / "human_train_ids.csv")
    write_json(out_dir / "config.json", {
        "method": method, "subset": cfg.subset, "attention": cfg.attention, "attention_mode": cfg.attention_mode,
        "upsample": cfg.upsample,
        "ngf": cfg.ngf, "ndf": cfg.ndf, "n_res": cfg.n_res, "size": size, "cam_size": None if X.cams is None
        else int(X.cams.shape[-1]), "n_human_train": len(X.ids), "n_character_train": len(Y.ids),
        "epochs": cfg.epochs, "steps": steps, "batch_size": cfg.batch_size, "seed": cfg.seed,
        "precision": cfg.precision, "device": device.type, "gan_loss": cfg.gan_loss, "ema": cfg.ema, "lambda_cyc": cfg.lambda_cyc,
        "lambda_idt": cfg.lambda_idt, "diffaug": cfg.diffaug, "d_cam": model.d_cam, "snapshot": cfg.snapshot,
        "snapshot_step": monitor.best_step if cfg.snapshot == "best" and monitor.best_state is not None else steps,
        "collapsed": summary["collapsed"], "collapse_reasons": summary["collapse_reasons"], "config_hash": chash,
        "training_data": training_data(params)})
    if ckpt_path.is_file():
        ckpt_path.unlink()
    with contextlib.suppress(OSError):
        ckpt_dir.rmdir()
    print(f"train_cyclegan[{method}]: {n_images} images ({steps} steps x {imgs_per_step}) in {elapsed:.1f} s "
          f"= {ips:.1f} images/s on {device.type} (precision {cfg.precision}); human {len(X.ids)}, "
          f"character {len(Y.ids)}; samples {rel(samples_dir)}", flush=True)
    return summary
