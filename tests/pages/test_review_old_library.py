"""A demo library built before case-review meetings existed (no meeting, no record of making
one) gets the demo meeting when the app next opens it, so the Case review page is not empty
after an upgrade; a read-only screen leaves the library as it is; a demo meeting someone
deleted does not come back."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.library.demo import DEMO_MEETING_TITLE, MEETING_SETTING
from core.library.store import DATABASE_NAME, open_library
from tests.helpers import ROOT

PAGE = str(ROOT / "pages" / "review.py")


def as_before_meetings(root: Path) -> None:
    """Take the demo meeting and the record of its making out of a library, as a library built
    by a version without meetings has neither."""
    with sqlite3.connect(root / DATABASE_NAME) as con:
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("DELETE FROM meetings")
        con.execute("DELETE FROM meta WHERE key = ?", (f"setting:{MEETING_SETTING}",))
    library = open_library(root)
    assert library.meetings() == [] and library.setting(MEETING_SETTING) is None


def run_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def old_library(point_page_at: Callable[[Path], Path], tiny_weights: Path) -> Path:
    root = point_page_at(tiny_weights)
    as_before_meetings(root)
    return root


def test_an_older_demo_library_gets_the_demo_meeting_once(old_library: Path) -> None:
    at = run_page()
    (meeting,) = open_library(old_library).meetings()
    assert meeting.title == DEMO_MEETING_TITLE and meeting.cases
    assert at.selectbox(key="review_meeting").value == meeting.id
    assert any(f"Case 1 of {len(meeting.cases)}" in m.value for m in at.markdown)
    run_page()  # a second visit makes no second meeting
    assert [m.id for m in open_library(old_library).meetings()] == [meeting.id]


def test_a_read_only_screen_does_not_make_it(old_library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "1")
    at = run_page()
    assert open_library(old_library).meetings() == []
    assert any("There is no meeting yet" in i.value for i in at.info)


def test_a_deleted_demo_meeting_stays_deleted(point_page_at: Callable[[Path], Path], tiny_weights: Path) -> None:
    root = point_page_at(tiny_weights)
    with sqlite3.connect(root / DATABASE_NAME) as con:  # the app has no "delete meeting" yet
        con.execute("DELETE FROM meetings")
    run_page()
    assert open_library(root).meetings() == []
