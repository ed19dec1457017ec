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
import torch

from core.ct.preprocess import LUNG_WINDOW, prepare_volume, window_hu
from core.errors import InvalidInputError
from core.explain.attributions import GRAD_CAM, attribute
from core.explain.gradcam3d import cam_slice, covid3d_with_cam
from core.library.records import PatientSummary
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.ood import OodVerdict
from core.preprocess import xray_to_input
from core.search.embeddings import read_stored_xray
from core.trajectory.curves import Point, Trajectory, curve_features
from core.trajectory.scores import COVID_LABEL, CT_SCORE, probability, read_stored_ct, score_name, score_version
from core.types import CtVolume, XrayImage


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
    cam = cam_slice(grid, volume.hu.shape, z)
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


@dataclass(frozen=True)
class UploadedScan:
    """A scan the user uploaded, with the day it was taken (days since admission)."""

    name: str
    day: float
    image: XrayImage | None = None  # an X-ray
    volume: CtVolume | None = None  # or a CT volume


def upload_verdicts(model: LoadedModel, scans: list[UploadedScan]) -> list[OodVerdict | None]:
    """Whether each uploaded scan is like ``model``'s training data (None: no reference), in order."""
    out: list[OodVerdict | None] = []
    for scan in scans:
        if scan.volume is not None:
            out.append(model.ood_verdict(prepare_volume(scan.volume, model.card.input), unit="volume"))
        elif scan.image is not None:
            out.append(model.ood_verdict(xray_to_input(scan.image, model.card.input)))
        else:
            out.append(None)
    return out


@dataclass(frozen=True)
class _Analysed:
    value: float
    grid: np.ndarray  # COVID3D's signed map on its grid, or an X-ray's Grad-CAM at the image's shape


def _analyse_upload(model: LoadedModel, scan: UploadedScan) -> _Analysed:
    if score_name(model) == CT_SCORE:
        if scan.volume is None:
            raise InvalidInputError(f"{scan.name} is not a CT volume; {model.id} scores CT series.")
        value, grid = covid3d_with_cam(model, prepare_volume(scan.volume, model.card.input), signed=True)
        return _Analysed(value, grid)
    if scan.image is None:
        raise InvalidInputError(f"{scan.name} is not an X-ray; {model.id} scores X-rays.")
    x = xray_to_input(scan.image, model.card.input)
    explanation, logits = attribute(
        model, x, model.card.labels.index(COVID_LABEL), method=GRAD_CAM, out_hw=scan.image.shape
    )
    probs = torch.softmax(logits.float() / model.card.temperature, dim=0)
    return _Analysed(float(probs[model.card.labels.index(COVID_LABEL)]), np.asarray(explanation.values, np.float32))


@dataclass(frozen=True)
class UploadedTrajectory:
    trajectory: Trajectory
    scans: tuple[UploadedScan, ...]  # in the order of trajectory.points
    analysed: tuple[_Analysed, ...]

    def maps(self, slice_fraction: float = 0.5) -> list[TimepointMap]:
        """The strip of :func:`scaled_maps` for these in-memory scans."""
        top = max((abs(p.value) for p in self.trajectory.points), default=1.0) or 1.0
        out = []
        for point, scan, done in zip(self.trajectory.points, self.scans, self.analysed, strict=True):
            if scan.volume is not None:
                hu = scan.volume.hu
                z = int(round(min(max(slice_fraction, 0.0), 1.0) * (hu.shape[0] - 1)))
                gray, cam = window_hu(hu[z], *LUNG_WINDOW), cam_slice(done.grid, hu.shape, z)
            else:
                assert scan.image is not None
                gray, cam, z = scan.image.windowed(), done.grid, None
            heat = np.clip(cam * np.float32(point.value / top), -1.0, 1.0).astype(np.float32)
            out.append(TimepointMap(point, gray, heat, z))
        return out


def upload_trajectory(model: LoadedModel, scans: list[UploadedScan]) -> UploadedTrajectory:
    """s(t) (or P(COVID-19)(t)) of scans held in memory; nothing is stored. Each scan is read
    once: its score and its Grad-CAM come from one forward pass."""
    ordered = sorted(scans, key=lambda s: s.day)
    analysed = [_analyse_upload(model, s) for s in ordered]
    points = tuple(
        Point(
            study_id=i,
            image_id=i,
            day=float(s.day),
            onset_day=None,
            admission_day=float(s.day),
            value=a.value,
            probability=probability(model, a.value),
            note=s.name,
        )
        for i, (s, a) in enumerate(zip(ordered, analysed, strict=True))
    )
    summary = PatientSummary(
        pseudonym="Your uploads",
        source="upload",
        label=None,
        sex=None,
        age_years=None,
        outcome=None,
        survival=None,
        length_of_stay_days=None,
        went_icu=None,
        intubated=None,
        n_studies=len(points),
        n_xray=sum(s.image is not None for s in ordered),
        n_ct=sum(s.volume is not None for s in ordered),
    )
    trajectory = Trajectory(
        patient=summary,
        model_id=model.id,
        model_version=score_version(model),
        score=score_name(model),
        axis="admission",
        points=points,
        features=curve_features([p.day for p in points], [p.value for p in points]),
    )
    return UploadedTrajectory(trajectory, tuple(ordered), tuple(analysed))
