"""Stage 9, ``compare``: the candidate method against the reference method, with paired
statistics per test image, and a picture.

Outputs:

- ``metrics/compare.json`` = ``{metric: {METHOD: value, ..., reference, candidate, delta,
  ci_low, ci_high, se, p, mde80, n, n_seeds, valid, verdict}}`` over every numeric metric of
  ``metrics/eval/*.json`` (nested keys joined with dots; floors, ceiling and validity
  entries are not compared). ``reference``/``candidate`` are the two methods' values and
  ``delta`` = candidate - reference.
- ``reports/compare.md``: the same as a table in words, the floors and the ceiling.
- ``reports/compare.png``: columns source | METHOD... for the same held-out test faces; when a
  method is U-GAT-IT (``model: ugatit``), each method with attention also gets a column
  ``METHOD CAM`` beside its own (the heatmap its generator attended to: U-GAT-IT's learned
  CAM, the Grad-CAM of an attention method; ``data/translated/METHOD/cam/``).

Statistics (:mod:`face2anime.evaluation.stats`): every metric that is a mean over test
images is recomputed from the per-image tables ``metrics/eval/METHOD_images.csv``, paired by
source id. The 95% CI is a percentile bootstrap over test images (``compare.bootstrap``
replicates); with several seeds (:func:`paired_comparison` takes one run per seed) a two-way
bootstrap over seeds and images. ``p`` is a two-sided sign-flip permutation test
(``compare.permutations``). ``mde80`` = 2.80 x the bootstrap SE: the smallest true
difference this many images (and seeds) detect with 80% power at alpha 0.05. ``kid_judge``
is not a mean over images: its CI and p come from bootstrapping / permuting the paired
judge features (``data/eval/METHOD.npz``) with the full-set unbiased MMD^2.

The verdict names a better method only when the metric is valid for both methods
(``valid`` in their eval JSON, read by :func:`face2anime.evaluation.validity.metric_validity`),
the CI excludes 0 and p < 0.05 (the two agree from about 20 images on; with a handful of
images the percentile CI is too narrow and the exact test guards it); otherwise "no
detectable difference" (or why the metric was not judged).
"""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import IO, Callable

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from face2anime.core.paths import EVAL_DATA_DIR, METRICS_DIR, REPORTS_DIR, RESIZED_DIR, TRANSLATED_DIR
from face2anime.core.io import rel, save_image, write_json, write_text
from face2anime.core.params import UserError, flat_items
from face2anime.core.schema import ParamsFile, method_names
from face2anime.data.images import load_images, load_split, pairs_grid, read_manifest, to_pil
from face2anime.evaluation import stats
from face2anime.evaluation.validity import metric_validity, validity_key

#: metrics where lower is better
LOWER_IS_BETTER = ("kid_judge.mean", "junk_rate", "cycle_l1.human", "cycle_l1.character", "inception.kid.mean",
                   "inception.kid.x100", "inception.fid.value", "inception.mean_kid_ugatit.mean",
                   "inception.mean_kid_ugatit.x100", "inception.mean_kid_ugatit.kid_to_target")
#: not compared: counts, spreads, settings and properties of the shared data/predictor (timings
#: are never in a metrics file: they change from run to run; see metrics/stages/), and
#: ``flat_share``, a texture diagnostic with no better direction (a grey image is all flat)
SKIP = ("n_test", "flat_share", "kid_judge.std", "realism.k", "attr_preservation.chance",
        "attr_preservation.chance_uniform", "attr_preservation.predictor_accuracy", "inception.kid.std",
        "inception.kid.subsets", "inception.kid.subset_size", "inception.kid.n_fake", "inception.kid.n_real",
        "inception.fid.n_fake", "inception.fid.n_real", "inception.mean_kid_ugatit.std",
        "inception.mean_kid_ugatit.kid_to_source", "inception.mean_kid_ugatit.n_fake",
        "inception.mean_kid_ugatit.n_real", "inception.mean_kid_ugatit.n_source")
SKIP_PREFIX = ("references.", "ceiling.", "of_ceiling.", "valid.", "training.", "machine.", "attr_preservation.chance_per_attribute.")


