"""Artifact folders that torch-free code (the ONNX runtime path) needs as well as the trainers."""
from __future__ import annotations

from pathlib import Path

CYCLEGAN_DIR = Path("models/cyclegan")   # train_cyclegan@M writes models/cyclegan/M/
ONNX_DIR = Path("models/onnx")           # face2anime export writes models/onnx/M.onnx and M.json
