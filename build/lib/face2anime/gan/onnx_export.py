"""ONNX export of a trained method's photo-to-anime generator, CAM included.

One graph per method: uint8 face crops ``[B, 3, S, S]`` in, character images ``[B, 3, S, S]``
in [-1, 1] out. For an attention method the graph also holds the guiding classifier's trunk
and its Grad-CAM, which for this classifier has a closed form: the target layer is followed
only by global average pooling and one linear layer, so the gradient of the class logit
with respect to every position of feature map ``k`` is ``w[target, k] / (h w)`` and
Grad-CAM is ``relu(sum_k w[target, k] A_k)`` (up to that positive factor). The graph then
repeats what :class:`~face2anime.gan.inference.Translator` does with grad-cam's map:
min-max normalisation, bilinear resize to S (grad-cam's ``cv2.resize``), area average to
S/4, division by the peak and rounding to float16 (how CAMs are stored). Other CAM methods,
layers or classifier architectures have no closed form: exporting such a model is a
one-line error.

:func:`export_method` writes ``models/onnx/METHOD.onnx`` plus ``METHOD.json`` (size,
attention, the model's warnings, training framing), which is all that
:mod:`face2anime.deploy.onnx_runner` needs at run time: no PyTorch.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from face2anime.core.io import atomic_path, write_json
from face2anime.core.params import UserError
from face2anime.core.paths import ONNX_DIR
from face2anime.gan.inference import load_generator, model_warnings
from face2anime.models.classifiers import ConvNet
from face2anime.models.classify import LABELS, load_classifier

OPSET = 17


class ClosedFormGradCAM(nn.Module):
    """Grad-CAM of a :class:`ConvNet`'s last stage for one class, as the stored CAMs.

    Args:
        classifier: the guiding ConvNet (eval mode).
        target: the class index (``LABELS['human']`` for photos).
        size: the image side S; the output is ``[B, 1, S/4, S/4]`` with peak 1.
    """

    def __init__(self, classifier: ConvNet, target: int, size: int):
        super().__init__()
        self.trunk = classifier.trunk
        # the gradient of the logit w.r.t. each position of map k: w[target, k] / (h w), with h = w = S/4
        # (kept, not dropped as a positive factor: grad-cam's normalisation adds 1e-7 to the peak)
        grad = classifier.head.weight[target].detach().clone() / (size // 4) ** 2
        self.register_buffer("weight", grad.view(1, -1, 1, 1))
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.trunk(x)                                           # [B, C, S/4, S/4]
        cam = F.relu((a * self.weight).sum(1, keepdim=True))        # [B, 1, S/4, S/4]
        cam = cam - cam.amin((2, 3), keepdim=True)
        cam = cam / (cam.amax((2, 3), keepdim=True) + 1e-7)         # grad-cam's scale_cam_image
        full = F.interpolate(cam, size=(self.size, self.size), mode="bilinear", align_corners=False)
        small = F.avg_pool2d(full, 4)                               # cam.maps.downsample (S is a multiple of 4)
        small = small / small.amax((2, 3), keepdim=True).clamp_min(1e-8)
        return small.half().float()


class PhotoToAnime(nn.Module):
    """uint8 photos ``[B, 3, S, S]`` -> characters ``[B, 3, S, S]`` in [-1, 1] (CAM in the graph)."""

    def __init__(self, generator: nn.Module, cam: ClosedFormGradCAM | None):
        super().__init__()
        self.generator, self.cam = generator, cam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xin = x.float() / 127.5 - 1.0
        if self.cam is None:
            return self.generator(xin)
        return self.generator(xin, self.cam(xin))


def exportable(method: str, model_dir: Path, classifier_dir: Path, cam_method: str, cam_layer: str
               ) -> PhotoToAnime:
    """The module to export, or a UserError naming why this model has no closed-form CAM."""
    g = load_generator(model_dir, "XY", "cpu")
    size = int(g.image_size)
    if not g.attention:
        return PhotoToAnime(g, None).eval()
    clf = load_classifier("classifier", classifier_dir, "cpu")
    if not isinstance(clf, ConvNet) or cam_method != "gradcam" or cam_layer != "default":
        raise UserError(f"export {method}: only Grad-CAM on the ConvNet's default layer has a closed form "
                        f"(got cam.method={cam_method}, cam.target_layer={cam_layer}, "
                        f"classifier {type(clf).__name__}); the ONNX graph cannot hold this CAM")
    return PhotoToAnime(g, ClosedFormGradCAM(clf, LABELS["human"], size)).eval()


def export_method(method: str, cyclegan_dir: Path, classifier_dir: Path, out_dir: Path = ONNX_DIR,
                  cam_method: str = "gradcam", cam_layer: str = "default") -> dict[str, Any]:
    """Write ``out_dir/METHOD.onnx`` and ``METHOD.json``; returns the JSON's content."""
    model_dir = Path(cyclegan_dir) / method
    module = exportable(method, model_dir, classifier_dir, cam_method, cam_layer)
    config = module.generator.config
    size = int(config["size"])
    example = torch.zeros(1, 3, size, size, dtype=torch.uint8)
    out_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = out_dir / f"{method}.onnx"
    with atomic_path(onnx_path) as tmp, torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes on shape checks that are constant for one export size, and the
        # TorchScript exporter's deprecation notice: noise for a user, nothing to act on
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (example,), str(tmp), dynamo=False, opset_version=OPSET,
                          input_names=["photo"], output_names=["character"],
                          dynamic_axes={"photo": {0: "batch"}, "character": {0: "batch"}})
    meta = {"method": method, "size": size, "attention": bool(config["attention"]),
            "input": "photo: uint8 [B, 3, S, S] RGB face crops", "output": "character: float32 [B, 3, S, S] in [-1, 1]",
            "training_data": config.get("training_data"), "warnings": model_warnings(config),
            "opset": OPSET}
    write_json(out_dir / f"{method}.json", meta)
    return meta


def max_difference(method: str, onnx_dir: Path, translator: Any, photos: torch.Tensor) -> float:
    """Largest |onnxruntime - PyTorch| over ``photos`` (uint8 ``[N, 3, S, S]``), in [-1, 1] units."""
    from face2anime.deploy.onnx_runner import OnnxTranslator

    ort = OnnxTranslator(onnx_dir, method)
    got = torch.from_numpy(ort.to_character(photos.numpy()))
    want = translator.to_character(photos)
    return float((got - want).abs().max())

