"""core.survival.km: every number against lifelines called directly on the same data, the at-risk
counts and the censor marks against hand counts, and the paths where there is too little data
(plain messages, no lifelines warning reaching the caller)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test, multivariate_logrank_test
from lifelines.utils import median_survival_times

from core.errors import DashboardError, InsufficientDataError
from core.survival.km import (
    MIN_PATIENTS_PER_GROUP,
    InvalidSurvivalDataError,
    KMAnalysis,
    NotEnoughDataError,
    km_analysis,
)


def synthetic(
    seed: int, sizes: dict[str, int], scales_days: dict[str, float], censor_max_days: float = 40.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exponential event times per group, uniform censoring: (days, event, group), groups interleaved."""
    rng = np.random.default_rng(seed)
    groups = np.array([name for name, n in sizes.items() for _ in range(n)], dtype=object)
    scale = np.array([scales_days[g] for g in groups])
    event_days = rng.exponential(scale)
    censor_days = rng.uniform(2.0, censor_max_days, groups.size)
    order = rng.permutation(groups.size)
    days = np.minimum(event_days, censor_days)[order]
    return days, (event_days <= censor_days)[order], groups[order]


@pytest.fixture(scope="module")
def two() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic(11, {"Low risk": 40, "High risk": 35}, {"Low risk": 20.0, "High risk": 7.0})


@pytest.fixture(scope="module")
def two_analysis(two) -> KMAnalysis:
    d, e, g = two
    return km_analysis(d, e, g, endpoint="discharge", group_order=["Low risk", "High risk"])


@pytest.fixture(scope="module")
def three() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return synthetic(12, {"A": 30, "B": 30, "C": 25}, {"A": 25.0, "B": 10.0, "C": 5.0})


def cox_direct(d, e, indicators: dict[str, np.ndarray]) -> CoxPHFitter:
    frame = pd.DataFrame({"T": d, "E": e.astype(int), **{k: v.astype(int) for k, v in indicators.items()}})
    return CoxPHFitter().fit(frame, duration_col="T", event_col="E")


def test_each_curve_band_and_median_equal_lifelines(two, two_analysis) -> None:
    d, e, g = two
    assert [grp.name for grp in two_analysis.groups] == ["Low risk", "High risk"]
    for grp in two_analysis.groups:
        mask = g == grp.name
        kmf = KaplanMeierFitter().fit(d[mask], e[mask])
        np.testing.assert_array_equal(grp.timeline, kmf.survival_function_.index.to_numpy())
        np.testing.assert_array_equal(grp.survival, kmf.survival_function_.iloc[:, 0].to_numpy())
        np.testing.assert_array_equal(grp.ci_lower, kmf.confidence_interval_.iloc[:, 0].to_numpy())
        np.testing.assert_array_equal(grp.ci_upper, kmf.confidence_interval_.iloc[:, 1].to_numpy())
        assert grp.timeline[0] == 0.0
        assert grp.median_time == kmf.median_survival_time_
        lifelines_ci = median_survival_times(kmf.confidence_interval_)
        assert grp.median_ci == (lifelines_ci.iloc[0, 0], lifelines_ci.iloc[0, 1])
        assert (grp.n, grp.events, grp.censored) == (mask.sum(), e[mask].sum(), (~e[mask]).sum())


def test_log_rank_and_hazard_ratio_of_two_groups_equal_lifelines(two, two_analysis) -> None:
    d, e, g = two
    low, high = g == "Low risk", g == "High risk"
    lr = logrank_test(d[low], d[high], event_observed_A=e[low], event_observed_B=e[high])
    assert two_analysis.logrank_p == pytest.approx(lr.p_value, rel=1e-12)
    assert two_analysis.logrank_statistic == pytest.approx(lr.test_statistic, rel=1e-12)
    assert two_analysis.logrank_p < 0.01  # scales 20 vs 7 days: the groups differ

    cph = cox_direct(d, e, {"high": high})
    lo, hi = np.exp(cph.confidence_intervals_.loc["high"].to_numpy())
    assert two_analysis.hazard_ratio == pytest.approx(cph.hazard_ratios_["high"], rel=1e-9)
    assert two_analysis.hazard_ratio > 1  # High risk is discharged sooner than the reference
    assert two_analysis.hazard_ratio_ci == pytest.approx((lo, hi), rel=1e-9)
    assert two_analysis.cox_p == pytest.approx(cph.summary.loc["high", "p"], rel=1e-9)
    assert two_analysis.hazard_ratios == {"High risk": pytest.approx((cph.hazard_ratios_["high"], lo, hi), rel=1e-9)}
    assert two_analysis.messages == ()


