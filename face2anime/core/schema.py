"""The one typed description of ``params.yaml``: every key, its type, range and meaning.

Each section of ``params.yaml`` is a pydantic model with ``extra="forbid"``: an unknown or
misspelled key anywhere is a one-line :class:`~face2anime.core.params.UserError` naming the
key, the file and the nearest valid name. Fields have **no defaults**: ``params.yaml`` holds
every value (the few optional keys, like a method's ``train:`` overrides, say so). The field
descriptions are the params reference (``face2anime report`` writes them to docs/params.md).

``load_params`` validates the whole file with :class:`ParamsFile`; stages hand that typed
config (or its sections) to the library, and every attribute read from it is recorded (the
param trace of :mod:`face2anime.core.params`).

This module sits at the bottom of the library: it names choices as literals instead of
importing them from the modules that implement them (a test checks the two agree).
"""
from __future__ import annotations

import typing
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

#: dotted keys read so far in this process (the DVC-dependency test's param trace)
READ: set[str] = set()

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[int, Field(ge=1)]
NonNeg = Annotated[int, Field(ge=0)]
Width = Annotated[int, Field(ge=1, le=4096)]


class Section(BaseModel):
    """A section of params.yaml: strict keys, no coercion of bools/strings into numbers.

    A section made by :func:`traced` knows its dotted path and records each value read from
    it (``cfg.ema`` -> ``cyclegan.train.ema``) in :data:`READ`; nested sections record their
    own leaves. Sections made directly (library calls, tests) record nothing.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    #: dotted path of a traced section ("" = the whole file); None: not traced
    _path: Optional[str] = PrivateAttr(None)

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        if name[:1] != "_" and name in type(self).__pydantic_fields__ and not _is_section(value):
            path = self._path
            if path is not None:
                READ.add(f"{path}.{name}" if path else name)
        return value


def _is_section(value: Any) -> bool:
    return isinstance(value, Section) or (
        isinstance(value, dict) and bool(value) and all(isinstance(v, Section) for v in value.values()))


def traced(section: Any, path: str) -> Any:
    """``section`` (and every section inside it) marked with its dotted path (``""`` for the
    whole file), so that its reads are recorded; returns it."""
    if isinstance(section, Section):
        section._path = path
        for name, value in section.__dict__.items():
            sub = f"{path}.{name}" if path else name
            if isinstance(value, Section):
                traced(value, sub)
            elif _is_section(value):
                for k, v in value.items():
                    traced(v, f"{sub}.{k}")
    return section


def doc(text: str, **kw: Any) -> Any:
    return Field(description=text, **kw)


# --------------------------------------------------------------------------- download
class SyntheticSource(Section):
    n_human: int = doc("human images rendered (test + train)", ge=2)
    n_character: int = doc("character images rendered (test + train)", ge=2)
    size: int = doc("render resolution in pixels", ge=16, le=1024)
    hard_share: Fraction = doc("share of hard human images (occluded parts, clutter, low contrast, small or off-centre)")
    hard_share_character: Fraction = doc("the same for characters, so that 'something in the way' is no class cue")
    photo_like: bool = doc("humans get texture, lighting, sensor noise and JPEG (a stand-in for real photos)")


class LocalSource(Section):
    human: str = doc("folder, zip/tar archive or file:// URL of face photos (inside inputs/ DVC sees changes)")
    character: str = doc("folder, archive or URL of anime face images")
    human_aligned: bool = doc("true if the photos already are aligned face crops")
    character_aligned: bool = doc("true if the anime images already are face crops")
    count: NonNeg = doc("at most this many images per domain (0 = all)")


class FfhqSource(Section):
    count: int = doc("FFHQ images to download", ge=1, le=70000)
    variant: Literal["thumbs128", "images1024"] = doc("128 px thumbnails or the 1024 px images")
    character: Literal["animeface", "selfie2anime", "local"] = doc("where the characters come from")
    workers: int = doc("parallel downloads", ge=1, le=64)


class AnimefaceSource(Section):
    count: NonNeg = doc("anime faces to use (0 = all)")
    human: Literal["ffhq", "selfie2anime", "local"] = doc("where the humans come from")


class Selfie2animeSource(Section):
    count: NonNeg = doc("images per domain (0 = all)")


class Download(Section):
    source: Literal["synthetic", "ffhq", "animeface", "selfie2anime", "local"] = doc(
        "the data set: the offline procedural faces, a public one, or your own (local)")
    synthetic: SyntheticSource
    local: LocalSource
    ffhq: FfhqSource
    animeface: AnimefaceSource
    selfie2anime: Selfie2animeSource
    urls: dict[str, Union[str, dict[str, Any]]] = doc(
        "overrides of face2anime/sources/registry.py: {key: url} or {key: {url, sha256, md5, size}}")
    retries: int = doc("download retries per file", ge=0, le=100)
    timeout: float = doc("seconds before a stalled download is retried", ge=1, le=3600)
    backoff: float = doc("seconds of the first retry's wait (doubling after)", ge=0, le=600)
    max_entries: Positive = doc("an archive with more members than this is refused (zip bombs)")
    max_extract_bytes: Positive = doc("an archive that would extract to more bytes than this is refused")


# --------------------------------------------------------------------------- resize
class Align(Section):
    landmarks: Literal[5, 68] = doc("5: dlib's 5-point model (CC0) | 68: adds mouth and jaw (iBUG 300-W: research use only)")
    scale: float = doc("crop side relative to FFHQ's alignment (about 4 eye distances)", ge=0.3, le=3.0)
    shift: float = doc("crop centre below the eye midpoint, in eye-to-mouth distances (FFHQ: 0.1)", ge=-1.0, le=1.0)
    faces: Literal["all", "largest"] = doc("all: every face of a group photo becomes a training image")
    min_eye_px: float = doc("faces with an eye distance under this many photo pixels are counted as too small", ge=0.0)


class Resize(Section):
    size: int = doc("training resolution in pixels (paper: 256)", ge=16, le=1024)
    test_count: Positive = doc("held-out test images per domain (paper: 50)")
    crop: Literal["align", "face", "none"] = doc(
        "for photos not marked aligned: align (dlib landmarks) | face (Haar box) | none")
    align: Align
    max_pixels: Positive = doc("images with more pixels are skipped (decompression bombs)")


# --------------------------------------------------------------------------- models
class Classifier(Section):
    arch: Literal["convnet", "resnet18"] = doc("network (resnet18: torchvision, weights=None)")
    widths: list[Width] = doc("convnet stage widths; the last stage runs at size/4 (the CAM resolution)", min_length=1)
    dropout: float = doc("dropout before the last layer", ge=0.0, le=0.9)
    epochs: Positive = doc("training epochs")
    batch_size: Positive = doc("images per step")
    lr: float = doc("Adam learning rate", ge=0.0)
    pretrained: str = doc("optional local state_dict to start from (nothing is downloaded)")


class Judge(Classifier):
    train_share: float = doc("trains on a different random share of the train split", ge=0.1, le=1.0)
    degrade: Fraction = doc("probability of a random colour change / blur / noise per image (both classes)")
    junk: float = doc("a third class 'junk' (noise, flat colour, blur, patch shuffles), this many per real image", ge=0.0, le=2.0)
    degrade_hue: float = doc("the colour change also turns the hue by up to this (0.5 = any hue)", ge=0.0, le=0.5)


class Cam(Section):
    method: Literal["gradcam", "gradcam++", "eigencam", "layercam", "xgradcam", "hirescam"] = doc(
        "CAM method of the grad-cam package")
    target_layer: str = doc("'default' = the classifier's last stage, or a module name such as trunk.10")
    batch_size: Positive = doc("images per CAM batch")


class Select(Section):
    threshold: Fraction = doc("minimum part_focus (share of CAM mass inside the eye + mouth boxes)")
    max_images: Positive = doc("size of the human training subset of every method (paper: 500)")
    min_images: Positive = doc("fewer selected images than this is an error")
    share: Fraction = doc("at most this share of the human train images (random subsets get the same count)")


class Attributes(Section):
    widths: list[Width] = doc("stage widths of the attribute predictor", min_length=1)
    epochs: Positive = doc("training epochs")
    batch_size: Positive = doc("images per step")
    lr: float = doc("Adam learning rate", ge=0.0)


# --------------------------------------------------------------------------- cyclegan
class Train(Section):
    """``cyclegan.train``: one CycleGAN training run (every method, unless it overrides keys)."""

    seed: NonNeg = doc("added to the top-level seed: repeat training with other seeds cheaply")
    ngf: Positive = doc("generator base width (paper: 64)")
    ndf: Positive = doc("discriminator base width (paper: 64)")
    n_res: NonNeg = doc("residual blocks of the generator (paper: 4)")
    epochs: Positive = doc("epochs")
    steps_per_epoch: Positive = doc("optimisation steps per epoch")
    batch_size: Positive = doc("images per domain per step (paper/CycleGAN: 1)")
    lr: float = doc("Adam learning rate (paper/CycleGAN: 0.0002)", ge=0.0)
    beta1: Fraction = doc("Adam beta1")
    beta2: Fraction = doc("Adam beta2")
    lr_decay_epochs: NonNeg = doc("linear decay to 0 over the last N epochs (0 = constant)")
    lambda_cyc: float = doc("cycle-consistency weight", ge=0.0)
    lambda_idt: float = doc("identity loss weight (times lambda_cyc); paper: 0", ge=0.0)
    lambda_tv: float = doc("flat-shading prior: weight of the L1 total variation of the anime translations G_XY(x) (0 = off)", ge=0.0)
    lambda_cam: float = doc("U-GAT-IT only: weight of the generators' CAM classification loss (authors: 1000)", ge=0.0)
    weight_decay: float = doc("Adam's L2 weight decay of every network (CycleGAN: 0; U-GAT-IT: 0.0001)", ge=0.0)
    gan_loss: Literal["lsgan", "vanilla"] = doc("least squares | vanilla (the paper's log-likelihood)")
    pool_size: NonNeg = doc("history of generated images each discriminator also sees")
    ema: float = doc("saved generators = moving average of the weights with this decay (0 = off)", ge=0.0, le=0.9999)
    attention_mode: Literal["residual", "multiply"] = doc("residual: h*(1+cam) | multiply: h*cam (the paper's literal reading)")
    upsample: Literal["resize", "transpose"] = doc("resize: nearest x2 + conv (no checkerboard) | transpose: ConvTranspose")
    d_blur: bool = doc("model cyclegan: D low-passes the input of each stride-2 conv, so its gradient does not ask G for fine texture")
    sample_every: Positive = doc("epochs between sample pictures")
    log_every: Positive = doc("steps between logged losses")
    compile: bool = doc("torch.compile (inductor) the G and D steps; falls back to eager on a compiler error")
    channels_last: bool = doc("NHWC weights and activations (oneDNN's fast bf16 kernels)")
    adam: Literal["default", "foreach", "fused"] = doc("Adam implementation")
    fuse_passes: bool = doc("one network call per phase on inputs that share its weights")
    nproc: Positive = doc("> 1: torchrun + DDP with this many processes")
    threads: Positive = doc("intra-op CPU threads of training (per process); fixed, since results depend on it. "
                            "1: `face2anime repro` trains two methods side by side on 2 cores")
    preload_mb: NonNeg = doc("training images up to this many MiB are loaded into memory; larger sets stream")
    loader_workers: NonNeg = doc("DataLoader processes reading streamed images (no effect on results)")
    diffaug: str = doc("DiffAugment for D's inputs: '' (off) or any of color,translation,cutout")
    snapshot: Literal["last", "best"] = doc("save the EMA generators of the last step or of the best validation")
    val_every: NonNeg = doc("steps between validations (label-free score; collapse detection); 0 = off")
    d_cam: Literal["source", "self", "none"] = doc("the CAM in D: of the fake's source image | of the image itself | none")


class MethodInputs(Section):
    subset: str = doc("the file the human subset comes from (DVC dep)")
    cams: str = doc("the CAMs the method reads (DVC dep)")
    classifier: str = doc("the guiding classifier's weights, when read (DVC dep)")
    classifier_config: str = doc("the guiding classifier's config, when training reads it (d_cam: self; DVC dep)")


class Method(Section):
    """An entry of ``cyclegan.methods``: one DVC stage per name."""

    model: Literal["cyclegan", "ugatit"] = doc(
        "cyclegan: the paper's networks | ugatit: U-GAT-IT light, which learns its own CAM attention")
    subset: Literal["random", "selected"] = doc("a seeded random sample | the CAM-selected set")
    attention: bool = doc("multiply the source's CAM into G's residual blocks and into D")
    inputs: Optional[MethodInputs] = doc("the files the entry reads (its DVC deps); optional in library calls",
                                         default=None)
    train: dict[str, Any] = doc("overrides of cyclegan.train keys for this method only (optional)",
                                default_factory=dict)


class Cyclegan(Section):
    methods: dict[str, Method] = doc("the methods, one train/translate/evaluate stage each", min_length=1)
    train: Train


# --------------------------------------------------------------------------- evaluation
class Translate(Section):
    grid_count: Positive = doc("test faces shown in reports/translate_METHOD.png")


class EvaluateInputs(Section):
    inception: str = doc("the file evaluate reads for the Inception metrics (its DVC dep): evaluate.inception_weights "
                         "when set, else data/resized/manifest.csv (read anyway: stands for nothing)")


class Evaluate(Section):
    kid_subsets: Positive = doc("KID subsets")
    kid_subset_size: int = doc("images per KID subset", ge=2)
    reference_count: int = doc("floors are scored on at most this many test sources", ge=2)
    realism_k: Positive = doc("k of the k-NN realism score in the judge's feature space")
    inception_weights: str = doc(
        "local copy of pytorch-fid's FID Inception weights pt_inception-2015-12-05-6726825d.pth (e.g. "
        "inputs/pt_inception-2015-12-05-6726825d.pth; never downloaded) for plain Inception KID and FID; '' = off")
    inception_kid_subset_size: int = doc("images per subset of the Inception KID (capped at the image count; "
                                         "torch-fidelity: 1000)", ge=2)
    inputs: EvaluateInputs


class Compare(Section):
    reference: str = doc("the method compared against (a cyclegan.methods name)")
    candidate: str = doc("the method under test (a cyclegan.methods name)")
    faces: Positive = doc("rows of reports/compare.png")
    bootstrap: int = doc("bootstrap replicates for the paired 95% CIs", ge=100)
    permutations: int = doc("sign-flip permutations for the paired p-values", ge=100)


class Survey(Section):
    faces: Positive = doc("held-out faces rated per method (paper: 5)")
    pairwise: bool = doc("add 'which keeps the person better' items (two methods, one face)")
    bootstrap: int = doc("resamples of raters x faces for the report's 95% CIs", ge=100)


class ParamsFile(Section):
    """The whole of params.yaml: what :func:`~face2anime.core.params.load_params` returns and
    stages hand to the library (``params.cam.method``, ``params.cyclegan.methods[name]``)."""

    _source: str = PrivateAttr("params.yaml")

    seed: NonNeg = doc("the seed of every random choice")
    device: str = doc("auto, cpu, cuda or cuda:N (auto uses CUDA when present)", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    precision: Literal["auto", "fp32", "bf16"] = doc("auto: bf16 autocast on CUDA and on CPUs with native bf16")
    threads: int = doc("intra-op CPU threads of every torch stage; a fixed count, because results depend on it "
                       "(never 'all cores')", ge=1, le=1024)
    download: Download
    resize: Resize
    classifier: Classifier
    judge: Judge
    cam: Cam
    select: Select
    attributes: Attributes
    cyclegan: Cyclegan
    translate: Translate
    evaluate: Evaluate
    compare: Compare
    survey: Survey

    @property
    def source(self) -> str:
        """Where the values came from (the params file), for error messages."""
        return self._source


def method_names(params: ParamsFile) -> list[str]:
    """The configured method names (``cyclegan.methods`` keys, in params order). Recorded as a
    read of the whole ``cyclegan.methods`` (a stage that reads one entry reads
    ``params.cyclegan.methods[name]``, which records only that entry's values)."""
    if params._path is not None:
        READ.add("cyclegan.methods")
    return list(params.cyclegan.methods)


def model_at(path: str) -> type[Section] | None:
    """The model of the section at dotted ``path`` (``'cyclegan.train'`` -> :class:`Train`)."""
    model: Any = ParamsFile
    for part in path.split(".") if path else []:
        if typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, Section) else None
