"""The Convert page's work: one uploaded photo -> its face crop, the guiding classifier's
Grad-CAM overlay and the avatar of every trained method, all as PNG bytes in memory.

The upload is decoded by :func:`face2anime.data.imageio.load_rgb` (the same safe decoding
as the pipeline: truncated files, decompression bombs, odd modes, EXIF rotation) from a
temporary directory that is deleted before the request returns; nothing is kept. The face is
found and cropped exactly as ``face2anime convert`` does, like the model's training photos
(:class:`face2anime.data.facecrop.FaceCropper`); every face is converted (largest first, at
most ``facecrop.MAX_FACES``), and faces too small or over the limit are counted.
Models are loaded on first use and reloaded when a method's ``config.json`` changes.
"""
from __future__ import annotations

import io
import json
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from face2anime.core.params import UserError
from face2anime.core.schema import method_names
from face2anime.core.paths import ONNX_DIR
from face2anime.data.imageio import BadImage, load_rgb

#: config.json fields shown on the Convert page ("which data and params the model was trained on")
SHOWN_CONFIG = ("subset", "attention", "n_human_train", "n_character_train", "size", "epochs", "steps",
                "batch_size", "gan_loss", "lambda_cyc", "lambda_idt", "ema", "ngf", "n_res", "seed",
                "device", "precision")
DISPLAY = 256   # px: avatars are shown and downloaded at this size (the model runs at resize.size)


