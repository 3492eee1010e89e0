"""Params validation, atomic writes, safe checkpoint loading, device choice."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from face2anime.core.io import atomic_path, torch_load, torch_save, write_json
from face2anime.core.params import Params, UserError, load_params
from face2anime.core.runtime import pick_device


@pytest.mark.parametrize("getter,key,kwargs,value,fragment", [
    ("int", "a.n", {}, "3", "must be an integer"),
    ("int", "a.n", {"lo": 1}, 0, "in [1, inf]"),
    ("int", "a.n", {}, True, "must be an integer"),
    ("float", "a.x", {"lo": 0, "hi": 1}, 1.5, "in [0, 1]"),
    ("float", "a.x", {}, "high", "must be a number"),
    ("bool", "a.b", {}, "yes", "true or false"),
    ("str", "a.s", {"choices": ("x", "y")}, "z", "one of x, y"),
    ("dict", "a.d", {}, [1], "a mapping"),
])
def test_param_errors_name_the_param(getter: str, key: str, kwargs: dict, value: object, fragment: str) -> None:
    section, name = key.split(".")
    p = Params({section: {name: value}})
    with pytest.raises(UserError) as e:
        getattr(p, getter)(key, **kwargs)
    assert f"'{key}'" in str(e.value) and fragment in str(e.value) and "\n" not in str(e.value)


def test_missing_param_and_default() -> None:
    p = Params({"a": {}})
    with pytest.raises(UserError, match="missing param 'a.b'"):
        p.int("a.b")
    assert p.int("a.b", 7) == 7


def test_load_params_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(bad)


def test_repo_params_are_valid_for_every_stage() -> None:
    """The shipped params.yaml passes each stage's validation (catches a renamed key)."""
    from face2anime.gan.train import method_names, read_config
    from face2anime.models.classify import classifier_config

    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    for role in ("classifier", "judge"):
        classifier_config(p, role)
    for m in method_names(p):
        read_config(m, p)
    assert method_names(p) == ["baseline", "proposed"]


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "m.json"
    write_json(dest, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(dest) as tmp:
            tmp.write_text("partial")
            raise RuntimeError("killed")
    assert dest.read_text().strip().startswith("{") and '"a": 1' in dest.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


class Evil:
    """An arbitrary object: a weights_only load must refuse to unpickle it."""


def test_checkpoint_roundtrip_is_weights_only(tmp_path: Path) -> None:
    torch_save({"w": torch.ones(2)}, tmp_path / "c.pt")
    assert torch.equal(torch_load(tmp_path / "c.pt")["w"], torch.ones(2))

    torch.save({"x": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(Exception):
        torch_load(tmp_path / "evil.pt")
    with pytest.raises(UserError, match="not found"):
        torch_load(tmp_path / "none.pt")


def test_device_choice() -> None:
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            pick_device("cuda")
