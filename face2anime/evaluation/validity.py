"""When a metric counts: the validity rules of evaluation, in one place.

``evaluate`` scores a method's translations and the degenerate references
(:mod:`face2anime.evaluation.references`) the same way, and :func:`validity` asks of each
metric whether it tells them apart; the answer is ``valid`` in ``metrics/eval/METHOD.json``.
``compare`` reads it back with :func:`metric_validity` (which ``valid`` entry governs a
compared metric is :func:`validity_key`) and names no winner on a metric that is not ok.
"""
from __future__ import annotations

import pandas as pd

from face2anime.evaluation.references import DEGENERATE, REFERENCE_NAMES
from face2anime.evaluation.stats import bootstrap_ci

#: char_rate: every degenerate reference at most this, real held-out characters at least MIN
CHAR_RATE_MAX_DEGENERATE = 0.05
CHAR_RATE_MIN_REAL = 0.9
#: realism.inside_rate: the same shape of rule, looser (a k-NN manifold is not a classifier)
REALISM_MAX_DEGENERATE = 0.10
REALISM_MIN_REAL = 0.5
#: preservation metrics: noise/grey/shuffled characters may get at most this share of the way
#: from chance to the blurred source
NEAR_CHANCE_SHARE = 0.25
#: preservation metrics, higher (True) or lower (False) is better
PRESERVATION = {"attr_preservation": True, "edge_ssim": True, "cam_overlap": True, "cycle_l1": False}
#: per-image column of each preservation metric
PRESERVATION_COLUMN = {"attr_preservation": "attr_mean", "edge_ssim": "edge_ssim", "cam_overlap": "cam_overlap",
                       "cycle_l1": "cycle_l1"}
#: the metrics :func:`validity` has a rule for (the keys of ``valid``)
VALIDATED = ("char_rate", "realism", "kid_judge", *PRESERVATION)
#: metrics of the eval JSON governed by another metric's rule (the same judge verdicts)
GOVERNED_BY = {"char_rate_by_kind": "char_rate", "junk_rate": "char_rate"}
#: of ``cycle_l1``, only the sources' cycle is checked against the floors (their ``cycle_l1``
#: is ``|G_YX(reference) - source|``); ``cycle_l1.character`` has no rule
CYCLE_L1_VALIDATED = "cycle_l1.human"


def _rule(checks: list[str], reasons: list[str], ok: bool, text: str) -> None:
    checks.append(("ok: " if ok else "FAILED: ") + text)
    if not ok:
        reasons.append(text)


