"""The pages' "From PACS" source: search the hospital's archive, pick a series, retrieve it into
this session's memory, and hand it to the page as if it had been uploaded.

The archive is configured by the deployment (the ``[pacs]`` section of Streamlit's secrets, else
the ``DASHBOARD_PACS_*`` environment; README "PACS"), never by the page. What arrives stays in
the session (``st.session_state``): nothing is written to disk, and an import into the case
library goes through the same de-identification as a file import. A PACS that fails says so in
one plain line and the page goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import streamlit as st
from pydicom import Dataset

from core.errors import DashboardError
from core.pacs.query import PacsQuery, SeriesMatch, find_series
from core.pacs.results import describe_results
from core.pacs.retrieve import retrieve_series
from core.pacs.send import send_datasets
from core.pacs.settings import PacsSettings, settings_from_env, settings_from_mapping
from ui.auth import secrets_section

ANY_MODALITY = "any"


@dataclass(frozen=True)
class Retrieved:
    """A series retrieved in this session: what it is (to show) and its files (DICOM bytes)."""

    match: SeriesMatch
    files: tuple[tuple[str, bytes], ...]

    @property
    def name(self) -> str:
        """How the pages head it: "From PACS: CT, CHEST 1.0 (16 images)"."""
        what = ", ".join(x for x in (self.match.modality, self.match.description) if x)
        n = len(self.files)
        return f"From PACS: {what} ({n} image{'s' if n != 1 else ''})"


def pacs_settings() -> PacsSettings | None:
    """The deployment's archive: the secrets' ``[pacs]`` section, else the environment; None when
    neither configures one. Settings that do not make sense raise a plain error."""
    section = secrets_section("pacs")
    return settings_from_mapping(section) if section is not None else settings_from_env()


def _day(dicom_date: str) -> str:
    """A DICOM date (YYYYMMDD) as 2020-04-02; anything else as it is."""
    d = dicom_date.strip()
    return f"{d[:4]}-{d[4:6]}-{d[6:]}" if len(d) == 8 and d.isdigit() else d


def series_label(m: SeriesMatch) -> str:
    """A series in the chooser: modality, description, count, study date and accession."""
    count = "?" if m.n_instances is None else str(m.n_instances)
    what = m.description or m.study_description or "no description"
    return f"{m.modality} · {what} · {count} images · study of {_day(m.study_date) or 'unknown date'} · {m.accession or 'no accession'}"


def _table(matches: list[SeriesMatch]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "Patient ID": m.patient_id,
                "Name": m.patient_name.replace("^", " ").strip(),
                "Study date": _day(m.study_date),
                "Accession": m.accession,
                "Study": m.study_description,
                "Series": m.series_number,
                "Modality": m.modality,
                "Description": m.description,
                "Images": m.n_instances,
            }
            for m in matches
        ]
    )


def from_pacs(key: str, modality: str = "") -> Retrieved | None:
    """A "From PACS" expander with :func:`pacs_source` inside, where the deployment configures an
    archive; nothing at all where it does not (most laptops)."""
    try:
        settings = pacs_settings()
    except DashboardError as e:
        st.error(f"The PACS settings are not usable: {e}")
        return None
    if settings is None:
        return None
    busy = f"{key}_pacs_found" in st.session_state or f"{key}_pacs_retrieved" in st.session_state
    with st.expander("From PACS", expanded=busy):
        return pacs_source(key, settings, modality)


def pacs_source(key: str, settings: PacsSettings, modality: str = "") -> Retrieved | None:
    """The "From PACS" controls under ``key``: a search form (patient id, name, accession, dates,
    modality), the series found, and "Retrieve" for the one chosen. Returns the series retrieved
    in this session under ``key`` (until another is retrieved), or None."""
    st.caption(f"Searching {settings.where} ({settings.protocol.upper()}).")
    with st.form(f"{key}_pacs_search"):
        c1, c2, c3 = st.columns(3)
        patient_id = c1.text_input("Patient ID", key=f"{key}_pacs_id")
        name = c2.text_input("Patient name", key=f"{key}_pacs_name", help="* matches any characters: DOE*")
        accession = c3.text_input("Accession number", key=f"{key}_pacs_accession")
        d1, d2, d3 = st.columns(3)
        since = d1.date_input("Studies from", value=None, key=f"{key}_pacs_since")
        until = d2.date_input("Studies until", value=None, key=f"{key}_pacs_until")
        kinds = (ANY_MODALITY, "CT", "DX", "CR")
        wanted = d3.selectbox(
            "Modality", kinds, index=kinds.index(modality) if modality in kinds else 0, key=f"{key}_pacs_modality"
        )
        searched = st.form_submit_button("Search the PACS")
    found_key = f"{key}_pacs_found"
    if searched:
        query = PacsQuery(
            patient_id=patient_id.strip(),
            patient_name=name.strip(),
            accession=accession.strip(),
            modality="" if wanted == ANY_MODALITY else wanted,
            date_from=since,
            date_to=until,
        )
        if query == PacsQuery(modality=query.modality):
            st.error("Give a patient ID, a name, an accession number or a date: the whole archive is not listed.")
            return st.session_state.get(f"{key}_pacs_retrieved")
        try:
            with st.spinner(f"Searching {settings.where}"):
                st.session_state[found_key] = find_series(settings, query)
        except DashboardError as e:
            st.error(str(e))
            st.session_state.pop(found_key, None)
    matches: list[SeriesMatch] = st.session_state.get(found_key, [])
    if searched and not matches and found_key in st.session_state:
        st.info("No series matches the search.")
    if matches:
        st.table(_table(matches).set_index("Patient ID"))  # no download button: identifiers stay on screen
        index = st.selectbox(
            "Series",
            range(len(matches)),
            format_func=lambda i: series_label(matches[i]),
            key=f"{key}_pacs_series",
        )
        if st.button("Retrieve this series", key=f"{key}_pacs_retrieve", type="primary"):
            chosen = matches[index]
            bar = st.progress(0.0, text="Retrieving")
            try:
                files = retrieve_series(
                    settings,
                    chosen.study_instance_uid,
                    chosen.series_instance_uid,
                    expected=chosen.n_instances,
                    progress=lambda done, total: bar.progress(
                        min(done / max(total, 1), 1.0), text=f"Retrieving: {done} of {total} images"
                    ),
                )
            except DashboardError as e:
                bar.empty()
                st.error(str(e))
            else:
                bar.empty()
                st.session_state[f"{key}_pacs_retrieved"] = Retrieved(chosen, tuple(files))
    return st.session_state.get(f"{key}_pacs_retrieved")


def is_dicom(data: bytes) -> bool:
    """Whether bytes are a DICOM Part 10 file (the preamble's "DICM"): only DICOM goes back."""
    return len(data) > 132 and data[128:132] == b"DICM"


def send_results(key: str, build: Callable[[], list[Dataset]]) -> None:
    """ "Send to PACS" for an analysed DICOM study, where the deployment configures an archive: the
    results (:mod:`core.pacs.results`: a Secondary Capture of the map and a Structured Report) are
    built and listed first, and sent only when the user confirms. ``build`` makes them (it runs
    the model once more, a few seconds)."""
    try:
        settings = pacs_settings()
    except DashboardError:
        return  # said where the PACS source is drawn
    if settings is None:
        return
    pending = f"{key}_pacs_send"
    if pending not in st.session_state:
        if st.button(
            "Send the results to the PACS...",
            key=f"{key}_pacs_prepare",
            help="A DICOM capture of the map with the model's statement, and a structured report, filed with the "
            "study in the archive. You see what would be sent and confirm first.",
        ):
            try:
                with st.spinner("Building the DICOM capture and report"):
                    st.session_state[pending] = build()
            except DashboardError as e:
                st.error(str(e))
                return
        else:
            return
    datasets: list[Dataset] = st.session_state[pending]
    with st.container(border=True):
        st.markdown(f"**Send to {settings.where}?**")
        st.code("\n".join(describe_results(datasets)), language=None)
        confirm, cancel = st.columns(2)
        if confirm.button("Send", key=f"{key}_pacs_confirm", type="primary"):
            del st.session_state[pending]
            try:
                with st.spinner(f"Sending to {settings.where}"):
                    report = send_datasets(settings, datasets)
            except DashboardError as e:
                st.error(str(e))
                return
            st.success(
                f"{len(report.stored)} objects stored in {report.where}; a PACS viewer shows them with the study."
            )
            for warning in report.warnings:
                st.warning(warning)
        elif cancel.button("Cancel", key=f"{key}_pacs_cancel"):
            del st.session_state[pending]
            st.rerun()
