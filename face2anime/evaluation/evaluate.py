"""Stage 8, ``evaluate@METHOD``: objective metrics of one method's translations.

``metrics/eval/METHOD.json``:

- ``char_rate``: share of translated human test images the *judge* calls "character"
  (the paper's table 4). The judge never guided training. ``char_rate_by_kind`` splits it
  into ``clean`` and ``hard`` sources (and per hard kind, with counts) where the data says
  which is which (synthetic data); null otherwise. The judge decides mostly from the eyes,
  so a translation whose eyes stay covered (or tiny) tends to read as "human".
- ``attr_preservation``: the attribute predictor (trained on real character images) on each
  translation vs the *source* human's ground-truth attributes: ``per_attribute``, ``mean``,
  ``chance`` (always guessing the sources' most common value), ``chance_uniform`` and the
  predictor's own accuracy on real character test images. null without labels.
- ``edge_ssim``: SSIM between Sobel edge maps of source and translation (label-free
  structure preservation, 1 = identical edges).
- ``cam_overlap``: soft IoU of the judge's Grad-CAM on the source (class human) and on the
  translation (class character): do the features live in the same places? (label-free)
- ``kid_judge``: unbiased KID (polynomial kernel) in the judge's penultimate feature space
  between translations and real character test images, mean and std over subsets. Not
  Inception KID: only comparable within this project and judge.
- ``cycle_l1``: mean |G_YX(G_XY(x)) - x| on test images, images in [-1, 1] as in the loss.
- ``train_seconds`` / ``train_images_per_s`` copied from the training summary.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from face2anime.cam.maps import compute_cams
from face2anime.core.io import write_json
from face2anime.core.params import Params, UserError
from face2anime.core.runtime import pick_device
from face2anime.data.images import (
    RESIZED_DIR,
    TRANSLATED_DIR,
    is_clean,
    load_images,
    load_split,
    read_manifest,
    to_model,
)
from face2anime.evaluation.measures import edge_ssim, kid, soft_iou
from face2anime.gan.inference import CYCLEGAN_DIR, Translator
from face2anime.models.attributes import (
    accuracy,
    chance,
    encode,
    load_attribute_model,
    predict_attributes,
)
from face2anime.models.classify import LABELS, MODEL_DIR, load_classifier, predict


@torch.no_grad()
def judge_features(judge: torch.nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Penultimate (pooled) judge features of uint8 images -> ``[N, d]`` float64."""
    return torch.cat([judge.features(to_model(x[i:i + batch_size]).to(device)).double().cpu()
                      for i in range(0, len(x), batch_size)])


def judged_character(judge: torch.nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    """Per uint8 image: does the judge call it "character"? (bool ``[N]``)"""
    return (predict(judge, x, device).argmax(1) == LABELS["character"]).numpy()


def char_rate_by_kind(is_char: np.ndarray, sources: pd.DataFrame) -> dict | None:
    """char_rate (from the per-image verdicts ``is_char``) of clean vs hard sources and per
    ``hard_kind`` (``{kind: {char_rate, n}}``); None when the manifest does not label clean/hard."""
    if "clean" not in sources.columns or sources["clean"].isna().any():
        return None
    clean = is_clean(sources["clean"]).to_numpy()
    kinds = sources["hard_kind"].fillna("").astype(str).to_numpy() if "hard_kind" in sources.columns \
        else np.where(clean, "", "hard")

    def group(mask: np.ndarray) -> dict:
        return {"char_rate": float(is_char[mask].mean()) if mask.any() else None, "n": int(mask.sum())}

    out = {"clean": group(clean), "hard": group(~clean)}
    out.update({k: group(kinds == k) for k in sorted(set(kinds[~clean])) if k})
    return out


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


def evaluate(method: str, params: Params, data_dir: Path = RESIZED_DIR, translated_dir: Path = TRANSLATED_DIR,
             cyclegan_dir: Path = CYCLEGAN_DIR, classifier_dir: Path = MODEL_DIR,
             attributes_dir: Path = Path("models/attributes"), metrics_dir: Path = Path("metrics")) -> dict:
    device = pick_device(params.str("device"))
    n_subsets = params.int("evaluate.kid_subsets", lo=1)
    subset_size = params.int("evaluate.kid_subset_size", lo=2)
    seed = params.int("seed", lo=0)
    manifest = read_manifest(data_dir)
    src_rows, src = load_split(manifest, "human", "test", data_dir)
    files = [translated_dir / method / f"{i}.png" for i in src_rows["id"]]
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise UserError(f"{len(missing)} translations missing in {translated_dir / method} "
                        f"(e.g. {missing[0].name}): run translate@{method} first")
    fake = load_images([str(f) for f in files], Path("."))
    _, real_char = load_split(manifest, "character", "test", data_dir)

    judge = load_classifier("judge", classifier_dir, device)
    is_char = judged_character(judge, fake, device)
    kid_mean, kid_std = kid(judge_features(judge, fake, device), judge_features(judge, real_char, device),
                            n_subsets, subset_size, seed)
    cam_src = compute_cams(judge, judge.cam_layer, src, LABELS["human"], require_signal=False)
    cam_fake = compute_cams(judge, judge.cam_layer, fake, LABELS["character"], require_signal=False)
    predictor_json = metrics_dir / "attributes.json"
    predictor_metrics = json.loads(predictor_json.read_text()) if predictor_json.is_file() else None

    translator = Translator.from_params(method, params, cyclegan_dir, classifier_dir)
    _, rec_h = translator.cycle(src, "human")
    _, rec_c = translator.cycle(real_char, "character")
    summary_path = metrics_dir / "cyclegan" / method / "metrics.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}

    m = {
        "method": method,
        "n_test": len(src),
        "char_rate": float(is_char.mean()),
        "char_rate_by_kind": char_rate_by_kind(is_char, src_rows),
        "attr_preservation": attr_preservation(fake, src_rows, attributes_dir, device, predictor_metrics),
        "edge_ssim": float(edge_ssim(src.float() / 255, fake.float() / 255).mean()),
        "cam_overlap": float(soft_iou(torch.from_numpy(cam_src), torch.from_numpy(cam_fake)).mean()),
        "kid_judge": {"mean": kid_mean, "std": kid_std},
        "cycle_l1": {"human": float((rec_h - to_model(src)).abs().mean()),
                     "character": float((rec_c - to_model(real_char)).abs().mean())},
        "train_seconds": summary.get("train_seconds"),
        "train_images_per_s": summary.get("images_per_s"),
    }
    write_json(metrics_dir / "eval" / f"{method}.json", m)
    ap = m["attr_preservation"]
    Console().print(
        f"evaluate[{method}]: char_rate {m['char_rate']:.3f}"
        + (f" (clean {by['clean']['char_rate'] or 0:.2f}, hard {by['hard']['char_rate'] or 0:.2f}), "
           if (by := m["char_rate_by_kind"]) else ", ")
        + (f"attr_preservation {ap['mean']:.3f} (chance {ap['chance']:.3f}), " if ap else "attr_preservation n/a, ")
        + f"edge_ssim {m['edge_ssim']:.3f}, cam_overlap {m['cam_overlap']:.3f}, "
          f"kid_judge {kid_mean:.4f}±{kid_std:.4f}, cycle_l1 {m['cycle_l1']['human']:.3f}")
    return m
