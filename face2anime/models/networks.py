"""CycleGAN networks of the paper (tables 2 and 3, corrected), with optional CAM attention.

Generator (ResNet, ``n_res`` residual blocks), for an input of ``H x W`` (both divisible by 4):

==========  ============  ========  ======  ===========================  ===============
name        in -> out     kernel    stride  notes                        output
==========  ============  ========  ======  ===========================  ===============
conv0       3 -> ngf      7         1       reflection pad 3, IN, ReLU   ngf  x H   x W
conv1       ngf -> 2ngf   3         2       pad 1, IN, ReLU              2ngf x H/2 x W/2
conv2       2ngf -> 4ngf  3         2       pad 1, IN, ReLU              4ngf x H/4 x W/4
res0..      4ngf -> 4ngf  3 (x2)    1       reflection pad 1, IN, ReLU   4ngf x H/4 x W/4
conv3       4ngf -> 2ngf  3         2 up    ConvTranspose or resize+conv 2ngf x H/2 x W/2
conv4       2ngf -> ngf   3         2 up    ConvTranspose or resize+conv ngf  x H   x W
conv5       ngf -> 3      7         1       reflection pad 3, tanh       3    x H   x W
==========  ============  ========  ======  ===========================  ===============

PatchGAN discriminator (LeakyReLU 0.2, InstanceNorm after conv1..conv3; with ``blur=True``
a fixed [1, 2, 1] x [1, 2, 1] / 16 low-pass filter runs before each stride-2 conv, as
StyleGAN2's discriminator blurs before it downsamples):

=====  ==============  ======  ======  ===  ==========================
name   in -> out       kernel  stride  pad  output (H = 64 example)
=====  ==============  ======  ======  ===  ==========================
conv0  3 -> ndf        4       2       1    ndf  x H/2 (32)
conv1  ndf -> 2ndf     4       2       1    2ndf x H/4 (16)
conv2  2ndf -> 4ndf    4       2       1    4ndf x H/8 (8)
conv3  4ndf -> 8ndf    4       1       1    8ndf x (H/8 - 1) (7)
conv4  8ndf -> 1       3       1       1    1    x (H/8 - 1) (7)   (logits)
=====  ==============  ======  ======  ===  ==========================

CAM attention. Both networks take ``forward(x, cam=None)`` where ``cam`` is ``[B, 1, h, w]``
in [0, 1] (any h, w; it is resized bilinearly to the feature size where it is used) and
``attention_mode`` chooses the weight ``a`` derived from it:

* ``residual`` (default): ``a = 1 + cam``. ``cam = 0`` gives exactly the plain network, so
  features are emphasised (up to x2) where the CAM is strong and never switched off.
* ``multiply``: ``a = cam`` (the paper's literal "multiply the CAM into the features").
  ``cam = 1`` gives exactly the plain network.

Where it is applied:

* generator: inside every residual block, on the residual branch:
  ``h_out = h + a * F(h)`` where ``F`` = pad-conv-IN-ReLU-pad-conv-IN. The skip path is not
  weighted, so ``multiply`` mode with a small CAM turns a block towards the identity instead of
  erasing the features (weighting the block output instead would compound to ``cam ** n_res``).
* discriminator: on conv3's activated output, before conv4: ``logits = conv4(a * h3)``.

Sizes: the generator takes any H, W divisible by 4 (16, 32, 64, 128, 256 ...); the
discriminator needs H, W >= 24, so training needs images of at least 24 px (32 in practice).

``cam=None`` always runs the plain network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from face2anime.data.ops import filter2d

ATTENTION_MODES = ("residual", "multiply")
UPSAMPLES = ("transpose", "resize")


def cam_weight(cam: torch.Tensor | None, size: tuple[int, int], mode: str,
               dtype: torch.dtype) -> torch.Tensor | None:
    """The attention weight ``a`` for features of spatial ``size``: ``[B, 1, *size]`` or None.

    ``cam``: ``[B, 1, h, w]`` (or ``[B, h, w]``) in [0, 1]; resized bilinearly
    (``align_corners=False``) when its size differs from ``size``.
    """
    if cam is None:
        return None
    if cam.dim() == 3:
        cam = cam.unsqueeze(1)
    if cam.dim() != 4 or cam.shape[1] != 1:
        raise ValueError(f"cam must be [B, 1, h, w], got {tuple(cam.shape)}")
    cam = cam.float()
    if tuple(cam.shape[-2:]) != tuple(size):
        cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)
    if mode == "residual":
        a = 1.0 + cam
    elif mode == "multiply":
        a = cam
    else:
        raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {mode!r}")
    return a.to(dtype)


def _norm(ch: int) -> nn.Module:
    """CycleGAN's instance norm: no affine parameters, no running statistics."""
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """``h -> h + a * F(h)`` with ``F`` = pad-conv3x3-IN-ReLU-pad-conv3x3-IN; shape-preserving
    (``[B, C, h, w] -> [B, C, h, w]``). ``a`` = None means 1 (plain block)."""

    def __init__(self, ch: int):
        super().__init__()
        self.branch = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), _norm(ch),
        )

    def forward(self, h: torch.Tensor, a: torch.Tensor | None = None) -> torch.Tensor:
        r = self.branch(h)
        if a is not None:
            r = r * a
        return h + r


def _up(c_in: int, c_out: int, mode: str) -> list[nn.Module]:
    """A x2 upsampling 3x3 conv: ``transpose`` = ConvTranspose2d(stride 2, output_padding 1)
    (CycleGAN's); ``resize`` = nearest x2 then a 3x3 conv (no checkerboard artefacts,
    Odena et al. 2016). Same output shape and about the same cost."""
    if mode == "transpose":
        return [nn.ConvTranspose2d(c_in, c_out, 3, 2, 1, output_padding=1)]
    return [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(c_in, c_out, 3)]


