"""core.trajectory: curve features on hand-made curves, the cohort's median course, scoring a
library (incremental, per weights version), s(t) of one patient, the features table and the
score-scaled Grad-CAMs, with tiny untrained models on a copy of the small demo library.

The tiny COVID3D of ``ct_weights`` gives every scan the same s to 1e-7 (untrained BatchNorm
statistics wash the input out), which is enough for counting what gets scored but cannot tell
one scan's score from another's. Tests about values use a tiny COVID3D of their own whose
BatchNorm statistics are estimated on the library's scans, so that s differs from scan to scan.
Answers come from the simulator's truth, hand formulas, or the app's other code paths
(Grad-CAM's own logit, the X-ray prediction), never from a previous run.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.ct.preprocess import LUNG_WINDOW, prepare_volume
from core.demo.cohort import DemoCohort, DemoPatient, simulate_cohort
from core.demo.xray_phantom import generate_xray
from core.errors import InvalidInputError
from core.explain.gradcam3d import covid3d_with_cam, resize_cam
from core.inference import explain_xray, predict_xray
from core.library.demo import DEMO_SOURCE
from core.library.records import NewPatient, NewStudy, PatientSummary
from core.library.store import NewImage, SqliteLibrary, open_library
from core.models.architectures import build_model
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import LoadedModel, ModelRegistry, sha256_of
from core.search.embeddings import read_stored_xray
from core.training.publish import save_half
from core.trajectory.curves import (
    FEATURE_COLUMNS,
    Point,
    Trajectory,
    cohort_curve,
    cohort_trajectories,
    curve_features,
    features_csv,
    features_rows,
    patient_trajectory,
)
from core.trajectory.explain import scaled_maps
from core.trajectory.scores import (
    decision_threshold,
    probability,
    read_stored_ct,
    score_library,
    score_name,
    score_version,
)
from tests.ct_helpers import register_tiny_ct_model

CT_ID = "covid3d-tiny"
LIVE_ID = "covid3d-live"
XRAY_ID = "cxr-resnet18"
SLICE_ID = "ct-slice-tiny"


def _load(weights: Path, model_id: str) -> LoadedModel:
    return ModelRegistry(weights, device=torch.device("cpu")).load(model_id)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


# -- curve_features on hand-made curves --------------------------------------------------------


def test_quadratic_at_irregular_unsorted_days_has_exact_derivatives_slopes_and_area() -> None:
    a, b, c = -0.3, 2.1, 0.5
    days = [7.0, 0.0, 2.5, 11.0, 3.0, 5.5]  # uneven steps, not in time order
    values = [a * d * d + b * d + c for d in days]
    f = curve_features(days, values)

    t = sorted(days)
    v = [a * d * d + b * d + c for d in t]
    assert f.n == 6
    assert f.first == pytest.approx(v[0]) and f.last == pytest.approx(v[-1])  # day 0 and day 11
    assert f.first == pytest.approx(c)
    # The sampled maximum: v(3) = 4.1 and v(5.5) = 3.0 around the vertex at 3.5.
    assert f.peak == pytest.approx(max(v)) and f.peak_day == 3.0
    # The chord slope of a parabola between d0 and d1 is a (d0 + d1) + b.
    chords = [a * (t[i] + t[i + 1]) + b for i in range(5)]
    assert f.slopes == pytest.approx(chords, abs=1e-12)
    assert f.first_derivative == pytest.approx([2 * a * d + b for d in t], abs=1e-10)
    assert f.second_derivative == pytest.approx([2 * a] * 6, abs=1e-10)
    trapezoid = sum((v[i] + v[i + 1]) / 2 * (t[i + 1] - t[i]) for i in range(5))
    assert f.auc == pytest.approx(trapezoid, rel=1e-12)
    assert f.as_dict()["n_scans"] == 6 and f.as_dict()["slopes"] == list(f.slopes)


def test_linear_curve_has_its_slope_everywhere_and_no_curvature() -> None:
    f = curve_features([10.0, 0.0, 4.0, 1.0], [-2.0, 3.0, 1.0, 2.5])  # v = 3 - d / 2
    assert f.slopes == pytest.approx([-0.5] * 3)
    assert f.first_derivative == pytest.approx([-0.5] * 4)
    assert f.second_derivative == pytest.approx([0.0] * 4, abs=1e-12)
    assert (f.first, f.last, f.peak, f.peak_day) == (3.0, -2.0, 3.0, 0.0)
    assert f.auc == pytest.approx(3.0 * 10 - 0.25 * 100)  # the integral: exact for a line


def test_two_points_give_the_slope_as_derivative_and_no_second_derivative() -> None:
    f = curve_features([5.0, 2.0], [1.0, 4.0])
    assert f.n == 2
    assert (f.first, f.last, f.peak, f.peak_day) == (4.0, 1.0, 4.0, 2.0)
    assert f.slopes == pytest.approx([-1.0])
    assert f.first_derivative == pytest.approx([-1.0, -1.0])
    assert f.second_derivative == ()
    assert f.auc == pytest.approx((4.0 + 1.0) / 2 * 3.0)


def test_one_point_and_no_point() -> None:
    one = curve_features([4.0], [0.7])
    assert (one.n, one.first, one.last, one.peak, one.peak_day) == (1, 0.7, 0.7, 0.7, 4.0)
    assert one.slopes == one.first_derivative == one.second_derivative == ()
    assert one.auc is None

    none = curve_features([], [])
    assert none.n == 0
    assert none.first is none.last is none.peak is none.peak_day is none.auc is None
    assert none.slopes == none.first_derivative == none.second_derivative == ()


def test_values_on_the_same_day_are_averaged() -> None:
    f = curve_features([0.0, 2.0, 2.0, 4.0], [1.0, 3.0, 5.0, 0.0])  # day 2: (3 + 5) / 2 = 4
    assert f.n == 3
    assert (f.peak, f.peak_day) == (4.0, 2.0)
    assert f.slopes == pytest.approx([1.5, -2.0])
    assert f.auc == pytest.approx((1 + 4) / 2 * 2 + (4 + 0) / 2 * 2)
    # Three points: the parabola through them has second derivative 2 (-2 - 1.5) / (4 - 0).
    assert f.second_derivative == pytest.approx([-1.75] * 3)


@pytest.mark.parametrize(
    ("days", "values"),
    [
        ([0.0, 1.0, 2.0], [1.0, float("nan"), 2.0]),
        ([0.0, float("inf")], [1.0, 2.0]),
        ([0.0, 1.0], [float("-inf"), 2.0]),
        ([0.0, 1.0, 2.0], [1.0, 2.0]),  # lengths differ
    ],
)
def test_non_finite_or_mismatched_input_is_refused(days: list[float], values: list[float]) -> None:
    with pytest.raises(ValueError):
        curve_features(days, values)


# -- cohort_curve ------------------------------------------------------------------------------


def test_cohort_curve_gives_numpy_median_and_quartiles_per_bin() -> None:
    rng = np.random.default_rng(3)
    # Bins of 2.5 days from day 0: days before 0 fall in the first bin.
    by_bin = {
        0: [-1.0, 0.0, 0.5, 2.49, 1.0],
        1: [2.5, 3.0, 3.5, 4.0, 4.9, 2.6],
        2: [5.0, 6.0],  # too few: left out
        4: [10.0, 10.5, 11.0, 12.4, 10.1, 11.7, 12.0],
    }
    offset = {0: 0.0, 1: 3.0, 2: 9.0, 4: 1.0}  # bin 1 has the highest median (bin 2 is dropped)
    values = {b: list(rng.normal(offset[b], 1.0, len(d))) for b, d in by_bin.items()}
    days = [d for b in by_bin for d in by_bin[b]]
    vals = [v for b in by_bin for v in values[b]]
    order = rng.permutation(len(days))
    curve = cohort_curve(np.asarray(days)[order], np.asarray(vals)[order], bin_days=2.5, min_scans=5)

    kept = (0, 1, 4)
    assert curve.bin_days == 2.5
    assert curve.centres == pytest.approx([1.25, 3.75, 11.25])
    assert curve.counts == (5, 6, 7)
    assert curve.median == pytest.approx([np.median(values[b]) for b in kept])
    assert curve.q25 == pytest.approx([np.percentile(values[b], 25) for b in kept])
    assert curve.q75 == pytest.approx([np.percentile(values[b], 75) for b in kept])
    assert curve.peak_day == 3.75
    assert curve.as_dict()["centres"] == list(curve.centres)

    everything = cohort_curve(days, vals, bin_days=2.5, min_scans=1)
    assert everything.counts == (5, 6, 2, 7) and everything.peak_day == 6.25  # bin 2 counts now


def test_cohort_curve_without_points_and_bad_bins() -> None:
    empty = cohort_curve([], [])
    assert empty.centres == empty.median == empty.counts == () and empty.peak_day is None
    for bad in (0.0, -2.0):
        with pytest.raises(ValueError):
            cohort_curve([1.0, 2.0], [0.1, 0.2], bin_days=bad)


# -- models and libraries ----------------------------------------------------------------------


def _ct_volumes(library: SqliteLibrary) -> list:
    return [read_stored_ct(library, r.image_id) for r in library.image_refs(("ct-series",))]


def register_live_covid3d(folder: Path, volumes: list, seed: int = 0) -> ModelCard:
    """A tiny untrained COVID3D whose BatchNorm statistics come from ``volumes``, so its s
    varies from scan to scan (16 x 48 x 48 input: a 2 x 2 x 2 Grad-CAM grid)."""
    kwargs = {"width": 0.0625, "in_channels": 1}
    spec = InputSpec(48, 1, (0.5,), (0.25,), "test", depth=16, window=LUNG_WINDOW)
    torch.manual_seed(seed)
    module = build_model("covid3d", **kwargs)
    for layer in module.modules():
        if isinstance(layer, nn.BatchNorm3d):
            layer.reset_running_stats()
            layer.momentum = None  # a plain average over the batches seen
    module.train()
    with torch.no_grad():
        module(torch.cat([prepare_volume(v, spec) for v in volumes]))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{LIVE_ID}.pt"
    save_half(module.eval().state_dict(), path)
    card = ModelCard(
        id=LIVE_ID,
        version="live-1",
        architecture="covid3d",
        architecture_kwargs=kwargs,
        weights_file=path.name,
        sha256=sha256_of(path),
        input_kind="ct-volume",
        input=spec,
        labels=("COVID-19",),
        gradcam_layer=str(module.gradcam_layer),
        intended_use="untrained test model",
    )
    write_manifest_entry(folder, card)
    return card


@pytest.fixture(scope="module")
def live_model(tmp_path_factory: pytest.TempPathFactory, demo_library: Path) -> LoadedModel:
    folder = tmp_path_factory.mktemp("live-weights")
    register_live_covid3d(folder, _ct_volumes(open_library(demo_library, create=False)))
    return _load(folder, LIVE_ID)


@pytest.fixture(scope="module")
def ct_model(ct_weights: Path) -> LoadedModel:
    return _load(ct_weights, CT_ID)


@pytest.fixture(scope="module")
def xray_model(tiny_weights: Path) -> LoadedModel:
    return _load(tiny_weights, XRAY_ID)


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, demo_library: Path, live_model, xray_model):
    """A copy of the demo library scored by the live COVID3D and the X-ray model; read-only."""
    root = tmp_path_factory.mktemp("trajectory") / "library"
    shutil.copytree(demo_library, root)
    library = open_library(root, create=False)
    reports = {m.id: score_library(library, m) for m in (live_model, xray_model)}
    return library, reports


def truth_of(library: SqliteLibrary) -> DemoCohort:
    """The simulator's cohort behind a demo library (the first k patients of any cohort agree)."""
    return simulate_cohort(len(library.patients()), 0)


