"""The Case review page adds this session's uploads (an X-ray of the X-ray page, the CT series
of the CT volume page) to the meeting as reviewed cases; it offers no demo phantom, never shows
an upload's file name, and says plainly when an upload cannot be read."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.demo.images import demo_xrays
from core.demo.xray_phantom import generate_xray
from tests.helpers import ROOT

PAGE = str(ROOT / "pages" / "review.py")
FILE_NAME = "Jane_Doe_MRN0423.png"


def run_page(shared: list[tuple[str, bytes]], ct: list[tuple[str, bytes]] | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["shared_xrays"] = shared
    if ct is not None:
        at.session_state["shared_ct"] = ct
    at.run()
    assert not at.exception, at.exception
    return at


def page_text(at: AppTest) -> str:
    parts = [m.value for m in (*at.markdown, *at.caption, *at.success, *at.error, *at.info)]
    parts += [str(o) for s in at.selectbox for o in s.options]
    return "\n".join(parts)


def test_an_uploaded_xray_is_added_as_the_meetings_last_case(library) -> None:  # noqa: ANN001
    meeting = library.meetings()[0]
    upload = (FILE_NAME, generate_xray("COVID-19", 0.6, 77, size=256).to_png())
    at = run_page([demo_xrays()[0], upload])
    assert at.selectbox(key="review_upload_pick").options == ["X-ray 1 of this session"]  # not the demo phantom
    at.selectbox(key="review_upload_label").set_value("COVID-19")
    at.number_input(key="review_upload_admission").set_value(3.0)
    at.button(key="review_upload_add").click().run()
    assert not at.exception, at.exception

    cases = library.meeting(meeting.id).cases
    assert len(cases) == len(meeting.cases) + 1
    new = cases[-1]
    (study,) = library.patient(new.pseudonym).studies
    assert new.study_id == study.id and study.label == "COVID-19" and study.offset_admission_days == 3
    assert any(f"case {len(cases)} of the meeting, {new.pseudonym}" in s.value for s in at.success)
    assert "Jane" not in page_text(at) and "MRN0423" not in page_text(at)


def test_without_uploads_the_page_says_where_they_come_from(library) -> None:  # noqa: ANN001
    at = run_page([demo_xrays()[1]])
    assert not [s for s in at.selectbox if s.key == "review_upload_pick"]
    assert any("uploaded on the X-ray and CT volume pages" in c.value for c in at.caption)


def test_an_unreadable_ct_upload_gets_a_plain_error_and_nothing_is_added(library) -> None:  # noqa: ANN001
    meeting = library.meetings()[0]
    before = library.counts()
    at = run_page([], ct=[("a.dcm", b"not a dicom file"), ("b.dcm", b"nor this")])
    assert at.selectbox(key="review_upload_pick").value.startswith("CT series of this session")
    at.button(key="review_upload_add").click().run()
    assert not at.exception, at.exception
    assert at.error and at.error[0].value[0].isupper()
    assert library.counts() == before and len(library.meeting(meeting.id).cases) == len(meeting.cases)
