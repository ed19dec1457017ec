"""The Model performance page's cached computations and tables.

An evaluation runs a model over hundreds of images or scans: each is computed once per process
for a (model version, temperature, data) and shared by every session, with a progress bar the
first time. The Readers tab's figures (:func:`readers`) come from the reads stored in the case
library, computed afresh on each visit: no model runs for them.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
import streamlit as st

from core.errors import DashboardError
from core.evaluation.compare import compare
from core.evaluation.data import evaluation_data
from core.evaluation.evaluate import evaluate
from core.evaluation.figures import format_auc, format_number, format_percent
from core.evaluation.results import Comparison, Evaluation, KFold, Level
from core.library.demo import needs_demo_build
from core.library.store import CaseLibrary
from core.types import Progress
from ui import resources, review_summary
from ui.library import library, library_path

Result = TypeVar("Result", Evaluation, Comparison)


class _Bar:
    """``progress(done, total)`` onto an ``st.progress`` bar, removed when the work ends."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.bar = st.progress(0.0, text=text)

    def __call__(self, done: int, total: int) -> None:
        self.bar.progress(min(1.0, done / max(total, 1)), text=f"{self.text} ({done} of {total})")

    def __enter__(self) -> _Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.empty()


# A process-wide cache shared by every session, like ``st.cache_data``; not ``st.cache_data``
# itself, which records the progress bar's updates and cannot replay them into a bar made outside.
# The results are frozen dataclasses, so sessions share them without copies.
_CACHE: OrderedDict[tuple, Any] = OrderedDict()  # an Evaluation or a Comparison, as the key's first item says
_CACHE_SIZE = 32
_LOCK = threading.Lock()


def _cached(key: tuple, text: str, work: Callable[[Progress], Result]) -> Result:
    with _LOCK:  # one evaluation at a time: they share the CPU and often the same models
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        with _Bar(text) as bar:
            value = work(bar)
        _CACHE[key] = value
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return value


def evaluation(model_id: str, data: str | None = None, windows: int = 0) -> Evaluation:
    """A model's evaluation on its held-out split (``data`` None) or a dataset path."""
    card = resources.registry().card(model_id)

    def work(bar: Progress) -> Evaluation:
        model = resources.model(model_id)
        source = evaluation_data(model.card, data) if data else None
        return evaluate(model, source, progress=bar, windows=windows)

    what = f"Evaluating {model_id}" + (f" at {windows} perturbed windows" if windows else "")
    return _cached(("evaluation", model_id, card.version, card.temperature, data, windows), what, work)


def comparison(ids: list[str], data: str | None = None, positive: str = "COVID-19") -> Comparison:
    """The models' AUCs of P(``positive``) on the cases all of them held out (or on ``data``)."""
    cards = [resources.registry().card(i) for i in ids]

    def work(bar: Progress) -> Comparison:
        models = [resources.model(i) for i in ids]
        return compare(models, evaluation_data(models[0].card, data), bar, positive=positive)

    key = ("comparison", tuple(ids), tuple((c.version, c.temperature) for c in cards), data, positive)
    return _cached(key, "Comparing the models on the same cases", work)


def per_class_frame(level: Level, multilabel: bool) -> pd.DataFrame:
    """The per-class (per-finding) table as text, as a clinician reads it."""
    rows = []
    for name, s in level.per_class.items():
        row = {
            "finding" if multilabel else "class": name,
            "n" if not multilabel else "positives": s.support,
            "precision": format_percent(s.precision),
            "recall (sensitivity)": format_percent(s.recall),
            "specificity": format_percent(s.specificity),
            "F1": format_number(s.f1),
            "AUC (95% CI)": format_auc(s.auc, s.auc_ci),
            "AP": format_number(s.average_precision),
        }
        if multilabel:
            row["threshold"] = format_number(s.threshold)
        rows.append(row)
    return pd.DataFrame(rows)


def kfold_frame(kfold: KFold) -> pd.DataFrame:
    """Seed 002's k-fold table: one row per fold and part, the mean rows marked."""
    frame = pd.DataFrame(list(kfold.rows))
    # Seed 002 calls each fold's held-out patients its test set; the training record, validation.
    frame["part"] = frame["part"].replace({"validation": "validation (the fold's test patients)"})
    kept = kfold.kept_fold
    if kept is not None:
        frame["fold"] = [f"{f} (kept)" if f == str(kept) else f for f in frame["fold"]]
    return frame


def _case_library() -> CaseLibrary | None:
    """The app's case library where it is built and opens; else a plain message and None.

    Unlike the library's own pages, this one neither builds the demo library (the first launch
    takes minutes and would hold the model figures back) nor ends the page when the library
    cannot be opened: the other tabs do not need it.
    """
    try:
        if needs_demo_build(library_path()):
            st.info(
                "The case library is not ready yet: on a first launch Home builds it and shows how far it "
                "is. The readers' figures appear here once it is ready."
            )
            return None
        return library()
    except DashboardError as e:
        st.info(f"The readers' figures need the case library, which cannot be opened: {e}")
        return None


def readers() -> None:
    """The Readers tab: the room's reads against the model and the truth, pooled over the
    case-review meetings chosen (every meeting with reads, to start with)."""
    st.caption(
        "Clinicians' reads recorded on the Case review page (a meeting's Present tab), each against the "
        "model's read stored with it and against the truth where it is known."
    )
    case_library = _case_library()
    if case_library is None:
        return
    try:
        meetings = case_library.meetings()
        n_reads = {m.id: len(case_library.reads(m.id)) for m in meetings}
    except DashboardError as e:
        st.info(f"The readers' figures need the case library, which cannot be read: {e}")
        return
    with_reads = {m.id: m for m in meetings if n_reads[m.id]}
    if not with_reads:
        st.info("No read has been recorded yet: record the room's reads in a meeting on the Case review page.")
        return
    chosen = st.multiselect(
        "Meetings",
        list(with_reads),
        default=list(with_reads),
        key="performance_reader_meetings",
        format_func=lambda i: review_summary.meeting_label(with_reads[i], n_reads[i]),
        help="Every meeting with reads to start with; remove meetings to see the figures of the others.",
    )
    if not chosen:
        st.info("Choose at least one meeting.")
        return
    review_summary.figures(case_library, chosen)