def pseudonym_of(library: SqliteLibrary, patient: DemoPatient) -> str:
    return library.pseudonym(DEMO_SOURCE, patient.patient_id)


def studies_of(library: SqliteLibrary, modality: str) -> set[int]:
    return {s.id for p in library.patients() for s in library.patient(p.pseudonym).studies if s.modality == modality}


def n_scans(cohort: DemoCohort, modality: str) -> int:
    return sum(s.modality == modality for p in cohort for s in p.scans)


def most_ct(cohort: DemoCohort) -> DemoPatient:
    return max(cohort, key=lambda p: sum(s.modality == "CT" for s in p.scans))


# -- scoring a library -------------------------------------------------------------------------


def test_score_library_scores_every_ct_study_once_per_weights_version(
    library_copy: Path, ct_weights: Path, ct_model: LoadedModel, tmp_path: Path
) -> None:
    library = open_library(library_copy, create=False)
    n = n_scans(truth_of(library), "CT")
    ct_studies = studies_of(library, "CT")
    assert n == len(ct_studies) > 0

    calls: list[tuple[int, int]] = []
    first = score_library(library, ct_model, progress=lambda done, total: calls.append((done, total)))
    assert (first.total, first.added, first.already, first.problems) == (n, n, 0, [])
    assert first.score == "s" and first.model_id == CT_ID and first.model_version == score_version(ct_model)
    assert calls[0] == (0, n) and calls[-1] == (n, n)
    stored = library.scores(CT_ID, score_version(ct_model), "s")
    assert set(stored) == ct_studies
    assert library.scores(CT_ID, "another-version", "s") == {}

    again = score_library(library, ct_model)
    assert (again.total, again.added, again.already) == (n, 0, n)

    # New weights (another seed) under the same id and card version: a new score version.
    folder = tmp_path / "new-weights"
    shutil.copytree(ct_weights, folder)
    register_tiny_ct_model(folder, CT_ID, seed=1)
    retrained = _load(folder, CT_ID)
    assert score_version(retrained) != score_version(ct_model)
    fresh = score_library(library, retrained)
    assert (fresh.total, fresh.added, fresh.already) == (n, n, 0)
    assert fresh.model_version == score_version(retrained)
    assert set(library.scores(CT_ID, score_version(retrained), "s")) == ct_studies
    assert library.scores(CT_ID, score_version(ct_model), "s") == stored  # the old ones untouched