def test_three_groups_use_the_multivariate_log_rank_and_one_hazard_ratio_each(three) -> None:
    d, e, g = three
    analysis = km_analysis(d, e, g, group_order=["A", "B", "C"])
    mv = multivariate_logrank_test(d, g, e)
    assert analysis.logrank_p == pytest.approx(mv.p_value, rel=1e-12)
    assert analysis.logrank_statistic == pytest.approx(mv.test_statistic, rel=1e-12)
    cph = cox_direct(d, e, {"b": g == "B", "c": g == "C"})
    ci = np.exp(cph.confidence_intervals_.to_numpy())
    assert analysis.hazard_ratios["B"] == pytest.approx((cph.hazard_ratios_["b"], *ci[0]), rel=1e-9)
    assert analysis.hazard_ratios["C"] == pytest.approx((cph.hazard_ratios_["c"], *ci[1]), rel=1e-9)
    assert list(analysis.hazard_ratios) == ["B", "C"]
    assert analysis.hazard_ratio is None and analysis.hazard_ratio_ci is None and analysis.cox_p is None
    assert any("3 groups" in m and "'A'" in m for m in analysis.messages)


def test_at_risk_counts_and_km_table_add_up(two, two_analysis) -> None:
    d, e, g = two
    times = np.asarray(two_analysis.at_risk_times)
    assert times[0] == 0 and times[-1] <= d.max() < times[-1] + (times[1] - times[0])
    for grp in two_analysis.groups:
        days = d[g == grp.name]
        assert grp.at_risk == tuple(int((days >= t).sum()) for t in times)
        rows = grp.table()
        assert [r["time"] for r in rows] == list(grp.timeline)
        assert sum(r["events"] for r in rows) == grp.events
        assert sum(r["censored"] for r in rows) == grp.censored
        assert sum(r["events"] + r["censored"] for r in rows) == grp.n
        assert [r["at_risk"] for r in rows] == [int((days >= t).sum()) for t in grp.timeline]
        assert [r["survival"] for r in rows] == list(grp.survival)
        assert set(rows[0]) == {"time", "at_risk", "events", "censored", "survival", "ci_lower", "ci_upper"}


def test_censor_marks_sit_on_the_step_curve(two, two_analysis) -> None:
    d, e, g = two
    for grp in two_analysis.groups:
        censored = np.sort(d[(g == grp.name) & ~e])
        np.testing.assert_array_equal(grp.censor_times, censored)
        timeline = np.asarray(grp.timeline)
        # S(t) is right-continuous: the value at the last step time at or before t.
        expected = [grp.survival[np.searchsorted(timeline, t, side="right") - 1] for t in censored]
        assert grp.censor_survival == pytest.approx(expected, abs=1e-12)


def test_group_order_sets_the_reference_and_swapping_it_inverts_the_hazard_ratio(two, two_analysis) -> None:
    d, e, g = two
    swapped = km_analysis(d, e, g, group_order=["High risk", "Low risk"])
    assert [grp.name for grp in swapped.groups] == ["High risk", "Low risk"]
    assert swapped.reference == "High risk"
    assert swapped.hazard_ratio < 1
    assert two_analysis.hazard_ratio * swapped.hazard_ratio == pytest.approx(1.0, rel=1e-5)
    assert two_analysis.hazard_ratio_ci[0] * swapped.hazard_ratio_ci[1] == pytest.approx(1.0, rel=1e-5)
    assert swapped.logrank_p == pytest.approx(two_analysis.logrank_p, rel=1e-12)
    by_name = km_analysis(d, e, g)  # no order: sorted by name
    assert [grp.name for grp in by_name.groups] == ["High risk", "Low risk"]


