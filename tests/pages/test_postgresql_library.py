"""Every page on a PostgreSQL library: on a copy of the demo library, and on an empty one (the
app never fills a department's database with the demo cohort on its own), where the Case
library page says how to fill it."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT

#: The home page runs inside app.py (its links need the navigation).
PAGES = (
    "app.py",
    "pages/library.py",
    "pages/survival.py",
    "pages/similar.py",
    "pages/trajectories.py",
    "pages/review.py",
)


@pytest.fixture
def empty_library(library_location: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("DASHBOARD_LIBRARY", library_location)
    monkeypatch.setenv("DASHBOARD_WARM_UP", "0")
    return library_location


def run_serving(page: str) -> AppTest:
    """Run a page; it must serve: no exception, and nothing went wrong unseen (the page frame
    turns an unexpected error into "Something went wrong")."""
    at = AppTest.from_file(str(ROOT / page), default_timeout=180).run()
    assert not at.exception, at.exception
    assert not [e.value for e in at.error if "Something went wrong" in e.value]
    return at


@pytest.mark.parametrize("library_backend", ["postgresql"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_serves_on_an_empty_postgresql_library(empty_library: str, page: str) -> None:
    run_serving(page)


@pytest.mark.parametrize("library_backend", ["postgresql"])
def test_the_case_library_page_names_the_library_and_says_how_to_fill_it(empty_library: str) -> None:
    at = run_serving("pages/library.py")
    assert f"Library: {empty_library}" in [c.value for c in at.caption]
    (empty,) = [i.value for i in at.info if "empty" in i.value]
    assert "import a dataset" in empty and f"library migrate --from FOLDER --to {empty_library}" in empty
    assert "No patient matches these filters" not in " ".join(i.value for i in at.info)


@pytest.mark.parametrize("library_backend", ["postgresql"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_serves_on_the_demo_library_in_postgresql(
    library_copy_location: str, page: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_WARM_UP", "0")
    run_serving(page)


@pytest.mark.parametrize("library_backend", ["postgresql"])
def test_similar_cases_on_an_empty_library_says_there_is_nothing_yet_not_an_error(empty_library: str) -> None:
    at = run_serving("pages/similar.py")
    assert not at.error
    assert any("has no X-ray yet" in i.value for i in at.info)
