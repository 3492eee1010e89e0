"""Degenerate images (the judge's junk class, evaluation's floors) and the validity rules that
flag a metric those floors fool."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from face2anime.data.junk import JUNK_KINDS, junk_images, patch_shuffle
from face2anime.evaluation.evaluate import judge_probs
from face2anime.evaluation.measures import knn_radii, realism_scores
from face2anime.evaluation.references import DEGENERATE, REFERENCE_NAMES, references
from face2anime.evaluation.validity import validity
from face2anime.models.classify import JUNK, with_junk

S = 16


def _images(n: int, red: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 60, (n, 3, S, S), generator=g, dtype=torch.uint8)
    x[:, 0] = torch.randint(red - 20, red + 20, (n, S, S), generator=g).clamp(0, 255).to(torch.uint8)
    return x


def test_junk_is_deterministic_and_covers_every_kind() -> None:
    x = _images(8, 100, 0)
    a, kinds = junk_images(x, 60, torch.Generator().manual_seed(1))
    b, _ = junk_images(x, 60, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == (60, 3, S, S)
    assert set(kinds) == set(JUNK_KINDS)
    xs, ys, _ = with_junk(x, torch.zeros(8, dtype=torch.long), 0.5, 0)
    assert len(xs) == 12 and (ys[8:] == JUNK).all() and torch.equal(xs[:8], x)


def test_patch_shuffle_moves_patches_and_keeps_pixels() -> None:
    x = torch.arange(2 * 3 * S * S, dtype=torch.int64).reshape(2, 3, S, S).to(torch.uint8)
    y = patch_shuffle(x, 4, torch.Generator().manual_seed(0))
    assert not torch.equal(x, y)
    for i in range(2):   # same 4x4 px patches, other order
        px = lambda t: sorted(t[i, :, r:r + 4, c:c + 4].flatten().tolist() for r in range(0, S, 4) for c in range(0, S, 4))
        assert px(x) == px(y)


def test_references_shapes_and_fixed_content() -> None:
    src, chars = _images(5, 60, 1), _images(3, 220, 2)
    refs = references(src, chars, chars, seed=0)
    assert list(refs) == list(REFERENCE_NAMES)
    assert all(v.shape == src.shape and v.dtype == torch.uint8 for v in refs.values())
    assert torch.equal(refs["source"], src) and (refs["grey"] == 128).all()
    assert torch.equal(refs["source_colour"][:, 0], src[:, 1])               # channels rotated
    assert refs["source_blur"].float().std() < src.float().std()
    assert torch.equal(refs["real_chars"][3], chars[0])                      # cycled to N
    assert torch.equal(references(src, chars, chars, 0)["noise"], refs["noise"])


class _AlwaysCharacter(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([0.0, 5.0]).expand(len(x), 2)


class _RedJudge(torch.nn.Module):
    """Calls an image "character" when its mean red value is above 140 (a colour-statistic judge)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = (x[:, 0].mean((1, 2)) + 1) * 127.5 - 140
        return torch.stack([-red, red], 1)


def _char_rates(judge: torch.nn.Module) -> dict[str, dict]:
    src, chars = _images(20, 60, 1), _images(20, 220, 2)
    refs = references(src, chars, _images(20, 220, 3), seed=0)
    return {k: {"char_rate": float((judge_probs(judge, x, torch.device("cpu")).argmax(1) == 1).mean())}
            for k, x in refs.items()}


def test_a_judge_that_calls_everything_character_makes_char_rate_invalid() -> None:
    v = validity(_char_rates(_AlwaysCharacter()), {}, None)["char_rate"]
    assert v["ok"] is False
    assert {r.split()[0] for r in v["reasons"]} == set(DEGENERATE)


def test_a_colour_statistic_judge_is_caught_by_the_shuffled_characters() -> None:
    rates = _char_rates(_RedJudge())
    assert rates["real_chars"]["char_rate"] == 1.0 and rates["noise"]["char_rate"] == 0.0
    v = validity(rates, {}, None)["char_rate"]
    assert v["ok"] is False and [r.split()[0] for r in v["reasons"]] == ["shuffled_chars"]


def _frames(values: dict[str, float], n: int = 30, seed: int = 0) -> tuple[dict, dict]:
    rng = np.random.default_rng(seed)
    frames = {k: pd.DataFrame({"edge_ssim": np.clip(v + rng.normal(0, 0.05, n), 0, 1)}) for k, v in values.items()}
    refs = {k: {"edge_ssim": float(f["edge_ssim"].mean())} for k, f in frames.items()}
    return refs, frames


def test_preservation_rules() -> None:
    good = dict(noise=0.05, grey=0.02, source=1.0, source_blur=0.6, source_colour=0.9, shuffled_chars=0.12,
                real_chars=0.1)
    refs, frames = _frames(good)
    assert validity(refs, frames, None)["edge_ssim"]["ok"] is True
    # shuffled characters scoring half-way to the blurred source: the metric rewards any face-like layout
    refs, frames = _frames({**good, "shuffled_chars": 0.35})
    v = validity(refs, frames, None)["edge_ssim"]
    assert v["ok"] is False and v["reasons"][0].startswith("shuffled_chars")
    # the blurred source no better than grey: no signal
    refs, frames = _frames({**good, "source_blur": 0.03})
    assert any(r.startswith("source_blur better than grey") for r in validity(refs, frames, None)["edge_ssim"]["reasons"])


def test_realism_score_inside_and_outside_the_manifold() -> None:
    ref = torch.tensor([[0.0], [1.0], [3.0], [3.5], [10.0]], dtype=torch.float64)
    assert knn_radii(ref, 1).tolist() == [1.0, 1.0, 0.5, 0.5, 6.5]
    # kept (radius <= median 1.0): 0, 1, 3, 3.5; realism = max r_j / |x - f_j|
    got = realism_scores(torch.tensor([[0.5], [3.25], [6.0], [100.0]], dtype=torch.float64), ref, 1)
    assert got[0] == pytest.approx(2.0) and got[1] == pytest.approx(2.0)
    assert got[2] == pytest.approx(0.5 / 2.5) and got[3] < 0.02
