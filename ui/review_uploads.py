"""The Case review page's "Add an upload of this session": an X-ray from the X-ray page or the CT
series from the CT volume page, put into the meeting as a reviewed case of the library.

The upload is de-identified on the way in (:func:`core.review.uploads.add_upload_to_meeting`);
on the page an upload is named by its modality and its place in the session ("X-ray 2 of this
session"), never by its file name, which may carry a patient's name. The demo phantoms the
X-ray page can load are not uploads and are not offered.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.demo.images import demo_xrays
from core.errors import DashboardError
from core.io.images import read_xray
from core.labels import XRAY_LABELS
from core.library.meeting_records import HIDEABLE, Meeting
from core.library.store import CaseLibrary
from core.review.uploads import add_upload_to_meeting
from ui.session import digest, memo, shared_ct, shared_xrays

UNLABELLED = "not labelled"
NEW_PATIENT = "New patient"
_ADDED = "review_upload_added"


@dataclass(frozen=True)
class SessionUpload:
    """One upload of this session: how the page names it, its modality and its files."""

    name: str
    modality: str
    files: tuple[tuple[str, bytes], ...]


def _demo_digests() -> frozenset[str]:
    return frozenset(digest(data) for _, data in demo_xrays())


def session_uploads() -> list[SessionUpload]:
    """The X-rays uploaded on the X-ray page (not its demo phantoms) and the CT series uploaded on
    the CT volume page, in this session."""
    demo = memo(("review-demo-xray-digests",), _demo_digests)
    xrays = [(n, d) for n, d in shared_xrays() if digest(d) not in demo]
    uploads = [SessionUpload(f"X-ray {i} of this session", "X-ray", (x,)) for i, x in enumerate(xrays, 1)]
    ct = shared_ct()
    if ct:
        uploads.append(SessionUpload(f"CT series of this session ({len(ct)} files)", "CT", tuple(ct)))
    return uploads


def _thumbnail(upload: SessionUpload) -> None:
    if upload.modality != "X-ray":
        st.caption("The CT series uploaded on the CT volume page.")
        return
    try:
        image = read_xray(upload.files[0][1], upload.name)
    except DashboardError as e:
        st.error(str(e))
        return
    st.image(image.windowed(), width=220, clamp=True)


def add_uploads(library: CaseLibrary, meeting: Meeting) -> None:
    """The section: choose an upload, say what it is, add it to the library and the meeting."""
    st.subheader("Add an upload of this session")
    added = st.session_state.pop(_ADDED, None)
    if added:
        st.success(added[0])
        if added[1]:
            st.warning(added[1])
    uploads = session_uploads()
    if not uploads:
        st.caption(
            "Images uploaded on the X-ray and CT volume pages in this session can be added here as reviewed cases "
            "(de-identified as the Case library page adds them)."
        )
        return
    by_name = {u.name: u for u in uploads}
    picture, form = st.columns([1, 3])
    with form:
        chosen = by_name[st.selectbox("Upload", list(by_name), key="review_upload_pick")]
        c1, c2 = st.columns(2)
        label = c1.selectbox(  # no diagnosis unless one is chosen: a default would label cases unseen
            "Reviewed diagnosis", (*XRAY_LABELS, UNLABELLED), index=len(XRAY_LABELS), key="review_upload_label"
        )
        admission = c2.number_input(
            "Days since admission (optional)", value=None, step=1.0, key="review_upload_admission"
        )
        patient = st.selectbox(
            "Patient",
            (NEW_PATIENT, *[p.pseudonym for p in library.patients()]),
            key="review_upload_patient",
            help="Add the study to a patient already in the library (their follow-up), or make a new one.",
        )
        note = st.text_input("Note", key="review_upload_note", help="Do not write names or record numbers here.")
        hidden = st.multiselect("Hidden until revealed", HIDEABLE, default=list(HIDEABLE), key="review_upload_hidden")
    with picture:
        _thumbnail(chosen)
    if not st.button("Add to the library and this meeting", key="review_upload_add"):
        return
    try:
        got = add_upload_to_meeting(
            library,
            meeting.id,
            list(chosen.files),
            modality=chosen.modality,
            label=None if label == UNLABELLED else label,
            note=note,
            offset_admission_days=admission,
            patient=None if patient == NEW_PATIENT else patient,
            hidden=hidden,
        )
    except DashboardError as e:
        st.error(str(e))
        return
    where = f"case {got.case.position} of the meeting, {got.case.pseudonym}"
    st.session_state[_ADDED] = (
        f"The library had this upload already: its study is now {where}."
        if got.already_in_library
        else f"Added to the library (de-identified) and as {where}.",
        got.warning,
    )
    st.rerun()
