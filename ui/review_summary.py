"""What the room read against the model and the truth, for one meeting or several pooled.

:func:`figures` draws the figures of a list of meetings; the Case review page's Summary tab
(:func:`summary`) and the Model performance page's Readers tab both use it, so the two pages
show the same numbers in the same words. The figures come from
:func:`core.review.summary.meeting_summary`, which reads the stored reads only (each keeps what
the model read when it was recorded), so neither page runs a model for them. The cases where
the room and the model disagreed come first; a meeting's reads download as CSV with the same
rule as the case reports: pseudonyms, days since admission, no patient's name, id or date.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pandas as pd
import streamlit as st

from core.errors import DashboardError
from core.library.meeting_records import Meeting
from core.library.store import CaseLibrary
from core.review.minute import meeting_minute, minute_filename
from core.review.summary import (
    ALL_READERS,
    CaseOutcome,
    MeetingSummary,
    QuestionSummary,
    kappa_text,
    meeting_summary,
    reads_csv,
    share_text,
)
from ui import resources

#: The columns of each question's figures table.
KAPPA = "Kappa with the model (95% CI)"
ACCURACY = "Accuracy (95% CI)"
SENSITIVITY = "Sensitivity (95% CI)"
SPECIFICITY = "Specificity (95% CI)"
#: Cases shown before the cases table scrolls.
CASES_SHOWN = 25


def meeting_label(meeting: Meeting, n_reads: int | None = None) -> str:
    """How a meeting is named in a meeting chooser: title, its own day (never a patient's),
    cases and, where counted, reads."""
    counts = f"{len(meeting.cases)} cases" + ("" if n_reads is None else f", {n_reads} reads")
    return f"{meeting.title} · {meeting.date} ({counts})"


def _model_text(c: CaseOutcome) -> str:
    """The model's read with its probability and, where it has one, its threshold beside it."""
    if c.model_label is None:
        return "no result" if c.model_id else "-"
    text = c.model_label
    if c.model_probability is not None:
        text += f" {c.model_probability:.0%}"
        if c.model_threshold is not None:
            text += f" (threshold {c.model_threshold:.0%})"
    return text


def _day_text(c: CaseOutcome) -> str:
    """The study's day since admission, or what stands for the whole patient."""
    if c.study_id is None:
        return "whole patient"
    return "" if c.days_since_admission is None else f"{c.days_since_admission:g}"


def _meeting_names(s: MeetingSummary) -> dict[int, str]:
    """Each meeting's title, with its number where two chosen meetings share a title."""
    repeated = {t for t, n in Counter(s.titles).items() if n > 1}
    return {m: f"{t} (meeting {m})" if t in repeated else t for m, t in zip(s.meeting_ids, s.titles, strict=True)}


def _model_row_name(reader: str) -> str:
    return f"model, {reader}'s cases" if reader != ALL_READERS else f"model, {ALL_READERS}' cases"


def _question(q: QuestionSummary) -> None:
    """One question's table: each reader's row (and all readers'), each followed by the model's
    row on the same reads, so a reader's accuracy stands right above the model's; then the
    agreement between readers."""
    st.markdown(f"**{q.question}** ({', '.join(q.labels)})")
    if q.note:
        st.caption(q.note)
    binary = q.pooled.sensitivity is not None
    rows = []
    for f in (*q.readers, q.pooled):
        reader = {
            "Reader": f.reader,
            "Reads": f.n_reads,
            KAPPA: kappa_text(f.vs_model),
            ACCURACY: share_text(f.accuracy),
        }
        model = {"Reader": _model_row_name(f.reader), "Reads": None, KAPPA: "", ACCURACY: share_text(f.model_accuracy)}
        if binary:
            reader |= {SENSITIVITY: share_text(f.sensitivity), SPECIFICITY: share_text(f.specificity)}
            model |= {SENSITIVITY: share_text(f.model_sensitivity), SPECIFICITY: share_text(f.model_specificity)}
        rows += [reader, model]
    table = pd.DataFrame(rows).astype({"Reads": "Int64"})  # the model's rows have no reads of their own
    st.dataframe(table, hide_index=True, height="content", placeholder="")
    b = q.between_readers
    st.markdown(f"**Between readers** (Fleiss' kappa, 95% CI): {kappa_text(b)}")
    notes = ["Each model row: the model's reads stored with that reader's reads, against the same truth."]
    if b.reason:
        notes.append(f"Between readers: {b.reason}")
    if q.pooled.vs_model.reason:
        notes.append(f"All readers' kappa with the model: {q.pooled.vs_model.reason}")
    st.caption(" ".join(notes))


def _cases(s: MeetingSummary) -> None:
    """The cases, the room's disagreements with the model first; which meeting each came from
    when there are several."""
    names = _meeting_names(s) if len(s.meeting_ids) > 1 else None
    rows = []
    for c in s.cases:
        row = {"": "disagree" if c.disagrees else ""}
        if names is not None:
            row["Meeting"] = names[c.meeting_id]
        row |= {
            "Case": c.position,
            "Patient": c.pseudonym,
            "Day": _day_text(c),
            "Room": c.room_read or ("no reads" if not c.reads else "no majority"),
            "Model": _model_text(c),
            "Truth": "unknown" if c.truth is None else c.truth,
        }
        rows.append(row)
    st.markdown(f"**Cases: the {len(s.disagreements)} where the room and the model disagreed first**")
    st.dataframe(
        pd.DataFrame(rows),
        hide_index=True,
        height="content" if len(rows) <= CASES_SHOWN else 38 + 35 * CASES_SHOWN,
        column_config={
            "": st.column_config.TextColumn(width="small"),
            "Case": st.column_config.NumberColumn(width="small"),
            "Model": st.column_config.TextColumn(width=260),
        },
    )


def figures(library: CaseLibrary, meeting_ids: Sequence[int], *, no_reads: str = "") -> MeetingSummary | None:
    """The figures of ``meeting_ids`` pooled (one meeting alone is a list of one): counts, each
    question's figures per reader and for all readers, the cases (disagreements first).

    ``no_reads`` is the hint shown after "No read has been recorded ..." when the meetings hold
    no read (where to record them). Returns the summary, or None when nothing was shown but a
    message.
    """
    try:
        s = meeting_summary(library, meeting_ids)
    except DashboardError as e:
        st.error(str(e))
        return None
    where = "this meeting" if len(s.meeting_ids) == 1 else f"these {len(s.meeting_ids)} meetings"
    st.markdown(f"**{s.n_cases} cases, {s.n_reads} reads by {len(s.readers)} readers** in {where}")
    if not s.n_reads:
        st.info(f"No read has been recorded in {where} yet" + (f": {no_reads}" if no_reads else "."))
        return None
    st.caption(f"{s.truth_note} {s.models_note}")
    for q in s.questions:
        _question(q)
    _cases(s)
    return s


def downloads(library: CaseLibrary, meeting: Meeting) -> None:
    """One meeting's exports: the reads as CSV, and the minute as one HTML file (made on request:
    it draws each case's images and maps, several seconds; offered while the meeting is as it
    was made from)."""
    csv_column, minute_column = st.columns(2)
    csv_column.download_button(
        "Download the reads (CSV)",
        reads_csv(library, meeting.id),
        file_name=f"meeting-{meeting.id}-reads.csv",
        mime="text/csv",
        key="review_summary_csv",
    )
    key = f"review_minute_{meeting.id}"
    state = (library.meeting(meeting.id).cases, tuple(library.reads(meeting.id)))
    made = st.session_state.get(key)
    if made is None or made[0] != state:
        if minute_column.button(
            "Make the minute (HTML)",
            key="review_minute_make",
            help="One file with the figures, each case's images with the model's map, what it hid, the model's "
            "outputs with their thresholds and the reads; pseudonyms and days since admission only.",
        ):
            try:
                with st.spinner("Drawing each case's images and maps"):
                    html = meeting_minute(library, meeting.id, resources.registry(), load=resources.model)
            except DashboardError as e:
                minute_column.error(str(e))
                return
            st.session_state[key] = made = (state, html)
        else:
            return
    minute_column.download_button(
        "Download the minute (HTML)",
        made[1],
        file_name=minute_filename(meeting),
        mime="text/html",
        key="review_minute_download",
    )


def summary(library: CaseLibrary, meeting: Meeting) -> None:
    """The Case review page's Summary tab: ``meeting``'s figures, or those of several meetings
    pooled (the user adds them in a chooser that starts at ``meeting``), and the downloads of
    the one meeting chosen."""
    meetings = {m.id: m for m in library.meetings()}
    meetings.setdefault(meeting.id, meeting)
    chosen = st.multiselect(
        "Meetings",
        list(meetings),
        default=[meeting.id],
        # One chooser per meeting in the sidebar: choosing another meeting starts from that one.
        key=f"review_summary_meetings_{meeting.id}",
        format_func=lambda i: meeting_label(meetings[i]),
        help="Add meetings to pool their reads: the figures are then over every read of every meeting chosen.",
    )
    if not chosen:
        st.info("Choose at least one meeting.")
        return
    s = figures(library, chosen, no_reads="record the room's reads in Present.")
    if s is None:
        return
    if len(chosen) == 1:
        downloads(library, meetings[chosen[0]])
    else:
        st.caption("The downloads are per meeting: choose one meeting to download its reads.")
