"""One place for artifact paths (face2anime/core/paths.py): dvc.yaml's outs and deps agree with it."""
from __future__ import annotations

from pathlib import PurePosixPath

from conftest import ROOT
from test_dvc_deps import dvc_stages

from face2anime.core import paths

#: paths that are not stage outputs: the user's inputs (deps), resume checkpoints (deleted on
#: success, never cached) and the export folder (`face2anime export`, not a stage)
NOT_OUTS = {paths.INPUTS_DIR, paths.RESPONSES_FILE, paths.CHECKPOINT_DIR, paths.ONNX_DIR}


def overlaps(a: str, b: str) -> bool:
    pa, pb = PurePosixPath(a), PurePosixPath(b)
    return pa == pb or pa in pb.parents or pb in pa.parents


def constants() -> dict[str, str]:
    return {k: str(v) for k, v in vars(paths).items() if k.isupper() and isinstance(v, paths.Path)}


def test_every_artifact_out_is_a_path_of_core_paths() -> None:
    outs = {o.def_path for s in dvc_stages() for o in s.outs}
    assert len(outs) >= 20
    unknown = sorted(o for o in outs if not any(overlaps(o, c) for c in constants().values()))
    assert not unknown, f"dvc.yaml writes these paths that face2anime/core/paths.py does not name: {unknown}"


def test_every_path_of_core_paths_is_declared_in_dvc_yaml() -> None:
    stages = dvc_stages()
    outs = {o.def_path for s in stages for o in s.outs}
    deps = {d.def_path for s in stages for d in s.deps if type(d).__name__ != "ParamsDependency"}
    for name, path in constants().items():
        if paths.Path(path) in NOT_OUTS - {paths.INPUTS_DIR, paths.RESPONSES_FILE}:
            assert not any(overlaps(path, o) for o in outs), f"{name} = {path} must not be a DVC output"
            continue
        where = deps if paths.Path(path) in NOT_OUTS else outs
        assert any(overlaps(path, o) for o in where), f"{name} = {path} is not in dvc.yaml's {'deps' if where is deps else 'outs'}"


def test_the_library_writes_no_artifact_path_of_its_own() -> None:
    """A literal artifact path in the library outside core/paths.py is a second place for it."""
    import re

    pat = re.compile(r'Path\("(data|models|metrics|reports|checkpoints|inputs)(/[^"]*)?"\)')
    hits = [f"{f.relative_to(ROOT)}:{i}" for f in (ROOT / "face2anime").rglob("*.py") if f.name != "paths.py"
            for i, line in enumerate(f.read_text().splitlines(), 1) if pat.search(line)]
    assert not hits, hits