def flatten(d: dict, prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested dict as ``{'a.b': value}`` (bools and strings dropped)."""
    return {k: float(v) for k, v in flat_items(d, prefix).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def compared(key: str) -> bool:
    return key not in SKIP and not key.endswith(".n") and not key.startswith(SKIP_PREFIX)


def per_image_values(metric: str, table: pd.DataFrame) -> pd.Series | None:
    """The per-image values (indexed by id) whose mean is ``metric``, or None when the metric is
    not a mean over test images (or the table lacks it)."""
    t = table.set_index(table["id"].astype(str))
    col, mask = None, None
    parts = metric.split(".")
    if metric == "char_rate":
        col = "is_character"
    elif metric == "junk_rate" and "verdict" in t:
        return (t["verdict"] == "junk").astype(float)
    elif parts[0] == "char_rate_by_kind" and len(parts) == 3 and parts[2] == "char_rate":
        col = "is_character"
        clean = t["clean"].astype(str).str.lower().isin(["true", "1", "1.0"])
        kind = t["hard_kind"].fillna("").astype(str)
        mask = clean if parts[1] == "clean" else ~clean if parts[1] == "hard" else kind == parts[1]
    elif metric in ("attr_preservation.mean", "attr_preservation.above_chance"):
        col = "attr_mean"
    elif parts[:2] == ["attr_preservation", "per_attribute"] and len(parts) == 3:
        col = f"attr_{parts[2]}"
    elif metric in ("edge_ssim", "cam_overlap"):
        col = metric
    elif metric == "cycle_l1.human":
        col = "cycle_l1"
    elif metric == "realism.mean":
        col = "realism"
    elif metric == "realism.inside_rate":
        col = "realistic"
    if col is None or col not in t:
        return None
    v = t[col].astype(float)
    return v[mask.to_numpy()] if mask is not None else v


def _kid_test(runs: list[dict], reference: str, candidate: str, n_boot: int, n_perm: int, seed: int) -> dict | None:
    """Paired bootstrap CI and permutation p of the KID difference (full-set unbiased MMD^2 of
    each method's translations vs the real character test images) from the judge features."""
    from face2anime.evaluation.measures import polynomial_kernel

    feats = [r.get("features") for r in runs]
    if any(f is None or reference not in f or candidate not in f for f in feats):
        return None
    sets = []
    for f in feats:
        a, b = f[reference], f[candidate]
        pos_a = {str(i): k for k, i in enumerate(a["ids"])}
        pos_b = {str(i): k for k, i in enumerate(b["ids"])}
        ids = [i for i in pos_a if i in pos_b]
        fr = torch.from_numpy(a["fake"][[pos_a[i] for i in ids]]).double()
        fc = torch.from_numpy(b["fake"][[pos_b[i] for i in ids]]).double()
        real = torch.from_numpy(a["real"]).double()
        both = torch.cat([fr, fc])                       # rows 0..n-1 reference, n..2n-1 candidate
        kyy = polynomial_kernel(real, real)
        m = len(real)
        syy = float((kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1)))
        sets.append((len(ids), polynomial_kernel(both, both).numpy(), polynomial_kernel(both, real).mean(1).numpy(), syy))
    n = min(s[0] for s in sets)
    if n < 2:
        return None

    def mmd2(kaa: np.ndarray, kar_mean: np.ndarray, syy: float, counts: np.ndarray) -> np.ndarray:
        """mmd2_unbiased(features[rows], real) for a batch of row draws, from the precomputed
        kernels: ``counts [B, 2n]`` says how often each row was drawn. The sum of a draw's kernel
        block ``kaa[rows][:, rows]`` is ``c @ kaa @ c`` and its trace ``c @ diag(kaa)``, so a
        batch costs one matrix product (the same numbers as indexing the block, up to rounding)."""
        m = counts[0].sum()
        quad = np.einsum("bi,bi->b", counts @ kaa, counts)
        return (quad - counts @ np.diagonal(kaa)) / (m * (m - 1)) + syy - 2 * (counts @ kar_mean) / m

    def per_set(s: int, img_counts: np.ndarray, swap: np.ndarray) -> np.ndarray:
        """Candidate minus reference MMD^2 in set ``s`` for a batch: ``img_counts [B, n]`` draws
        of the paired images, ``swap [B, n]`` the images whose two outputs trade places."""
        n_s, kaa, kar, syy = sets[s]
        ref, cand = np.zeros((len(img_counts), 2 * n_s)), np.zeros((len(img_counts), 2 * n_s))
        ref[:, :n], cand[:, n_s:n_s + n] = img_counts * ~swap, img_counts * ~swap
        cand[:, :n], ref[:, n_s:n_s + n] = img_counts * swap, img_counts * swap
        return mmd2(kaa, kar, syy, cand) - mmd2(kaa, kar, syy, ref)

    def boot(seed_idx: np.ndarray, img_idx: np.ndarray) -> np.ndarray:
        counts = np.stack([np.bincount(r, minlength=n) for r in img_idx]).astype(np.float64)
        no_swap = np.zeros(counts.shape, bool)
        seed_counts = np.stack([np.bincount(r, minlength=len(sets)) for r in seed_idx])    # [B, S]
        vals = np.stack([per_set(s, counts, no_swap) for s in range(len(sets))], 1)       # [B, S]
        return (vals * seed_counts).sum(1) / seed_idx.shape[1]

    def perm(swap: np.ndarray) -> np.ndarray:
        ones = np.ones(swap.shape)
        return np.mean([per_set(s, ones, swap) for s in range(len(sets))], 0)

    reps = stats.bootstrap_stat(boot, len(sets), n, n_boot, seed)
    lo, hi = stats.percentile_ci(reps)
    se = float(reps.std(ddof=1))
    p = stats.permutation_stat(perm, n, n_perm, seed)
    return {"ci_low": lo, "ci_high": hi, "se": se, "p": p, "mde80": stats.mde80(se), "n": n,
            "n_seeds": len(sets)}


def paired_comparison(runs: list[dict], reference: str, candidate: str, n_boot: int = 10000,
                      n_perm: int = 10000, seed: int = 0) -> dict[str, dict]:
    """Compare ``candidate`` with ``reference`` over one or more runs (one per training seed).

    Each run is ``{"evals": {method: eval JSON}, "tables": {method: per-image DataFrame},
    "features": {method: {"ids", "fake", "real"}} (optional)}`` as :func:`load_run` reads it
    from one workspace or experiment. Per-image metrics are paired by source id within each
    run; the CI is the two-way (seeds x images) bootstrap of :mod:`~face2anime.evaluation.stats`.
    Returns ``{metric: {METHOD: value (mean over runs), reference, candidate, delta, ci_low,
    ci_high, se, p, mde80, n, n_seeds, valid, reasons, verdict}}``.
    """
    methods = list(dict.fromkeys(m for r in runs for m in r["evals"]))
    flat = [{m: flatten(r["evals"][m]) for m in r["evals"]} for r in runs]
    metrics = sorted({k for f in flat for fm in f.values() for k in fm if compared(k)})
    collapsed = sorted({m if len(runs) == 1 else f"{m} run {i}" for i, r in enumerate(runs)
                        for m in (reference, candidate)
                        if (r["evals"].get(m) or {}).get("training", {}).get("collapsed")})
    table: dict[str, dict] = {}
    for k in metrics:
        row: dict = {}
        for m in methods:
            vals = [f[m][k] for f in flat if m in f and k in f[m]]
            row[m] = float(np.mean(vals)) if vals else None
        a, b = row.get(reference), row.get(candidate)
        row.update({"reference": a, "candidate": b, "delta": None if a is None or b is None else b - a,
                    "ci_low": None, "ci_high": None, "se": None, "p": None, "mde80": None, "n": None,
                    "n_seeds": len(runs)})
        ok, reasons = metric_validity(k, {(m if len(runs) == 1 else f"{m} run {i}"): r["evals"][m]
                                          for i, r in enumerate(runs) for m in (reference, candidate)
                                          if m in r["evals"]})
        row["valid"], row["reasons"] = ok, reasons
        higher = k not in LOWER_IS_BETTER
        test = None
        if k == "kid_judge.mean":
            test = _kid_test(runs, reference, candidate, min(n_boot, 2000), min(n_perm, 2000), seed)
        elif all(reference in r.get("tables", {}) and candidate in r.get("tables", {}) for r in runs):
            diffs = []
            for r in runs:
                va = per_image_values(k, r["tables"][reference])
                vb = per_image_values(k, r["tables"][candidate])
                if va is None or vb is None:
                    diffs = []
                    break
                ids = va.index.intersection(vb.index)
                diffs.append((vb[ids] - va[ids]).sort_index().to_numpy())
            if diffs and min(len(d) for d in diffs) > 0 and len({len(d) for d in diffs}) == 1:
                s = stats.paired_summary(np.stack(diffs), higher, n_boot, n_perm, seed)
                test = {key: s[key] for key in ("ci_low", "ci_high", "se", "p", "mde80", "n", "n_seeds")}
                row["delta"] = s["delta"]   # the paired mean (equals b - a when both cover the same images)
        if test is not None:
            row.update(test)
        row["verdict"] = verdict(row, higher, reference, candidate)
        if collapsed and row["verdict"].endswith(" better"):
            row["verdict"] = f"not judged: training collapsed ({', '.join(collapsed)})"
        table[k] = row
    return table


def verdict(row: dict, higher_is_better: bool, reference: str, candidate: str, alpha: float = 0.05) -> str:
    """In words: which method is better. Named only on a valid metric whose 95% CI excludes 0
    and whose permutation p is below ``alpha`` (the two agree from about 20 images on; with
    very few images the percentile bootstrap CI is too narrow and the exact p guards it)."""
    if row["delta"] is None:
        return "n/a"
    if row["valid"] is False:
        return "not judged: invalid metric"
    if row["ci_low"] is None:
        return "not tested: no per-image values"
    if (row["ci_low"] > 0 or row["ci_high"] < 0) and (row["p"] is None or row["p"] < alpha):
        up = row["ci_low"] > 0
        return f"{candidate if up == higher_is_better else reference} better"
    return "no detectable difference"


# --------------------------------------------------------------------------- reading runs
def load_run(methods: list[str], metrics_dir: Path = METRICS_DIR, eval_data_dir: Path = EVAL_DATA_DIR,
             open_file: Callable[[str], IO[bytes]] | None = None) -> dict:
    """One run's eval JSONs, per-image tables and (if present) judge features, for ``methods``.

    By default from the workspace. ``open_file(path)`` (a binary file object or
    FileNotFoundError) reads them from elsewhere, e.g. a finished DVC experiment:
    ``lambda p: dvc.api.open(p, rev="exp-name", mode="rb")``; an aggregator over seeds calls
    this once per experiment and passes the runs to :func:`paired_comparison`."""
    def read(path: Path) -> bytes | None:
        if open_file is None:
            return path.read_bytes() if path.is_file() else None
        try:
            with open_file(path.as_posix()) as fh:
                return fh.read()
        except FileNotFoundError:
            return None

    evals, tables, features = {}, {}, {}
    for m in methods:
        p = metrics_dir / "eval" / f"{m}.json"
        raw = read(p)
        if raw is None:
            raise UserError(f"{p} not found: run evaluate@{m} first")
        evals[m] = json.loads(raw)
        raw = read(metrics_dir / "eval" / f"{m}_images.csv")
        if raw is not None:
            tables[m] = pd.read_csv(io.BytesIO(raw), dtype={"id": str, "hard_kind": str})
        raw = read(eval_data_dir / f"{m}.npz")
        if raw is not None:
            with np.load(io.BytesIO(raw)) as z:
                features[m] = {k: z[k] for k in ("ids", "fake", "real")}
    return {"evals": evals, "tables": tables, "features": features}


# --------------------------------------------------------------------------- report
def _fmt(v: float | None, digits: int = 4) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def format_p(p: float | None) -> str:
    """A p-value as the tables print it: 3 decimals, or 2 significant digits under 0.001."""
    return "n/a" if p is None else f"{p:.3f}" if p >= 1e-3 else f"{p:.1e}"


def markdown(table: dict[str, dict], methods: list[str], reference: str, candidate: str,
             ref_eval: dict | None = None, n_boot: int | None = None) -> str:
    """compare.md: the paired table, how to read it, then floors and ceiling."""
    first = next(iter(table.values()), {})
    n, n_seeds = table.get("char_rate", first).get("n"), first.get("n_seeds", 1)
    lines = [
        f"Paired comparison on {n if n is not None else '?'} held-out test images"
        f"{f' x {n_seeds} seeds' if n_seeds and n_seeds > 1 else ' (one training seed)'}: "
        f"delta = {candidate} - {reference} per source image; 95% CI by "
        f"{'two-way (seed x image) ' if n_seeds and n_seeds > 1 else ''}bootstrap"
        f"{f' ({n_boot} replicates)' if n_boot else ''}; p from a paired sign-flip permutation test; "
        "MDE80 = the smallest true difference detectable with 80% power at alpha 0.05. A method is "
        "named better only when the metric is valid (its floors pass), the CI excludes 0 and p < 0.05; "
        "otherwise: no detectable difference.",
        *([] if n_seeds and n_seeds > 1 else [
            "",
            f"With one training seed the interval covers test images only: a verdict is about these two "
            f"trained models, not about the methods (another seed can flip it). For a verdict about "
            f"{candidate} vs {reference} as methods, train more seeds (`dvc exp run --queue -S "
            f"cyclegan.train.seed=N`) and run `face2anime seeds`, whose interval also covers seeds."]),
        "",
        f"| metric | {' | '.join(methods)} | delta | 95% CI | p | MDE80 | valid | verdict |",
        "|" + "---|" * (len(methods) + 7),
    ]
    for k, row in table.items():
        ci = "n/a" if row["ci_low"] is None else f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
        p = format_p(row["p"])
        valid = {True: "yes", False: "NO", None: "-"}[row["valid"]]
        delta = "n/a" if row["delta"] is None else f"{row['delta']:+.4f}"
        lines.append(f"| {k} | {' | '.join(_fmt(row.get(m)) for m in methods)} | {delta} | {ci} | {p} | "
                     f"{_fmt(row['mde80'])} | {valid} | {row['verdict']} |")
    invalid = {k: row["reasons"] for k, row in table.items() if row["valid"] is False and row["reasons"]}
    if invalid:
        lines += ["", "Why metrics were not judged (rules failed on the degenerate references):", ""]
        shown: set[str] = set()
        for k, reasons in invalid.items():
            key = validity_key(k)
            if key in shown:
                continue
            shown.add(key)
            lines.append(f"- `{key}`: " + "; ".join(reasons))
    if ref_eval and ref_eval.get("references"):
        refs = ref_eval["references"]
        cols = ["char_rate", "junk_rate", "attr_preservation", "edge_ssim", "cam_overlap", "cycle_l1"]
        lines += ["", f"Floors (degenerate references scored like a translation; cycle_l1 with {reference}'s G_YX) "
                      "and the ceiling (each source rendered as the ideal character):", "",
                  "| reference | " + " | ".join(cols) + " | kid_judge | realism inside |",
                  "|---|" + "---|" * (len(cols) + 2)]
        extra = {"ceiling": ref_eval["ceiling"]} if ref_eval.get("ceiling") else {}
        for name, r in {**refs, **extra}.items():
            kidv = r.get("kid_judge")
            lines.append(f"| {name} | " + " | ".join(_fmt(r.get(c), 3) for c in cols)
                         + f" | {_fmt(kidv['mean'] if kidv else None, 3)} | {_fmt(r['realism']['inside_rate'], 2)} |")
    return "\n".join(lines) + "\n"


def picture(entries: dict, n_faces: int, data_dir: Path, translated_dir: Path, out_png: Path) -> list[str]:
    """``compare.png``: one row per held-out human test face (the first ``n_faces``), columns
    source | METHOD ... (``entries``: ``cyclegan.methods``); with a U-GAT-IT method among them
    each method's ``cam/`` heatmaps as a column ``METHOD CAM`` beside it. Returns the column names."""
    methods = list(entries)
    rows, src = load_split(read_manifest(data_dir), "human", "test", data_dir)
    k = min(n_faces, len(rows))
    ids = list(rows["id"][:k])
    learned = any(e.model == "ugatit" for e in entries.values())
    columns, names = [src[:k]], ["source"]
    for m in methods:
        columns.append(load_images([str(translated_dir / m / f"{i}.png") for i in ids], Path(".")))
        names.append(m)
        cams = [translated_dir / m / "cam" / f"{i}.png" for i in ids]
        if learned and all(f.is_file() for f in cams):      # the learned CAM beside the Grad-CAM
            columns.append(load_images([str(f) for f in cams], Path(".")))
            names.append(f"{m} CAM")
    # one row per face: source | method 1 | method 2 ...
    grid_rows = torch.stack(columns, 1).flatten(0, 1)
    save_image(to_pil(pairs_grid([grid_rows], per_row=len(columns))), out_png)
    return names


def compare(params: ParamsFile, metrics_dir: Path = METRICS_DIR, data_dir: Path = RESIZED_DIR,
            translated_dir: Path = TRANSLATED_DIR, reports_dir: Path = REPORTS_DIR,
            eval_data_dir: Path = EVAL_DATA_DIR) -> dict:
    methods = method_names(params)
    cfg = params.compare
    reference, candidate, n_faces, n_boot = cfg.reference, cfg.candidate, cfg.faces, cfg.bootstrap
    for key, name in (("reference", reference), ("candidate", candidate)):
        if name not in methods:
            raise UserError(f"{params.source}: param 'compare.{key}' must be one of {', '.join(methods)}, got {name!r}")
    run = load_run(methods, metrics_dir, eval_data_dir)
    table = paired_comparison([run], reference, candidate, n_boot, cfg.permutations, params.seed)
    write_json(metrics_dir / "compare.json", table)
    md = markdown(table, methods, reference, candidate, run["evals"][reference], n_boot)
    write_text(reports_dir / "compare.md", f"# {candidate} vs {reference}\n\n" + md)
    names = picture(params.cyclegan.methods, n_faces, data_dir, translated_dir, reports_dir / "compare.png")
    Console().print(md, highlight=False)
    Console().print(f"compare: {rel(metrics_dir / 'compare.json')}, {rel(reports_dir / 'compare.md')}, "
                    f"{rel(reports_dir / 'compare.png')} (columns: {' | '.join(names)})")
    return table