@pytest.mark.parametrize(
    ("max_days", "step"),
    [(3.0, 0.5), (12.0, 2.0), (29.0, 5.0), (45.0, 7.0), (60.0, 10.0), (100.0, 14.0), (365.0, 50.0)],
)
def test_default_at_risk_step_is_round_and_gives_five_to_eight_counts(max_days: float, step: float) -> None:
    rng = np.random.default_rng(5)
    d = np.r_[rng.uniform(0, max_days, 19), max_days]
    e = np.arange(20) % 2 == 0
    analysis = km_analysis(d, e, ["x"] * 20)
    times = analysis.at_risk_times
    assert times[1] - times[0] == step
    assert 5 <= len(times) <= 8
    assert times[-1] <= max_days < times[-1] + step


def test_at_risk_every_is_used_as_given(two) -> None:
    d, e, g = two
    analysis = km_analysis(d, e, g, at_risk_every=3.0)
    assert analysis.at_risk_times == tuple(3.0 * i for i in range(int(d.max() // 3) + 1))
    with pytest.raises(ValueError, match="positive"):
        km_analysis(d, e, g, at_risk_every=0.0)


def test_too_few_patients_is_a_plain_not_enough_data_error() -> None:
    d, e, g = np.arange(1.0, 9.0), np.ones(8, bool), ["a"] * 4 + ["b"] * 4
    with pytest.raises(NotEnoughDataError) as err:
        km_analysis(d, e, g, endpoint="discharge")
    assert str(err.value) == (
        "Only 8 patients have a known time to discharge; a Kaplan-Meier analysis needs at least 10."
    )
    assert isinstance(err.value, InsufficientDataError) and isinstance(err.value, DashboardError)
    with pytest.raises(NotEnoughDataError, match="^No patients have a known time to death"):
        km_analysis([], [], [], endpoint="death")


def test_no_group_large_enough_names_the_sizes() -> None:
    d, e = np.arange(1.0, 13.0), np.ones(12, bool)
    with pytest.raises(NotEnoughDataError, match=r"No group has at least 5 patients \(a: 4, b: 4, c: 4\)"):
        km_analysis(d, e, ["a"] * 4 + ["b"] * 4 + ["c"] * 4)


def test_a_small_group_is_left_out_with_a_message(two) -> None:
    d, e, g = two
    d3, e3, g3 = np.r_[d, 1.0, 2.0, 3.0], np.r_[e, True, False, True], np.r_[g, ["Tiny"] * 3]
    analysis = km_analysis(d3, e3, g3, group_order=["Low risk", "High risk", "Tiny"])
    assert [grp.name for grp in analysis.groups] == ["Low risk", "High risk"]
    assert analysis.messages[0] == (
        f"Group 'Tiny' has only 3 patients (at least {MIN_PATIENTS_PER_GROUP} are needed for a curve); it is left out."
    )
    full = km_analysis(d, e, g, group_order=["Low risk", "High risk"])
    assert analysis.logrank_p == full.logrank_p and analysis.hazard_ratio == full.hazard_ratio


def test_a_group_without_events_has_no_hazard_ratio_and_lets_no_warning_out(two) -> None:
    d, e, g = two
    e = e & (g != "High risk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analysis = km_analysis(d, e, g, group_order=["Low risk", "High risk"])
    assert analysis.hazard_ratio is None and analysis.hazard_ratio_ci is None and analysis.cox_p is None
    assert analysis.hazard_ratios == {}
    assert "Group 'High risk' has no events: the hazard ratio cannot be estimated." in analysis.messages
    high = analysis.groups[1]
    assert high.events == 0 and set(high.survival) == {1.0} and high.median_time is None
    assert high.median_ci == (None, None)
    low, hi_mask = g == "Low risk", g == "High risk"
    lr = logrank_test(d[low], d[hi_mask], event_observed_A=e[low], event_observed_B=e[hi_mask])
    assert analysis.logrank_p == pytest.approx(lr.p_value, rel=1e-12)
    json.dumps(analysis.to_dict(), allow_nan=False)


def test_complete_separation_gives_no_hazard_ratio_rather_than_lifelines_absurd_one() -> None:
    # Every "Early" patient is discharged before any "Late" one: lifelines returns HR ~1e8 with a
    # ConvergenceWarning; the analysis says it cannot be estimated.
    rng = np.random.default_rng(3)
    d = np.r_[rng.uniform(1, 5, 20), rng.uniform(10, 20, 20)]
    e = np.r_[np.ones(20, bool), rng.random(20) < 0.5]
    g = ["Early"] * 20 + ["Late"] * 20
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analysis = km_analysis(d, e, g, group_order=["Late", "Early"])
    assert analysis.hazard_ratio is None and analysis.hazard_ratios == {}
    assert any("did not converge" in m for m in analysis.messages)
    assert analysis.logrank_p is not None and analysis.logrank_p < 1e-6


def test_a_group_without_censoring_still_has_its_hazard_ratio(two) -> None:
    # lifelines' separation check would flag it, but only after a failed fit; this fit succeeds.
    d, e, g = two
    e = e | (g == "High risk")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        analysis = km_analysis(d, e, g, group_order=["Low risk", "High risk"])
    cph = cox_direct(d, e, {"high": g == "High risk"})
    assert analysis.hazard_ratio == pytest.approx(cph.hazard_ratios_["high"], rel=1e-9)


def test_one_group_left_has_its_curve_and_nothing_to_compare(two) -> None:
    d, e, g = two
    keep = (g == "Low risk") | (np.cumsum(g == "High risk") <= 2) & (g == "High risk")
    analysis = km_analysis(d[keep], e[keep], g[keep])
    assert [grp.name for grp in analysis.groups] == ["Low risk"]
    assert analysis.logrank_p is None and analysis.logrank_statistic is None and analysis.hazard_ratio is None
    assert analysis.messages[-1] == "Only one group ('Low risk') has enough patients: nothing to compare."
    single = km_analysis(d[:6], e[:6] | True, ["All"] * 6)  # one group needs 5 patients, not 10
    assert single.groups[0].n == 6
    assert single.messages == ("There is only one group ('All'): nothing to compare.",)


def test_no_events_at_all_is_not_enough_data(two) -> None:
    d, _, g = two
    with pytest.raises(NotEnoughDataError, match=r"^None of the 75 patients had the event \(death\)"):
        km_analysis(d, np.zeros(d.size, bool), g, endpoint="death")


@pytest.mark.parametrize(
    ("durations", "events", "groups", "message"),
    [
        ([1.0, 2.0], [1, 0, 1], ["a", "a"], "2 durations, 3 events and 2 groups"),
        ([1.0, -2.0, -3.0], [1, 0, 1], ["a"] * 3, "2 durations are negative or not a number"),
        ([1.0, math.nan, 3.0], [1, 0, 1], ["a"] * 3, "1 duration is negative or not a number"),
        ([1.0, 2.0, 3.0], [1, 2, 1], ["a"] * 3, "1 event is not True/False or 1/0"),
        ([1.0, 2.0, 3.0], [1, 0, 1], ["a", None, "a"], "1 patient has no group"),
    ],
)
def test_inputs_that_are_not_patients_are_value_errors(durations, events, groups, message) -> None:
    with pytest.raises(ValueError, match=message) as err:
        km_analysis(durations, events, groups)
    assert isinstance(err.value, InvalidSurvivalDataError) and isinstance(err.value, DashboardError)


def test_group_order_must_list_every_group(two) -> None:
    d, e, g = two
    with pytest.raises(ValueError, match="does not list 'High risk'"):
        km_analysis(d, e, g, group_order=["Low risk"])


def test_a_median_never_reached_is_none_and_to_dict_is_strict_json() -> None:
    # Long times, early censoring: "Slow" stays above 0.5.
    d, e, g = synthetic(21, {"Fast": 30, "Slow": 30}, {"Fast": 5.0, "Slow": 400.0}, censor_max_days=30.0)
    analysis = km_analysis(d, e, g, group_order=["Slow", "Fast"])
    slow = analysis.groups[0]
    kmf = KaplanMeierFitter().fit(d[g == "Slow"], e[g == "Slow"])
    assert math.isinf(kmf.median_survival_time_) and slow.median_time is None
    assert slow.median_ci[1] is None  # lifelines: inf
    text = json.dumps(analysis.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["groups"][0]["median_time"] is None
    assert back["reference"] == "Slow"
    assert back["hazard_ratio"] == pytest.approx(analysis.hazard_ratio)
    assert back["hazard_ratios"]["Fast"]["ci_upper"] == pytest.approx(analysis.hazard_ratio_ci[1])
    assert back["groups"][1]["at_risk"] == list(analysis.groups[1].at_risk)
