"""The app's case library: opened once per process, built on first launch when missing.

The library folder is ``$DASHBOARD_LIBRARY`` or the project's ``data/library``. When it holds
no patient yet (a fresh clone), the first page that needs it starts drawing the demo cohort
into it in a background thread and shows its progress; other sessions arriving meanwhile watch
the same build instead of starting their own, and leaving the page does not stop it. A build
cut short by stopping the app resumes at the next launch. ``DASHBOARD_DEMO_PATIENTS`` sets the
size of that cohort (default 200; tests use a few). Once the build is complete, the same thread
starts the library's warm-up (:mod:`ui.warmup`), which computes what the pages' first visits
would otherwise compute; Home shows its progress.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass

import streamlit as st

from core.demo.cohort import DEFAULT_PATIENTS
from core.deployment import read_only
from core.errors import DashboardError
from core.io.images import read_xray
from core.library.demo import add_demo_meeting, build_demo_library, needs_demo_build, needs_demo_meeting
from core.library.records import Study
from core.library.store import CaseLibrary, LibraryError, default_library_location, open_library
from ui import warmup
from ui.auth import current_user
from ui.frame import plain_errors

logger = logging.getLogger(__name__)


@dataclass
class _DemoBuild:
    """A demo library build running in a background thread, watched by any page."""

    path: str
    n_patients: int
    done: int = 0
    total: int = 0
    error: str | None = None
    finished: bool = False
    studies: int = 0


_BUILDS: dict[str, _DemoBuild] = {}
_BUILDS_LOCK = threading.Lock()
#: One session at a time makes the demo meeting of a library built before meetings existed.
_MEETING_LOCK = threading.Lock()


def demo_patients() -> int:
    raw = os.environ.get("DASHBOARD_DEMO_PATIENTS", "")
    return int(raw) if raw.strip().isdigit() and int(raw) > 0 else DEFAULT_PATIENTS


@st.cache_resource(show_spinner=False)
def _open(path: str) -> CaseLibrary:
    return open_library(path)


def _run(build: _DemoBuild) -> None:
    def progress(done: int, total: int) -> None:
        build.done, build.total = done, total

    try:
        report = build_demo_library(build.path, build.n_patients, progress=progress)
        build.studies = report.imported.added_studies + report.imported.duplicates
        warmup.start(build.path)
    except DashboardError as e:
        build.error = str(e)
    except Exception as e:  # the page must say so, not wait for ever
        logger.exception("Building the demo case library failed")
        build.error = f"Building the demo case library failed ({type(e).__name__}: {e})."
    finally:
        build.finished = True


def _build(path: str) -> _DemoBuild:
    """The build of ``path`` under way, or a new one started in a background thread.

    The thread, not the page's script, does the work: a user who opens another page while
    it runs does not interrupt it, and every session shows the same build's progress.
    """
    with _BUILDS_LOCK:
        build = _BUILDS.get(path)
        if build is None or build.finished:
            build = _BUILDS[path] = _DemoBuild(path, demo_patients())
            threading.Thread(target=_run, args=(build,), name="demo-library-build", daemon=True).start()
        return build


def _wait_for(build: _DemoBuild) -> None:
    status = st.status(
        f"First launch: building the demo case library ({build.n_patients} synthetic patients)...", expanded=True
    )
    with status:
        st.write("This happens once; later launches open it at once.")
        bar = st.progress(0.0, text="Drawing the demo patients")
        while not build.finished:
            if build.total:
                bar.progress(build.done / build.total, text=f"Drawing the demo patients: {build.done} of {build.total}")
            time.sleep(0.25)
    if build.error:
        status.update(label="The demo case library could not be built.", state="error", expanded=False)
        raise LibraryError(build.error)
    status.update(
        label=f"Demo case library built: {build.studies} studies of {build.n_patients} patients.",
        state="complete",
        expanded=False,
    )
    if warmup.enabled():
        st.caption("The library is now being prepared for fast searches in the background: Home shows how far it is.")


def library_path() -> str:
    """Where the app's case library is (``$DASHBOARD_LIBRARY``, a folder or a PostgreSQL address,
    or ``data/library``)."""
    return default_library_location()


def library() -> CaseLibrary:
    """The app's case library, built from the demo cohort first if it is empty or half-built; its
    changes are recorded in the audit log under this session's user. A demo library built before
    case-review meetings existed gets its demo meeting here (not on a read-only screen)."""
    path = library_path()
    if needs_demo_build(path):
        _wait_for(_build(path))
    opened = _open(path)
    if not read_only() and needs_demo_meeting(opened):  # a demo library built before meetings existed
        with _MEETING_LOCK:
            if needs_demo_meeting(opened):
                add_demo_meeting(opened)
    return opened.acting(current_user())


def library_or_stop() -> CaseLibrary:
    """:func:`library`, or a plain error and the end of the page when it cannot be opened."""
    with plain_errors():
        return library()


def show_full_size(library: CaseLibrary, study: Study) -> None:
    """A study's stored image at full resolution (an X-ray), or the thumbnail slice of a CT series."""
    if not study.images:
        st.info("This study has no stored image.")
        return
    image = study.images[0]
    if image.kind == "ct-series":
        st.image(library.thumbnail(image.id) or b"", caption=f"CT series, {image.depth} slices (lung window)")
        return
    try:
        _, data = library.image_files(image)[0]
        xray = read_xray(data, "the stored image")
    except DashboardError as e:
        st.error(str(e))
        return
    # Small stored images (the demo's 256 px) are shown enlarged, large ones fit the frame.
    st.image(
        xray.windowed(), caption=f"{image.width} x {image.height} px", clamp=True, width=max(640, image.width or 0)
    )
