"""What a case library is, whatever stores it: the :class:`CaseLibrary` interface and its plain types.

Pages, importers and analyses talk to :class:`CaseLibrary`. Two stores implement it on one
body of SQL (:mod:`core.library.sql`): :class:`core.library.store.SqliteLibrary`, a folder with
one SQLite file (the default, no server), and :class:`core.library.postgres.PostgresLibrary`, a
PostgreSQL database that several app processes share. Nothing that identifies a person is
stored: importers de-identify first, and a store only ever sees pseudonyms, offsets in days and
de-identified files.

A library keeps a random secret that keys pseudonyms, UID remapping and the fingerprints used
to recognise a re-imported file; whoever holds the library can therefore recompute a
pseudonym from an original patient id, which is what lets a re-import find its patients
again. Treat the library like the data it holds.
"""

from __future__ import annotations

import abc
import copy
import hashlib
import hmac
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self

import numpy as np

from core.errors import DashboardError
from core.library.audit import UNKNOWN_USER, AuditEntry, clean_user
from core.library.deid import Deidentifier
from core.library.meeting_records import (
    HIDEABLE,
    Meeting,
    MeetingCase,
    Read,
)
from core.library.records import (
    ImageRecord,
    ImageRef,
    LibraryCounts,
    NewPatient,
    NewStudy,
    Patient,
    PatientFilter,
    PatientSummary,
)

#: Environment variable naming the app's library: a folder, or a ``postgresql://`` address.
LIBRARY_ENV = "DASHBOARD_LIBRARY"
#: The app's own library when the environment does not name one (ignored by git).
DEFAULT_LIBRARY_DIR = Path(__file__).resolve().parents[2] / "data" / "library"
#: How a library address names a PostgreSQL database rather than a folder.
DATABASE_SCHEMES = ("postgresql://", "postgres://")


#: The tables every store of a library has, parents before children (the audit log refers to
#: studies by id without a foreign key, so it may come anywhere).
TABLES = (
    "meta",
    "patients",
    "studies",
    "images",
    "embeddings",
    "pixel_digests",
    "scores",
    "meetings",
    "meeting_cases",
    "reads",
    "audit",
)


def is_database_url(location: str | Path) -> bool:
    """Whether a library location names a PostgreSQL database (else it is a folder)."""
    return isinstance(location, str) and location.strip().lower().startswith(DATABASE_SCHEMES)


def content_key(secret: bytes, contents: Iterable[bytes]) -> str:
    """A keyed digest of a set of files (in any order) that recognises them when imported again.

    Only the digest is stored, never a plain hash of a file: without the library's secret it
    cannot confirm that a given file was imported.
    """
    digests = sorted(hashlib.sha256(data).digest() for data in contents)
    mac = hmac.new(secret, digestmod=hashlib.sha256)
    for d in digests:
        mac.update(d)
    return mac.hexdigest()


def default_library_location() -> str:
    """The app's library: ``$DASHBOARD_LIBRARY`` (a folder or a ``postgresql://`` address), else
    ``data/library`` in the project."""
    env = os.environ.get(LIBRARY_ENV, "").strip()
    if not env:
        return str(DEFAULT_LIBRARY_DIR)
    return env if is_database_url(env) else str(Path(env).expanduser())


@dataclass(frozen=True)
class NewImage:
    """An image to store: its de-identified files (name, bytes) and a PNG thumbnail."""

    kind: str  # one of IMAGE_KINDS
    files: tuple[tuple[str, bytes], ...]
    width: int | None = None
    height: int | None = None
    depth: int | None = None
    thumbnail_png: bytes | None = None


class LibraryError(DashboardError):
    """The library cannot be opened, read or written."""


class MissingLibraryError(LibraryError):
    """There is no library where one was expected (and it was not to be created)."""