def test_a_scan_that_cannot_be_read_is_reported_and_the_rest_scored(library_copy: Path, ct_model) -> None:
    library = open_library(library_copy, create=False)
    ref = library.image_refs(("ct-series",))[0]
    folder = library.image_path(library.image_record(ref.image_id))
    for f in folder.iterdir():
        f.write_bytes(b"not a DICOM file")
    n = len(studies_of(library, "CT"))

    report = score_library(library, ct_model)
    assert (report.total, report.added, report.already) == (n, n - 1, 0)
    assert len(report.problems) == 1 and f"study {ref.study_id}" in report.problems[0]
    assert ref.study_id not in library.scores(CT_ID, score_version(ct_model), "s")
    retry = score_library(library, ct_model)  # tried again, not remembered as scored
    assert (retry.added, retry.already, len(retry.problems)) == (0, n - 1, 1)


def test_live_scores_are_the_covid3d_logits_of_each_scan(scored, live_model: LoadedModel) -> None:
    library, reports = scored
    n = n_scans(truth_of(library), "CT")
    report = reports[LIVE_ID]
    assert (report.total, report.added, report.problems) == (n, n, [])
    stored = library.scores(LIVE_ID, score_version(live_model), "s")
    assert len(set(np.round(list(stored.values()), 5))) == n  # every scan its own score
    for ref in library.image_refs(("ct-series",))[:3]:
        x = prepare_volume(read_stored_ct(library, ref.image_id), live_model.card.input)
        logit, _ = covid3d_with_cam(live_model, x)
        assert stored[ref.study_id] == pytest.approx(logit, abs=1e-5)


