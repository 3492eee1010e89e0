"""Class activation maps with the grad-cam package: the supported methods, batched
computation of normalised maps, and downsampling to the CycleGAN's residual resolution."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from face2anime.core.params import UserError
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
                 method: str = "gradcam", batch_size: int = 64, progress_desc: str | None = None,
                 require_signal: bool = True) -> np.ndarray:
    """CAMs of uint8 images ``x [N,3,S,S]`` for class ``target``: float32 ``[N,S,S]`` in [0,1].

    Batched, one target per image; the CAM object is used as a context manager so its hooks
    are released. Each map is min-max normalised by grad-cam (an all-zero map stays 0).

    grad-cam 1.5.7's ``BaseCAM.__exit__`` swallows an ``IndexError`` raised inside the
    ``with`` block (numpy's ``AxisError`` included), which would leave the pre-zeroed output
    silently all zero. So an error inside is re-raised as a :class:`UserError`, every batch
    is checked to have been filled, and (with ``require_signal``) maps that are all zero for
    every image are an error. Measurements on arbitrary images (a translation the classifier
    sees nothing in) pass ``require_signal=False``: there an all-zero map is a result.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cls = cam_methods()[method]
    device = next(model.parameters()).device
    out = np.zeros((len(x), x.shape[2], x.shape[3]), dtype=np.float32)
    starts = range(0, len(x), batch_size)
    if progress_desc:
        starts = track(starts, description=progress_desc, transient=True)
    filled = 0
    with cls(model=model, target_layers=[layer]) as cam:
        for i in starts:
            xb = to_model(x[i:i + batch_size]).to(device)
            try:
                maps = cam(input_tensor=xb, targets=[ClassifierOutputTarget(target)] * len(xb))
            except (IndexError, ValueError, RuntimeError) as e:  # IndexError: swallowed by grad-cam's __exit__
                raise UserError(f"{method} failed on the chosen target layer ({type(e).__name__}: {e}); "
                                "check cam.target_layer (it must be a convolutional feature map)") from None
            if maps.shape != (len(xb), x.shape[2], x.shape[3]):
                raise UserError(f"{method} returned maps of shape {maps.shape}, expected "
                                f"{(len(xb), x.shape[2], x.shape[3])}; check cam.target_layer")
            out[i:i + len(xb)] = maps
            filled += len(xb)
    if filled != len(x):
        raise UserError(f"{method}: only {filled} of {len(x)} CAMs were computed (the CAM library stopped "
                        "early); check cam.target_layer")
    if require_signal and len(x) and not np.any(out > 0):
        raise UserError(f"{method}: every CAM is all zero for class {target} on {len(x)} images; the target "
                        "layer has no usable gradient (check cam.target_layer and the classifier)")
    return np.clip(out, 0.0, 1.0)


def downsample(cams: np.ndarray, size: int) -> np.ndarray:
    """Area-average CAMs ``[N,S,S]`` to ``[N,size,size]``, renormalised to max 1, float16."""
    t = F.adaptive_avg_pool2d(torch.from_numpy(cams)[:, None], size)[:, 0]
    peak = t.flatten(1).amax(1).clamp_min(1e-8)[:, None, None]
    return (t / peak).numpy().astype(np.float16)
