"""Similar cases: the patients whose images lie nearest a query image, with their whole series.

The search runs over images (each indexed library image's embedding) and answers in patients:
a patient's similarity is that of their best-matching image, which is reported as the match.
Each result carries the patient's every study in time order, so a page or a report can show
the series (seed 000, section 3.2.1: image sets of a patient over time).

Who is left out:
- the query image itself, and any library image with the same pixels (a query uploaded from a
  library case is recognised as that case, whatever the file format);
- the query's patient (when the query is or matches a library image), unless
  ``include_query_patient``; then their *other* images may match.

Where the search runs (``backend``, "auto" by default): in the library's own vector index when
it has one (PostgreSQL with pgvector: HNSW in the database), else in the app's index of the
library's embeddings: the exact scan below :data:`~core.search.index.AUTO_IVF_FROM` images, the
approximate IVF index (kept in a file beside a library folder) from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import numpy as np

from core.errors import InvalidInputError
from core.library.records import ImageRef, Patient, PatientFilter, Study
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.search.ann import STORE_BACKEND, StoreIndex, index_folder, library_vector_index
from core.search.embeddings import check_embeddable, embed_xray, embedding_version, pixel_digest, read_stored_xray
from core.search.index import CHOICES, VectorIndex, choose_backend, normalise
from core.types import XrayImage

DEFAULT_K = 5
#: What a search may be asked to run in: "auto", an index of the app's, or the library's own.
SEARCH_BACKENDS: Final = (*CHOICES, STORE_BACKEND)
#: Label filter value for patients without a diagnosis.
UNLABELLED = "Unlabelled"
#: An image kind (core.library.records.IMAGE_KINDS) in a message.
_KIND_WORDS: Final = {"xray": "X-ray", "ct-slice": "CT slice", "ct-series": "CT series"}


@dataclass(frozen=True)
class SearchFilter:
    """Which patients may be returned; ``None`` means any. ``labels`` may include UNLABELLED."""

    labels: tuple[str, ...] | None = None
    outcomes: tuple[str, ...] | None = None
    modality: str | None = None  # only patients with a study of this modality

    @property
    def active(self) -> bool:
        return self.labels is not None or self.outcomes is not None or self.modality is not None


def _in_order(wanted: list[int], ids: list[int], matrix: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The ids of ``wanted`` found among ``ids`` (the image ids of ``matrix``'s rows), in the
    order of ``wanted``, and their normalised rows (an image deleted by another process since
    the index was built has none)."""
    row = {image_id: n for n, image_id in enumerate(ids)}
    found = [i for i in wanted if i in row]
    return found, normalise(matrix[[row[i] for i in found]]) if found else np.zeros((0, 0), np.float32)


