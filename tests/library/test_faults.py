"""A library file that is not a library, a truncated one, a read-only folder, a full disk: one plain
line and a non-zero exit on the command line, and nothing overwritten."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
from pathlib import Path

import pytest

from core.cli.main import main
from core.library.store import DATABASE_NAME, open_library

#: How each bad file is made from a folder and a good library, and the words its message has.
BAD_FILES = {
    "random bytes": ("is not a case library", lambda good: os.urandom(8192)),
    "a text file": ("is not a case library", lambda good: b"patient,label\n1,COVID-19\n"),
    "a truncated library": ("is truncated", lambda good: good[: len(good) // 2]),
}


def digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


def good_library_bytes(demo_library: Path) -> bytes:
    """The demo library's database as one file (its write-ahead log folded in)."""
    with contextlib.closing(sqlite3.connect(demo_library / DATABASE_NAME)) as con:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (demo_library / DATABASE_NAME).read_bytes()


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_file_that_is_not_a_library_is_one_line_and_left_untouched(
    kind: str, tmp_path: Path, demo_library: Path, cohen_dataset: Path, capsys
) -> None:
    words, make = BAD_FILES[kind]
    root = tmp_path / "lib"
    root.mkdir()
    (root / DATABASE_NAME).write_bytes(make(good_library_bytes(demo_library)))
    before = digest(root)
    assert main(["library", "stats", "--library", str(root)]) == 1
    assert words in one_error_line(capsys)
    assert main(["library", "import", "--format", "cohen", str(cohen_dataset), "--library", str(root)]) == 1
    assert words in one_error_line(capsys)
    assert main(["library", "build-demo", "--patients", "2", "--workers", "1", "--library", str(root)]) == 1
    assert words in one_error_line(capsys)
    assert digest(root) == before


def test_another_programs_sqlite_database_is_refused_untouched(tmp_path: Path, capsys) -> None:
    root = tmp_path / "lib"
    root.mkdir()
    with contextlib.closing(sqlite3.connect(root / DATABASE_NAME)) as con, con:
        con.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT)")
        con.execute("INSERT INTO orders VALUES (1, 'gloves')")
    before = digest(root)
    assert main(["library", "build-demo", "--patients", "2", "--workers", "1", "--library", str(root)]) == 1
    assert "a SQLite database but not a case library" in one_error_line(capsys)
    assert digest(root) == before


def test_a_library_file_left_empty_by_a_killed_creation_opens_as_a_new_library(tmp_path: Path) -> None:
    (tmp_path / DATABASE_NAME).write_bytes(b"")
    lib = open_library(tmp_path)
    assert lib.counts().patients == 0 and len(lib.secret()) == 32
    assert open_library(tmp_path).secret() == lib.secret()


def test_a_library_in_a_folder_that_cannot_be_created_is_one_line(tmp_path: Path, monkeypatch, capsys) -> None:
    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)  # the tests run as root, for whom chmod is no barrier
    assert main(["library", "build-demo", "--patients", "2", "--workers", "1", "--library", str(tmp_path / "x")]) == 1
    assert "the folder is read-only" in one_error_line(capsys)


@contextlib.contextmanager
def sqlite_refusing(pragma: str, monkeypatch: pytest.MonkeyPatch):
    """Every connection the library opens from now on behaves as on a full disk or a read-only file."""
    connect = sqlite3.connect

    def limited(*args: object, **kwargs: object) -> sqlite3.Connection:
        con = connect(*args, **kwargs)  # type: ignore[arg-type]
        if pragma == "full":  # no page may be added: what SQLite reports when the disk is full
            con.execute(f"PRAGMA max_page_count = {con.execute('PRAGMA page_count').fetchone()[0]}")
        else:
            con.execute("PRAGMA query_only = ON")  # what SQLite reports for a read-only file
        return con

    with monkeypatch.context() as m:
        m.setattr(sqlite3, "connect", limited)
        yield


@pytest.mark.parametrize(("fault", "words"), [("full", "the disk is full"), ("read-only", "is read-only")])
def test_an_import_that_cannot_write_is_one_line_and_stores_nothing(
    fault: str, words: str, library_copy: Path, cohen_dataset: Path, monkeypatch, capsys
) -> None:
    before = open_library(library_copy).counts()
    files_before = digest(library_copy / "files")
    with sqlite_refusing(fault, monkeypatch):
        assert main(["library", "import", "--format", "cohen", str(cohen_dataset), "--library", str(library_copy)]) == 1
    assert words in one_error_line(capsys)
    assert open_library(library_copy).counts() == before
    assert digest(library_copy / "files") == files_before  # the images written for the failed study are gone


def test_an_image_file_that_cannot_be_written_is_one_line_and_stores_nothing(
    library_copy: Path, cohen_dataset: Path, monkeypatch, capsys
) -> None:
    before = open_library(library_copy).counts()

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["library", "import", "--format", "cohen", str(cohen_dataset), "--library", str(library_copy)]) == 1
    assert "the disk is full" in one_error_line(capsys)
    assert open_library(library_copy).counts() == before
