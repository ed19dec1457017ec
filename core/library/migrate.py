"""Copy a case library into another store with nothing lost: ``library migrate --from --to``.

The usual move is a laptop's or a department's SQLite folder into PostgreSQL, when several
app processes are to share it (:mod:`core.library.postgres`). Every table is copied row by
row with its ids (studies, images, meetings and the audit log refer to each other by id), the
library's secret with them (so pseudonyms of a later import still match), and every image's
files through the target's own way of keeping them. Then both libraries are compared: the
number of rows of every table, and the SHA-256 of every file of every image read back from the
target. The copy is one transaction: a copy that fails leaves the target as empty as it was.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import InvalidInputError
from core.library.audit import utc_now
from core.library.base import TABLES, Connection, LibraryError, NewImage
from core.library.records import ImageRecord
from core.library.sql import SqlLibrary
from core.types import Progress

#: Columns a store derives from the others and fills itself once the rows are in
#: (``_copied_in``): never copied, so a library moves between a store that has them and one
#: that has not (PostgreSQL's pgvector copy of each embedding, missing from SQLite and from a
#: database without pgvector), and the target builds its own vector indexes from them.
DERIVED_COLUMNS: dict[str, frozenset[str]] = {"embeddings": frozenset({"vec"})}
_BATCH = 500


@dataclass
class MigrationReport:
    """What was copied, and what the comparison found (``problems`` empty: nothing lost)."""

    source: str
    target: str
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (source, target)
    images_checked: int = 0
    files_checked: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "target": self.target,
            "rows": {t: {"source": s, "target": d} for t, (s, d) in self.rows.items()},
            "images_checked": self.images_checked,
            "files_checked": self.files_checked,
            "problems": list(self.problems),
            "seconds": round(self.seconds, 2),
        }


def _columns(con: Connection, table: str) -> list[str]:
    cur = con.execute(f"SELECT * FROM {table} LIMIT 0")
    return [str(d[0]) for d in cur.description]


def _count(con: Connection, table: str) -> int:
    return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def _quoted(columns: Sequence[str]) -> str:
    return ", ".join(f'"{c}"' for c in columns)


def _check_empty(target: SqlLibrary) -> None:
    with target._connect() as con:
        held = {t: _count(con, t) for t in TABLES if t != "meta"}
    if any(held.values()):
        what = ", ".join(f"{n} {t}" for t, n in held.items() if n)
        raise InvalidInputError(
            f"The library at {target.location} is not empty ({what}); migrate into an empty one "
            "(a new database, or a folder with no library in it)."
        )


def migrate_library(source: SqlLibrary, target: SqlLibrary, *, progress: Progress | None = None) -> MigrationReport:
    """Copy every row and image of ``source`` into the empty library ``target`` and compare them.

    Raises ``InvalidInputError`` when the target holds anything already, or lacks a column of
    the source (a target made by an older version of the app).
    """
    start = time.perf_counter()
    report = MigrationReport(source.location, target.location)
    if source.location == target.location:
        raise InvalidInputError("The source and the target are the same library.")
    _check_empty(target)
    with source._connect() as src:
        n_images = _count(src, "images")
        columns = {t: [c for c in _columns(src, t) if c not in DERIVED_COLUMNS.get(t, ())] for t in TABLES}
    with target._connect() as dst:
        for table, cols in columns.items():
            missing = sorted(set(cols) - set(_columns(dst, table)))
            if missing:
                raise InvalidInputError(
                    f"The library at {target.location} has no column {', '.join(missing)} in {table}: "
                    "it was made by an older version of the app."
                )
    done = 0
    with source._connect() as src, target._writing() as dst:
        dst.execute("DELETE FROM meta")  # the target's own new secret gives way to the source's
        for table, cols in columns.items():
            insert = f"INSERT INTO {table} ({_quoted(cols)}) VALUES ({', '.join('?' * len(cols))})"
            cur = src.execute(f"SELECT {_quoted(cols)} FROM {table}")
            while rows := cur.fetchmany(_BATCH):
                dst.executemany(insert, rows)
                if table == "images":
                    for row in rows:
                        record = _image_record(dict(zip(cols, row, strict=True)))
                        image = NewImage(record.kind, tuple(source.image_files(record)))
                        target._store_image_files(dst, record.id, record.path, image)
                        done += 1
                        if progress is not None:
                            progress(done, n_images)
        target._copied_in(dst)
    target.reload_secret()
    _compare(source, target, report)
    if report.ok:
        with target._writing() as dst:
            target._record(dst, "migrate-library", None, None, f"copied from {source.location} at {utc_now()}")
    report.seconds = time.perf_counter() - start
    return report


def _image_record(row: dict[str, Any]) -> ImageRecord:
    return ImageRecord(
        int(row["id"]),
        int(row["study_id"]),
        str(row["kind"]),
        str(row["path"]),
        int(row["n_files"]),
        row["width"],
        row["height"],
        row["depth"],
    )


def _digests(files: list[tuple[str, bytes]]) -> list[tuple[str, str]]:
    return [(name, hashlib.sha256(data).hexdigest()) for name, data in files]


def _compare(source: SqlLibrary, target: SqlLibrary, report: MigrationReport) -> None:
    """Rows of every table, then every file of every image read back from the target."""
    with source._connect() as src, target._connect() as dst:
        for table in TABLES:
            counts = (_count(src, table), _count(dst, table))
            report.rows[table] = counts
            if counts[0] != counts[1]:
                report.problems.append(f"{table}: {counts[0]} rows in the source, {counts[1]} in the target")
    for ref in source.image_refs():
        record = source.image_record(ref.image_id)
        want = _digests(source.image_files(record))
        try:
            got = _digests(target.image_files(target.image_record(ref.image_id)))
        except (InvalidInputError, LibraryError) as e:
            report.problems.append(f"image {ref.image_id}: not readable in the target ({e})")
            continue
        report.images_checked += 1
        report.files_checked += len(want)
        if got != want:
            report.problems.append(f"image {ref.image_id}: its files differ in the target")
