"""Streamlit-aware pieces of the Survival and prognosis page: labels, the grouped cohorts
behind a progress bar (predictions are stored in the library, so only the first visit waits),
and the case report's download button (:mod:`core.case_reports.survival`
assembles the report)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from core.case_reports.survival import PatientView, s_figure_json, survival_case_report
from core.library.records import PatientSummary
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.report import report_filename_for
from core.survival.analysis import GroupedCohort, role_of, stratify
from core.survival.cohort import OutcomePatient
from core.survival.km import KMAnalysis
from core.survival.km_figure import GROUPING_LABELS
from ui.report import report_download
from ui.session import memo

ENDPOINT_LABELS: dict[str, str] = {
    "Time to discharge (prognosis)": "discharge",
    "Time to death (survival)": "death",
}


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
    library: CaseLibrary,
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


def case_report(
    library: CaseLibrary,
    view: PatientView,
    analyses: dict[str, tuple[GroupedCohort, KMAnalysis]],
    models: dict[str, LoadedModel],
    *,
    opacity: float,
    key: str,
) -> None:
    """The download button of a library patient's case report (built on click, on the download's
    own thread; COVID3D's s(t) figure is made now, once per session)."""
    s_model, record = models.get("s"), view.record
    s_json = None
    if s_model is not None:
        s_json = memo(("surv_s_json", s_model.card.version, record.pseudonym), s_figure_json, library, record, s_model)
    report_download(
        lambda: survival_case_report(view, analyses, s_json, opacity),
        key=key,
        file_name=report_filename_for(record.pseudonym),
    )
