"""Stage 8, ``evaluate@METHOD``: objective metrics of one method's translations, the same
metrics on degenerate references (floors) and on the ideal translation (ceiling), and
whether each metric can tell them apart (validity).

This module runs it and writes the outputs; the metrics themselves are in
:mod:`~face2anime.evaluation.measures`, the floors in :mod:`~face2anime.evaluation.references`,
the ceiling in :mod:`~face2anime.evaluation.ceiling` and the validity rules in
:mod:`~face2anime.evaluation.validity`.

``metrics/eval/METHOD.json``:

- ``char_rate``: share of translated human test images the *judge* calls "character"
  (the paper's table 4). The judge never guided training. With a junk class
  (``judge.junk > 0``) the judge can also answer "neither": only "character" verdicts
  count, and ``junk_rate`` is the share called junk. ``char_rate_by_kind`` splits
  ``char_rate`` into ``clean`` and ``hard`` sources (and per hard kind, with counts) where
  the data says which is which (synthetic data); null otherwise.
- ``attr_preservation``: the attribute predictor (trained on real character images) on each
  translation vs the *source* human's ground-truth attributes: ``per_attribute``, ``mean``,
  ``chance`` (always guessing the sources' most common value), ``chance_uniform`` and the
  predictor's own accuracy on real character test images. null without labels.
- ``edge_ssim``: SSIM between Sobel edge maps of source and translation (label-free
  structure preservation, 1 = identical edges).
- ``flat_share``: the mean share of flat pixels (luma steps to the right and below under
  :data:`~face2anime.evaluation.measures.FLAT_STEP`): anime drawings are flat-shaded, so a
  translation far below the real characters' value (``references.real_chars.flat_share``) is
  covered in noise-like texture, whatever the judge says. A diagnostic, not a score: a grey
  image is all flat.
- ``cam_overlap``: soft IoU of the judge's Grad-CAM on the source (class human) and on the
  translation (class character): do the features live in the same places? (label-free)
- ``kid_judge``: unbiased KID (polynomial kernel) in the judge's penultimate feature space
  between translations and real character test images, mean and std over subsets. Not
  Inception KID: only comparable within this project and judge.
- ``realism``: per translation, the realism score of Kynkaenniemi et al. (2019) in the
  judge's feature space against real character train images: ``max_j r_j / |f - f_j|``
  over the half of the real images with the smallest k-NN radius ``r_j``
  (``evaluate.realism_k``), capped at :data:`~face2anime.evaluation.measures.REALISM_CAP`;
  ``mean`` and ``inside_rate`` (share with score >= 1: inside the real characters' k-NN
  manifold).
- ``cycle_l1``: mean |G_YX(G_XY(x)) - x| on test images, images in [-1, 1] as in the loss.
- ``training``: whether the training run was flagged as collapsed (and why), from its summary.
  Timings are not here: they change from run to run (``metrics/stages/``).
- ``inception``: plain Inception KID and FID (translations vs real character test images) and
  U-GAT-IT's two-domain ``mean_kid_ugatit``, in the FID Inception-v3's feature space: numbers
  comparable with papers, only with local weights (``evaluate.inception_weights``); otherwise
  ``{computed: false, reason}`` (:mod:`face2anime.evaluation.inception`).
- ``references``: the same metrics for degenerate "translations" of the same sources (the
  first ``evaluate.reference_count`` of them by id: floors need no large test set)
  (:func:`face2anime.evaluation.references.references`): ``noise``, ``grey``, ``source`` (no
  translation), ``source_blur``, ``source_colour``, ``shuffled_chars`` (real characters cut
  in a 4x4 grid and shuffled) and ``real_chars`` (real characters the judge never trained
  on; the positive control). Their ``cycle_l1`` is ``|G_YX(reference) - source|`` with this
  method's G_YX: how much of the source the way back recovers from that image.
- ``ceiling``: on synthetic data, each test human rendered as a character with the same
  attributes, hard kind, pose and colours (:func:`face2anime.data.synthetic.render.render_counterpart`),
  scored the same way; ``of_ceiling``: the method's value as a fraction of the ceiling's
  (for attributes: of the ceiling's margin above chance). null on other data
  (:mod:`face2anime.evaluation.ceiling`).
- ``valid``: ``{metric: {ok, reasons, checks}}`` from the rules in
  :func:`face2anime.evaluation.validity.validity`; compare names no winner on a metric that
  is not ok.

``metrics/eval/METHOD_images.csv``: one row per test image (id, clean, hard_kind, the
judge's verdict and class probabilities, each attribute's correctness, edge SSIM, flat share,
CAM overlap, cycle error, realism); compare pairs these rows by id.
``data/eval/METHOD.npz``: the judge features of the translations and of the real character
test images (for compare's paired KID test).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from face2anime.core.paths import ATTRIBUTES_DIR, CLASSIFIER_DIR, EVAL_DATA_DIR, METRICS_DIR, RESIZED_DIR, TRANSLATED_DIR
from face2anime.cam.maps import compute_cams
from face2anime.core.io import atomic_path, save_csv, write_json
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.core.runtime import pick_device
from face2anime.core.timing import fingerprint
from face2anime.data.images import load_images, load_split, read_manifest, to_model
from face2anime.evaluation.ceiling import ceiling_images, of_ceiling
from face2anime.evaluation.inception import check_input, inception_metrics
from face2anime.evaluation.measures import (
    char_rate_by_kind,
    cycle_l1,
    edge_ssim,
    flat_share,
    kid,
    realism_scores,
    soft_iou,
)
from face2anime.evaluation.references import REFERENCE_NAMES, references
from face2anime.evaluation.validity import validity
from face2anime.gan.inference import CYCLEGAN_DIR, Translator
from face2anime.models.attributes import (
    accuracy,
    chance,
    encode,
    load_attribute_model,
    predict_attributes,
)
from face2anime.models.classify import (
    CLASS_NAMES,
    LABELS,
    load_classifier,
    predict,
)


# --------------------------------------------------------------------------- the judge and the predictor
@torch.no_grad()
def judge_features(judge: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Penultimate (pooled) judge features of uint8 images -> ``[N, d]`` float64."""
    if not len(x):
        return torch.zeros((0, judge.n_features), dtype=torch.float64)
    return torch.cat([judge.features(to_model(x[i:i + batch_size]).to(device)).double().cpu()
                      for i in range(0, len(x), batch_size)])


