"""What changed between one patient's consecutive scans, as the Trajectories page tables it: each
scan's score with the slope to the next scan and the curve's derivatives there, and the change of
each finding's probability between sequential X-rays with its Worse / Stable / Improved category.

Examples
--------
>>> from core.trajectory.changes import findings_changes
>>> per_xray = [(1, 0.0, {"Lung Opacity": 0.2}), (2, 4.0, {"Lung Opacity": 0.5})]
>>> c = findings_changes(per_xray, {})[0]
>>> c.pair, c.days_between, round(c.change["Lung Opacity"], 2), c.category
('day 0 -> 4', 4.0, 0.3, 'Worse')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.trajectory.curves import Trajectory
from core.trajectory.findings_change import categorise


def point_rows(trajectory: Trajectory) -> list[dict[str, float | None]]:
    """One row per scan, in time order: its day, score and P(COVID+), the slope to the next scan
    (per day; none for the last) and the curve's 1st and 2nd derivatives at it (none where the
    curve has too few scans for them). Scans of one day share that day's values, as the curve
    averages them (:func:`core.trajectory.curves.curve_features`)."""
    f = trajectory.features
    days = sorted({p.day for p in trajectory.points})
    rows = []
    for p in trajectory.points:
        k = days.index(p.day)
        rows.append(
            {
                "day": p.day,
                "score": p.value,
                "P(COVID+)": p.probability,
                "slope to next (per day)": f.slopes[k] if k < len(f.slopes) else None,
                "1st derivative": f.first_derivative[k] if f.first_derivative else None,
                "2nd derivative": f.second_derivative[k] if f.second_derivative else None,
            }
        )
    return rows


@dataclass(frozen=True)
class FindingsChange:
    """Two consecutive X-rays of one patient: the change of each finding's probability (second
    minus first) and the pair's category."""

    first_study: int
    second_study: int
    first_day: float
    second_day: float
    change: dict[str, float]
    category: str  # Worse, Stable or Improved
    category_from: str  # "note" (the second study's comparison with the prior) or "rule"

    @property
    def days_between(self) -> float:
        return self.second_day - self.first_day

    @property
    def pair(self) -> str:
        """'day 3 -> 7'."""
        return f"day {self.first_day:g} -> {self.second_day:g}"


def findings_changes(
    per_xray: Sequence[tuple[int, float, Mapping[str, float]]], notes: Mapping[int, str | None]
) -> list[FindingsChange]:
    """The changes between each X-ray and the next.

    Parameters
    ----------
    per_xray
        (study id, day, finding probabilities) per X-ray in time order, as
        :func:`core.trajectory.findings_change.patient_findings` gives them.
    notes
        Study id -> its note: a second study's comparison with the prior names the category.
    """
    out = []
    for (a_id, a_day, a), (b_id, b_day, b) in zip(per_xray, per_xray[1:], strict=False):
        change = {f: b[f] - a[f] for f in a}
        category, category_from = categorise(change, notes.get(b_id))
        out.append(FindingsChange(a_id, b_id, a_day, b_day, change, category, category_from))
    return out
