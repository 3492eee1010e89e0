"""Stage 9, ``compare``: every method's metrics side by side.

Outputs ``metrics/compare.json`` = ``{metric: {METHOD: value, ..., "delta": candidate -
reference}}`` over every numeric metric of ``metrics/eval/*.json`` (nested keys joined with
dots), ``reports/compare.md`` (the same as a Markdown table) and ``reports/compare.png``:
columns source | METHOD... for the same held-out test faces.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.console import Console

from face2anime.core.io import rel, save_image, write_json, write_text
from face2anime.core.params import Params, UserError
from face2anime.data.images import (
    RESIZED_DIR,
    TRANSLATED_DIR,
    load_images,
    load_split,
    pairs_grid,
    read_manifest,
    to_pil,
)

#: metrics where lower is better (for the "better" column of the table)
LOWER_IS_BETTER = ("kid_judge.mean", "cycle_l1.human", "cycle_l1.character", "train_seconds")
SKIP = ("n_test", "kid_judge.std", "train_images_per_s")


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``{'a.b': value}`` (bools and strings dropped)."""
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[key] = float(v)
    return out


def comparison(evals: dict[str, dict], reference: str, candidate: str) -> dict[str, dict[str, float | None]]:
    """``{metric: {method: value|None, 'delta': candidate - reference | None}}``."""
    flat = {m: flatten(e) for m, e in evals.items()}
    metrics = sorted({k for f in flat.values() for k in f if k not in SKIP and not k.endswith(".n")})  # .n: counts
    table: dict[str, dict[str, float | None]] = {}
    for k in metrics:
        row: dict[str, float | None] = {m: flat[m].get(k) for m in evals}
        a, b = row.get(reference), row.get(candidate)
        row["delta"] = None if a is None or b is None else b - a
        table[k] = row
    return table


def markdown(table: dict[str, dict[str, float | None]], methods: list[str], reference: str, candidate: str) -> str:
    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    head = f"| metric | {' | '.join(methods)} | delta ({candidate} - {reference}) | better |"
    lines = [head, "|" + "---|" * (len(methods) + 3)]
    for k, row in table.items():
        d = row["delta"]
        better = "" if d is None or abs(d) < 1e-12 else (
            candidate if (d < 0) == (k in LOWER_IS_BETTER) else reference)
        lines.append(f"| {k} | {' | '.join(fmt(row[m]) for m in methods)} | {fmt(d)} | {better} |")
    return "\n".join(lines) + "\n"


def compare(params: Params, metrics_dir: Path = Path("metrics"), data_dir: Path = RESIZED_DIR,
            translated_dir: Path = TRANSLATED_DIR, reports_dir: Path = Path("reports")) -> dict:
    methods = list(params.dict("cyclegan.methods"))
    reference = params.str("compare.reference", choices=methods)
    candidate = params.str("compare.candidate", choices=methods)
    n_faces = params.int("compare.faces", lo=1)
    evals = {}
    for m in methods:
        p = metrics_dir / "eval" / f"{m}.json"
        if not p.is_file():
            raise UserError(f"{p} not found: run evaluate@{m} first")
        evals[m] = json.loads(p.read_text())
    table = comparison(evals, reference, candidate)
    write_json(metrics_dir / "compare.json", table)
    md = markdown(table, methods, reference, candidate)
    write_text(reports_dir / "compare.md", f"# {candidate} vs {reference}\n\n" + md)
    rows, src = load_split(read_manifest(data_dir), "human", "test", data_dir)
    k = min(n_faces, len(rows))
    ids = list(rows["id"][:k])
    columns = [src[:k]] + [load_images([str(translated_dir / m / f"{i}.png") for i in ids], Path(".")) for m in methods]
    # one row per face: source | method 1 | method 2 ...
    grid_rows = torch.stack(columns, 1).flatten(0, 1)
    save_image(to_pil(pairs_grid([grid_rows], per_row=len(columns))), reports_dir / "compare.png")
    Console().print(md)
    Console().print(f"compare: {rel(metrics_dir / 'compare.json')}, {rel(reports_dir / 'compare.md')}, "
                    f"{rel(reports_dir / 'compare.png')} (columns: source | {' | '.join(methods)})")
    return table
