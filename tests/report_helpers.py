"""Reading case reports as a click on a page's download button gives them (AppTest does not
click downloads): the page registers a callable with Streamlit's media file manager, and the
``deferred`` fixture records it so a test can run it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from streamlit.testing.v1 import AppTest


@dataclass
class Deferred:
    build: Callable[[], bytes]
    mimetype: str | None
    file_name: str | None


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> dict[str, Deferred]:
    """Every callable a download button registers, by its deferred file id."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    registered: dict[str, Deferred] = {}
    original = MediaFileManager.add_deferred

    def add_deferred(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):  # noqa: ANN001, ANN202
        file_id = original(self, data_callable, mimetype, coordinates, file_name=file_name, **kwargs)
        registered[file_id] = Deferred(data_callable, mimetype, file_name)
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", add_deferred)
    return registered


def downloaded(app: AppTest, key: str, deferred: dict[str, Deferred]) -> tuple[str, str]:
    """(file name, HTML) of the report behind the download button ``key``, as a click gives them."""
    button = app.download_button(key=key)
    assert button.label == "Download case report (HTML)"
    entry = deferred[button.proto.deferred_file_id]
    assert entry.mimetype == "text/html"
    data = entry.build()
    assert isinstance(data, bytes)
    return entry.file_name or "", data.decode("utf-8")


def without_bundle(document: str) -> str:
    """The document without the inlined plotly.js (whose own strings hold URLs and any word)."""
    from plotly.offline import get_plotlyjs

    return document.replace(get_plotlyjs(), "")
