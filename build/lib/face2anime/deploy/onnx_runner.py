"""Photo -> anime with an exported ONNX model: onnxruntime, numpy and Pillow only (no PyTorch).

``models/onnx/METHOD.onnx`` holds the whole photo-to-anime computation of a method (its
generator and, for attention methods, the guiding classifier's closed-form Grad-CAM; see
:mod:`face2anime.gan.onnx_export`); ``METHOD.json`` holds its size, framing and warnings.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from face2anime.core.params import UserError


class OnnxTranslator:
    """The exported human -> character generator of one method.

    Args:
        onnx_dir: folder with ``METHOD.onnx`` and ``METHOD.json`` (``face2anime export``).
        method: the method's name.
        threads: onnxruntime intra-op threads (0: its default, all cores).
    """

    def __init__(self, onnx_dir: Path, method: str, threads: int = 0):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("the ONNX backend needs onnxruntime (pip install onnxruntime)") from None
        onnx_dir = Path(onnx_dir)
        model, meta = onnx_dir / f"{method}.onnx", onnx_dir / f"{method}.json"
        if not model.is_file() or not meta.is_file():
            raise UserError(f"no exported model for method '{method}' in {onnx_dir}: run `face2anime export` first")
        self.meta: dict[str, Any] = json.loads(meta.read_text())
        self.size = int(self.meta["size"])
        self.config = {"training_data": self.meta.get("training_data")}   # what FaceCropper.for_model reads
        self.warnings: list[str] = list(self.meta.get("warnings", []))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])

    def to_character(self, photos: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """uint8 ``[N, 3, S, S]`` face crops -> float32 ``[N, 3, S, S]`` characters in [-1, 1]."""
        if photos.dtype != np.uint8 or photos.ndim != 4 or photos.shape[1:] != (3, self.size, self.size):
            raise UserError(f"expected uint8 [N, 3, {self.size}, {self.size}] face crops, got "
                            f"{photos.dtype} {list(photos.shape)}")
        outs = [self.session.run(["character"], {"photo": np.ascontiguousarray(photos[i:i + batch_size])})[0]
                for i in range(0, len(photos), batch_size)]
        return np.concatenate(outs).astype(np.float32)


def to_uint8_images(x: np.ndarray) -> np.ndarray:
    """float ``[N, 3, S, S]`` in [-1, 1] -> uint8 ``[N, S, S, 3]`` (HWC, for Pillow)."""
    return np.clip(np.rint((x + 1.0) * 127.5), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
