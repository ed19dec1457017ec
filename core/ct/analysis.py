"""The CT analysis the page and the CLI run: COVID3D on the volume, the slice model on every slice.

:func:`analyse_ct` takes a :class:`CtVolume` and up to two loaded models and returns a
:class:`CtAnalysis`:

- COVID3D (seed 003): the logit s of the whole volume (higher = more COVID-like; seed 003's
  s(t)), P(COVID+) = sigmoid(s / temperature), the card's threshold on that probability, and
  optionally the 3D Grad-CAM resampled to the volume's own (z, y, x) grid. Logit and map come
  from one forward pass;
- the slice model (seed 002): P(COVID-19) for every axial slice, and a patient-level score
  (:func:`patient_score`).

Models run on their :class:`LoadedModel`'s device, under their lock, and under
``torch.inference_mode`` except for the Grad-CAM pass, which needs gradients.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Final

import numpy as np
import torch

from core.ct.preprocess import crop_boxes, prepare_slices, prepare_volume, slices_read
from core.errors import DashboardError
from core.explain.attributions import GRAD_CAM, explain
from core.explain.gradcam3d import covid3d_with_cam, resize_cam
from core.models.registry import LoadedModel
from core.ood import OodVerdict
from core.types import CtVolume

#: Fraction of the slices, with the highest probabilities, that :func:`patient_score` averages.
PATIENT_TOP_FRACTION: Final = 0.1

#: Slices per forward pass of the slice model.
SLICE_BATCH: Final = 32

#: Label of the COVID-19 class in the slice model's output.
COVID_LABEL: Final = "COVID-19"


@dataclass(frozen=True, eq=False)
class CtAnalysis:
    """What the CT models say about one volume. Fields of a model not run are None.

    ``probability`` is P(COVID+) = sigmoid(``score`` / temperature); ``score`` is COVID3D's
    logit s; ``threshold`` applies to ``probability`` (COVID+ when ``probability >=
    threshold``). ``cam`` is float32 (z, y, x), the volume's own shape, in [0, 1] or, when
    ``cam_signed``, in [-1, 1]. ``slice_probabilities`` is float32 (z,), P(COVID-19) of each
    axial slice in z order; ``slices_read`` (bool (z,)) marks the slices the slice model reads
    (:func:`core.ct.preprocess.slices_read`: those through the lungs for a model trained on
    lung-slice images, else all); ``patient_score`` is :func:`patient_score` of the read
    slices, and ``slice_ood`` judges the read slices.
    ``timings_ms`` holds wall times of the steps, in milliseconds.
    """

    covid3d_id: str | None = None
    covid3d_version: str | None = None
    probability: float | None = None
    score: float | None = None
    threshold: float | None = None
    cam: np.ndarray | None = None
    cam_signed: bool = False
    slice_model_id: str | None = None
    slice_model_version: str | None = None
    slice_probabilities: np.ndarray | None = None
    slices_read: np.ndarray | None = None
    patient_score: float | None = None
    #: Whether the volume is like each model's training data (None: not run, or no reference).
    covid3d_ood: OodVerdict | None = None
    slice_ood: OodVerdict | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def covid_positive(self) -> bool | None:
        """COVID3D's decision at its threshold, or None without COVID3D."""
        if self.probability is None or self.threshold is None:
            return None
        return self.probability >= self.threshold


def patient_score(slice_probabilities: np.ndarray, top_fraction: float = PATIENT_TOP_FRACTION) -> float:
    """The slice model's patient-level score: the mean P(COVID-19) of the top slices.

    The ``k = ceil(top_fraction * z)`` slices (at least one) with the highest probabilities are
    averaged. Why this rule: seed 002's model is trained on COVID-19 slices *with visible
    infection* against normal slices, so it flags lesion slices, and COVID-19 lesions fill only
    part of a scan: a mean over all slices would dilute a focal pattern with the healthy
    slices, and the single maximum would let one noisy slice decide. The top 10% is a
    smoothed maximum that stays a probability in [0, 1] and ranks scans for a ROC curve. Seed
    002 itself reports per-slice results only and names no patient-level rule.
    """
    p = np.asarray(slice_probabilities, dtype=np.float64).ravel()
    if p.size == 0:
        raise ValueError("no slice probabilities to summarise")
    if not 0.0 < top_fraction <= 1.0:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    k = max(1, math.ceil(top_fraction * p.size))
    return float(np.partition(p, p.size - k)[p.size - k :].mean())


def _check_kind(model: LoadedModel, kind: str) -> None:
    if model.card.input_kind != kind:
        raise DashboardError(
            f"Model {model.card.id} takes '{model.card.input_kind}' inputs, not '{kind}': choose another model."
        )


def _sigmoid(v: float) -> float:
    if v >= 0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)  # no overflow for very negative logits
    return e / (1.0 + e)


