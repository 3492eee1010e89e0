"""DVC must never serve stale results: every stage declares, as deps, every project file its
command imports (read from the code, transitively) and, as params, every key it reads (recorded
while the tiny end-to-end pipeline runs, see test_pipeline.py). Commands never import each other,
and the library's subpackages are layers that never import upward (:data:`LAYERS`).
Nor does a stage go stale for nothing: of the synthetic renderer's submodules it declares exactly
those it imports (editing the contact sheet or the benchmark re-runs neither train_attributes nor
evaluate).
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
from depgraph import ROOT, command_files, imported_modules

from stages.cli import COMMANDS


def dvc_stages(root: Path = ROOT) -> list:
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return list(repo.index.stages)


def sub_command(cmd: str) -> str:
    words = cmd.split()
    assert words[0] == "face2anime", f"stage command must call the face2anime CLI: {cmd}"
    return words[1]


def is_trivial(path: Path) -> bool:
    """An ``__init__.py`` with nothing but a docstring: importing it runs no project code."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def covered(path: str, declared: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in declared)


def undeclared_imports(stage, root: Path = ROOT) -> list[str]:
    declared = [d.def_path for d in stage.deps if type(d).__name__ != "ParamsDependency"]
    needed = sorted(str(f.relative_to(root)) for f in command_files(sub_command(stage.cmd), root)
                    if not (f.name == "__init__.py" and is_trivial(f)))
    return [f for f in needed if not covered(f, declared)]


def param_keys(stage) -> list[str]:
    return [k for d in stage.deps if type(d).__name__ == "ParamsDependency" for k in d.params]


def undeclared_params(read: list[str], declared: list[str]) -> list[str]:
    """Keys read that no declared key covers (a declared ``a.b`` covers ``a.b`` and ``a.b.*``)."""
    return [k for k in read if not any(k == d or k.startswith(d + ".") for d in declared)]


def test_every_stage_declares_every_module_it_imports() -> None:
    stages = dvc_stages()
    assert len(stages) >= 10
    missing = {s.addressing: m for s in stages if (m := undeclared_imports(s))}
    assert not missing, f"dvc.yaml misses these imported project files (add them to the stage's deps): {missing}"


SYNTHETIC = "face2anime/data/synthetic/"


def declared_synthetic(stage) -> set[str]:
    return {d.def_path for d in stage.deps if d.def_path.startswith(SYNTHETIC.rstrip("/"))}


def imported_synthetic(stage, root: Path = ROOT) -> set[str]:
    return {str(f.relative_to(root)) for f in command_files(sub_command(stage.cmd), root)
            if str(f.relative_to(root)).startswith(SYNTHETIC) and not (f.name == "__init__.py" and is_trivial(f))}


def test_synthetic_package_init_is_trivial() -> None:
    """The renderer's ``__init__`` runs nothing, so importing one submodule loads only that one's
    imports and each stage can depend on exactly the submodules it uses."""
    assert is_trivial(ROOT / SYNTHETIC / "__init__.py")


def test_stages_declare_exactly_the_synthetic_modules_they_import() -> None:
    """Not only no missing ones (the test above): no extra ones either, so editing a submodule
    a stage does not load (the contact sheet, the benchmark) leaves that stage up to date."""
    wrong = {s.addressing: (sorted(declared_synthetic(s)), sorted(imported_synthetic(s)))
             for s in dvc_stages() if declared_synthetic(s) != imported_synthetic(s)}
    assert not wrong, f"stage -> (declared, imported) synthetic modules: {wrong}"