def test_xray_model_stores_p_covid_of_every_xray_study(scored, xray_model: LoadedModel) -> None:
    library, reports = scored
    n = n_scans(truth_of(library), "X-ray")
    report = reports[XRAY_ID]
    assert report.score == "p_covid" and score_name(xray_model) == "p_covid"
    assert (report.total, report.added, report.problems) == (n, n, [])
    stored = library.scores(XRAY_ID, score_version(xray_model), "p_covid")
    assert set(stored) == studies_of(library, "X-ray")
    assert all(0.0 <= v <= 1.0 for v in stored.values())
    covid = xray_model.card.labels.index("COVID-19")
    for ref in library.image_refs(("xray",))[:3]:
        prediction = predict_xray(xray_model, read_stored_xray(library, ref.image_id))
        assert stored[ref.study_id] == pytest.approx(prediction.probabilities[covid], abs=1e-6)


def test_models_without_a_covid_score_are_refused(scored, ct_weights: Path, xray_model: LoadedModel) -> None:
    library, _ = scored
    slice_model = _load(ct_weights, SLICE_ID)
    with pytest.raises(InvalidInputError, match="ct-slice"):
        score_name(slice_model)
    with pytest.raises(InvalidInputError):
        score_library(library, slice_model)
    no_covid = replace(xray_model, card=replace(xray_model.card, labels=("Normal", "Viral pneumonia", "Other")))
    with pytest.raises(InvalidInputError, match="COVID-19"):
        score_name(no_covid)


