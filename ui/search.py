"""The similar-case search index of the app's library, kept once per process.

The library's embeddings for the reference model are computed on first use (only images that
lack them for the current weights), behind a progress bar, unless the library's warm-up
(:mod:`ui.warmup`) has stored them already; one process-wide lock keeps two sessions (or a
session and the warm-up) from embedding the same images at once. The index is cached per
library, model version and :func:`library_revision`, so an import followed by indexing, or a
deletion followed by an import of as many images, gives a new one."""

from __future__ import annotations

import threading
import weakref

import streamlit as st

from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.search.embeddings import EMBEDDABLE_KINDS, embedding_version, index_library
from core.search.evaluate import RetrievalEvaluation, evaluate_retrieval
from core.search.similar import LibraryIndex

#: Held while the library's embeddings are computed (by a page or the warm-up of :mod:`ui.warmup`).
INDEXING = threading.Lock()
#: The library revision each cached index was built at: its evaluation is cached under it.
_BUILT_AT: weakref.WeakKeyDictionary[LibraryIndex, tuple[int, int]] = weakref.WeakKeyDictionary()


def missing_embeddings(library: CaseLibrary, model: LoadedModel) -> int:
    """How many library images the model could embed have no embedding for its current weights."""
    n = library.count_embeddings(model.id, embedding_version(model))
    return len(library.image_refs(EMBEDDABLE_KINDS[model.card.input_kind])) - n


def index_missing(library: CaseLibrary, model: LoadedModel) -> list[str]:
    """Embed what is missing, with a progress bar; return the lines about unreadable images.

    When another session or the library's warm-up is embedding already, the bar says so while
    this waits for it; the images it embedded are not embedded again.
    """
    bar = st.progress(0.0, text=f"Computing {model.id} embeddings of the case library")
    if not INDEXING.acquire(blocking=False):
        bar.progress(0.0, text="The library is being prepared for searches (Home shows how far); waiting for it")
        INDEXING.acquire()
    try:

        def progress(done: int, total: int) -> None:
            bar.progress(done / max(total, 1), text=f"Computing {model.id} embeddings: {done} of {total} images")

        report = index_library(library, model, progress=progress)
    finally:
        INDEXING.release()
    bar.empty()
    return report.problems


def library_revision(library: CaseLibrary, model_id: str, version: str) -> tuple[int, int]:
    """What tells a cached index of ``model_id``'s ``version`` embeddings it is stale, without
    reading them: their number, and the newest audit entry. Every case added or patient deleted
    writes one (in the same transaction), and entries are never deleted, so a deletion followed
    by as many additions still changes it: their count and their largest image id need not
    (SQLite gives a new image the id of a deleted last one). A meeting's entries change it too:
    the index is then read again for nothing, once."""
    newest = library.audit_log(limit=1)
    return library.count_embeddings(model_id, version), newest[0].id if newest else 0


@st.cache_resource(show_spinner="Loading the search index...", max_entries=4)
def _index(
    location: str, model_id: str, version: str, revision: tuple[int, int], _library: CaseLibrary
) -> LibraryIndex:
    index = LibraryIndex(_library, model_id, version)
    _BUILT_AT[index] = revision
    return index


def library_index(library: CaseLibrary, model: LoadedModel) -> LibraryIndex:
    """The cached index, built again when :func:`library_revision` changes."""
    version = embedding_version(model)
    revision = library_revision(library, model.id, version)
    return _index(library.location, model.id, version, revision, library)


@st.cache_data(show_spinner="Evaluating the search on the library...", max_entries=8)
def _evaluation(
    location: str,
    model_id: str,
    version: str,
    revision: tuple[int, int],
    k: int,
    _library: CaseLibrary,
    _index: LibraryIndex,
) -> RetrievalEvaluation:
    return evaluate_retrieval(_library, _index, k=k, max_queries=500)


def evaluation(library: CaseLibrary, index: LibraryIndex, k: int) -> RetrievalEvaluation:
    """Leave-one-image-out precision@k and same-patient hit rate (at most 500 queries), cached
    under the revision ``index`` was built at (not a newer one another process has made since)."""
    revision = _BUILT_AT.get(index) or library_revision(library, index.model_id, index.model_version)
    return _evaluation(library.location, index.model_id, index.model_version, revision, k, library, index)
