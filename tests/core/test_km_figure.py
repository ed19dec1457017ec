"""core.survival.km_figure: what a reader of the Kaplan-Meier figure sees: one curve, band and set of censor
marks per group, the at-risk table's numbers, the p-value and hazard ratio, the legend."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest

from core.survival.km import KMAnalysis, km_analysis
from core.survival.km_figure import KM_COLOURS, comparison_text, format_p, km_figure


def synthetic(seed: int, sizes: dict[str, int], scales_days: dict[str, float]):
    rng = np.random.default_rng(seed)
    groups = np.array([name for name, n in sizes.items() for _ in range(n)], dtype=object)
    event_days = rng.exponential([scales_days[g] for g in groups])
    censor_days = rng.uniform(2.0, 40.0, groups.size)
    return np.minimum(event_days, censor_days), event_days <= censor_days, groups


@pytest.fixture(scope="module")
def analysis() -> KMAnalysis:
    d, e, g = synthetic(11, {"Low risk": 40, "High risk": 35}, {"Low risk": 20.0, "High risk": 7.0})
    return km_analysis(d, e, g, endpoint="discharge", group_order=["Low risk", "High risk"])


@pytest.fixture(scope="module")
def figure(analysis) -> go.Figure:
    return km_figure(analysis, title="Time to discharge", y_title="Proportion still in hospital")


def traces_of(fig: go.Figure, group: str) -> list[go.Scatter]:
    return [t for t in fig.data if t.legendgroup == group]


def test_each_group_has_a_step_curve_a_band_censor_marks_and_an_at_risk_row(analysis, figure) -> None:
    assert len(figure.data) == 4 * len(analysis.groups)
    for grp, colour in zip(analysis.groups, KM_COLOURS, strict=False):
        curve, *others = [t for t in traces_of(figure, grp.name) if t.showlegend is not False]
        assert others == []
        assert curve.line.shape == "hv" and curve.line.color == colour
        assert list(curve.x) == list(grp.timeline) and list(curve.y) == list(grp.survival)
        assert "S(t)" in curve.hovertemplate and "95% CI" in curve.hovertemplate
        band = next(t for t in traces_of(figure, grp.name) if t.fill == "toself")
        r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        assert band.fillcolor.startswith(f"rgba({r}, {g}, {b}, ")
        # The band's polygon spans exactly the lower and upper confidence limits.
        assert min(band.y) == min(grp.ci_lower) and max(band.y) == max(grp.ci_upper)
        marks = next(t for t in traces_of(figure, grp.name) if t.mode == "markers")
        assert marks.marker.symbol == "cross-thin" and marks.marker.line.width >= 1
        assert list(marks.x) == list(grp.censor_times) and list(marks.y) == list(grp.censor_survival)


def test_the_at_risk_row_shows_the_analysis_numbers_under_the_curves(analysis, figure) -> None:
    rows = [t for t in figure.data if t.mode == "text"]
    assert [t.y[0] for t in rows] == [grp.name for grp in analysis.groups]
    for row, grp, colour in zip(rows, analysis.groups, KM_COLOURS, strict=False):
        assert row.xaxis == "x2" and row.yaxis == "y2"
        assert list(row.x) == list(analysis.at_risk_times)
        assert list(row.text) == [str(n) for n in grp.at_risk]
        assert row.textfont.color == colour
    assert list(figure.layout.xaxis.tickvals) == list(analysis.at_risk_times)
    assert any(a.text == "<b>Number at risk</b>" for a in figure.layout.annotations)
    assert list(figure.layout.yaxis2.categoryarray) == ["High risk", "Low risk"]  # first group on top


def test_the_corner_shows_the_p_value_and_hazard_ratio(analysis, figure) -> None:
    lo, hi = analysis.hazard_ratio_ci
    text = comparison_text(analysis)
    assert f"log-rank p {format_p(analysis.logrank_p)}" in text
    assert f"HR {analysis.hazard_ratio:.2f} (95% CI {lo:.2f}-{hi:.2f})" in text
    assert any(a.text == text for a in figure.layout.annotations)


def test_legend_names_carry_n_events_and_median(analysis, figure) -> None:
    names = [t.name for t in figure.data if t.showlegend is not False]
    for grp, name in zip(analysis.groups, names, strict=True):
        assert name == f"{grp.name} (n={grp.n}, {grp.events} events, median {grp.median_time:.1f} d)"


def test_axes_titles_and_range(figure) -> None:
    assert tuple(figure.layout.yaxis.range) == (0, 1.02)
    assert figure.layout.yaxis.title.text == "Proportion still in hospital"
    assert figure.layout.xaxis.title.text == "Days"
    assert figure.layout.title.text == "Time to discharge"
    assert figure.layout.font.size >= 12


@pytest.mark.parametrize(
    ("p", "text"), [(3.14e-5, "= 3.1e-05"), (0.04231, "= 0.042"), (0.001, "= 0.001"), (0.0, "< 1e-16")]
)
def test_p_values_are_formatted_for_reading(p: float, text: str) -> None:
    assert format_p(p) == text


def test_missing_hazard_ratio_and_single_group_are_said_in_the_corner() -> None:
    d, e, g = synthetic(4, {"A": 20, "B": 20}, {"A": 10.0, "B": 10.0})
    e = e & (g == "A")
    no_hr = km_analysis(d, e, g)
    assert no_hr.hazard_ratio is None
    assert "HR: not estimable" in comparison_text(no_hr)
    legend = [t.name for t in km_figure(no_hr).data if t.showlegend is not False]
    assert legend[1] == "B (n=20, 0 events, median not reached)"
    one = km_analysis(d[g == "A"], e[g == "A"], g[g == "A"])
    fig = km_figure(one)
    assert any(a.text == "One group: nothing to compare" for a in fig.layout.annotations)
    assert len(fig.data) == 4


def test_colours_can_be_chosen_per_group(analysis) -> None:
    fig = km_figure(analysis, colours={"High risk": "#000000"})
    curves = {t.legendgroup: t.line.color for t in fig.data if t.showlegend is not False}
    assert curves == {"High risk": "#000000", "Low risk": KM_COLOURS[0]}
    with pytest.raises(ValueError, match="colours"):
        km_figure(analysis, colours={"High risk": "black"})
