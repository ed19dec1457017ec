"""core.trajectory.changes: the Trajectories page's tables of what changed between one patient's
consecutive scans, as a user reads them (score, slope to the next scan, days between two X-rays,
change of a finding, its category)."""

from __future__ import annotations

import pytest

from core.library.records import PatientSummary
from core.trajectory.changes import findings_changes, point_rows
from core.trajectory.curves import Point, Trajectory, curve_features

SUMMARY = PatientSummary("P-TEST", "test", "COVID-19", None, None, None, None, None, None, None, 4, 0, 4)


def _trajectory(days: list[float], values: list[float]) -> Trajectory:
    points = tuple(Point(i, i, d, None, d, v, v / 10) for i, (d, v) in enumerate(zip(days, values, strict=True)))
    return Trajectory(SUMMARY, "m", "v1", "s", "admission", points, curve_features(days, values))


def test_each_scan_shows_its_score_and_the_slope_to_the_next() -> None:
    rows = point_rows(_trajectory([0.0, 2.0, 6.0], [1.0, 3.0, -1.0]))
    assert [r["day"] for r in rows] == [0.0, 2.0, 6.0]
    assert [r["score"] for r in rows] == [1.0, 3.0, -1.0]
    assert [r["P(COVID+)"] for r in rows] == [0.1, 0.3, -0.1]
    # (3 - 1) / 2 days, then (-1 - 3) / 4 days; the last scan has no next one.
    assert [r["slope to next (per day)"] for r in rows] == pytest.approx([1.0, -1.0, None])
    assert all(r["1st derivative"] is not None and r["2nd derivative"] is not None for r in rows)


def test_two_scans_have_no_second_derivative_and_one_scan_no_slope() -> None:
    two = point_rows(_trajectory([1.0, 5.0], [0.0, 2.0]))
    assert [r["slope to next (per day)"] for r in two] == pytest.approx([0.5, None])
    assert [r["1st derivative"] for r in two] == pytest.approx([0.5, 0.5])
    assert [r["2nd derivative"] for r in two] == [None, None]

    (one,) = point_rows(_trajectory([3.0], [0.4]))
    assert one["slope to next (per day)"] is one["1st derivative"] is one["2nd derivative"] is None


def test_two_scans_on_one_day_share_that_days_slope() -> None:
    rows = point_rows(_trajectory([0.0, 2.0, 2.0, 4.0], [1.0, 3.0, 5.0, 0.0]))  # day 2 averages to 4
    assert len(rows) == 4
    assert [r["slope to next (per day)"] for r in rows] == pytest.approx([1.5, -2.0, -2.0, None])


def test_findings_change_between_sequential_xrays() -> None:
    per_xray = [
        (10, 0.0, {"Lung Opacity": 0.20, "Edema": 0.50}),
        (11, 3.0, {"Lung Opacity": 0.45, "Edema": 0.40}),
        (12, 7.0, {"Lung Opacity": 0.40, "Edema": 0.10}),
        (13, 8.0, {"Lung Opacity": 0.10, "Edema": 0.10}),
    ]
    notes = {12: "Compared with the prior radiograph of day 3: increased opacities.", 13: "No comparison."}
    first, second, third = findings_changes(per_xray, notes)

    assert (first.first_study, first.second_study) == (10, 11)
    assert first.pair == "day 0 -> 3" and first.days_between == 3.0
    assert first.change == pytest.approx({"Lung Opacity": 0.25, "Edema": -0.10})
    assert (first.category, first.category_from) == ("Worse", "rule")  # opacity up by more than 0.1

    # The note's comparison with the prior wins over the small change it would get by the rule.
    assert second.pair == "day 3 -> 7" and second.days_between == 4.0
    assert second.change["Lung Opacity"] == pytest.approx(-0.05)
    assert (second.category, second.category_from) == ("Worse", "note")

    assert third.days_between == 1.0
    assert (third.category, third.category_from) == ("Improved", "rule")


def test_one_xray_has_no_change() -> None:
    assert findings_changes([(1, 0.0, {"Lung Opacity": 0.3})], {}) == []
