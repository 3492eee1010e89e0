"""The contact sheet of a generated data set: human rows above attribute-matched character rows.

Reads the images back from disk (any size; tiles are resized to the first one), so it only
needs the manifest's ``id``, ``domain``, ``file``, ``clean``, ``hard_kind`` and attribute
columns, not the renderer.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from face2anime.core.io import save_image
from face2anime.core.params import UserError
from face2anime.data.synthetic.attributes import ATTRIBUTES


def _match_character(hrow: pd.Series, chars: pd.DataFrame, used: set[str]) -> str | None:
    """The unused character whose attributes agree most with ``hrow`` (hair colour first)."""
    if chars.empty:
        return None
    score = sum((chars[a] == hrow[a]).astype(int) for a in ATTRIBUTES)
    score = score + 10 * (chars["hair_color"] == hrow["hair_color"]).astype(int)
    score = score - 100 * chars["id"].isin(used).astype(int)
    return str(chars.loc[score.idxmax(), "id"])


def contact_sheet(manifest: pd.DataFrame, root: Path, out_png: Path, per_row: int = 8) -> None:
    """One PNG grid: human rows (clean, then hard if any) and below them, in the same order,
    character rows whose images match the human above them (hair colour first, then as many
    other attributes as possible). Uses ``torchvision.utils.make_grid`` (padding 2)."""
    import torch
    from torchvision.utils import make_grid

    if per_row < 1:
        raise UserError(f"contact sheet per_row must be >= 1, got {per_row}")
    missing = {"id", "domain", "file", "clean", *ATTRIBUTES} - set(manifest.columns)
    if missing:
        raise UserError(f"manifest lacks columns: {', '.join(sorted(missing))}")
    humans = manifest[manifest["domain"] == "human"]
    chars = manifest[manifest["domain"] == "character"]
    if humans.empty and chars.empty:
        raise UserError("contact sheet: the manifest has no images")
    clean = humans[humans["clean"].astype(bool)].head(per_row)
    hard_df = humans[~humans["clean"].astype(bool)]
    order = hard_df.groupby("hard_kind", sort=True).cumcount()          # round-robin over kinds
    hard_rows = hard_df.assign(_o=order).sort_values(["_o", "hard_kind"], kind="stable").head(per_row)
    human_rows = [r for r in (clean, hard_rows) if not r.empty]
    used: set[str] = set()
    char_rows = []
    for hr in human_rows:
        ids = []
        for _, row in hr.iterrows():
            cid = _match_character(row, chars, used)
            if cid is not None:
                used.add(cid)
                ids.append(cid)
        char_rows.append(chars.set_index("id").loc[ids].reset_index() if ids else chars.head(0))
    if not human_rows:                           # characters only
        char_rows = [chars.head(per_row)]
    rows = human_rows + char_rows
    tiles: list[torch.Tensor] = []
    shape = None
    for r in rows:
        for f in r["file"]:
            with Image.open(Path(root) / f) as im:
                t = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
            if shape is None:
                shape = t.shape
            elif t.shape != shape:
                t = torch.nn.functional.interpolate(t[None].float(), size=shape[1:], mode="bilinear",
                                                    align_corners=False)[0].round().clamp(0, 255).byte()
            tiles.append(t)
        tiles.extend(torch.full(shape, 255, dtype=torch.uint8) for _ in range(per_row - len(r)))
    grid = make_grid(torch.stack(tiles).float() / 255.0, nrow=per_row, padding=2, pad_value=1.0)
    arr = (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
    save_image(Image.fromarray(arr), out_png)
