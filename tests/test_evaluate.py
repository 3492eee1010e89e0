"""Attribute preservation on hand-made 'translations': identity gives (near) perfect scores,
random noise gives about chance."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from face2anime.core.params import Params
from face2anime.data.images import load_images
from face2anime.data.synthetic import generate
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
    params = Params({"device": "cpu", "precision": "fp32", "seed": 0,
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
    from face2anime.evaluation.evaluate import char_rate_by_kind, judged_character

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
