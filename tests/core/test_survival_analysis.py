"""core.survival.analysis: the cohorts of both endpoints rebuilt by hand from the patients and
their Kaplan-Meier numbers checked against lifelines called directly; the clinical grouping
against scikit-learn's out-of-fold predictions; held-out patients; the refusals; and model
groupings on a library, whose predictions are stored and read back.

The simulated patients (``demo_patients``) draw their phantoms only when an image is loaded:
age, sex and clinical groupings never load one, so 300 patients cost nothing."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test

from core.errors import InsufficientDataError, InvalidInputError
from core.library.store import open_library
from core.models.registry import ModelRegistry
from core.survival import analysis
from core.survival.analysis import (
    HIGH,
    LOW,
    PROGNOSIS_SCORE,
    SURVIVAL_SCORE,
    endpoint_cohort,
    held_out_only,
    model_role_ids,
    role_of,
    stratify,
)
from core.survival.cohort import OutcomePatient, demo_patients, library_patients
from core.survival.km import NotEnoughDataError
from core.survival.predict import predict_prognosis, predict_survival
from core.trajectory.scores import score_version
from tests.survival_helpers import CT_ID, PROGNOSIS_IDS, SURVIVAL_ID, load_role_models, survival_weights  # noqa: F401

N_PATIENTS = 300


@pytest.fixture(scope="module")
def patients() -> list[OutcomePatient]:
    return demo_patients(N_PATIENTS, seed=0)


def expected_rows(patients: list[OutcomePatient], endpoint: str) -> dict[str, tuple[float, bool]]:
    """Patient -> (duration, event), written out from the endpoint's definition."""
    out = {}
    for p in patients:
        if p.label != "COVID-19" or p.outcome is None or p.length_of_stay_days is None:
            continue
        if endpoint == "death" and p.xrays():
            out[p.patient_id] = (p.length_of_stay_days, p.outcome == "died")
        elif endpoint == "discharge" and len(p.cts()) >= 2:
            out[p.patient_id] = (max(p.length_of_stay_days - p.cts()[1].day, 0.0), p.outcome == "discharged")
    return out


def expected_group(p: OutcomePatient, grouping: str) -> str:
    return {"age": "age >= 60" if p.age >= 60 else "age < 60", "sex": p.sex}[grouping]


def check_against_lifelines(cohort, expected: dict[str, tuple[float, bool]], groups: dict[str, str]) -> None:
    """The analysis of ``cohort`` equals lifelines on the hand-built durations, events and groups."""
    ids = sorted(expected)
    d = np.array([expected[i][0] for i in ids])
    e = np.array([expected[i][1] for i in ids])
    g = np.array([groups[i] for i in ids])
    km = cohort.analyse()
    assert [grp.name for grp in km.groups] == [name for name in cohort.group_order if (g == name).sum() >= 5]
    for grp in km.groups:
        mask = g == grp.name
        kmf = KaplanMeierFitter().fit(d[mask], e[mask])
        assert (grp.n, grp.events) == (mask.sum(), e[mask].sum())
        np.testing.assert_allclose(grp.timeline, kmf.survival_function_.index.to_numpy())
        np.testing.assert_allclose(grp.survival, kmf.survival_function_.iloc[:, 0].to_numpy())
        assert grp.median_time == (None if np.isinf(kmf.median_survival_time_) else kmf.median_survival_time_)
    if len(km.groups) == 2:
        a, b = (g == grp.name for grp in km.groups)
        test = logrank_test(d[a], d[b], event_observed_A=e[a], event_observed_B=e[b])
        assert km.logrank_p == pytest.approx(test.p_value, rel=1e-9)


@pytest.mark.parametrize("endpoint", ["death", "discharge"])
@pytest.mark.parametrize("grouping", ["age", "sex"])
def test_age_and_sex_cohorts_equal_lifelines_on_the_endpoint_written_out(
    patients: list[OutcomePatient], endpoint: str, grouping: str
) -> None:
    expected = expected_rows(patients, endpoint)
    cohort = stratify(patients, endpoint, grouping)
    assert len(expected) >= 40  # enough for two curves, or the comparison would be empty
    assert sorted(cohort.patients) == sorted(expected)
    for pid, d, e in zip(cohort.patients, cohort.durations, cohort.events, strict=True):
        assert (d, e) == expected[pid]
    by_id = {p.patient_id: p for p in patients}
    groups = {pid: expected_group(by_id[pid], grouping) for pid in expected}
    assert dict(zip(cohort.patients, cohort.groups, strict=True)) == groups
    assert len(set(groups.values())) == 2
    check_against_lifelines(cohort, expected, groups)
    assert cohort.excluded == {}


