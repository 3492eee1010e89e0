"""Stage ``survey_items``: blind rating items for people, the paper's subjective evaluation.

The same ``survey.faces`` held-out human test faces (paper: 5) are taken for every method,
so each rater's answers are paired across methods. Outputs:

* ``data/survey/items/`` -- what ``face2anime serve`` serves and nothing else:
  ``items.json`` and one PNG per source face and per translation, every file named by a
  blind token. A *rate* item shows a source face and one translation (the paper's three
  1-5 questions); a *pair* item (``survey.pairwise``) shows a source face and two methods'
  translations of it ("which keeps the person better?").
* ``data/survey/key.json`` -- blind token -> method and test face id. The server never
  reads it; only ``survey_report`` (and the simulated raters) do.

Tokens are a hash of the seed, the method, the face id and the image bytes: deterministic,
and new whenever an image changes, so answers to an older item set can never be attributed
to a newer image (the report counts them as stale instead). The blinding hides the method
from a rater looking at the page, not from someone with the repository and the data.
"""
from __future__ import annotations

import hashlib
import random
import shutil
from itertools import combinations
from pathlib import Path
from typing import Any

from rich.console import Console

from face2anime.core.paths import RESIZED_DIR, TRANSLATED_DIR
from face2anime.core.io import rel, write_json
from face2anime.core.params import UserError
from face2anime.core.schema import ParamsFile, method_names
from face2anime.survey.items import (
    ITEMS_DIR,
    ITEMS_FILE,
    KEY_FILE,
    PAIR_QUESTION,
    QUESTIONS,
    TOKEN_LEN,
)


def token(*parts: str | bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "big") + b)
    return h.hexdigest()[:TOKEN_LEN]


def pick_faces(ids: list[str], n: int, seed: int) -> list[str]:
    """``n`` of the test face ids, a seeded random choice (sorted for a stable listing)."""
    return sorted(random.Random(f"survey-faces-{seed}").sample(sorted(ids), n))


def build_items(methods: list[str], faces: int, pairwise: bool, seed: int, sources: dict[str, Path],
                translated_root: Path, out_dir: Path = ITEMS_DIR, key_file: Path = KEY_FILE) -> dict[str, Any]:
    """Write the blind item set (``out_dir``) and its key (``key_file``); returns the key.

    ``sources``: human test id -> its resized PNG; ``translated_root/METHOD/ID.png`` are the
    translations. Only faces translated by every method are eligible.
    """
    if not methods:
        raise UserError("survey_items: no methods in cyclegan.methods")
    if faces < 1:
        raise UserError(f"params.yaml: param 'survey.faces' must be at least 1, got {faces}")
    eligible = set(sources)
    for m in methods:
        d = translated_root / m
        if not d.is_dir():
            raise UserError(f"{d} not found: run the translate stage first (dvc repro translate@{m})")
        eligible &= {p.stem for p in d.glob("*.png")}
    if len(eligible) < faces:
        raise UserError(f"survey_items: survey.faces = {faces} but only {len(eligible)} human test faces are "
                        f"translated by every method ({', '.join(methods)}); lower survey.faces or raise "
                        "resize.test_count")
    chosen = pick_faces(sorted(eligible), faces, seed)

    staging = out_dir.parent / f".{out_dir.name}.incoming"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    items: list[dict[str, Any]] = []
    key: dict[str, Any] = {"seed": seed, "methods": methods, "faces": {}, "items": {}}
    for face in chosen:
        src = sources[face].read_bytes()
        face_tok = token(str(seed), "face", face, src)
        (staging / f"{face_tok}.png").write_bytes(src)
        key["faces"][face_tok] = face
        by_method: dict[str, str] = {}
        for m in methods:
            img = (translated_root / m / f"{face}.png").read_bytes()
            tok = token(str(seed), "rate", m, face, img)
            (staging / f"{tok}.png").write_bytes(img)
            by_method[m] = tok
            items.append({"id": tok, "kind": "rate", "source": face_tok, "image": tok})
            key["items"][tok] = {"kind": "rate", "method": m, "face": face}
        if pairwise:
            for a, b in combinations(methods, 2):
                tok = token(str(seed), "pair", face, by_method[a], by_method[b])
                items.append({"id": tok, "kind": "pair", "source": face_tok,
                              "options": sorted([by_method[a], by_method[b]])})
                key["items"][tok] = {"kind": "pair", "methods": [a, b], "face": face,
                                     "options": {by_method[a]: a, by_method[b]: b}}
    # the public listing: sorted by token, so its order says nothing about the method
    items.sort(key=lambda it: (it["kind"] != "rate", it["id"]))
    if len({it["id"] for it in items}) != len(items):
        raise UserError("survey_items: two items got the same token (identical images?)")
    write_json(staging / ITEMS_FILE, {"version": 1, "order_seed": seed, "questions": QUESTIONS,
                                      "pair_question": PAIR_QUESTION, "items": items})
    shutil.rmtree(out_dir, ignore_errors=True)
    staging.rename(out_dir)
    write_json(key_file, key)
    return key


def run_survey_items(params: ParamsFile, data_dir: Path = RESIZED_DIR,
                     translated_root: Path = TRANSLATED_DIR, out_dir: Path = ITEMS_DIR,
                     key_file: Path = KEY_FILE) -> dict[str, Any]:
    from face2anime.data.images import read_manifest, rows

    seed, methods = params.seed, method_names(params)
    faces, pairwise = params.survey.faces, params.survey.pairwise
    test = rows(read_manifest(data_dir), "human", "test")
    sources = {str(i): data_dir / f for i, f in zip(test["id"], test["file"])}
    key = build_items(methods, faces, pairwise, seed, sources, translated_root, out_dir, key_file)
    n_rate = sum(v["kind"] == "rate" for v in key["items"].values())
    Console().print(f"survey_items: {faces} faces x {len(methods)} methods = {n_rate} rating items, "
                    f"{len(key['items']) - n_rate} pair items -> {rel(out_dir)}; key {rel(key_file)} (never served)")
    return key