def validity(refs: dict[str, dict], frames: dict[str, pd.DataFrame], attr_chance: float | None,
             seed: int = 0) -> dict[str, dict]:
    """Can each metric tell real translations from degenerate ones? ``{metric: {ok, reasons, checks}}``.

    ``refs``: :func:`~face2anime.evaluation.evaluate.summary` of every reference in
    :data:`~face2anime.evaluation.references.REFERENCE_NAMES`; ``frames``: their per-image
    frames (paired by position with the sources). Rules:

    - ``char_rate``: every degenerate reference (noise, grey, source, source_blur,
      source_colour, shuffled_chars) scores <= 0.05 and real held-out characters >= 0.9.
    - ``realism`` (``inside_rate``): degenerate <= 0.10, real held-out characters >= 0.5.
    - ``kid_judge``: every degenerate reference is farther from the real characters than the
      real held-out characters are, by more than twice their subset std.
    - preservation metrics (``attr_preservation``, ``edge_ssim``, ``cam_overlap``, ``cycle_l1``):
      (a) the source and the blurred source both score better than noise and than grey, and
      the blurred source better than unrelated real characters (``real_chars``, paired with
      the sources by position), each with the paired 95% bootstrap CI of the per-image
      difference excluding 0; (b) noise, grey and shuffled characters get at most a quarter
      of the way from chance to the blurred source, where chance is the majority-class
      accuracy for attributes and the score of unrelated real characters otherwise.
    """
    out: dict[str, dict] = {}
    deg = [r for r in DEGENERATE if r in refs]

    def finish(metric: str, checks: list[str], reasons: list[str]) -> None:
        out[metric] = {"ok": not reasons, "reasons": reasons, "checks": checks}

    def has(key: str) -> bool:
        return all(key in refs.get(r, {}) for r in REFERENCE_NAMES)

    if has("char_rate"):
        checks: list[str] = []
        reasons: list[str] = []
        for r in deg:
            v = refs[r]["char_rate"]
            _rule(checks, reasons, v <= CHAR_RATE_MAX_DEGENERATE, f"{r} char_rate {v:.3f} <= {CHAR_RATE_MAX_DEGENERATE}")
        v = refs["real_chars"]["char_rate"]
        _rule(checks, reasons, v >= CHAR_RATE_MIN_REAL, f"real_chars char_rate {v:.3f} >= {CHAR_RATE_MIN_REAL}")
        finish("char_rate", checks, reasons)

    if has("realism"):
        checks, reasons = [], []
        for r in deg:
            v = refs[r]["realism"]["inside_rate"]
            _rule(checks, reasons, v <= REALISM_MAX_DEGENERATE,
                  f"{r} realism.inside_rate {v:.3f} <= {REALISM_MAX_DEGENERATE}")
        v = refs["real_chars"]["realism"]["inside_rate"]
        _rule(checks, reasons, v >= REALISM_MIN_REAL, f"real_chars realism.inside_rate {v:.3f} >= {REALISM_MIN_REAL}")
        finish("realism", checks, reasons)

    if has("kid_judge"):
        checks, reasons = [], []
        real = refs["real_chars"]["kid_judge"]
        if real is None:
            _rule(checks, reasons, False, "no real held-out characters apart from the KID reference set")
        else:
            for r in deg:
                k = refs[r]["kid_judge"]
                bound = real["mean"] + 2 * real["std"]
                _rule(checks, reasons, k is not None and k["mean"] > bound,
                      f"{r} kid_judge {k['mean'] if k else float('nan'):.3g} > real_chars {real['mean']:.3g} "
                      f"+ 2 std = {bound:.3g}")
        finish("kid_judge", checks, reasons)

    for metric, higher in PRESERVATION.items():
        col = PRESERVATION_COLUMN[metric]
        if (not has(metric) or refs["source"][metric] is None or metric == "attr_preservation" and attr_chance is None
                or any(col not in frames.get(r, pd.DataFrame()).columns for r in REFERENCE_NAMES)):
            continue
        checks, reasons = [], []
        sign = 1.0 if higher else -1.0
        pairs = [(good, bad) for good in ("source", "source_blur") for bad in ("noise", "grey")]
        for good, bad in pairs + [("source_blur", "real_chars")]:
            d = sign * (frames[good][col].to_numpy() - frames[bad][col].to_numpy())
            lo, hi, _ = bootstrap_ci(d, 2000, seed)
            what = "unrelated real characters" if bad == "real_chars" else bad
            _rule(checks, reasons, lo > 0, f"{good} better than {what} (paired difference {d.mean():+.3f}, "
                                           f"95% CI [{lo:+.3f}, {hi:+.3f}] excludes 0)")
        c = attr_chance if metric == "attr_preservation" else refs["real_chars"][metric]
        top = refs["source_blur"][metric]
        gap = sign * (top - c)
        for bad in ("noise", "grey", "shuffled_chars"):
            v = refs[bad][metric]
            limit = c + sign * NEAR_CHANCE_SHARE * max(gap, 0.0)
            _rule(checks, reasons, sign * (v - limit) <= 0,
                  f"{bad} {v:.3f} near or below chance {c:.3f} (within {NEAR_CHANCE_SHARE} of the way to "
                  f"source_blur {top:.3f}: {'<=' if higher else '>='} {limit:.3f})")
        finish(metric, checks, reasons)
    return out


# --------------------------------------------------------------------------- reading it back
def validity_key(metric: str) -> str | None:
    """Which ``valid`` entry of the eval JSON governs the (flattened, dotted) ``metric``
    (None: no rule applies)."""
    base = metric.split(".")[0]
    base = GOVERNED_BY.get(base, base)
    if base == "cycle_l1":
        return base if metric == CYCLE_L1_VALIDATED else None
    return base if base in VALIDATED else None


def metric_validity(metric: str, evals: dict[str, dict] | list[dict]) -> tuple[bool | None, list[str]]:
    """(ok, reasons) of ``metric`` over the eval JSONs given (``{label: eval}``; all must be ok);
    None = no rule. Reasons that differ between evals (cycle_l1 uses each method's own G_YX)
    are prefixed with their label."""
    key = validity_key(metric)
    if key is None:
        return None, []
    if isinstance(evals, list):
        evals = {str(i): e for i, e in enumerate(evals)}
    entries = {label: e.get("valid", {}).get(key) for label, e in evals.items()}
    if all(v is None for v in entries.values()):
        return None, []
    ok = all(v is not None and v.get("ok") for v in entries.values())
    per = {label: tuple(v.get("reasons", [])) if v else ("no validity entry",) for label, v in entries.items()}
    if len(set(per.values())) == 1:
        return ok, list(next(iter(per.values())))
    return ok, [f"{label}: {r}" for label, rs in per.items() for r in rs]