def judge_probs(judge: torch.nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    """Per uint8 image: the judge's class probabilities ``[N, 2 or 3]`` (human, character[, junk])."""
    return torch.softmax(predict(judge, x, device), 1).numpy()


def judged_character(judge: torch.nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    """Per uint8 image: does the judge call it "character" (its most probable class)? (bool ``[N]``)"""
    return judge_probs(judge, x, device).argmax(1) == LABELS["character"]


def attr_preservation(fake: torch.Tensor, sources: pd.DataFrame, model_dir: Path, device: torch.device,
                      predictor_metrics: dict | None) -> dict | None:
    """Attribute accuracy of translations against their sources (None without labels)."""
    model, attrs = load_attribute_model(model_dir, device)
    if model is None:
        return None
    target = encode(sources, attrs)
    acc = accuracy(predict_attributes(model, fake, device), target)
    ch = chance(target, {a: len(v) for a, v in attrs.items()})
    out = {"mean": acc.pop("mean"), "chance": ch["majority"]["mean"], "chance_uniform": ch["uniform"]["mean"],
           "per_attribute": acc, "chance_per_attribute": {a: v for a, v in ch["majority"].items() if a != "mean"}}
    if predictor_metrics and predictor_metrics.get("available"):
        out["predictor_accuracy"] = predictor_metrics["test_accuracy"]["mean"]
    out["above_chance"] = out["mean"] - out["chance"]
    return out


# --------------------------------------------------------------------------- per-image scoring
@dataclass
class Scorer:
    """Scores any set of images as translations of the test sources ``src`` (same order)."""
    judge: torch.nn.Module
    device: torch.device
    src: torch.Tensor                      # uint8 [N,3,S,S] test humans
    cam_src: np.ndarray                    # judge CAM of the sources, class human
    attr_model: torch.nn.Module | None
    attr_target: dict[str, torch.Tensor] | None
    translator: Translator
    manifold: torch.Tensor                 # judge features of real character train images
    real_feats: torch.Tensor               # judge features of real character test images (KID)
    realism_k: int
    kid_subsets: int
    kid_subset_size: int
    seed: int

    def per_image(self, x: torch.Tensor, rec: torch.Tensor | None = None) -> tuple[pd.DataFrame, torch.Tensor]:
        """Per-image metrics of ``x`` (uint8, paired with the first ``len(x)`` sources) and its
        judge features. ``rec``: the cycle reconstruction, default ``G_YX(x)`` with the source's CAM."""
        n = len(x)
        src = self.src[:n]
        probs = judge_probs(self.judge, x, self.device)
        cols: dict[str, object] = {"verdict": [CLASS_NAMES[i] for i in probs.argmax(1)]}
        for i in range(probs.shape[1]):
            cols[f"p_{CLASS_NAMES[i]}"] = probs[:, i]
        cols["is_character"] = (probs.argmax(1) == LABELS["character"]).astype(int)
        if self.attr_model is not None and self.attr_target is not None:
            pred = predict_attributes(self.attr_model, x, self.device)
            correct = {a: (pred[a] == t[:n]).numpy().astype(int) for a, t in self.attr_target.items()}
            for a, c in correct.items():
                cols[f"attr_{a}"] = c
            cols["attr_mean"] = np.mean(np.stack(list(correct.values())), 0)
        cols["edge_ssim"] = edge_ssim(src.float() / 255, x.float() / 255).numpy()
        cols["flat_share"] = flat_share(x.float() / 255).numpy()
        cam = compute_cams(self.judge, self.judge.cam_layer, x, LABELS["character"], require_signal=False)
        cols["cam_overlap"] = soft_iou(torch.from_numpy(self.cam_src[:n]), torch.from_numpy(cam)).numpy()
        if rec is None:
            rec = self.translator.reconstruct(x, src)
        cols["cycle_l1"] = cycle_l1(rec, to_model(src)).numpy()
        feats = judge_features(self.judge, x, self.device)
        cols["realism"] = realism_scores(feats, self.manifold, self.realism_k)
        cols["realistic"] = (cols["realism"] >= 1.0).astype(int)
        return pd.DataFrame(cols), feats

    def kid(self, feats: torch.Tensor) -> dict | None:
        if len(feats) < 2 or len(self.real_feats) < 2:
            return None
        mean, std = kid(feats, self.real_feats, self.kid_subsets, self.kid_subset_size, self.seed)
        return {"mean": mean, "std": std}


def summary(df: pd.DataFrame, kid_value: dict | None) -> dict:
    """A reference's (or the ceiling's) headline numbers from its per-image frame."""
    out = {"n": len(df), "char_rate": float(df["is_character"].mean())}
    if "p_junk" in df.columns:
        out["junk_rate"] = float((df["verdict"] == "junk").mean())
    out["attr_preservation"] = float(df["attr_mean"].mean()) if "attr_mean" in df.columns else None
    out.update({"edge_ssim": float(df["edge_ssim"].mean()), "flat_share": float(df["flat_share"].mean()),
                "cam_overlap": float(df["cam_overlap"].mean()),
                "kid_judge": kid_value, "cycle_l1": float(df["cycle_l1"].mean()),
                "realism": {"mean": float(df["realism"].mean()), "inside_rate": float(df["realistic"].mean())}})
    return out


# --------------------------------------------------------------------------- the stage
def real_character_sets(manifest: pd.DataFrame, data_dir: Path, classifier_dir: Path
                        ) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(held-out real characters for the ``real_chars`` reference, the realism manifold's real
    characters, where the held-out ones come from). Held out = character train images the
    judge did not train on (its ``held_out_ids``); without any, the character test images."""
    rows, x = load_split(manifest, "character", "train", data_dir)
    cfg_path = classifier_dir / "judge.json"
    held = set(json.loads(cfg_path.read_text()).get("held_out_ids", [])) if cfg_path.is_file() else set()
    mask = rows["id"].astype(str).isin(held).to_numpy()
    if mask.any() and (~mask).sum() > 1:
        keep = torch.tensor(mask)
        return x[keep], x[~keep], "train_held_out_by_judge"
    _, xt = load_split(manifest, "character", "test", data_dir)
    return xt, x, "test"


def evaluate(method: str, params: ParamsFile, data_dir: Path = RESIZED_DIR, translated_dir: Path = TRANSLATED_DIR,
             cyclegan_dir: Path = CYCLEGAN_DIR, classifier_dir: Path = CLASSIFIER_DIR,
             attributes_dir: Path = ATTRIBUTES_DIR, metrics_dir: Path = METRICS_DIR,
             eval_data_dir: Path = EVAL_DATA_DIR) -> dict:
    device = pick_device(params.device)
    cfg = params.evaluate
    n_subsets, subset_size, realism_k = cfg.kid_subsets, cfg.kid_subset_size, cfg.realism_k
    reference_count, seed = cfg.reference_count, params.seed
    check_input(cfg, params.source)    # the Inception weights' DVC dep, before the long scoring
    manifest = read_manifest(data_dir)
    src_rows, src = load_split(manifest, "human", "test", data_dir)
    files = [translated_dir / method / f"{i}.png" for i in src_rows["id"]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{len(missing)} translations missing in {translated_dir / method} "
                        f"(e.g. {missing[0].name}): run translate@{method} first")
    fake = load_images([str(f) for f in files], Path("."))
    _, real_char = load_split(manifest, "character", "test", data_dir)
    held_chars, manifold_chars, held_from = real_character_sets(manifest, data_dir, classifier_dir)

    judge = load_classifier("judge", classifier_dir, device)
    predictor_json = metrics_dir / "attributes.json"
    predictor_metrics = json.loads(predictor_json.read_text()) if predictor_json.is_file() else None
    attr_model, attrs = load_attribute_model(attributes_dir, device)
    translator = Translator.from_params(method, params, cyclegan_dir, classifier_dir)
    scorer = Scorer(
        judge=judge, device=device, src=src,
        cam_src=compute_cams(judge, judge.cam_layer, src, LABELS["human"], require_signal=False),
        attr_model=attr_model, attr_target=encode(src_rows, attrs) if attr_model is not None else None,
        translator=translator, manifold=judge_features(judge, manifold_chars, device),
        real_feats=judge_features(judge, real_char, device), realism_k=realism_k,
        kid_subsets=n_subsets, kid_subset_size=subset_size, seed=seed)

    # the method
    _, rec_h = translator.cycle(src, "human")
    _, rec_c = translator.cycle(real_char, "character")
    table, fake_feats = scorer.per_image(fake, rec_h)
    is_char = table["is_character"].to_numpy().astype(bool)

    # floors and the ceiling, scored the same way
    ref_imgs = references(src[:reference_count], real_char, held_chars, seed)
    frames, refs = {}, {}
    for name in REFERENCE_NAMES:
        frames[name], feats = scorer.per_image(ref_imgs[name])
        kid_value = None if name == "real_chars" and held_from == "test" else scorer.kid(feats)
        refs[name] = summary(frames[name], kid_value)
    refs["real_chars"]["drawn_from"] = held_from
    ceil_imgs = ceiling_images(src_rows, params, src.shape[-1])
    ceil = None
    if ceil_imgs is not None:
        ceil_frame, ceil_feats = scorer.per_image(ceil_imgs)
        ceil = summary(ceil_frame, scorer.kid(ceil_feats))

    summary_path = metrics_dir / "cyclegan" / method / "metrics.json"
    train_summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    ap = attr_preservation(fake, src_rows, attributes_dir, device, predictor_metrics)
    m = {
        "method": method,
        "n_test": len(src),
        "char_rate": float(is_char.mean()),
        "char_rate_by_kind": char_rate_by_kind(is_char, src_rows),
        "attr_preservation": ap,
        "edge_ssim": float(table["edge_ssim"].mean()),
        "flat_share": float(table["flat_share"].mean()),
        "cam_overlap": float(table["cam_overlap"].mean()),
        "kid_judge": scorer.kid(fake_feats),
        "cycle_l1": {"human": float(table["cycle_l1"].mean()),
                     "character": float((rec_c - to_model(real_char)).abs().mean())},
        "realism": {"mean": float(table["realism"].mean()), "inside_rate": float(table["realistic"].mean()),
                    "k": realism_k},
        "machine": fingerprint(),   # what produced these numbers (bits differ between CPUs and thread counts)
        # compare names no winner from a run whose training was flagged as collapsed
        "training": {"collapsed": bool(train_summary.get("collapsed", False)),
                     "collapse_reasons": list(train_summary.get("collapse_reasons", []))},
    }
    if "p_junk" in table.columns:
        m["junk_rate"] = float((table["verdict"] == "junk").mean())
    m["references"] = refs
    m["ceiling"] = ceil
    m["of_ceiling"] = of_ceiling(m, ceil) if ceil is not None else None
    m["valid"] = validity(refs, frames, ap["chance"] if ap else None, seed)
    m["inception"] = inception_metrics(cfg, fake, real_char, src, seed, device)

    per_image = pd.concat([src_rows[["id"]].reset_index(drop=True),
                           pd.DataFrame({"clean": src_rows["clean"].to_numpy() if "clean" in src_rows else None,
                                         "hard_kind": src_rows["hard_kind"].fillna("").to_numpy()
                                         if "hard_kind" in src_rows else ""}),
                           table], axis=1)
    save_csv(per_image.round(6), metrics_dir / "eval" / f"{method}_images.csv")
    eval_data_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(eval_data_dir / f"{method}.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, ids=src_rows["id"].to_numpy().astype(str), fake=fake_feats.numpy(),
                     real=scorer.real_feats.numpy())
    write_json(metrics_dir / "eval" / f"{method}.json", m)
    print_summary(m)
    return m


def print_summary(m: dict) -> None:
    ap, by, k = m["attr_preservation"], m["char_rate_by_kind"], m["kid_judge"]
    con = Console()
    con.print(
        f"evaluate[{m['method']}]: char_rate {m['char_rate']:.3f}"
        + (f" (clean {by['clean']['char_rate'] or 0:.2f}, hard {by['hard']['char_rate'] or 0:.2f}), " if by else ", ")
        + (f"attr_preservation {ap['mean']:.3f} (chance {ap['chance']:.3f}), " if ap else "attr_preservation n/a, ")
        + f"edge_ssim {m['edge_ssim']:.3f}, flat_share {m['flat_share']:.3f} "
        + f"(real characters {m['references']['real_chars']['flat_share']:.3f}), cam_overlap {m['cam_overlap']:.3f}, "
        + (f"kid_judge {k['mean']:.4f}±{k['std']:.4f}, " if k else "kid_judge n/a, ")
        + f"cycle_l1 {m['cycle_l1']['human']:.3f}, realism inside {m['realism']['inside_rate']:.2f}", highlight=False)
    refs = m["references"]
    con.print("  floors (char_rate): " + ", ".join(f"{r} {v['char_rate']:.2f}" for r, v in refs.items())
              + (f"; ceiling {m['ceiling']['char_rate']:.2f}" if m["ceiling"] else ""), highlight=False)
    inc = m["inception"]
    con.print("  inception: " + (f"kid x100 {inc['kid']['x100']:.2f}, fid {inc['fid']['value']:.1f}, mean_kid_ugatit "
                                 f"x100 {inc['mean_kid_ugatit']['x100']:.2f} ({inc['kid']['n_fake']} translations)"
                                 if inc["computed"] else "not computed (evaluate.inception_weights is off)"),
              highlight=False)
    bad = [k for k, v in m["valid"].items() if not v["ok"]]
    con.print("  valid: " + ", ".join(f"{k} {'ok' if v['ok'] else 'NO'}" for k, v in m["valid"].items())
              + ("  (reasons in valid.*.reasons)" if bad else ""), highlight=False)
