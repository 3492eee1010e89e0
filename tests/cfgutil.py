"""Complete ``cyclegan.train`` sections for tests (params.yaml holds every key; the code has no
defaults). ``EXACT`` is a small exact-mode run: the speed options off, the textbook loop."""
from __future__ import annotations

from typing import Any

from face2anime.core.params import typed
from face2anime.core.schema import ParamsFile, Train
from face2anime.gan.config import TrainConfig

EXACT: dict[str, Any] = {
    "seed": 0, "ngf": 32, "ndf": 32, "n_res": 4, "epochs": 5, "steps_per_epoch": 100, "batch_size": 4,
    "lr": 2e-4, "beta1": 0.5, "beta2": 0.999, "lr_decay_epochs": 2, "lambda_cyc": 10.0, "lambda_idt": 0.5,
    "lambda_tv": 0.0, "lambda_cam": 1000.0, "weight_decay": 0.0,
    "gan_loss": "vanilla", "pool_size": 50, "ema": 0.0, "attention_mode": "residual", "upsample": "transpose", "d_blur": False,
    "sample_every": 1, "log_every": 25, "compile": False, "channels_last": False, "adam": "default",
    "fuse_passes": False, "nproc": 1, "threads": 1, "preload_mb": 256, "loader_workers": 2, "diffaug": "",
    "d_cam": "source", "snapshot": "last", "val_every": 200,
}
RUN = ("method", "model", "subset", "attention", "seed", "max_images", "share", "precision")


def train_section(**over: Any) -> dict[str, Any]:
    """A full ``cyclegan.train`` mapping: :data:`EXACT` with ``over``."""
    return {**EXACT, **over}


def train_config(**kw: Any) -> TrainConfig:
    """A :class:`TrainConfig` from :data:`EXACT`: run fields (method, model, subset, attention, seed,
    max_images, share, precision) default to a small random-subset run; the rest override."""
    run = {"method": "m", "model": "cyclegan", "subset": "random", "attention": False, "seed": 0, "max_images": 4, "share": 1.0,
           "precision": "fp32"}
    run.update({k: kw.pop(k) for k in RUN if k in kw})
    return TrainConfig.build(Train.model_validate(train_section(**kw)), **run)


def typed_params(overrides: dict[str, Any] | None = None) -> ParamsFile:
    """The typed config of the shipped params.yaml with the tiny test values and ``overrides``
    (dotted keys), validated like a stage validates it (a bad value is a UserError)."""
    from conftest import tiny_params

    return typed(tiny_params(overrides))
