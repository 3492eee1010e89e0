"""Class activation maps with the grad-cam package: the supported methods, batched
computation of normalised maps, and downsampling to the CycleGAN's residual resolution."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from face2anime.data.images import to_model


def cam_methods() -> dict[str, type]:
    """Supported CAM methods of the grad-cam package, by param name."""
    from pytorch_grad_cam import (
        EigenCAM,
        GradCAM,
        GradCAMPlusPlus,
        HiResCAM,
        LayerCAM,
        XGradCAM,
    )

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus, "eigencam": EigenCAM,
            "layercam": LayerCAM, "xgradcam": XGradCAM, "hirescam": HiResCAM}


def compute_cams(model: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, target: int,
                 method: str = "gradcam", batch_size: int = 64, progress_desc: str | None = None) -> np.ndarray:
    """CAMs of uint8 images ``x [N,3,S,S]`` for class ``target``: float32 ``[N,S,S]`` in [0,1].

    Batched, one target per image; the CAM object is used as a context manager so its hooks
    are released. Each map is min-max normalised by grad-cam (an all-zero map stays 0).
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = cam_methods()[method]
    device = next(model.parameters()).device
    out = np.zeros((len(x), x.shape[2], x.shape[3]), dtype=np.float32)
    starts = range(0, len(x), batch_size)
    if progress_desc:
        starts = track(starts, description=progress_desc, transient=True)
    with cls(model=model, target_layers=[layer]) as cam:
        for i in starts:
            xb = to_model(x[i:i + batch_size]).to(device)
            out[i:i + len(xb)] = cam(input_tensor=xb, targets=[ClassifierOutputTarget(target)] * len(xb))
    return np.clip(out, 0.0, 1.0)


def downsample(cams: np.ndarray, size: int) -> np.ndarray:
    """Area-average CAMs ``[N,S,S]`` to ``[N,size,size]``, renormalised to max 1, float16."""
    t = F.adaptive_avg_pool2d(torch.from_numpy(cams)[:, None], size)[:, 0]
    peak = t.flatten(1).amax(1).clamp_min(1e-8)[:, None, None]
    return (t / peak).numpy().astype(np.float16)
