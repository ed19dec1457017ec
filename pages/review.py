"""Case review: prepare a meeting's cases, present them one per screen on a projector, reveal
what each hid until the room has read it, and record each reader's read against the model's.

Presenter mode (the sidebar's toggle, or ``?present=1`` in the address) shows one case per
screen in large type, by pseudonym and days since admission only, with no editing control; a
read-only screen (``DASHBOARD_READ_ONLY``) never shows the preparation controls either."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import streamlit as st

from core.deployment import read_only
from core.errors import DashboardError
from core.library.records import Study
from core.review.meetings import (
    CONFIDENCES,
    HIDEABLE,
    Meeting,
    MeetingCase,
    case_at,
    model_card,
    progress_text,
    read_choices,
    reads_by_case,
)
from ui import frame, resources, review, review_present, review_summary, review_uploads, warmup
from ui.library import library_or_stop, library_path

AGREES = {"yes": True, "no": False, "not sure": None}
WHOLE_PATIENT = 0
PENDING_MEETING = "review_meeting_next"

registry = frame.page("Case review")
library = library_or_stop()
editing_allowed = not read_only()
# A presenter may open this page first in a fresh process (a bookmarked ?present=1): the
# library's warm-up starts here too, in the background, as it does from Home.
warmup.start(library_path(), library)

if "review_present" not in st.session_state:
    st.session_state["review_present"] = review.presenter_requested()


def _error_line(action: Callable[[], object]) -> bool:
    """Run one library change; a plain error (and False) when the library refuses it."""
    try:
        action()
    except DashboardError as e:
        st.error(str(e))
        return False
    return True


meetings = library.meetings()
by_id = {m.id: m for m in meetings}
if PENDING_MEETING in st.session_state:  # a meeting made in the last run opens (set before its widget)
    st.session_state["review_meeting"] = st.session_state.pop(PENDING_MEETING)
if st.session_state.get("review_meeting") not in by_id:
    st.session_state["review_meeting"] = review.default_meeting(meetings)

with st.sidebar:
    st.header("Meeting")
    presenting = st.toggle(
        "Presenter mode",
        key="review_present",
        help="One case per screen in large type for a projector, without editing controls "
        "(also ?present=1 in the address). Arrow keys: next / previous case; V: reveal (Streamlit keeps R for itself).",
    )
    meeting_id = None
    if meetings:
        meeting_id = st.selectbox(
            "Meeting",
            list(by_id),
            key="review_meeting",
            format_func=lambda i: f"{by_id[i].title} ({len(by_id[i].cases)} cases)",
        )
    if editing_allowed and not presenting:
        with st.expander("New meeting", expanded=not meetings), st.form("review_new_meeting"):
            title = st.text_input("Title", key="review_new_title")
            day = st.date_input("Meeting day", value=datetime.date.today(), key="review_new_date")
            if st.form_submit_button("Create meeting", key="review_create"):
                new_id: list[int] = []
                if _error_line(lambda: new_id.append(library.create_meeting(title, day.isoformat()))):
                    st.session_state[PENDING_MEETING] = new_id[0]
                    st.rerun()
if presenting:
    st.query_params[review.PRESENT_PARAM] = "1"
elif review.PRESENT_PARAM in st.query_params:
    del st.query_params[review.PRESENT_PARAM]

if meeting_id is None:
    st.info(
        "There is no meeting yet."
        + (
            " Create one in the sidebar."
            if editing_allowed and not presenting
            else " Prepare one on an editing screen."
        )
    )
    st.stop()
meeting: Meeting = by_id[meeting_id]


def prepare(meeting: Meeting) -> None:
    """The meeting's worklist: order, what each case hides until revealed, add and remove."""
    st.subheader(f"{meeting.title} · meeting of {meeting.date}")
    if not meeting.cases:
        st.info("No case yet: add one below.")
    for case in meeting.cases:
        patient = library.patient(case.pseudonym)
        with st.container(border=True):
            what, hides, up, down, remove = st.columns([5, 5, 1, 1, 1], vertical_alignment="center")
            what.markdown(f"**{case.position}.** {review.case_what(case, patient)}")
            key = f"review_hidden_{case.id}"
            if key not in st.session_state:
                st.session_state[key] = [h for h in HIDEABLE if h in case.hidden]
            hidden = hides.multiselect("Hidden until revealed", HIDEABLE, key=key)
            if set(hidden) != set(case.hidden) and _error_line(lambda c=case, h=hidden: library.set_hidden(c.id, h)):
                st.rerun()
            if up.button("↑", key=f"review_up_{case.id}", help="Move up", disabled=case.position == 1):
                if _error_line(lambda c=case: library.move_case(meeting.id, c.id, c.position - 1)):
                    st.rerun()
            last = case.position == len(meeting.cases)
            if down.button("↓", key=f"review_down_{case.id}", help="Move down", disabled=last):
                if _error_line(lambda c=case: library.move_case(meeting.id, c.id, c.position + 1)):
                    st.rerun()
            if remove.button("✕", key=f"review_remove_{case.id}", help="Remove from the meeting (and its reads)"):
                if _error_line(lambda c=case: library.remove_from_meeting(c.id)):
                    st.session_state.pop(key, None)
                    st.rerun()

    st.subheader("Add a case")
    patients = library.patients()
    if not patients:
        st.info("The case library has no patient to add.")
        review_uploads.add_uploads(library, meeting)
        return
    names = {p.pseudonym: p for p in patients}
    c1, c2 = st.columns(2)
    pick = c1.selectbox(
        "Patient",
        list(names),
        key="review_add_patient",
        format_func=lambda n: f"{n} ({names[n].label or 'unlabelled'}; {names[n].n_xray} X-rays, {names[n].n_ct} CTs)",
    )
    studies = {s.id: s for s in library.patient(pick).studies}
    study_id = c2.selectbox(
        "Whole patient or one study",
        [WHOLE_PATIENT, *studies],
        key="review_add_study",
        format_func=lambda i: "Whole patient" if i == WHOLE_PATIENT else review.study_label(studies[i]),
    )
    hidden = st.multiselect("Hidden until revealed", HIDEABLE, default=list(HIDEABLE), key="review_add_hidden")
    if st.button("Add to the meeting", key="review_add", type="primary"):
        study = None if study_id == WHOLE_PATIENT else int(study_id)
        if _error_line(lambda: library.add_to_meeting(meeting.id, pick, study, hidden)):
            st.rerun()
    review_uploads.add_uploads(library, meeting)


