"""3D Grad-CAM of COVID3D (seed 003, Figures 1 and 4), with :class:`core.explain.explainer.Explainer`.

For the logit s and the feature maps A_k of the Grad-CAM layer (``features.mixed_5c``),
H = sum_k mean(ds/dA_k) A_k, a map on the layer's coarse (d, h, w) grid, upsampled trilinearly
to the model input grid (D, H, W) and scaled:

- unsigned (the default): ReLU(H) / max ReLU(H), in [0, 1]: where the evidence for COVID+ is;
- signed: H / max |H|, in [-1, 1]: H > 0 is evidence for COVID+ (drawn red in seed 003's
  Figure 4), H < 0 evidence against (blue).

An all-zero map stays zero. One forward pass serves both the logit and the map (the backward
pass stops at the layer), so :func:`covid3d_with_cam` costs about one forward pass. The
explainer holds a registered model's lock, and gives back hooks, train/eval mode and
``requires_grad`` as they were; the input is not modified.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.explain.explainer import Explainer
from core.models.registry import LoadedModel


def covid3d_with_cam(
    model: LoadedModel | nn.Module,
    x: torch.Tensor,
    *,
    signed: bool = False,
    layer_name: str | None = None,
    target: int = 0,
) -> tuple[float, np.ndarray]:
    """The logit ``target`` of one input and its 3D Grad-CAM, from one forward pass.

    Parameters
    ----------
    model
        A registered model (its lock is held) or a bare module; run on its device.
    x
        One prepared input (1, C, D, H, W) (:func:`core.ct.preprocess.prepare_volume`).
    signed
        False: ReLU'd map in [0, 1]; True: signed map in [-1, 1] (see the module doc).
    layer_name
        Dotted path of the Grad-CAM layer; default the card's ``gradcam_layer`` (for a
        :class:`LoadedModel`) or the module's ``gradcam_layer`` attribute.
    target
        Output index to explain; 0 is COVID3D's single logit s.

    Returns
    -------
    (float, np.ndarray)
        The logit, and the map float32 (D, H, W) on the input grid.
    """
    if x.ndim != 5 or x.shape[0] != 1:
        raise ValueError(f"3D Grad-CAM takes one input (1, C, D, H, W), got {tuple(x.shape)}")
    attribution = Explainer(model, layer_name).attribute(x, target, signed=signed)
    return float(attribution.outputs[0, target]), attribution.resampled(tuple(x.shape[-3:]), signed=signed)


def gradcam_3d(
    model: LoadedModel | nn.Module,
    layer_name: str,
    x: torch.Tensor,
    *,
    signed: bool = False,
    target: int = 0,
) -> np.ndarray:
    """3D Grad-CAM of ``x`` (1, C, D, H, W) at ``layer_name``: float32 (D, H, W), in [0, 1]
    (unsigned) or [-1, 1] (signed). See :func:`covid3d_with_cam`, which also returns the logit."""
    return covid3d_with_cam(model, x, signed=signed, layer_name=layer_name, target=target)[1]


def resize_cam(cam: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A map on the model's grid (D, H, W) resampled trilinearly to ``shape`` (z, y, x).

    The inverse of :func:`core.ct.preprocess.prepare_volume`'s mapping (both use
    ``align_corners=False``), so the map lines up with the volume's own voxels in the viewer.
    Values stay within the input's range (trilinear weights are convex). float32.
    """
    if cam.ndim != 3 or len(shape) != 3:
        raise ValueError(f"resize_cam maps a (D, H, W) map to a (z, y, x) shape, got {cam.shape} -> {shape}")
    shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    if tuple(cam.shape) == shape:
        return cam.astype(np.float32, copy=True)
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=shape, mode="trilinear", align_corners=False)[0, 0]
    return out.numpy()


def cam_slice(cam: np.ndarray, shape: tuple[int, int, int], z: int) -> np.ndarray:
    """Axial slice ``z`` of ``resize_cam(cam, shape)`` without resampling the whole volume.

    Trilinear interpolation (``align_corners=False``) is separable: resample along z on the
    coarse grid, take the slice, then bilinear in-plane. A 300 x 512 x 512 series needs one
    512 x 512 slice, not 300 MB. float32 (y, x).
    """
    if cam.ndim != 3 or len(shape) != 3 or not 0 <= z < shape[0]:
        raise ValueError(f"cam_slice needs a (D, H, W) map and a slice of {shape}, got {cam.shape}, z = {z}")
    t = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    along_z = F.interpolate(t, size=(int(shape[0]), cam.shape[1], cam.shape[2]), mode="trilinear", align_corners=False)
    plane = along_z[:, :, z]
    out = F.interpolate(plane, size=(int(shape[1]), int(shape[2])), mode="bilinear", align_corners=False)[0, 0]
    return out.numpy()


def max_intensity_projection(cam: np.ndarray, axis: int) -> np.ndarray:
    """Project a 3D map along ``axis``: on each ray, the value of largest magnitude.

    For a map in [0, 1] this is the ordinary maximum; for a signed map, a strong negative value
    is not hidden behind a weak positive one, and the sign is kept.
    """
    if cam.ndim != 3:
        raise ValueError(f"expected a 3D map, got shape {cam.shape}")
    strongest = np.expand_dims(np.abs(cam).argmax(axis=axis), axis)
    return np.take_along_axis(cam, strongest, axis).squeeze(axis)
