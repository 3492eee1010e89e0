"""Grad-CAM computation, part_focus scoring and selection edge cases."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from face2anime.cam.maps import cam_methods, compute_cams, downsample
from face2anime.cam.scoring import box_mask, part_focus
from face2anime.cam.selection import select, select_metrics
from face2anime.core.params import UserError
from face2anime.models.classifiers import ConvNet, find_layer

METHODS = ["gradcam", "gradcam++", "eigencam", "layercam"]


@pytest.fixture(scope="module")
def model_and_images():
    """A classifier that really sees something: a bright square (class 1) vs none (class 0),
    a few quick steps, so its CAMs for class 1 are non-zero and sit on the square."""
    torch.manual_seed(0)
    model = ConvNet((4, 8, 8))
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(32, 3, 32, 32, generator=g) * 80).to(torch.uint8)
    y = torch.arange(32) % 2
    for i in torch.nonzero(y).flatten().tolist():
        r, c = int(torch.randint(2, 20, (1,), generator=g)), int(torch.randint(2, 20, (1,), generator=g))
        x[i, :, r:r + 10, c:c + 10] = 255
    opt = torch.optim.Adam(model.parameters(), 0.01)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x.float() / 127.5 - 1), y).backward()
        opt.step()
    model.eval()
    sel = torch.nonzero(y).flatten()[:6]
    return model, x[sel]


@pytest.mark.parametrize("method", METHODS)
def test_cam_shape_range_and_batched_equals_single(model_and_images, method: str) -> None:
    model, x = model_and_images
    layer = find_layer(model, "default")
    batched = compute_cams(model, layer, x, target=1, method=method, batch_size=4)
    assert batched.shape == (6, 32, 32) and batched.dtype == np.float32
    # grad-cam min-max normalises each map itself: every map with any signal peaks at 1 exactly
    peaks = batched.reshape(6, -1).max(1)
    assert (peaks > 0).sum() >= 4, peaks
    np.testing.assert_allclose(peaks[peaks > 0], 1.0, atol=1e-5)
    assert batched.min() >= 0.0
    # one image at a time (an image whose map is all zero is a result here, not an error)
    single = np.concatenate([compute_cams(model, layer, x[i:i + 1], 1, method, 1, require_signal=False)
                             for i in range(len(x))])
    np.testing.assert_allclose(batched, single, atol=1e-4)


def test_cam_sits_on_the_evidence(model_and_images) -> None:
    """The class-1 CAM puts well over its area share of mass on the bright square."""
    model, x = model_and_images
    cams = compute_cams(model, find_layer(model, "default"), x, 1)
    square = (x[:, 0] == 255).numpy()
    share = (cams * square).sum((1, 2)) / cams.sum((1, 2)).clip(1e-8)
    assert np.median(share) > 1.5 * square.mean(), share


def test_cam_error_inside_gradcam_is_not_swallowed(model_and_images) -> None:
    """grad-cam's __exit__ swallows IndexError; a 2-D target layer (the linear head) must be an error,
    not silently all-zero CAMs."""
    model, x = model_and_images
    with pytest.raises(UserError, match="target_layer"):
        compute_cams(model, model.head, x, 1)


def test_all_zero_cams_are_an_error(model_and_images) -> None:
    """A layer the output does not depend on gives all-zero maps: an error for selection, a value
    for measurements (require_signal=False)."""
    model, x = model_and_images
    dead = ConvNet((4, 8, 8)).eval()
    with torch.no_grad():
        dead.head.weight.zero_()
    with pytest.raises(UserError, match="all zero"):
        compute_cams(dead, find_layer(dead, "default"), x, 1)
    assert not compute_cams(dead, find_layer(dead, "default"), x, 1, require_signal=False).any()


def test_cam_hooks_released(model_and_images) -> None:
    model, x = model_and_images
    compute_cams(model, find_layer(model, "default"), x, 0)
    assert all(not m._forward_hooks for m in model.modules())


def test_all_declared_methods_exist() -> None:
    assert set(METHODS) <= set(cam_methods())


def test_find_layer_by_name_and_unknown() -> None:
    m = ConvNet((4, 8))
    assert find_layer(m, "trunk.0") is m.trunk[0]
    with pytest.raises(KeyError):
        find_layer(m, "nope")


def test_box_mask_area_exact_with_fractional_edges() -> None:
    mask = box_mask([(0.1, 0.2, 0.35, 0.5)], 16)
    assert mask.sum() == pytest.approx(0.25 * 0.3 * 256)
    assert box_mask([(0.0, 0.0, 0.5, 0.5), (0.25, 0.25, 0.5, 0.5)], 8).sum() == pytest.approx(16)


def test_part_focus_share_of_mass() -> None:
    cam = np.zeros((8, 8), np.float32)
    cam[0:4, 0:4] = 1.0       # all mass in the top-left quadrant
    assert part_focus(cam, [(0, 0, 0.5, 0.5)]) == pytest.approx(1.0)
    assert part_focus(cam, [(0.5, 0.5, 1, 1)]) == pytest.approx(0.0)
    assert part_focus(cam, [(0, 0, 0.25, 0.5)]) == pytest.approx(0.5)
    assert part_focus(np.zeros((8, 8)), [(0, 0, 1, 1)]) == 0.0
    assert part_focus(cam, []) == 0.0


def test_downsample_shape_range_and_peak() -> None:
    cams = np.random.default_rng(0).random((3, 32, 32)).astype(np.float32)
    small = downsample(cams, 8)
    assert small.shape == (3, 8, 8) and small.dtype == np.float16
    assert np.allclose(small.reshape(3, -1).max(1), 1.0, atol=1e-3) and small.min() >= 0


def scores(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"h{i:02d}" for i in range(n)],
                         "part_focus": [0.1 * (i % 5) for i in range(n)],
                         "clean": [i % 5 >= 2 for i in range(n)]})


def test_select_threshold_cap_and_tie_break() -> None:
    chosen = select(scores(), threshold=0.2, max_images=5, min_images=1)
    # 0.4 twice (h04, h09), 0.3 twice (h03, h08), then 0.2 (h02 before h07)
    assert list(chosen["id"]) == ["h04", "h09", "h03", "h08", "h02"]
    assert list(chosen["rank"]) == [1, 2, 3, 4, 5]


def test_select_all() -> None:
    assert len(select(scores(), threshold=0.0, max_images=100, min_images=1)) == 10


def test_select_none_is_clear_error_with_distribution() -> None:
    with pytest.raises(UserError) as e:
        select(scores(), threshold=0.9, max_images=5, min_images=1)
    msg = str(e.value)
    assert "select.threshold=0.9" in msg and "keeps 0 of 10" in msg and "q50=" in msg
    assert "\n" not in msg


def test_select_below_minimum_is_error() -> None:
    with pytest.raises(UserError, match="select.min_images=3"):
        select(scores(), threshold=0.4, max_images=5, min_images=3)


def test_select_metrics_precision_vs_base_rate() -> None:
    s = scores()
    m = select_metrics(s, select(s, 0.2, 10, 1), 0.2, 10)
    assert m["base_rate"] == pytest.approx(0.6) and m["precision"] == pytest.approx(1.0)
    assert m["precision_gain"] == pytest.approx(0.4)
    no_labels = s.assign(clean=np.nan)
    assert select_metrics(no_labels, select(no_labels, 0.2, 10, 1), 0.2, 10)["precision"] is None


def test_judge_degrade_is_seeded_and_changes_colour_blur_noise() -> None:
    from face2anime.models.classify import degrade

    x = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    assert torch.equal(degrade(x, torch.Generator().manual_seed(0), p=0.0), x)
    a = degrade(x, torch.Generator().manual_seed(1), p=1.0)
    b = degrade(x, torch.Generator().manual_seed(1), p=1.0)
    assert a.dtype == torch.uint8 and a.shape == x.shape and torch.equal(a, b)
    # every image changed, and not only by noise: the per-image mean colour moves too
    assert ((a.float() - x.float()).abs().mean((1, 2, 3)) > 1).all()
    shift = (a.float().mean((2, 3)) - x.float().mean((2, 3))).abs().amax(1)
    assert (shift > 2).float().mean() > 0.5


@pytest.mark.parametrize("cell,expected", [("False", False), ("True", True), (float("nan"), True), (0, False)])
def test_cam_scoring_reads_the_aligned_flag_like_resize(monkeypatch: pytest.MonkeyPatch, cell: object,
                                                        expected: bool) -> None:
    """One parser, one default: a manifest 'False' string is not aligned (bool('False') is True),
    and a missing value means aligned in cam exactly as in resize."""
    from face2anime.cam import scoring

    seen = []
    monkeypatch.setattr(scoring, "detected_boxes", lambda img, aligned: seen.append(aligned) or None)
    rows = pd.DataFrame({"id": ["a"], "aligned": [cell]})
    scoring.score_humans(rows, torch.zeros(1, 3, 8, 8, dtype=torch.uint8), np.zeros((1, 8, 8), np.float32))
    assert seen == [expected]
