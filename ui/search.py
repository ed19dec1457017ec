"""The similar-case search index of the app's library, kept once per process.

The library's embeddings for the reference model are computed on first use (only images that
lack them for the current weights), behind a progress bar, unless the library's warm-up
(:mod:`ui.warmup`) has stored them already; one process-wide lock keeps two sessions (or a
session and the warm-up) from embedding the same images at once. The in-memory index is cached
per library, model version and number of embeddings, so an import followed by indexing gives a
new one."""

from __future__ import annotations

import threading

import streamlit as st

from core.library.store import SqliteLibrary
from core.models.registry import LoadedModel
from core.search.embeddings import EMBEDDABLE_KINDS, embedding_version, index_library
from core.search.evaluate import RetrievalEvaluation, evaluate_retrieval
from core.search.similar import LibraryIndex

#: Held while the library's embeddings are computed (by a page or the warm-up of :mod:`ui.warmup`).
INDEXING = threading.Lock()


def missing_embeddings(library: SqliteLibrary, model: LoadedModel) -> int:
    """How many library images the model could embed have no embedding for its current weights."""
    n = library.count_embeddings(model.id, embedding_version(model))
    return len(library.image_refs(EMBEDDABLE_KINDS[model.card.input_kind])) - n


def index_missing(library: SqliteLibrary, model: LoadedModel) -> list[str]:
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


@st.cache_resource(show_spinner="Loading the search index...", max_entries=4)
def _index(root: str, model_id: str, version: str, n_vectors: int, _library: SqliteLibrary) -> LibraryIndex:
    return LibraryIndex(_library, model_id, version)


def library_index(library: SqliteLibrary, model: LoadedModel) -> LibraryIndex:
    """The cached index; counting the stored vectors (not reading them) tells when it is stale."""
    version = embedding_version(model)
    return _index(str(library.root), model.id, version, library.count_embeddings(model.id, version), library)


@st.cache_data(show_spinner="Evaluating the search on the library...", max_entries=8)
def _evaluation(
    root: str, version: str, n_vectors: int, k: int, _library: SqliteLibrary, _index: LibraryIndex
) -> RetrievalEvaluation:
    return evaluate_retrieval(_library, _index, k=k, max_queries=500)


def evaluation(library: SqliteLibrary, index: LibraryIndex, k: int) -> RetrievalEvaluation:
    """Leave-one-image-out precision@k and same-patient hit rate (at most 500 queries), cached."""
    return _evaluation(str(library.root), index.model_version, len(index), k, library, index)