def test_attribute_and_evaluate_stages_do_not_depend_on_contact_sheet_or_bench() -> None:
    stages = {s.addressing.split(":")[-1]: s for s in dvc_stages()}
    evaluates = [n for n in stages if n.startswith("evaluate@")]
    assert evaluates and "train_attributes" in stages
    off_limits = [SYNTHETIC + "contact_sheet.py", SYNTHETIC + "bench.py"]
    assert all((ROOT / f).is_file() for f in off_limits)
    for name in ["train_attributes", *evaluates]:
        s = stages[name]
        declared = [d.def_path for d in s.deps if type(d).__name__ != "ParamsDependency"]
        loaded = {str(f.relative_to(ROOT)) for f in command_files(sub_command(s.cmd))}
        for f in off_limits:
            assert not covered(f, declared) and f not in loaded, (name, f)
    assert imported_synthetic(stages["train_attributes"]) == {SYNTHETIC + "attributes.py"}
    assert SYNTHETIC + "dataset.py" not in imported_synthetic(stages[evaluates[0]])
    # not vacuous: the stage that makes the contact sheet does depend on its module
    assert SYNTHETIC + "contact_sheet.py" in declared_synthetic(stages["download"])


def test_dependency_check_fails_when_a_dep_is_removed(tmp_path: Path) -> None:
    """The check above is live: drop one library dep from a copy of dvc.yaml and it fails."""
    import shutil

    import yaml

    for d in ("stages", "face2anime", "inputs"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("params.yaml", ".dvcignore"):
        shutil.copy(ROOT / f, tmp_path / f)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("[core]\n    no_scm = True\n")
    dvc_yaml = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    dvc_yaml["stages"]["evaluate"]["do"]["deps"].remove("face2anime/evaluation/measures.py")
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(dvc_yaml, sort_keys=False))
    bad = {s.addressing.split(":")[-1]: undeclared_imports(s, tmp_path) for s in dvc_stages(tmp_path)}
    assert bad["evaluate@proposed"] == ["face2anime/evaluation/measures.py"], bad
    assert bad["compare"] == []


def test_commands_never_import_each_other_and_the_library_never_imports_a_command() -> None:
    stage_modules = {m for m in COMMANDS.values() if m.startswith("stages.")}
    for module in COMMANDS.values():
        path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
        assert not imported_modules(path) & (stage_modules - {module}), module
    for path in (ROOT / "face2anime").rglob("*.py"):
        assert not any(m.split(".")[0] == "stages" for m in imported_modules(path)), path


#: the library's subpackages as layers, lowest first: a module may import its own subpackage
#: and the ones below it, never one above (function-level imports included). ``deploy`` (the
#: ONNX runtime) sits right above ``core``: it must import without PyTorch, and ``core`` is the
#: only layer that never imports torch.
LAYERS = ("core", "deploy", "data", "sources", "models", "cam", "gan", "evaluation", "survey", "web", "apps")


def library_subpackages(root: Path = ROOT) -> set[str]:
    return {p.parent.name for p in (root / "face2anime").glob("*/__init__.py")}


