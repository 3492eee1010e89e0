"""U-GAT-IT light (face2anime/models/ugatit.py) and its ``model: ugatit`` method in the one
training loop: shapes, the CAM module, rho's clipping, the generator's size, a tiny run,
resume, inference and the params checks."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from cfgutil import train_config, train_section
from conftest import tiny_params
from face2anime.core.params import UserError, typed
from face2anime.core.schema import ParamsFile
from face2anime.gan import config as gcfg, data as gdata, train as tc
from face2anime.gan.inference import Translator, load_generator
from face2anime.gan.model import UGATIT, make_model
from face2anime.models import ugatit as u
# the tiny data set and the one-thread fixture of the CycleGAN loop's tests (fixtures: used by name)
from test_train_cyclegan import N_CHAR, SIZE, _one_thread, _tsv, _weights, dataset  # noqa: F401

UG = {"model": "ugatit", "subset": "random", "attention": False,
      "train": {"lr": 0.0001, "lambda_idt": 1.0, "lambda_cam": 1000.0, "weight_decay": 0.0001, "pool_size": 0}}


def _data(entry: dict | None = None, **over) -> dict:
    """A whole params mapping (the tiny params) with a small baseline and ``entry`` (default: the
    U-GAT-IT entry) as methods; ``over``: ``cyclegan.train`` keys."""
    cg = train_section(ngf=4, ndf=4, n_res=1, epochs=3, steps_per_epoch=3, batch_size=2, pool_size=3,
                       ema=0.9, log_every=2, gan_loss="lsgan")
    cg.update(over)
    methods = {"baseline": {"model": "cyclegan", "subset": "random", "attention": False},
               "ugatit": entry or UG}
    return tiny_params({"seed": 3, "device": "cpu", "precision": "fp32", "threads": 1, "select.max_images": 6,
                        "select.share": 1.0, "cyclegan.methods": methods, "cyclegan.train": cg})


def _params(entry: dict | None = None, **over) -> ParamsFile:
    return typed(_data(entry, **over))


def _run(dataset: dict[str, Path], root: Path, params: ParamsFile, method: str = "ugatit", **kw) -> dict:
    return tc.train(method, params, progress=False, out_dir=root / "model", live_dir=root / "live",
                    ckpt_dir=root / "ckpt", **dataset, **kw)


# ---------------------------------------------------------------- the networks
@pytest.mark.parametrize("size", [32, 64])
def test_output_shapes(size: int) -> None:
    nets = u.build(ngf=4, ndf=4, n_res=2, size=size, seed=0)
    x = torch.rand(2, 3, size, size) * 2 - 1
    img, logits, heat = nets["G_XY"](x)
    assert img.shape == x.shape and logits.shape == (2, 2) and heat.shape == (2, 1, size // 4, size // 4)
    assert float(img.detach().abs().max()) <= 1.0 and not heat.requires_grad
    n_global, n_local = u.d_depths(size)
    assert (n_global, n_local) == {32: (2, 1), 64: (3, 1)}[size]
    for d, n in zip(nets["D_X"](x), (n_global, n_local)):
        patch, d_logits, d_heat = d
        f = size // 2 ** n - 1           # the stride-1 conv's features
        assert patch.shape == (2, 1, f - 1, f - 1) and d_logits.shape == (2, 2) and d_heat.shape == (2, 1, f, f)


def test_depths_at_256_are_the_authors() -> None:
    assert u.d_depths(256) == (5, 3)    # 7-conv global D, 5-conv local D
    d = u.DomainDiscriminator(2, 256)
    patch_g = d(torch.zeros(1, 3, 256, 256))[0][0]
    assert patch_g.shape == (1, 1, 6, 6)


def test_cam_weights_rescale_the_channels() -> None:
    torch.manual_seed(0)
    cam = u.CAMAttention(5)
    h = torch.randn(2, 5, 4, 4)
    with torch.no_grad():
        cam.gap_fc.weight.copy_(torch.arange(1.0, 6.0)[None])
        cam.gmp_fc.weight.copy_(-torch.arange(1.0, 6.0)[None])
    w = cam.weighted(h)
    assert w.shape == (2, 10, 4, 4)
    for c in range(5):   # channel c of each half is h's channel c times that classifier's weight c
        assert torch.allclose(w[:, c], h[:, c] * (c + 1)) and torch.allclose(w[:, 5 + c], -h[:, c] * (c + 1))
    _, logits, _ = cam(h)
    want = torch.stack([(h.mean((2, 3)) * torch.arange(1.0, 6.0)).sum(1),
                        -(h.amax((2, 3)) * torch.arange(1.0, 6.0)).sum(1)], 1)
    assert logits.shape == (2, 2) and torch.allclose(logits, want, atol=1e-5)
    with torch.no_grad():
        cam.gap_fc.weight.zero_()
        cam.gmp_fc.weight.zero_()
    assert torch.equal(cam.weighted(h), torch.zeros(2, 10, 4, 4))
    a, logits, heat = cam(h)
    assert torch.equal(logits, torch.zeros(2, 2))
    # zero attention features: the 1x1 conv gives its bias everywhere (after the ReLU)
    assert torch.allclose(a, torch.relu(cam.conv.bias)[None, :, None, None].expand_as(a))
    assert torch.allclose(heat, a.sum(1, keepdim=True))


def test_generator_size_is_the_light_ballpark() -> None:
    n = sum(p.numel() for p in u.Generator(64, 4).parameters())
    assert 10.3e6 < n < 10.9e6, n       # issue 24: about 10.6M (measured: 10,589,888)


def test_rho_is_clipped_after_a_step_that_pushes_it_out() -> None:
    cfg = train_config(model="ugatit", ngf=4, ndf=4, n_res=1, lr=0.1, batch_size=2, pool_size=0)
    model = UGATIT(cfg, torch.device("cpu"), size=32)
    blocks = [m for m in model.G_XY.modules() if isinstance(m, u.AdaLIN)]
    assert blocks and all(torch.all(m.rho == u.RHO_ADALIN) for m in blocks)
    with torch.no_grad():
        for m in blocks:
            m.rho.fill_(1.0)           # Adam's first step moves each rho by ~lr: half of them above 1
    gen = torch.Generator().manual_seed(0)
    x, y = (torch.rand(2, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2))
    model.step(x, y, None, None)
    rho = torch.cat([m.rho.detach().flatten() for m in blocks])
    assert float(rho.min()) >= 0.0 and float(rho.max()) <= 1.0
    assert int((rho == 1.0).sum()) > 0 and int((rho < 0.95).sum()) > 0   # clipped ones and moved ones
    r = torch.nn.Parameter(torch.tensor([-0.3, 0.5, 1.7]))
    iln = u.ILN(3)
    iln.rho = torch.nn.Parameter(r.data.reshape(1, 3, 1, 1).clone())
    u.clip_rho(iln)
    assert iln.rho.flatten().tolist() == [0.0, 0.5, 1.0]


def test_make_model_picks_the_networks() -> None:
    cfg = train_config(model="ugatit", ngf=4, ndf=4, n_res=1)
    m = make_model(cfg, torch.device("cpu"), size=32)
    assert isinstance(m, UGATIT) and isinstance(m.G_XY, u.Generator) and isinstance(m.D_X, u.DomainDiscriminator)
    assert m.loss_names[-1] == "loss_cam"
    g = m.generators()["G_XY"]
    assert isinstance(g, u.ImageOnly) and g.state_dict().keys() == m.G_XY.state_dict().keys()
    assert g(torch.zeros(1, 3, 32, 32)).shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="image size"):
        make_model(cfg, torch.device("cpu"))


# ---------------------------------------------------------------- params
def test_attention_with_ugatit_is_one_line_error() -> None:
    d = _data({**UG, "attention": True})
    with pytest.raises(UserError, match="ugatit learns its own attention") as e:
        gcfg.read_config("ugatit", typed(d))
    assert "\n" not in str(e.value) and "cyclegan.methods.ugatit" in str(e.value)
    d["cyclegan"]["methods"]["ugatit"]["model"] = "ugatitt"
    with pytest.raises(UserError, match="cyclegan.methods.ugatit.model"):
        gcfg.read_config("ugatit", typed(d))


def test_overrides_and_subset_selected(dataset: dict[str, Path]) -> None:
    cfg = gcfg.read_config("ugatit", _params())
    assert (cfg.model, cfg.lr, cfg.lambda_idt, cfg.lambda_cam, cfg.weight_decay, cfg.pool_size) == \
        ("ugatit", 0.0001, 1.0, 1000.0, 0.0001, 0)
    assert gcfg.read_config("baseline", _params()).weight_decay == 0.0
    sel = gcfg.read_config("ugatit", _params({**UG, "subset": "selected"}))
    x, _ = gdata.load_training_data(sel, dataset["data_dir"], Path("nope"), dataset["select_csv"])
    assert x.ids == ["h005", "h001", "h009", "h003", "h011", "h002"] and x.cams is None


# ---------------------------------------------------------------- the training loop
def test_tiny_run_outputs_and_inference(dataset: dict[str, Path], tmp_path: Path) -> None:
    summary = _run(dataset, tmp_path, _params())
    assert summary["steps"] == 9 and summary["n_character_train"] == N_CHAR and summary["images_per_s"] > 0
    model = tmp_path / "model"
    cfg = json.loads((model / "config.json").read_text())
    assert cfg["model"] == "ugatit" and cfg["attention"] is False and cfg["size"] == SIZE
    loss_cam = _tsv(tmp_path / "live", "loss_cam")
    assert loss_cam["step"].tolist() == [2, 3, 5, 6, 8, 9] and loss_cam["loss_cam"].notna().all()
    assert (tmp_path / "live" / "plots" / "metrics" / "val_score.tsv").is_file()   # validated at the last step
    rho = [v for k, v in torch.load(model / "G_XY.pt", weights_only=True).items() if k.endswith("rho")]
    assert rho and all(float(r.min()) >= 0 and float(r.max()) <= 1 for r in rho)
    g = load_generator(model, "XY")
    assert isinstance(g, u.ImageOnly) and not g.attention and g.image_size == SIZE
    x = torch.rand(2, 3, SIZE, SIZE) * 2 - 1
    assert g(x).shape == x.shape and g.heatmap(x).shape == (2, 1, SIZE // 4, SIZE // 4)
    t = Translator(model, torch.device("cpu"))
    imgs = torch.randint(0, 255, (3, 3, SIZE, SIZE), dtype=torch.uint8)
    out, rec = t.cycle(imgs, "human")
    assert out.shape == rec.shape == (3, 3, SIZE, SIZE) and t.to_human(imgs).shape == (3, 3, SIZE, SIZE)


@pytest.mark.parametrize("fast", [False, True])
def test_resume_reproduces_uninterrupted_run(dataset: dict[str, Path], tmp_path: Path, fast: bool) -> None:
    over = dict(fuse_passes=True, channels_last=True, adam="fused", diffaug="color,translation",
                pool_size=3, val_every=3, snapshot="best") if fast else {}
    p = _params(**over)
    full, killed = tmp_path / "full", tmp_path / "killed"
    _run(dataset, full, p)
    with pytest.raises(tc._Stop):
        _run(dataset, killed, p, _stop_after_epochs=1)
    assert (killed / "ckpt" / "last.pt").is_file()
    shutil.rmtree(killed / "model")
    shutil.rmtree(killed / "live")
    _run(dataset, killed, p)
    a, b = _weights(full / "model"), _weights(killed / "model")
    for net in a:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"
    for name in ("loss_cam", "loss_D", "lr"):
        pd.testing.assert_frame_equal(_tsv(full / "live", name), _tsv(killed / "live", name))


def test_onnx_export_of_a_ugatit_model_matches_pytorch(dataset: dict[str, Path], tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort

    from face2anime.gan.onnx_export import export_method

    _run(dataset, tmp_path, _params(epochs=1, steps_per_epoch=2, lr_decay_epochs=0))
    cyclegan = tmp_path / "cyclegan"
    cyclegan.mkdir()
    (tmp_path / "model").rename(cyclegan / "ugatit")
    meta = export_method("ugatit", cyclegan, tmp_path / "no_classifier", tmp_path / "onnx")
    assert meta["attention"] is False and meta["size"] == SIZE
    x = torch.randint(0, 255, (3, 3, SIZE, SIZE), dtype=torch.uint8)
    got = ort.InferenceSession(str(tmp_path / "onnx" / "ugatit.onnx")).run(None, {"photo": x.numpy()})[0]
    want = Translator(cyclegan / "ugatit", torch.device("cpu")).to_character(x)
    assert got.shape == tuple(want.shape) and float(np.abs(got - want.numpy()).max()) < 2 / 255


def test_translate_writes_the_learned_heatmaps_and_compare_shows_them(dataset: dict[str, Path],
                                                                     tmp_path: Path) -> None:
    from PIL import Image

    from face2anime.evaluation.compare import picture
    from face2anime.gan.translate import translate

    _run(dataset, tmp_path, _params(epochs=1, steps_per_epoch=2, lr_decay_epochs=0))
    cyclegan, translated = tmp_path / "cyclegan", tmp_path / "translated"
    cyclegan.mkdir()
    (tmp_path / "model").rename(cyclegan / "ugatit")
    d = _data()
    d.update({"translate": {"grid_count": 2}, "cam": {"method": "gradcam", "target_layer": "default", "batch_size": 64}})
    p = typed(d)
    translate("ugatit", p, dataset["data_dir"], translated, cyclegan, tmp_path / "reports")
    test_ids = ["h014", "h015"]
    assert sorted(f.stem for f in (translated / "ugatit").glob("*.png")) == test_ids
    assert sorted(f.stem for f in (translated / "ugatit" / "cam").glob("*.png")) == test_ids
    with Image.open(translated / "ugatit" / "cam" / "h014.png") as im:
        assert im.size == (SIZE, SIZE)
    shutil.copytree(translated / "ugatit", translated / "baseline", ignore=shutil.ignore_patterns("cam"))
    entries = p.cyclegan.methods
    names = picture(entries, 8, dataset["data_dir"], translated, tmp_path / "compare.png")
    assert names == ["source", "baseline", "ugatit", "ugatit CAM"]
    with Image.open(tmp_path / "compare.png") as im:
        assert im.size == (4 * (SIZE + 2) + 2, 2 * (SIZE + 2) + 2)   # 2 test faces, 4 columns
    plain = {"baseline": entries["baseline"], "ugatit": entries["ugatit"].model_copy(update={"model": "cyclegan"})}
    names = picture(plain, 8, dataset["data_dir"], translated, tmp_path / "c2.png")
    assert names == ["source", "baseline", "ugatit"]       # without a U-GAT-IT method: the picture as before


def test_an_attention_method_gives_its_grad_cam_as_heatmap(dataset: dict[str, Path], tmp_path: Path) -> None:
    """The Grad-CAM column beside U-GAT-IT's: the CAMs an attention method's generator is given."""
    from test_train_cyclegan import _classifier_dir

    d = _data()
    d["cyclegan"]["methods"]["proposed"] = {"model": "cyclegan", "subset": "selected", "attention": True}
    tc.train("proposed", typed(d), progress=False, out_dir=tmp_path / "model", live_dir=tmp_path / "live",
             ckpt_dir=tmp_path / "ckpt", **dataset)
    t = Translator(tmp_path / "model", torch.device("cpu"), classifier_dir=_classifier_dir(tmp_path / "clf"))
    x = torch.randint(0, 255, (3, 3, SIZE, SIZE), dtype=torch.uint8)
    out, heat = t.to_character_with_heatmaps(x, batch_size=2)
    assert torch.allclose(out, t.to_character(x), atol=1e-5) and heat is not None and heat.shape == (3, 1, SIZE // 4, SIZE // 4)
    cam = t.cams(x, "human").cpu()
    assert torch.allclose(heat.amax((1, 2, 3)), torch.ones(3)) and float(heat.min()) == 0.0
    assert torch.corrcoef(torch.stack([heat.flatten(), cam.flatten()]))[0, 1] > 0.9