def _position(meeting: Meeting) -> tuple[str, int]:
    key = f"review_pos_{meeting.id}"
    position = min(max(int(st.session_state.get(key, 1)), 1), len(meeting.cases))
    st.session_state[key] = position
    return key, position


def _step(key: str, to: int) -> None:
    st.session_state[key] = to


def model_outputs(case: MeetingCase, study: Study, model_id: str | None) -> None:
    """What the model said about the study shown (each probability with its threshold), or that
    it is hidden until the reveal."""
    if "model outputs" in case.hidden_now:
        st.markdown(f"**Model outputs**: {review.HIDDEN}")
    elif model_id is None:
        st.markdown(f"**Model outputs**: no registered model reads a {study.modality} study.")
    else:
        review.model_outputs(library, registry, case, study, model_id)


def record_read(case: MeetingCase, study: Study, model_id: str | None) -> None:
    """The room's reads of the case: each reader's read, confidence, agreement with ``model_id``
    (the model whose outputs the reveal shows) and comment."""
    reads = reads_by_case(library.reads(case.meeting_id)).get(case.id, [])
    st.subheader("Your read")
    reader = review.reader_name()
    choices = read_choices([study.modality])
    with st.form(f"review_read_form_{case.id}"):
        read = st.radio("Read", choices, index=None, horizontal=True, key=f"review_read_{case.id}")
        c1, c2 = st.columns(2)
        confidence = c1.select_slider(
            "Confidence (1 = a guess, 5 = certain)", CONFIDENCES, value=3, key=f"review_conf_{case.id}"
        )
        agrees = c2.radio(
            f"Agrees with the model ({model_id})" if model_id else "Agrees with the model (none registered)",
            list(AGREES),
            index=2,
            horizontal=True,
            key=f"review_agrees_{case.id}",
            disabled=model_id is None,
        )
        comment = st.text_input(
            "Comment",
            key=f"review_comment_{case.id}",
            help="What you saw. No patient names or other identifiers.",
        )
        submitted = st.form_submit_button("Record read", key=f"review_submit_{case.id}", type="primary")
    if submitted:
        if not reader:
            st.error("Type your name above first: each read is recorded under its reader.")
        elif read is None:
            st.error("Choose a read first.")
        else:
            version = model_card(resources.weights_dir(), model_id).version if model_id else None
            said = None
            if model_id:  # what the model read is kept with the read, for the agreement figures
                try:
                    said = review.case_model_read(library, registry, case, study, model_id)
                except DashboardError:
                    said = None
            if _error_line(
                lambda: library.add_read(
                    case.id,
                    reader,
                    read,
                    confidence,
                    AGREES[agrees] if model_id else None,
                    comment,
                    model_id,
                    version,
                    model_label=said.label if said else None,
                    model_probability=said.probability if said else None,
                    model_threshold=said.threshold if said else None,
                )
            ):
                st.success(f"Read recorded for {reader}: {read}, confidence {confidence}.")
                reads = reads_by_case(library.reads(case.meeting_id)).get(case.id, [])
    st.caption(
        f"{len(reads)} reads of this case"
        + (": " + ", ".join(r.reader for r in reads) if reads else "")
        + ". Recording again replaces your earlier read."
    )


