"""The survey's blind item set: what a rater sees and what the server may serve.

Written by the ``survey_items`` stage (:mod:`face2anime.survey.build`), read by the server
(:class:`ItemSet`). Item and image ids are blind tokens (16 hex characters), so no id
that reaches the server can contain a path character.
"""
from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

from face2anime.core.paths import SURVEY_DIR
from face2anime.core.params import UserError

ITEMS_DIR = SURVEY_DIR / "items"
KEY_FILE = SURVEY_DIR / "key.json"
ITEMS_FILE = "items.json"
TOKEN_LEN = 16
#: a blind token: what item and image ids must look like (no path characters possible)
TOKEN_RE = re.compile(rf"^[0-9a-f]{{{TOKEN_LEN}}}$")

#: The paper's three questions (1-5), by the column name used in the responses file.
QUESTIONS: dict[str, str] = {
    "natural": "Is the picture natural as a face?",
    "match": "Do the hairstyle and the face parts match the source photo?",
    "atmosphere": "Is the atmosphere of the source person kept?",
}
PAIR_QUESTION = "Which picture keeps the person better?"


class ItemSet:
    """The public item set as the server uses it (``items.json`` + images)."""

    def __init__(self, items_dir: Path):
        self.dir = Path(items_dir)
        path = self.dir / ITEMS_FILE
        if not path.is_file():
            raise UserError(f"{path} not found: run `dvc repro survey_items` first")
        try:
            data = json.loads(path.read_text())
            self.items: dict[str, dict[str, Any]] = {it["id"]: it for it in data["items"]}
            self.order_seed = int(data["order_seed"])
            self.questions: dict[str, str] = dict(data["questions"])
            self.pair_question = str(data["pair_question"])
        except (ValueError, KeyError, TypeError) as e:
            raise UserError(f"{path}: not a survey item file ({type(e).__name__}: {e})") from None
        for it in self.items.values():
            if not TOKEN_RE.match(it["id"]):
                raise UserError(f"{path}: bad item id {it['id']!r}")
        self.images = ({it["source"] for it in self.items.values()}
                       | {it["image"] for it in self.items.values() if it["kind"] == "rate"})

    def order(self, rater: str) -> list[str]:
        """The item ids in the order ``rater`` sees them: rate items shuffled, then pair items
        shuffled (a pairwise choice never comes before the ratings), seeded per rater."""
        rng = random.Random(f"{self.order_seed}-{rater}")
        rate = sorted(i for i, it in self.items.items() if it["kind"] == "rate")
        pair = sorted(i for i, it in self.items.items() if it["kind"] == "pair")
        rng.shuffle(rate)
        rng.shuffle(pair)
        return rate + pair

    def pair_sides(self, rater: str, item_id: str) -> list[str]:
        """A pair item's two options in the left/right order ``rater`` sees them (seeded)."""
        opts = list(self.items[item_id]["options"])
        random.Random(f"{self.order_seed}-{rater}-{item_id}").shuffle(opts)
        return opts

    def image_path(self, tok: str) -> Path | None:
        """The file of a served image, or None if ``tok`` is not one (no path ever built from input)."""
        if not TOKEN_RE.match(tok) or tok not in self.images:
            return None
        return self.dir / f"{tok}.png"
