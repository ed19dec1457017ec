"""The case library's store: a small interface and its SQLite implementation.

A library is a folder::

    library.sqlite      patients, studies, images, outcomes, derived data, case-review meetings
                        and their reads, the audit log (one file, no server)
    files/              de-identified image files, under paths the library makes up:
                        files/<pseudonym>/<study id>/<name>  (a folder of slices for a CT series)

Pages, importers and analyses talk to :class:`CaseLibrary`; :class:`SqliteLibrary` is the
default implementation, and a server database can replace it by implementing the same
methods. Nothing that identifies a person is stored: importers de-identify first, and the
store only ever sees pseudonyms, offsets in days and de-identified files.

The library keeps a random secret (in its ``meta`` table) that keys pseudonyms, UID
remapping and the fingerprints used to recognise a re-imported file; whoever holds the
library file can therefore recompute a pseudonym from an original patient id, which is what
lets a re-import find its patients again. Treat the library file like the data it holds.
"""

from __future__ import annotations

import abc
import contextlib
import copy
import errno
import hashlib
import hmac
import json
import logging
import os
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import numpy as np

from core.errors import DashboardError, InvalidInputError
from core.library import meetings_store
from core.library.audit import UNKNOWN_USER, AuditEntry, clean_user, utc_now
from core.library.deid import Deidentifier
from core.library.meeting_records import (
    HIDEABLE,
    Meeting,
    MeetingCase,
    Read,
    check_comment,
    check_confidence,
    check_date,
    check_hidden,
    check_model,
    check_model_read,
    check_read,
    check_reader,
    check_title,
)
from core.library.records import (
    IMAGE_KINDS,
    MODALITIES,
    ImageRecord,
    ImageRef,
    LibraryCounts,
    NewPatient,
    NewStudy,
    Patient,
    PatientFilter,
    PatientSummary,
    Study,
)

logger = logging.getLogger(__name__)

#: Environment variable naming the app's library folder.
LIBRARY_ENV = "DASHBOARD_LIBRARY"
#: The app's own library when the environment does not name one (ignored by git).
DEFAULT_LIBRARY_DIR = Path(__file__).resolve().parents[2] / "data" / "library"
DATABASE_NAME = "library.sqlite"
FILES_DIR = "files"
SCHEMA_VERSION = 1


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


def default_library_path() -> Path:
    """The app's library folder: ``$DASHBOARD_LIBRARY``, else ``data/library`` in the project."""
    env = os.environ.get(LIBRARY_ENV)
    return Path(env).expanduser() if env else DEFAULT_LIBRARY_DIR


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
    """The library folder cannot be opened or written."""


class MissingLibraryError(LibraryError):
    """There is no library where one was expected (and it was not to be created)."""


#: How long a write waits for another program's write to finish before giving up, and how long
#: it waits quietly before saying that it is waiting.
_WAIT_S = 120.0
_QUIET_WAIT_S = 1.0
_SQLITE_MAGIC = b"SQLite format 3\x00"


def _os_words(e: OSError) -> str:
    """An operating system error in plain words (no Python exception name)."""
    if e.errno == errno.ENOSPC:
        return "the disk is full"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "the folder is read-only or not yours to write"
    return (e.strerror or str(e)).lower()


def _sqlite_words(e: sqlite3.Error) -> str:
    """What SQLite's error means for the user, to follow "The case library at ..."."""
    text = str(e)
    if "disk is full" in text:
        return "cannot be written: the disk is full (nothing of the last change was stored)"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return "cannot be written: the file or its folder is read-only"
    if "locked" in text or "busy" in text:
        return "is busy: another program is writing to it; try again when it finishes"
    if "not a database" in text or "malformed" in text:
        return "is damaged (restore it from a backup)"
    return f"could not be read or written ({text})"


