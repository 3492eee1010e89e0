"""Stage ``train_attributes``: the attribute predictor that grades preservation.

A multi-head CNN trained on *real character* train images with their ground-truth
attributes (hair colour, skin tone, ...), scored on the character test split. Evaluation
applies it to translated humans and compares with the *source* human's attributes.

Data without attribute labels (real sources) writes ``{"available": false}`` and no
model, so evaluation reports null for attribute preservation instead of a made-up number.

Outputs: ``models/attributes/`` (``model.pt``, ``config.json``) and ``metrics/attributes.json``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn
import torch.nn.functional as F
from rich.console import Console

from face2anime.core.paths import ATTRIBUTES_DIR, METRICS_DIR, RESIZED_DIR
from face2anime.core import timing
from face2anime.core.io import torch_load, torch_save, write_json
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile
from face2anime.core.runtime import (
    pick_device,
    resolve_precision,
    seed_everything,
)
from face2anime.data.images import load_split, read_manifest, to_model
from face2anime.models.classifiers import AttributePredictor
from face2anime.models.classify import fit

SEED_OFFSET = 104729


def attribute_columns(manifest: pd.DataFrame) -> dict[str, list[str]]:
    """Labelled attributes present for every character image: ``{name: sorted values}``."""
    from face2anime.data.synthetic.attributes import ATTRIBUTES

    chars = manifest[manifest["domain"] == "character"]
    out = {}
    for name, values in ATTRIBUTES.items():
        if name in chars.columns and chars[name].notna().all() and len(chars):
            out[name] = [str(v) for v in values]
    return out


def encode(frame: pd.DataFrame, attrs: dict[str, list[str]]) -> dict[str, torch.Tensor]:
    """Attribute strings -> class indices ``{name: LongTensor [N]}``; unknown values -> -1."""
    return {a: torch.tensor([vals.index(str(v)) if str(v) in vals else -1 for v in frame[a]], dtype=torch.long)
            for a, vals in attrs.items()}


def multi_ce(out: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(F.cross_entropy(out[a], target[a], ignore_index=-1) for a in out) / len(out)


@torch.no_grad()
def predict_attributes(model: nn.Module, x: torch.Tensor, device: torch.device,
                       batch_size: int = 256) -> dict[str, torch.Tensor]:
    """Predicted class index per attribute for uint8 images ``[N,3,S,S]``."""
    model.eval().to(device)
    preds: dict[str, list[torch.Tensor]] = {}
    for i in range(0, len(x), batch_size):
        for a, logits in model(to_model(x[i:i + batch_size]).to(device)).items():
            preds.setdefault(a, []).append(logits.argmax(1).cpu())
    return {a: torch.cat(v) for a, v in preds.items()}


def accuracy(pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, float]:
    """Per-attribute accuracy plus ``mean`` over attributes."""
    acc = {a: float((pred[a] == target[a]).float().mean()) for a in target}
    acc["mean"] = sum(acc.values()) / max(1, len(acc))
    return acc


def chance(target: dict[str, torch.Tensor], n_values: dict[str, int]) -> dict[str, dict[str, float]]:
    """Chance levels: ``majority`` (always guess the most common value of ``target``) and
    ``uniform`` (1/number of values), per attribute and ``mean``."""
    maj = {a: float(torch.bincount(t[t >= 0], minlength=n_values[a]).max() / max(1, len(t))) for a, t in target.items()}
    uni = {a: 1.0 / n_values[a] for a in target}
    maj["mean"] = sum(maj.values()) / max(1, len(target))
    uni["mean"] = sum(uni.values()) / max(1, len(target))
    return {"majority": maj, "uniform": uni}


def train_attributes(params: ParamsFile, data_dir: Path = RESIZED_DIR, model_dir: Path = ATTRIBUTES_DIR,
                     metrics_path: Path = METRICS_DIR / "attributes.json") -> dict:
    device = pick_device(params.device)
    cfg = params.attributes
    epochs, batch_size, lr, widths = cfg.epochs, cfg.batch_size, cfg.lr, list(cfg.widths)
    seed = params.seed + SEED_OFFSET
    manifest = read_manifest(data_dir)
    attrs = attribute_columns(manifest)
    model_dir.mkdir(parents=True, exist_ok=True)
    if not attrs:
        write_json(model_dir / "config.json", {"available": False})
        metrics = {"available": False, "reason": "no attribute labels in this data set"}
        write_json(metrics_path, metrics)
        Console().print("train_attributes: no attribute labels in this data; preservation will be null")
        return metrics
    seed_everything(seed)
    precision = params.precision
    rows, x = load_split(manifest, "character", "train", data_dir)
    trows, xt = load_split(manifest, "character", "test", data_dir)
    y, yt = encode(rows, attrs), encode(trows, attrs)
    n_values = {a: len(v) for a, v in attrs.items()}
    model = AttributePredictor(n_values, widths)
    t0 = time.perf_counter()
    fit(model, x, multi_ce, y, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device,
        desc="attributes", precision=precision)
    timing.note(train_seconds=round(time.perf_counter() - t0, 2))
    acc = accuracy(predict_attributes(model, xt, device), yt)
    torch_save(model.cpu().state_dict(), model_dir / "model.pt")
    write_json(model_dir / "config.json", {"available": True, "attributes": attrs, "widths": widths})
    metrics = {"available": True, "test_accuracy": acc, "chance": chance(yt, n_values),
               "n_train": len(x), "n_test": len(xt),
               "device": device.type, "precision": resolve_precision(device, precision)}
    write_json(metrics_path, metrics)
    Console().print(f"train_attributes: mean accuracy {acc['mean']:.3f} on {len(xt)} character test images "
                    f"(majority chance {metrics['chance']['majority']['mean']:.3f})")
    return metrics


def load_attribute_model(model_dir: Path = ATTRIBUTES_DIR, device: str | torch.device = "cpu"
                         ) -> tuple[nn.Module | None, dict[str, list[str]]]:
    """(model, attributes) or (None, {}) when the data had no labels."""
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path} not found: run the train_attributes stage first")
    cfg = json.loads(cfg_path.read_text())
    if not cfg.get("available"):
        return None, {}
    attrs = cfg["attributes"]
    model = AttributePredictor({a: len(v) for a, v in attrs.items()}, cfg["widths"])
    model.load_state_dict(torch_load(model_dir / "model.pt"))
    return model.to(device).eval(), attrs
