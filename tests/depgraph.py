"""Which project files a command imports, read from the code (for the DVC dependency tests).

A stage's process runs ``face2anime SUB ...``: :mod:`stages.cli` plus the one module that
implements ``SUB`` (the CLI imports nothing else), plus every project module those import,
directly or transitively, at module level or inside functions, plus the packages'
``__init__.py`` files that Python runs on the way.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = ("face2anime", "stages")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """``a.b.c`` -> ``a/b/c.py`` or ``a/b/c/__init__.py`` under ``root`` (None if not project code)."""
    if name.split(".")[0] not in PROJECT_PACKAGES:
        return None
    base = root.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Dotted names of project modules one file imports (anywhere in the file)."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from pkg import mod` imports a module, not only a name
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if module_file(f"{node.module}.{a.name}", root) is not None)
    return {m for m in found if module_file(m, root) is not None}


def closure(modules: set[str], root: Path = ROOT) -> set[Path]:
    """Files of ``modules`` and of everything they import, with their packages' ``__init__``."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parts = m.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run first
        f = module_file(m, root)
        if f is not None:
            todo += sorted(imported_modules(f, root) - seen)
    return {f for m in seen if (f := module_file(m, root)) is not None}


def command_files(sub_command: str, root: Path = ROOT) -> set[Path]:
    """Project files that ``face2anime SUB_COMMAND`` loads."""
    from stages.cli import COMMANDS

    cli_imports = imported_modules(root / "stages" / "cli.py", root)
    return closure({"stages.cli", COMMANDS[sub_command], *cli_imports}, root)
