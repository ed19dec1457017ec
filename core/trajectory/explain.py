"""Grad-CAMs of the time points of a trajectory, scaled by the score, as seed 003's Figure 4.

For a CT trajectory, each scan's signed COVID3D Grad-CAM H(x, y, z) in [-1, 1] (red H > 0,
blue H < 0) is multiplied by s(t) / max |s| over the patient's scans, so a scan the model
finds less COVID-like glows less, and a scan with s < 0 turns the map's sign around. For an
X-ray trajectory, each X-ray's Grad-CAM for COVID-19 in [0, 1] is multiplied by P(COVID-19)(t)
/ max P. One axial slice (a fraction of the way through each volume) is shown per time point.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.ct.preprocess import LUNG_WINDOW, prepare_volume, window_hu
from core.explain.attributions import GRAD_CAM, attribute
from core.explain.gradcam3d import covid3d_with_cam, resize_cam
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.preprocess import xray_to_input
from core.search.embeddings import read_stored_xray
from core.trajectory.curves import Point, Trajectory
from core.trajectory.scores import COVID_LABEL, CT_SCORE, read_stored_ct


@dataclass(frozen=True)
class TimepointMap:
    point: Point
    gray: np.ndarray  # (H, W) in [0, 1]: the slice at the lung window, or the X-ray at its own window
    heat: np.ndarray  # (H, W) in [-1, 1]: the map scaled by the score
    slice_index: int | None  # the axial slice shown (CT)


def _unscaled_ct(
    library: CaseLibrary, model: LoadedModel, point: Point, fraction: float
) -> tuple[np.ndarray, np.ndarray, int]:
    volume = read_stored_ct(library, point.image_id)
    _, grid = covid3d_with_cam(model, prepare_volume(volume, model.card.input), signed=True)
    z = int(round(min(max(fraction, 0.0), 1.0) * (volume.hu.shape[0] - 1)))
    cam = resize_cam(grid, volume.hu.shape)[z]
    return window_hu(volume.hu[z], *LUNG_WINDOW), cam, z


def _unscaled_xray(library: CaseLibrary, model: LoadedModel, point: Point) -> tuple[np.ndarray, np.ndarray]:
    image = read_stored_xray(library, point.image_id)
    x = xray_to_input(image, model.card.input)
    explanation, _ = attribute(model, x, model.card.labels.index(COVID_LABEL), method=GRAD_CAM, out_hw=image.shape)
    return image.windowed(), np.asarray(explanation.values, dtype=np.float32)


def scaled_maps(
    library: CaseLibrary, model: LoadedModel, trajectory: Trajectory, slice_fraction: float = 0.5
) -> list[TimepointMap]:
    """Each time point's map times its score over the patient's largest score magnitude."""
    if not trajectory.points:
        return []
    top = max(abs(p.value) for p in trajectory.points) or 1.0
    out = []
    for point in trajectory.points:
        if trajectory.score == CT_SCORE:
            gray, cam, z = _unscaled_ct(library, model, point, slice_fraction)
        else:
            gray, cam = _unscaled_xray(library, model, point)
            z = None
        heat = np.clip(cam * np.float32(point.value / top), -1.0, 1.0).astype(np.float32)
        out.append(TimepointMap(point, gray, heat, z))
    return out
