"""face2anime profile: profiles/*.yaml -> one `dvc exp run` with checked -S overrides."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from face2anime.apps.profile import PROFILES_DIR, load_profile, profile_command, set_arg
from face2anime.core.params import UserError, flat_items

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / PROFILES_DIR).glob("*.yaml")))
def test_shipped_profiles_name_only_real_params(name: str) -> None:
    argv = profile_command(name, "photos", "anime", ROOT / "params.yaml", ROOT / PROFILES_DIR)
    assert argv[:5] == ["dvc", "exp", "run", "-n", name]
    sets = dict(a.split("=", 1) for a in argv[6::2])
    assert argv[5::2] == ["-S"] * len(sets)
    assert sets["download.source"] == "local" and sets["download.local.human"] == "photos"
    assert sets["resize.crop"] == "align"
    # every value round-trips through YAML as DVC reads it (strings stay strings, no sweeps)
    profile = load_profile(name, ROOT / PROFILES_DIR)
    for key, value in profile.items():
        assert yaml.safe_load(sets[key].strip("'") if isinstance(value, str) else sets[key]) == value, key
        assert "," not in sets[key] or sets[key].startswith("'")


def test_unknown_key_names_the_nearest(tmp_path: Path) -> None:
    (tmp_path / "p.yaml").write_text("cyclegan:\n  train:\n    emaa: 0.9\n")
    with pytest.raises(UserError, match=r"unknown param 'cyclegan.train.emaa' \(did you mean 'cyclegan.train.ema'\?\)"):
        profile_command("p", None, None, ROOT / "params.yaml", tmp_path)
    with pytest.raises(UserError, match="profile 'nope' not found"):
        profile_command("nope", None, None, ROOT / "params.yaml", tmp_path)
    (tmp_path / "bad.yaml").write_text("- a\n- b\n")
    with pytest.raises(UserError, match="mapping"):
        profile_command("bad", None, None, ROOT / "params.yaml", tmp_path)


def test_set_arg_quoting() -> None:
    assert set_arg("a.b", "color,translation") == "a.b='color,translation'"   # no sweep
    assert set_arg("a.b", "align") == "a.b=align"
    assert set_arg("a.b", "true") == "a.b='true'"                             # stays a string
    assert set_arg("a.b", "") == "a.b=''"
    assert set_arg("a.b", 0.75) == "a.b=0.75" and set_arg("a.b", False) == "a.b=false"
    with pytest.raises(UserError):
        set_arg("a.b", [1, 2])


def test_profiles_leave_params_yaml_keys_intact() -> None:
    """A profile only overrides: params.yaml has every key it names (checked above), and
    the profile does not silently switch methods (cyclegan.methods is not touched)."""
    for path in (ROOT / PROFILES_DIR).glob("*.yaml"):
        assert not any(k.startswith("cyclegan.methods") for k in flat_items(yaml.safe_load(path.read_text())))
