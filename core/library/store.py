"""The default case library store: a folder with one SQLite file, no server.

A library is a folder::

    library.sqlite      patients, studies, images, outcomes, derived data, case-review meetings
                        and their reads, the audit log (one file, no server)
    files/              de-identified image files, under paths the library makes up:
                        files/<pseudonym>/<study id>/<name>  (a folder of slices for a CT series)

The interface is :class:`core.library.base.CaseLibrary` and the SQL is shared with the
PostgreSQL store (:mod:`core.library.sql`); this module adds SQLite's connections, its schema
and its checks of the file, and :func:`open_library`, which opens either store from a location.
The library keeps its secret in the ``meta`` table: treat the file like the data it holds.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from core.library.base import (
    DEFAULT_LIBRARY_DIR,
    LIBRARY_ENV,
    TABLES,
    CaseLibrary,
    Connection,
    LibraryError,
    MissingLibraryError,
    NewImage,
    content_key,
    default_library_location,
    is_database_url,
)
from core.library.postgres import PostgresLibrary
from core.library.records import ImageRecord
from core.library.sql import SqlLibrary

__all__ = [
    "DATABASE_NAME",
    "DEFAULT_LIBRARY_DIR",
    "LIBRARY_ENV",
    "CaseLibrary",
    "LibraryError",
    "MissingLibraryError",
    "NewImage",
    "SqliteLibrary",
    "content_key",
    "default_library_location",
    "default_library_path",
    "is_database_url",
    "library_exists",
    "open_library",
]

logger = logging.getLogger(__name__)

DATABASE_NAME = "library.sqlite"
FILES_DIR = "files"
SCHEMA_VERSION = 1

#: How long a write waits for another program's write to finish before giving up, and how long
#: it waits quietly before saying that it is waiting.
_WAIT_S = 120.0
_QUIET_WAIT_S = 1.0
_SQLITE_MAGIC = b"SQLite format 3\x00"


def default_library_path() -> Path:
    """The app's library folder: ``$DASHBOARD_LIBRARY``, else ``data/library`` in the project
    (for a library named by a ``postgresql://`` address use :func:`default_library_location`)."""
    return Path(default_library_location())


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
_TABLES = frozenset(TABLES)

#: The reads' columns added since meetings were first stored: what the model read in the case.
_READ_MODEL_COLUMNS = (("model_label", "TEXT"), ("model_probability", "REAL"), ("model_threshold", "REAL"))


class SqliteLibrary(SqlLibrary):
    """A case library in one SQLite file beside a ``files/`` folder.

    Safe to share between the threads of one process (Streamlit sessions): each call opens
    its own connection, and writes are serialised by a lock and SQLite's own locking.
    """

    def __init__(self, root: str | Path, *, create: bool = True) -> None:
        self.root = Path(root)
        self.location = str(self.root)
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

    # -- image files ----------------------------------------------------------------------
    def _store_image_files(self, con: Connection, image_id: int, path: str, image: NewImage) -> None:
        target = self.files_dir / path
        if image.kind == "ct-series":
            for name, data in image.files:
                self._write_file(target / name, data)
        else:
            self._write_file(target, image.files[0][1])

    def _prepare_study_files(self, pseudonym: str, study_id: int) -> None:
        shutil.rmtree(self._study_folder(pseudonym, study_id), ignore_errors=True)  # left by a killed write

    def _discard_study_files(self, pseudonym: str, study_id: int) -> None:
        shutil.rmtree(self._study_folder(pseudonym, study_id), ignore_errors=True)

    def _discard_patient_files(self, pseudonym: str) -> None:
        shutil.rmtree(self.files_dir / pseudonym, ignore_errors=True)

    def _study_folder(self, pseudonym: str, study_id: int) -> Path:
        return self.files_dir / pseudonym / f"{study_id:07d}"

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            raise LibraryError(f"Could not write an image into the case library: {_os_words(e)}.") from e

    def image_path(self, image: ImageRecord) -> Path:
        """Absolute path of an image's file (or folder of slices for a CT series)."""
        return self.files_dir / image.path

    def image_files(self, image: ImageRecord) -> list[tuple[str, bytes]]:
        path = self.image_path(image)
        try:
            if path.is_dir():
                return [(p.name, p.read_bytes()) for p in sorted(path.iterdir()) if p.is_file()]
            return [(path.name, path.read_bytes())]
        except OSError as e:
            raise LibraryError(f"An image file of the case library could not be read: {e.strerror}.") from e


def open_library(location: str | Path | None = None, *, create: bool = True) -> CaseLibrary:
    """Open (or create) the library at ``location``: a ``postgresql://`` address opens a
    PostgreSQL database, anything else a folder (default: :func:`default_library_location`)."""
    where = default_library_location() if location is None else location
    if is_database_url(where):
        return PostgresLibrary(str(where), create=create)
    return SqliteLibrary(where, create=create)


def library_exists(location: str | Path | None = None) -> bool:
    """Whether there is a library at ``location`` (a PostgreSQL database is asked)."""
    where = default_library_location() if location is None else location
    if is_database_url(where):
        return PostgresLibrary.exists(str(where))
    return (Path(where) / DATABASE_NAME).is_file()
