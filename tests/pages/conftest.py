"""What the page tests share: the demo library's writable copy with the app pointed at it.

``library`` is the Case review page tests' library, read with ``review_weights`` (the tiny X-ray
models; a module that needs other models overrides that fixture). ``point_page_at`` points the
app at the copy and a weights folder of a test's own choosing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from core.library.store import CaseLibrary, open_library


@pytest.fixture
def point_page_at(library_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[Path], Path]:
    """A function that points the app at the demo library's writable copy and at a weights folder,
    on a screen that may write (``DASHBOARD_READ_ONLY`` unset); it returns the copy's folder."""

    def point(weights: Path) -> Path:
        monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(weights))
        monkeypatch.delenv("DASHBOARD_READ_ONLY", raising=False)
        return library_copy

    return point


@pytest.fixture
def review_weights(tiny_weights: Path) -> Path:
    """The models the Case review page reads with: the three tiny X-ray models."""
    return tiny_weights


@pytest.fixture
def library(point_page_at: Callable[[Path], Path], review_weights: Path) -> CaseLibrary:
    """The demo library's writable copy, the page pointed at it and at ``review_weights``."""
    return open_library(point_page_at(review_weights))