class CaseLibrary(abc.ABC):
    """What pages, importers and analyses may ask of a case library.

    ``user`` is who the changes made through this object are recorded under in the audit log
    (see :mod:`core.library.audit`); :meth:`acting` gives a view of the same library for
    another user, so one library opened per process serves every signed-in user.
    """

    root: Path
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
    def image_path(self, image: ImageRecord) -> Path:
        """Absolute path of an image's file (or folder of slices for a CT series)."""

    def image_files(self, image: ImageRecord) -> list[tuple[str, bytes]]:
        """The stored files of an image as (name, bytes): one file, or every slice of a series."""
        path = self.image_path(image)
        try:
            if path.is_dir():
                return [(p.name, p.read_bytes()) for p in sorted(path.iterdir()) if p.is_file()]
            return [(path.name, path.read_bytes())]
        except OSError as e:
            raise LibraryError(f"An image file of the case library could not be read: {e.strerror}.") from e

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
    def embeddings(self, model_id: str, model_version: str) -> tuple[list[int], np.ndarray]:
        """Image ids and their vectors (n, d) float32 for a model version."""

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


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients (
    id INTEGER PRIMARY KEY,
    pseudonym TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    label TEXT, sex TEXT, age_years REAL,
    outcome TEXT, survival INTEGER, length_of_stay_days REAL, went_icu INTEGER, intubated INTEGER
);
CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    modality TEXT NOT NULL, view TEXT,
    offset_onset_days REAL, offset_admission_days REAL,
    label TEXT, note TEXT, findings_json TEXT,
    source_key TEXT NOT NULL UNIQUE,
    burned_in TEXT
);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_id);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, path TEXT NOT NULL, n_files INTEGER NOT NULL,
    width INTEGER, height INTEGER, depth INTEGER, thumbnail BLOB
);
CREATE INDEX IF NOT EXISTS images_study ON images(study_id);
CREATE TABLE IF NOT EXISTS embeddings (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL, model_version TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (image_id, model_id, model_version)
);
CREATE TABLE IF NOT EXISTS pixel_digests (
    image_id INTEGER PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    digest TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pixel_digests_digest ON pixel_digests(digest);
CREATE TABLE IF NOT EXISTS scores (
    study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL, model_version TEXT NOT NULL, name TEXT NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (study_id, model_id, model_version, name)
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL, user TEXT NOT NULL, action TEXT NOT NULL,
    pseudonym TEXT, study_id INTEGER, detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_pseudonym ON audit(pseudonym);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TABLE IF NOT EXISTS meetings (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL, date TEXT NOT NULL, created_by TEXT NOT NULL, created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meeting_cases (
    id INTEGER PRIMARY KEY,
    meeting_id INTEGER NOT NULL REFERENCES meetings(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    patient_id INTEGER NOT NULL REFERENCES patients(id) ON DELETE CASCADE,
    study_id INTEGER REFERENCES studies(id) ON DELETE CASCADE,
    hidden TEXT NOT NULL DEFAULT '', revealed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS meeting_cases_meeting ON meeting_cases(meeting_id, position);
CREATE INDEX IF NOT EXISTS meeting_cases_patient ON meeting_cases(patient_id);
CREATE INDEX IF NOT EXISTS meeting_cases_study ON meeting_cases(study_id);
CREATE UNIQUE INDEX IF NOT EXISTS meeting_cases_once
    ON meeting_cases(meeting_id, patient_id, COALESCE(study_id, 0));
CREATE TABLE IF NOT EXISTS reads (
    id INTEGER PRIMARY KEY,
    meeting_case_id INTEGER NOT NULL REFERENCES meeting_cases(id) ON DELETE CASCADE,
    reader TEXT NOT NULL, read TEXT NOT NULL, confidence INTEGER NOT NULL, agrees_with_model INTEGER,
    comment TEXT NOT NULL DEFAULT '', model_id TEXT, model_version TEXT, at TEXT NOT NULL,
    model_label TEXT, model_probability REAL, model_threshold REAL,
    UNIQUE (meeting_case_id, reader)
);
"""

#: Every table of the schema: a library that lacks one was made by an older version.
_TABLES = frozenset(
    {
        "meta",
        "patients",
        "studies",
        "images",
        "embeddings",
        "pixel_digests",
        "scores",
        "audit",
        "meetings",
        "meeting_cases",
        "reads",
    }
)

#: The reads' columns added since meetings were first stored: what the model read in the case.
_READ_MODEL_COLUMNS = (("model_label", "TEXT"), ("model_probability", "REAL"), ("model_threshold", "REAL"))

_PATIENT_COLUMNS = (
    "label",
    "sex",
    "age_years",
    "outcome",
    "survival",
    "length_of_stay_days",
    "went_icu",
    "intubated",
)


def _bool_or_none(value: object) -> bool | None:
    return None if value is None else bool(value)


def _int_or_none(value: bool | None) -> int | None:
    return None if value is None else int(value)


class SqliteLibrary(CaseLibrary):
    """A case library in one SQLite file beside a ``files/`` folder.

    Safe to share between the threads of one process (Streamlit sessions): each call opens
    its own connection, and writes are serialised by a lock and SQLite's own locking.
    """

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.database = self.root / DATABASE_NAME
        self.files_dir = self.root / FILES_DIR
        self._write_lock = threading.Lock()
        if not self.database.exists():
            if not create:
                raise MissingLibraryError(f"There is no case library at {self.root}.")
            try:
                self.files_dir.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise LibraryError(f"Could not create a case library at {self.root}: {_os_words(e)}.") from e
        self._check_file()
        self._initialise()
        self._secret = bytes.fromhex(self._meta("secret"))

    # -- plumbing -------------------------------------------------------------------------
    def _check_file(self) -> None:
        """Refuse, without writing to it, a file that is not a SQLite database or was cut short.

        Only the file's 100-byte header is read: SQLite itself would not notice a truncated file
        until a query reached a missing page, and by then the app might have started writing.
        """
        try:
            with open(self.database, "rb") as f:
                header = f.read(100)
            size = self.database.stat().st_size
        except FileNotFoundError:
            return  # a new library: sqlite creates the file
        except OSError as e:
            raise LibraryError(f"The case library file {self.database} cannot be read: {_os_words(e)}.") from e
        if not header:
            return  # an empty file (a creation cut short): nothing in it to keep
        if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
            raise LibraryError(f"{self.database} is not a case library (not a SQLite database); it was left untouched.")
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        # The page count in the header is valid when its "version valid for" matches the change
        # counter. A checkpoint cut short can leave the header ahead of the file while the
        # write-ahead log still holds the pages, which SQLite then copies again: no verdict then.
        try:
            log_pending = self.database.with_name(self.database.name + "-wal").stat().st_size > 0
        except OSError:  # no log: the file alone is the library
            log_pending = False
        if header[92:96] == header[24:28] and size < page_size * pages and not log_pending:
            raise LibraryError(
                f"The case library file {self.database} is truncated ({size} of {page_size * pages} bytes); "
                "restore it from a backup. It was left untouched."
            )

    def _initialise(self) -> None:
        """Give an empty database the library's tables and secret, in one transaction (a creation
        killed half-way leaves an empty file, which the next open initialises), and a library made
        by an older version the tables added since. A SQLite database of some other program is
        refused untouched."""
        with self._connect() as con:
            tables = {str(r[0]) for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and ("meta" not in tables or not self._has_secret(con)):
                raise LibraryError(
                    f"{self.database} is a SQLite database but not a case library; it was left untouched."
                )
            if tables >= _TABLES:
                self._add_columns(con)
                return
            con.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
            # executescript commits first and runs the script as it stands: the explicit
            # transaction makes the tables and the secret appear together or not at all.
            con.executescript(
                "BEGIN IMMEDIATE;"
                + _SCHEMA
                + f"INSERT OR IGNORE INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}');"
                + f"INSERT OR IGNORE INTO meta VALUES ('secret', '{secrets.token_hex(32)}');"
                + "COMMIT;"
            )
            self._add_columns(con)  # an old library may lack columns as well as tables

    @staticmethod
    def _add_columns(con: sqlite3.Connection) -> None:
        """The columns added to existing tables since the first version (``ALTER TABLE`` is one
        statement: a process killed during it leaves the table as it was)."""
        columns = {str(r[1]) for r in con.execute("PRAGMA table_info(studies)")}
        if "burned_in" not in columns:
            con.execute("ALTER TABLE studies ADD COLUMN burned_in TEXT")
            con.commit()
        # What the model read in a case, kept with each read so agreement can be computed again.
        columns = {str(r[1]) for r in con.execute("PRAGMA table_info(reads)")}
        for name, kind in _READ_MODEL_COLUMNS:
            if name not in columns:
                con.execute(f"ALTER TABLE reads ADD COLUMN {name} {kind}")
                con.commit()

    @staticmethod
    def _has_secret(con: sqlite3.Connection) -> bool:
        return con.execute("SELECT 1 FROM meta WHERE key = 'secret'").fetchone() is not None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            con = sqlite3.connect(self.database, timeout=_WAIT_S)
        except sqlite3.Error as e:
            raise LibraryError(f"The case library at {self.root} {_sqlite_words(e)}.") from e
        try:
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        except sqlite3.DatabaseError as e:
            raise LibraryError(f"The case library at {self.root} {_sqlite_words(e)}.") from e
        finally:
            con.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed at the end or rolled back on any error.

        ``BEGIN IMMEDIATE`` takes the write lock before anything is read, so two writers (the app
        adding a case while the command line imports) queue instead of failing half-way. When
        another program holds the lock, a warning says so and the call waits for it.
        """
        with self._write_lock, self._connect() as con:
            con.execute(f"PRAGMA busy_timeout = {int(_QUIET_WAIT_S * 1000)}")
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) and "busy" not in str(e):
                    raise
                logger.warning(
                    "The case library at %s is busy with another writer; waiting up to %d s.", self.root, _WAIT_S
                )
                con.execute(f"PRAGMA busy_timeout = {int(_WAIT_S * 1000)}")
                con.execute("BEGIN IMMEDIATE")
            with con:  # commit, or roll back on any error (also KeyboardInterrupt)
                yield con

    def _meta(self, key: str) -> str:
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        if row is None:
            raise LibraryError(f"The case library at {self.root} is damaged (no {key}).")
        return str(row[0])

    def secret(self) -> bytes:
        return self._secret

    def setting(self, key: str) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT value FROM meta WHERE key = ?", (f"setting:{key}",)).fetchone()
        return None if row is None else str(row[0])

    def set_setting(self, key: str, value: str) -> None:
        with self._writing() as con:
            con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"setting:{key}", value))

    # -- writing --------------------------------------------------------------------------
    def has_source_key(self, key: str) -> bool:
        with self._connect() as con:
            return con.execute("SELECT 1 FROM studies WHERE source_key = ?", (key,)).fetchone() is not None

    def study_of_source_key(self, key: str) -> tuple[str, int] | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT p.pseudonym, s.id FROM studies s JOIN patients p ON p.id = s.patient_id WHERE s.source_key = ?",
                (key,),
            ).fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    def source_keys(self) -> set[str]:
        with self._connect() as con:
            return {str(row[0]) for row in con.execute("SELECT source_key FROM studies")}

    def add_case(self, patient: NewPatient, study: NewStudy, images: Sequence[NewImage], source_key: str) -> int:
        if study.modality not in MODALITIES:
            raise InvalidInputError(f"Unknown modality {study.modality!r}; expected one of {', '.join(MODALITIES)}.")
        for image in images:
            if image.kind not in IMAGE_KINDS:
                raise InvalidInputError(f"Unknown image kind {image.kind!r}.")
            if not image.files:
                raise InvalidInputError("An image to store has no files.")
        folder: Path | None = None
        try:
            # One transaction: the patient, the study, its images. Files are written before the
            # commit and removed on failure; a process killed in between leaves only files no
            # row points to, which the next write of that study id replaces.
            with self._writing() as con:
                patient_id = self._upsert_patient(con, patient)
                cur = con.execute(
                    "INSERT INTO studies (patient_id, modality, view, offset_onset_days, offset_admission_days,"
                    " label, note, findings_json, source_key, burned_in) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        patient_id,
                        study.modality,
                        study.view,
                        study.offset_onset_days,
                        study.offset_admission_days,
                        study.label,
                        study.note,
                        None if study.findings is None else json.dumps(study.findings, sort_keys=True),
                        source_key,
                        study.burned_in,
                    ),
                )
                study_id = int(cur.lastrowid or 0)
                self._record(con, "add-case", patient.pseudonym, study_id, f"{study.modality} from {patient.source}")
                folder = self.files_dir / patient.pseudonym / f"{study_id:07d}"
                shutil.rmtree(folder, ignore_errors=True)  # left by a write that was killed
                for n, image in enumerate(images):
                    if image.kind == "ct-series":
                        path = folder / f"series-{n}"
                        for name, data in image.files:
                            self._write_file(path / name, data)
                    else:
                        name, data = image.files[0]
                        path = folder / name
                        self._write_file(path, data)
                    con.execute(
                        "INSERT INTO images (study_id, kind, path, n_files, width, height, depth, thumbnail)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (
                            study_id,
                            image.kind,
                            path.relative_to(self.files_dir).as_posix(),
                            len(image.files),
                            image.width,
                            image.height,
                            image.depth,
                            image.thumbnail_png,
                        ),
                    )
        except BaseException:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        return study_id

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            raise LibraryError(f"Could not write an image into the case library: {_os_words(e)}.") from e

    def _upsert_patient(self, con: sqlite3.Connection, p: NewPatient) -> int:
        values = (
            p.label,
            p.sex,
            p.age_years,
            p.outcome,
            _int_or_none(p.survival),
            p.length_of_stay_days,
            _int_or_none(p.went_icu),
            _int_or_none(p.intubated),
        )
        row = con.execute("SELECT id FROM patients WHERE pseudonym = ?", (p.pseudonym,)).fetchone()
        if row is None:
            cur = con.execute(
                f"INSERT INTO patients (pseudonym, source, {', '.join(_PATIENT_COLUMNS)}) VALUES (?, ?{', ?' * 8})",
                (p.pseudonym, p.source, *values),
            )
            return int(cur.lastrowid or 0)
        # Known patient: fill in what this row knows, keep what earlier rows knew.
        sets = ", ".join(f"{c} = COALESCE(?, {c})" for c in _PATIENT_COLUMNS)
        con.execute(f"UPDATE patients SET {sets} WHERE id = ?", (*values, row[0]))
        return int(row[0])

    def delete_patient(self, pseudonym: str) -> None:
        """Remove a patient, their studies, images, derived data, files, meeting cases and the
        reads of those cases."""
        with self._writing() as con:
            n_cases, n_reads = meetings_store.count_for_patient(con, pseudonym)
            gone = con.execute("DELETE FROM patients WHERE pseudonym = ?", (pseudonym,)).rowcount
            if gone:
                detail = f"with {n_cases} meeting cases and {n_reads} reads" if n_cases else ""
                self._record(con, "delete-patient", pseudonym, None, detail)
        shutil.rmtree(self.files_dir / pseudonym, ignore_errors=True)

    def _record(
        self, con: sqlite3.Connection, action: str, pseudonym: str | None, study_id: int | None, detail: str
    ) -> None:
        """An audit entry, written in the caller's transaction: it exists exactly when the change does."""
        con.execute(
            "INSERT INTO audit (at, user, action, pseudonym, study_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (utc_now(), self.user, action, pseudonym, study_id, detail),
        )

    def audit_log(self, *, limit: int | None = None, pseudonym: str | None = None) -> list[AuditEntry]:
        sql = "SELECT id, at, user, action, pseudonym, study_id, detail FROM audit"
        params: list[object] = []
        if pseudonym is not None:
            sql += " WHERE pseudonym = ?"
            params.append(pseudonym)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, int(limit)))
        with self._connect() as con:
            rows = con.execute(sql, params).fetchall()
        return [
            AuditEntry(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], None if r[5] is None else int(r[5]), str(r[6]))
            for r in rows
        ]

    # -- case-review meetings: the SQL is in core.library.meetings_store --------------------
    # Every change is one transaction with its audit entry. An entry names the meeting, the
    # case and the patient, never a meeting's title or a read's comment (free text, which a
    # user might fill with a name).
    def create_meeting(self, title: str, date: str) -> int:
        title, date = check_title(title), check_date(date)
        with self._writing() as con:
            meeting_id = meetings_store.create(con, title, date, self.user, utc_now())
            self._record(con, "create-meeting", None, None, f"meeting {meeting_id} of {date}")
        return meeting_id

    def meetings(self) -> list[Meeting]:
        with self._connect() as con:
            return meetings_store.meetings(con)

    def meeting(self, meeting_id: int) -> Meeting:
        with self._connect() as con:
            return meetings_store.meeting(con, meeting_id)

    def meeting_case(self, case_id: int) -> MeetingCase:
        with self._connect() as con:
            return meetings_store.case(con, case_id)

    def add_to_meeting(
        self, meeting_id: int, pseudonym: str, study_id: int | None = None, hidden: Iterable[str] = HIDEABLE
    ) -> MeetingCase:
        kept = check_hidden(hidden)
        with self._writing() as con:
            c = meetings_store.add(con, meeting_id, pseudonym, study_id, kept)
            hides = ", ".join(h for h in HIDEABLE if h in kept) or "nothing"
            self._record(
                con,
                "add-to-meeting",
                c.pseudonym,
                c.study_id,
                f"meeting {c.meeting_id}, case {c.id} at position {c.position}; hides {hides}",
            )
        return c

    def move_case(self, meeting_id: int, case_id: int, new_position: int) -> MeetingCase:
        with self._writing() as con:
            c, was = meetings_store.move(con, meeting_id, case_id, new_position)
            self._record(
                con,
                "move-in-meeting",
                c.pseudonym,
                c.study_id,
                f"meeting {c.meeting_id}, case {c.id} from position {was} to {c.position}",
            )
        return c

    def remove_from_meeting(self, case_id: int) -> None:
        with self._writing() as con:
            c = meetings_store.remove(con, case_id)
            self._record(con, "remove-from-meeting", c.pseudonym, c.study_id, f"meeting {c.meeting_id}, case {c.id}")

    def set_hidden(self, case_id: int, hidden: Iterable[str]) -> MeetingCase:
        kept = check_hidden(hidden)
        with self._writing() as con:
            c = meetings_store.set_hidden(con, case_id, kept)
            hides = ", ".join(h for h in HIDEABLE if h in kept) or "nothing"
            self._record(
                con, "set-hidden", c.pseudonym, c.study_id, f"meeting {c.meeting_id}, case {c.id} hides {hides}"
            )
        return c

    def reveal(self, case_id: int, revealed: bool = True) -> MeetingCase:
        with self._writing() as con:
            c = meetings_store.reveal(con, case_id, revealed)
            action = "reveal-case" if revealed else "hide-case-again"
            self._record(con, action, c.pseudonym, c.study_id, f"meeting {c.meeting_id}, case {c.id}")
        return c

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
        reader = check_reader(reader)
        level = check_confidence(confidence)
        text = check_comment(comment)
        mid, version = check_model(agrees_with_model, model_id, model_version)
        m_label, m_probability, m_threshold = check_model_read(mid, model_label, model_probability, model_threshold)
        with self._writing() as con:
            c = meetings_store.case(con, case_id)
            label = check_read(read, meetings_store.modalities(con, c))
            read_id, replaced = meetings_store.put_read(
                con,
                c.id,
                reader,
                label,
                level,
                agrees_with_model,
                text,
                mid,
                version,
                utc_now(),
                m_label,
                m_probability,
                m_threshold,
            )
            detail = f"meeting {c.meeting_id}, case {c.id}: read {read_id} by {reader}"
            if mid:
                detail += f", compared with {mid} {version}"
            if replaced:
                detail += " (replaces their earlier read)"
            self._record(con, "record-read", c.pseudonym, c.study_id, detail)
        return read_id

    def reads(self, meeting_id: int) -> list[Read]:
        with self._connect() as con:
            return meetings_store.reads(con, meeting_id)

    # -- reading --------------------------------------------------------------------------
    def counts(self) -> LibraryCounts:
        with self._connect() as con:
            n_patients = con.execute("SELECT COUNT(*) FROM patients").fetchone()[0]
            n_studies = con.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
            n_images = con.execute("SELECT COUNT(*) FROM images").fetchone()[0]
            by_modality = dict(con.execute("SELECT modality, COUNT(*) FROM studies GROUP BY modality").fetchall())
            by_label = dict(
                con.execute("SELECT COALESCE(label, 'Unknown'), COUNT(*) FROM patients GROUP BY label").fetchall()
            )
        return LibraryCounts(n_patients, n_studies, n_images, by_modality, by_label)

    _SUMMARY_SQL = """
        SELECT p.pseudonym, p.source, p.label, p.sex, p.age_years, p.outcome, p.survival,
               p.length_of_stay_days, p.went_icu, p.intubated,
               COUNT(s.id), SUM(s.modality = 'X-ray'), SUM(s.modality = 'CT')
        FROM patients p LEFT JOIN studies s ON s.patient_id = p.id
    """

    @staticmethod
    def _summary(row: Sequence[object]) -> PatientSummary:
        return PatientSummary(
            pseudonym=str(row[0]),
            source=str(row[1]),
            label=row[2],  # type: ignore[arg-type]
            sex=row[3],  # type: ignore[arg-type]
            age_years=row[4],  # type: ignore[arg-type]
            outcome=row[5],  # type: ignore[arg-type]
            survival=_bool_or_none(row[6]),
            length_of_stay_days=row[7],  # type: ignore[arg-type]
            went_icu=_bool_or_none(row[8]),
            intubated=_bool_or_none(row[9]),
            n_studies=int(row[10] or 0),  # type: ignore[call-overload]
            n_xray=int(row[11] or 0),  # type: ignore[call-overload]
            n_ct=int(row[12] or 0),  # type: ignore[call-overload]
        )

    def patients(self, where: PatientFilter | None = None) -> list[PatientSummary]:
        f = where or PatientFilter()
        clauses: list[str] = []
        params: list[object] = []
        if f.labels is not None:
            clauses.append(f"p.label IN ({', '.join('?' * len(f.labels))})" if f.labels else "0")
            params.extend(f.labels)
        if f.outcomes is not None:
            clauses.append(f"p.outcome IN ({', '.join('?' * len(f.outcomes))})" if f.outcomes else "0")
            params.extend(f.outcomes)
        having = ["COUNT(s.id) >= ?"]
        params_having: list[object] = [f.min_studies]
        if f.max_studies is not None:
            having.append("COUNT(s.id) <= ?")
            params_having.append(f.max_studies)
        if f.modality is not None:
            having.append("SUM(s.modality = ?) > 0")
            params_having.append(f.modality)
        sql = (
            self._SUMMARY_SQL
            + (f" WHERE {' AND '.join(clauses)}" if clauses else "")
            + f" GROUP BY p.id HAVING {' AND '.join(having)} ORDER BY p.pseudonym"
        )
        with self._connect() as con:
            rows = con.execute(sql, (*params, *params_having)).fetchall()
        return [self._summary(r) for r in rows]

    def patient(self, pseudonym: str) -> Patient:
        with self._connect() as con:
            row = con.execute(self._SUMMARY_SQL + " WHERE p.pseudonym = ? GROUP BY p.id", (pseudonym,)).fetchone()
            if row is None:
                raise InvalidInputError(f"There is no patient {pseudonym} in the case library.")
            studies = con.execute(
                "SELECT s.id, s.modality, s.view, s.offset_onset_days, s.offset_admission_days, s.label, s.note,"
                " s.findings_json, s.burned_in FROM studies s JOIN patients p ON p.id = s.patient_id WHERE p.pseudonym = ?",
                (pseudonym,),
            ).fetchall()
            ids = [s[0] for s in studies]
            images: dict[int, list[ImageRecord]] = {i: [] for i in ids}
            if ids:
                for r in con.execute(
                    "SELECT id, study_id, kind, path, n_files, width, height, depth FROM images"
                    f" WHERE study_id IN ({', '.join('?' * len(ids))}) ORDER BY id",
                    ids,
                ):
                    images[r[1]].append(ImageRecord(*r))
        out = [
            Study(
                id=s[0],
                patient_pseudonym=pseudonym,
                modality=s[1],
                view=s[2],
                offset_onset_days=s[3],
                offset_admission_days=s[4],
                label=s[5],
                note=s[6],
                findings=None if s[7] is None else json.loads(s[7]),
                images=tuple(images[s[0]]),
                burned_in=s[8],
            )
            for s in studies
        ]

        # Time order: days since admission, else since onset; studies without any offset last.
        def when(st: Study) -> tuple[int, float, int]:
            day = st.day
            return (day is None, 0.0 if day is None else float(day), st.id)

        return Patient(self._summary(row), tuple(sorted(out, key=when)))

    def thumbnail(self, image_id: int) -> bytes | None:
        with self._connect() as con:
            row = con.execute("SELECT thumbnail FROM images WHERE id = ?", (image_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def image_path(self, image: ImageRecord) -> Path:
        return self.files_dir / image.path

    def image_record(self, image_id: int) -> ImageRecord:
        with self._connect() as con:
            row = con.execute(
                "SELECT id, study_id, kind, path, n_files, width, height, depth FROM images WHERE id = ?", (image_id,)
            ).fetchone()
        if row is None:
            raise InvalidInputError(f"There is no image {image_id} in the case library.")
        return ImageRecord(*row)

    def image_refs(self, kinds: Sequence[str] | None = None) -> list[ImageRef]:
        sql = (
            "SELECT i.id, i.study_id, p.pseudonym, i.kind, s.modality FROM images i"
            " JOIN studies s ON s.id = i.study_id JOIN patients p ON p.id = s.patient_id"
        )
        params: tuple[str, ...] = ()
        if kinds is not None:
            sql += f" WHERE i.kind IN ({', '.join('?' * len(kinds))})" if kinds else " WHERE 0"
            params = tuple(kinds)
        with self._connect() as con:
            rows = con.execute(sql + " ORDER BY i.id", params).fetchall()
        return [ImageRef(int(r[0]), int(r[1]), str(r[2]), str(r[3]), str(r[4])) for r in rows]

    # -- derived data ---------------------------------------------------------------------
    def put_pixel_digests(self, digests: dict[int, str]) -> None:
        with self._writing() as con:
            con.executemany(
                "INSERT OR REPLACE INTO pixel_digests VALUES (?, ?)", [(int(k), str(v)) for k, v in digests.items()]
            )

    def images_with_pixel_digest(self, digest: str) -> list[int]:
        with self._connect() as con:
            rows = con.execute("SELECT image_id FROM pixel_digests WHERE digest = ? ORDER BY image_id", (digest,))
            return [int(r[0]) for r in rows]

    def pixel_digest_of(self, image_id: int) -> str | None:
        with self._connect() as con:
            row = con.execute("SELECT digest FROM pixel_digests WHERE image_id = ?", (image_id,)).fetchone()
        return None if row is None else str(row[0])

    def drop_embeddings(self, model_id: str, keep_version: str) -> int:
        with self._writing() as con:
            cur = con.execute(
                "DELETE FROM embeddings WHERE model_id = ? AND model_version != ?", (model_id, keep_version)
            )
            return int(cur.rowcount)

    def put_embeddings(self, model_id: str, model_version: str, vectors: dict[int, np.ndarray]) -> None:
        rows = []
        for image_id, v in vectors.items():
            arr = np.ascontiguousarray(v, dtype=np.float32).ravel()
            rows.append((int(image_id), model_id, model_version, int(arr.size), arr.tobytes()))
        with self._writing() as con:
            con.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)

    def embeddings(self, model_id: str, model_version: str) -> tuple[list[int], np.ndarray]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT image_id, dim, vector FROM embeddings WHERE model_id = ? AND model_version = ? ORDER BY image_id",
                (model_id, model_version),
            ).fetchall()
        if not rows:
            return [], np.zeros((0, 0), dtype=np.float32)
        dims = {r[1] for r in rows}
        if len(dims) != 1:
            raise LibraryError(f"Embeddings of {model_id} {model_version} have different lengths.")
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), dims.pop())
        return [int(r[0]) for r in rows], matrix.copy()

    def count_embeddings(self, model_id: str, model_version: str) -> int:
        with self._connect() as con:
            row = con.execute(
                "SELECT COUNT(*) FROM embeddings WHERE model_id = ? AND model_version = ?", (model_id, model_version)
            ).fetchone()
        return int(row[0])

    def put_scores(self, model_id: str, model_version: str, name: str, values: dict[int, float]) -> None:
        rows = [(int(k), model_id, model_version, name, float(v)) for k, v in values.items()]
        with self._writing() as con:
            con.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)", rows)

    def scores(self, model_id: str, model_version: str, name: str) -> dict[int, float]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT study_id, value FROM scores WHERE model_id = ? AND model_version = ? AND name = ?",
                (model_id, model_version, name),
            ).fetchall()
        return {int(k): float(v) for k, v in rows}


def open_library(path: str | Path | None = None, *, create: bool = True) -> SqliteLibrary:
    """Open (or create) the library folder ``path`` (default: :func:`default_library_path`)."""
    return SqliteLibrary(default_library_path() if path is None else path, create=create)


def library_exists(path: str | Path | None = None) -> bool:
    root = default_library_path() if path is None else Path(path)
    return (root / DATABASE_NAME).is_file()
