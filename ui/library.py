"""The app's case library: opened once per process, built on first launch when missing.

The library folder is ``$DASHBOARD_LIBRARY`` or the project's ``data/library``. When it holds
no patient yet (a fresh clone), the first page that needs it generates the demo cohort and
imports it behind a progress bar; other sessions arriving meanwhile wait for that build
instead of starting their own. ``DASHBOARD_DEMO_PATIENTS`` sets the size of that cohort
(default 200; tests use a few).
"""

from __future__ import annotations

import os
import threading

import streamlit as st

from core.demo.cohort import DEFAULT_PATIENTS
from core.errors import DashboardError
from core.library.store import SqliteLibrary, default_library_path, open_library

_BUILD_LOCK = threading.Lock()


def demo_patients() -> int:
    raw = os.environ.get("DASHBOARD_DEMO_PATIENTS", "")
    return int(raw) if raw.strip().isdigit() and int(raw) > 0 else DEFAULT_PATIENTS


@st.cache_resource(show_spinner=False)
def _open(path: str) -> SqliteLibrary:
    return open_library(path)


def _build_with_progress(path: str) -> None:
    from core.library.demo import build_demo_library, library_is_empty

    with _BUILD_LOCK:
        if not library_is_empty(path):  # another session built it while this one waited
            return
        n = demo_patients()
        status = st.status(f"First launch: building the demo case library ({n} synthetic patients)...", expanded=True)
        with status:
            st.write("This happens once; later launches open it at once.")
            bar = st.progress(0.0, text="Generating the demo cohort")

            def progress(stage: str, done: int, total: int) -> None:
                frac = done / max(total, 1)
                if stage == "generating":
                    bar.progress(0.5 * frac, text=f"Generating the demo cohort: patient {done} of {total}")
                else:
                    bar.progress(0.5 + 0.5 * frac, text=f"Importing into the case library: study {done} of {total}")

            report = build_demo_library(path, n, progress=progress)
        status.update(
            label=f"Demo case library built: {report.imported.added_studies} studies of {report.n_patients} patients.",
            state="complete",
            expanded=False,
        )


def library() -> SqliteLibrary:
    """The app's case library, built from the demo cohort first if it is empty."""
    from core.library.demo import library_is_empty

    path = str(default_library_path())
    if library_is_empty(path):
        _build_with_progress(path)
    return _open(path)


def library_or_stop() -> SqliteLibrary:
    """:func:`library`, or a plain error and the end of the page when it cannot be opened."""
    try:
        return library()
    except DashboardError as e:
        st.error(str(e))
        st.stop()
        raise  # unreachable: st.stop() ends the script run
