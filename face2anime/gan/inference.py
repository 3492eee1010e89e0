"""Running a trained method: human <-> character translation with its CAM attention.

Attention methods need the CAM of each *input* image at inference too (as in training),
computed by the guiding classifier with the same CAM method as the ``cam`` stage and
stored at the same resolution. :class:`Translator` hides that, so translate, evaluate and
``face2anime convert`` all run a method the same way.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from face2anime.cam.maps import compute_cams, downsample
from face2anime.core.io import torch_load
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.core.paths import CYCLEGAN_DIR
from face2anime.core.runtime import autocast, pick_device
from face2anime.data.images import to_model
from face2anime.models.classifiers import find_layer
from face2anime.models.classify import LABELS, load_classifier
from face2anime.core.paths import CLASSIFIER_DIR
from face2anime.models.networks import Generator
from face2anime.models.ugatit import Generator as UGATITGenerator, ImageOnly



def load_generator(model_dir: Path, direction: str = "XY", device: str | torch.device = "cpu") -> nn.Module:
    """The trained generator ``G_XY`` (human -> character) or ``G_YX`` of ``model_dir``, in eval mode.

    The module gets attributes ``attention`` (bool: call it as ``G(x, cam)`` with the source's
    CAM ``[B, 1, h, w]``), ``image_size`` and ``config`` (config.json as a dict). A U-GAT-IT
    model (config ``model: ugatit``) comes as :class:`~face2anime.models.ugatit.ImageOnly`:
    ``G(x)`` is the image, ``G.heatmap(x)`` its learned CAM heatmap.
    """
    if direction not in ("XY", "YX"):
        raise ValueError(f"direction must be 'XY' or 'YX', got {direction!r}")
    cfg_path = Path(model_dir) / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path} not found: train the model first (dvc repro train_cyclegan)")
    config = json.loads(cfg_path.read_text())
    net: nn.Module
    if config.get("model", "cyclegan") == "ugatit":   # models trained before U-GAT-IT have no "model"
        net = ImageOnly(UGATITGenerator(int(config["ngf"]), int(config["n_res"])))
    else:
        net = Generator(int(config["ngf"]), int(config["n_res"]), str(config["attention_mode"]),
                        str(config.get("upsample", "transpose")))
    net.load_state_dict(torch_load(Path(model_dir) / f"G_{direction}.pt"))
    net.to(device).eval()
    net.attention = bool(config["attention"])  # type: ignore[assignment]
    net.image_size = int(config["size"])  # type: ignore[assignment]
    net.config = config  # type: ignore[assignment]
    return net


SMALL_MODEL_PX = 128   # models below this size get a "coarse avatar" warning


def model_warnings(config: dict) -> list[str]:
    """One-line warnings about a trained model (its config.json) that a user converting real
    photos must see: trained on synthetic faces, at a small size, or flagged as collapsing."""
    out = []
    data = config.get("training_data") or {}
    if data.get("source") == "synthetic":
        kind = "photo-like synthetic" if data.get("photo_like") else "synthetic"
        out.append(f"this model was trained on {kind} faces (download.source: synthetic), not on photos: "
                   "a real photo will not translate well; train on your own data (docs/real-data.md)")
    size = config.get("size")
    if isinstance(size, int) and size < SMALL_MODEL_PX:
        out.append(f"this model runs at {size} px (resize.size): avatars are upscaled from {size} px and look "
                   f"coarse; the paper's size is 256 px (docs/paper-profile.md)")
    if config.get("collapsed"):
        reasons = "; ".join(config.get("collapse_reasons") or []) or "see its metrics"
        out.append(f"training of this model was flagged as collapsing ({reasons}): expect noise, not a face; "
                   "try cyclegan.train.diffaug and snapshot: best (docs/real-data.md)")
    return out


class Translator:
    """Both generators of one trained method, plus the CAM machinery it needs.

    All images in/out are ``[B, 3, S, S]``: inputs uint8, outputs float in [-1, 1].
    """

    def __init__(self, model_dir: Path, device: torch.device, cam_method: str = "gradcam",
                 cam_layer: str = "default", classifier_dir: Path = CLASSIFIER_DIR, precision: str = "fp32"):
        self.device = device
        self.g_xy = load_generator(model_dir, "XY", device)
        self.g_yx = load_generator(model_dir, "YX", device)
        self.attention = bool(self.g_xy.attention)
        #: U-GAT-IT: the generator has its own (learned) CAM
        self.learned_cam = isinstance(self.g_xy, ImageOnly)
        self.size = int(self.g_xy.image_size)
        self.config: dict = self.g_xy.config
        self.warnings = model_warnings(self.config)
        self.precision = precision
        self.cam_method = cam_method
        if self.attention:
            self.classifier = load_classifier("classifier", classifier_dir, device)
            self.layer = find_layer(self.classifier, cam_layer)

    @classmethod
    def from_params(cls, method: str, params: ParamsFile, cyclegan_dir: Path = CYCLEGAN_DIR,
                    classifier_dir: Path = CLASSIFIER_DIR) -> "Translator":
        return cls(cyclegan_dir / method, pick_device(params.device), params.cam.method,
                   params.cam.target_layer, classifier_dir)

    def cams(self, x: torch.Tensor, domain: str) -> torch.Tensor | None:
        """CAMs ``[B, 1, S/4, S/4]`` of uint8 images of ``domain`` for its own class (None without attention)."""
        if not self.attention:
            return None
        full = compute_cams(self.classifier, self.layer, x, LABELS[domain], self.cam_method,
                            require_signal=False)
        return torch.from_numpy(downsample(full, self.size // 4)).float()[:, None].to(self.device)

    @torch.no_grad()
    def _run(self, g: torch.nn.Module, x: torch.Tensor, cam: torch.Tensor | None) -> torch.Tensor:
        xin = (to_model(x) if x.dtype == torch.uint8 else x).to(self.device)
        with autocast(self.device, self.precision):
            out = g(xin, cam) if cam is not None else g(xin)
        return out.float().cpu()

    def to_character(self, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Human uint8 images -> character images in [-1, 1]."""
        return self._batched(self.g_xy, x, "human", batch_size)

    def to_human(self, y: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """Character uint8 images -> human images in [-1, 1]."""
        return self._batched(self.g_yx, y, "character", batch_size)

    def cycle(self, x: torch.Tensor, domain: str, batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """(translation, reconstruction) in [-1, 1]; the way back uses the *source's* CAM, as in training."""
        fwd, back = (self.g_xy, self.g_yx) if domain == "human" else (self.g_yx, self.g_xy)
        outs, recs = [], []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            cam = self.cams(xb, domain)
            t = self._run(fwd, xb, cam)
            outs.append(t)
            recs.append(self._run(back, t, cam))
        return torch.cat(outs), torch.cat(recs)

    def reconstruct(self, y: torch.Tensor, source: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
        """``G_YX(y)`` in [-1, 1] for uint8 images ``y`` that stand in for translations of the uint8
        human ``source`` images (same order), with the source's CAM as :meth:`cycle` uses: the
        way back of a cycle for any image in place of ``G_XY(source)``."""
        return torch.cat([self._run(self.g_yx, y[i:i + batch_size], self.cams(source[i:i + batch_size], "human"))
                          for i in range(0, len(y), batch_size)])

    @torch.no_grad()
    def _run_learned(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """U-GAT-IT's ``G_XY`` on uint8 humans -> (image, learned heatmap ``[B, 1, S/4, S/4]``)."""
        with autocast(self.device, self.precision):
            img, _, heat = self.g_xy.net(to_model(x).to(self.device))
        return img.float().cpu(), heat.float().cpu()

    def to_character_with_heatmaps(self, x: torch.Tensor, batch_size: int = 64
                                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Human uint8 images -> (characters in [-1, 1], the attention heatmaps ``[B, 1, S/4, S/4]``
        in [0, 1], each scaled to its own min..max: U-GAT-IT's learned CAM, an attention method's
        Grad-CAM, None for a method without attention)."""
        outs, heats = [], []
        for i in range(0, len(x), batch_size):
            xb = x[i:i + batch_size]
            if self.learned_cam:
                img, heat = self._run_learned(xb)
            else:
                cam = self.cams(xb, "human")
                img, heat = self._run(self.g_xy, xb, cam), None if cam is None else cam.float().cpu()
            outs.append(img)
            heats.append(heat)
        if heats[0] is None:
            return torch.cat(outs), None
        h = torch.cat(heats)
        lo, hi = h.amin((1, 2, 3), keepdim=True), h.amax((1, 2, 3), keepdim=True)
        return torch.cat(outs), (h - lo) / (hi - lo).clamp_min(1e-8)

    def _batched(self, g: torch.nn.Module, x: torch.Tensor, domain: str, batch_size: int) -> torch.Tensor:
        return torch.cat([self._run(g, x[i:i + batch_size], self.cams(x[i:i + batch_size], domain))
                          for i in range(0, len(x), batch_size)])
