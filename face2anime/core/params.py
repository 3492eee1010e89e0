"""Params from params.yaml: validated against one schema, traced typed access, user errors.

:func:`load_params` validates the whole file with :class:`face2anime.core.schema.ParamsFile`
(an unknown key, a wrong type or an out-of-range value is one line naming the key, the file
and the nearest valid name) and returns the typed config. Stages hand it (or its sections) to
the library, which reads attributes (``params.select.threshold``), never yaml keys; every
attribute read is recorded for the DVC-dependency test (:data:`TRACE_ENV`).

A wrong param or a missing input is a :class:`UserError`: the CLI prints it as one red
line and exits with status 2, never a traceback.
"""
from __future__ import annotations

import difflib
import os
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml
from pydantic import BaseModel, ValidationError

from face2anime.core import schema
from face2anime.core.schema import READ as _READ

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
def typed(data: dict[str, Any], source: str = PARAMS_FILE) -> schema.ParamsFile:
    """``data`` (a whole params.yaml mapping) validated as :class:`~face2anime.core.schema.ParamsFile`
    and traced from the top: every value the library reads from it is recorded. Any problem is a
    one-line :class:`UserError` naming ``source``."""
    cfg = validate(schema.ParamsFile, data, source)
    cfg._source = source
    return schema.traced(cfg, "")


def _fields(model: Any) -> list[str]:
    return list(model.model_fields) if isinstance(model, type) and issubclass(model, BaseModel) else []


def _model_along(model: Any, loc: Sequence[Any]) -> Any:
    """The model reached from ``model`` along the location ``loc`` (dict keys step into values)."""
    for part in loc:
        if isinstance(model, type) and issubclass(model, BaseModel):
            field = model.model_fields.get(str(part))
            if field is None:
                return None
            model = field.annotation
        elif typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
        else:
            return None
        if typing.get_origin(model) is typing.Union:   # Optional[X] -> X
            args = [a for a in typing.get_args(model) if a is not type(None)]
            model = args[0] if len(args) == 1 else model
    return model


def describe(e: ValidationError, model: type[BaseModel], source: str, prefix: str = "") -> str:
    """One line for a validation error: the first problem (key, what is wrong, the nearest
    valid name for an unknown key) and how many more there are."""
    errs = sorted(e.errors(), key=lambda x: x["type"] != "extra_forbidden")  # a typo: name it first
    err = errs[0]
    loc = [str(x) for x in err["loc"]]
    key = prefix + ".".join(loc)
    if err["type"] == "extra_forbidden":
        known = _fields(_model_along(model, err["loc"][:-1]))
        near = difflib.get_close_matches(loc[-1], known, n=1, cutoff=0.6)
        parent = key.rsplit(".", 1)[0] + "." if "." in key else ""
        hint = (f"did you mean '{parent}{near[0]}'?" if near
                else f"valid keys here: {', '.join(known)}" if known else "")
        msg = f"{source}: unknown param '{key}'" + (f" ({hint})" if hint else "")
    elif err["type"] == "missing":
        msg = f"{source}: missing param '{key}' (params.yaml holds every key; see docs/params.md)"
    else:
        what = err["msg"]
        what = what[0].lower() + what[1:]
        msg = f"{source}: param '{key}': {what}, got {err.get('input')!r}"
    more = len(errs) - 1
    return msg + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def validate(model: type[BaseModel], data: Any, source: str, prefix: str = "") -> Any:
    """``data`` validated as ``model``; any problem is a one-line :class:`UserError`."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise UserError(describe(e, model, source, prefix)) from None


def read_yaml(path: str | os.PathLike = PARAMS_FILE) -> dict[str, Any]:
    """params.yaml as a plain mapping (not validated); a missing or malformed file is a one-line
    :class:`UserError`. Only tools that edit params (profiles) want this; stages use
    :func:`load_params`."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"params file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{p}: top level must be a mapping")
    return data


def load_params(path: str | os.PathLike = PARAMS_FILE) -> schema.ParamsFile:
    """Read params.yaml and validate it against the schema: the typed, traced config that a
    stage hands to the library. A missing, malformed or invalid file is a one-line
    :class:`UserError`."""
    return typed(read_yaml(path), str(path))


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