class LibraryIndex:
    """A library's embeddings for one model version in a :class:`VectorIndex`, with the owner
    (study, patient) of every image. Build once and reuse for many queries.

    ``backend`` is one of :data:`SEARCH_BACKENDS`; "auto" searches in the library's own vector
    index when it has one, else picks by size (:func:`core.search.ann.library_vector_index`).
    :attr:`backend` is the one used. The vectors are kept once: in the index when it gives
    them back exactly, here otherwise (faiss-sq8's codes are approximate; the library's own
    index is in the database).
    """

    def __init__(self, library: CaseLibrary, model_id: str, model_version: str, backend: str = "auto") -> None:
        if backend not in SEARCH_BACKENDS:
            raise InvalidInputError(f"Unknown search backend {backend!r}; choose one of {', '.join(SEARCH_BACKENDS)}.")
        in_library = library.has_vector_index()
        if backend == STORE_BACKEND and not in_library:
            raise InvalidInputError(
                f"This case library has no vector index of its own ({STORE_BACKEND} in PostgreSQL); "
                "choose another search backend."
            )
        self.model_id, self.model_version = model_id, model_version
        owners = {r.image_id: r for r in library.image_refs()}
        if backend == "auto" and in_library:
            backend = STORE_BACKEND
        vectors: np.ndarray | None = None
        if backend == STORE_BACKEND:
            # The vectors stay in the database: only the ids are read (an app process at a
            # million images would otherwise fetch and hold 2 GB of them).
            self.ids: list[int] = [i for i in library.embedding_ids(model_id, model_version) if i in owners]
        else:
            ids, matrix = library.embeddings(model_id, model_version)
            keep = [n for n, i in enumerate(ids) if i in owners]  # an image deleted since stays out
            self.ids = [ids[n] for n in keep]
            vectors = normalise(matrix[keep]) if keep else np.zeros((0, 1), dtype=np.float32)
            del matrix
            if backend == "auto":
                backend = choose_backend(len(self.ids))
        self.owner: dict[int, ImageRef] = {i: owners[i] for i in self.ids}
        self.images_of: dict[str, list[int]] = {}
        for image_id in self.ids:
            self.images_of.setdefault(self.owner[image_id].patient_pseudonym, []).append(image_id)
        self.backend = backend
        self.index: VectorIndex | None = None
        self._vectors: np.ndarray | None = None  # only where the index cannot give them back
        self._row: dict[int, int] = {}
        self._stored: Callable[[list[int]], tuple[list[int], np.ndarray]] | None = None  # read from the library
        if not self.ids:
            return
        if vectors is None:
            fetch = partial(library.embeddings, model_id, model_version)
            self._stored = lambda image_ids: _in_order(image_ids, *fetch(image_ids))
            dim = self._stored(self.ids[:1])[1].shape[1]
            self.index = StoreIndex(dim, self.ids, partial(library.nearest, model_id, model_version))
        else:
            folder = index_folder(library)  # where the IVF index's file is kept
            self.index = library_vector_index(folder, model_id, model_version, self.ids, vectors, backend)
            if not self.index.holds_exact_vectors:
                self._vectors = vectors
                self._row = {image_id: n for n, image_id in enumerate(self.ids)}
        self.backend = self.index.name

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        return 0 if self.index is None else self.index.dim

    def _vectors_of(self, image_ids: list[int]) -> tuple[list[int], np.ndarray]:
        """The indexed images among ``image_ids`` and their normalised vectors (n, dim)."""
        known = [i for i in image_ids if i in self.owner]
        if self._vectors is not None:
            return known, self._vectors[[self._row[i] for i in known]]
        if self._stored is not None:
            return self._stored(known)
        assert self.index is not None
        return known, self.index.vectors_of(known)

    def vector(self, image_id: int) -> np.ndarray | None:
        """The normalised vector of an indexed image, None for one not indexed."""
        found, vectors = self._vectors_of([image_id])
        return vectors[0] if found else None

    def similarity(self, query: np.ndarray, image_ids: list[int]) -> dict[int, float]:
        """Cosine similarity of ``query`` to each listed indexed image."""
        found, vectors = self._vectors_of(image_ids)
        if not found:
            return {}
        return {i: float(s) for i, s in zip(found, vectors @ normalise(query)[0], strict=True)}

    def nearest_patients(
        self,
        query: np.ndarray,
        n: int,
        *,
        exclude_images: frozenset[int] = frozenset(),
        exclude_patients: frozenset[str] = frozenset(),
        allowed_patients: frozenset[str] | None = None,
    ) -> list[tuple[str, int, float]]:
        """The ``n`` nearest patients as (pseudonym, best image id, its similarity), best first."""
        if self.index is None or n < 1:
            return []
        q = normalise(query)
        k = min(len(self), max(8 * n, 64))
        while True:
            sims, ids = self.index.search(q, k)
            found: dict[str, tuple[int, float]] = {}
            for sim, image_id in zip(sims[0], ids[0], strict=True):
                if image_id < 0 or int(image_id) in exclude_images:
                    continue
                who = self.owner[int(image_id)].patient_pseudonym
                if (
                    who in found
                    or who in exclude_patients
                    or (allowed_patients is not None and who not in allowed_patients)
                ):
                    continue
                found[who] = (int(image_id), float(sim))
                if len(found) == n:
                    break
            if len(found) == n or k >= len(self):
                return [(who, image_id, sim) for who, (image_id, sim) in found.items()]
            k = min(len(self), 4 * k)


@dataclass(frozen=True)
class QueryInfo:
    """What the search took as its query."""

    source: str  # "upload" or "library"
    image_id: int | None  # the library image it is (a library case, or an upload recognised by its pixels)
    patient_pseudonym: str | None
    same_pixels: tuple[int, ...] = ()  # every library image with the query's pixels (never returned)

    @property
    def recognised(self) -> bool:
        return self.image_id is not None


