"""The Case review page's Summary tab over several meetings: the reads of two meetings pooled
show both meetings' cases, each with its meeting, the disagreements with the model first.

:func:`record_two_meetings` records the reads that this test and the Model performance page's
Readers tab tests (tests/pages/test_performance.py) read back.
"""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from core.library.store import SqliteLibrary
from tests.helpers import ROOT
from ui.review_summary import KAPPA

PAGE = str(ROOT / "pages" / "review.py")
SECOND_TITLE = "Second chest meeting"


def record_two_meetings(library: SqliteLibrary) -> tuple[int, int]:
    """Reads by Dr A and Dr B in the demo meeting (two cases) and in a second meeting of three
    cases; return the two meetings' ids (demo first).

    Demo meeting: the room reads COVID-19 where the model said Normal (a disagreement), then
    Viral pneumonia with the model. Second meeting: COVID-19 and Normal with the model, then
    Viral pneumonia where the model said COVID-19 (a disagreement). On COVID vs not COVID the
    room's kappa with the model is 0.00 in the demo meeting alone and 0.17 pooled.
    """
    (demo,) = library.meetings()
    second = library.create_meeting(SECOND_TITLE, "2026-01-05")
    in_demo = {c.pseudonym for c in demo.cases[:2]}
    others = [p.pseudonym for p in library.patients() if p.pseudonym not in in_demo][:3]
    cases = [library.add_to_meeting(second, name) for name in others]
    said = [
        (demo.cases[0].id, "COVID-19", "Normal", 0.3),
        (demo.cases[1].id, "Viral pneumonia", "Viral pneumonia", 0.7),
        (cases[0].id, "COVID-19", "COVID-19", 0.9),
        (cases[1].id, "Normal", "Normal", 0.2),
        (cases[2].id, "Viral pneumonia", "COVID-19", 0.8),
    ]
    for case_id, read, model_label, probability in said:
        for reader in ("Dr A", "Dr B"):
            library.add_read(
                case_id,
                reader,
                read,
                3,
                read == model_label,
                "",
                "cxr-resnet18",
                "1",
                model_label=model_label,
                model_probability=probability,
                model_threshold=0.5,
            )
    return demo.id, second


def cases_table(at: AppTest):  # noqa: ANN201
    return next(d.value for d in at.dataframe if "Room" in d.value.columns)


def test_the_summary_pools_two_meetings_with_each_case_s_meeting_disagreements_first(library) -> None:  # noqa: ANN001
    demo_id, second_id = record_two_meetings(library)
    demo = library.meeting(demo_id)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    at.selectbox(key="review_meeting").set_value(demo_id).run()
    assert not at.exception, at.exception
    chooser = at.multiselect(key=f"review_summary_meetings_{demo_id}")
    assert chooser.value == [demo_id]
    # One meeting: its cases alone, no meeting column, and its reads' CSV.
    assert "Meeting" not in cases_table(at).columns
    assert len(cases_table(at)) == len(demo.cases)
    assert at.get("download_button")

    chooser.set_value([demo_id, second_id]).run()
    assert not at.exception, at.exception
    n_cases = len(demo.cases) + 3
    assert any(f"{n_cases} cases, 10 reads by 2 readers** in these 2 meetings" in m.value for m in at.markdown)
    cases = cases_table(at)
    assert len(cases) == n_cases
    assert list(cases[""][:2]) == ["disagree", "disagree"] and set(cases[""][2:]) == {""}
    # Disagreements first, in the order the meetings were chosen; each case says its meeting.
    assert list(cases["Meeting"][:2]) == [demo.title, SECOND_TITLE]
    assert list(cases["Case"][:2]) == [1, 3]
    assert list(cases["Room"][:2]) == ["COVID-19", "Viral pneumonia"]
    assert list(cases["Model"][:2]) == ["Normal 30% (threshold 50%)", "COVID-19 80% (threshold 50%)"]
    assert set(cases["Meeting"]) == {demo.title, SECOND_TITLE}
    figures = next(d.value for d in at.dataframe if "Reader" in d.value.columns)
    pooled = figures[figures["Reader"] == "all readers"].iloc[0]
    assert pooled["Reads"] == 10
    assert pooled[KAPPA].startswith("0.17 (")
    # The CSV is one meeting's: pooled, the page says so instead of offering one.
    assert not at.get("download_button")
    assert any("choose one meeting to download" in c.value for c in at.caption)


def test_a_meeting_without_reads_says_where_to_record_them(library) -> None:  # noqa: ANN001
    (demo,) = library.meetings()
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any(
        "No read has been recorded in this meeting yet: record the room's reads in Present" in i.value for i in at.info
    )
    assert not at.get("download_button")
    at.multiselect(key=f"review_summary_meetings_{demo.id}").set_value([]).run()
    assert any("Choose at least one meeting" in i.value for i in at.info)


def test_the_minute_is_made_on_request_and_made_again_once_the_meeting_changes(library) -> None:  # noqa: ANN001
    demo_id, _ = record_two_meetings(library)
    demo = library.meeting(demo_id)
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.selectbox(key="review_meeting").set_value(demo_id).run()
    assert not [b for b in at.get("download_button") if b.proto.label == "Download the minute (HTML)"]
    at.button(key="review_minute_make").click().run()
    assert not at.exception, at.exception
    (button,) = [b for b in at.get("download_button") if b.proto.label == "Download the minute (HTML)"]
    html = at.session_state[f"review_minute_{demo_id}"][1]
    assert html.startswith("<!DOCTYPE html>") or html.lstrip().lower().startswith("<!doctype html>")
    assert all(c.pseudonym in html for c in demo.cases) and "Dr A" in html

    # A read recorded after it: the minute on offer would be out of date, so it is made again.
    library.add_read(demo.cases[2].id, "Dr C", "Normal", 2, None, "", None, None)
    at.run()
    assert not [b for b in at.get("download_button") if b.proto.label == "Download the minute (HTML)"]
    at.button(key="review_minute_make").click().run()
    assert "Dr C" in at.session_state[f"review_minute_{demo_id}"][1]
