"""DiffAugment, the discriminator's own CAM, the validation score and the collapse detector."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face2anime.gan import augment, dcam, monitor


def test_policy_parsing() -> None:
    assert augment.parse_policy("") == ()
    assert augment.parse_policy("cutout, color") == ("color", "cutout")   # canonical order
    with pytest.raises(ValueError, match="'blur'"):
        augment.parse_policy("color,blur")


def test_draws_are_seeded_and_split_per_image() -> None:
    pol = augment.parse_policy("color,translation,cutout")
    a = augment.draw(pol, 6, 32, torch.Generator().manual_seed(1), torch.device("cpu"))
    b = augment.draw(pol, 6, 32, torch.Generator().manual_seed(1), torch.device("cpu"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["shift"].abs().max() <= 4 and a["cutout"].min() >= 0        # 1/8 of 32 px
    parts = augment.split(a, [2, 4])
    assert parts[0]["shift"].shape == (2, 2) and parts[1]["brightness"].shape == (4, 1, 1, 1)
    x = torch.rand(6, 3, 32, 32) * 2 - 1
    whole = augment.apply(x, a)
    assert torch.allclose(torch.cat([augment.apply(x[:2], parts[0]), augment.apply(x[2:], parts[1])]), whole)


def _centroid(m: torch.Tensor) -> tuple[float, float]:
    w = m / m.sum()
    r, c = torch.meshgrid(torch.arange(m.shape[0]).float(), torch.arange(m.shape[1]).float(), indexing="ij")
    return float((w * r).sum()), float((w * c).sum())


def test_translation_and_cutout_move_image_and_cam_together() -> None:
    size = 32
    x = torch.zeros(1, 3, size, size)
    x[:, :, 8:12, 20:24] = 1.0                       # a bright square ...
    cam = torch.zeros(1, 1, size // 4, size // 4)
    cam[:, :, 2, 5] = 1.0                            # ... and its CAM cell at G's resolution (rows 8-11, cols 20-23)
    p = {"shift": torch.tensor([[3], [-4]])}         # content moves up 3 rows, right 4 columns
    moved = augment.apply(x, p)[0, 0]
    r0, c0 = _centroid(x[0, 0])
    r1, c1 = _centroid(moved)
    assert (r1 - r0, c1 - c0) == (-3.0, 4.0)
    before = augment.warp_cam(cam, {}, size, size)[0, 0]          # upsampled, not moved
    after = augment.warp_cam(cam, p, size, size)[0, 0]
    (a0, b0), (a1, b1) = _centroid(before), _centroid(after)
    assert abs((a1 - a0) - (-3)) < 0.5 and abs((b1 - b0) - 4) < 0.5
    cut = {"cutout": torch.tensor([[10], [22]])}      # a 16 px square centred on the bright square
    assert augment.apply(x, cut)[0, :, 8:12, 20:24].abs().max() == 0
    assert augment.warp_cam(cam, cut, size, size)[0, 0, 8:12, 20:24].max() == 0


def test_augmentation_is_differentiable() -> None:
    pol = augment.parse_policy("color,translation,cutout")
    p = augment.draw(pol, 4, 24, torch.Generator().manual_seed(0), torch.device("cpu"))
    x = (torch.rand(4, 3, 24, 24) * 2 - 1).requires_grad_(True)
    augment.apply(x, p).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0 and torch.isfinite(x.grad).all()


def test_self_cam_is_grad_cam() -> None:
    """The closed form equals the grad-cam package's Grad-CAM on the classifier's CAM layer."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from face2anime.models.classifiers import ConvNet

    torch.manual_seed(0)
    net = ConvNet((8, 16, 16)).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    for target in (0, 1):
        ours = dcam.self_cam(net, x, target, 32)[:, 0]   # bilinear to the input size, like the package ...
        ours = ours - ours.amin(dim=(1, 2), keepdim=True)  # ... which min-max normalises once more after resizing
        ours = ours / (ours.amax(dim=(1, 2), keepdim=True) + 1e-7)
        with GradCAM(model=net, target_layers=[net.cam_layer]) as cam:
            ref = torch.from_numpy(cam(input_tensor=x, targets=[ClassifierOutputTarget(target)] * 3))
        assert torch.allclose(ours, ref, atol=1e-3), (ours - ref).abs().max()


def test_swd_tells_noise_from_the_domain() -> None:
    g = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(torch.rand(16, 3, 6, 6, generator=g) * 2 - 1, size=32, mode="bilinear")
    other = torch.nn.functional.interpolate(torch.rand(16, 3, 6, 6, generator=g) * 2 - 1, size=32, mode="bilinear")
    noise = torch.rand(16, 3, 32, 32, generator=g) * 2 - 1
    assert monitor.swd(smooth, other) < 0.5 * monitor.swd(noise, other)
    assert monitor.swd(smooth, other) == monitor.swd(smooth, other)   # deterministic


def test_collapse_detector_on_synthetic_curves() -> None:
    healthy_d = list(np.linspace(0.6, 0.8, 40))
    improving = list(np.linspace(4.0, 1.9, 10))          # like the default run: realism falls all along
    steady = [0.5] * 10
    assert monitor.detect_collapse(healthy_d, improving, steady) == (False, [])
    # realism got better, then drifted far away: collapsed
    drift = [4.0, 2.5, 1.9, 1.8, 2.4, 2.9, 3.5]
    collapsed, reasons = monitor.detect_collapse(healthy_d, drift)
    assert collapsed and "realism degraded" in reasons[0]
    # one bad validation is not a trend
    assert not monitor.detect_collapse(healthy_d, [4.0, 2.5, 1.9, 1.8, 1.85, 2.9])[0]
    # every source gets the same output
    collapsed, reasons = monitor.detect_collapse(healthy_d, improving, [0.5, 0.3, 0.1])
    assert collapsed and "mode collapse" in reasons[0]
    # an over-fitted D while the generators lose ground (realism stalls or diversity falls): collapsed
    over = healthy_d[:30] + [0.93] * 10
    collapsed, reasons = monitor.detect_collapse(over, [4.0, 2.5, 2.1, 2.3, 2.4])
    assert collapsed and "over-fitted" in reasons[0] and "realism stalled" in reasons[0]
    collapsed, reasons = monitor.detect_collapse(over, improving, [0.5, 0.49, 0.44, 0.35, 0.33])
    assert collapsed and "diversity falling" in reasons[0]
    # an over-fitted D while translations still improve is reported, not flagged
    collapsed, reasons = monitor.detect_collapse(over, improving, steady)
    assert not collapsed and reasons and "over-fitted" in reasons[0]
    assert monitor.detect_collapse(healthy_d, [1.0, float("nan")])[0]
