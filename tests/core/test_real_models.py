"""The shipped real-data models on the real images beside the project (../shared), when present.

A user's clone has no ../shared: these tests skip there, with the reason. Where the data are
present (the developers' machines and CI here) they check what a user of the shipped weights
relies on: the recorded held-out split still rebuilds from the data, the model reads its own
held-out images as like its training data and mostly right, and real images are flagged by the
demo models they were never meant for.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.ct.analysis import analyse_ct
from core.evaluation.data import evaluation_data
from core.evaluation.ood import image_scores, volume_scores
from core.io.ct_input import read_ct_path
from core.io.images import read_xray
from core.models.registry import ModelRegistry
from tests.helpers import ROOT

SHARED = ROOT.parent / "shared"
CXR = SHARED / "data" / "cxr-adult"
CT_SLICES = SHARED / "data" / "ct-slices"
REAL_SERIES = SHARED / "samples" / "ct-series-lung-dx-a0002"


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    torch.set_num_threads(1)
    return ModelRegistry(device=torch.device("cpu"))


def _every_kth(data, k: int):
    return replace(data, cases=data.cases[::k])


@pytest.mark.skipif(not CXR.is_dir(), reason="../shared/data/cxr-adult (real X-rays) is not beside the project")
def test_the_real_xray_model_reads_its_held_out_films_as_in_distribution_and_mostly_right(registry) -> None:
    model = registry.load("cxr-real-resnet18")
    data = evaluation_data(model.card, split="test")  # raises if the recorded split no longer rebuilds
    assert len(data.cases) == model.card.metrics["held_out"]["n"]
    sample = _every_kth(data, 8)
    units = [c.load() for c in sample.cases]
    scores = image_scores(model, model.ood, units)
    assert np.mean(scores <= model.ood.threshold) >= 0.85
    from core.preprocess import normalise, to_unit_square

    x = normalise(torch.cat([to_unit_square(u, model.card.input.size) for u in units]), model.card.input)
    with torch.inference_mode():
        predicted = model.module(x).argmax(1).numpy()
    truth = np.array([model.card.labels.index(c.label) for c in sample.cases])
    assert np.mean(predicted == truth) >= 0.7  # held-out accuracy recorded at training: 84%


@pytest.mark.skipif(not CXR.is_dir(), reason="../shared/data/cxr-adult (real X-rays) is not beside the project")
def test_a_demo_model_calls_real_films_unlike_its_training_data(registry) -> None:
    demo = registry.load("cxr-resnet18")
    files = sorted(CXR.glob("*/*.png"))[::200]
    units = [read_xray(f.read_bytes(), f.name).windowed() for f in files]
    assert np.mean(image_scores(demo, demo.ood, units) > demo.ood.threshold) >= 0.95


@pytest.mark.skipif(
    not CT_SLICES.is_dir(), reason="../shared/data/ct-slices (real CT slices) is not beside the project"
)
def test_the_real_ct_slice_model_accepts_its_held_out_slices(registry) -> None:
    model = registry.load("ct-slice-real-resnet18")
    data = _every_kth(evaluation_data(model.card, split="test"), 5)
    scores = image_scores(model, model.ood, [c.load() for c in data.cases])
    assert np.mean(scores <= model.ood.threshold) >= 0.85


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="the shared real CT sample is not available")
def test_the_demo_ct_models_call_a_real_series_unlike_their_training_data(registry) -> None:
    hu = read_ct_path(Path(REAL_SERIES)).hu
    for model_id in ("covid3d", "ct-slice-resnet18"):
        model = registry.load(model_id)
        assert volume_scores(model, model.ood, [hu])[0] > model.ood.threshold, model_id


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="the shared real CT sample is not available")
def test_the_real_slice_model_reads_a_real_series_through_its_lungs(registry) -> None:
    volume = read_ct_path(Path(REAL_SERIES))
    model = registry.load("ct-slice-real-resnet18", with_ood=True)
    result = analyse_ct(volume, None, model)
    read = result.slices_read
    # The series runs from the upper abdomen to the neck: the middle slices are read, the ends not.
    assert 0.4 <= read.mean() <= 0.9 and not read[0] and not read[-1]
    assert np.count_nonzero(np.diff(read.astype(int))) == 2  # one run of slices
    assert result.slice_ood.in_distribution, result.slice_ood.comparison()
    # A lung-cancer patient's scan (Lung-PET-CT-Dx), not COVID-19: below the card's threshold.
    assert result.patient_score < model.card.thresholds["covid"]
