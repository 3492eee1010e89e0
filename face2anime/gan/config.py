"""The typed configuration of one CycleGAN training run (``TrainConfig``), read from params.

:func:`read_config` turns a method's entry of ``cyclegan.methods`` and the validated
``cyclegan.train`` section (:class:`face2anime.core.schema.Train`, with the method's optional
``train:`` overrides merged in) into a frozen :class:`TrainConfig`; it also checks that the
entry's declared ``inputs`` (its DVC deps) are the files the method reads.
"""
from __future__ import annotations


from dataclasses import dataclass
from typing import Any


from face2anime.core.paths import CAM_DIR, SELECT_CSV
from face2anime.core.params import UserError, validate
from face2anime.core.schema import Method, ParamsFile, Train, traced
from face2anime.data.align import AlignConfig
from face2anime.gan.augment import parse_policy

N_SAMPLES = 4          # images per domain in each sample picture
CKPT_VERSION = 3
#: metrics logged to dvclive every ``log_every`` steps (plots/metrics/<name>.tsv, x = step); a
#: ``model: ugatit`` run also logs ``loss_cam``, a run with ``lambda_tv > 0`` also ``loss_tv``
LOGGED = ("loss_G_adv", "loss_D", "loss_cyc", "loss_idt", "d_acc_real", "d_acc_fake", "lr", "images_per_s")
#: the training summary's timings: in ``metrics/stages/train_cyclegan@M.json`` and
#: ``metrics/cyclegan/M/TIMINGS_FILE`` (what the stage reads back from torchrun's rank 0), never in
#: a metrics file, since they change from run to run
TIMINGS = ("train_seconds", "images_per_s", "compile_seconds", "val_seconds")
TIMINGS_FILE = "timing.json"
#: logged at each validation (every ``val_every`` steps; see :mod:`face2anime.gan.monitor`)
VAL_LOGGED = ("val_realism", "val_cycle", "val_diversity", "val_score")