# -- probability and threshold -----------------------------------------------------------------


def test_probability_of_s_is_sigmoid_of_s_over_the_cards_temperature(tmp_path: Path) -> None:
    register_tiny_ct_model(tmp_path, CT_ID, temperature=2.5, thresholds={"covid": 0.8})
    model = _load(tmp_path, CT_ID)
    assert model.card.temperature == 2.5
    for s in (-40.0, -3.2, -0.1, 0.0, 0.7, 4.0, 40.0):
        assert probability(model, s) == pytest.approx(_sigmoid(s / 2.5), rel=1e-12, abs=0.0)
    assert decision_threshold(model) == pytest.approx(2.5 * math.log(0.8 / 0.2))
    assert probability(model, decision_threshold(model)) == pytest.approx(0.8)


def test_default_threshold_is_probability_one_half(ct_model: LoadedModel, xray_model: LoadedModel) -> None:
    assert ct_model.card.thresholds == {}
    assert decision_threshold(ct_model) == pytest.approx(0.0)
    assert probability(ct_model, decision_threshold(ct_model)) == pytest.approx(0.5)
    cooler = replace(ct_model, card=replace(ct_model.card, temperature=0.5))
    assert probability(cooler, 1.0) == pytest.approx(_sigmoid(2.0))
    assert decision_threshold(cooler) == pytest.approx(0.0)

    assert probability(xray_model, 0.37) == 0.37  # already a probability
    assert decision_threshold(xray_model) == 0.5
    strict = replace(xray_model, card=replace(xray_model.card, thresholds={"COVID-19": 0.3}))
    assert decision_threshold(strict) == 0.3


# -- one patient's trajectory ------------------------------------------------------------------


def _new_patient(library: SqliteLibrary, name: str, label: str | None) -> NewPatient:
    return NewPatient(pseudonym=library.pseudonym("test", name), source="test", label=label)


def _series_of(library: SqliteLibrary, study_id: int) -> tuple[tuple[str, bytes], ...]:
    (ref,) = [r for r in library.image_refs(("ct-series",)) if r.study_id == study_id]
    return tuple(library.image_files(library.image_record(ref.image_id)))


def test_patient_trajectory_scores_missing_scans_and_lists_them_in_time_order(
    library_copy: Path, live_model: LoadedModel
) -> None:
    library = open_library(library_copy, create=False)
    demo = most_ct(truth_of(library))
    pseudonym = pseudonym_of(library, demo)
    key = (LIVE_ID, score_version(live_model), "s")
    assert library.scores(*key) == {}

    t = patient_trajectory(library, pseudonym, live_model)
    cts = [s for s in demo.scans if s.modality == "CT"]
    assert len(cts) >= 3
    assert [p.day for p in t.points] == [float(s.day) for s in cts]
    assert [p.admission_day for p in t.points] == [s.day for s in cts]
    assert [p.onset_day for p in t.points] == [s.onset_day for s in cts]
    assert t.axis == "admission" and t.score == "s" and t.model_version == score_version(live_model)
    assert t.patient.pseudonym == pseudonym and t.patient.label == demo.label

    stored = library.scores(*key)  # this patient's scans, and only those, are stored now
    ct_studies = {s.id: s for s in library.patient(pseudonym).studies if s.modality == "CT"}
    assert set(stored) == set(ct_studies) == {p.study_id for p in t.points}
    assert {p.study_id: p.value for p in t.points} == stored
    for p in t.points:
        assert p.image_id == ct_studies[p.study_id].images[0].id
        assert p.probability == pytest.approx(_sigmoid(p.value))
    assert t.features == curve_features([p.day for p in t.points], [p.value for p in t.points])

    assert patient_trajectory(library, pseudonym, live_model) == t  # read back, not scored again
    rest = score_library(library, live_model)
    assert (rest.already, rest.added) == (len(cts), rest.total - len(cts))


