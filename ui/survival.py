"""Streamlit-aware pieces of the Survival and prognosis page: labels, the grouped cohorts
behind a progress bar (predictions are stored in the library, so only the first visit waits),
the model checks and the case report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.library.records import Patient, PatientSummary
from core.library.store import SqliteLibrary
from core.models.registry import LoadedModel
from core.survival.analysis import GroupedCohort, check_risk, role_of, stratify
from core.survival.cohort import OutcomePatient
from core.survival.km import KMAnalysis
from core.survival.predict import PrognosisPrediction, SurvivalPrediction
from ui.session import memo

ENDPOINT_LABELS: dict[str, str] = {
    "Time to discharge (prognosis)": "discharge",
    "Time to death (survival)": "death",
}
GROUPING_LABELS: dict[str, str] = {
    "model": "Model risk",
    "model-1scan": "Model risk, 1 scan",
    "clinical": "Clinical factors (age, sex)",
    "age": "Age band",
    "sex": "Sex",
    "s": "Threshold on s(t)",
}


@dataclass
class PatientView:
    """What the Patient tab computed for a library patient (the case report is made of it)."""

    record: Patient
    patient: OutcomePatient
    survival: SurvivalPrediction | None = None
    grays: list[np.ndarray] = field(default_factory=list)  # the X-rays the CNN-LSTM read, in time order
    days: list[float] = field(default_factory=list)
    prognosis: dict[str, PrognosisPrediction] = field(default_factory=dict)
    follow_day: float | None = None  # the CT the prognosis is from


def y_title(endpoint: str) -> str:
    return "Proportion still in hospital" if endpoint == "discharge" else "Proportion alive"


def patient_choices(patients: Sequence[PatientSummary]) -> dict[str, str]:
    """Selectbox labels -> pseudonyms: COVID-19 patients first, most scans first."""
    ranked = sorted(
        (p for p in patients if p.n_studies),
        key=lambda p: (p.label != "COVID-19", -p.n_ct, -p.n_xray, p.pseudonym),
    )
    return {
        f"{p.pseudonym} · {p.label or 'unlabelled'} · {_count(p.n_xray, 'X-ray')}, {_count(p.n_ct, 'CT')}": p.pseudonym
        for p in ranked
    }


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def grouped_cohort(
    library: SqliteLibrary,
    patients: list[OutcomePatient],
    endpoint: str,
    grouping: str,
    models: dict[str, LoadedModel],
    **kwargs: Any,
) -> GroupedCohort:
    """:func:`core.survival.analysis.stratify`, memoised per session; a progress bar while the
    models read scans the library has no stored prediction for."""
    role = role_of(endpoint, grouping)
    model = models.get(role) if role else None
    key = (
        "surv_grouped",
        endpoint,
        grouping,
        tuple(sorted(kwargs.items())),
        None if model is None else model.card.version,
        len(patients),
        library.counts().studies,
    )

    def compute() -> GroupedCohort:
        bar = st.empty()

        def progress(done: int, total: int) -> None:
            if total > 3:
                bar.progress(
                    done / total,
                    text=f"Reading scans for {GROUPING_LABELS[grouping].lower()}: {done} of {total} patients",
                )

        try:
            return stratify(patients, endpoint, grouping, models=models, library=library, progress=progress, **kwargs)
        finally:
            bar.empty()

    return memo(key, compute)


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


def case_report(
    library: SqliteLibrary,
    view: PatientView,
    analyses: dict[str, tuple[GroupedCohort, KMAnalysis]],
    models: dict[str, LoadedModel],
    *,
    opacity: float,
    key: str,
) -> None:
    """The download button of a library patient's case report (built on click)."""
    from core.report import report_filename_for
    from ui.report import report_download

    s_trajectory_json = _s_figure_json(library, view.record, models.get("s"))
    report_download(
        lambda: _build_report(view, analyses, s_trajectory_json, opacity),
        key=key,
        file_name=report_filename_for(view.record.pseudonym),
    )


