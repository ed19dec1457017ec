"""The download button of a case report (:mod:`core.case_reports` assembles the reports).

A report is rendered only when the user clicks the button: the button gets a callable, and
Streamlit runs it then, on its own thread, outside the script (so the builders use no Streamlit
command and no session state). The callable holds references to what the page has already
computed (images, maps, predictions); nothing is copied or written to disk.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import streamlit as st

from core.report import CaseReport, report_bytes, report_filename

DOWNLOAD_LABEL = "Download case report (HTML)"
IDENTIFIERS_LABEL = "Include DICOM identifiers in the report"

ReportSource = CaseReport | Callable[[], CaseReport]


def report_download(
    report: ReportSource, key: str, *, file_name: str | None = None, label: str = DOWNLOAD_LABEL
) -> None:
    """A "Download case report (HTML)" button.

    Parameters
    ----------
    report
        The report, or a callable without arguments that builds it; either way the HTML is
        rendered only when the user clicks.
    key
        The button's widget key.
    file_name
        Needed with a callable (see :func:`core.report.report_filename_for`); by default the
        report's own :func:`~core.report.report_filename`.
    label
        The button's text (default "Download case report (HTML)").
    """
    if callable(report):
        if file_name is None:
            raise ValueError("file_name is needed when the report is built on click")
        build = report
    else:
        file_name = file_name or report_filename(report)
        build = functools.partial(_identity, report)
    st.download_button(
        label,
        data=functools.partial(_render, build),
        file_name=file_name,
        mime="text/html",
        key=key,
        on_click="ignore",  # the file is made on its own thread; the page need not rerun
        help="One HTML file that opens offline, for a case-review meeting. "
        "Names the case by a pseudonym, not by the file name.",
    )


def _identity(report: CaseReport) -> CaseReport:
    return report


def _render(build: Callable[[], CaseReport]) -> bytes:
    return report_bytes(build())