class CaseLibrary(abc.ABC):
    """What pages, importers and analyses may ask of a case library.

    ``user`` is who the changes made through this object are recorded under in the audit log
    (see :mod:`core.library.audit`); :meth:`acting` gives a view of the same library for
    another user, so one library opened per process serves every signed-in user.
    """

    #: Where the library is, as a user would name it again (a folder, or a PostgreSQL address
    #: without its password): for messages, and as the key of anything cached per library.
    location: str
    user: str = UNKNOWN_USER

    def acting(self, user: str) -> Self:
        """This library, with its changes recorded under ``user`` (same store, same locks)."""
        view = copy.copy(self)
        view.user = clean_user(user)
        return view

    # -- identity -------------------------------------------------------------------------
    @abc.abstractmethod
    def secret(self) -> bytes:
        """The library's key for pseudonyms, UID remapping and fingerprints."""

    def pseudonym(self, source: str, patient_id: str) -> str:
        """The pseudonym this library gives ``patient_id`` of a dataset of kind ``source``."""
        return Deidentifier(self.secret()).pseudonym(source, patient_id)

    def content_key(self, contents: Iterable[bytes]) -> str:
        """Keyed fingerprint of a study's source files; see :func:`content_key`."""
        return content_key(self.secret(), contents)

    @abc.abstractmethod
    def setting(self, key: str) -> str | None:
        """A value the library keeps about itself (e.g. how far the demo build got), or None."""

    @abc.abstractmethod
    def set_setting(self, key: str, value: str) -> None: ...

    # -- writing --------------------------------------------------------------------------
    @abc.abstractmethod
    def has_source_key(self, key: str) -> bool:
        """Whether a study with this fingerprint was imported already."""

    @abc.abstractmethod
    def study_of_source_key(self, key: str) -> tuple[str, int] | None:
        """The patient's pseudonym and the study id of the study with this fingerprint, if any."""

    @abc.abstractmethod
    def source_keys(self) -> set[str]:
        """The fingerprints of every study in the library."""

    @abc.abstractmethod
    def add_case(self, patient: NewPatient, study: NewStudy, images: Sequence[NewImage], source_key: str) -> int:
        """Store one study (creating or updating its patient) atomically; return the study id."""

    @abc.abstractmethod
    def delete_patient(self, pseudonym: str) -> None:
        """Remove a patient, their studies, images, derived data, files, meeting cases and the
        reads of those cases."""

    # -- reading --------------------------------------------------------------------------
    @abc.abstractmethod
    def counts(self) -> LibraryCounts: ...

    @abc.abstractmethod
    def patients(self, where: PatientFilter | None = None) -> list[PatientSummary]: ...

    @abc.abstractmethod
    def patient(self, pseudonym: str) -> Patient:
        """One patient with all studies in time order; raises ``InvalidInputError`` if unknown."""

    @abc.abstractmethod
    def thumbnail(self, image_id: int) -> bytes | None: ...

    @abc.abstractmethod
    def image_files(self, image: ImageRecord) -> list[tuple[str, bytes]]:
        """The stored files of an image as (name, bytes): one file, or every slice of a series."""

    @abc.abstractmethod
    def image_record(self, image_id: int) -> ImageRecord:
        """One image's record; raises ``InvalidInputError`` if unknown."""

    @abc.abstractmethod
    def image_refs(self, kinds: Sequence[str] | None = None) -> list[ImageRef]:
        """Every image (of these kinds) with its study and patient, by image id."""

    # -- derived data filled by later analyses --------------------------------------------
    @abc.abstractmethod
    def put_pixel_digests(self, digests: dict[int, str]) -> None:
        """Store a keyed digest of each image's decoded pixels (see ``core.search.embeddings``)."""

    @abc.abstractmethod
    def images_with_pixel_digest(self, digest: str) -> list[int]:
        """Ids of the images whose pixels have this digest (the same picture, in any file format)."""

    @abc.abstractmethod
    def pixel_digest_of(self, image_id: int) -> str | None:
        """The stored pixel digest of an image, or None when it was not indexed yet."""

    @abc.abstractmethod
    def drop_embeddings(self, model_id: str, keep_version: str) -> int:
        """Delete a model's embeddings of every version but ``keep_version``; return how many."""

    @abc.abstractmethod
    def put_embeddings(self, model_id: str, model_version: str, vectors: dict[int, np.ndarray]) -> None:
        """Store one vector per image id for a model version."""

    @abc.abstractmethod
    def embeddings(
        self, model_id: str, model_version: str, image_ids: Sequence[int] | None = None
    ) -> tuple[list[int], np.ndarray]:
        """Image ids (ascending) and their vectors (n, d) float32 for a model version: of every
        image, or of those of ``image_ids`` that have one."""

    @abc.abstractmethod
    def embedding_ids(self, model_id: str, model_version: str) -> list[int]:
        """The ids of the images with a vector for a model version (without reading the vectors)."""

    def has_vector_index(self) -> bool:
        """Whether the store searches embeddings itself (:meth:`nearest`); else the app indexes them."""
        return False

    def nearest(
        self, model_id: str, model_version: str, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The ``k`` stored vectors of a model version nearest each query by cosine similarity,
        searched in the store's own vector index: (similarities (m, k) float32, image ids (m, k)
        int64, padded with -1), best first; None when the store has no vector index."""
        return None

    @abc.abstractmethod
    def count_embeddings(self, model_id: str, model_version: str) -> int:
        """How many images have a vector for a model version (without reading the vectors)."""

    @abc.abstractmethod
    def put_scores(self, model_id: str, model_version: str, name: str, values: dict[int, float]) -> None:
        """Store one named score per study id for a model version."""

    @abc.abstractmethod
    def scores(self, model_id: str, model_version: str, name: str) -> dict[int, float]: ...

    # -- case-review meetings (see core.library.meeting_records) --------------------------
    @abc.abstractmethod
    def create_meeting(self, title: str, date: str) -> int:
        """Create an empty meeting (``date`` is the meeting's day, YYYY-MM-DD); return its id."""

    @abc.abstractmethod
    def meetings(self) -> list[Meeting]:
        """Every meeting with its cases, the latest meeting day first."""

    @abc.abstractmethod
    def meeting(self, meeting_id: int) -> Meeting:
        """One meeting with its cases in presentation order; a plain error if unknown."""

    @abc.abstractmethod
    def meeting_case(self, case_id: int) -> MeetingCase:
        """One meeting case with its current position; a plain error if unknown."""

    @abc.abstractmethod
    def add_to_meeting(
        self, meeting_id: int, pseudonym: str, study_id: int | None = None, hidden: Iterable[str] = HIDEABLE
    ) -> MeetingCase:
        """Put a patient (or one of their studies) last in a meeting, hiding ``hidden`` until
        revealed; a plain error for an unknown patient or study, or a case already there."""

    @abc.abstractmethod
    def move_case(self, meeting_id: int, case_id: int, new_position: int) -> MeetingCase:
        """Move a case to ``new_position`` (1 = first); the others keep their order."""

    @abc.abstractmethod
    def remove_from_meeting(self, case_id: int) -> None:
        """Remove a case and its reads from its meeting."""

    @abc.abstractmethod
    def set_hidden(self, case_id: int, hidden: Iterable[str]) -> MeetingCase:
        """What a case hides until revealed (any of ``HIDEABLE``)."""

    @abc.abstractmethod
    def reveal(self, case_id: int, revealed: bool = True) -> MeetingCase:
        """Reveal a case's hidden items (or, with ``revealed=False``, hide them again)."""

    @abc.abstractmethod
    def add_read(
        self,
        case_id: int,
        reader: str,
        read: str,
        confidence: int,
        agrees_with_model: bool | None = None,
        comment: str = "",
        model_id: str | None = None,
        model_version: str | None = None,
        model_label: str | None = None,
        model_probability: float | None = None,
        model_threshold: float | None = None,
    ) -> int:
        """Record a reader's read of a meeting case (replacing their earlier read of it, so a
        reader has one read per case); return the read's id. ``model_label``,
        ``model_probability`` and ``model_threshold`` are what the model (``model_id``) read in
        the case (:func:`core.review.model_read.model_read`), kept so the agreement figures can
        be computed again: the label None when the model gave none."""

    @abc.abstractmethod
    def reads(self, meeting_id: int) -> list[Read]:
        """A meeting's reads, by case in presentation order."""

    # -- audit ----------------------------------------------------------------------------
    @abc.abstractmethod
    def audit_log(self, *, limit: int | None = None, pseudonym: str | None = None) -> list[AuditEntry]:
        """The audit log, newest first (at most ``limit`` entries; of one patient when given)."""


class Cursor(Protocol):
    """What the shared SQL needs of a cursor (sqlite3's and psycopg's have it)."""

    rowcount: int
    description: Any

    def fetchone(self) -> Any: ...

    def fetchmany(self, size: int = ..., /) -> list[Any]: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    """What the shared SQL needs of a connection (``sqlite3.Connection`` as it is; the
    PostgreSQL store wraps psycopg's)."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...
