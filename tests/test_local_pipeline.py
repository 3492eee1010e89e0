"""Issue 6's 'must show': the whole pipeline on a user's own folders (source: local), with
images of mixed sizes and formats and no labels -> sane outputs with nulls where labels are
missing. Plus `face2anime convert` on a user photo."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import BIN, run
from faceutil import group_photo
from goldenutil import check_golden
from PIL import Image

from face2anime.data.synthetic.render import render_one


def make_folder(root: Path, domain: str, n: int) -> Path:
    """n face images of one domain with mixed sizes (48-80 px, some non-square) and formats."""
    folder = root / domain
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        arr, _, _ = render_one(11, domain, i, 64)
        img = Image.fromarray(arr)
        if i % 3 == 0:
            img = img.resize((80, 64))
        elif i % 3 == 1:
            img = img.resize((48, 48))
        fmt = ["png", "jpg", "webp"][i % 3]
        img.save(folder / f"{domain}_{i:03d}.{fmt}")
    (folder / "notes.txt").write_text("not an image")
    return folder


@pytest.mark.e2e
def test_local_folders_run_the_whole_chain(project: Path, tmp_path: Path) -> None:
    # the user's files go to inputs/local/{human,character} (the params' default paths)
    human = make_folder(project / "inputs" / "local", "human", 40)
    make_folder(project / "inputs" / "local", "character", 36)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["download"]["source"] = "local"
    params["download"]["local"].update(human_aligned=True, character_aligned=True)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "add", "-A"], project)
    run(["git", "commit", "-qm", "local data"], project)
    # up to the evaluations (compare and the survey run on local data as on synthetic: test_pipeline)
    res = run([str(BIN / "dvc"), "repro", "evaluate@baseline", "evaluate@proposed"], project)
    assert "Running stage 'evaluate@proposed'" in res.stdout
    assert "outside inputs/" not in res.stderr
    assert json.loads((project / "metrics/download.json").read_text())["outside_inputs"] == []

    # a new photo in the folder makes `download` (and so everything after it) stale
    status = [str(BIN / "dvc"), "status", "--json", "--with-deps", "evaluate@baseline", "evaluate@proposed"]
    assert json.loads(run(status, project).stdout or "{}") == {}
    (human / "human_new.png").write_bytes((human / "human_001.jpg").read_bytes())
    stale = json.loads(run(status, project).stdout)
    assert {k.split(":")[-1] for k in stale} == {"download"}, stale
    (human / "human_new.png").unlink()

    sel = json.loads((project / "metrics/select.json").read_text())
    assert sel["selected"] > 0 and sel["precision"] is None and sel["base_rate"] is None
    cam = json.loads((project / "metrics/cam.json").read_text())
    assert cam["boxes_from"].get("canonical", 0) + cam["no_parts_found"] == cam["n_human"]
    for method in ("baseline", "proposed"):
        ev = json.loads((project / f"metrics/eval/{method}.json").read_text())
        assert ev["attr_preservation"] is None
        assert 0 <= ev["char_rate"] <= 1 and ev["edge_ssim"] is not None and ev["kid_judge"]["mean"] is not None
    resized = json.loads((project / "metrics/resize.json").read_text())
    assert resized["written"]["human"]["test"] == 6
    check_golden(project, "e2e_local_metrics.json", {
        "metrics/classifier.json": ["test_accuracy"], "metrics/select.json": ["selected"],
        "metrics/eval/baseline.json": ["char_rate", "edge_ssim", "cycle_l1/human"],
        "metrics/eval/proposed.json": ["char_rate", "edge_ssim", "cycle_l1/human"]})

    # convert a user photo with the trained model (already a face crop -> --no-detect)
    photo = tmp_path / "me.jpg"
    Image.fromarray(render_one(5, "human", 1, 96)[0]).save(photo)
    out = tmp_path / "avatar.png"
    res = run([str(BIN / "face2anime"), "convert", str(photo), "-o", str(out), "--no-detect", "--size", "128"], project)
    # trained on the user's own folders: no "synthetic" warning (a collapse warning may appear at tiny params)
    assert "synthetic" not in res.stderr
    assert json.loads((project / "models/cyclegan/proposed/config.json").read_text())["training_data"] == {
        "source": "local", "photo_like": False, "crop": "align",
        "align": {"landmarks": 5, "scale": 0.8, "shift": 0.25, "faces": "all", "min_eye_px": 12}}
    with Image.open(out) as im:
        assert im.size == (128, 128)
    # a group photo: one avatar per face plus a sheet of faces over their avatars; the tiny
    # face (eye distance ~9 px < min_eye_px 12) is counted, not converted
    group = tmp_path / "group.jpg"
    group_photo().save(group, quality=95)
    res = run([str(BIN / "face2anime"), "convert", str(group), "-o", str(tmp_path / "group.png"), "--size", "64"],
              project)
    avatars = sorted(tmp_path.glob("group-*.png"))
    assert len(avatars) == 3, res.stdout
    assert "converted 3" in res.stdout
    with Image.open(tmp_path / "group.png") as sheet:
        assert sheet.size == (3 * 128, 2 * 128)
    # a photo without any face: clear one-line error, non-zero exit
    noise = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(noise)
    bad = run([str(BIN / "face2anime"), "convert", str(noise), "-o", str(tmp_path / "x.png")], project, check=False)
    assert bad.returncode == 2 and "no face found" in bad.stderr and "Traceback" not in bad.stderr
