"""How well each model grouping's risk matches the outcomes of the library's patients: one table
row per grouping (:func:`core.survival.analysis.check_risk`'s figures) and a reliability diagram."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from core.survival.analysis import GroupedCohort, check_risk
from core.survival.km import KMAnalysis
from core.survival.km_figure import GROUPING_LABELS


def model_check_rows(analyses: dict[str, tuple[GroupedCohort, KMAnalysis]], endpoint: str) -> list[dict[str, Any]]:
    """One row per model grouping: AUC, accuracy, sensitivity, specificity, Brier, confusion counts."""
    rows = []
    for grouping, (cohort, _) in analyses.items():
        m = check_risk(cohort)
        if m is None:
            continue
        (tn, fp), (fn, tp) = m["confusion_matrix"]["rows_true_columns_predicted"]

        def fmt(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        rows.append(
            {
                "stratification": GROUPING_LABELS[grouping],
                "patients": m["n"],
                ("high risk (true)" if endpoint == "discharge" else "deaths"): m["positives"],
                "ROC AUC": fmt(m["roc_auc"]),
                "accuracy": fmt(m["accuracy"]),
                "sensitivity": fmt(m["sensitivity"]),
                "specificity": fmt(m["specificity"]),
                "Brier": fmt(m["brier"]),
                "true high: predicted high / low": f"{tp} / {fn}",
                "true low: predicted high / low": f"{fp} / {tn}",
            }
        )
    return rows


def calibration_figure(analyses: dict[str, tuple[GroupedCohort, KMAnalysis]]) -> go.Figure | None:
    """Reliability diagram: observed share of high risk per quantile bin of predicted P(high risk)."""
    # Imported here: sklearn.calibration takes 3.3 s to import on a 2-core CPU, paid only when drawn.
    from sklearn.calibration import calibration_curve

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(dash="dot", color="#888"), name="perfect calibration")
    )
    palette = ("#0072B2", "#D55E00", "#009E73")
    drawn = 0
    for (grouping, (cohort, _)), colour in zip(analyses.items(), palette, strict=False):
        m = check_risk(cohort)
        if m is None or len(set(m["y"])) < 2:
            continue
        bins = max(2, min(5, len(m["y"]) // 10))
        observed, predicted = calibration_curve(m["y"], m["p"], n_bins=bins, strategy="quantile")
        fig.add_trace(
            go.Scatter(
                x=predicted,
                y=observed,
                mode="lines+markers",
                name=GROUPING_LABELS[grouping],
                line=dict(color=colour, width=2.5),
                marker=dict(size=9),
            )
        )
        drawn += 1
    if not drawn:
        return None
    fig.update_layout(
        title="Calibration on these patients",
        height=360,
        margin=dict(l=60, r=20, t=50, b=50),
        xaxis=dict(title="Predicted P(high risk)", range=[0, 1]),
        yaxis=dict(title="Observed share high risk", range=[0, 1]),
        font=dict(size=13),
        legend=dict(orientation="h", y=-0.25),
    )
    return fig
