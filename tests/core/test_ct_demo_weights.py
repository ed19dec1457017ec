"""The shipped demo CT weights: they load, COVID3D tells unseen COVID-19 phantoms from COVID-
negative ones and its 3D Grad-CAM looks inside the lungs, and the slice model finds the slices
where lesions were drawn. One test runs the real scanner series in ../shared/samples end to
end (``real_artefact``), skipped where that folder is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.ct.analysis import analyse_ct
from core.datasets.ct_sources import VISIBLE_LESION_FRACTION
from core.demo.ct_phantom import generate_ct
from core.models.registry import DEFAULT_WEIGHTS_DIR, LoadedModel, ModelRegistry
from core.types import CtVolume

pytestmark = pytest.mark.demo_weights

REAL_SERIES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "ct-series-lung-dx-a0002"


@pytest.fixture(scope="module")
def models() -> tuple[LoadedModel, LoadedModel]:
    registry = ModelRegistry(DEFAULT_WEIGHTS_DIR, device=torch.device("cpu"))
    return registry.load("covid3d"), registry.load("ct-slice-resnet18")


def _volume(label: str, severity: float, seed: int):
    phantom = generate_ct(label, severity, seed)
    volume = CtVolume(
        hu=phantom.hu.astype(np.float32),
        spacing_mm=tuple(float(v) for v in phantom.spacing_mm),  # type: ignore[arg-type]
        series_uid=str(seed),
        description="",
        window=None,
        n_files=0,
    )
    return phantom, volume


def _fresh(n_per_class: int = 6):
    """Phantoms with seeds far from the training cohort's."""
    cases = []
    for i, label in enumerate(("COVID-19", "Viral pneumonia", "Normal")):
        for k in range(n_per_class):
            severity = 0.0 if label == "Normal" else 0.35 + 0.6 * k / n_per_class
            cases.append((label, *_volume(label, severity, 800_000 + 100 * i + k)))
    return cases


def test_both_models_are_registered_with_fold_tables_and_held_out_metrics(models) -> None:
    covid3d, slice_model = models
    for model in models:
        card = model.card
        assert "not for clinical use" in card.intended_use
        assert len(card.training["folds"]) == 5 and 1 <= card.training["kept_fold"] <= 5
        assert card.metrics["held_out"]["n"] > 0
    assert covid3d.card.input_kind == "ct-volume" and covid3d.card.input.depth
    assert slice_model.card.input_kind == "ct-slice"
    assert slice_model.card.metrics["held_out_per_scan"]["n"] > 0


def test_covid3d_separates_unseen_covid_phantoms_and_looks_inside_the_lungs(models) -> None:
    covid3d, _ = models
    truth, scores, inside, outside = [], [], [], []
    for label, phantom, volume in _fresh():
        result = analyse_ct(volume, covid3d, None, cam=label == "COVID-19")
        truth.append(label == "COVID-19")
        scores.append(result.probability)
        if result.cam is not None:
            assert result.cam.shape == volume.hu.shape
            body = phantom.hu > -500
            inside.append(float(result.cam[phantom.lung_mask].mean()))
            outside.append(float(result.cam[~body & ~phantom.lung_mask].mean()))
    assert roc_auc_score(truth, scores) >= 0.85
    decisions = np.array(scores) >= covid3d.card.thresholds.get("covid", 0.5)
    assert (decisions == np.array(truth)).mean() >= 0.75
    assert np.mean(inside) > np.mean(outside)


def test_the_slice_model_finds_the_slices_with_lesions(models) -> None:
    _, slice_model = models
    truth, probs, patient = [], [], {}
    for label, phantom, volume in _fresh():
        if label == "Viral pneumonia":
            continue
        result = analyse_ct(volume, None, slice_model, cam=False)
        assert result.slice_probabilities.shape == (volume.hu.shape[0],)
        # Slices through the lungs: visible lesions (as trained) against none at all.
        lung = phantom.lung_mask.sum(axis=(1, 2))
        fraction = phantom.lesion_mask.sum(axis=(1, 2)) / np.maximum(lung, 1)
        keep = (lung > 0) & ((fraction >= VISIBLE_LESION_FRACTION) | (fraction == 0))
        truth.extend((fraction[keep] >= VISIBLE_LESION_FRACTION).tolist())
        probs.extend(result.slice_probabilities[keep].tolist())
        patient.setdefault(label, []).append(result.patient_score)
    assert roc_auc_score(truth, probs) >= 0.8
    scan_truth = [1] * len(patient["COVID-19"]) + [0] * len(patient["Normal"])
    assert roc_auc_score(scan_truth, patient["COVID-19"] + patient["Normal"]) >= 0.9


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="the shared real CT sample is not available")
def test_the_real_series_runs_end_to_end_real_artefact(models) -> None:
    from core.io.ct_input import read_ct_path

    covid3d, slice_model = models
    volume = read_ct_path(REAL_SERIES)
    result = analyse_ct(volume, covid3d, slice_model, cam=True, signed=True)
    assert 0.0 <= result.probability <= 1.0 and np.isfinite(result.score)
    assert result.cam.shape == volume.hu.shape == (30, 512, 512)
    assert result.cam_signed and -1.0 <= result.cam.min() and result.cam.max() <= 1.0
    assert result.slice_probabilities.shape == (30,)