class Generator(nn.Module):
    """ResNet generator ``[B, 3, H, W] -> [B, 3, H, W]`` in [-1, 1] (tanh); H, W divisible by 4.

    Args:
        ngf: width of conv0 (paper: 64); the residual blocks run at ``4 * ngf`` channels.
        n_res: number of residual blocks (paper: 4).
        attention_mode: ``residual`` (a = 1 + cam) or ``multiply`` (a = cam); see module doc.
        upsample: conv3/conv4 as ``transpose`` convs or ``resize`` (nearest x2 + conv).
    """

    def __init__(self, ngf: int = 64, n_res: int = 4, attention_mode: str = "residual",
                 upsample: str = "transpose"):
        super().__init__()
        if attention_mode not in ATTENTION_MODES:
            raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {attention_mode!r}")
        if upsample not in UPSAMPLES:
            raise ValueError(f"upsample must be one of {UPSAMPLES}, got {upsample!r}")
        self.ngf, self.n_res, self.attention_mode, self.upsample = ngf, n_res, attention_mode, upsample
        self.conv0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7), _norm(ngf), nn.ReLU(True))
        self.conv1 = nn.Sequential(nn.Conv2d(ngf, 2 * ngf, 3, 2, 1), _norm(2 * ngf), nn.ReLU(True))
        self.conv2 = nn.Sequential(nn.Conv2d(2 * ngf, 4 * ngf, 3, 2, 1), _norm(4 * ngf), nn.ReLU(True))
        self.res = nn.ModuleList(ResidualBlock(4 * ngf) for _ in range(n_res))
        self.conv3 = nn.Sequential(*_up(4 * ngf, 2 * ngf, upsample), _norm(2 * ngf), nn.ReLU(True))
        self.conv4 = nn.Sequential(*_up(2 * ngf, ngf, upsample), _norm(ngf), nn.ReLU(True))
        self.conv5 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh())

    def forward(self, x: torch.Tensor, cam: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, 3, H, W]`` in [-1, 1]; ``cam``: ``[B, 1, h, w]`` in [0, 1] or None."""
        h = self.conv2(self.conv1(self.conv0(x)))          # [B, 4ngf, H/4, W/4]
        a = cam_weight(cam, h.shape[-2:], self.attention_mode, h.dtype)
        for block in self.res:
            h = block(h, a)
        return self.conv5(self.conv4(self.conv3(h)))       # [B, 3, H, W]


def blur(x: torch.Tensor) -> torch.Tensor:
    """A fixed low-pass filter, [1, 2, 1] x [1, 2, 1] / 16 per channel with reflected borders:
    ``[B, C, H, W] -> [B, C, H, W]``."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    return filter2d(x, torch.outer(k, k) / 16, "reflect")


class BlurConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` that low-passes its input first (:func:`blur`): the same parameters,
    names and output shape as the plain conv, so state dicts are interchangeable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(blur(x))


class Discriminator(nn.Module):
    """PatchGAN ``[B, 3, H, W] -> [B, 1, floor(H/8) - 1, floor(W/8) - 1]`` logits.

    Needs H, W >= 24 (conv3's instance norm needs more than one spatial element).
    See the module doc for the layer table and attention.

    Args:
        ndf: width of conv0 (paper: 64).
        attention_mode: ``residual`` or ``multiply`` (module doc).
        blur: :func:`blur` before each stride-2 conv (conv0..conv2). A strided conv's
            gradient with respect to its input is a transposed conv, which tells the generator
            to change its pixels in a pattern of the stride's period; with the filter in front
            that gradient is low-passed, so the generator is not pushed towards fine periodic
            texture (Zhang 2019, "Making convolutional networks shift-invariant again"). Same
            output shape; the state dict is the plain network's.
    """

    def __init__(self, ndf: int = 64, attention_mode: str = "residual", blur: bool = False):
        super().__init__()
        if attention_mode not in ATTENTION_MODES:
            raise ValueError(f"attention_mode must be one of {ATTENTION_MODES}, got {attention_mode!r}")
        self.ndf, self.attention_mode, self.blur = ndf, attention_mode, blur
        lrelu = lambda: nn.LeakyReLU(0.2, True)  # noqa: E731

        down = BlurConv2d if blur else nn.Conv2d
        self.conv0 = nn.Sequential(down(3, ndf, 4, 2, 1), lrelu())
        self.conv1 = nn.Sequential(down(ndf, 2 * ndf, 4, 2, 1), _norm(2 * ndf), lrelu())
        self.conv2 = nn.Sequential(down(2 * ndf, 4 * ndf, 4, 2, 1), _norm(4 * ndf), lrelu())
        self.conv3 = nn.Sequential(nn.Conv2d(4 * ndf, 8 * ndf, 4, 1, 1), _norm(8 * ndf), lrelu())
        self.conv4 = nn.Conv2d(8 * ndf, 1, 3, 1, 1)

    def forward(self, x: torch.Tensor, cam: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: ``[B, 3, H, W]``; ``cam``: ``[B, 1, h, w]`` in [0, 1] or None -> logits."""
        h = self.conv3(self.conv2(self.conv1(self.conv0(x))))   # [B, 8ndf, H//8 - 1, W//8 - 1]
        a = cam_weight(cam, h.shape[-2:], self.attention_mode, h.dtype)
        if a is not None:
            h = h * a
        return self.conv4(h)


def init_weights(net: nn.Module, gen: torch.Generator, gain: float = 0.02) -> nn.Module:
    """CycleGAN's init: conv weights ~ N(0, gain), biases 0; drawn from ``gen`` (seeded)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * gain)
                if m.bias is not None:
                    m.bias.zero_()
    return net