def test_points_follow_the_days_not_the_order_studies_were_stored(scored, tmp_path: Path, live_model) -> None:
    src, _ = scored
    root = tmp_path / "library"
    shutil.copytree(src.root, root)
    library = open_library(root, create=False)
    stored = library.scores(LIVE_ID, score_version(live_model), "s")
    sources = sorted(studies_of(library, "CT"))[:3]

    patient = _new_patient(library, "shuffled", "COVID-19")
    days = {sources[0]: 9.0, sources[1]: 2.0, sources[2]: 5.0}  # stored in the order 9, 2, 5
    for n, (source, day) in enumerate(days.items()):
        image = NewImage("ct-series", _series_of(library, source))
        library.add_case(patient, NewStudy("CT", "Axial", offset_admission_days=day), [image], f"shuffled-{n}")
        png = generate_xray("COVID-19", 0.5, seed=50 + n, size=128).to_png()
        xray = NewImage("xray", (("x.png", png),), width=128, height=128)
        library.add_case(patient, NewStudy("X-ray", "PA", offset_admission_days=day), [xray], f"shuffled-x{n}")

    t = patient_trajectory(library, patient.pseudonym, live_model)
    assert [p.day for p in t.points] == [2.0, 5.0, 9.0]
    # Each point carries its own scan's score: the same files score as the original did.
    by_day = {day: stored[source] for source, day in days.items()}
    assert [p.value for p in t.points] == pytest.approx([by_day[d] for d in (2.0, 5.0, 9.0)], abs=1e-5)
    assert t.features.peak_day == max(by_day, key=by_day.get)


def test_patient_without_ct_has_an_empty_trajectory_and_unknown_patients_are_refused(
    library_copy: Path, live_model: LoadedModel
) -> None:
    library = open_library(library_copy, create=False)
    patient = _new_patient(library, "xray-only", "Normal")
    png = generate_xray("Normal", 0.0, seed=77, size=128).to_png()
    image = NewImage("xray", (("x.png", png),), width=128, height=128)
    library.add_case(patient, NewStudy("X-ray", "PA", offset_admission_days=0.0), [image], "xray-only-0")

    t = patient_trajectory(library, patient.pseudonym, live_model)
    assert t.points == () and t.features.n == 0 and t.features.peak is None
    assert t.as_dict()["points"] == [] and t.as_dict()["patient_id"] == patient.pseudonym
    assert library.scores(LIVE_ID, score_version(live_model), "s") == {}
    assert patient.pseudonym not in {x.patient.pseudonym for x in cohort_trajectories(library, live_model)}
    assert features_rows([t])[0]["n_scans"] == 0

    with pytest.raises(InvalidInputError, match="P-NOSUCH"):
        patient_trajectory(library, "P-NOSUCH", live_model)


def test_xray_trajectory_gives_p_covid_over_time(scored, xray_model: LoadedModel) -> None:
    library, _ = scored
    demo = max(truth_of(library), key=lambda p: sum(s.modality == "X-ray" for s in p.scans))
    t = patient_trajectory(library, pseudonym_of(library, demo), xray_model)
    assert t.score == "p_covid"
    assert [p.day for p in t.points] == [float(s.day) for s in demo.scans if s.modality == "X-ray"]
    stored = library.scores(XRAY_ID, score_version(xray_model), "p_covid")
    assert [p.value for p in t.points] == [stored[p.study_id] for p in t.points]
    assert all(p.probability == p.value for p in t.points)


# -- the cohort and its table ------------------------------------------------------------------


def test_cohort_trajectories_have_every_ct_patient_with_their_truth(scored, live_model: LoadedModel) -> None:
    library, _ = scored
    cohort = truth_of(library)
    trajectories = cohort_trajectories(library, live_model)
    with_ct = {pseudonym_of(library, p): p for p in cohort if any(s.modality == "CT" for s in p.scans)}
    assert [t.patient.pseudonym for t in trajectories] == sorted(with_ct)
    for t in trajectories:
        demo = with_ct[t.patient.pseudonym]
        assert [p.day for p in t.points] == [float(s.day) for s in demo.scans if s.modality == "CT"]
        assert (t.patient.label, t.patient.outcome) == (demo.label, demo.outcome)


