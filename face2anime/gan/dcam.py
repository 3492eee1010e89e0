"""The discriminator's own CAM (``cyclegan.train.d_cam: self``), computed on the fly.

With ``d_cam: source`` a discriminator sees real images weighted by their *own* CAM but
generated images weighted by the CAM of their *source* (a human CAM on a fake character):
the weighting pattern alone tells real from fake, a shortcut that lets D win without
judging the image. ``self`` gives every image D looks at, real or generated, the CAM of
*that* image for D's class, from the frozen guiding classifier, computed the same way for
both, so the pattern carries no label.

The guiding classifiers (``ConvNet`` and ``ResNet18`` of :mod:`face2anime.models.classifiers`)
end in global average pooling and one linear layer. For them Grad-CAM on the CAM layer (the
``cam`` stage's default) has a closed form: the gradient of logit ``c`` with respect to the
activation ``A[k, i, j]`` is ``W[c, k] / (h w)`` everywhere, so the Grad-CAM weights are
``W[c] / (h w)`` and ``CAM = relu(sum_k W[c, k] A_k) / (h w)`` (Zhou et al.'s CAM). That is one
forward pass, no backward, no hooks, traceable by torch.compile. Each map is min-max
normalised like the grad-cam package does, then resized bilinearly to D's feature size.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from face2anime.data.images import gather_rows, to_model
from face2anime.models.classifiers import ConvNet, ResNet18


def cam_activations(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The classifier's CAM-layer activations ``[B, K, h, w]`` (its default Grad-CAM layer)."""
    if isinstance(model, ConvNet):
        return model.trunk(x)
    if isinstance(model, ResNet18):
        n = model.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))
    raise TypeError(f"d_cam 'self' needs a ConvNet or ResNet18 classifier, got {type(model).__name__}")


def head_weight(model: nn.Module) -> torch.Tensor:
    """The final linear layer's weight ``[classes, K]``."""
    return model.head.weight if isinstance(model, ConvNet) else model.net.fc.weight  # type: ignore[union-attr]


def self_cam(model: nn.Module, x: torch.Tensor, target: int, size: int) -> torch.Tensor:
    """Grad-CAM of ``model`` (eval mode, frozen) for class ``target`` on images ``x`` in [-1, 1]:
    ``[B, 1, size, size]`` in [0, 1], detached (computed without autograd)."""
    with torch.no_grad():
        a = cam_activations(model, x.float())
        w = head_weight(model)[target].to(a.dtype)
        cam = F.relu(torch.einsum("bkhw,k->bhw", a, w)) / (a.shape[-1] * a.shape[-2])
        lo = cam.amin(dim=(1, 2), keepdim=True)
        cam = cam - lo
        cam = cam / (cam.amax(dim=(1, 2), keepdim=True) + 1e-7)
        return F.interpolate(cam[:, None], size=(size, size), mode="bilinear", align_corners=False)


def load_cam_net(classifier_dir: Path) -> nn.Module:
    """The frozen guiding classifier (``d_cam: self``)."""
    from face2anime.models.classify import load_classifier

    net = load_classifier("classifier", classifier_dir)
    head_weight(net)  # a ConvNet or ResNet18 (GAP + linear head), else a clear error below
    return net


def self_cams(net: nn.Module, images: torch.Tensor, label: int, size: int, batch: int = 256) -> torch.Tensor:
    """The classifier's CAM (see :mod:`face2anime.gan.dcam`) of uint8 ``images`` for ``label``:
    ``[n, 1, size, size]`` on the CPU, fp32."""
    return torch.cat([self_cam(net, to_model(gather_rows(images, range(i, min(i + batch, len(images))))),
                                    label, size) for i in range(0, len(images), batch)])
