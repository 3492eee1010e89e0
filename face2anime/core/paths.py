"""Every artifact path of the pipeline, in one place.

The library reads and writes these (relative to the project root, where DVC runs each stage);
``dvc.yaml`` names the same paths as deps and outs, and ``tests/test_paths.py`` checks that
each path here is a dep or an out of the stage that uses it and that every out in ``dvc.yaml``
is a path (or below a path) from here. Torch-free code (the ONNX runtime) imports it too.
"""
from __future__ import annotations

from pathlib import Path

INPUTS_DIR = Path("inputs")                      # your own data and weights (DVC deps)
RESPONSES_FILE = Path("inputs/survey/responses.csv")  # the survey's answers (in git)

RAW_DIR = Path("data/raw")                       # download
CONTACT_SHEET = Path("reports/contact_sheet.png")
RESIZED_DIR = Path("data/resized")               # resize
RESIZE_METRICS = Path("metrics/resize.json")
CLASSIFIER_DIR = Path("models/classifier")       # train_classifier: classifier.pt, judge.pt
CAM_DIR = Path("data/cam")                       # cam: human.npz, character.npz, scores.csv
CAM_SCORES = CAM_DIR / "scores.csv"
CAM_OVERLAY = Path("reports/cam_overlay.png")
SELECT_CSV = Path("data/select/selected.csv")    # select
ATTRIBUTES_DIR = Path("models/attributes")       # train_attributes
CYCLEGAN_DIR = Path("models/cyclegan")           # train_cyclegan@M writes models/cyclegan/M/
CYCLEGAN_LIVE = Path("metrics/cyclegan")         # its dvclive folder metrics/cyclegan/M/
CHECKPOINT_DIR = Path("checkpoints/cyclegan")    # resume checkpoints (not DVC outputs)
TRANSLATED_DIR = Path("data/translated")         # translate@M writes data/translated/M/
EVAL_DATA_DIR = Path("data/eval")                # evaluate@M: per-image features
SURVEY_DIR = Path("data/survey")                 # survey_items: items/ and the blind key.json
SURVEY_ITEMS = SURVEY_DIR / "items"
SURVEY_KEY = SURVEY_DIR / "key.json"
SURVEY_JSON = Path("metrics/survey.json")        # survey_report
SURVEY_MD = Path("reports/survey.md")
SURVEY_PNG = Path("reports/survey.png")
METRICS_DIR = Path("metrics")                    # small JSON/CSV metrics of every stage (in git)
STAGES_DIR = Path("metrics/stages")              # every stage's wall time, memory, fingerprint
REPORTS_DIR = Path("reports")                    # translate_M.png, compare.md/png, seeds.md (pictures, DVC outs)
ONNX_DIR = Path("models/onnx")                   # face2anime export writes models/onnx/M.onnx and M.json
