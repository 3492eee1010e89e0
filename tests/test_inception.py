"""The plain Inception KID / FID plumbing (issue 24), with RANDOMLY INITIALISED weights of the
FID Inception architecture saved in pytorch-fid's key layout: the real
pt_inception-2015-12-05-6726825d.pth cannot be downloaded here. The numbers are meaningless;
what is tested is that such a file loads strictly, that features come out 2048-d, that FID and
KID behave as their definitions say, that a foreign file is one line, and that with the param
off nothing is computed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from face2anime.core.params import UserError, load_params
from face2anime.core.schema import Evaluate
from face2anime.evaluation import inception as inc
from face2anime.evaluation.compare import flatten
from face2anime.evaluation.measures import mmd2_unbiased

ROOT = Path(__file__).resolve().parents[1]


def random_net(seed: int = 0) -> inc.FidInception:
    """The architecture with He-initialised convs (activations keep their scale through the
    ~50 layers) and non-trivial BatchNorm statistics."""
    torch.manual_seed(seed)
    net = inc.FidInception()
    for m in net.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        elif isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, inc.FidInception]:
    path = tmp_path_factory.mktemp("inception") / inc.WEIGHTS_FILE
    net = random_net()
    torch.save(net.state_dict(), path)
    return path, net


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """6 small uint8 images (upsampled to 299 inside: ~0.2 s each on one CPU thread)."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (6, 3, 16, 16), generator=g, dtype=torch.uint8)


@pytest.fixture(scope="module")
def feats(weights, images) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the images and of the same images brightened (a shifted set)."""
    net = inc.load_inception(weights[0])
    brighter = (images.int() + 80).clamp(0, 255).to(torch.uint8)
    both = inc.inception_features(net, torch.cat([images, brighter]), batch_size=4)
    return both[:len(images)], both[len(images):]


def cfg(weights: str = "", declared: str = inc.NOTHING, subset_size: int = 1000) -> Evaluate:
    return Evaluate.model_validate({"kid_subsets": 3, "kid_subset_size": 4, "reference_count": 2, "realism_k": 1,
                                    "inception_weights": weights, "inception_kid_subset_size": subset_size,
                                    "inputs": {"inception": declared}})


# --------------------------------------------------------------------------- the network and the file
def test_expected_key_layout() -> None:
    """pytorch-fid's layout: torchvision Inception3 names, 1008 classes, no AuxLogits."""
    keys = inc.FidInception().state_dict()
    assert "Conv2d_1a_3x3.conv.weight" in keys and "Mixed_7c.branch_pool.bn.running_var" in keys
    assert "Mixed_5b.branch5x5_1.conv.weight" in keys and "Mixed_6e.branch7x7dbl_5.bn.bias" in keys
    assert not any(k.startswith("AuxLogits") for k in keys)
    assert tuple(keys["fc.weight"].shape) == (inc.N_CLASSES, inc.N_FEATURES)
    assert tuple(keys["Mixed_5b.branch_pool.conv.weight"].shape) == (32, 192, 1, 1)


def test_fid_blocks_pool_like_tensorflow() -> None:
    """Average pools ignore the padding (a constant map stays constant at the border); the
    last E block max-pools, the one before averages."""
    net = inc.FidInception()
    x = torch.ones(1, 1, 5, 5)
    assert torch.allclose(inc._tf_avg_pool(x), x)
    assert net.Mixed_7c.pool is inc._max_pool
    assert net.Mixed_7b.pool is not inc._max_pool
    y = torch.arange(25.0).view(1, 1, 5, 5)
    assert net.Mixed_7c.pool(y)[0, 0, 0, 0] == 6.0          # max of the 2x2 corner 0, 1, 5, 6
    assert net.Mixed_7b.pool(y)[0, 0, 0, 0] == 3.0          # their mean, the padding not counted


def test_loads_strictly_and_gives_2048_features(weights, images) -> None:
    path, original = weights
    net = inc.load_inception(path)
    for k, v in original.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    f = inc.inception_features(net, images[:2])
    assert f.shape == (2, inc.N_FEATURES) and f.dtype == torch.float64 and torch.isfinite(f).all()
    # the same as the network itself on [0, 1] input resized to 299: the wrapper adds nothing
    assert torch.allclose(f.float(), original.features(images[:2].float() / 255), atol=1e-5)
    assert inc.inception_features(net, images[:0]).shape == (0, inc.N_FEATURES)