def unlike_training_data(case: MeetingCase, study: Study, model_id: str) -> None:
    """A warning beside a drawn map when its model finds the study unlike its training data (the
    map then has no grounds); said before the reveal too, as it gives no diagnosis away."""
    try:
        read = review.case_model_read(library, registry, case, study, model_id)
    except DashboardError:
        return  # the model outputs say why the model cannot read the study
    if read.in_distribution is False:
        st.warning(f"{model_id} finds this study unlike the images it was trained on: its map has no grounds here.")


def present(meeting: Meeting, *, large: bool) -> None:
    """One case of the meeting: its images, what it hides until revealed, and the room's reads."""
    if not meeting.cases:
        st.info("This meeting has no cases yet.")
        return
    key, position = _position(meeting)
    case = case_at(meeting, position)
    patient = library.patient(case.pseudonym)
    studies = review.case_studies(patient, case)
    if not studies:
        st.info(f"{case.pseudonym} has no study to show.")
        return
    prev, where, reveal, nxt = st.columns([1.2, 4, 1.4, 1.2], vertical_alignment="center")
    images, facts = st.columns([3, 1] if large else [2, 1])
    with facts:
        if len(studies) > 1:
            ids = [s.id for s in studies]
            chosen = st.selectbox(
                "Study",
                ids,
                index=len(ids) - 1,
                key=f"review_study_{case.id}",
                format_func=lambda i: review.study_label(next(s for s in studies if s.id == i)),
            )
            study = next(s for s in studies if s.id == chosen)
        else:
            study = studies[0]
        model_id = review.compared_model_id(registry, study, patient.summary.source)
        cam = review_present.cam_available(registry, study, model_id) and st.toggle(
            "Grad-CAM overlay",
            key="review_cam",
            help="Where the model looked: the X-ray model's map, or COVID3D's 3D map on the CT slice shown.",
        )

    prev.button(
        "Previous",
        key="review_prev",
        shortcut="ArrowLeft",
        on_click=_step,
        args=(key, position - 1),
        disabled=position == 1,
        use_container_width=True,
    )
    where.markdown(f"### {case.pseudonym} · {review.study_day(study)}\n{progress_text(meeting, case).capitalize()}")
    if case.revealed:
        if reveal.button("Hide again", key="review_hide", use_container_width=True):
            if _error_line(lambda: library.reveal(case.id, False)):
                st.rerun()
    elif reveal.button("Reveal", key="review_reveal", shortcut="v", type="primary", use_container_width=True):
        if _error_line(lambda: library.reveal(case.id, True)):
            st.rerun()
    nxt.button(
        "Next",
        key="review_next",
        shortcut="ArrowRight",
        on_click=_step,
        args=(key, position + 1),
        disabled=position == len(meeting.cases),
        use_container_width=True,
    )

    cam_model = model_id if cam else None
    prior = review.prior_of(patient, study)
    with images:  # the CT slider goes beside the images, under the Grad-CAM toggle
        if prior is not None:
            review_present.show_pair(library, registry, prior, study, cam_model=cam_model, height=440, controls=facts)
        else:
            review_present.show_single(library, registry, study, cam_model=cam_model, height=480, controls=facts)
        # The similar patients and the s(t) curve side by side under the images: one screen.
        strip, curve = st.columns([3, 2]) if review_present.has_ct_series(patient) else (st.container(), None)
        with strip:
            review_present.similar_strip(library, registry, patient, case, study)
        if curve is not None:
            with curve:
                review_present.st_curve(library, registry, patient, case, study)
    with facts:
        if cam_model is not None:
            unlike_training_data(case, study, cam_model)
        st.subheader("Revealed" if case.revealed else "Hidden until the reveal" if case.hidden else "Known")
        for fact in review.case_facts(case, patient, study):
            shown = review.HIDDEN if fact.hidden else fact.text
            st.markdown(f"**{fact.item.capitalize()}**: {shown}")
        model_outputs(case, study, model_id)
    with st.container(border=True):
        record_read(case, study, model_id)


if presenting:
    review.presenter_css()
    present(meeting, large=True)
else:
    names = (["Prepare"] if editing_allowed else []) + ["Present", "Summary"]
    tabs = dict(zip(names, st.tabs(names), strict=True))
    if "Prepare" in tabs:
        with tabs["Prepare"]:
            prepare(meeting)
    with tabs["Present"]:
        present(meeting, large=False)
    with tabs["Summary"]:
        review_summary.summary(library, meeting)