def test_discharge_cohort_is_covid_patients_with_two_cts_timed_from_the_second(
    patients: list[OutcomePatient],
) -> None:
    rows = endpoint_cohort(patients, "discharge")
    assert rows and all(p.label == "COVID-19" and len(p.cts()) >= 2 for p, _ in rows)
    assert all(day == p.cts()[1].day for p, day in rows)
    left_out = [p for p in patients if p.label == "COVID-19" and len(p.cts()) < 2]
    assert left_out  # the simulated cohort has some, so the rule is exercised
    death = endpoint_cohort(patients, "death")
    assert all(day == 0.0 and p.xrays() for p, day in death)
    assert {p.label for p, _ in death} == {"COVID-19"}
    with pytest.raises(InvalidInputError, match="Unknown endpoint"):
        endpoint_cohort(patients, "icu")


def test_a_patient_without_an_age_is_left_out_and_counted(patients: list[OutcomePatient]) -> None:
    rows = endpoint_cohort(patients, "death")
    ageless = dataclasses.replace(rows[0][0], age=None)
    changed = [ageless if p is rows[0][0] else p for p in patients]
    cohort = stratify(changed, "death", "age", age_cut=50)
    assert ageless.patient_id not in cohort.patients
    assert cohort.excluded == {"no value for the grouping": 1}
    assert cohort.group_order == ("age < 50", "age >= 50")


def clinical_design(patients: list[OutcomePatient]) -> np.ndarray:
    return np.column_stack([[p.age / 10.0 for p in patients], [1.0 if p.sex == "M" else 0.0 for p in patients]])


@pytest.mark.parametrize("endpoint", ["death", "discharge"])
def test_clinical_probabilities_are_out_of_fold(patients: list[OutcomePatient], endpoint: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rows = endpoint_cohort(patients, endpoint)
    cohort = stratify(patients, endpoint, "clinical")
    eligible = [p for p, _ in rows]
    day = dict((p.patient_id, d) for p, d in rows)
    truth = {
        p.patient_id: (p.high_risk(day[p.patient_id]) if endpoint == "discharge" else p.outcome == "died")
        for p in eligible
        if (endpoint == "death" and p.outcome in ("died", "discharged"))
        or (endpoint == "discharge" and p.high_risk(day[p.patient_id]) is not None)
    }
    known = [p for p in eligible if p.patient_id in truth]
    unknown = [p for p in eligible if p.patient_id not in truth]
    x, y = clinical_design(known), np.array([int(truth[p.patient_id]) for p in known])
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    fitter = LogisticRegression()
    expected = cross_val_predict(fitter, x, y, cv=folds, method="predict_proba")[:, 1]
    got = np.array([cohort.risk[p.patient_id] for p in known])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-9)
    in_sample = fitter.fit(x, y).predict_proba(x)[:, 1]
    assert np.abs(got - in_sample).max() > 1e-4  # the comparison tells out-of-fold from in-sample
    if unknown:  # still in hospital with a short stay so far: predicted by a fit on all the others
        fit_all = fitter.fit(x, y).predict_proba(clinical_design(unknown))[:, 1]
        np.testing.assert_allclose([cohort.risk[p.patient_id] for p in unknown], fit_all, atol=1e-9)
    assert cohort.truth == truth
    base_rate = float(np.mean(list(truth.values())))  # high risk above the average risk
    assert cohort.threshold == pytest.approx(base_rate)
    assert cohort.groups == [HIGH if cohort.risk[pid] >= base_rate else LOW for pid in cohort.patients]
    expected_rows_ = expected_rows(patients, endpoint)
    check_against_lifelines(cohort, expected_rows_, dict(zip(cohort.patients, cohort.groups, strict=True)))


def test_held_out_only_keeps_a_models_held_out_patients(patients: list[OutcomePatient]) -> None:
    def model(held: list[str]) -> SimpleNamespace:
        return SimpleNamespace(card=SimpleNamespace(training={"data": {"held_out_patients": held}}))

    some = [p.patient_id for p in patients[:5]] + ["someone-else"]
    assert held_out_only(model(some), patients) == patients[:5]
    # Trained on another cohort (none of its held-out names here), or no model: everyone.
    assert held_out_only(model(["P-NOT-HERE"]), patients) == patients
    assert held_out_only(SimpleNamespace(card=SimpleNamespace(training={})), patients) == patients
    assert held_out_only(None, patients) == patients


def test_groupings_that_cannot_be_made_are_refused(patients: list[OutcomePatient]) -> None:
    with pytest.raises(InvalidInputError, match="needs the survival model"):
        stratify(patients, "death", "model")
    with pytest.raises(InvalidInputError, match="needs the prognosis-2 model"):
        stratify(patients, "discharge", "model", models={"survival": object()})
    with pytest.raises(InvalidInputError, match="1-scan model predicts time to discharge"):
        stratify(patients, "death", "model-1scan", models={"prognosis-1": object()})
    with pytest.raises(InvalidInputError, match="Unknown grouping"):
        stratify(patients, "death", "height")
    with pytest.raises(InvalidInputError, match="Unknown s\\(t\\) feature"):
        stratify(patients, "discharge", "age", s_feature="peak")


