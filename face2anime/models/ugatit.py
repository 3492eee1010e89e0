"""U-GAT-IT *light* (Kim et al., ICLR 2020): a generator and discriminators that learn their
own CAM attention, written from the description in issue 24 (no external code).

Generator ``[B, 3, H, W] -> (image [B, 3, H, W] in [-1, 1], cam_logits [B, 2], heatmap
[B, 1, H/4, W/4])`` (H, W divisible by 4); with ``C = 4 * ngf``:

==============  =================  ==========================================  ================
part            in -> out          layers                                      output
==============  =================  ==========================================  ================
encoder         3 -> ngf           reflection pad 3, conv 7x7, IN, ReLU        ngf x H x W
                ngf -> 2ngf        conv 3x3 stride 2, IN, ReLU                 2ngf x H/2
                2ngf -> C          conv 3x3 stride 2, IN, ReLU                 C x H/4
                C -> C             ``n_res`` residual blocks (IN)              C x H/4
CAM             C -> C             see :class:`CAMAttention` (ReLU)            C x H/4, [B, 2]
light MLP       C -> 2 x C         GAP, (Linear C->C, ReLU) x 2, gamma, beta   [B, C] each
decoder         C -> C             ``n_res`` AdaLIN residual blocks            C x H/4
                C -> 2ngf          nearest x2, conv 3x3, ILN, ReLU             2ngf x H/2
                2ngf -> ngf        nearest x2, conv 3x3, ILN, ReLU             ngf x H
                ngf -> 3           reflection pad 3, conv 7x7, tanh            3 x H x W
==============  =================  ==========================================  ================

The *light* MLP global-average-pools the attended features before its first layer, so that
layer is ``C -> C`` instead of ``(H/4 * W/4 * C) -> C``: at 256 px, ngf 64 and 4 residual
blocks the generator has about 10.6M parameters (the full one about 279M).

Normalisations (per image, so a batch can be split or joined freely):

* ILN: ``rho * IN(h) + (1 - rho) * LN(h)``, then a learned per-channel ``gamma``/``beta``
  (rho a learned per-channel parameter, initialised 0).
* AdaLIN: the same mix with rho initialised 0.9, and ``gamma``/``beta`` ``[B, C]`` coming from
  the light MLP. Every rho must stay in [0, 1]: :func:`clip_rho` after every optimiser step.

Discriminator (one scale) ``[B, 3, H, W] -> (patch_logits [B, 1, h', w'], cam_logits [B, 2],
heatmap [B, 1, h, w])``, LeakyReLU 0.2, spectral norm on every conv and linear, no norm:
``n_down`` reflection-padded 4x4 stride-2 convs (``ndf`` then doubling: features
``ndf * 2**(n_down-1)`` at ``H / 2**n_down``), one 4x4 stride-1 conv doubling again
(``K = ndf * 2**n_down`` channels, ``h = H / 2**n_down - 1``), the CAM module (LeakyReLU)
and a final 4x4 stride-1 conv to one channel (``h' = h - 1``).

Depth vs image size. At 256 px the authors' global D has ``n_down = 5`` (a 7-conv net,
output 6x6) and the local D ``n_down = 3`` (5 convs, output 30x30). Smaller images would run
out of pixels, so :func:`d_depths` scales them: the global D downsamples
``clamp(floor(log2(H)) - 3, 1, 5)`` times (features of at least 8 px where the image allows:
64 px -> 3, 32 px -> 2) and the local D two times fewer, at least once (256 -> 3, 64 -> 1,
32 -> 1). At 256 px both are the authors' depths.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

EPS = 1e-5
#: rho's initial value in AdaLIN (decoder residual blocks) and in ILN (upsampling)
RHO_ADALIN, RHO_ILN = 0.9, 0.0


def _in(ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch, affine=False, track_running_stats=False)


def _mix(h: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """``rho * IN(h) + (1 - rho) * LN(h)`` for ``h`` ``[B, C, H, W]`` and ``rho`` ``[1, C, 1, 1]``
    (biased variances, computed in fp32)."""
    hf = h.float()
    i_mean, i_var = hf.mean((2, 3), keepdim=True), hf.var((2, 3), keepdim=True, unbiased=False)
    l_mean, l_var = hf.mean((1, 2, 3), keepdim=True), hf.var((1, 2, 3), keepdim=True, unbiased=False)
    h_in = (hf - i_mean) / torch.sqrt(i_var + EPS)
    h_ln = (hf - l_mean) / torch.sqrt(l_var + EPS)
    r = rho.float()
    return (r * h_in + (1 - r) * h_ln).to(h.dtype)


class ILN(nn.Module):
    """Instance-layer norm with learned rho, gamma, beta (``[1, C, 1, 1]`` each); shape-preserving."""

    def __init__(self, ch: int, rho: float = RHO_ILN):
        super().__init__()
        self.rho = nn.Parameter(torch.full((1, ch, 1, 1), rho))
        self.gamma = nn.Parameter(torch.ones(1, ch, 1, 1))
        self.beta = nn.Parameter(torch.zeros(1, ch, 1, 1))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return _mix(h, self.rho) * self.gamma.to(h.dtype) + self.beta.to(h.dtype)


class AdaLIN(nn.Module):
    """Adaptive ILN: learned rho ``[1, C, 1, 1]`` (init 0.9); ``gamma``, ``beta`` ``[B, C]`` given."""

    def __init__(self, ch: int, rho: float = RHO_ADALIN):
        super().__init__()
        self.rho = nn.Parameter(torch.full((1, ch, 1, 1), rho))

    def forward(self, h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return _mix(h, self.rho) * gamma[:, :, None, None].to(h.dtype) + beta[:, :, None, None].to(h.dtype)


def clip_rho(net: nn.Module) -> None:
    """Clamp every ILN/AdaLIN rho of ``net`` to [0, 1] in place (call after each optimiser step)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (ILN, AdaLIN)):
                m.rho.clamp_(0.0, 1.0)


