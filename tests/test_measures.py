"""Metrics on hand-made cases: KID, edge SSIM, CAM overlap, attribute preservation."""
from __future__ import annotations

import pytest
import torch

from face2anime.evaluation.measures import edge_ssim, kid, soft_iou, ssim
from face2anime.models.attributes import accuracy, chance


def test_kid_of_set_against_itself_is_about_zero_and_positive_for_other_distribution() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 16, generator=g)
    b = torch.randn(200, 16, generator=g)
    c = torch.randn(200, 16, generator=g) * 1.5 + 1.0
    same_mean, same_std = kid(a, b, n_subsets=50, subset_size=50)
    diff_mean, _ = kid(a, c, n_subsets=50, subset_size=50)
    assert abs(same_mean) < 3 * same_std + 0.02
    assert diff_mean > 10 * max(abs(same_mean), same_std)


def test_mmd2_unbiased_hand_computed() -> None:
    """x = {0, 1}, y = {2, 3} in 1-D, k(a, b) = (ab + 1)^3. Unbiased (U-statistic, diagonals left
    out): k(0,1)=1 -> 1; k(2,3)=343 -> 343; cross mean (1+1+27+64)/4 = 23.25 -> 1 + 343 - 46.5 = 297.5.
    The biased estimate (diagonals in) would be 2.75 + 452.75 - 46.5 = 409."""
    from face2anime.evaluation.measures import mmd2_unbiased

    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[2.0], [3.0]])
    assert mmd2_unbiased(x.double(), y.double()) == pytest.approx(297.5)
    mean, std = kid(x, y, n_subsets=3, subset_size=2)
    assert mean == pytest.approx(297.5) and std == pytest.approx(0.0)


def test_ssim_identical_is_one_and_noise_is_low() -> None:
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 1, 32, 32, generator=g)
    assert torch.allclose(ssim(img, img), torch.ones(2), atol=1e-5)
    assert ssim(img, torch.rand(2, 1, 32, 32, generator=g)).max() < 0.2


def test_edge_ssim_ignores_colour_change_but_not_structure() -> None:
    x = torch.zeros(1, 3, 32, 32)
    x[:, :, 8:24, 8:24] = 0.8
    recoloured = x.clone()
    recoloured[:, 0] *= 0.5
    recoloured[:, 2] = recoloured[:, 2] * 0.2 + 0.1
    moved = torch.zeros_like(x)
    moved[:, :, 2:12, 18:30] = 0.8
    assert edge_ssim(x, recoloured).item() > 0.95
    assert edge_ssim(x, moved).item() < 0.5


def test_soft_iou() -> None:
    a = torch.zeros(1, 4, 4)
    a[0, :2] = 1
    assert soft_iou(a, a).item() == pytest.approx(1.0)
    assert soft_iou(a, 1 - a).item() == pytest.approx(0.0)


def test_attribute_accuracy_and_chance() -> None:
    t = {"hair": torch.tensor([0, 1, 2, 0]), "glasses": torch.tensor([0, 0, 0, 1])}
    acc = accuracy({k: v.clone() for k, v in t.items()}, t)
    assert acc["mean"] == 1.0
    ch = chance(t, {"hair": 3, "glasses": 2})
    assert ch["majority"]["hair"] == 0.5 and ch["majority"]["glasses"] == 0.75
    assert ch["uniform"]["mean"] == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_kid_equals_mean_of_mmd2_over_the_same_subsets() -> None:
    """kid() computes the kernels once and indexes subsets; the numbers are those of mmd2_unbiased."""
    from face2anime.evaluation.measures import mmd2_unbiased

    x, y = torch.randn(30, 16, dtype=torch.float64), torch.randn(20, 16, dtype=torch.float64) + 0.5
    g = torch.Generator().manual_seed(7)
    vals = torch.tensor([mmd2_unbiased(x[torch.randperm(30, generator=g)[:10]], y[torch.randperm(20, generator=g)[:10]])
                         for _ in range(12)])
    mean, std = kid(x, y, 12, 10, 7)
    assert mean == pytest.approx(float(vals.mean()), rel=1e-12) and std == pytest.approx(float(vals.std()), rel=1e-10)


def test_flat_share_counts_flat_pixels() -> None:
    """Grey is all flat; one vertical step edge in an 8 x 8 image makes the 7 pixels left of it
    (of the 7 x 7 that have both neighbours) not flat; noise is almost never flat; a flat
    drawing loses most of its flat pixels to faint noise (std 0.05)."""
    from face2anime.evaluation.measures import flat_share

    assert flat_share(torch.full((2, 3, 8, 8), 0.5)).tolist() == [1.0, 1.0]
    step = torch.zeros(1, 3, 8, 8)
    step[..., 4:] = 1.0
    assert abs(float(flat_share(step)[0]) - 42 / 49) < 1e-6
    g = torch.Generator().manual_seed(0)
    assert float(flat_share(torch.rand(4, 3, 32, 32, generator=g)).max()) < 0.05
    drawing = torch.full((1, 3, 32, 32), 0.8)
    drawing[..., 10:20, 8:24] = 0.3                      # a flat patch
    drawing[..., 5, :] = 0.0                             # and a line
    noisy = (drawing + 0.05 * torch.randn(drawing.shape, generator=g)).clamp(0, 1)
    assert float(flat_share(drawing)[0]) > 0.8 and float(flat_share(noisy)[0]) < 0.4