def test_roles_of_the_registered_models(survival_weights: Path) -> None:  # noqa: F811
    roles = model_role_ids(ModelRegistry(survival_weights, device=torch.device("cpu")))
    assert roles == {
        "survival": SURVIVAL_ID,
        "prognosis-1": PROGNOSIS_IDS[1],
        "prognosis-2": PROGNOSIS_IDS[2],
        "s": CT_ID,
    }
    assert [role_of("discharge", g) for g in ("model", "model-1scan", "s", "age")] == [
        "prognosis-2",
        "prognosis-1",
        "s",
        None,
    ]
    assert role_of("death", "model") == "survival"


# -- the small demo library ----------------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["death", "discharge"])
@pytest.mark.parametrize("grouping", ["age", "sex"])
def test_a_six_patient_library_is_not_enough_and_says_so(demo_library: Path, endpoint: str, grouping: str) -> None:
    cohort = stratify(library_patients(open_library(demo_library, create=False)), endpoint, grouping)
    with pytest.raises(NotEnoughDataError) as err:
        cohort.analyse()
    message = str(err.value)
    assert "Kaplan-Meier" in message and "at least" in message
    assert "Traceback" not in message and "Error" not in message


@pytest.mark.parametrize("endpoint", ["death", "discharge"])
def test_clinical_factors_on_too_few_patients_are_not_enough_data(demo_library: Path, endpoint: str) -> None:
    """Too few patients to fit age and sex is the same situation as too few for a curve: the
    page shows it as information (st.info), not as an error in what the user did."""
    patients = library_patients(open_library(demo_library, create=False))
    with pytest.raises(InsufficientDataError, match="Clinical factors need at least 5 patients"):
        stratify(patients, endpoint, "clinical")


@pytest.fixture(scope="module")
def tiny_models(survival_weights: Path) -> dict:  # noqa: F811
    return load_role_models(survival_weights)


def test_model_groupings_store_their_predictions_and_read_them_back(
    library_copy: Path, tiny_models: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    library = open_library(library_copy, create=False)
    patients = library_patients(library)
    cases = [
        ("discharge", "model", "prognosis-2"),
        ("discharge", "model-1scan", "prognosis-1"),
        ("death", "model", "survival"),
    ]
    first = {}
    for endpoint, grouping, role in cases:
        model = tiny_models[role]
        name = SURVIVAL_SCORE if role == "survival" else PROGNOSIS_SCORE
        assert library.scores(model.id, score_version(model), name) == {}
        cohort = stratify(patients, endpoint, grouping, models=tiny_models, library=library)
        rows = endpoint_cohort(patients, endpoint)
        # The library's pseudonyms are not among the models' held-out demo patients: all are analysed.
        assert sorted(cohort.patients) == sorted(p.patient_id for p, _ in rows) and rows
        stored = library.scores(model.id, score_version(model), name)
        assert len(stored) == len(rows)
        # What is stored is what the model says, keyed by the study of the last scan read.
        p = rows[0][0]
        if role == "survival":
            xrays = p.xrays()[: model.card.training["config"]["max_xrays"]]
            key, logit = xrays[-1].study_id, predict_survival(model, [s.load() for s in xrays], gradcam=False).logit
            risk = 1.0 - 1.0 / (1.0 + np.exp(-logit / model.card.temperature))
        else:
            cts = p.cts()[:2][2 - model.card.architecture_kwargs["scans"] :]
            key, logit = cts[-1].study_id, predict_prognosis(model, [s.load() for s in cts]).logit
            risk = 1.0 / (1.0 + np.exp(-logit / model.card.temperature))
        assert stored[key] == pytest.approx(logit, abs=1e-5)
        assert cohort.risk[p.patient_id] == pytest.approx(risk, abs=1e-5)
        threshold = model.card.thresholds["death" if role == "survival" else "high risk"]  # the card's operating point
        assert cohort.threshold == threshold
        assert cohort.group_of(p.patient_id) == (HIGH if risk >= threshold else LOW)
        first[(endpoint, grouping)] = cohort

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the models ran again instead of reading the stored predictions")

    monkeypatch.setattr(analysis, "predict_prognosis", refuse)
    monkeypatch.setattr(analysis, "predict_survival", refuse)
    for endpoint, grouping, _ in cases:
        again = stratify(library_patients(library), endpoint, grouping, models=tiny_models, library=library)
        before = first[(endpoint, grouping)]
        assert (again.patients, again.groups, again.durations, again.events) == (
            before.patients,
            before.groups,
            before.durations,
            before.events,
        )
        assert again.risk == pytest.approx(before.risk)
