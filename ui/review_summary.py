"""The Case review page's Summary tab: what the room read against the model and the truth.

The figures come from :func:`core.review.summary.meeting_summary`, which reads the stored reads
only (each keeps what the model read when it was recorded), so the tab never runs a model. The
cases where the room and the model disagreed come first; the reads download as CSV with the same
rule as the case reports: pseudonyms, days since admission, no patient's name, id or date.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.library.meeting_records import Meeting
from core.library.store import CaseLibrary
from core.review.summary import CaseOutcome, QuestionSummary, kappa_text, meeting_summary, reads_csv, share_text


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


def _question(q: QuestionSummary) -> None:
    st.markdown(f"**{q.question}** ({', '.join(q.labels)})")
    if q.note:
        st.caption(q.note)
    binary = q.pooled.sensitivity is not None
    rows = []
    for f in (*q.readers, q.pooled):
        row = {
            "Reader": f.reader,
            "Reads": f.n_reads,
            "Kappa with the model (95% CI)": kappa_text(f.vs_model),
            "Reader accuracy": share_text(f.accuracy),
            "Model accuracy": share_text(f.model_accuracy),
        }
        if binary:
            row |= {
                "Reader sensitivity": share_text(f.sensitivity),
                "Reader specificity": share_text(f.specificity),
                "Model sensitivity": share_text(f.model_sensitivity),
                "Model specificity": share_text(f.model_specificity),
            }
        rows.append(row)
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    b = q.between_readers
    st.caption(
        f"Between readers (Fleiss' kappa, 95% CI): {kappa_text(b)}"
        + (f". {b.reason}" if b.reason else "")
        + (f" Pooled kappa: {q.pooled.vs_model.reason}" if q.pooled.vs_model.reason else "")
    )


def summary(library: CaseLibrary, meeting: Meeting) -> None:
    """The tab: counts, each question's figures, the cases (disagreements first), the CSV."""
    s = meeting_summary(library, [meeting.id])
    st.markdown(f"**{s.n_cases} cases, {s.n_reads} reads by {len(s.readers)} readers**")
    if not s.n_reads:
        st.info("No read has been recorded in this meeting yet: record the room's reads in Present.")
        return
    st.caption(f"{s.truth_note} {s.models_note}")
    for q in s.questions:
        _question(q)
    st.markdown(f"**Cases: the {len(s.disagreements)} where the room and the model disagreed first**")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "": "disagree" if c.disagrees else "",
                    "Case": c.position,
                    "Patient": c.pseudonym,
                    "Day": "" if c.days_since_admission is None else f"{c.days_since_admission:g}",
                    "Room": c.room_read or ("no reads" if not c.reads else "no majority"),
                    "Model": _model_text(c),
                    "Truth": "unknown" if c.truth is None else c.truth,
                }
                for c in s.cases
            ]
        ),
        hide_index=True,
    )
    st.download_button(
        "Download the reads (CSV)",
        reads_csv(library, meeting.id),
        file_name=f"meeting-{meeting.id}-reads.csv",
        mime="text/csv",
        key="review_summary_csv",
    )