def _s_figure_json(library: SqliteLibrary, record: Patient, s_model: LoadedModel | None) -> str | None:
    if s_model is None or not any(st_.modality == "CT" for st_ in record.studies):
        return None
    from core.trajectory.curves import patient_trajectory
    from ui.figures import trajectory_figure
    from ui.text import describe_outcome

    def build() -> str | None:
        traj = patient_trajectory(library, record.pseudonym, s_model)
        if not traj.points:
            return None
        fig = trajectory_figure(
            [p.day for p in traj.points],
            [p.value for p in traj.points],
            [p.study_id for p in traj.points],
            [f"day {p.day:g}" for p in traj.points],
            y_title="COVID3D s(t)",
            threshold=0.0,
            threshold_label="s = 0 (P = 0.5)",
            end_day=record.summary.length_of_stay_days,
            end_label=describe_outcome(record.summary, short=True),
        )
        return fig.to_json()

    return memo(("surv_s_json", s_model.card.version, record.pseudonym), build)


def _build_report(
    view: PatientView,
    analyses: dict[str, tuple[GroupedCohort, KMAnalysis]],
    s_json: str | None,
    opacity: float,
):  # noqa: ANN202 - CaseReport
    """Runs on the download's own thread: no Streamlit calls here."""
    from core.explain.overlay import png_bytes, render_overlay
    from core.report import CaseReport, ReportImage, ReportPrediction, ReportSection
    from ui.km_figure import km_figure
    from ui.report import today
    from ui.text import describe_outcome, percent

    record, patient, survival = view.record, view.patient, view.survival
    grays, days, follow_day = view.grays, view.days, view.follow_day
    s = record.summary
    predictions = []
    if survival is not None:
        predictions.append(
            ReportPrediction(
                survival.model_id,
                survival.model_version,
                f"P(survival) {percent(survival.probability)} over {len(grays)} X-rays",
                calibrated=True,
            )
        )
    for label, pred in view.prognosis.items():
        predictions.append(
            ReportPrediction(
                pred.model_id,
                pred.model_version,
                f"P(remaining stay >= 7 days) {percent(pred.probability)} ({label}, CT of day {follow_day:g})",
                calibrated=True,
            )
        )
    sections = [
        ReportSection(
            "Patient",
            text=f"{s.label or 'Diagnosis unknown'}; {s.sex or 'sex unknown'}"
            f"{'' if s.age_years is None else f', {s.age_years:g} years'}; {describe_outcome(s)}; "
            f"{len(patient.xrays())} X-rays and {len(patient.cts())} CTs in the library.",
        )
    ]
    if survival is not None and survival.maps:
        sections.append(
            ReportSection(
                "X-ray series with the CNN-LSTM's Grad-CAM (risk of death)",
                text="In time order of the days since admission.",
                images=tuple(
                    ReportImage(f"day {d:g}", png_bytes(render_overlay(g, m, "Jet", opacity)))
                    for g, m, d in zip(grays, survival.maps, days, strict=False)
                ),
            )
        )
    if s_json is not None:
        sections.append(ReportSection("COVID3D s(t) over the CTs", figure_json=s_json))
    for grouping, (cohort, analysis) in analyses.items():
        group = cohort.group_of(record.pseudonym)
        if group is None:
            continue
        g = next((x for x in analysis.groups if x.name == group), None)
        if g is None:  # the group was too small for a curve and left out of the analysis
            n = cohort.groups.count(group)
            where = f"This patient is in the group '{group}': {n} patient{'s' if n != 1 else ''}, too few for a curve."
        else:
            median = "not reached" if g.median_time is None else f"{g.median_time:g} days"
            where = f"This patient is in the group '{group}': {g.n} patients of the library, {g.events} events, median {median}."
        fig = km_figure(analysis, height=430, title=cohort.description.split(";")[0], y_title=y_title(cohort.endpoint))
        sections.append(
            ReportSection(
                f"Kaplan-Meier position ({GROUPING_LABELS[grouping].lower()}, time to {cohort.endpoint})",
                text=f"{where} {cohort.description}.",
                figure_json=fig.to_json(),
            )
        )
    notes = tuple(
        (f"day {st_.day:g}" if st_.day is not None else "day unknown", st_.note) for st_ in record.studies if st_.note
    )
    return CaseReport(
        title=f"Case review: {record.pseudonym}",
        pseudonym=record.pseudonym,
        created=today(),
        predictions=tuple(predictions),
        sections=tuple(sections),
        notes=notes,
    )
