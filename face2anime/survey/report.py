"""Stage ``survey_report``: what people said, from the responses file and the blind key.

Per method and question: mean rating with a 95% CI (crossed bootstrap over raters and
faces). Between methods (same raters, same faces): the mean paired difference with its CI
and a Wilcoxon signed-rank test over raters; a better method is named only when the CI
excludes 0. Rater agreement: Krippendorff's alpha (ordinal, and interval beside it) per
question, the rating items being the units. Pairwise "which keeps the person better":
counts, the share for each side and a sign test.

Outputs ``metrics/survey.json``, ``reports/survey.md`` and ``reports/survey.png``. With no
responses yet it says so in all three and succeeds.
"""
from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from face2anime.core.paths import SURVEY_JSON, SURVEY_MD, SURVEY_PNG
from face2anime.core.io import atomic_path, rel, write_json, write_text
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.survey.items import KEY_FILE, QUESTIONS
from face2anime.survey.responses import RESPONSES_FILE, SAME, read_responses
from face2anime.survey.stats import krippendorff_alpha, mean_ci, paired, sign_test_p

SIMULATED_PREFIX = "sim-"


def load_key(key_file: Path) -> dict[str, Any]:
    if not key_file.is_file():
        raise UserError(f"{key_file} not found: run `dvc repro survey_items` first")
    try:
        key = json.loads(key_file.read_text())
        if not isinstance(key["methods"], list) or not isinstance(key["items"], dict):
            raise TypeError("methods must be a list and items a mapping")
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{key_file}: not a survey key ({type(e).__name__}: {e})") from None
    return key


def summarise(rows: list[dict[str, str]], key: dict[str, Any], n_boot: int, seed: int) -> dict[str, Any]:
    """The report's numbers from validated response rows (see the module docstring)."""
    methods: list[str] = list(key["methods"])
    items: dict[str, dict] = key["items"]
    seen: set[tuple[str, str]] = set()
    stale = duplicate = 0
    valid: list[dict[str, str]] = []
    for r in rows:
        if r["item"] not in items:
            stale += 1
            continue
        if (r["rater"], r["item"]) in seen:
            duplicate += 1
            continue
        seen.add((r["rater"], r["item"]))
        valid.append(r)
    rate = [r for r in valid if items[r["item"]]["kind"] == "rate" and all(r[q] for q in QUESTIONS)]
    pairs = [r for r in valid if items[r["item"]]["kind"] == "pair"]
    raters = sorted({r["rater"] for r in valid})
    out: dict[str, Any] = {
        "status": "ok" if valid else "no_responses",
        "n_raters": len(raters),
        "n_simulated_raters": sum(r.startswith(SIMULATED_PREFIX) for r in raters),
        "n_rows": len(valid), "n_ratings": len(rate), "n_pair_answers": len(pairs),
        "dropped": {"stale": stale, "duplicate": duplicate},
        "questions": QUESTIONS, "methods": {}, "paired": {}, "agreement": {}, "pairwise": {},
        "bootstrap": n_boot,
    }
    if not valid:
        return out

    rng = np.random.default_rng(seed)
    faces = sorted({v["face"] for v in items.values()})
    r_idx = {r: i for i, r in enumerate(sorted({r["rater"] for r in rate}))}
    f_idx = {f: j for j, f in enumerate(faces)}
    mats = {(m, q): np.full((len(r_idx), len(faces)), np.nan) for m in methods for q in QUESTIONS}
    for r in rate:
        it = items[r["item"]]
        for q in QUESTIONS:
            mats[(it["method"], q)][r_idx[r["rater"]], f_idx[it["face"]]] = float(r[q])

    for m in methods:
        out["methods"][m] = {q: mean_ci(mats[(m, q)], n_boot, rng) for q in QUESTIONS}
    for a, b in combinations(methods, 2):
        out["paired"][f"{b} - {a}"] = {"candidate": b, "reference": a, "questions": {
            q: paired(mats[(a, q)], mats[(b, q)], n_boot, rng) for q in QUESTIONS}}

    # agreement: units = rating items (method x face), coders = raters
    unit_ids = sorted(i for i, v in items.items() if v["kind"] == "rate")
    u_idx = {u: k for k, u in enumerate(unit_ids)}
    for q in QUESTIONS:
        data = np.full((len(unit_ids), len(r_idx)), np.nan)
        for r in rate:
            data[u_idx[r["item"]], r_idx[r["rater"]]] = float(r[q])
        out["agreement"][q] = {"alpha_ordinal": krippendorff_alpha(data, "ordinal"),
                               "alpha_interval": krippendorff_alpha(data, "interval"),
                               "n_items_rated_twice": int(((~np.isnan(data)).sum(axis=1) >= 2).sum())}

    for a, b in combinations(methods, 2):
        counts = {"first": 0, "second": 0, "same": 0, "skipped": 0}
        for r in pairs:
            it = items[r["item"]]
            if set(it["methods"]) != {a, b}:
                continue
            choice = r["better"]
            if choice == "":
                counts["skipped"] += 1
            elif choice == SAME:
                counts["same"] += 1
            else:
                counts["first" if it["options"][choice] == a else "second"] += 1
        decisive = counts["first"] + counts["second"]
        out["pairwise"][f"{a} vs {b}"] = {"first_method": a, "second_method": b, **counts,
                                          "share_second": counts["second"] / decisive if decisive else None,
                                          "p_sign": sign_test_p(counts["second"], counts["first"])}
    return out