@dataclass(frozen=True)
class SimilarPatient:
    """One result: a patient, the best-matching image and the patient's whole series."""

    patient: Patient
    similarity: float
    matched_image_id: int
    matched_study_id: int
    image_similarity: dict[int, float] = field(default_factory=dict)  # every indexed image of the patient

    @property
    def pseudonym(self) -> str:
        return self.patient.pseudonym

    @property
    def matched_study(self) -> Study:
        return next(s for s in self.patient.studies if s.id == self.matched_study_id)

    def as_dict(self) -> dict[str, Any]:
        s = self.patient.summary

        def study(st: Study) -> dict[str, Any]:
            return {
                "study_id": st.id,
                "day": st.day,
                "offset_admission_days": st.offset_admission_days,
                "offset_onset_days": st.offset_onset_days,
                "modality": st.modality,
                "view": st.view,
                "label": st.label,
                "note": st.note,
                "matched": st.id == self.matched_study_id,
                "images": [
                    {"image_id": im.id, "kind": im.kind, "similarity": self.image_similarity.get(im.id)}
                    for im in st.images
                ],
            }

        return {
            "patient_id": s.pseudonym,
            "similarity": self.similarity,
            "label": s.label,
            "sex": s.sex,
            "age_years": s.age_years,
            "outcome": s.outcome,
            "length_of_stay_days": s.length_of_stay_days,
            "matched_image_id": self.matched_image_id,
            "matched_study": study(self.matched_study),
            "series": [study(st) for st in self.patient.studies],
        }


@dataclass(frozen=True)
class SearchResults:
    query: QueryInfo
    model_id: str
    model_version: str
    backend: str
    n_indexed: int
    n_patients_searched: int
    include_query_patient: bool
    results: tuple[SimilarPatient, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "backend": self.backend,
            "similarity": "cosine of L2-normalised embeddings",
            "n_images_indexed": self.n_indexed,
            "n_patients_searched": self.n_patients_searched,
            "query": {
                "source": self.query.source,
                "recognised_as_image_id": self.query.image_id,
                "patient_id": self.query.patient_pseudonym,
                "images_with_same_pixels": list(self.query.same_pixels),
            },
            "include_query_patient": self.include_query_patient,
            "results": [r.as_dict() for r in self.results],
        }


def allowed_patients(library: CaseLibrary, where: SearchFilter | None) -> frozenset[str] | None:
    """Pseudonyms that pass the filter, or None when nothing is filtered."""
    if where is None or not where.active:
        return None
    summaries = library.patients(PatientFilter(outcomes=where.outcomes, modality=where.modality))
    if where.labels is not None:
        wanted = {None if lb == UNLABELLED else lb for lb in where.labels}
        summaries = [p for p in summaries if p.label in wanted]
    return frozenset(p.pseudonym for p in summaries)


def open_index(library: CaseLibrary, model: LoadedModel, backend: str = "auto") -> LibraryIndex:
    """The library's index for ``model``'s current weights, in ``backend`` (one of
    :data:`SEARCH_BACKENDS`); a plain error when it is empty."""
    check_embeddable(model)
    index = LibraryIndex(library, model.id, embedding_version(model), backend)
    if not len(index):
        raise InvalidInputError(
            f"The case library has no {model.id} embeddings for these weights yet. "
            "Compute them with `python -m core library index`."
        )
    return index