def test_features_rows_and_csv_have_one_row_per_patient(scored, live_model: LoadedModel) -> None:
    library, _ = scored
    trajectories = cohort_trajectories(library, live_model)
    cohort = {pseudonym_of(library, p): p for p in truth_of(library)}
    rows = features_rows(trajectories)
    assert [r["patient_id"] for r in rows] == [t.patient.pseudonym for t in trajectories]
    assert {len(t.points) for t in trajectories} >= {1, 2, 3}  # the demo has all three cases

    for row, t in zip(rows, trajectories, strict=True):
        assert tuple(row) == FEATURE_COLUMNS
        demo = cohort[row["patient_id"]]
        assert (row["label"], row["outcome"], row["length_of_stay_days"]) == (
            demo.label,
            demo.outcome,
            demo.length_of_stay_days,
        )
        d = [p.day for p in t.points]
        v = [p.value for p in t.points]
        assert row["n_scans"] == len(d)
        assert (row["first_day"], row["last_day"]) == (d[0], d[-1])
        assert (row["first"], row["last"], row["peak"]) == (v[0], v[-1], max(v))
        assert row["peak_day"] == d[v.index(max(v))]
        chords = [(v[i + 1] - v[i]) / (d[i + 1] - d[i]) for i in range(len(d) - 1)]
        if chords:
            assert row["mean_slope"] == pytest.approx(sum(chords) / len(chords))
            assert (row["max_rise"], row["max_fall"]) == pytest.approx((max(chords), min(chords)))
            trapezoid = sum((v[i] + v[i + 1]) / 2 * (d[i + 1] - d[i]) for i in range(len(d) - 1))
            assert row["auc"] == pytest.approx(trapezoid)
        else:
            assert row["mean_slope"] is row["max_rise"] is row["max_fall"] is row["auc"] is None
        if len(d) == 3:  # the parabola through three points: constant second derivative
            assert row["mean_second_derivative"] == pytest.approx(2 * (chords[1] - chords[0]) / (d[2] - d[0]))
        elif len(d) < 3:
            assert row["mean_second_derivative"] is None

    parsed = list(csv.DictReader(io.StringIO(features_csv(trajectories))))
    assert len(parsed) == len(rows)
    for back, row in zip(parsed, rows, strict=True):
        assert tuple(back) == FEATURE_COLUMNS
        for column, value in row.items():
            if value is None:
                assert back[column] == ""
            elif isinstance(value, str):
                assert back[column] == value
            else:
                assert float(back[column]) == pytest.approx(value, rel=1e-5, abs=1e-12), column


def test_features_row_of_a_hand_made_curve() -> None:
    days = [0.0, 1.0, 3.0, 6.0, 10.0]
    values = [-0.2 * d * d + 2.0 * d + 1.0 for d in days]  # chords 1.8, 1.2, 0.2, -1.2
    summary = PatientSummary(
        "P-HAND", "test", "COVID-19", None, None, "died", False, 10.0, True, True, n_studies=5, n_xray=0, n_ct=5
    )
    points = tuple(Point(i, i, d, d + 4.0, d, v, 0.5) for i, (d, v) in enumerate(zip(days, values, strict=True)))
    t = Trajectory(summary, "m", "v1", "s", "admission", points, curve_features(days, values))
    (row,) = features_rows([t])
    assert row["n_scans"] == 5 and (row["first_day"], row["last_day"]) == (0.0, 10.0)
    assert (row["peak"], row["peak_day"]) == pytest.approx((values[3], 6.0))  # v(5) is the vertex; 6 the scan
    assert row["mean_slope"] == pytest.approx((1.8 + 1.2 + 0.2 - 1.2) / 4)
    assert (row["max_rise"], row["max_fall"]) == pytest.approx((1.8, -1.2))
    assert row["mean_second_derivative"] == pytest.approx(-0.4)
    assert row["auc"] == pytest.approx(sum((values[i] + values[i + 1]) / 2 * (days[i + 1] - days[i]) for i in range(4)))
    (back,) = csv.DictReader(io.StringIO(features_csv([t])))
    assert (back["patient_id"], back["label"], back["outcome"], back["mean_slope"]) == (
        "P-HAND",
        "COVID-19",
        "died",
        "0.5",
    )
    assert (back["n_scans"], back["max_rise"], back["length_of_stay_days"]) == ("5", "1.8", "10")


