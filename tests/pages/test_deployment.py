"""A shared deployment: typed paths outside the data roots are refused on the pages, in plain
words, and a read-only screen shows no action that adds to the case library."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.library.store import open_library
from tests.helpers import ROOT

LIBRARY_PAGE = str(ROOT / "pages" / "library.py")
PERFORMANCE_PAGE = str(ROOT / "pages" / "performance.py")


@pytest.fixture
def allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The only data root: a folder beside (not above) the datasets the tests try to read."""
    root = tmp_path / "allowed"
    root.mkdir()
    monkeypatch.setenv("DASHBOARD_DATA_ROOTS", str(root))
    monkeypatch.delenv("DASHBOARD_READ_ONLY", raising=False)
    return root


def test_library_import_from_outside_the_roots_is_refused_and_adds_nothing(
    library_copy: Path, cohen_dataset: Path, allowed: Path
) -> None:
    before = open_library(library_copy).counts().studies
    at = AppTest.from_file(LIBRARY_PAGE, default_timeout=60).run()
    # A real dataset, reached directly and through a ".." from inside the root: both refused.
    for typed in (str(cohen_dataset), f"{allowed}/../{cohen_dataset.name}"):
        at.text_input(key="library_import_path").set_value(typed).run()
        at.button(key="library_import").click().run()
        assert not at.exception
        assert [e.value for e in at.error] == [
            f"'{typed}' is outside the folders this dashboard may read: the dashboard reads only from "
            f"{allowed.resolve()}; whoever runs it can add a folder to DASHBOARD_DATA_ROOTS."
        ]
        assert not at.success
    assert open_library(library_copy).counts().studies == before


def test_library_import_through_a_link_out_of_the_roots_is_refused(
    library_copy: Path, cohen_dataset: Path, allowed: Path
) -> None:
    (allowed / "shortcut").symlink_to(cohen_dataset, target_is_directory=True)
    at = AppTest.from_file(LIBRARY_PAGE, default_timeout=60).run()
    at.text_input(key="library_import_path").set_value(str(allowed / "shortcut")).run()
    at.button(key="library_import").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "leads through a link to a folder outside" in at.error[0].value
    assert not at.success


def test_performance_dataset_path_outside_the_roots_is_refused(allowed: Path) -> None:
    at = AppTest.from_file(PERFORMANCE_PAGE, default_timeout=300).run()
    at.radio[0].set_value("A dataset on this computer").run()
    at.text_input[0].set_value("/etc").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        f"'/etc' is outside the folders this dashboard may read: the dashboard reads only from "
        f"{allowed.resolve()}; whoever runs it can add a folder to DASHBOARD_DATA_ROOTS."
    ]
    assert [t.label for t in at.tabs] == ["Models", "Readers"]  # no model tab inside: none was evaluated
    assert not at.metric


def test_a_read_only_screen_hides_import_and_add_and_says_so(
    library_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "1")
    at = AppTest.from_file(LIBRARY_PAGE, default_timeout=60).run()
    assert not at.exception
    assert at.metric and at.subheader, "browsing still works"
    assert not at.tabs and not at.text_input and not at.button and not at.get("file_uploader")
    assert "Add to the library" not in [h.value for h in at.header]
    assert any("read-only screen" in c.value and "DASHBOARD_READ_ONLY" in c.value for c in at.caption)
    # The same page with the mode off offers both actions.
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "0")
    at = AppTest.from_file(LIBRARY_PAGE, default_timeout=60).run()
    assert [t.label for t in at.tabs] == ["Import a dataset", "Add a reviewed upload"]
    assert at.button(key="library_import") and at.button(key="library_upload_add")


def test_a_read_only_home_page_does_not_offer_import_or_add(
    library_copy: Path, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))

    def library_link() -> str:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
        assert not at.exception
        (label,) = [link.proto.label for link in at.get("page_link") if link.proto.page == "library"]
        return label

    monkeypatch.setenv("DASHBOARD_READ_ONLY", "1")
    assert library_link() == "Case library: browse patients and their timelines"
    monkeypatch.setenv("DASHBOARD_READ_ONLY", "0")
    assert "import datasets, add reviewed cases" in library_link()
