"""dvclive as the stages' metric logger (plots are declared in dvc.yaml by hand)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def open_live(live_dir: Path, resume: bool = False) -> Any:
    """A ``dvclive.Live`` writing to ``live_dir`` with ``dvcyaml=False`` and no experiment saving.

    Why a subclass: dvclive 3.49 always discovers the DVC/git repository in ``Live()``
    (``_init_dvc``), and in a git repository without commits that raises (scmrepo's
    ``SCMError: Empty git repo``) although we neither save experiments nor write dvc.yaml.
    Its public API has no switch to skip discovery (``DVCLIVE_TEST`` is its own test hook),
    so only that failure is caught, and the logger then works without a repository.
    """
    from dvclive import Live

    class _Live(Live):
        def _init_dvc(self) -> None:
            try:
                super()._init_dvc()
            except Exception:  # noqa: BLE001 - e.g. scmrepo SCMError "Empty git repo"
                self._dvc_repo, self._dvc_file = None, "dvc.yaml"

    return _Live(dir=str(live_dir), resume=resume, dvcyaml=False, save_dvc_exp=False, report=None)
