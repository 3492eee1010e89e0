"""``face2anime record RUN`` keeps the measurements of a finished run that is not committed.

A run on photos that cannot be part of the repository (your own, or a development set) still
gives numbers worth keeping: what the data was, how long each stage took, every metric with its
validity and floors, the verdicts. ``record`` reads them from the run's ``metrics/`` and
``params.yaml`` and writes one JSON file (no images, no file names), by default
``docs/measured/NAME.json``; ``face2anime report`` then writes the tables of
``docs/real-data.md`` or ``docs/performance.md`` (whichever holds the block) from each record
(:func:`render`), between ``<!-- real-run:NAME:begin -->``
and ``<!-- real-run:NAME:end -->`` (:func:`markers`), so the page shows measurements, never
typed numbers. A page may hold several records' blocks (runs of different settings or code).

The pipeline's wall time comes from the ``metrics/repro.json`` that ``face2anime repro`` (and
so ``face2anime profile``) writes; pass ``--repro FILE`` more than once when the run took
several invocations (for example a method added later): each is kept with the stages it ran.
A run without one (its stages run by hand with ``dvc repro -s``) is recorded without the
whole-pipeline time, and ``record`` says so.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
import yaml

from face2anime.apps import markdown
from face2anime.core.io import rel, write_json
from face2anime.core.params import UserError
from face2anime.evaluation.compare import format_p

MEASURED_DIR = Path("docs/measured")


def markers(name: str) -> tuple[str, str]:
    """The lines that open and close the block of record ``name`` in its page."""
    return f"<!-- real-run:{name}:begin -->", f"<!-- real-run:{name}:end -->"


#: (key in metrics/eval/M.json, label, lower is better) for the metrics table, in order.
METRICS = [("kid_judge.mean", "`kid_judge`", True), ("edge_ssim", "`edge_ssim`", False),
           ("cycle_l1.human", "`cycle_l1` (human)", True), ("realism.mean", "realism (mean distance ratio)", False),
           ("realism.inside_rate", "realism inside rate", False), ("char_rate", "`char_rate`", False),
           ("junk_rate", "`junk_rate`", True),
           ("flat_share", "`flat_share` (flat pixels: the closer to the real anime crops' the less texture)", False)]
#: the metric whose validity decides each row's "valid" column (metrics/eval/M.json "valid").
VALIDITY = {"kid_judge.mean": "kid_judge", "edge_ssim": "edge_ssim", "cycle_l1.human": "cycle_l1",
            "realism.mean": "realism", "realism.inside_rate": "realism", "char_rate": "char_rate",
            "junk_rate": "char_rate", "flat_share": None}   # flat_share: a diagnostic, no floors
#: the floor references shown beside the metrics: (key in "references", label).
FLOORS = [("shuffled_chars", "shuffled anime crops"), ("real_chars", "real held-out anime crops"),
          ("source", "untranslated photos")]
#: (params.yaml key, label) of the settings that say what kind of run it was.
SETTINGS = [("resize.size", "size (px)"), ("resize.crop", "crop"), ("cyclegan.train.ngf", "generator channels"),
            ("cyclegan.train.ndf", "discriminator channels"), ("cyclegan.train.batch_size", "batch"),
            ("cyclegan.train.diffaug", "DiffAugment"), ("cyclegan.train.snapshot", "snapshot"),
            ("select.share", "selected share"), ("cyclegan.train.lambda_tv", "flat-shading prior `lambda_tv`"),
            ("cyclegan.train.d_blur", "blurred discriminator `d_blur`"), ("judge.junk", "judge junk per image")]


def _load(path: Path) -> Any:
    try:
        return markdown.load(path)
    except OSError as e:
        raise UserError(f"record: {rel(path)} is not readable ({e})") from e


def summarize(run: Path, repro_files: list[Path] | None = None) -> dict[str, Any]:
    """The record of the finished run in folder ``run`` (a project checkout after its pipeline).

    Returns a dict with ``machine``, ``settings``, ``data`` (images, alignment, selection),
    ``stages`` (stage -> wall seconds), ``repro`` (one entry per repro file: wall seconds and
    the stages run), ``methods`` (method -> metrics, validity, training facts), ``floors`` and
    ``compare`` (the paired comparison rows).
    """
    run = Path(run)
    metrics = run / "metrics"
    if not (metrics / "eval").is_dir():
        raise UserError(f"record: {rel(run)} has no metrics/eval: run its pipeline to the end first")
    try:
        params = yaml.safe_load((run / "params.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"record: {rel(run / 'params.yaml')} is not readable ({e})") from e
    methods: dict[str, Any] = {}
    floors: dict[str, Any] = {}
    machine = None
    for path in sorted((metrics / "eval").glob("*.json")):
        ev = _load(path)
        if not isinstance(ev, dict) or "method" not in ev:
            continue
        m = ev["method"]
        train = _load(metrics / "cyclegan" / m / "metrics.json") or {}
        stage = _load(metrics / "stages" / f"train_cyclegan@{m}.json") or {}
        methods[m] = {
            "model": markdown.get(params, f"cyclegan.methods.{m}.model") or "cyclegan",
            "n_test": ev.get("n_test"),
            "metrics": {k: markdown.get(ev, k) for k, _, _ in METRICS},
            "valid": {name: bool(markdown.get(ev, f"valid.{name}.ok")) for name in sorted(set(VALIDITY.values()) - {None})},
            "collapsed": markdown.get(ev, "training.collapsed"),
            "steps": train.get("steps"), "best_step": train.get("val_best_step"),
            "d_acc_tail": train.get("d_acc_tail"), "images_per_s": stage.get("images_per_s"),
            "n_human_train": train.get("n_human_train"), "n_character_train": train.get("n_character_train"),
        }
        machine = machine or ev.get("machine")
        for ref, _ in FLOORS:
            r = markdown.get(ev, f"references.{ref}")
            if ref not in floors and r is not None:     # a floor's cycle_l1 is one number, not per domain
                floors[ref] = {k: markdown.get(r, k) if markdown.get(r, k) is not None else r.get(k.split(".")[0])
                               for k, _, _ in METRICS}
    if not methods:
        raise UserError(f"record: no method results under {rel(metrics / 'eval')}")
    order = list(markdown.get(params, "cyclegan.methods") or {})   # the params' order: baseline, proposed, ...
    methods = dict(sorted(methods.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order)))
    stages = {}
    for path in sorted((metrics / "stages").glob("*.json")):
        s = _load(path) or {}
        if "wall_seconds" in s:
            stages[path.stem] = s["wall_seconds"]
    repro = []
    files = repro_files or [metrics / "repro.json"]
    if not repro_files and not files[0].is_file():   # its stages were run by hand (dvc repro -s)
        print(f"record: {rel(files[0])} not found: the whole-pipeline time is left out")
        files = []
    for path in files:
        r = _load(Path(path))
        if r is None:
            raise UserError(f"record: {rel(Path(path))} not found (face2anime repro writes it)")
        repro.append({"wall_seconds": r.get("wall_seconds"), "ran": r.get("ran", []), "cores": r.get("cores")})
    resize, select, cam = (_load(metrics / f) or {} for f in ("resize.json", "select.json", "cam.json"))
    faces = resize.get("faces") or {}
    data = {"images": (_load(metrics / "download.json") or {}).get("images"), "written": resize.get("written"),
            "skipped": resize.get("skipped"),
            "alignment": {k: faces.get(k) for k in ("detector", "landmarks", "photos", "faces_found", "faces_written",
                                                    "photos_with_several_faces", "faces_too_small", "faces_not_taken")},
            "selected": select.get("selected"), "candidates": select.get("candidates"),
            "part_focus_mean": cam.get("part_focus_mean"), "boxes_from": cam.get("boxes_from")}
    compare = _load(metrics / "compare.json") or {}
    roles = {"reference": markdown.get(params, "compare.reference"), "candidate": markdown.get(params, "compare.candidate")}
    return {"machine": machine, "settings": {k: markdown.get(params, k) for k, _ in SETTINGS}, "data": data,
            "stages": stages, "repro": repro, "methods": methods, "floors": floors,
            "compare_roles": roles,
            "compare": {k: {f: row.get(f) for f in ("delta", "ci_low", "ci_high", "p", "mde80", "valid", "verdict")}
                        for k, row in compare.items() if isinstance(row, dict) and "verdict" in row}}


def _num(x: Any, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def _signed(x: Any) -> str:
    return markdown.signed(x, 4)


def _stage_rows(stages: dict[str, float]) -> list[list[str]]:
    train = {k: v for k, v in stages.items() if k.startswith("train_cyclegan@")}
    rest = {k: v for k, v in stages.items() if k not in train}
    rows = [[f"`{k}`", f"{v:.0f} s"] for k, v in train.items()]
    return rows + [["all other stages, one after another", f"{sum(rest.values()):.0f} s"]]


def render(record: dict[str, Any], source: str) -> str:
    """The block of ``docs/real-data.md`` (markers included) for one record from ``source``
    (its path: the file's stem names the markers)."""
    begin, end = markers(Path(source).stem)
    lines = [begin, f"<!-- written by `face2anime report` from {source}: do not edit by hand -->", ""]
    if record.get("kind") == "before_after":   # `face2anime seeds --before RUN_A --after RUN_B`, copied here
        from face2anime.evaluation.compare import markdown as paired_markdown

        for method, table in record["methods"].items():
            lines += [f"`{method}`, after against before ({record.get('seed_pairs')} seed pair(s); "
                      f"`face2anime seeds --before ... --after ...`, copied to `{source}`):", "",
                      paired_markdown(table, ["before", "after"], "before", "after").rstrip("\n"), ""]
        return "\n".join(lines + [end, ""])
    m = record.get("machine") or {}
    lines += [f"Machine: {m.get('cpu', '?')} ({', '.join(m.get('cpu_flags') or []) or 'no flags recorded'}), "
              f"{m.get('cores', '?')} cores, torch {m.get('torch', '?')}; recorded in `{source}`.", ""]
    d = record["data"]
    a = d.get("alignment") or {}
    lines += [f"**Data.** {_num(markdown.get(d, 'images.human'))} photos and {_num(markdown.get(d, 'images.character'))} anime crops. "
              f"Alignment ({a.get('detector')}, {a.get('landmarks')} landmarks): {a.get('faces_found')} faces found "
              f"in {a.get('photos')} photos, {a.get('photos_with_several_faces')} photos with several faces, "
              f"{a.get('faces_too_small')} faces too small, {a.get('faces_not_taken')} not taken. Training/test: "
              f"{_num(markdown.get(d, 'written.human.train'))}/{_num(markdown.get(d, 'written.human.test'))} photos, "
              f"{_num(markdown.get(d, 'written.character.train'))}/{_num(markdown.get(d, 'written.character.test'))} anime crops; "
              f"{d.get('selected')} of {d.get('candidates')} training photos selected by `part_focus` "
              f"(mean {_num(d.get('part_focus_mean'))}).", ""]
    s = record["settings"]
    lines += ["**Settings.** " + ", ".join(f"{label} {_num(s.get(k))}" for k, label in SETTINGS
                                         if k in s) + ".", ""]   # older records lack the later keys
    lines += ["**Time.**", ""] + markdown.table(["stage", "wall time"], _stage_rows(record["stages"]))
    for r in record["repro"]:
        lines.append(f"| whole `face2anime repro` ({len(r['ran'])} stages run, {r['cores']} cores) | "
                     f"{_num(r['wall_seconds'], 0)} s ({r['wall_seconds'] / 60:.0f} min) |")
    methods = record["methods"]
    names = list(methods)
    lines += ["", "**Metrics** (held-out test photos; `valid`: the metric's floors pass, see "
              "[evaluation.md](evaluation.md)):", ""]
    header = ["metric"] + names + ["valid (" + ", ".join(names) + ")"] + [label for _, label in FLOORS]
    rows = []
    for key, label, lower in METRICS:
        values = [methods[n]["metrics"].get(key) for n in names]
        if all(v is None for v in values):
            continue          # a metric this run's code did not compute yet
        valid = "-" if VALIDITY[key] is None else \
            "/".join("yes" if methods[n]["valid"].get(VALIDITY[key]) else "**no**" for n in names)
        rows.append([label + (" (lower is better)" if lower else "")]
                    + [_num(methods[n]["metrics"].get(key)) for n in names] + [valid]
                    + [_num((record["floors"].get(ref) or {}).get(key)) for ref, _ in FLOORS])
    lines += markdown.table(header, rows) + [""]
    train_rows = [[n, methods[n]["model"], _num(methods[n]["steps"]), _num(methods[n]["best_step"]),
                   _num(methods[n]["images_per_s"], 1), _num(methods[n]["d_acc_tail"], 2),
                   "yes" if methods[n]["collapsed"] else "no"] for n in names]
    lines += markdown.table(["method", "model", "steps", "best validation step", "images/s", "D accuracy at the end",
                     "collapsed"], train_rows) + [""]
    cmp_rows = [[f"`{k}`", _signed(row.get("delta")), f"[{_signed(row.get('ci_low'))}, {_signed(row.get('ci_high'))}]",
                 format_p(row.get("p")), _num(row.get("mde80"), 4), str(row.get("verdict"))]
                for k, row in record["compare"].items() if row.get("valid")]
    if cmp_rows:
        roles = record.get("compare_roles") or {}
        lines += [f"**{roles.get('candidate')} vs {roles.get('reference')}** (`compare`), paired over the "
                  f"{methods[names[0]]['n_test']} test photos (one training seed: the interval covers test photos, "
                  "not seeds; delta = candidate - reference), valid metrics only:", ""]
        lines += markdown.table(["metric", "delta", "95% CI", "p", "MDE80", "verdict"], cmp_rows) + [""]
    return "\n".join(lines + [end]) + "\n"


def main(run: Path = typer.Argument(..., help="the finished run's project folder"),
         name: str = typer.Option("real-dev-cpu", help="record name: writes docs/measured/NAME.json"),
         repro: list[Path] = typer.Option(None, help="metrics/repro.json files of the run (default: RUN's own)"),
         out_dir: Path = typer.Option(MEASURED_DIR, help="where the record goes")) -> None:
    """Keep a finished run's measurements (no images) as docs/measured/NAME.json for face2anime report."""
    record = summarize(run, repro or None)
    out = out_dir / f"{name}.json"
    write_json(out, record)
    typer.echo(f"record: {rel(out)} ({len(record['methods'])} methods, {len(record['stages'])} stages); "
               "run face2anime report to update docs/real-data.md")
