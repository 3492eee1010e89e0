"""Starting a classifier from a local state dict: what fits loads, what does not is a clear error."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from face2anime.core.io import torch_save
from face2anime.core.params import UserError
from face2anime.models.classifiers import build_classifier
from face2anime.models.classify import load_pretrained


def test_pretrained_that_fits_loads(tmp_path: Path) -> None:
    src = build_classifier("convnet", [4, 8])
    torch_save(src.state_dict(), tmp_path / "w.pt")
    dst = build_classifier("convnet", [4, 8])
    load_pretrained(dst, tmp_path / "w.pt", "classifier.pretrained")
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_pretrained_with_other_shapes_is_a_user_error(tmp_path: Path) -> None:
    """Used to crash with a RuntimeError traceback from load_state_dict."""
    torch_save(build_classifier("convnet", [4, 16]).state_dict(), tmp_path / "w.pt")
    with pytest.raises(UserError, match=r"classifier.pretrained.*does not fit this model.*wrong shape"):
        load_pretrained(build_classifier("convnet", [4, 8]), tmp_path / "w.pt", "classifier.pretrained")


@pytest.mark.parametrize("content", [b"garbage", b""])
def test_unreadable_pretrained_is_a_user_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "w.pt").write_bytes(content)
    with pytest.raises(UserError, match="judge.pretrained"):
        load_pretrained(build_classifier("convnet", [4, 8]), tmp_path / "w.pt", "judge.pretrained")


def test_pretrained_outside_inputs_warns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    torch_save(build_classifier("convnet", [4, 8]).state_dict(), tmp_path / "w.pt")
    load_pretrained(build_classifier("convnet", [4, 8]), tmp_path / "w.pt", "classifier.pretrained")
    assert "outside inputs/" in capsys.readouterr().err