def _elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _run_covid3d(
    volume: CtVolume, model: LoadedModel, cam: bool, signed: bool, timings: dict[str, float]
) -> tuple[float, np.ndarray | None]:
    start = time.perf_counter()
    x = prepare_volume(volume, model.card.input)
    timings["covid3d_prepare"] = _elapsed_ms(start)
    start = time.perf_counter()
    if not cam:
        with model.lock, torch.inference_mode():
            score = float(model.module(x.to(model.device))[0, 0])
        timings["covid3d_forward"] = _elapsed_ms(start)
        return score, None
    score, grid_map = covid3d_with_cam(model, x, signed=signed)
    timings["covid3d_forward_cam"] = _elapsed_ms(start)
    start = time.perf_counter()
    volume_map = resize_cam(grid_map, volume.hu.shape)
    timings["cam_resize"] = _elapsed_ms(start)
    return score, volume_map


def slice_probabilities(volume: CtVolume, model: LoadedModel, batch: int = SLICE_BATCH) -> np.ndarray:
    """P(COVID-19) of every axial slice, float32 (z,), softmax of logits / temperature."""
    card = model.card
    positive = _positive(model)
    x = prepare_slices(volume, card.input)
    out = []
    with model.lock, torch.inference_mode():
        for i in range(0, x.shape[0], batch):
            logits = model.module(x[i : i + batch].to(model.device)).float()
            out.append(torch.softmax(logits / card.temperature, dim=1)[:, positive].cpu())
    return torch.cat(out).numpy().astype(np.float32, copy=False)


def _positive(model: LoadedModel) -> int:
    labels = model.card.labels
    return labels.index(COVID_LABEL) if COVID_LABEL in labels else len(labels) - 1


def slice_cam(volume: CtVolume, model: LoadedModel, z: int) -> np.ndarray:
    """The slice model's Grad-CAM for COVID-19 on axial slice ``z``: float32 (y, x), the slice's
    own shape, in [0, 1] inside the region the model sees (:func:`core.ct.preprocess.crop_boxes`)
    and 0 outside it.

    Raises
    ------
    DashboardError
        A model that is not a slice model.
    """
    _check_kind(model, "ct-slice")
    hu = volume.hu
    if not 0 <= z < hu.shape[0]:
        raise ValueError(f"slice {z} is outside the volume's {hu.shape[0]} slices")
    y0, y1, x0, x1 = crop_boxes(hu, model.card.input)[z]
    x = prepare_slices(hu[z : z + 1], model.card.input, boxes=[(y0, y1, x0, x1)])
    out = np.zeros(hu.shape[1:], dtype=np.float32)
    out[y0:y1, x0:x1] = explain(model, x, _positive(model), GRAD_CAM, out_hw=(y1 - y0, x1 - x0)).values
    return out


def analyse_ct(
    volume: CtVolume,
    covid3d: LoadedModel | None,
    slice_model: LoadedModel | None,
    *,
    cam: bool = True,
    signed: bool = False,
) -> CtAnalysis:
    """Run COVID3D (with its 3D Grad-CAM when ``cam``) and the slice model on one volume.

    Parameters
    ----------
    volume
        The CT volume in HU.
    covid3d
        A model of input kind "ct-volume", or None to skip it.
    slice_model
        A model of input kind "ct-slice", or None to skip it.
    cam
        Compute COVID3D's 3D Grad-CAM (at the volume's shape).
    signed
        A signed map in [-1, 1] instead of the ReLU'd one in [0, 1].

    Raises
    ------
    DashboardError
        A model of the wrong input kind.
    """
    if covid3d is not None:
        _check_kind(covid3d, "ct-volume")
    if slice_model is not None:
        _check_kind(slice_model, "ct-slice")
    timings: dict[str, float] = {}
    total = time.perf_counter()
    result = CtAnalysis(timings_ms=timings)
    if covid3d is not None:
        card = covid3d.card
        score, volume_map = _run_covid3d(volume, covid3d, cam, signed, timings)
        start = time.perf_counter()
        result = replace(result, covid3d_ood=covid3d.ood_verdict(prepare_volume(volume, card.input), unit="volume"))
        timings["covid3d_ood"] = _elapsed_ms(start)
        result = replace(
            result,
            covid3d_id=card.id,
            covid3d_version=card.version,
            score=score,
            probability=_sigmoid(score / card.temperature),
            threshold=float(card.thresholds.get("covid", 0.5)),
            cam=volume_map,
            cam_signed=signed and volume_map is not None,
        )
    if slice_model is not None:
        start = time.perf_counter()
        probs = slice_probabilities(volume, slice_model)
        read = slices_read(volume, slice_model.card.input)
        timings["slice_model"] = _elapsed_ms(start)
        start = time.perf_counter()
        x = prepare_slices(volume, slice_model.card.input)[torch.from_numpy(read)]
        result = replace(result, slice_ood=slice_model.ood_verdict(x, unit="scan"))
        timings["slice_ood"] = _elapsed_ms(start)
        result = replace(
            result,
            slice_model_id=slice_model.card.id,
            slice_model_version=slice_model.card.version,
            slice_probabilities=probs,
            slices_read=read,
            patient_score=patient_score(probs[read]),
        )
    timings["total"] = _elapsed_ms(total)
    return result
