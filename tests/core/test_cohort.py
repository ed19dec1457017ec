"""The cohort simulator: determinism, the s(t)-shaped course, outcomes that follow the course."""

from __future__ import annotations

import numpy as np
import pytest

from core.demo.cohort import (
    DATA_FREEZE_DAY,
    DISCHARGE_SEVERITY,
    MAX_CTS,
    MAX_XRAYS,
    simulate_cohort,
)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(300, seed=0)


def test_same_seed_same_cohort_and_prefix_stability() -> None:
    a, b = simulate_cohort(40, seed=3), simulate_cohort(40, seed=3)
    assert a == b
    assert simulate_cohort(10, seed=3).patients == a.patients[:10]
    assert simulate_cohort(40, seed=4) != a


def test_labels_ages_and_sexes_are_plausible(cohort) -> None:
    labels = [p.label for p in cohort]
    assert 0.55 < labels.count("COVID-19") / len(labels) < 0.75
    assert labels.count("Viral pneumonia") > 30 and labels.count("Normal") > 15
    ages = np.array([p.age for p in cohort])
    assert ages.min() >= 20 and ages.max() <= 95 and 50 < np.median(ages) < 65
    assert {p.sex for p in cohort} == {"M", "F"}


def test_course_is_high_at_presentation_peaks_after_a_week_and_tapers(cohort) -> None:
    covid = [p for p in cohort if p.label == "COVID-19"]
    for p in covid:
        c = p.course
        assert 6.0 <= c.peak_day <= 11.0
        at_admission = p.severity(0)
        assert 0.45 * c.peak - 1e-9 <= at_admission <= 0.75 * c.peak + 1e-9
        assert p.severity(c.peak_day) == pytest.approx(c.peak)
        assert p.severity(c.peak_day - 2) < c.peak and p.severity(c.peak_day + 2) <= c.peak + 1e-9 or c.dies
        if p.outcome == "discharged":
            # Discharged once recovered: severity at discharge is low.
            assert p.severity(p.length_of_stay_days) < DISCHARGE_SEVERITY + 1e-6


def test_outcomes_depend_on_the_course_and_weakly_on_age(cohort) -> None:
    sick = [p for p in cohort if p.course is not None]
    died = [p for p in sick if p.outcome == "died"]
    discharged = [p for p in sick if p.outcome == "discharged"]
    assert 5 <= len(died) <= 0.25 * len(sick)
    assert np.mean([p.course.peak for p in died]) > np.mean([p.course.peak for p in discharged]) + 0.1
    # Length of stay of survivors grows with the peak day and the recovery width.
    los = np.array([p.length_of_stay_days for p in discharged])
    expected = np.array([p.course.recovery_day() for p in discharged])
    assert np.corrcoef(los, expected)[0, 1] > 0.9
    # ... and weakly with age.
    ages = np.array([p.age for p in discharged])
    assert 0.0 < np.corrcoef(ages, los)[0, 1] < 0.6
    # Seed 003's split: the median remaining stay from a CT is about a week.
    remaining = [p.remaining_stay_days(s.day) for p in sick for s in p.scans if s.modality == "CT"]
    assert 5 <= np.median(remaining) <= 9


def test_scans_are_in_time_order_within_the_stay(cohort) -> None:
    for p in cohort:
        days = [s.day for s in p.scans]
        assert days == sorted(days)
        assert [s.index for s in p.scans] == list(range(len(p.scans)))
        assert all(0 <= d <= p.length_of_stay_days for d in days)
        assert all(s.onset_day == s.day + p.onset_to_admission_days for s in p.scans)
        assert sum(s.modality == "X-ray" for s in p.scans) <= MAX_XRAYS
        assert sum(s.modality == "CT" for s in p.scans) <= MAX_CTS
        assert p.scans[0].modality in ("X-ray", "CT") and p.scans[0].day == 0
    with_two_ct = [p for p in cohort if sum(s.modality == "CT" for s in p.scans) >= 2]
    assert len(with_two_ct) > 0.5 * len(cohort)


def test_censoring_at_the_data_freeze(cohort) -> None:
    censored = [p for p in cohort if p.censored]
    assert censored, "some patients are still in hospital when the data are frozen"
    for p in censored:
        assert p.admission_calendar_day + p.length_of_stay_days == DATA_FREEZE_DAY
        assert p.survived is None
    for p in cohort:
        if not p.censored:
            assert p.admission_calendar_day + p.length_of_stay_days <= DATA_FREEZE_DAY


def test_normal_patients_have_no_disease(cohort) -> None:
    for p in (p for p in cohort if p.label == "Normal"):
        assert p.course is None and p.outcome == "discharged"
        assert all(s.severity == 0.0 for s in p.scans)


@pytest.mark.parametrize("n, seed", [(0, 0), (-3, 0), (10, -1), (2.5, 0), (True, 0)])
def test_bad_arguments_are_refused(n, seed) -> None:
    with pytest.raises(ValueError):
        simulate_cohort(n, seed)
