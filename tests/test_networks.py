"""Shapes and CAM-attention identities of the CycleGAN networks (tiny widths and sizes)."""
from __future__ import annotations

import pytest
import torch

from face2anime.models.networks import (
    Discriminator,
    Generator,
    cam_weight,
    init_weights,
)


def _net(cls, *args):
    torch.manual_seed(0)
    return init_weights(cls(*args), torch.Generator().manual_seed(0)).eval()


@pytest.mark.parametrize("size", [16, 32, 64])
@pytest.mark.parametrize("ngf,n_res", [(4, 0), (8, 2)])
@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_generator_shape(size: int, ngf: int, n_res: int, upsample: str) -> None:
    g = _net(Generator, ngf, n_res, "residual", upsample)
    x = torch.rand(2, 3, size, size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0
    # the residual blocks run at 4*ngf channels and size/4
    h = g.conv2(g.conv1(g.conv0(x)))
    assert h.shape == (2, 4 * ngf, size // 4, size // 4)


def test_generator_non_square_and_cam_of_other_size() -> None:
    g = _net(Generator, 4, 1)
    x = torch.rand(1, 3, 32, 48)
    assert g(x, torch.rand(1, 1, 5, 5)).shape == x.shape


@pytest.mark.parametrize("size", [24, 32, 36, 64, 128])
@pytest.mark.parametrize("ndf", [4, 8])
def test_discriminator_shape(size: int, ndf: int) -> None:
    d = _net(Discriminator, ndf)
    out = d(torch.rand(3, 3, size, size))
    assert out.shape == (3, 1, size // 8 - 1, size // 8 - 1)
    # with a CAM too (any CAM size; resized to the conv3 map)
    assert d(torch.rand(3, 3, size, size), torch.rand(3, 1, size // 4, size // 4)).shape == out.shape


@pytest.mark.parametrize("mode,neutral", [("residual", 0.0), ("multiply", 1.0)])
def test_neutral_cam_equals_plain_network(mode: str, neutral: float) -> None:
    g, d = _net(Generator, 4, 2, mode), _net(Discriminator, 4, mode)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    cam = torch.full((2, 1, 8, 8), neutral)
    assert torch.equal(g(x, cam), g(x))
    assert torch.equal(d(x, cam), d(x))
    # a CAM of another size is resized; a constant stays the same constant
    assert torch.equal(g(x, torch.full((2, 1, 3, 3), neutral)), g(x))


@pytest.mark.parametrize("mode", ["residual", "multiply"])
def test_cam_changes_output(mode: str) -> None:
    g, d = _net(Generator, 4, 2, mode), _net(Discriminator, 4, mode)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    cam = torch.rand(2, 1, 8, 8)
    assert not torch.allclose(g(x, cam), g(x))
    assert not torch.allclose(d(x, cam), d(x))


def test_cam_weight_formula() -> None:
    cam = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])
    assert torch.equal(cam_weight(cam, (2, 2), "residual", torch.float32), 1 + cam)
    assert torch.equal(cam_weight(cam, (2, 2), "multiply", torch.float32), cam)
    assert cam_weight(None, (2, 2), "residual", torch.float32) is None
    assert cam_weight(cam, (4, 4), "multiply", torch.float32).shape == (1, 1, 4, 4)


def test_bad_attention_mode() -> None:
    with pytest.raises(ValueError, match="attention_mode"):
        Generator(4, 1, "add")


def test_init_is_seeded() -> None:
    a = init_weights(Generator(4, 1), torch.Generator().manual_seed(3))
    b = init_weights(Generator(4, 1), torch.Generator().manual_seed(3))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def _high_band_share(grad: torch.Tensor) -> float:
    """Share of a gradient's energy at frequencies above a quarter of the sampling rate in both
    axes (the square around Nyquist of the 2D spectrum), borders cut."""
    g = grad[:, :, 4:-4, 4:-4]
    power = torch.fft.fft2(g).abs().square()
    n = g.shape[-1]
    return float(power[..., n // 4:3 * n // 4 + 1, n // 4:3 * n // 4 + 1].sum() / power.sum())


def test_blurred_discriminator_same_shapes_and_state_dict_with_low_passed_gradient() -> None:
    plain, blurred = _net(Discriminator, 8, "residual", False), _net(Discriminator, 8, "residual", True)
    assert plain.state_dict().keys() == blurred.state_dict().keys()
    blurred.load_state_dict(plain.state_dict())          # interchangeable: the filter has no parameters
    x = torch.randn(4, 3, 64, 64)
    assert blurred(x).shape == plain(x).shape == (4, 1, 7, 7)
    assert not torch.allclose(blurred(x), plain(x))
    shares = []
    for d in (plain, blurred):
        xi = x.clone().requires_grad_(True)
        d(xi).square().sum().backward()
        shares.append(_high_band_share(xi.grad))
    # a stride-2 conv's input gradient is a transposed conv: much of it sits near Nyquist. The
    # [1,2,1]^2 filter passes at most ((1 + cos(pi/2)) / 2)^4 = 1/16 of the power at the band's
    # corner, so with it in front the band holds well under 1% of the gradient's energy.
    assert shares[0] > 0.1
    assert shares[1] < 0.01