def test_a_file_without_num_batches_tracked_loads_too(weights, tmp_path) -> None:
    state = {k: v for k, v in weights[1].state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    net = inc.load_inception(tmp_path / "old.pth")
    assert torch.equal(net.fc.weight, weights[1].fc.weight)


@pytest.mark.parametrize("damage", ["rename", "drop", "shape", "not_a_state_dict", "garbage", "missing"])
def test_a_wrong_file_is_one_line_naming_the_param(weights, tmp_path, damage: str) -> None:
    state = dict(weights[1].state_dict())
    path = tmp_path / "bad.pth"
    if damage == "rename":
        state["classifier.weight"] = state.pop("fc.weight")
    elif damage == "drop":
        del state["Mixed_6a.branch3x3.conv.weight"]
    elif damage == "shape":
        state["fc.weight"] = torch.zeros(1000, 2048)          # torchvision's ImageNet head
    if damage == "not_a_state_dict":
        torch.save([1, 2, 3], path)
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint")
    elif damage != "missing":
        torch.save(state, path)
    with pytest.raises(UserError) as e:
        inc.load_inception(path)
    msg = str(e.value)
    assert "\n" not in msg and "evaluate.inception_weights" in msg and inc.WEIGHTS_FILE in msg, msg
    assert "nothing downloads it" in msg


# --------------------------------------------------------------------------- FID
def test_frechet_distance_of_an_affine_copy_has_the_closed_form() -> None:
    """y = a x + b has mean a mu + b and covariance a^2 S, so FID = |(1 - a) mu - b|^2 + (1 - a)^2 tr S."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6))
    a, b = 1.7, rng.normal(size=6)
    mu, cov = x.mean(0), np.cov(x, rowvar=False)
    want = np.sum(((1 - a) * mu - b) ** 2) + (1 - a) ** 2 * np.trace(cov)
    assert inc.frechet_distance(x, a * x + b) == pytest.approx(want, rel=1e-9)
    assert inc.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("m,d", [(12, 30), (40, 6)])
def test_frechet_distance_of_an_affine_copy_either_route(m: int, d: int) -> None:
    """The same closed form with fewer samples than dimensions (the SVD route) and more (eigh)."""
    rng = np.random.default_rng(m)
    x = rng.normal(size=(m, d)) * rng.uniform(0.5, 2, d)
    a, b = 0.6, rng.normal(size=d)
    cov = np.cov(x, rowvar=False)
    want = np.sum(((1 - a) * x.mean(0) - b) ** 2) + (1 - a) ** 2 * np.trace(cov)
    assert inc.frechet_distance(x, a * x + b) == pytest.approx(want, rel=1e-9)
    assert inc.trace_sqrt_product(x, a * x) == pytest.approx(a * np.trace(cov), rel=1e-9)


def test_frechet_distance_agrees_with_scipy_sqrtm() -> None:
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(50, 5)), rng.normal(size=(60, 5)) @ rng.normal(size=(5, 5)) + 0.3
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    d = x.mean(0) - y.mean(0)
    want = d @ d + np.trace(sx + sy - 2 * np.real(sqrtm(sx @ sy)))
    assert inc.frechet_distance(x, y) == pytest.approx(want, rel=1e-7)


def test_fid_on_network_features(feats) -> None:
    """A set against itself ~0 (rank-deficient 2048-d covariances included); a shifted set farther."""
    f, shifted = feats
    scale = float(f.var(0).sum())
    assert abs(inc.frechet_distance(f, f)) < 1e-6 * scale
    assert inc.frechet_distance(f, shifted) > 0.1 * scale


# --------------------------------------------------------------------------- KID and the entry
def test_scores_entry_on_network_features(feats) -> None:
    f, shifted = feats
    out = inc.inception_scores(shifted, f, f, subsets=4, subset_size=1000, seed=0)
    # subset size >= the image count: every subset is the whole set, so KID = the unbiased MMD^2
    assert out["kid"]["mean"] == pytest.approx(mmd2_unbiased(shifted, f), rel=1e-6)   # float32 subsets
    assert out["kid"]["std"] == pytest.approx(0.0, abs=1e-9 * abs(out["kid"]["mean"]))
    assert out["kid"]["x100"] == pytest.approx(100 * out["kid"]["mean"])
    assert out["kid"]["subset_size"] == len(f) and out["kid"]["n_fake"] == out["kid"]["n_real"] == len(f)
    mk = out["mean_kid_ugatit"]
    assert mk["kid_to_target"] == out["kid"]["mean"]
    assert mk["mean"] == pytest.approx((mmd2_unbiased(shifted, f) + mmd2_unbiased(shifted, f)) / 2, rel=1e-6)
    assert mk["n_source"] == len(f)
    assert out["fid"]["value"] == pytest.approx(inc.frechet_distance(shifted, f))

    same = inc.inception_scores(f, f, shifted, subsets=4, subset_size=1000, seed=0)
    # identical sets: only the unbiased estimator's own-pair term remains, far below a real difference
    assert abs(same["kid"]["mean"]) < 0.05 * out["kid"]["mean"]
    assert same["fid"]["value"] < 1e-6 * out["fid"]["value"]
    # U-GAT-IT's average also counts the distance to the sources: here the shifted set
    assert same["mean_kid_ugatit"]["mean"] == pytest.approx(
        (same["kid"]["mean"] + mmd2_unbiased(f, shifted)) / 2, rel=1e-6)


def test_kid_of_two_samples_of_one_distribution_is_about_zero() -> None:
    """Unbiased: independent samples of one distribution give ~0 (within one subset std);
    a mean shift gives clearly more."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g)
    same = inc.inception_scores(a, b, b, subsets=50, subset_size=100, seed=0)["kid"]
    moved = inc.inception_scores(a + 0.5, b, b, subsets=50, subset_size=100, seed=0)["kid"]
    assert abs(same["mean"]) < same["std"]          # (the subsets overlap: std is no standard error)
    assert moved["mean"] > 10 * abs(same["mean"]) and moved["mean"] > 3 * moved["std"]


def test_metrics_with_weights_cover_every_set(weights, images) -> None:
    path = str(weights[0])
    c = cfg(path, path)
    inc.check_input(c, "params.yaml")
    out = inc.inception_metrics(c, images[:3], images[3:], images[:2], seed=0)
    assert out["computed"] and out["weights"] == path
    assert (out["kid"]["n_fake"], out["kid"]["n_real"], out["mean_kid_ugatit"]["n_source"]) == (3, 3, 2)
    assert np.isfinite(out["fid"]["value"])


# --------------------------------------------------------------------------- the param and the DVC input
def test_off_computes_nothing(monkeypatch) -> None:
    def boom(*a, **k):
        raise AssertionError("the network must not be loaded when the param is off")

    monkeypatch.setattr(inc, "load_inception", boom)
    monkeypatch.setattr(inc, "inception_features", boom)
    x = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    c = cfg()
    inc.check_input(c, "params.yaml")
    out = inc.inception_metrics(c, x, x, x, seed=0)
    assert out["computed"] is False and "evaluate.inception_weights" in out["reason"]
    assert set(out) == {"computed", "reason"}
    assert flatten({"inception": out}) == {}         # compare sees no inception number at all


def test_declared_input_must_be_the_file_read(weights, tmp_path) -> None:
    path = str(weights[0])
    with pytest.raises(UserError, match="set evaluate.inputs.inception to it"):
        inc.check_input(cfg(path, inc.NOTHING), "params.yaml")
    with pytest.raises(UserError, match="is off"):
        inc.check_input(cfg("", path), "params.yaml")
    with pytest.raises(UserError, match="not found.*nothing downloads it"):
        inc.check_input(cfg(str(tmp_path / inc.WEIGHTS_FILE), str(tmp_path / inc.WEIGHTS_FILE)), "params.yaml")


def test_committed_params_are_off_and_the_stage_declares_the_input() -> None:
    c = load_params(ROOT / "params.yaml").evaluate
    assert c.inception_weights == "" and c.inputs.inception == inc.NOTHING
    inc.check_input(c, "params.yaml")
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["evaluate"]["do"]
    assert "${evaluate.inputs.inception}" in stage["deps"]
    assert "face2anime/evaluation/inception.py" in stage["deps"]
    assert "evaluate" in stage["params"]


def test_compare_lists_the_values_lower_is_better_without_counts_or_spreads() -> None:
    from face2anime.evaluation.compare import LOWER_IS_BETTER, paired_comparison

    g = torch.Generator().manual_seed(0)
    real = torch.randn(30, 8, generator=g)
    entries = {m: inc.inception_scores(torch.randn(30, 8, generator=g) + shift, real, real, 3, 10, 0)
               for m, shift in (("baseline", 1.0), ("proposed", 0.2))}
    table = paired_comparison([{"evals": {m: {"inception": e} for m, e in entries.items()}, "tables": {}}],
                              "baseline", "proposed", n_boot=100, n_perm=100)
    listed = {k for k in table if k.startswith("inception.")}
    assert {"inception.kid.mean", "inception.fid.value", "inception.mean_kid_ugatit.mean"} <= listed
    assert not any(k.endswith(("std", "n_fake", "n_real", "n_source", "subsets", "subset_size")) for k in listed)
    assert all(k in LOWER_IS_BETTER for k in listed)
    assert table["inception.kid.mean"]["verdict"] == "not tested: no per-image values"