def find_similar(
    library: CaseLibrary,
    model: LoadedModel,
    *,
    image: XrayImage | None = None,
    case_image_id: int | None = None,
    k: int = DEFAULT_K,
    include_query_patient: bool = False,
    where: SearchFilter | None = None,
    index: LibraryIndex | None = None,
) -> SearchResults:
    """The ``k`` patients most similar to an uploaded ``image`` or to the library image
    ``case_image_id`` (exactly one of the two)."""
    if (image is None) == (case_image_id is None):
        raise ValueError("give either an image or a library case, not both")
    if k < 1:
        raise InvalidInputError("Ask for at least one similar patient.")
    index = index or open_index(library, model)
    if index.model_id != model.id or index.model_version != embedding_version(model):
        raise ValueError("the index belongs to another model or other weights")

    secret = library.secret()
    if case_image_id is not None:
        ref = index.owner.get(case_image_id) or next(
            (r for r in library.image_refs() if r.image_id == case_image_id), None
        )
        if ref is None:
            raise InvalidInputError(f"There is no image {case_image_id} in the case library.")
        vector = index.vector(case_image_id)
        if vector is None:  # not indexed (a CT slice under an X-ray model, or added since)
            vector = embed_xray(model, read_stored_xray(library, case_image_id))
        digest = library.pixel_digest_of(case_image_id)
        same = {case_image_id, *(library.images_with_pixel_digest(digest) if digest else [])}
        query = QueryInfo("library", case_image_id, ref.patient_pseudonym, tuple(sorted(same)))
    else:
        assert image is not None
        same_ids = library.images_with_pixel_digest(pixel_digest(secret, image))
        owner = next((index.owner[i] for i in same_ids if i in index.owner), None)
        # A library image found again is searched as that case, whatever its file's window.
        stored_vector = None if owner is None else index.vector(owner.image_id)
        vector = stored_vector if stored_vector is not None else embed_xray(model, image)
        query = QueryInfo(
            "upload",
            None if owner is None else owner.image_id,
            None if owner is None else owner.patient_pseudonym,
            tuple(same_ids),
        )

    exclude_patients: set[str] = set()
    if not include_query_patient:
        exclude_patients = {index.owner[i].patient_pseudonym for i in query.same_pixels if i in index.owner}
        if query.patient_pseudonym:
            exclude_patients.add(query.patient_pseudonym)
    allowed = allowed_patients(library, where)
    nearest = index.nearest_patients(
        vector,
        k,
        exclude_images=frozenset(query.same_pixels),
        exclude_patients=frozenset(exclude_patients),
        allowed_patients=allowed,
    )
    results = []
    for who, image_id, sim in nearest:
        patient = library.patient(who)
        results.append(
            SimilarPatient(
                patient=patient,
                similarity=sim,
                matched_image_id=image_id,
                matched_study_id=index.owner[image_id].study_id,
                image_similarity=index.similarity(
                    vector, [i for i in index.images_of.get(who, []) if i not in query.same_pixels]
                ),
            )
        )
    searched = set(index.images_of) - exclude_patients
    if allowed is not None:
        searched &= allowed
    return SearchResults(
        query=query,
        model_id=model.id,
        model_version=embedding_version(model),
        backend=index.backend,
        n_indexed=len(index),
        n_patients_searched=len(searched),
        include_query_patient=include_query_patient,
        results=tuple(results),
    )


def resolve_case(library: CaseLibrary, ref: str, kinds: tuple[str, ...] = ("xray",)) -> int:
    """The image id a case reference names: ``image:ID``, ``study:ID`` (its first image of
    ``kinds``), ``PSEUDONYM`` (the patient's first such image in time order) or
    ``PSEUDONYM@DAY`` (their such image of that day)."""
    text = ref.strip()
    kind_words = " or ".join(_KIND_WORDS.get(k, k) for k in kinds)
    article = "an" if kind_words.startswith("X") else "a"
    if text.startswith("image:"):
        try:
            image_id = int(text.removeprefix("image:"))
        except ValueError as e:
            raise InvalidInputError(f"{ref!r} is not a case reference: image:ID takes a number.") from e
        record = library.image_record(image_id)
        if record.kind not in kinds:
            raise InvalidInputError(
                f"Image {image_id} is a {_KIND_WORDS.get(record.kind, record.kind)}; "
                f"the search takes {article} {kind_words} image."
            )
        return image_id
    if text.startswith("study:"):
        try:
            study_id = int(text.removeprefix("study:"))
        except ValueError as e:
            raise InvalidInputError(f"{ref!r} is not a case reference: study:ID takes a number.") from e
        ids = [r.image_id for r in library.image_refs(kinds) if r.study_id == study_id]
        if not ids:
            raise InvalidInputError(f"Study {study_id} is not in the case library or has no {kind_words} image.")
        return ids[0]
    pseudonym, _, day_text = text.partition("@")
    patient = library.patient(pseudonym)
    studies = [s for s in patient.studies if any(im.kind in kinds for im in s.images)]
    if day_text:
        try:
            day = float(day_text)
        except ValueError as e:
            raise InvalidInputError(f"{ref!r}: the day after @ must be a number.") from e
        studies = [s for s in studies if s.day is not None and abs(s.day - day) < 1e-6]
    if not studies:
        raise InvalidInputError(
            f"Patient {pseudonym} has no {kind_words} image" + (f" on day {day_text}." if day_text else ".")
        )
    return next(im.id for im in studies[0].images if im.kind in kinds)