def upward_imports(root: Path = ROOT) -> dict[str, list[str]]:
    """``{file: [modules of a higher layer it imports]}`` for each library file that breaks :data:`LAYERS`."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    bad: dict[str, list[str]] = {}
    for path in sorted((root / "face2anime").rglob("*.py")):
        parts = path.relative_to(root / "face2anime").parts
        if len(parts) < 2:                # face2anime/__init__.py
            continue
        up = sorted(m for m in imported_modules(path, root)
                    if m.startswith("face2anime.") and rank.get(m.split(".")[1], -1) > rank[parts[0]])
        if up:
            bad[path.relative_to(root).as_posix()] = up
    return bad


def test_the_library_layers_never_import_upward() -> None:
    assert library_subpackages() == set(LAYERS), "place every face2anime subpackage in LAYERS"
    bad = upward_imports()
    assert not bad, f"a lower layer imports a higher one ({' < '.join(LAYERS)}): {bad}"


def test_layer_check_flags_a_function_level_upward_import(tmp_path: Path) -> None:
    """The check above is live: a helper in data/ that imports web/ inside a function fails it."""
    for sub in ("data", "web"):
        (tmp_path / "face2anime" / sub).mkdir(parents=True)
        (tmp_path / "face2anime" / sub / "__init__.py").write_text('"""."""\n')
    (tmp_path / "face2anime" / "__init__.py").write_text("")
    (tmp_path / "face2anime" / "web" / "app.py").write_text("from face2anime.data.crop import crop\n")
    (tmp_path / "face2anime" / "data" / "crop.py").write_text(
        "def crop():\n    from face2anime.web import app\n    return app\n")
    assert upward_imports(tmp_path) == {"face2anime/data/crop.py": ["face2anime.web", "face2anime.web.app"]}


def test_the_onnx_runner_imports_without_torch() -> None:
    """What LAYERS keeps below deploy/ really is torch-free (the full check, converting with the
    exported models while torch is unimportable, runs in test_train_cyclegan.py)."""
    import os
    import subprocess
    import sys

    code = "import sys; sys.modules['torch'] = None; import face2anime.deploy.onnx_runner"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr


def test_unread_param_helper() -> None:
    assert unread_params(["cyclegan.train.lr", "seed"], ["cyclegan.train", "seed", "device"]) == ["device"]
    assert unread_params(["cyclegan.methods"], ["cyclegan.methods.baseline"]) == []   # the whole mapping was read
    assert unread_params(["select.threshold"], ["select.max_images"]) == ["select.max_images"]


def test_undeclared_param_helper() -> None:
    assert undeclared_params(["cyclegan.train.lr", "seed", "resize.size"], ["cyclegan.train", "seed"]) == ["resize.size"]
    assert undeclared_params(["cyclegan.trainer"], ["cyclegan.train"]) == ["cyclegan.trainer"]


def unread_params(read: list[str], declared: list[str]) -> list[str]:
    """Declared keys that no key read falls under (or contains): a stage that declares a param
    it never reads re-runs for nothing when it changes."""
    return [d for d in declared if not any(k == d or k.startswith(d + ".") or d.startswith(k + ".") for k in read)]


def check_param_trace(trace: Path, root: Path) -> dict[str, list[str]]:
    """Stage -> param keys read but not declared, and declared but never read (over every run
    of the stage), from the trace of a real pipeline run."""
    by_cmd = {s.cmd.strip(): s for s in dvc_stages(root)}
    read: dict[str, set[str]] = {}
    stages = {}
    for line in trace.read_text().splitlines():
        rec = json.loads(line)
        stage = by_cmd.get(" ".join(["face2anime", *rec["argv"]]))
        if stage is not None:
            read.setdefault(stage.addressing, set()).update(rec["keys"])
            stages[stage.addressing] = stage
    assert len(read) >= 10, f"the trace covers only {sorted(read)}"
    bad: dict[str, list[str]] = {}
    for name, keys in read.items():
        declared = param_keys(stages[name])
        m = [f"undeclared {k}" for k in undeclared_params(sorted(keys), declared)]
        m += [f"never read {k}" for k in unread_params(sorted(keys), declared)]
        if m:
            bad[name] = m
    return bad


def undeclared_files(opened: list[str], stage) -> list[str]:
    """Files a stage opened for reading that neither its deps nor its own outs cover
    (params.yaml is covered by the params check)."""
    declared = [d.def_path for d in stage.deps if type(d).__name__ != "ParamsDependency"]
    own = [o.def_path for o in stage.outs]
    return [f for f in opened if f != "params.yaml" and not covered(f, declared + own)]


def check_file_trace(trace: Path, root: Path) -> dict[str, list[str]]:
    """Stage -> files it opened for reading that it does not declare, from the trace of a real
    pipeline run (over every run of the stage)."""
    by_cmd = {s.cmd.strip(): s for s in dvc_stages(root)}
    opened: dict[str, set[str]] = {}
    for line in trace.read_text().splitlines():
        rec = json.loads(line)
        stage = by_cmd.get(" ".join(["face2anime", *rec["argv"]]))
        if stage is not None:
            opened.setdefault(stage.addressing, set()).update(rec.get("files", []))
    assert len(opened) >= 10, f"the trace covers only {sorted(opened)}"
    assert sum(map(len, opened.values())) >= 50, "the trace saw almost no file reads: is the audit hook on?"
    bad: dict[str, list[str]] = {}
    for s in dvc_stages(root):
        if s.addressing in opened and (m := undeclared_files(sorted(opened[s.addressing]), s)):
            bad[s.addressing] = m
    return bad


@pytest.mark.parametrize("keys,declared,ok", [(["select.threshold"], ["select"], True),
                                               (["precision"], ["seed", "device"], False)])
def test_param_coverage_cases(keys: list[str], declared: list[str], ok: bool) -> None:
    assert (not undeclared_params(keys, declared)) is ok


def test_the_checkout_in_the_current_directory_is_the_code_that_runs(tmp_path: Path) -> None:
    """`dvc exp run --queue` runs stages in a temp copy of the repo: the face2anime command must
    run that copy's code (the code DVC hashed), not the checkout it was installed from."""
    import shutil
    import subprocess
    import sys

    for d in ("stages", "face2anime"):
        shutil.copytree(ROOT / d, tmp_path / d, ignore=shutil.ignore_patterns("__pycache__"))
    cli = tmp_path / "stages" / "cli.py"
    cli.write_text(cli.read_text().replace('"download": "stages.download",',
                                           '"download": "stages.download",\n    "only-in-copy": "stages.download",'))
    exe = str(Path(sys.executable).parent / "face2anime")
    here = subprocess.run([exe, "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert here.returncode == 0 and "only-in-copy" in here.stdout
    there = subprocess.run([exe, "--help"], capture_output=True, text=True, cwd=ROOT)
    assert "only-in-copy" not in there.stdout


def test_file_check_flags_an_undeclared_read() -> None:
    from types import SimpleNamespace as NS

    stage = NS(deps=[NS(def_path="data/resized"), NS(def_path="data/cam"), NS(def_path="face2anime/core")],
               outs=[NS(def_path="models/m")])
    opened = ["data/resized/manifest.csv", "models/m/ckpt.pt", "models/classifier/classifier.pt", "params.yaml"]
    assert undeclared_files(opened, stage) == ["models/classifier/classifier.pt"]


def test_bytecode_caches_are_not_part_of_any_dep_hash(tmp_path: Path) -> None:
    """`face2anime/core` is a folder dep: DVC hashes every file under it. Python's bytecode
    caches embed the source mtime, so if DVC hashed them every stage would be stale in a fresh
    clone (measured once: a clean clone's `make repro` changed `face2anime/core`'s hash in 15
    stages). They are in .dvcignore; a stray .pyc must leave the folder's hash as it is."""
    import shutil

    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        for rel in ("face2anime/core/__pycache__/io.cpython-311.pyc", "face2anime/gan/__pycache__/x.pyc",
                    "face2anime/core/stray.pyc"):
            assert repo.dvcignore.is_ignored(repo.fs, str(ROOT / rel)), rel
        assert not repo.dvcignore.is_ignored(repo.fs, str(ROOT / "face2anime/core/io.py"))
    # the real thing on a copy: a folder dep's hash with and without a bytecode cache
    import subprocess

    from dvc.dependency import loads_from
    from dvc.stage import Stage

    proj = tmp_path / "p"
    shutil.copytree(ROOT / "face2anime" / "core", proj / "core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".dvcignore", proj / ".dvcignore")
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    Repo.init(str(proj))
    with Repo(str(proj)) as repo:
        stage = Stage(repo, path=str(proj / "dvc.yaml"), cmd="true")
        before = loads_from(stage, [str(proj / "core")])[0].get_hash().value
        (proj / "core" / "__pycache__").mkdir()
        (proj / "core" / "__pycache__" / "io.cpython-311.pyc").write_bytes(b"bytecode")
        assert loads_from(stage, [str(proj / "core")])[0].get_hash().value == before
        (proj / "core" / "new.py").write_text("x = 1\n")              # a real change does move it
        assert loads_from(stage, [str(proj / "core")])[0].get_hash().value != before
