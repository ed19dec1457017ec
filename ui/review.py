"""Helpers of the Case review page (pages/review.py): which meeting opens, presenter mode, what a
case shows on the projector before and after its reveal, the reader (the images of a case and
the model views beside them are in :mod:`ui.review_present`).

The projector shows a case by its pseudonym and days since admission only: never a name, an
original id or a calendar date (the library keeps none of the first two; dates are offsets).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import streamlit as st

from core.errors import DashboardError, MissingModelError
from core.library.demo import DEMO_MEETING_TITLE, DEMO_SOURCE
from core.library.records import Patient, Study
from core.library.store import CaseLibrary
from core.models.registry import ModelRegistry
from core.review.meetings import HIDEABLE, Meeting, MeetingCase, study_day
from core.review.model_read import ModelRead, default_model_id, model_read
from core.text import describe_outcome
from ui import resources
from ui.auth import auth_configured, current_user
from ui.session import memo

PRESENT_PARAM = "present"
READER_KEY = "review_reader_name"
UNLABELLED = "not labelled"
#: What stands in place of a hidden item until the reveal.
HIDDEN = "hidden until the reveal"

#: Presenter mode's type, large enough to read from the back of a room at 1920 x 1080.
PRESENTER_CSS = """
<style>
.stMainBlockContainer { padding-top: 1rem; max-width: 100%; }
.stMainBlockContainer p, .stMainBlockContainer li, .stMainBlockContainer label,
.stMainBlockContainer button p { font-size: 1.45rem !important; }
.stMainBlockContainer [data-testid="stCaptionContainer"] p { font-size: 1.15rem !important; }
.stMainBlockContainer [data-testid="stSelectbox"] div, .stMainBlockContainer [data-testid="stSelectbox"] input { font-size: 1.3rem !important; }
.stMainBlockContainer h1 { font-size: 2rem !important; padding-top: 0 !important; }
.stMainBlockContainer h2 { font-size: 2.3rem !important; }
.stMainBlockContainer h3 { font-size: 1.9rem !important; }
.stMainBlockContainer .st-key-review_strip p { font-size: 1.1rem !important; }
</style>
"""


def default_meeting(meetings: list[Meeting]) -> int | None:
    """The meeting the page opens on: the latest one that is not the demo teaching file, else the
    demo meeting (a fresh library has only that one); None when there is no meeting."""
    others = [m for m in meetings if m.title != DEMO_MEETING_TITLE]
    chosen = others or meetings
    return chosen[0].id if chosen else None


def presenter_requested() -> bool:
    """Whether the address asks for presenter mode (``?present=1``)."""
    return str(st.query_params.get(PRESENT_PARAM, "")).strip().lower() in ("1", "true", "yes", "on")


def presenter_css() -> None:
    """Large type for the projector (presenter mode only)."""
    st.markdown(PRESENTER_CSS, unsafe_allow_html=True)


def case_what(case: MeetingCase, patient: Patient) -> str:
    """A case in the worklist: "P-1a2b3c (whole patient)" or "P-1a2b3c, X-ray of day 4"."""
    if case.study_id is None:
        return f"{case.pseudonym} (whole patient, {len(patient.studies)} studies)"
    study = next((s for s in patient.studies if s.id == case.study_id), None)
    return f"{case.pseudonym}, " + (study_label(study) if study else f"study {case.study_id}")


def study_label(study: Study) -> str:
    """A study by modality and day: "X-ray, day 4 since admission" (never a calendar date)."""
    return f"{study.modality}, {study_day(study)}"


def case_studies(patient: Patient, case: MeetingCase) -> list[Study]:
    """The studies a case can show, in time order: its own study, or all of the patient's."""
    if case.study_id is None:
        return list(patient.studies)
    return [s for s in patient.studies if s.id == case.study_id]


def prior_of(patient: Patient, study: Study) -> Study | None:
    """The patient's latest study of the same modality before ``study``, if any."""
    earlier = []
    for s in patient.studies:
        if s.id == study.id:
            break
        if s.modality == study.modality and s.images:
            earlier.append(s)
    return earlier[-1] if earlier else None


@dataclass(frozen=True)
class Fact:
    """One hideable item of a case: its name, what it says, and whether it is out of sight now."""

    item: str
    text: str
    hidden: bool


def case_facts(case: MeetingCase, patient: Patient, study: Study) -> list[Fact]:
    """The diagnosis, outcome and notes of a case (the model outputs come from their own
    section), each marked hidden while the case hides it and is not revealed."""
    s = patient.summary
    label = study.label or s.label
    texts = {
        "diagnosis": label or UNLABELLED,
        "outcome": describe_outcome(s),
        "notes": study.note or "no note",
    }
    return [Fact(item, texts[item], item in case.hidden_now) for item in HIDEABLE if item in texts]


def compared_model_id(registry: ModelRegistry, study: Study, source: str) -> str | None:
    """The model a study is read by and the room's reads are compared with (the one the pages
    show first: :func:`core.review.model_read.default_model_id`, the demo models for demo
    patients); None when no registered model reads the study's modality."""
    try:
        return default_model_id(registry, study.modality, "demo" if source == DEMO_SOURCE else "real")
    except MissingModelError:
        return None


def case_model_read(
    library: CaseLibrary, registry: ModelRegistry, case: MeetingCase, study: Study, model_id: str
) -> ModelRead:
    """The model's read of the study shown (once per session and model version)."""
    return memo(
        ("review-model-read", study.id, model_id, registry.card(model_id).version),
        model_read,
        library,
        dataclasses.replace(case, study_id=study.id),
        registry,
        model_id,
        load=resources.model,
    )


def model_outputs(
    library: CaseLibrary, registry: ModelRegistry, case: MeetingCase, study: Study, model_id: str
) -> None:
    """The model's read of the study shown, its probability with the threshold it was held
    against (an X-ray class is the most probable of the model's classes: no threshold)."""
    try:
        card = registry.card(model_id)
        read = case_model_read(library, registry, case, study, model_id)
    except DashboardError as e:
        st.markdown(f"**Model outputs**: none ({e})")
        return
    against = (
        f"threshold {read.threshold:.0%}"
        if read.threshold is not None
        else f"no threshold: the most probable of its {len(card.labels)} classes"
    )
    said = read.label if read.label is not None else "no label (unlike its training data)"
    st.markdown(f"**Model outputs**: {said} · {read.probability:.1%} ({against})")
    st.caption(f"{read.model_id} {read.model_version}. {read.reason}")


def reader_name() -> str:
    """The reader of this session: the signed-in user where sign-in is configured, else the name
    typed once (kept in the session for every later read); "" until one is typed."""
    if auth_configured():
        return current_user()
    widget = "review_reader_input"
    if widget not in st.session_state:
        st.session_state[widget] = st.session_state.get(READER_KEY, "")
    name = st.text_input(
        "Your name (the reader)",
        key=widget,
        help="Typed once: kept for this browser session. Staff name only, never a patient's.",
    )
    st.session_state[READER_KEY] = name.strip()
    return name.strip()
