"""The params schema (face2anime/core/schema.py): params.yaml is its only source of values, a
typo anywhere is one line naming the key and the nearest valid one, and the schema's choices
are the ones the code implements."""
from __future__ import annotations

import subprocess
import sys
from typing import get_args

import pytest
import yaml
from conftest import ROOT, tiny_params

from face2anime.core import schema
from face2anime.core.params import UserError, load_params, read_yaml, typed


def write(tmp_path, data: dict):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_committed_params_and_profiles_validate() -> None:
    from face2anime.apps.profile import load_profile, merged

    base = read_yaml(ROOT / "params.yaml")
    profiles = sorted(p.stem for p in (ROOT / "profiles").glob("*.yaml"))
    assert {"real-cpu", "real-gpu"} <= set(profiles)
    for name in profiles:                    # a profile's overrides give a valid params file
        schema.ParamsFile.model_validate(merged(base, load_profile(name, ROOT / "profiles")))


@pytest.mark.parametrize("key,typo,near", [
    ("cyclegan.train.ema", "cyclegan.train.emaa", "cyclegan.train.ema"),
    ("select.threshold", "select.treshold", "select.threshold"),
    ("seed", "sed", "seed"),
    ("resize.align.scale", "resize.align.scal", "resize.align.scale"),
])
def test_a_misspelled_key_is_one_line_naming_it_and_the_nearest(tmp_path, key: str, typo: str, near: str) -> None:
    data = tiny_params()
    *path, last = key.split(".")
    node = data
    for p in path:
        node = node[p]
    node[typo.rsplit(".", 1)[-1]] = node.pop(last)
    with pytest.raises(UserError) as e:
        load_params(write(tmp_path, data))
    msg = str(e.value)
    assert "\n" not in msg and "params.yaml" in msg
    assert f"unknown param '{typo}' (did you mean '{near}'?)" in msg


@pytest.mark.parametrize("key,value,words", [
    ("cyclegan.train.gan_loss", "wgan", "cyclegan.train.gan_loss"),
    ("select.threshold", 1.5, "less than or equal to 1"),
    ("cyclegan.train.compile", "yes", "valid boolean"),
    ("cyclegan.train.epochs", 2.5, "valid integer"),
    ("threads", 0, "greater than or equal to 1"),
    ("device", "gpu", "device"),
])
def test_a_wrong_value_is_one_line(tmp_path, key: str, value, words: str) -> None:
    with pytest.raises(UserError, match=words) as e:
        load_params(write(tmp_path, tiny_params({key: value})))
    assert "\n" not in str(e.value) and key in str(e.value)


def test_a_missing_key_is_named(tmp_path) -> None:
    data = tiny_params()
    del data["cyclegan"]["train"]["ema"]
    with pytest.raises(UserError, match=r"missing param 'cyclegan.train.ema'"):
        load_params(write(tmp_path, data))


def test_a_stage_refuses_a_typo_with_one_line_and_status_2(tmp_path) -> None:
    data = tiny_params()
    data["cyclegan"]["train"]["emaa"] = 0.9
    write(tmp_path, data)
    res = subprocess.run([sys.executable, "-m", "stages.cli", "train-cyclegan", "baseline"], cwd=tmp_path,
                         capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 2, res.stderr
    assert "unknown param 'cyclegan.train.emaa' (did you mean 'cyclegan.train.ema'?)" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_typed_sections_trace_what_is_read() -> None:
    p = typed(tiny_params())
    schema.READ.clear()
    train = p.cyclegan.train
    assert train.ema == 0.995 and train.n_res == 1
    m = p.cyclegan.methods["proposed"]
    assert m.inputs.cams == "data/cam" and p.seed == 0
    assert schema.READ == {"cyclegan.train.ema", "cyclegan.train.n_res", "cyclegan.methods.proposed.inputs.cams", "seed"}
    assert schema.method_names(p) == ["baseline", "proposed"] and "cyclegan.methods" in schema.READ
    schema.Train.model_validate(tiny_params()["cyclegan"]["train"]).ema   # untraced: records nothing
    assert len(schema.READ) == 5


def test_schema_choices_are_the_implemented_ones() -> None:
    from face2anime.cam.maps import cam_methods
    from face2anime.data.align import SELECTIONS
    from face2anime.data.facecrop import CROPS
    from face2anime.models.classifiers import ARCHS
    from face2anime.models.networks import ATTENTION_MODES, UPSAMPLES
    from face2anime.sources.download import SOURCES
    from face2anime.sources.realdata import FFHQ_VARIANTS

    def choices(model, name):
        return set(get_args(model.model_fields[name].annotation))

    assert choices(schema.Train, "attention_mode") == set(ATTENTION_MODES)
    assert choices(schema.Train, "upsample") == set(UPSAMPLES)
    assert choices(schema.Classifier, "arch") == choices(schema.Judge, "arch") == set(ARCHS)
    assert choices(schema.Resize, "crop") == set(CROPS)
    assert choices(schema.Align, "faces") == set(SELECTIONS)
    assert choices(schema.Download, "source") == set(SOURCES)
    assert choices(schema.FfhqSource, "variant") == set(FFHQ_VARIANTS)
    assert choices(schema.Cam, "method") == set(cam_methods())


def test_no_module_reads_params_by_key() -> None:
    """Stages parse params.yaml once into the typed config and the library reads attributes:
    no call anywhere in the package or the stages passes a params key as a string (the old
    ``params.int("select.max_images")`` getters) or goes around the schema to the raw file."""
    import ast

    top = set(schema.ParamsFile.model_fields)
    bad = []
    for path in sorted([*(ROOT / "face2anime").rglob("*.py"), *(ROOT / "stages").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            arg = node.args[0]
            if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                arg = arg.values[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                head = arg.value.split(".", 1)[0]
                if "." in arg.value and head in top and node.func.attr in {
                        "int", "float", "str", "bool", "dict", "raw", "get", "section", "int_list"}:
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.func.attr}({arg.value!r})")
    assert not bad, bad
