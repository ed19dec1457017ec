"""Case library: filter patients, open one patient's timeline, import a dataset, add a reviewed
upload as a new (de-identified) case, read the audit log.

The import folder must lie inside the data roots (core.deployment); a read-only screen
(``DASHBOARD_READ_ONLY``) shows no import or add action."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.deployment import READ_ONLY_ENV, confine, read_only, roots_hint
from core.errors import DashboardError
from core.labels import XRAY_LABELS
from core.library.importers import add_upload, import_source
from core.library.records import OUTCOMES, Patient, PatientFilter
from core.text import describe_outcome, describe_study_time
from ui import frame, pacs
from ui.library import library_or_stop, show_full_size

UNLABELLED = "Unlabelled"
AUDIT_ROWS = 200
IMPORT_FORMATS = {
    "covid-chestxray-dataset (metadata.csv + images/)": "cohen",
    "Class folders (COVID/, NORMAL/, Viral Pneumonia/, CT_COVID/, CT_NonCOVID/)": "folders",
    "CSV manifest (path, label, patient_id, ...)": "csv",
}

frame.heading("Case library")
library = library_or_stop()
counts = library.counts()
st.caption(f"Library: {library.location}")

c1, c2, c3, c4 = st.columns(4)
c1.metric("Patients", counts.patients)
c2.metric("Studies", counts.studies)
c3.metric("X-ray studies", counts.by_modality.get("X-ray", 0))
c4.metric("CT studies", counts.by_modality.get("CT", 0))

with st.sidebar:
    st.header("Filter patients")
    labels = st.multiselect("Diagnosis", (*XRAY_LABELS, UNLABELLED), default=[], key="library_labels")
    outcomes = st.multiselect("Outcome", OUTCOMES, default=[], key="library_outcomes")
    modality = st.selectbox("Has a study of", ("Any modality", "X-ray", "CT"), key="library_modality")
    min_studies = st.slider("At least this many studies", 1, 10, 1, key="library_min_studies")

where = PatientFilter(
    outcomes=tuple(outcomes) or None,
    modality=None if modality == "Any modality" else modality,
    min_studies=min_studies,
)
patients = library.patients(where)
if labels:
    wanted = {None if lb == UNLABELLED else lb for lb in labels}
    patients = [p for p in patients if p.label in wanted]

st.subheader(f"{len(patients)} of {counts.patients} patients")
if not counts.patients:
    commands = (
        f"`python -m core library migrate --from FOLDER --to {library.location}` moves a library folder in, and "
        f"`python -m core library build-demo --library {library.location}` draws the synthetic demo cohort into it."
    )
    if read_only():
        st.info(f"The case library is empty. This screen is read-only; from a workstation, {commands}")
    else:
        st.info(
            f"The case library is empty: import a dataset or add a reviewed upload below. From the command line, {commands}"
        )
elif not patients:
    st.info("No patient matches these filters.")
else:
    table = pd.DataFrame(
        {
            "Patient": [p.pseudonym for p in patients],
            "Diagnosis": [p.label or UNLABELLED for p in patients],
            "Sex": [p.sex or "" for p in patients],
            "Age": [None if p.age_years is None else int(p.age_years) for p in patients],
            "Outcome": [p.outcome or "" for p in patients],
            "Stay (days)": [p.length_of_stay_days for p in patients],
            "X-rays": [p.n_xray for p in patients],
            "CTs": [p.n_ct for p in patients],
        }
    )
    st.dataframe(table, hide_index=True, height=260, key="library_table")


def timeline_figure(patient: Patient) -> go.Figure:
    """Studies on a day axis, one row per modality, with the end of the stay marked."""
    fig = go.Figure()
    for modality, symbol in (("X-ray", "circle"), ("CT", "square")):
        studies = [s for s in patient.studies if s.modality == modality and s.day is not None]
        if studies:
            fig.add_trace(
                go.Scatter(
                    x=[s.day for s in studies],
                    y=[modality] * len(studies),
                    mode="markers",
                    marker=dict(size=14, symbol=symbol),
                    name=modality,
                    hovertext=[(s.note or "")[:120] for s in studies],
                    hovertemplate="day %{x}<br>%{hovertext}<extra></extra>",
                )
            )
    stay = patient.summary.length_of_stay_days
    if stay is not None:
        fig.add_vline(
            x=stay,
            line_dash="dot",
            annotation_text=describe_outcome(patient.summary, short=True),
            annotation_position="top left",
        )
    fig.update_layout(
        height=200,
        margin=dict(l=10, r=10, t=30, b=40),
        xaxis_title="days since admission"
        if any(s.offset_admission_days is not None for s in patient.studies)
        else "days since symptom onset",
        showlegend=False,
    )
    return fig


if patients:
    st.header("Patient timeline")
    names = [p.pseudonym for p in patients]
    pick = st.selectbox("Patient", names, key="library_patient")
    try:
        patient = library.patient(pick)
    except DashboardError as e:
        st.error(str(e))
        st.stop()
    s = patient.summary
    facts = [s.label or UNLABELLED, {"M": "male", "F": "female"}.get(s.sex or "", "sex unknown")]
    if s.age_years is not None:
        facts.append(f"{int(s.age_years)} years")
    facts.append(describe_outcome(s))
    if s.went_icu:
        facts.append("went to ICU")
    if s.intubated:
        facts.append("intubated")
    st.markdown(f"**{s.pseudonym}** · " + " · ".join(facts))
    st.plotly_chart(timeline_figure(patient), key="library_timeline")
    for study in patient.studies:
        with st.container(border=True):
            left, right = st.columns([1, 3])
            thumb = library.thumbnail(study.images[0].id) if study.images else None
            if thumb:
                left.image(thumb, width=180)
                with left.popover("Full size"):
                    show_full_size(library, study)
            right.markdown(
                f"**{describe_study_time(study)}** · {study.modality}" + (f" {study.view}" if study.view else "")
            )
            right.write(study.note or "No note.")
            if study.burned_in:
                right.warning(
                    f"The pixels may carry identifiers ({study.burned_in}): names and ids were removed from the "
                    "file, but not text in the image. Check it before sharing.",
                    icon=":material/warning:",
                )
            if study.findings:
                present = [name for name, v in study.findings.items() if v == 1]
                right.caption("Labelled findings: " + (", ".join(present) if present else "none"))

if read_only():
    st.caption(
        "This is a read-only screen: importing datasets and adding reviewed cases are switched off here "
        f"({READ_ONLY_ENV} is set where the dashboard runs)."
    )
else:
    st.header("Add to the library")
    tab_import, tab_upload = st.tabs(["Import a dataset", "Add a reviewed upload"])

    with tab_import:
        st.write(
            "Import a dataset folder on this computer. Everything is de-identified on the way in; "
            "cases already in the library are recognised and not added twice."
        )
        fmt_label = st.radio("Layout", tuple(IMPORT_FORMATS), key="library_import_format")
        fmt = IMPORT_FORMATS[fmt_label]
        src = st.text_input("Folder (or CSV file for a manifest)", key="library_import_path", help=roots_hint())
        options: dict[str, object] = {}
        if fmt == "cohen":
            options["include_lateral"] = st.checkbox("Also lateral views", key="library_import_lateral")
            options["include_ct"] = st.checkbox("Also CT rows", value=True, key="library_import_ct")
        if st.button("Import", key="library_import", disabled=not src.strip()):
            bar = st.progress(0.0, text="Importing")
            try:
                report = import_source(
                    library,
                    fmt,
                    confine(src),
                    progress=lambda d, t: bar.progress(d / max(t, 1), text=f"Importing: {d} of {t}"),
                    **options,
                )
            except DashboardError as e:
                bar.empty()
                st.error(str(e))
            else:
                bar.empty()
                st.success(
                    f"Added {report.added_studies} studies of {report.added_patients} new patients. "
                    f"{report.duplicates} were in the library already; {report.skipped_by_option} skipped by option."
                )
                if report.problems:
                    st.warning(
                        f"{len(report.problems)} rows were skipped:\n\n"
                        + "\n".join(f"- {p}" for p in report.problems[:50])
                    )
                if report.warnings:
                    st.warning(
                        f"{len(report.warnings)} imported studies may show identifiers in their pixels "
                        "(burned-in text); check them before sharing:\n\n"
                        + "\n".join(f"- {w}" for w in report.warnings[:50])
                    )

    with tab_upload:
        st.write(
            "Add an image you have reviewed as a new case: one X-ray, or the DICOM slices of one CT series. "
            "Names, ids, dates and institutions are removed before anything is stored."
        )
        uploaded = st.file_uploader(
            "Image file(s)", accept_multiple_files=True, key="library_upload", help="PNG, JPEG, TIFF or DICOM"
        )
        retrieved = pacs.from_pacs("library")  # nothing shown unless the deployment configures a PACS
        files = [(f.name, f.getvalue()) for f in uploaded or []] or (list(retrieved.files) if retrieved else [])
        if retrieved and not uploaded:
            st.caption(f"{retrieved.name}: added as one study when you press the button below.")
        u1, u2 = st.columns(2)
        if (
            retrieved
            and not uploaded
            and st.session_state.get("library_pacs_for") != retrieved.match.series_instance_uid
        ):
            # A series just retrieved sets the modality once; the user may still change it.
            st.session_state["library_upload_modality"] = "CT" if retrieved.match.modality == "CT" else "X-ray"
            st.session_state["library_pacs_for"] = retrieved.match.series_instance_uid
        up_modality = u1.selectbox("Modality", ("X-ray", "CT"), key="library_upload_modality")
        up_label = u2.selectbox("Reviewed diagnosis", (*XRAY_LABELS, UNLABELLED), key="library_upload_label")
        attach = st.selectbox(
            "Patient",
            ("New patient", *[p.pseudonym for p in library.patients()]),
            key="library_upload_patient",
            help="Add the study to a patient already in the library, or make a new one.",
        )
        d1, d2 = st.columns(2)
        onset = d1.number_input("Days since symptom onset (optional)", value=None, step=1.0, key="library_upload_onset")
        admission = d2.number_input(
            "Days since admission (optional)", value=None, step=1.0, key="library_upload_admission"
        )
        note = st.text_area("Note", key="library_upload_note", help="Do not write names or record numbers here.")
        if st.button("Add to the library", key="library_upload_add", disabled=not files):
            try:
                added = add_upload(
                    library,
                    files,
                    modality=up_modality,
                    label=None if up_label == UNLABELLED else up_label,
                    note=note,
                    offset_onset_days=onset,
                    offset_admission_days=admission,
                    patient=None if attach == "New patient" else attach,
                )
            except DashboardError as e:
                st.error(str(e))
            else:
                st.success(f"Added as a study of patient {added.pseudonym}.")
                if added.warning:
                    st.warning(added.warning)

    # Below the actions, so a case just added is in it. Not on a read-only (meeting-room) screen:
    # it names the staff who added cases.
    with st.expander("Audit log: who added or removed which case, and when"):
        entries = library.audit_log(limit=AUDIT_ROWS)
        if not entries:
            st.info("Nothing has been added to or removed from this library yet.")
        else:
            st.dataframe(
                pd.DataFrame(
                    [
                        (e.at.replace("T", " ").rstrip("Z"), e.user, e.action, e.pseudonym, e.study_id, e.detail)
                        for e in entries
                    ],
                    columns=["When (UTC)", "Who", "Action", "Patient", "Study", "Detail"],
                ),
                hide_index=True,
            )
            st.caption(
                f"The latest {len(entries)} entries, newest first; the whole log: "
                "`python -m core library audit`. Entries cannot be changed or removed."
            )
