"""The CycleGAN training loop on a tiny made-up data set (32 px, ngf 4, a few steps)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from face2anime.core.params import UserError, typed
from face2anime.core.schema import ParamsFile, method_names
import yaml
from cfgutil import train_config, train_section
from conftest import tiny_params
from face2anime.gan import config as gcfg, data as gdata, model as gmodel, pool as gpool, train as tc
from face2anime.gan.inference import load_generator

ROOT_DIR = Path(__file__).resolve().parents[1]
SIZE = 32
N_HUMAN, N_CHAR = 14, 10


def _write_dataset(root: Path) -> dict[str, Path]:
    """data/resized (manifest + PNGs, 2 test images per domain), data/cam/*.npz, selected.csv."""
    rng = np.random.default_rng(0)
    data_dir, cam_dir = root / "resized", root / "cam"
    rows = []
    for domain, n, prefix in (("human", N_HUMAN, "h"), ("character", N_CHAR, "c")):
        for i in range(n + 2):
            split = "train" if i < n else "test"
            rid = f"{prefix}{i:03d}"
            file = f"{domain}/{split}/{rid}.png"
            (data_dir / domain / split).mkdir(parents=True, exist_ok=True)
            img = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            img[8:24, 8:24] = (200, 40, 40) if domain == "character" else (120, 100, 90)
            Image.fromarray(img).save(data_dir / file)
            rows.append({"id": rid, "domain": domain, "file": file, "split": split, "hair": "red"})
    man = pd.DataFrame(rows)
    man.to_csv(data_dir / "manifest.csv", index=False)
    cam_dir.mkdir(parents=True)
    for domain in ("human", "character"):
        ids = man[(man.domain == domain) & (man.split == "train")]["id"].to_numpy(dtype=str)
        cams = rng.random((len(ids), SIZE // 4, SIZE // 4)).astype(np.float16)
        np.savez(cam_dir / f"{domain}.npz", ids=ids, cams=cams)
    select_csv = root / "select" / "selected.csv"
    select_csv.parent.mkdir()
    pd.DataFrame({"id": ["h005", "h001", "h009", "h003", "h011", "h002", "h000"]}).to_csv(select_csv, index=False)
    return {"data_dir": data_dir, "cam_dir": cam_dir, "select_csv": select_csv}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny convolutions are much faster (and timing-stable) on one thread on a busy machine."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _write_dataset(tmp_path_factory.mktemp("cgdata"))


def _data(**over) -> dict:
    """A whole params mapping: the tiny params with a small two-method CycleGAN (``over``: its
    ``cyclegan.train`` keys, and ``precision``)."""
    methods = {"baseline": {"model": "cyclegan", "subset": "random", "attention": False},
               "proposed": {"model": "cyclegan", "subset": "selected", "attention": True}}
    precision = over.pop("precision", "auto")
    cg = train_section(ngf=4, ndf=4, n_res=1, epochs=3, steps_per_epoch=3, batch_size=2, pool_size=3,
                       ema=0.9, log_every=2)
    cg.update(over)
    return tiny_params({"seed": 3, "device": "cpu", "precision": precision, "threads": 1, "select.max_images": 6,
                        "select.share": 1.0, "cyclegan.methods": methods, "cyclegan.train": cg})


def _params(**over) -> ParamsFile:
    return typed(_data(**over))


def _run(method: str, dataset: dict[str, Path], root: Path, params: ParamsFile | None = None, **kw) -> dict:
    return tc.train(method, params or _params(), progress=False, out_dir=root / "model", live_dir=root / "live",
                    ckpt_dir=root / "ckpt", **dataset, **kw)


def _weights(model_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {n: torch.load(model_dir / f"{n}.pt", weights_only=True) for n in ("G_XY", "G_YX", "D_X", "D_Y")}


def _tsv(live: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(live / "plots" / "metrics" / f"{name}.tsv", sep="\t")


def test_unknown_method_lists_configured() -> None:
    with pytest.raises(UserError, match="baseline, proposed"):
        gcfg.read_config("cyclegan_plus", _params())


@pytest.mark.parametrize("entry", [{"subset": "best", "attention": False}, {"model": "cyclegan", "subset": "random"},
                                   {"model": "cyclegan", "subset": "random", "attention": "yes"}, "random"])
def test_bad_method_entry(entry) -> None:
    d = _data()
    d["cyclegan"]["methods"]["odd"] = entry
    with pytest.raises(UserError, match="cyclegan.methods.odd"):
        gcfg.read_config("odd", typed(d))


def test_method_names_expand_params() -> None:
    d = _data()
    d["cyclegan"]["methods"]["select_only"] = {"model": "cyclegan", "subset": "selected", "attention": False}
    assert method_names(typed(d)) == ["baseline", "proposed", "select_only"]
    assert gcfg.read_config("select_only", typed(d)).attention is False
    # a misspelled key of a method entry is an error naming it and the nearest valid key
    d["cyclegan"]["methods"]["select_only"]["atention"] = True
    with pytest.raises(UserError, match=r"unknown param 'cyclegan.methods.select_only.atention' "
                                        r"\(did you mean 'cyclegan.methods.select_only.attention'\?\)"):
        gcfg.read_config("select_only", typed(d))


def test_random_subset_seeded_and_order_free() -> None:
    ids = [f"h{i:03d}" for i in range(50)]
    a = gdata.random_subset(ids, 10, 0)
    assert a == gdata.random_subset(list(reversed(ids)), 10, 0)
    assert a != gdata.random_subset(ids, 10, 1)
    assert len(set(a)) == 10 and gdata.random_subset(ids, 99, 0).__len__() == 50


def test_baseline_ignores_selection_and_cams(dataset: dict[str, Path], tmp_path: Path) -> None:
    cfg = gcfg.read_config("baseline", _params())
    x1, y1 = gdata.load_training_data(cfg, dataset["data_dir"], tmp_path / "no_cam", tmp_path / "no" / "selected.csv")
    other = tmp_path / "selected.csv"
    pd.DataFrame({"id": ["h000"]}).to_csv(other, index=False)
    x2, _ = gdata.load_training_data(cfg, dataset["data_dir"], dataset["cam_dir"], other)
    assert x1.ids == x2.ids and len(x1.ids) == 6 and x1.cams is None and y1.cams is None
    assert len(y1.ids) == N_CHAR


def test_proposed_uses_selection_and_cams(dataset: dict[str, Path]) -> None:
    cfg = gcfg.read_config("proposed", _params())
    x, y = gdata.load_training_data(cfg, dataset["data_dir"], dataset["cam_dir"], dataset["select_csv"])
    assert x.ids == ["h005", "h001", "h009", "h003", "h011", "h002"]  # rank order, capped at max_images
    assert x.cams is not None and x.cams.shape == (6, 1, SIZE // 4, SIZE // 4)
    assert y.cams is not None and len(y.ids) == N_CHAR
    # the character set is the same for every method
    _, yb = gdata.load_training_data(gcfg.read_config("baseline", _params()), dataset["data_dir"], Path("nope"), Path("nope"))
    assert yb.ids == y.ids and torch.equal(yb.images, y.images)


def test_proposed_input_errors(dataset: dict[str, Path], tmp_path: Path) -> None:
    cfg = gcfg.read_config("proposed", _params())
    with pytest.raises(UserError, match="cam stage"):
        gdata.load_training_data(cfg, dataset["data_dir"], tmp_path, dataset["select_csv"])
    empty = tmp_path / "empty.csv"
    pd.DataFrame({"id": []}).to_csv(empty, index=False)
    with pytest.raises(UserError, match="selects no human"):
        gdata.load_training_data(cfg, dataset["data_dir"], dataset["cam_dir"], empty)
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"id": ["c001"]}).to_csv(wrong, index=False)
    with pytest.raises(UserError, match="not human train"):
        gdata.load_training_data(cfg, dataset["data_dir"], dataset["cam_dir"], wrong)


def test_index_stream_resumes_and_covers() -> None:
    s = gdata.IndexStream(5, 0, 0)
    seq = s.take(12)
    assert sorted(seq[:5].tolist()) == list(range(5)) and sorted(seq[5:10].tolist()) == list(range(5))
    r = gdata.IndexStream(5, 0, 0, pos=7)
    assert torch.equal(r.take(5), seq[7:12])


def test_pool_keeps_cams_with_images() -> None:
    pool = gpool.ImagePool(4, 0)
    for i in range(20):
        imgs = torch.full((2, 3, 4, 4), float(i))
        cams = torch.full((2, 1, 2, 2), float(i))
        out, oc = pool.query(imgs, cams)
        assert out.shape == imgs.shape
        assert torch.equal(out[:, :1, :2, :2], oc)  # each returned image comes with its own CAM


class _LoopPool:
    """The classic per-image CycleGAN pool (the reference the preallocated pool must match)."""

    def __init__(self, size: int, seed: int):
        self.size, self.images, self.cams = size, [], []
        self.gen = torch.Generator().manual_seed(seed)

    def query(self, images, cams):
        out_i, out_c = [], []
        for b in range(images.shape[0]):
            img, cam = images[b:b + 1], cams[b:b + 1]
            if len(self.images) < self.size:
                self.images.append(img), self.cams.append(cam), out_i.append(img), out_c.append(cam)
            elif float(torch.rand((), generator=self.gen)) > 0.5:
                j = int(torch.randint(0, self.size, (), generator=self.gen))
                out_i.append(self.images[j]), out_c.append(self.cams[j])
                self.images[j], self.cams[j] = img, cam
            else:
                out_i.append(img), out_c.append(cam)
        return torch.cat(out_i), torch.cat(out_c)


@pytest.mark.parametrize("size,batch", [(5, 2), (3, 4), (2, 8)])
def test_pool_matches_the_per_image_loop(size: int, batch: int) -> None:
    """Same draws, same outputs, same contents: also when the pool fills up mid-batch and when
    one batch draws the same slot twice (small pool, big batch)."""
    ref, new = _LoopPool(size, 7), gpool.ImagePool(size, 7)
    for i in range(30):
        imgs = torch.randn(batch, 3, 4, 4)
        cams = imgs[:, :1, :2, :2] + 100
        a, ac = ref.query(imgs, cams)
        b, bc = new.query(imgs, cams)
        assert torch.equal(a, b) and torch.equal(ac, bc), i
    assert torch.equal(torch.cat(ref.images), new.state_dict()["images"])
    restored = gpool.ImagePool(size, 0)
    restored.load_state_dict(new.state_dict(), torch.device("cpu"))
    imgs = torch.randn(batch, 3, 4, 4)
    assert torch.equal(restored.query(imgs, imgs[:, :1, :2, :2])[0], new.query(imgs, imgs[:, :1, :2, :2])[0])


def test_discriminator_cams_resized_once_match_per_call_resizing() -> None:
    """D's CAMs resized once for the whole data set equal what D computed per batch (bit for bit),
    and d_feature_size is the size of D's conv3 output."""
    from face2anime.models.networks import Discriminator, cam_weight

    for size in (24, 32, 48, 64, 100, 256):
        d = Discriminator(4)
        h = d.conv3(d.conv2(d.conv1(d.conv0(torch.zeros(1, 3, size, size)))))
        assert h.shape[-1] == gdata.d_feature_size(size)
    cams = torch.rand(10, 1, 12, 12)
    once = gdata.resize_cams(cams, gdata.d_feature_size(48))
    for i in range(0, 10, 3):
        per_call = cam_weight(cams[i:i + 3], (5, 5), "residual", torch.float32)
        assert torch.equal(cam_weight(once[i:i + 3], (5, 5), "residual", torch.float32), per_call)


@pytest.mark.parametrize("attention", [False, True])
def test_steps_on_fixed_batch_lower_cycle_loss(attention: bool) -> None:
    cfg = train_config(method="m", subset="random", attention=attention, seed=0, max_images=4, ngf=8, ndf=4,
                         n_res=1, epochs=1, steps_per_epoch=30, lr_decay_epochs=0, lr=1e-3, precision="fp32")
    torch.manual_seed(0)
    model = gmodel.CycleGAN(cfg, torch.device("cpu"))
    def smooth() -> torch.Tensor:  # low-frequency images a tiny generator can reconstruct
        return torch.nn.functional.interpolate(torch.rand(2, 3, 4, 4) * 2 - 1, size=SIZE, mode="bilinear")

    x, y = smooth(), smooth()
    cx = torch.rand(2, 1, 8, 8) if attention else None
    cy = torch.rand(2, 1, 8, 8) if attention else None
    cyc = [float(model.step(x, y, cx, cy)[0][gmodel.LOSSES.index("loss_cyc")]) for _ in range(30)]
    assert np.mean(cyc[-5:]) < 0.6 * np.mean(cyc[:3])


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_ema_generators_average_the_trained_weights(decay: float) -> None:
    cfg = train_config(method="m", subset="random", attention=False, seed=0, max_images=4, ngf=4, ndf=4,
                         n_res=1, epochs=1, steps_per_epoch=3, lr_decay_epochs=0, lr=1e-3, ema=decay,
                         precision="fp32")
    model = gmodel.CycleGAN(cfg, torch.device("cpu"))
    expect = [p.detach().clone() for p in model.G_XY.parameters()]
    x, y = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    for _ in range(3):
        model.step(x, y, None, None)
        expect = [decay * e + (1 - decay) * p.detach() for e, p in zip(expect, model.G_XY.parameters())]
    got = list(model.generators()["G_XY"].parameters())
    for e, g in zip(expect, got):
        torch.testing.assert_close(g, e)
    if decay == 0.0:
        assert model.generators()["G_XY"] is model.G_XY
    else:
        assert not all(torch.equal(g, p) for g, p in zip(got, model.G_XY.parameters()))
        assert not any(g.requires_grad for g in got)


def test_non_finite_loss_stops_the_run_before_any_model_is_written(dataset: dict[str, Path], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A diverged run (NaN losses from step 4 on) is a one-line error, not NaN weights on disk."""
    real_step, calls = gmodel.CycleGAN.step, {"n": 0}

    def diverging(self, *args, **kw):
        losses, d_stats = real_step(self, *args, **kw)
        calls["n"] += 1
        return (losses * float("nan"), d_stats) if calls["n"] >= 4 else (losses, d_stats)

    monkeypatch.setattr(gmodel.CycleGAN, "step", diverging)
    with pytest.raises(UserError, match=r"training diverged \(non-finite loss_G_adv, .* by step [45]\)"):
        _run("baseline", dataset, tmp_path)
    assert not list((tmp_path / "model").rglob("*.pt"))   # no generator, no weights of any kind
    # the last good state is kept: the checkpoint of epoch 1 (steps 1-3, before the NaN), finite
    ck = torch.load(tmp_path / "ckpt" / "last.pt", weights_only=True)
    assert ck["epoch"] == 1
    assert all(torch.isfinite(t).all() for n in ("G_XY", "G_YX", "D_X", "D_Y") for t in ck["model"][n].values())


def test_full_run_outputs(dataset: dict[str, Path], tmp_path: Path) -> None:
    summary = _run("proposed", dataset, tmp_path)
    assert summary["steps"] == 9 and summary["n_human_train"] == 6 and summary["n_character_train"] == N_CHAR
    model = tmp_path / "model"
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["attention"] is True and cfg["size"] == SIZE and cfg["ngf"] == 4 and cfg["n_human_train"] == 6
    assert sorted(p.name for p in (model / "samples").iterdir()) == [f"epoch_00{i}.png" for i in (1, 2, 3)]
    assert not (tmp_path / "ckpt").exists()  # checkpoint removed on success
    loss = _tsv(tmp_path / "live", "loss_cyc")
    assert loss["step"].tolist() == [2, 3, 5, 6, 8, 9]  # every log_every=2 steps and at each epoch end
    for name in gcfg.LOGGED:
        assert (tmp_path / "live" / "plots" / "metrics" / f"{name}.tsv").is_file()
    metrics = json.loads((tmp_path / "live" / "metrics.json").read_text())
    assert metrics["steps"] == 9 and metrics["n_human_train"] == 6
    # timings change from run to run: never in the metrics file, only in timing.json
    assert not {"images_per_s", "train_seconds", "compile_seconds", "val_seconds"} & set(metrics)
    times = json.loads((tmp_path / "live" / "timing.json").read_text())
    assert times["images_per_s"] > 0 and times["train_seconds"] > 0 and times["val_seconds"] >= 0
    assert _tsv(tmp_path / "live", "lr")["lr"].iloc[-1] < 2e-4  # decaying
    g = load_generator(model, "XY")
    assert g.attention and g.image_size == SIZE
    x = torch.rand(1, 3, SIZE, SIZE) * 2 - 1
    assert g(x, torch.rand(1, 1, 8, 8)).shape == x.shape


def test_resume_reproduces_uninterrupted_run(dataset: dict[str, Path], tmp_path: Path) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run("proposed", dataset, full)
    with pytest.raises(tc._Stop):
        _run("proposed", dataset, killed, _stop_after_epochs=1)
    assert (killed / "ckpt" / "last.pt").is_file()
    # what DVC does before re-running a stage: its outputs are deleted
    import shutil
    shutil.rmtree(killed / "model")
    shutil.rmtree(killed / "live")
    _run("proposed", dataset, killed)
    a, b = _weights(full / "model"), _weights(killed / "model")
    for net in a:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"
    for name in ("loss_cyc", "loss_D", "lr"):
        pd.testing.assert_frame_equal(_tsv(full / "live", name), _tsv(killed / "live", name))
    assert sorted(p.name for p in (killed / "model" / "samples").iterdir()) == \
        ["epoch_001.png", "epoch_002.png", "epoch_003.png"]
    assert not (killed / "ckpt").exists()


def test_checkpoint_of_other_config_is_ignored(dataset: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(tc._Stop):
        _run("baseline", dataset, tmp_path, _stop_after_epochs=1)
    ref = tmp_path / "ref"
    changed = _params(lambda_cyc=5.0)
    _run("baseline", dataset, ref, changed)
    _run("baseline", dataset, tmp_path, changed)   # must start over, not resume the lambda_cyc=10 run
    a, b = _weights(ref / "model"), _weights(tmp_path / "model")
    assert all(torch.equal(a["G_XY"][k], b["G_XY"][k]) for k in a["G_XY"])


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not_ours"])
def test_damaged_checkpoint_is_reported_and_training_starts_fresh(dataset: dict[str, Path], tmp_path: Path,
                                                                  damage: str, capsys) -> None:
    with pytest.raises(tc._Stop):
        _run("baseline", dataset, tmp_path / "killed", _stop_after_epochs=1)
    ckpt = tmp_path / "killed" / "ckpt" / "last.pt"
    data = ckpt.read_bytes()
    ckpt.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"not a checkpoint at all",
                      "not_ours": b""}[damage])
    if damage == "not_ours":
        torch.save({"config_hash": "x", "unrelated": torch.zeros(1)}, ckpt)
    _run("baseline", dataset, tmp_path / "killed")
    err = capsys.readouterr().err
    assert "ignoring" in err and "Traceback" not in err
    _run("baseline", dataset, tmp_path / "fresh")
    a, b = _weights(tmp_path / "fresh" / "model"), _weights(tmp_path / "killed" / "model")
    assert all(torch.equal(a["G_XY"][k], b["G_XY"][k]) for k in a["G_XY"])


def test_baseline_runs_without_select_or_cam(dataset: dict[str, Path], tmp_path: Path) -> None:
    summary = tc.train("baseline", _params(epochs=1, lr_decay_epochs=0), progress=False,
                       data_dir=dataset["data_dir"], cam_dir=tmp_path / "missing_cam",
                       select_csv=tmp_path / "missing" / "selected.csv", out_dir=tmp_path / "m",
                       live_dir=tmp_path / "l", ckpt_dir=tmp_path / "c")
    assert summary["n_human_train"] == 6
    assert json.loads((tmp_path / "m" / "config.json").read_text())["attention"] is False


def test_deterministic(dataset: dict[str, Path], tmp_path: Path) -> None:
    p = _params(epochs=1, lr_decay_epochs=0)
    _run("baseline", dataset, tmp_path / "a", p)
    _run("baseline", dataset, tmp_path / "b", copy.deepcopy(p))
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


FAST = {"compile": True, "channels_last": True, "adam": "fused", "fuse_passes": True}


@pytest.mark.compile
def test_fast_path_is_deterministic_and_resumes_bit_exactly(dataset: dict[str, Path], tmp_path: Path) -> None:
    """The fast path (torch.compile + channels_last + fused Adam + fused passes) compiles without
    a fallback (one graph per loss, so no breaks on the CAM/None branches) and, on CPU with the
    same thread count, gives the same weights and losses when run again and when killed and
    resumed (the compiled kernels are deterministic; the cache gives the same code). It is not
    bit-identical to the exact mode (other kernels and summation orders)."""
    p = _params(**FAST, gan_loss="lsgan", diffaug="color,translation,cutout", val_every=2, snapshot="best")
    full, killed = tmp_path / "full", tmp_path / "killed"
    summary = _run("proposed", dataset, full, p)
    assert summary["compile"] == "inductor" and summary["compile_seconds"] > 0
    with pytest.raises(tc._Stop):
        _run("proposed", dataset, killed, copy.deepcopy(p), _stop_after_epochs=1)
    _run("proposed", dataset, killed, copy.deepcopy(p))
    a, b = _weights(full / "model"), _weights(killed / "model")
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])
    for name in ("loss_cyc", "loss_D", "val_score"):
        pd.testing.assert_frame_equal(_tsv(full / "live", name), _tsv(killed / "live", name))
    exact = _run("proposed", dataset, tmp_path / "exact", _params(gan_loss="lsgan"))
    assert exact["compile"] == "eager"


def test_compile_failure_falls_back_to_eager_with_one_line(capsys) -> None:
    cfg = train_config(method="m", subset="random", attention=True, seed=0, max_images=4, ngf=4, ndf=4, n_res=1,
                         epochs=1, steps_per_epoch=3, precision="fp32", compile=True)
    lines: list[str] = []
    model = gmodel.CycleGAN(cfg, torch.device("cpu"), notify=lines.append)

    from torch._dynamo.exc import TorchDynamoException

    def broken(*args):
        raise TorchDynamoException("inductor: simulated C++ compiler failure\nsecond line")

    model.g_fn.compiled = broken
    x, y, c = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 1, 8, 8)
    model.d_fn.compiled = None
    losses, _ = model.step(x, y, c, c)
    assert torch.isfinite(losses).all() and model.g_fn.mode == "eager"
    assert len(lines) == 1 and "simulated C++ compiler failure" in lines[0] and "\n" not in lines[0]


@pytest.mark.parametrize("error,expect", [(RuntimeError("a real bug in the step"), RuntimeError),
                                          (torch.OutOfMemoryError("CUDA out of memory"), UserError)])
def test_compile_fallback_lets_bugs_and_out_of_memory_through(error: Exception, expect: type) -> None:
    """Only compiler errors switch to eager: a bug propagates as itself, out-of-memory as a
    one-line error with a hint, and the compiled path stays on (no silent eager run)."""
    cfg = train_config(attention=True, ngf=4, ndf=4, n_res=1, epochs=1, steps_per_epoch=3, compile=True)
    model = gmodel.CycleGAN(cfg, torch.device("cpu"), notify=lambda m: None)

    def broken(*args):
        raise error

    model.g_fn.compiled = broken
    x, y, c = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 1, 8, 8)
    with pytest.raises(expect, match="batch_size" if expect is UserError else "a real bug"):
        model.step(x, y, c, c)
    assert model.g_fn.mode == "inductor"


def _classifier_dir(root: Path) -> Path:
    """A tiny untrained guiding classifier (ConvNet, CAM layer at S/4) as train_classifier writes it."""
    from face2anime.models.classifiers import build_classifier

    root.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = build_classifier("convnet", [4, 8, 8])
    torch.save(net.state_dict(), root / "classifier.pt")
    (root / "classifier.json").write_text(json.dumps({"arch": "convnet", "widths": [4, 8, 8], "dropout": 0.0}))
    return root


@pytest.mark.parametrize("mode", ["source", "self", "none"])
def test_d_cam_modes_give_d_the_right_cam(mode: str, tmp_path: Path) -> None:
    """source: a fake carries its source's CAM; self: every image D sees gets the classifier's CAM
    of that very image (real and fake computed alike); none: D gets no CAM."""
    from face2anime.gan import dcam

    cfg = train_config(method="m", subset="random", attention=True, seed=0, max_images=4, ngf=4, ndf=4, n_res=1,
                         epochs=1, steps_per_epoch=3, precision="fp32", d_cam=mode)
    model = gmodel.CycleGAN(cfg, torch.device("cpu"))
    net = dcam.load_cam_net(_classifier_dir(tmp_path / "cls"))
    model.set_cam_net(net)
    model.image_size = SIZE
    img, src = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 1, 3, 3)
    _, cam = model._d_view(img, src, None, gmodel.LABEL_Y)
    if mode == "source":
        assert cam is src
    elif mode == "none":
        assert cam is None
    else:
        assert cam is src      # given (precomputed for real images / stored with a pooled fake): kept
        _, cam = model._d_view(img, None, None, gmodel.LABEL_Y)
        assert torch.equal(cam, dcam.self_cam(net, img, gmodel.LABEL_Y, gdata.d_feature_size(SIZE)))
        assert not cam.requires_grad
    losses, _ = model.step(img, img.flip(0), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8))
    assert torch.isfinite(losses).all()


@pytest.mark.parametrize("diffaug", ["", "color,translation,cutout"])
def test_d_cam_self_and_diffaug_train_and_resume(dataset: dict[str, Path], tmp_path: Path, diffaug: str) -> None:
    cls = _classifier_dir(tmp_path / "cls")
    p = _params(d_cam="self", diffaug=diffaug)
    full, killed = tmp_path / "full", tmp_path / "killed"
    s = tc.train("proposed", p, progress=False, out_dir=full / "model", live_dir=full / "live",
                 ckpt_dir=full / "ckpt", classifier_dir=cls, **dataset)
    assert s["d_cam"] == "self" and s["diffaug"] == diffaug
    kw = dict(progress=False, out_dir=killed / "model", live_dir=killed / "live", ckpt_dir=killed / "ckpt",
              classifier_dir=cls, **dataset)
    with pytest.raises(tc._Stop):
        tc.train("proposed", copy.deepcopy(p), _stop_after_epochs=1, **kw)
    tc.train("proposed", copy.deepcopy(p), **kw)
    a, b = _weights(full / "model"), _weights(killed / "model")
    assert all(torch.equal(a[n][k], b[n][k]) for n in a for k in a[n])


def test_diffaug_changes_training_and_is_validated(dataset: dict[str, Path], tmp_path: Path) -> None:
    plain = _run("baseline", dataset, tmp_path / "a", _params(epochs=1, lr_decay_epochs=0))
    aug = _run("baseline", dataset, tmp_path / "b", _params(epochs=1, lr_decay_epochs=0, diffaug="translation, color"))
    assert plain["diffaug"] == "" and aug["diffaug"] == "color,translation"
    a, b = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert not torch.equal(a["D_X"]["conv0.0.weight"], b["D_X"]["conv0.0.weight"])
    with pytest.raises(UserError, match="diffaug.*'blur'"):
        gcfg.read_config("baseline", _params(diffaug="blur"))


def test_snapshot_best_saves_the_generators_of_the_best_step(dataset: dict[str, Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With the validation score made lowest at step 4 (of 9), the saved generators are step 4's:
    they differ from the same run's last-step generators, while the discriminators are the last
    step's either way."""
    real_validate, calls = tc.validate, []

    def scored(*args, **kw):
        m = real_validate(*args, **kw)
        calls.append(1)
        return {**m, "score": -1.0 if len(calls) == 2 else m["score"]}   # the 2nd validation: step 4

    monkeypatch.setattr(tc, "validate", scored)
    s = _run("baseline", dataset, tmp_path / "best", _params(snapshot="best", val_every=2))
    monkeypatch.setattr(tc, "validate", real_validate)
    last = _run("baseline", dataset, tmp_path / "last", _params(snapshot="last", val_every=2))
    assert s["val_best_step"] == 4 and last["steps"] == 9
    assert json.loads((tmp_path / "best" / "model" / "config.json").read_text())["snapshot_step"] == 4
    best_w, last_w = _weights(tmp_path / "best" / "model"), _weights(tmp_path / "last" / "model")
    assert not all(torch.equal(best_w["G_XY"][k], last_w["G_XY"][k]) for k in best_w["G_XY"])
    assert all(torch.equal(best_w["D_X"][k], last_w["D_X"][k]) for k in best_w["D_X"])


def test_snapshot_best_saves_the_best_validated_generators(dataset: dict[str, Path], tmp_path: Path) -> None:
    s = _run("baseline", dataset, tmp_path, _params(snapshot="best", val_every=2))
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["snapshot"] == "best" and cfg["snapshot_step"] == s["val_best_step"]
    val = _tsv(tmp_path / "live", "val_score")
    assert val["step"].tolist() == [2, 4, 6, 8, 9]
    assert val["val_score"].min() == pytest.approx(s["val_best_score"], abs=1e-4)
    assert s["collapsed"] in (True, False) and isinstance(s["collapse_reasons"], list)
    with pytest.raises(UserError, match="val_every"):
        gcfg.read_config("baseline", _params(snapshot="best", val_every=0))


def test_d_cam_self_needs_the_classifier_declared() -> None:
    nothing = "data/resized/manifest.csv"
    d = _data(d_cam="self")
    d["cyclegan"]["methods"]["proposed"]["inputs"] = {"subset": "data/select/selected.csv", "cams": "data/cam",
                                                           "classifier": nothing, "classifier_config": nothing}
    with pytest.raises(UserError, match="inputs.classifier "):
        gcfg.read_config("proposed", typed(d))
    d["cyclegan"]["methods"]["proposed"]["inputs"]["classifier"] = gcfg.CLASSIFIER_INPUT
    with pytest.raises(UserError, match="inputs.classifier_config"):      # it opens the config too
        gcfg.read_config("proposed", typed(d))
    d["cyclegan"]["methods"]["proposed"]["inputs"]["classifier_config"] = gcfg.CLASSIFIER_CONFIG_INPUT
    assert gcfg.read_config("proposed", typed(d)).d_cam == "self"
    d["cyclegan"]["methods"]["baseline"]["inputs"] = {"subset": nothing, "cams": nothing,
                                                           "classifier": gcfg.CLASSIFIER_INPUT, "classifier_config": nothing}
    with pytest.raises(UserError, match="never reads"):
        gcfg.read_config("baseline", typed(d))
    d["cyclegan"]["methods"]["baseline"]["inputs"]["classifier"] = nothing
    d["cyclegan"]["methods"]["baseline"]["inputs"]["classifier_config"] = gcfg.CLASSIFIER_CONFIG_INPUT
    with pytest.raises(UserError, match="never reads .*classifier.json"):
        gcfg.read_config("baseline", typed(d))


@pytest.mark.parametrize("attention", [False, True])
def test_fast_eager_options_compute_the_same_step(attention: bool) -> None:
    """channels_last + fused Adam + fused passes (eager) is the same function as the exact mode:
    two steps from the same weights give the same losses up to float rounding."""
    def run(**opts):
        cfg = train_config(method="m", subset="random", attention=attention, seed=0, max_images=4, ngf=4, ndf=4,
                             n_res=1, epochs=1, steps_per_epoch=3, lr_decay_epochs=0, precision="fp32",
                             gan_loss="lsgan", ema=0.9, **opts)
        model = gmodel.CycleGAN(cfg, torch.device("cpu"))
        g = torch.Generator().manual_seed(1)
        out = []
        for _ in range(2):
            x, y = torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1, torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1
            c = torch.rand(2, 1, 8, 8, generator=g) if attention else None
            out.append(model.step(x, y, c, c)[0])
        with torch.no_grad():
            model.G_XY.eval()
            return torch.stack(out), model.G_XY(probe, probe_cam).contiguous(), before

    g0 = torch.Generator().manual_seed(7)
    probe = torch.rand(2, 3, SIZE, SIZE, generator=g0) * 2 - 1
    probe_cam = torch.rand(2, 1, 8, 8, generator=g0) if attention else None
    with torch.no_grad():
        init = gmodel.CycleGAN(train_config(attention=attention, ngf=4, ndf=4, n_res=1, epochs=1, steps_per_epoch=3,
                                            lr_decay_epochs=0, gan_loss="lsgan", ema=0.9), torch.device("cpu"))
        before = init.G_XY.eval()(probe, probe_cam)
    (la, oa, _), (lb, ob, _) = run(), run(channels_last=True, adam="fused", fuse_passes=True)
    torch.testing.assert_close(la, lb, rtol=1e-3, atol=1e-5)
    # the trained generators compute the same function: their outputs agree far more closely
    # than the two steps moved them (weights themselves are not compared: Adam's first steps
    # move every weight by about +-lr, so a near-zero gradient may flip sign with rounding)
    moved = float((oa - before).abs().max())
    differ = float((oa - ob).abs().max())
    assert moved > 1e-3 and differ < moved / 20, (moved, differ)


def test_method_train_overrides_only_that_method() -> None:
    d = _data()
    d["cyclegan"]["train"]["d_cam"] = "source"
    d["cyclegan"]["methods"]["dcam_none"] = {"model": "cyclegan", "subset": "selected", "attention": True,
                                                 "train": {"d_cam": "none", "lr": 0.001}}
    cfg = gcfg.read_config("dcam_none", typed(d))
    assert (cfg.d_cam, cfg.lr) == ("none", 0.001)
    assert gcfg.read_config("proposed", typed(d)).d_cam == "source" and d["cyclegan"]["train"]["lr"] == 0.0002
    d["cyclegan"]["methods"]["typo"] = {"model": "cyclegan", "subset": "random", "attention": False, "train": {"d_came": "none"}}
    with pytest.raises(UserError, match=r"cyclegan.methods.typo.train: d_came not in cyclegan.train"):
        gcfg.read_config("typo", typed(d))
    d["cyclegan"]["methods"]["bad"] = {"model": "cyclegan", "subset": "random", "attention": False, "train": {"d_cam": "both"}}
    with pytest.raises(UserError, match="d_cam"):
        gcfg.read_config("bad", typed(d))


def test_model_warnings_for_synthetic_or_collapsed_models() -> None:
    from face2anime.gan.inference import model_warnings

    assert model_warnings({"training_data": {"source": "local", "photo_like": False}, "collapsed": False}) == []
    assert model_warnings({}) == []                   # models from before the field: nothing to say
    (w,) = model_warnings({"training_data": {"source": "synthetic", "photo_like": True}})
    assert "photo-like synthetic faces" in w and "docs/real-data.md" in w and (ROOT_DIR / "docs/real-data.md").is_file()
    (w,) = model_warnings({"training_data": {"source": "ffhq"}, "collapsed": True,
                           "collapse_reasons": ["validation realism dropped 0.80 -> 0.10"]})
    assert "collapsing (validation realism dropped 0.80 -> 0.10)" in w
    d = _data()
    d["download"]["source"], d["download"]["synthetic"]["photo_like"], d["resize"]["crop"] = "synthetic", True, "none"
    assert gcfg.training_data(typed(d)) == {"source": "synthetic", "photo_like": True, "crop": "none", "align": None}
    d["resize"]["crop"] = "align"
    d["resize"]["align"] = {"landmarks": 68, "scale": 0.7, "shift": 0.2, "faces": "largest", "min_eye_px": 10}
    assert gcfg.training_data(typed(d))["align"] == {"landmarks": 68, "scale": 0.7, "shift": 0.2, "faces": "largest",
                                                   "min_eye_px": 10}


@pytest.mark.parametrize("workers", [0, 2])
def test_streamed_images_train_exactly_like_loaded_ones(dataset: dict[str, Path], tmp_path: Path,
                                                         workers: int) -> None:
    """preload_mb 0: the training images are read from disk by a DataLoader (FFHQ scale), with the
    same batches, so the same weights, bit for bit; and the run resumes the same way."""
    _run("proposed", dataset, tmp_path / "mem")
    p = _params(preload_mb=0, loader_workers=workers)
    with pytest.raises(tc._Stop):
        _run("proposed", dataset, tmp_path / "disk", p, _stop_after_epochs=1)
    _run("proposed", dataset, tmp_path / "disk", p)
    want, got = _weights(tmp_path / "mem" / "model"), _weights(tmp_path / "disk" / "model")
    for net in want:
        for k in want[net]:
            assert torch.equal(want[net][k], got[net][k]), (net, k)


def test_streamed_images_of_mixed_sizes_are_one_line_error(tmp_path: Path) -> None:
    from face2anime.data.images import ImageFiles

    for i, s in enumerate((32, 32, 40)):
        Image.new("RGB", (s, s)).save(tmp_path / f"{i}.png")
    with pytest.raises(UserError, match="do not share one size"):
        ImageFiles([f"{i}.png" for i in range(3)], tmp_path)
    ds = ImageFiles(["0.png", "1.png"], tmp_path)
    assert ds.shape == (2, 3, 32, 32) and ds.stack([1, 0]).shape == (2, 3, 32, 32) and ds[1][1] == 1


def test_load_images_is_nchw_and_refuses_mixed_sizes(tmp_path: Path) -> None:
    from face2anime.data.images import load_images

    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 256, (8, 12, 3), dtype=np.uint8) for _ in range(3)]
    for i, a in enumerate(arrays):
        Image.fromarray(a).save(tmp_path / f"{i}.png")
    x = load_images([f"{i}.png" for i in range(3)], tmp_path)
    assert x.shape == (3, 3, 8, 12) and x.is_contiguous()
    assert torch.equal(x, torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2))
    Image.new("RGB", (9, 9)).save(tmp_path / "odd.png")
    with pytest.raises(ValueError, match="odd.png is 9x9 px"):
        load_images(["0.png", "odd.png"], tmp_path)


def test_onnx_export_matches_pytorch_and_converts_without_torch(dataset: dict[str, Path], tmp_path: Path) -> None:
    """`face2anime export`: each method's generator (with the attention method's closed-form
    Grad-CAM in the graph) run by onnxruntime gives PyTorch's translation within one 8-bit level; and
    `convert --backend onnx` works in a process where PyTorch cannot be imported."""
    import subprocess
    import sys

    import onnxruntime as ort

    from face2anime.apps.export import export_all
    from face2anime.data.images import load_images
    from face2anime.gan.inference import Translator

    cyclegan, onnx_dir = tmp_path / "cyclegan", tmp_path / "onnx"
    for method in ("baseline", "proposed"):
        tc.train(method, _params(), progress=False, out_dir=cyclegan / method, live_dir=tmp_path / "live" / method,
                 ckpt_dir=tmp_path / "ckpt" / method, **dataset)
    classifier = _classifier_dir(tmp_path / "classifier")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params({"resize.crop": "none"})))
    export_all([], params, cyclegan, classifier, dataset["data_dir"], onnx_dir)
    man = pd.read_csv(dataset["data_dir"] / "manifest.csv")
    x = load_images(man[man["domain"] == "human"]["file"], dataset["data_dir"])   # train and test images
    for method in ("baseline", "proposed"):
        got = ort.InferenceSession(str(onnx_dir / f"{method}.onnx")).run(None, {"photo": x.numpy()})[0]
        want = Translator(cyclegan / method, torch.device("cpu"), classifier_dir=classifier).to_character(x)
        diff = float(np.abs(got - want.numpy()).max())
        assert got.shape == tuple(want.shape) and diff < 2 / 255, (method, diff)
    assert json.loads((onnx_dir / "proposed.json").read_text())["attention"] is True

    photo = tmp_path / "face.png"
    Image.open(dataset["data_dir"] / man["file"].iloc[0]).resize((100, 100)).save(photo)
    out = tmp_path / "avatar.png"
    code = ("import sys; from pathlib import Path; sys.modules['torch'] = None\n"   # `import torch` fails
            "from face2anime.apps.convert import convert\n"
            f"convert(Path({str(photo)!r}), Path({str(out)!r}), 'proposed', Path({str(params)!r}), detect=False, "
            f"upscale=64, backend='onnx', onnx_dir=Path({str(onnx_dir)!r}))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-2000:]
    with Image.open(out) as im:
        assert im.size == (64, 64)
    # the web app on the exported models, PyTorch still unimportable: both methods convert
    code = ("import sys, json; from pathlib import Path; sys.modules['torch'] = None\n"
            "from starlette.testclient import TestClient\n"
            "from face2anime.web.app import Settings, create_app\n"
            f"s = Settings(items_dir=Path({str(tmp_path / 'items')!r}), responses=Path({str(tmp_path / 'r.csv')!r}), "
            f"params_file=Path({str(params)!r}), backend='onnx', onnx_dir=Path({str(onnx_dir)!r}))\n"
            f"r = TestClient(create_app(s)).post('/convert', files={{'photo': ('f.png', open({str(photo)!r}, 'rb').read(), "
            "'image/png')}, data={'no_detect': '1'})\n"
            "print(r.status_code, json.dumps(r.json()))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-2000:]
    status, body = res.stdout.strip().split(" ", 1)
    assert status == "200" and sorted(json.loads(body)["methods"]) == ["baseline", "proposed"], res.stdout


def test_a_bad_override_value_names_the_method_that_set_it() -> None:
    d = _data()
    d["cyclegan"]["methods"]["proposed"]["train"] = {"ema": 2.0}
    with pytest.raises(UserError, match=r"cyclegan.methods.proposed.train over cyclegan.train\): "
                                        r"param 'cyclegan.train.ema': input should be less than or equal to 0.9999"):
        gcfg.read_config("proposed", typed(d))
    assert gcfg.read_config("baseline", typed(d)).ema == 0.9     # the other method is untouched


def test_under_ddp_a_compiler_error_stops_every_rank_instead_of_falling_back() -> None:
    from torch._dynamo.exc import TorchDynamoException

    cfg = train_config(attention=True, ngf=4, ndf=4, n_res=1, epochs=1, steps_per_epoch=3, compile=True)
    model = gmodel.CycleGAN(cfg, torch.device("cpu"), notify=lambda m: None)
    model.g_fn.fallback = model.d_fn.fallback = False      # what distribute() sets for several ranks

    def broken(*args):
        raise TorchDynamoException("simulated compiler failure")

    model.g_fn.compiled = broken
    x, y, c = torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 3, SIZE, SIZE) * 2 - 1, torch.rand(2, 1, 8, 8)
    with pytest.raises(UserError, match=r"under DDP .* set cyclegan.train.compile: false"):
        model.step(x, y, c, c)


def test_total_variation_of_known_images() -> None:
    flat = torch.full((2, 3, 8, 8), 0.3)
    assert float(gmodel.total_variation(flat)) == 0.0
    checker = (torch.arange(8)[:, None] + torch.arange(8)[None, :]) % 2 * 2.0 - 1.0   # +-1, every step 2
    assert float(gmodel.total_variation(checker.expand(1, 3, 8, 8))) == pytest.approx(4.0)
    ramp = torch.linspace(-1, 1, 8).expand(1, 1, 8, 8)                                   # right steps 2/7, down 0
    assert float(gmodel.total_variation(ramp)) == pytest.approx(2 / 7)


def test_lambda_tv_flattens_the_translations_and_is_logged() -> None:
    """The same seeded steps with and without the flat-shading prior: with it, G_XY's output on
    the training batch has less total variation, and step() returns loss_tv last."""
    def run(tv: float) -> tuple[gmodel.CycleGAN, float, torch.Tensor]:
        cfg = train_config(method="m", subset="random", attention=False, seed=0, max_images=4, ngf=8, ndf=4,
                           n_res=1, epochs=1, steps_per_epoch=20, lr_decay_epochs=0, lr=1e-3, precision="fp32",
                           lambda_tv=tv)
        model = gmodel.CycleGAN(cfg, torch.device("cpu"))
        g = torch.Generator().manual_seed(1)
        x, y = (torch.rand(2, 3, SIZE, SIZE, generator=g) * 2 - 1 for _ in range(2))
        for _ in range(20):
            losses, _ = model.step(x, y, None, None)
        with torch.no_grad():
            return model, float(gmodel.total_variation(model.G_XY(x))), losses

    plain, tv_plain, losses_plain = run(0.0)
    flat, tv_flat, losses_flat = run(5.0)
    assert plain.loss_names == gmodel.LOSSES and len(losses_plain) == len(gmodel.LOSSES)
    assert flat.loss_names == gmodel.LOSSES + ("loss_tv",) and len(losses_flat) == len(gmodel.LOSSES) + 1
    assert tv_flat < 0.7 * tv_plain
