"""Attribute preservation on hand-made 'translations': identity gives (near) perfect scores,
random noise gives about chance."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cfgutil import typed_params
from face2anime.data.images import load_images
from face2anime.data.synthetic.dataset import generate
from face2anime.evaluation.evaluate import attr_preservation
from face2anime.models.attributes import train_attributes


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> tuple[Path, pd.DataFrame, Path]:
    root = tmp_path_factory.mktemp("attrs")
    data = root / "data"
    manifest = generate(data, n_human=2, n_character=64, size=32, hard_share=0.0, seed=3, progress=False)
    manifest["split"] = "train"
    manifest.loc[manifest.index[-2:], "split"] = "test"
    manifest.to_csv(data / "manifest.csv", index=False)
    params = typed_params({"device": "cpu", "precision": "fp32", "seed": 0,
                           "attributes": {"widths": [16, 32, 64], "epochs": 80, "batch_size": 16, "lr": 0.003}})
    train_attributes(params, data_dir=data, model_dir=root / "model", metrics_path=root / "attributes.json")
    return data, manifest, root / "model"


def test_identity_translation_preserves_attributes(labelled) -> None:
    data, manifest, model_dir = labelled
    chars = manifest[(manifest["domain"] == "character") & (manifest["split"] == "train")]
    x = load_images(chars["file"], data)
    res = attr_preservation(x, chars, model_dir, torch.device("cpu"), None)
    assert res["mean"] >= 0.95, res
    assert res["above_chance"] > 0.4


def test_noise_translation_scores_about_chance(labelled) -> None:
    data, manifest, model_dir = labelled
    chars = manifest[(manifest["domain"] == "character") & (manifest["split"] == "train")]
    noise = torch.randint(0, 256, (len(chars), 3, 32, 32), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    res = attr_preservation(noise, chars, model_dir, torch.device("cpu"), None)
    assert res["mean"] <= res["chance"] + 0.15, res
    assert 0.0 < res["chance_uniform"] <= res["chance"] <= 1.0


class _FixedJudge(torch.nn.Module):
    """Calls an image "character" (label 1) when its mean red value is above 128."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0].mean((1, 2))
        return torch.stack([-red, red], 1)


def test_char_rate_by_kind_splits_clean_and_hard() -> None:
    from face2anime.evaluation.evaluate import judged_character
    from face2anime.evaluation.measures import char_rate_by_kind

    fake = torch.zeros(5, 3, 8, 8, dtype=torch.uint8)
    fake[[0, 1, 3], 0] = 255                        # three "characters": clean 0, 1 and hard 3
    rows = pd.DataFrame({"clean": [True, True, "False", False, False],
                         "hard_kind": ["", "", "occluded_eyes", "small_offcentre", "small_offcentre"]})
    is_char = judged_character(_FixedJudge(), fake, torch.device("cpu"))
    got = char_rate_by_kind(is_char, rows)
    assert got["clean"] == {"char_rate": 1.0, "n": 2}
    assert got["hard"]["n"] == 3 and got["hard"]["char_rate"] == pytest.approx(1 / 3)
    assert got["occluded_eyes"] == {"char_rate": 0.0, "n": 1}
    assert got["small_offcentre"] == {"char_rate": 0.5, "n": 2}
    assert char_rate_by_kind(is_char, rows.assign(clean=None)) is None


def test_counterpart_in_its_own_domain_is_the_image_itself() -> None:
    from face2anime.data.synthetic.render import render_counterpart, render_one

    for dom, i, kind in (("human", 3, ""), ("character", 5, "occluded_eyes"), ("human", 7, "small_offcentre")):
        img, attrs, boxes = render_one(11, dom, i, 40, kind)
        img2, attrs2, boxes2 = render_counterpart(11, dom, i, 40, kind, as_domain=dom)
        assert np.array_equal(img, img2) and attrs == attrs2 and boxes == boxes2


def test_ceiling_renders_each_source_as_a_character_and_resizes_like_resize() -> None:
    from PIL import Image

    from face2anime.data.resize import process_image
    from face2anime.data.synthetic.render import render_counterpart, render_one
    from face2anime.evaluation.ceiling import ceiling_images

    rows = pd.DataFrame({"id": ["h00002", "h00009"], "hard_kind": [None, "occluded_mouth"]})
    params = typed_params({"seed": 4, "download.source": "synthetic", "download.synthetic.size": 40})
    got = ceiling_images(rows, params, 24)
    assert got.shape == (2, 3, 24, 24) and got.dtype == torch.uint8
    for k, (i, kind) in enumerate(((2, ""), (9, "occluded_mouth"))):
        arr, attrs, _ = render_counterpart(4, "human", i, 40, kind)
        want, _ = process_image(Image.fromarray(arr), 24)
        assert np.array_equal(got[k].permute(1, 2, 0).numpy(), np.asarray(want))
        human, hattrs, _ = render_one(4, "human", i, 40, kind)
        assert attrs == hattrs and not np.array_equal(arr, human)       # same attributes, other domain
    assert ceiling_images(rows, typed_params({"download.source": "local"}), 24) is None
    assert ceiling_images(rows.assign(id=["photo1", "h00001"]), params, 24) is None