class ResBlock(nn.Module):
    """``h + F(h)``, ``F`` = pad-conv3x3-IN-ReLU-pad-conv3x3-IN (no conv bias); ``[B, C, h, w]`` kept."""

    def __init__(self, ch: int):
        super().__init__()
        self.branch = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), _in(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3, bias=False), _in(ch))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.branch(h)


class AdaLINBlock(nn.Module):
    """``h + F(h)``, ``F`` = pad-conv3x3-AdaLIN-ReLU-pad-conv3x3-AdaLIN with the given gamma/beta ``[B, C]``."""

    def __init__(self, ch: int):
        super().__init__()
        self.pad = nn.ReflectionPad2d(1)
        self.conv1, self.norm1 = nn.Conv2d(ch, ch, 3, bias=False), AdaLIN(ch)
        self.conv2, self.norm2 = nn.Conv2d(ch, ch, 3, bias=False), AdaLIN(ch)

    def forward(self, h: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        r = F.relu(self.norm1(self.conv1(self.pad(h)), gamma, beta))
        return h + self.norm2(self.conv2(self.pad(r)), gamma, beta)


class CAMAttention(nn.Module):
    """U-GAT-IT's CAM module on features ``h`` ``[B, C, h, w]``.

    Global average and global max pooling (``[B, C]`` each) feed bias-free ``Linear(C -> 1)``
    classifiers (the "source vs target" logits, ``[B, 2]`` = [GAP, GMP]); each classifier's
    weights ``w`` ``[C]`` rescale the channels (``h * w[c]``), the two rescaled maps are
    concatenated (:meth:`weighted`, ``[B, 2C, h, w]``) and a 1x1 conv ``2C -> C`` plus the
    activation gives the attended features ``[B, C, h, w]``. The heatmap is their channel sum
    ``[B, 1, h, w]``, detached (it is for pictures only).

    ``sn``: spectral norm on the linears and the conv (the discriminators'); ``slope``: 0 for
    ReLU (generator), 0.2 for LeakyReLU (discriminators).
    """

    def __init__(self, ch: int, sn: bool = False, slope: float = 0.0):
        super().__init__()
        wrap = spectral_norm if sn else (lambda m: m)
        self.gap_fc = wrap(nn.Linear(ch, 1, bias=False))
        self.gmp_fc = wrap(nn.Linear(ch, 1, bias=False))
        self.conv = wrap(nn.Conv2d(2 * ch, ch, 1))
        self.slope = slope

    def weighted(self, h: torch.Tensor) -> torch.Tensor:
        """``[h * w_gap; h * w_gmp]`` ``[B, 2C, h, w]``: the channels rescaled by the classifiers' weights."""
        w_gap = self.gap_fc.weight.reshape(1, -1, 1, 1).to(h.dtype)
        w_gmp = self.gmp_fc.weight.reshape(1, -1, 1, 1).to(h.dtype)
        return torch.cat([h * w_gap, h * w_gmp], 1)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``h`` ``[B, C, h, w]`` -> (attended ``[B, C, h, w]``, logits ``[B, 2]``, heatmap ``[B, 1, h, w]``)."""
        logits = torch.cat([self.gap_fc(h.mean((2, 3))), self.gmp_fc(h.amax((2, 3)))], 1)
        a = F.leaky_relu(self.conv(self.weighted(h)), self.slope) if self.slope else F.relu(self.conv(self.weighted(h)))
        return a, logits, a.detach().sum(1, keepdim=True)


class Generator(nn.Module):
    """U-GAT-IT light generator; see the module doc for the layer table.

    Args:
        ngf: width of the first conv (authors: 64); the bottleneck runs at ``4 * ngf``.
        n_res: residual blocks in the encoder and AdaLIN blocks in the decoder (authors: 4).
    """

    def __init__(self, ngf: int = 64, n_res: int = 4):
        super().__init__()
        c = 4 * ngf
        self.ngf, self.n_res = ngf, n_res
        self.encoder = nn.Sequential(
            nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=False), _in(ngf), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ngf, 2 * ngf, 3, 2, bias=False), _in(2 * ngf), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(2 * ngf, c, 3, 2, bias=False), _in(c), nn.ReLU(True),
            *(ResBlock(c) for _ in range(n_res)))
        self.cam = CAMAttention(c)
        self.mlp = nn.Sequential(nn.Linear(c, c, bias=False), nn.ReLU(True), nn.Linear(c, c, bias=False), nn.ReLU(True))
        self.gamma = nn.Linear(c, c, bias=False)
        self.beta = nn.Linear(c, c, bias=False)
        self.blocks = nn.ModuleList(AdaLINBlock(c) for _ in range(n_res))
        up: list[nn.Module] = []
        for cin in (c, 2 * ngf):
            up += [nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1),
                   nn.Conv2d(cin, cin // 2, 3, bias=False), ILN(cin // 2), nn.ReLU(True)]
        self.decoder = nn.Sequential(*up, nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7, bias=False), nn.Tanh())

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` ``[B, 3, H, W]`` in [-1, 1] -> (image ``[B, 3, H, W]``, CAM logits ``[B, 2]``,
        heatmap ``[B, 1, H/4, W/4]``). Logit > 0: "this input is of my source domain"."""
        h, logits, heat = self.cam(self.encoder(x))        # [B, C, H/4, W/4]
        s = self.mlp(h.mean((2, 3)))                        # light: GAP first, [B, C]
        gamma, beta = self.gamma(s), self.beta(s)
        for block in self.blocks:
            h = block(h, gamma, beta)
        return self.decoder(h), logits, heat


def d_depths(size: int) -> tuple[int, int]:
    """(global, local) discriminator downsamplings for ``size`` px images (module doc)."""
    n_global = min(5, max(1, int(math.floor(math.log2(size))) - 3))
    return n_global, max(1, n_global - 2)


class Discriminator(nn.Module):
    """One U-GAT-IT discriminator with ``n_down`` stride-2 convs (module doc):
    ``[B, 3, H, W] -> (patch logits [B, 1, H/2**n_down - 2, ...], CAM logits [B, 2],
    heatmap [B, 1, H/2**n_down - 1, ...])``. Needs ``H / 2**n_down >= 3``."""

    def __init__(self, ndf: int = 64, n_down: int = 5):
        super().__init__()
        self.ndf, self.n_down = ndf, n_down
        layers: list[nn.Module] = []
        cin, cout = 3, ndf
        for _ in range(n_down):
            layers += [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(cin, cout, 4, 2)), nn.LeakyReLU(0.2, True)]
            cin, cout = cout, 2 * cout
        layers += [nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(cin, cout, 4, 1)), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.cam = CAMAttention(cout, sn=True, slope=0.2)
        self.head = nn.Sequential(nn.ReflectionPad2d(1), spectral_norm(nn.Conv2d(cout, 1, 4, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, logits, heat = self.cam(self.features(x))
        return self.head(h), logits, heat


class DomainDiscriminator(nn.Module):
    """A domain's global and local discriminator (:func:`d_depths` for ``size``):
    ``x -> ((patch, cam, heat) of the global D, (patch, cam, heat) of the local D)``."""

    def __init__(self, ndf: int, size: int):
        super().__init__()
        n_global, n_local = d_depths(size)
        self.glob = Discriminator(ndf, n_global)
        self.local = Discriminator(ndf, n_local)

    def forward(self, x: torch.Tensor, cam: torch.Tensor | None = None
                ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """``cam`` must be None (called like the CycleGAN discriminator, which takes a CAM)."""
        if cam is not None:
            raise ValueError("a U-GAT-IT discriminator takes no CAM: it learns its own attention")
        return self.glob(x), self.local(x)


def build(ngf: int, ndf: int, n_res: int, size: int, seed: int) -> dict[str, nn.Module]:
    """``G_XY``, ``G_YX``, ``D_X``, ``D_Y`` with torch's default initialisation, drawn from a
    private RNG seeded by ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return {"G_XY": Generator(ngf, n_res), "G_YX": Generator(ngf, n_res),
                "D_X": DomainDiscriminator(ndf, size), "D_Y": DomainDiscriminator(ndf, size)}


class ImageOnly(nn.Module):
    """A U-GAT-IT generator called like the CycleGAN one: ``g(x, cam=None) -> image``.

    Its state dict is the wrapped generator's (same keys); :meth:`heatmap` gives the learned
    CAM heatmap ``[B, 1, H/4, W/4]`` of ``x``, and :attr:`net` the generator itself.
    """

    def __init__(self, net: Generator):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, cam: torch.Tensor | None = None) -> torch.Tensor:
        if cam is not None:
            raise ValueError("a U-GAT-IT generator takes no CAM: it learns its own attention")
        return self.net(x)[0]

    def heatmap(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[2]

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.net.load_state_dict(state, strict=strict, assign=assign)
