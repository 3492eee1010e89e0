"""Small helpers shared by the commands that write generated Markdown (``report``, ``record``):
reading metrics JSON, dotted lookups, number formats, tables and marked blocks."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from face2anime.core.params import UserError


def load(path: Path) -> Any:
    """The JSON in ``path``; None when the file does not exist; invalid JSON is a UserError."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None


def get(d: Any, dotted: str) -> Any:
    """``d["a"]["b"]`` for ``"a.b"``; None where a level is missing."""
    for part in dotted.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def signed(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:+.{digits}f}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def replace_block(text: str, block: str, begin: str, end: str, page: str) -> str:
    """``text`` with the part from ``begin`` to ``end`` (markers included) replaced by ``block``;
    a page without the markers is a UserError naming ``page``."""
    start, stop = text.find(begin), text.find(end)
    if start < 0 or stop < start:
        raise UserError(f"{page} has no {begin} ... {end} block")
    return text[:start] + block.rstrip("\n") + text[stop + len(end):]
