"""From a read image to a model input tensor.

The same two steps serve training and inference, so a model always sees what it was trained
on: (1) window to [0, 1] and resize to ``size x size`` (:func:`to_unit_square`); (2) fill the
channels and normalise (:func:`normalise`). Resizing is to a square without padding, as the
seed paper's pipeline did; Grad-CAM maps are resized back to the image's own (H, W), so the
geometry of overlays stays exact.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.models.manifest import InputSpec
from core.types import XrayImage


def to_unit_square(unit: np.ndarray, size: int) -> torch.Tensor:
    """Resize a float (H, W) image in [0, 1] to a (1, 1, size, size) float32 tensor.

    Anti-aliased bilinear: downsampling a 2048 px radiograph without it aliases ribs and noise.
    """
    if unit.ndim != 2:
        raise ValueError(f"expected a 2D image, got shape {unit.shape}")
    t = torch.from_numpy(np.ascontiguousarray(unit, dtype=np.float32))[None, None]
    if t.shape[-2:] == (size, size):
        return t.clone()
    antialias = t.shape[-1] > size or t.shape[-2] > size
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    return out.clamp_(0.0, 1.0)


def normalise(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """(N, 1, S, S) in [0, 1] -> (N, C, S, S) normalised; grayscale is replicated to C channels."""
    if batch.ndim != 4 or batch.shape[1] != 1:
        raise ValueError(f"expected (N, 1, S, S), got {tuple(batch.shape)}")
    x = batch.expand(-1, spec.channels, -1, -1)
    mean = torch.tensor(spec.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - mean) / std


def xray_to_input(
    image: XrayImage,
    spec: InputSpec,
    window: tuple[float, float] | None = None,
) -> torch.Tensor:
    """An :class:`XrayImage` as a normalised (1, C, S, S) model input.

    ``window`` is (center, width) in the image's units; default the file's own. The models are
    trained on images shown at their own window, so prediction uses the file's window even
    when the viewer shows another one.
    """
    center, width = window if window is not None else (None, None)
    return normalise(to_unit_square(image.windowed(center, width), spec.size), spec)


def baseline_input(spec: InputSpec) -> torch.Tensor:
    """The all-black image (no X-ray attenuation) in normalised input space, (1, C, S, S)."""
    return normalise(torch.zeros(1, 1, spec.size, spec.size), spec)