class UploadRefused(Exception):
    """An upload that cannot be converted: HTTP ``status`` and a one-line message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Result:
    face: bytes                                   # the crop the models see, upscaled
    cam: bytes | None                             # Grad-CAM overlay of the crop (None without a classifier)
    avatars: list[tuple[str, bytes]] = field(default_factory=list)
    conversions: list[str] = field(default_factory=list)
    faces_found: int = 1                          # faces found in the photo (converted or not)
    others: list[tuple[bytes, list[tuple[str, bytes]]]] = field(default_factory=list)  # faces 2.. and avatars
    too_small: int = 0                            # faces found but too small to convert
    over_limit: int = 0                           # faces beyond facecrop.MAX_FACES (not converted)
    heatmaps: list[tuple[str, bytes]] = field(default_factory=list)  # (method, learned-CAM overlay): U-GAT-IT


def png(img: Image.Image, size: int = DISPLAY) -> bytes:
    buf = io.BytesIO()
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BICUBIC)
    img.save(buf, format="PNG")
    return buf.getvalue()


def decode_upload(data: bytes, max_pixels: int) -> tuple[Image.Image, list[str]]:
    """Upload bytes -> upright RGB image, or :class:`UploadRefused` (400 unreadable, 413 too large)."""
    if not data:
        raise UploadRefused(400, "the uploaded file is empty")
    with tempfile.TemporaryDirectory(prefix="face2anime-upload-") as tmp:
        path = Path(tmp) / "upload"
        path.write_bytes(data)
        try:
            return load_rgb(path, max_pixels=max_pixels)
        except BadImage as e:
            detail = e.detail.replace(str(path), "upload")
            if e.reason == "too_large":
                raise UploadRefused(413, f"image too large ({detail}); the limit is {max_pixels:,} pixels") from None
            what = {"not_an_image": "not an image (PNG, JPEG, WebP, ... expected)",
                    "truncated": "a truncated or damaged image", "empty": "empty"}.get(e.reason, "unreadable")
            raise UploadRefused(400, f"the uploaded file is {what}") from None


def model_methods(cyclegan_dir: Path, order: list[str] | None = None) -> list[str]:
    """Trained methods under ``cyclegan_dir`` (those with a config.json), in params order where known."""
    found = sorted(p.parent.name for p in Path(cyclegan_dir).glob("*/config.json")
                   if not p.parent.name.startswith("."))   # not a half-swapped .M.incoming / .M.old
    first = [m for m in (order or []) if m in found]
    return first + [m for m in found if m not in first]


def model_notes(cyclegan_dir: Path, method: str) -> list[str]:
    """The warnings ``face2anime convert`` prints for a method's model (synthetic data, small
    size, collapsed training), for the page to show as prominently."""
    from face2anime.gan.inference import model_warnings

    try:
        cfg = json.loads((Path(cyclegan_dir) / method / "config.json").read_text())
    except (OSError, ValueError):
        return ["its config.json cannot be read"]
    return model_warnings(cfg)


#: the evaluation entries a served model's metrics page shows (with their validity)
SHOWN_METRICS = ("char_rate", "realism", "kid_judge", "edge_ssim", "cycle_l1", "cam_overlap", "attr_preservation")


def load_eval(metrics_dir: Path, method: str) -> dict[str, Any] | None:
    """``metrics/eval/METHOD.json`` reduced to what a user of the model should see: each
    metric's value and whether it is valid (with the failed floors), the training flags and
    the machine; None when the method has not been evaluated."""
    try:
        ev = json.loads((Path(metrics_dir) / "eval" / f"{method}.json").read_text())
    except (OSError, ValueError):
        return None
    valid = ev.get("valid") or {}
    metrics = {k: {"value": ev[k], "valid": (valid.get(k) or {}).get("ok"), "reasons": (valid.get(k) or {}).get("reasons", [])}
               for k in SHOWN_METRICS if k in ev}
    return {"method": method, "n_test": ev.get("n_test"), "metrics": metrics, "training": ev.get("training"),
            "machine": ev.get("machine")}


def model_info(cyclegan_dir: Path, method: str) -> dict[str, Any]:
    try:
        cfg = json.loads((Path(cyclegan_dir) / method / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: cfg[k] for k in SHOWN_CONFIG if k in cfg}


class Converter:
    """All trained methods of one project, loaded lazily, used under one lock (CPU-bound;
    grad-cam's hooks on the shared classifier are not thread-safe)."""

    def __init__(self, cyclegan_dir: Path, classifier_dir: Path, params_file: Path, max_pixels: int,
                 backend: str = "torch", onnx_dir: Path = ONNX_DIR):
        if backend not in ("torch", "onnx"):
            raise UserError(f"backend must be torch or onnx, got {backend!r}")
        self.backend, self.onnx_dir = backend, Path(onnx_dir)
        self.cyclegan_dir = Path(cyclegan_dir)
        self.classifier_dir = Path(classifier_dir)
        self.params_file = Path(params_file)
        self.max_pixels = max_pixels
        self._lock = threading.Lock()
        self._translators: dict[str, tuple[float, Any]] = {}
        self._cam: tuple[float, Any, Any] | None = None

    def params(self) -> Any:
        from face2anime.core.params import load_params

        return load_params(self.params_file)

    def methods(self) -> list[str]:
        try:
            order = method_names(self.params())
        except UserError:  # a missing or odd params file only loses the ordering
            order = []
        if self.backend == "onnx":   # the exported methods (models/onnx/METHOD.onnx + METHOD.json)
            found = sorted(p.stem for p in self.onnx_dir.glob("*.onnx") if p.with_suffix(".json").is_file())
            return [m for m in order if m in found] + [m for m in found if m not in order]
        return model_methods(self.cyclegan_dir, order)

    def data_source(self) -> str | None:
        try:
            return self.params().download.source
        except UserError:
            return None

    def _translator(self, method: str, params: Any) -> Any:
        if self.backend == "onnx":
            from face2anime.deploy.onnx_runner import OnnxTranslator

            mtime = (self.onnx_dir / f"{method}.onnx").stat().st_mtime
            make = lambda: OnnxTranslator(self.onnx_dir, method)  # noqa: E731
        else:
            from face2anime.gan.inference import Translator

            mtime = (self.cyclegan_dir / method / "config.json").stat().st_mtime
            make = lambda: Translator.from_params(method, params, self.cyclegan_dir, self.classifier_dir)  # noqa: E731
        cached = self._translators.get(method)
        if cached is None or cached[0] != mtime:
            cached = (mtime, make())
            self._translators[method] = cached
        return cached[1]

    def notes(self, method: str) -> list[str]:
        """The model's warnings, from the export's METHOD.json or the checkpoint's config.json."""
        if self.backend == "onnx":
            try:
                return list(json.loads((self.onnx_dir / f"{method}.json").read_text()).get("warnings", []))
            except (OSError, ValueError):
                return [f"{method}.json of the export cannot be read"]
        return model_notes(self.cyclegan_dir, method)

    def info(self, method: str) -> dict[str, Any]:
        if self.backend == "onnx":
            try:
                meta = json.loads((self.onnx_dir / f"{method}.json").read_text())
            except (OSError, ValueError):
                return {}
            return {"backend": "onnx", **{k: meta[k] for k in ("size", "attention") if k in meta}}
        return model_info(self.cyclegan_dir, method)

    def _avatars(self, translator: Any, x: Any) -> Any:
        """uint8 ``[N, 3, S, S]`` (numpy) -> uint8 avatars ``[N, S, S, 3]`` with either backend."""
        from face2anime.deploy.onnx_runner import to_uint8_images

        if self.backend == "onnx":
            return to_uint8_images(translator.to_character(x))
        import torch

        return to_uint8_images(translator.to_character(torch.from_numpy(x)).numpy())

    def _cam_model(self, params: Any) -> tuple[Any, Any] | None:
        from face2anime.models.classifiers import find_layer
        from face2anime.models.classify import load_classifier

        cfg = self.classifier_dir / "classifier.json"
        if not cfg.is_file():
            return None
        mtime = cfg.stat().st_mtime
        if self._cam is None or self._cam[0] != mtime:
            model = load_classifier("classifier", self.classifier_dir, "cpu")
            self._cam = (mtime, model, find_layer(model, params.cam.target_layer))
        return self._cam[1], self._cam[2]

    def convert(self, data: bytes, detect: bool = True) -> Result:
        """Upload bytes -> :class:`Result`; :class:`UploadRefused` for bad input (nothing is kept)."""
        img, conversions = decode_upload(data, self.max_pixels)
        methods = self.methods()
        if not methods:
            raise UploadRefused(409, f"no trained models under {self.cyclegan_dir}: run `dvc repro` first")
        import numpy as np

        from face2anime.data.facecrop import FaceCropper

        with self._lock:
            params = self.params()
            translators = {m: self._translator(m, params) for m in methods}
            size = next(iter(translators.values())).size
            first = next(iter(translators.values()))
            found = FaceCropper.for_model(first.config, params.resize)(img, size, detect)
            if not found.faces:
                small = f" ({found.too_small} too small to convert)" if found.too_small else ""
                raise UploadRefused(422, f"no face found in the photo{small}; if it already is a face crop, "
                                         "tick 'the photo is already a face crop'")
            def as_batch(faces: list[Image.Image], side: int) -> np.ndarray:
                """uint8 ``[N, 3, side, side]``."""
                return np.ascontiguousarray(np.stack([np.asarray(
                    f if f.size == (side, side) else f.resize((side, side), Image.Resampling.LANCZOS))
                    for f in faces]).transpose(0, 3, 1, 2))

            face = found.faces[0]
            result = Result(face=png(face), cam=None, conversions=conversions, faces_found=found.found,
                            too_small=found.too_small, over_limit=found.over_limit)
            per_method = {m: [png(Image.fromarray(a)) for a in self._avatars(tr, as_batch(found.faces, tr.size))]
                          for m, tr in translators.items()}
            result.avatars = [(m, imgs[0]) for m, imgs in per_method.items()]
            result.others = [(png(f), [(m, imgs[i]) for m, imgs in per_method.items()])
                             for i, f in enumerate(found.faces[1:], start=1)]
            cam_model = self._cam_model(params) if self.backend == "torch" else None   # the overlay needs torch
            if cam_model is not None:
                import torch
                from pytorch_grad_cam.utils.image import show_cam_on_image

                from face2anime.cam.maps import compute_cams
                from face2anime.models.classify import LABELS

                cams = compute_cams(cam_model[0], cam_model[1], torch.from_numpy(as_batch([face], size)),
                                    LABELS["human"], params.cam.method, require_signal=False)
                rgb = np.asarray(face, dtype=np.float32) / 255.0
                result.cam = png(Image.fromarray(show_cam_on_image(rgb, cams[0], use_rgb=True, image_weight=0.6)))
            if self.backend == "torch":
                result.heatmaps = [(m, png(learned_overlay(tr, face, as_batch([face], tr.size))))
                                   for m, tr in translators.items() if getattr(tr, "learned_cam", False)]
        return result


def learned_overlay(translator: Any, face: Image.Image, batch: Any) -> Image.Image:
    """The learned attention of a U-GAT-IT generator on ``face`` (``batch``: it as uint8
    ``[1, 3, S, S]``), upsampled to the face and laid over it like the Grad-CAM overlay."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from pytorch_grad_cam.utils.image import show_cam_on_image

    _, heat = translator.to_character_with_heatmaps(torch.from_numpy(batch))
    side = face.size[0]
    h = F.interpolate(heat.float(), size=(side, side), mode="bilinear", align_corners=False)[0, 0].numpy()
    rgb = np.asarray(face.convert("RGB"), dtype=np.float32) / 255.0
    return Image.fromarray(show_cam_on_image(rgb, np.clip(h, 0.0, 1.0), use_rgb=True, image_weight=0.6))
