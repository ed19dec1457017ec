"""The Case review page: it opens the demo meeting, prepares a meeting (create, add, reorder),
presents one case per screen (next / previous, progress), keeps hidden items out of sight until
the reveal, records a reader's read in the library, and shows no preparation on a read-only
screen."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.library.demo import DEMO_MEETING_TITLE
from core.review.meetings import model_card
from tests.helpers import ROOT

PAGE = str(ROOT / "pages" / "review.py")
HIDDEN = "hidden until the reveal"


def run_page(*, present: bool = False) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    if present:
        at.query_params["present"] = "1"
    at.run()
    assert not at.exception, at.exception
    return at


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def progress(at: AppTest) -> str:
    (heading,) = [m for m in markdown(at) if "Case " in m and " of " in m]
    return heading.split("\n")[-1]


def click(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def test_the_page_opens_the_demo_meeting_at_its_first_case(library) -> None:  # noqa: ANN001
    (demo,) = library.meetings()
    assert demo.title == DEMO_MEETING_TITLE
    at = run_page()
    assert at.selectbox(key="review_meeting").value == demo.id
    assert [t.label for t in at.tabs] == ["Prepare", "Present", "Summary"]
    assert progress(at) == f"Case 1 of {len(demo.cases)}"
    first = demo.cases[0].pseudonym
    assert any(m.startswith(f"### {first} · day ") for m in markdown(at))
    # The worklist lists every case in order.
    listed = [m for m in markdown(at) if m.startswith("**") and ".** P-" in m]
    assert [m.split(".** ")[1].split(" ")[0] for m in listed] == [c.pseudonym for c in demo.cases]


def test_create_a_meeting_add_two_cases_and_reorder_them(library) -> None:  # noqa: ANN001
    at = run_page()
    at.text_input(key="review_new_title").set_value("Tuesday chest meeting")
    click(at, "review_create")
    created = next(m for m in library.meetings() if m.title == "Tuesday chest meeting")
    assert at.selectbox(key="review_meeting").value == created.id
    assert created.cases == ()

    patients = library.patients()
    first, second = patients[0].pseudonym, patients[1].pseudonym
    at.selectbox(key="review_add_patient").set_value(first).run()
    click(at, "review_add")
    at.selectbox(key="review_add_patient").set_value(second).run()
    study = library.patient(second).studies[0]
    at.selectbox(key="review_add_study").set_value(study.id).run()
    at.multiselect(key="review_add_hidden").set_value(["diagnosis"]).run()
    click(at, "review_add")

    cases = library.meeting(created.id).cases
    assert [(c.pseudonym, c.study_id) for c in cases] == [(first, None), (second, study.id)]
    assert cases[1].hidden == {"diagnosis"}
    # Move the second case up: the order in the library and on the page follows.
    click(at, f"review_up_{cases[1].id}")
    assert [c.pseudonym for c in library.meeting(created.id).cases] == [second, first]
    listed = [m for m in markdown(at) if ".** P-" in m]
    assert listed[0].startswith(f"**1.** {second}, ") and listed[1].startswith(f"**2.** {first} (whole patient")
    # Removing a case takes it out of the meeting.
    click(at, f"review_remove_{cases[0].id}")
    assert [c.pseudonym for c in library.meeting(created.id).cases] == [second]


def test_presenter_mode_steps_through_cases_without_editing_controls(library) -> None:  # noqa: ANN001
    (demo,) = library.meetings()
    n = len(demo.cases)
    at = run_page(present=True)
    assert at.toggle(key="review_present").value is True
    assert not at.tabs
    keys = {b.key for b in at.button}
    assert not {"review_add", "review_create"} & keys
    assert not any(k.startswith(("review_up_", "review_down_", "review_remove_")) for k in keys)
    assert not at.multiselect
    assert progress(at) == f"Case 1 of {n}"
    assert at.button(key="review_prev").disabled
    click(at, "review_next")
    assert progress(at) == f"Case 2 of {n}"
    assert any(m.startswith(f"### {demo.cases[1].pseudonym} · day ") for m in markdown(at))
    click(at, "review_prev")
    assert progress(at) == f"Case 1 of {n}"
    # The presenter's page never shows a calendar date (not even the meeting's own day).
    assert not any(demo.date in m for m in markdown(at))


def test_hidden_items_show_only_after_the_reveal(library) -> None:  # noqa: ANN001
    (demo,) = library.meetings()
    case = demo.cases[0]
    patient = library.patient(case.pseudonym)
    at = run_page(present=True)
    if at.get("selectbox") and any(s.key == f"review_study_{case.id}" for s in at.selectbox):
        study_id = at.selectbox(key=f"review_study_{case.id}").value
    else:
        study_id = patient.studies[-1].id
    study = next(s for s in patient.studies if s.id == study_id)
    label = study.label or patient.summary.label
    assert f"**Diagnosis**: {HIDDEN}" in markdown(at)
    assert f"**Notes**: {HIDDEN}" in markdown(at)
    assert f"**Model outputs**: {HIDDEN}" in markdown(at)
    assert not any(study.note and study.note in m for m in markdown(at))
    click(at, "review_reveal")
    assert library.meeting_case(case.id).revealed
    shown = markdown(at)
    assert f"**Diagnosis**: {label}" in shown
    assert any(m.startswith("**Outcome**: ") and HIDDEN not in m for m in shown)
    assert f"**Notes**: {study.note}" in shown
    (outputs,) = [m for m in shown if m.startswith("**Model outputs**: ")]
    if study.modality == "X-ray":  # the tiny X-ray model reads it: its probability stands with its threshold
        assert "%" in outputs and "threshold" in outputs
    assert not any(HIDDEN in m for m in shown)
    # And hidden again for the next run of the meeting.
    click(at, "review_hide")
    assert not library.meeting_case(case.id).revealed
    assert f"**Diagnosis**: {HIDDEN}" in markdown(at)


def test_a_recorded_read_is_in_the_library_with_the_model_version(library, tiny_weights: Path) -> None:  # noqa: ANN001
    (demo,) = library.meetings()
    case = demo.cases[0]
    at = run_page(present=True)
    # With the Grad-CAM overlay on, the page still draws the case.
    if any(t.key == "review_cam" for t in at.toggle):
        at.toggle(key="review_cam").set_value(True).run()
        assert not at.exception, at.exception
        assert not at.error
    radio = at.radio(key=f"review_read_{case.id}")
    choice = radio.options[0]
    # No name yet: a plain message, nothing stored.
    radio.set_value(choice)
    click(at, f"review_submit_{case.id}")
    assert any("Type your name" in e.value for e in at.error)
    assert library.reads(demo.id) == []

    at.text_input(key="review_reader_input").set_value("Dr Reader").run()
    at.radio(key=f"review_read_{case.id}").set_value(choice)
    at.select_slider(key=f"review_conf_{case.id}").set_value(4)
    at.radio(key=f"review_agrees_{case.id}").set_value("no")
    at.text_input(key=f"review_comment_{case.id}").set_value("subtle left lower zone")
    click(at, f"review_submit_{case.id}")
    (read,) = library.reads(demo.id)
    assert (read.meeting_case_id, read.reader, read.read, read.confidence) == (case.id, "Dr Reader", choice, 4)
    assert read.comment == "subtle left lower zone"
    if choice in ("COVID", "not COVID"):  # a CT: no CT model among the tiny weights
        assert read.model_id is None and read.agrees_with_model is None
    else:
        assert read.agrees_with_model is False
        assert read.model_version == model_card(tiny_weights, read.model_id).version
        assert read.model_probability is not None  # what the model read is kept with the read
    assert any("Read recorded for Dr Reader" in s.value for s in at.success)
    # The name is typed once: the next case's form already knows the reader.
    click(at, "review_next")
    assert at.text_input(key="review_reader_input").value == "Dr Reader"


def test_a_read_only_screen_shows_no_preparation(library, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "1")
    at = run_page()
    assert [t.label for t in at.tabs] == ["Present", "Summary"]
    keys = {b.key for b in at.button}
    assert not {"review_add", "review_create"} & keys
    assert not any(k.startswith(("review_up_", "review_down_", "review_remove_")) for k in keys)
    assert progress(at).startswith("Case 1 of ")


def test_the_summary_tab_lists_the_disagreements_first_with_the_figures(library) -> None:  # noqa: ANN001
    (demo,) = library.meetings()
    first, second = demo.cases[0], demo.cases[1]
    # Two readers; the model said not COVID on the first case (where the room says COVID) and
    # COVID on the second (where the room agrees).
    for reader in ("Dr A", "Dr B"):
        library.add_read(first.id, reader, "COVID", 4, False, "", "m", "1", "not COVID", 0.2, 0.5)
        library.add_read(second.id, reader, "COVID", 3, True, "", "m", "1", "COVID", 0.9, 0.5)
    at = run_page()
    assert "Summary" in [t.label for t in at.tabs]
    assert any(f"{len(demo.cases)} cases, 4 reads by 2 readers" in m for m in markdown(at))
    cases = next(d.value for d in at.dataframe if "Room" in d.value.columns)
    assert list(cases["Case"][:2]) == [first.position, second.position]
    assert list(cases[""]) == ["disagree"] + [""] * (len(demo.cases) - 1)
    assert list(cases["Room"][:3]) == ["COVID", "COVID", "no reads"]
    assert cases["Model"].iloc[0] == "not COVID 20% (threshold 50%)"  # the threshold beside the probability
    figures = next(d.value for d in at.dataframe if "Reader" in d.value.columns)
    assert {"Dr A", "Dr B"} <= set(figures["Reader"])
    assert at.get("download_button")
