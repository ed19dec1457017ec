"""s(t) of the shipped COVID3D (trained demo weights in ``weights/``) recovers the simulator's
disease course on a demo library of 40 patients the model never saw: the demo CT weights were
trained on the app library's cohort (seed 0), so this library is drawn with another seed.

The truth is the simulator's: each scan's latent severity and each COVID-19 patient's peak
day (:mod:`core.demo.cohort`). The floors are well below what the weights reach (on 120
unseen patients, cohort seed 5: the s peak on the true peak scan for 88% of COVID-19 patients
with two or more CTs, Spearman 0.82 between s and severity), so that a working pipeline passes and a
broken one (scores of the wrong scan, days out of order, a sign flipped, an untrained model)
does not.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import torch

from core.demo.cohort import DemoPatient, simulate_cohort
from core.library.demo import DEMO_SOURCE, build_demo_library
from core.library.store import SqliteLibrary, open_library
from core.models.registry import LoadedModel, ModelRegistry
from core.trajectory.curves import Trajectory, cohort_curve, cohort_points, cohort_trajectories
from core.trajectory.scores import score_library

pytestmark = pytest.mark.demo_weights

N_PATIENTS = 40
#: Not the training cohort's seed (0): these patients are unseen by the demo weights.
COHORT_SEED = 5
COVID = "COVID-19"


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return ModelRegistry(device=torch.device("cpu")).load("covid3d")


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, model: LoadedModel) -> SqliteLibrary:
    root = tmp_path_factory.mktemp("trajectory-demo") / "library"
    start = time.perf_counter()
    build_demo_library(root, N_PATIENTS, seed=COHORT_SEED, workers=1)
    built = time.perf_counter()
    library = open_library(root, create=False)
    report = score_library(library, model)
    print(
        f"\n{N_PATIENTS} patients built in {built - start:.1f} s, "
        f"{report.added} CTs scored in {time.perf_counter() - built:.1f} s"
    )
    assert report.problems == [] and report.added == report.total > 0
    return library


@pytest.fixture(scope="module")
def covid(scored: SqliteLibrary, model: LoadedModel) -> list[tuple[DemoPatient, Trajectory]]:
    """Every COVID-19 patient with a CT, with their trajectory (days checked against the truth)."""
    trajectories = {t.patient.pseudonym: t for t in cohort_trajectories(scored, model)}
    out = []
    for patient in simulate_cohort(N_PATIENTS, COHORT_SEED):
        cts = [s for s in patient.scans if s.modality == "CT"]
        t = trajectories.get(scored.pseudonym(DEMO_SOURCE, patient.patient_id))
        if not cts:
            assert t is None
            continue
        assert t is not None and t.patient.label == patient.label
        assert [p.day for p in t.points] == [float(s.day) for s in cts]
        if patient.label == COVID:
            out.append((patient, t))
    return out


def test_s_peaks_on_the_scan_where_the_severity_peaks(covid) -> None:
    hits = total = 0
    for patient, t in covid:
        cts = [s for s in patient.scans if s.modality == "CT"]
        if len(cts) < 2:
            continue
        total += 1
        hits += t.features.peak_day == float(max(cts, key=lambda s: s.severity).day)
    print(f"\ns(t) peaks on the true peak scan for {hits}/{total} = {hits / total:.2f} COVID-19 patients")
    assert total >= 10
    assert hits / total >= 0.65


def test_s_rises_with_the_severity_of_each_scan(covid) -> None:
    s = [p.value for _, t in covid for p in t.points]
    severity = [scan.severity for patient, _ in covid for scan in patient.scans if scan.modality == "CT"]
    rho = pd.Series(s).corr(pd.Series(severity), method="spearman")
    print(f"\nSpearman(s, severity) over {len(s)} COVID-19 CTs: {rho:.2f}")
    assert len(s) >= 25
    assert rho >= 0.6


def test_cohort_median_course_rises_peaks_near_the_true_peak_and_tapers(covid) -> None:
    days, values = cohort_points([t for _, t in covid])
    curve = cohort_curve(days, values, bin_days=2)
    true_peak = float(np.median([patient.course.peak_day for patient, _ in covid]))
    print(
        f"\nmedian s by day: {dict(zip(curve.centres, [round(m, 2) for m in curve.median], strict=True))} "
        f"(counts {curve.counts}); peak on day {curve.peak_day}, true median peak day {true_peak:.1f}"
    )
    assert len(curve.centres) >= 3
    assert curve.peak_day is not None and abs(curve.peak_day - true_peak) <= 3.0
    peak = int(np.argmax(curve.median))
    assert curve.median[0] < curve.median[peak]  # already high at admission, but rising
    assert curve.median[-1] < curve.median[peak]  # tapering toward discharge