# -- score-scaled Grad-CAMs --------------------------------------------------------------------


def test_ct_maps_are_the_signed_gradcam_times_s_over_max_abs_s(scored, live_model: LoadedModel) -> None:
    library, _ = scored
    t = patient_trajectory(library, pseudonym_of(library, most_ct(truth_of(library))), live_model)
    maps = scaled_maps(library, live_model, t)
    assert [m.point for m in maps] == list(t.points)
    top = max(abs(p.value) for p in t.points)
    ratios = []
    for m in maps:
        volume = read_stored_ct(library, m.point.image_id)
        depth = volume.hu.shape[0]
        assert m.slice_index == round(0.5 * (depth - 1))
        hu = volume.hu[m.slice_index]
        assert m.gray.shape == m.heat.shape == hu.shape
        centre, width = LUNG_WINDOW
        assert np.allclose(m.gray, np.clip((hu - (centre - width / 2)) / width, 0.0, 1.0), atol=1e-6)
        assert m.gray.min() >= 0.0 and m.gray.max() <= 1.0
        assert m.heat.min() >= -1.0 and m.heat.max() <= 1.0

        _, grid = covid3d_with_cam(live_model, prepare_volume(volume, live_model.card.input), signed=True)
        cam = resize_cam(grid, volume.hu.shape)[m.slice_index]
        assert np.abs(cam).max() > 0.1  # a map to scale
        factor = m.point.value / top
        np.testing.assert_allclose(m.heat, cam * factor, atol=1e-5)
        ratios.append(float(np.abs(m.heat).max() / np.abs(cam).max()))
    # The scan with the largest |s| keeps its map's strength; the others are dimmer in proportion.
    assert max(ratios) == pytest.approx(1.0, abs=1e-5)
    assert ratios == pytest.approx([abs(p.value) / top for p in t.points], abs=1e-4)
    assert min(ratios) < 0.9  # the scans' scores differ, so the scaling shows

    low = scaled_maps(library, live_model, t, slice_fraction=0.0)
    assert [m.slice_index for m in low] == [0] * len(t.points)


def test_xray_maps_are_gradcam_times_p_over_max_p(scored, xray_model: LoadedModel) -> None:
    library, _ = scored
    demo = max(truth_of(library), key=lambda p: sum(s.modality == "X-ray" for s in p.scans))
    t = patient_trajectory(library, pseudonym_of(library, demo), xray_model)
    maps = scaled_maps(library, xray_model, t)
    assert len(maps) == len(t.points) >= 3
    top = max(p.value for p in t.points)
    for m in maps:
        image = read_stored_xray(library, m.point.image_id)
        assert m.slice_index is None and m.gray.shape == m.heat.shape == image.shape
        assert m.gray.min() >= 0.0 and m.gray.max() <= 1.0
        assert m.heat.min() >= 0.0 and m.heat.max() <= 1.0
        cam = np.asarray(explain_xray(xray_model, image, "COVID-19").values)
        np.testing.assert_allclose(m.heat, cam * (m.point.value / top), atol=1e-5)


def test_no_points_no_maps(scored, live_model: LoadedModel) -> None:
    library, _ = scored
    t = cohort_trajectories(library, live_model)[0]
    assert scaled_maps(library, live_model, replace(t, points=())) == []


def test_days_since_onset_or_admission(library_copy, ct_weights) -> None:  # noqa: ANN001 - fixtures
    from core.library.store import open_library
    from core.models.registry import ModelRegistry
    from core.trajectory.curves import patient_trajectory

    library = open_library(library_copy)
    model = ModelRegistry(ct_weights).load("covid3d-tiny")
    pick = next(p.pseudonym for p in library.patients() if p.n_ct > 0)
    studies = [s for s in library.patient(pick).studies if s.modality == "CT"]
    onset = patient_trajectory(library, pick, model, since="onset")
    admission = patient_trajectory(library, pick, model, since="admission")
    assert onset.axis == "onset" and admission.axis == "admission"
    assert [p.day for p in onset.points] == sorted(s.offset_onset_days for s in studies)
    assert [p.day for p in admission.points] == sorted(s.offset_admission_days for s in studies)
    assert [p.value for p in onset.points] == [p.value for p in admission.points]
    with pytest.raises(ValueError):
        patient_trajectory(library, pick, model, since="birth")
