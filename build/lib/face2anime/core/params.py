"""Params from params.yaml: typed, validated access by dotted key, and user errors.

A wrong param or a missing input is a :class:`UserError`: the CLI prints it as one red
line and exits with status 2, never a traceback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import yaml

PARAMS_FILE = "params.yaml"
#: When this environment variable names a file, every process appends the param keys it
#: read and the project files it opened for reading (one JSON line: argv, keys, files) at
#: exit. The DVC-dependency test uses it to check that each stage declares every param it
#: reads and every file it opens. Files are seen through Python's ``open`` audit event
#: (builtins.open, io, os.open: what numpy, pandas, Pillow and torch.load use); paths are
#: relative to the working directory, and files outside it, Python sources (checked as
#: imports), caches (.git, .dvc, .cache) and the tools' dot-files at the top (.gitignore and
#: .dvcignore, read by dvclive) are left out.
TRACE_ENV = "FACE2ANIME_PARAM_TRACE"
_READ: set[str] = set()
_OPENED: set[str] = set()
_SKIP_DIRS = (".git", ".dvc", ".cache")


def _audit(event: str, args: tuple) -> None:
    if event != "open":
        return
    path, mode, flags = args
    if not isinstance(path, (str, bytes, os.PathLike)):
        return   # a file descriptor
    if isinstance(mode, str):
        if any(c in mode for c in "wax+"):
            return
    elif flags is not None and flags & (os.O_WRONLY | os.O_RDWR):
        return
    try:
        rel = os.path.relpath(os.path.abspath(os.fsdecode(path)), os.getcwd())
    except ValueError:
        return
    top = rel.split(os.sep, 1)[0]
    if rel.startswith("..") or rel.endswith((".py", ".pyc")) or top in _SKIP_DIRS or (top == rel and top.startswith(".")):
        return
    if os.path.isfile(rel):
        _OPENED.add(rel.replace(os.sep, "/"))


def _write_trace() -> None:
    import json
    import sys

    files = sorted(_OPENED - {os.path.relpath(os.environ[TRACE_ENV])})
    with open(os.environ[TRACE_ENV], "a") as fh:
        fh.write(json.dumps({"argv": sys.argv[1:], "keys": sorted(_READ), "files": files}) + "\n")


if os.environ.get(TRACE_ENV):
    import atexit
    import sys as _sys

    _sys.addaudithook(_audit)
    atexit.register(_write_trace)


class UserError(Exception):
    """A problem the user can fix (bad param, missing input). Printed as one line, exit 2."""


# --------------------------------------------------------------------------- params
_MISSING = object()


class Params:
    """Typed, validated access to params.yaml by dotted key.

    >>> p = Params({"select": {"threshold": 0.3}})
    >>> p.float("select.threshold", lo=0, hi=1)
    0.3

    Every getter raises :class:`UserError` naming the param on a wrong type,
    an out-of-range value or a missing key (unless ``default`` is given).
    """

    def __init__(self, data: dict[str, Any], source: str = PARAMS_FILE):
        self.data = data
        self.source = source

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        _READ.add(key)
        node: Any = self.data
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is not _MISSING:
                    return default
                raise UserError(f"{self.source}: missing param '{key}'")
            node = node[part]
        return node

    def _bad(self, key: str, what: str, value: Any) -> UserError:
        return UserError(f"{self.source}: param '{key}' must be {what}, got {value!r}")

    def int(self, key: str, default: Any = _MISSING, lo: float | None = None,
            hi: float | None = None) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self._bad(key, "an integer", v)
        self._range(key, v, lo, hi)
        return v

    def float(self, key: str, default: Any = _MISSING, lo: float | None = None,
              hi: float | None = None) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self._bad(key, "a number", v)
        self._range(key, v, lo, hi)
        return float(v)

    def bool(self, key: str, default: Any = _MISSING) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise self._bad(key, "true or false", v)
        return v

    def str(self, key: str, default: Any = _MISSING, choices: Sequence[str] | None = None) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str):
            raise self._bad(key, "a string", v)
        if choices is not None and v not in choices:
            raise self._bad(key, "one of " + ", ".join(choices), v)
        return v

    def int_list(self, key: str, default: Any = _MISSING, min_len: int = 1, lo: float | None = None,
                 hi: float | None = None) -> list[int]:
        """A list of at least ``min_len`` integers, each in [lo, hi] (e.g. network widths)."""
        v = self.raw(key, default)
        if (not isinstance(v, list) or len(v) < min_len
                or any(isinstance(x, bool) or not isinstance(x, int) for x in v)):
            raise self._bad(key, f"a list of at least {min_len} integers", v)
        for x in v:
            self._range(key, x, lo, hi)
        return list(v)

    def dict(self, key: str, default: Any = _MISSING) -> dict[str, Any]:
        v = self.raw(key, default)
        if not isinstance(v, dict):
            raise self._bad(key, "a mapping", v)
        return v

    def _range(self, key: str, v: float, lo: float | None, hi: float | None) -> None:
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"in [{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"
            raise self._bad(key, rng, v)


def load_params(path: str | os.PathLike = PARAMS_FILE) -> Params:
    """Read params.yaml; a missing or malformed file is a one-line :class:`UserError`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"params file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: top level must be a mapping")
    return Params(data, str(p))


def flat_items(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a nested dict keyed by dotted path: ``{'a': {'b': 1}}`` -> ``{'a.b': 1}``."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_items(v, key + "."))
        else:
            out[key] = v
    return out