def _fmt(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def _p(p: float | None) -> str:
    return "n/a" if p is None else ("<0.001" if p < 0.001 else f"{p:.3f}")


def _ci(d: dict) -> str:
    lo, hi = d["ci"]
    return "" if lo is None else f" [{lo:.2f}, {hi:.2f}]"


def markdown(s: dict[str, Any], responses: Path) -> str:
    lines = ["# Survey: what people said", ""]
    if s["status"] == "no_responses":
        lines += [(f"No responses yet: `{responses}` holds no answers to the current survey items "
                   f"({s['dropped']['stale']} answers to older items were left out)."), "",
                  "Run `face2anime serve`, let people answer the Survey page, then `dvc repro survey_report`."]
        return "\n".join(lines) + "\n"
    sim = (f" **{s['n_simulated_raters']} of them are simulated raters** (ids `sim-...`): not evidence."
           if s["n_simulated_raters"] else "")
    lines += [(f"{s['n_raters']} raters, {s['n_ratings']} rated items, {s['n_pair_answers']} pairwise answers "
               f"(left out: {s['dropped']['stale']} stale, {s['dropped']['duplicate']} duplicate rows).{sim}"), "",
              "Mean rating 1-5 with a 95% CI (bootstrap over raters and faces):", ""]
    methods = list(s["methods"])
    lines += ["| question | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for q, text in s["questions"].items():
        cells = [f"{_fmt(s['methods'][m][q]['mean'])}{_ci(s['methods'][m][q])} (n={s['methods'][m][q]['n']})"
                 for m in methods]
        lines.append(f"| {q}: {text} | " + " | ".join(cells) + " |")
    for d_pair in s["paired"].values():
        a, b, per_q = d_pair["reference"], d_pair["candidate"], d_pair["questions"]
        lines += ["", f"Paired difference {b} - {a} (same raters and faces; Wilcoxon signed-rank over raters):", "",
                  "| question | delta [95% CI] | p | verdict |", "|---|---|---|---|"]
        for q, d in per_q.items():
            lo, hi = d["ci"]
            if lo is not None and lo > 0:
                verdict = f"{b} better"
            elif hi is not None and hi < 0:
                verdict = f"{a} better"
            else:
                verdict = "no difference shown (CI includes 0)"
            lines.append(f"| {q} | {_fmt(d['delta'])}{_ci(d)} | {_p(d['p_wilcoxon'])} | {verdict} |")
    lines += ["", ("Rater agreement, Krippendorff's alpha (1 = perfect, 0 = chance; below about 0.67 "
                   "the raters disagree too much for firm conclusions):"), "",
              "| question | ordinal | interval | items rated by 2+ raters |", "|---|---|---|---|"]
    for q, d in s["agreement"].items():
        lines.append(f"| {q} | {_fmt(d['alpha_ordinal'])} | {_fmt(d['alpha_interval'])} | {d['n_items_rated_twice']} |")
    low = [q for q, d in s["agreement"].items() if d["alpha_ordinal"] is None or d["alpha_ordinal"] < 0.667]
    if low:
        lines += ["", f"Agreement is low on {', '.join(low)}: read the verdicts on those questions with caution."]
    if s["pairwise"]:
        lines += ["", "Which keeps the person better (pairwise, optional):", "",
                  "| pair | chose first | chose second | same | skipped | share second | p (sign test) |",
                  "|---|---|---|---|---|---|---|"]
        for pair, d in s["pairwise"].items():
            lines.append(f"| {pair} | {d['first']} | {d['second']} | {d['same']} | {d['skipped']} | "
                         f"{_fmt(d['share_second'])} | {_p(d['p_sign'])} |")
    lines += ["", "![per-question means](survey.png)"]
    return "\n".join(lines) + "\n"


def plot(s: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.6), dpi=110)
    ax = fig.add_subplot()
    qs = list(s["questions"])
    if s["status"] == "no_responses":
        ax.text(0.5, 0.5, "no survey responses yet", ha="center", va="center", fontsize=14)
        ax.set_axis_off()
    else:
        methods = list(s["methods"])
        width = 0.8 / max(len(methods), 1)
        for k, m in enumerate(methods):
            xs, ys, err = [], [], [[], []]
            for j, q in enumerate(qs):
                d = s["methods"][m][q]
                if d["mean"] is None:
                    continue
                lo, hi = d["ci"]
                xs.append(j - 0.4 + width * (k + 0.5))
                ys.append(d["mean"])
                err[0].append(d["mean"] - (lo if lo is not None else d["mean"]))
                err[1].append((hi if hi is not None else d["mean"]) - d["mean"])
            ax.bar(xs, ys, width * 0.9, yerr=err, capsize=4, label=m)
        ax.set_xticks(range(len(qs)), qs)
        ax.set_ylim(1, 5.4)
        ax.set_ylabel("mean rating (1-5), 95% CI")
        ax.set_title(f"Survey: {s['n_raters']} raters"
                     + (f" ({s['n_simulated_raters']} simulated)" if s["n_simulated_raters"] else ""))
        ax.legend(loc="upper right", ncols=len(methods), frameon=False)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")


def run_survey_report(params: ParamsFile, responses: Path = RESPONSES_FILE, key_file: Path = KEY_FILE,
                      out_json: Path = SURVEY_JSON, out_md: Path = SURVEY_MD, out_png: Path = SURVEY_PNG) -> dict:
    n_boot, seed = params.survey.bootstrap, params.seed
    key = load_key(key_file)
    rows, dropped = read_responses(responses)
    s = summarise(rows, key, n_boot, seed)
    s["dropped"]["torn"] = dropped["torn"]
    write_json(out_json, s)
    write_text(out_md, markdown(s, responses))
    plot(s, out_png)
    what = ("no responses yet" if s["status"] == "no_responses"
            else f"{s['n_raters']} raters, {s['n_ratings']} ratings, {s['n_pair_answers']} pairwise answers")
    Console().print(f"survey_report: {what} -> {rel(out_json)}, {rel(out_md)}, {rel(out_png)}")
    return s
