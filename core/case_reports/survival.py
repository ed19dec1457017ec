"""The case report of a library patient as the Survival and prognosis page shows it: the stay,
the survival and prognosis models' outputs, the X-ray series with the CNN-LSTM's Grad-CAM,
COVID3D's s(t) over the CTs, and the patient's place on each Kaplan-Meier analysis."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.explain.overlay import png_bytes, render_overlay
from core.library.records import Patient
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.report import CaseReport, ReportImage, ReportPrediction, ReportSection, today
from core.survival.analysis import GroupedCohort
from core.survival.cohort import OutcomePatient
from core.survival.km import KMAnalysis
from core.survival.km_figure import GROUPING_LABELS, km_figure, y_title
from core.survival.predict import PrognosisPrediction, SurvivalPrediction
from core.text import describe_outcome, percent
from core.trajectory.curves import patient_trajectory
from core.trajectory.figures import trajectory_figure


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


def s_figure_json(library: CaseLibrary, record: Patient, s_model: LoadedModel | None) -> str | None:
    """COVID3D's s(t) over the patient's CTs as a plotly figure's JSON, or None without a CT or a
    model (CTs not scored yet are scored now)."""
    if s_model is None or not any(study.modality == "CT" for study in record.studies):
        return None
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


def survival_case_report(
    view: PatientView,
    analyses: dict[str, tuple[GroupedCohort, KMAnalysis]],
    s_json: str | None,
    opacity: float,
    *,
    created: str | None = None,
) -> CaseReport:
    """The report of ``view``'s patient.

    Parameters
    ----------
    view
        What the page computed for the patient.
    analyses
        Grouping name -> (grouped cohort, its Kaplan-Meier analysis): one section each, where
        the patient is in a group of it.
    s_json
        :func:`s_figure_json`'s figure, if any.
    opacity
        Of the Grad-CAM over each X-ray, as on the page.
    created
        ISO date; default today.
    """
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
        (f"day {study.day:g}" if study.day is not None else "day unknown", study.note)
        for study in record.studies
        if study.note
    )
    return CaseReport(
        title=f"Case review: {record.pseudonym}",
        pseudonym=record.pseudonym,
        created=created or today(),
        predictions=tuple(predictions),
        sections=tuple(sections),
        notes=notes,
    )
