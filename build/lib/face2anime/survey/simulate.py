"""Simulated raters: fill a responses file with plausible answers, to try the report (and the
survey's plumbing) before asking people. Never evidence: their ids start with ``sim-`` and
the report says how many of its raters are simulated.

Model: rating = round(3 + method effect + rater bias + face effect + noise), clipped to 1-5.
Method ``k`` (in the key's order) gets ``k x (-0.3, +0.5, +0.5)`` on (natural, match,
atmosphere), the shape of the paper's finding, so the report has something to find.
Pairwise: the option with the higher latent match + atmosphere, "same" when close, 10%
skipped. Answers go through :class:`~face2anime.survey.responses.ResponseStore`, in each
rater's own item order, exactly as the server writes them.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from face2anime.survey.items import QUESTIONS, ItemSet
from face2anime.survey.report import SIMULATED_PREFIX, load_key
from face2anime.survey.responses import SAME, Answer, ResponseStore

EFFECT = {"natural": -0.3, "match": 0.5, "atmosphere": 0.5}


def simulate(n_raters: int, items_dir: Path, key_file: Path, responses: Path, seed: int = 0,
             share: float = 1.0) -> int:
    """Answer (the first ``share`` of) every item for ``n_raters`` simulated raters; returns rows written."""
    items = ItemSet(items_dir)
    key = load_key(key_file)
    methods = list(key["methods"])
    rng = np.random.default_rng(seed)
    faces = sorted({v["face"] for v in key["items"].values()})
    face_fx = dict(zip(faces, rng.normal(0, 0.4, len(faces))))
    store = ResponseStore(responses)
    written = 0
    for r in range(n_raters):
        rater = f"{SIMULATED_PREFIX}{random.Random(f'{seed}-{r}').getrandbits(48):012x}"
        bias = rng.normal(0, 0.5)
        order = items.order(rater)
        for item_id in order[: max(1, round(share * len(order)))]:
            meta = key["items"][item_id]
            if meta["kind"] == "rate":
                k = methods.index(meta["method"])
                ratings = {q: int(np.clip(round(3 + k * EFFECT[q] + bias + face_fx[meta["face"]]
                                                + rng.normal(0, 0.7)), 1, 5)) for q in QUESTIONS}
                ans = Answer(rater, item_id, ratings, "")
            else:
                latent = {tok: methods.index(m) * 1.0 + rng.normal(0, 0.8) for tok, m in meta["options"].items()}
                (t1, v1), (_, v2) = sorted(latent.items(), key=lambda kv: -kv[1])
                better = "" if rng.random() < 0.1 else (SAME if v1 - v2 < 0.3 else t1)
                ans = Answer(rater, item_id, {}, better)
            written += store.append(ans)
    return written
