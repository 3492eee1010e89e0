"""Small CNNs trained from scratch: the human-vs-character classifier that guides the
method (its Grad-CAM), the independent *judge* that grades translations, and the
attribute predictor used by evaluation.

All take images in [-1, 1], ``[B, 3, S, S]`` for any ``S`` divisible by ``2 ** len(widths)``
(``pool`` stages), and share one trunk design (:class:`ConvNet`) configured differently.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

ARCHS = ("convnet", "resnet18")


class ConvNet(nn.Module):
    """Stages of two 3x3 conv+BN+ReLU layers; a 2x2 max-pool *between* stages.

    With ``widths=(16, 32, 64)`` the last stage runs at S/4, so Grad-CAM on ``cam_layer``
    (the last stage) has S/4 x S/4 resolution, matching the CycleGAN residual blocks.
    ``features(x)`` -> ``[B, widths[-1]]`` (global average pool); ``forward(x)`` -> logits
    ``[B, n_classes]``.
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 64), n_classes: int = 2, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for i, w in enumerate(widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [
                nn.Conv2d(c_in, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
                nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
            ]
            c_in = w
        self.trunk = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(c_in, n_classes)
        self.n_features = c_in

    @property
    def cam_layer(self) -> nn.Module:
        """Default Grad-CAM target: the last ReLU of the last stage."""
        return self.trunk[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.trunk(x)), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.features(x)))


class ResNet18(nn.Module):
    """torchvision ResNet-18 (``weights=None``) with the ConvNet interface."""

    def __init__(self, n_classes: int = 2):
        super().__init__()
        import torchvision   # here: importing torchvision costs ~1 s per stage process

        self.net = torchvision.models.resnet18(weights=None, num_classes=n_classes)
        self.n_features = self.net.fc.in_features

    @property
    def cam_layer(self) -> nn.Module:
        return self.net.layer4

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        x = n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return torch.flatten(n.avgpool(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))


class AttributePredictor(nn.Module):
    """A ConvNet trunk with one linear head per attribute.

    ``forward(x)`` -> dict ``{attribute: logits [B, n_values]}``.
    """

    def __init__(self, n_values: dict[str, int], widths: Sequence[int] = (16, 32, 64)):
        super().__init__()
        self.trunk = ConvNet(widths, n_classes=1)
        self.heads = nn.ModuleDict({a: nn.Linear(self.trunk.n_features, n) for a, n in n_values.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.trunk.features(x)
        return {a: h(f) for a, h in self.heads.items()}


def build_classifier(arch: str, widths: Sequence[int], dropout: float = 0.0, n_classes: int = 2) -> nn.Module:
    """A classifier (0 = human, 1 = character, and 2 = junk for the judge with ``n_classes=3``)
    of the given architecture."""
    if arch == "convnet":
        return ConvNet(widths, n_classes, dropout)
    if arch == "resnet18":
        return ResNet18(n_classes)
    raise ValueError(f"unknown arch {arch!r}")


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """``'default'`` -> the model's ``cam_layer``; else a dotted submodule name (e.g. ``trunk.11``)."""
    if name == "default":
        return model.cam_layer  # type: ignore[return-value]
    modules = dict(model.named_modules())
    if name not in modules:
        convs = [n for n, m in modules.items() if isinstance(m, (nn.Conv2d, nn.ReLU, nn.Sequential)) and n]
        raise KeyError(f"no layer named {name!r}; some choices: {', '.join(convs[-8:])}")
    return modules[name]