# --------------------------------------------------------------------------- config
@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (its hash keys the resume checkpoint).

    The run's identity (method, model, subset, attention, seed = ``seed + cyclegan.train.seed``,
    ``select.max_images``, ``select.share``, ``precision``) and every other
    :class:`~face2anime.core.schema.Train` field, with their meanings there. No field has a
    default: params.yaml holds them all (:meth:`build` copies a validated section).
    """

    method: str
    model: str
    subset: str
    attention: bool
    seed: int
    max_images: int
    share: float
    precision: str
    threads: int
    ngf: int
    ndf: int
    n_res: int
    epochs: int
    steps_per_epoch: int
    batch_size: int
    lr: float
    beta1: float
    beta2: float
    lr_decay_epochs: int
    lambda_cyc: float
    lambda_idt: float
    lambda_tv: float
    lambda_cam: float
    weight_decay: float
    gan_loss: str
    pool_size: int
    ema: float
    attention_mode: str
    upsample: str
    d_blur: bool
    sample_every: int
    log_every: int
    compile: bool
    channels_last: bool
    adam: str
    fuse_passes: bool
    nproc: int
    preload_mb: int
    loader_workers: int
    diffaug: str
    d_cam: str
    snapshot: str
    val_every: int

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @classmethod
    def build(cls, train: Train, *, method: str, model: str, subset: str, attention: bool, seed: int, max_images: int,
              share: float, precision: str, **over: Any) -> "TrainConfig":
        """The config of one run from a validated ``cyclegan.train`` section (every field read,
        so the param trace records them) and the run's identity; ``over`` replaces fields
        (benchmarks and tests)."""
        fields = {name: getattr(train, name) for name in Train.model_fields if name != "seed"}
        unknown = sorted(set(over) - set(fields))
        if unknown:
            raise TypeError(f"not TrainConfig fields: {unknown}")
        fields.update(over)
        return cls(method=method, model=model, subset=subset, attention=attention, seed=seed, max_images=max_images,
                   share=share, precision=precision, **fields)


#: the exact mode of the speed options (bit-identical to the textbook eager loop; docs/performance.md)
EXACT_MODE = {"compile": False, "channels_last": False, "adam": "default", "fuse_passes": False}


#: what a method entry's ``inputs`` (its DVC deps in dvc.yaml) must name for what it reads
SUBSET_INPUT = {"selected": str(SELECT_CSV)}
CAM_INPUT = str(CAM_DIR)


def check_inputs(method: str, entry: Method, where: str) -> None:
    """A method's declared ``inputs`` must be the files it reads, or DVC would not re-run it
    when they change (or would re-run it needlessly). Absent ``inputs`` is allowed (tests)."""
    if entry.model == "ugatit" and entry.attention:
        raise UserError(f"{where}: model ugatit learns its own attention; set attention: false")
    inputs = entry.inputs
    if inputs is None:
        return
    need_subset = SUBSET_INPUT.get(entry.subset)
    if need_subset is not None and inputs.subset != need_subset:
        raise UserError(f"{where}: subset {entry.subset} reads {need_subset}; set inputs.subset to it")
    if need_subset is None and inputs.subset == str(SELECT_CSV):
        raise UserError(f"{where}: subset random must not depend on {SELECT_CSV} (the selection would "
                        f"re-train it); set inputs.subset to data/resized/manifest.csv")
    if entry.attention and inputs.cams != CAM_INPUT:
        raise UserError(f"{where}: attention reads {CAM_INPUT}; set inputs.cams to it")
    if not entry.attention and inputs.cams == CAM_INPUT:
        raise UserError(f"{where}: a method without attention must not depend on {CAM_INPUT}; "
                        f"set inputs.cams to data/resized/manifest.csv")


#: what an attention method with ``d_cam: self`` reads in training (the guiding classifier's
#: weights and its config); their DVC deps
CLASSIFIER_INPUT = "models/classifier/classifier.pt"
CLASSIFIER_CONFIG_INPUT = "models/classifier/classifier.json"


def check_classifier_input(cfg: TrainConfig, entry: Method, where: str) -> None:
    """``d_cam: self`` makes attention methods read the classifier: their ``inputs.classifier``
    (a DVC dep) must name it; a method without attention must not (needless re-runs)."""
    if entry.inputs is None:
        return
    declared, config = entry.inputs.classifier, entry.inputs.classifier_config
    if cfg.attention and cfg.d_cam == "self" and declared != CLASSIFIER_INPUT:
        raise UserError(f"{where}: cyclegan.train.d_cam: self reads {CLASSIFIER_INPUT}; set inputs.classifier to it")
    reads_config = cfg.attention and cfg.d_cam == "self"
    if reads_config and config != CLASSIFIER_CONFIG_INPUT:
        raise UserError(f"{where}: cyclegan.train.d_cam: self reads {CLASSIFIER_CONFIG_INPUT}; set "
                        f"inputs.classifier_config to it")
    if not reads_config and config == CLASSIFIER_CONFIG_INPUT:
        raise UserError(f"{where}: training never reads {CLASSIFIER_CONFIG_INPUT} without d_cam: self; set "
                        f"inputs.classifier_config to data/resized/manifest.csv")
    if not cfg.attention and declared == CLASSIFIER_INPUT:
        raise UserError(f"{where}: a method without attention never reads {CLASSIFIER_INPUT}; set "
                        f"inputs.classifier to data/resized/manifest.csv")


def training_data(params: ParamsFile) -> dict[str, Any]:
    """Where the training images came from (``download.source``, photo-like rendering) and how
    photos were cropped (``resize.crop``, ``resize.align``), kept in config.json so that
    ``convert`` crops a user's photo the same way and warns when a synthetic-data model meets
    a real photo."""
    source, crop = params.download.source, params.resize.crop
    return {"source": source,
            "photo_like": source == "synthetic" and params.download.synthetic.photo_like,
            "crop": crop, "align": AlignConfig.from_section(params.resize.align).to_dict() if crop == "align" else None}


def method_train(params: ParamsFile, method: str, m: Method) -> Train:
    """``cyclegan.train`` with the ``train:`` overrides of method entry ``m`` merged in,
    validated and traced as ``cyclegan.train`` (an unknown or bad override -> UserError)."""
    base = params.cyclegan.train
    over = dict(m.train)
    if not over:
        return base
    where = f"{params.source}: cyclegan.methods.{method}"
    unknown = sorted(set(over) - set(Train.model_fields))
    if unknown:
        raise UserError(f"{where}.train: {', '.join(unknown)} not in cyclegan.train "
                        f"(known: {', '.join(Train.model_fields)})")
    merged = validate(Train, {**base.model_dump(), **over},
                      f"{params.source} (cyclegan.methods.{method}.train over cyclegan.train)", "cyclegan.train.")
    return traced(merged, "cyclegan.train") if base._path is not None else merged


def read_config(method: str, params: ParamsFile) -> TrainConfig:
    """Validate the params of ``method``; unknown method or a bad entry -> UserError."""
    # Only this method's entry is read (the stage declares cyclegan.methods.METHOD as its param);
    # the list of all methods is read only to word the error for an unknown one.
    m = params.cyclegan.methods.get(method)
    if m is None:
        methods = list(params.cyclegan.methods)
        raise UserError(f"unknown cyclegan method {method!r}; configured methods: {', '.join(methods) or '(none)'} "
                        f"(cyclegan.methods in {params.source})")
    where = f"{params.source}: cyclegan.methods.{method}"
    check_inputs(method, m, where)
    train = method_train(params, method, m)
    try:
        diffaug = ",".join(parse_policy(train.diffaug))
    except ValueError as e:
        raise UserError(f"{params.source}: cyclegan.train.diffaug: {e}") from None
    cfg = TrainConfig.build(
        train, method=method, model=m.model, subset=m.subset, attention=m.attention,
        seed=params.seed + train.seed, max_images=params.select.max_images,
        share=params.select.share, precision=params.precision, diffaug=diffaug)
    check_classifier_input(cfg, m, where)
    if cfg.snapshot == "best" and cfg.val_every == 0:
        raise UserError(f"{params.source}: cyclegan.train.snapshot: best needs validation "
                        f"(cyclegan.train.val_every > 0)")
    if cfg.lr_decay_epochs > cfg.epochs:
        raise UserError(f"{params.source}: cyclegan.train.lr_decay_epochs ({cfg.lr_decay_epochs}) must be <= "
                        f"cyclegan.train.epochs ({cfg.epochs})")
    return cfg
