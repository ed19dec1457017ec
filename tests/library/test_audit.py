"""The audit log: every case added or patient removed is recorded with who, when and which
pseudonym, in the same transaction as the change, and the log cannot be edited."""

from __future__ import annotations

import datetime
import getpass
import json
import sqlite3
from pathlib import Path

import psycopg
import pytest

from core.library.audit import clean_user
from core.library.importers import add_upload, import_source
from core.library.store import DATABASE_NAME, LibraryError, SqliteLibrary, open_library
from tests.cli_helpers import assert_one_line_error, run
from tests.pg import run_sql


def test_an_added_upload_is_recorded_with_its_user_pseudonym_and_study(library_location: str, chest_png: bytes) -> None:
    library = open_library(library_location).acting("Dr Ada Lovelace")
    pseudonym, study_id = add_upload(library, [("SMITH^JOHN-MRN-42.png", chest_png)], modality="X-ray", label=None)

    (entry,) = library.audit_log()
    assert (entry.user, entry.action, entry.pseudonym, entry.study_id) == (
        "Dr Ada Lovelace",
        "add-case",
        pseudonym,
        study_id,
    )
    assert entry.detail == "X-ray from upload"
    when = datetime.datetime.strptime(entry.at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert abs((datetime.datetime.now(datetime.UTC) - when).total_seconds()) < 60
    # The uploaded file's name (which may carry the patient's name) is nowhere in the log.
    assert "SMITH" not in repr(entry)


def test_acting_is_a_view_for_another_user_over_the_same_library(library_location: str, chest_png: bytes) -> None:
    library = open_library(library_location)
    ada, bob = library.acting("ada"), library.acting("bob")
    add_upload(ada, [("a.png", chest_png)], modality="X-ray", label=None)
    add_upload(bob, [("b.png", chest_png[:-1] + b"\x00")], modality="X-ray", label="Normal")
    assert [e.user for e in library.audit_log()] == ["bob", "ada"]  # newest first
    assert library.user == "unknown" and library.counts().studies == 2


def test_a_dataset_import_records_one_entry_per_case(library_location: str, cohen_dataset: Path) -> None:
    library = open_library(library_location).acting("importer")
    report = import_source(library, "cohen", cohen_dataset)
    log = library.audit_log()
    assert len(log) == report.added_studies > 0
    assert {e.action for e in log} == {"add-case"}
    assert {e.pseudonym for e in log} == {p.pseudonym for p in library.patients()}
    assert all(e.detail.endswith("from cohen") for e in log)


def test_removing_a_patient_is_recorded_and_their_entries_stay(library_location: str, chest_png: bytes) -> None:
    library = open_library(library_location).acting("ada")
    pseudonym, _ = add_upload(library, [("a.png", chest_png)], modality="X-ray", label=None)
    library.delete_patient(pseudonym)
    library.delete_patient(pseudonym)  # nobody left to remove: nothing recorded
    assert [(e.action, e.pseudonym) for e in library.audit_log()] == [
        ("delete-patient", pseudonym),
        ("add-case", pseudonym),
    ]
    assert [e.action for e in library.audit_log(pseudonym=pseudonym, limit=1)] == ["delete-patient"]


@pytest.mark.parametrize("statement", ["UPDATE audit SET detail = 'edited'", "DELETE FROM audit"])
def test_the_log_cannot_be_edited_even_through_sql(library_location: str, chest_png: bytes, statement: str) -> None:
    library = open_library(library_location).acting("ada")
    add_upload(library, [("a.png", chest_png)], modality="X-ray", label=None)
    with pytest.raises((sqlite3.IntegrityError, psycopg.Error), match="append-only"):
        run_sql(library_location, statement)
    assert [e.user for e in library.audit_log()] == ["ada"]


@pytest.mark.parametrize("library_backend", ["postgresql"])  # SQLite has no TRUNCATE
def test_the_log_cannot_be_emptied_by_truncating_it(library_location: str, chest_png: bytes) -> None:
    library = open_library(library_location).acting("ada")
    add_upload(library, [("a.png", chest_png)], modality="X-ray", label=None)
    with pytest.raises(psycopg.Error, match="append-only"):
        run_sql(library_location, "TRUNCATE audit")
    assert [e.user for e in library.audit_log()] == ["ada"]


def test_a_failed_write_records_nothing(tmp_path: Path, chest_png: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    # SQLite only: a full disk under the files folder (PostgreSQL keeps the files in its tables).
    library = open_library(tmp_path / "lib").acting("ada")

    def disk_full(path: Path, data: bytes) -> None:
        raise LibraryError("Could not write an image into the case library: no space left on the device.")

    monkeypatch.setattr(SqliteLibrary, "_write_file", staticmethod(disk_full))
    with pytest.raises(LibraryError):
        add_upload(library, [("a.png", chest_png)], modality="X-ray", label=None)
    assert library.audit_log() == [] and library.counts().studies == 0


@pytest.mark.parametrize("library_backend", ["postgresql"])  # SQLite's full disk: the test above
def test_a_failed_write_in_postgresql_records_nothing(library_location: str, chest_png: bytes) -> None:
    library = open_library(library_location).acting("ada")
    # The database server's disk fills up as the image's bytes go in, within the case's transaction.
    run_sql(
        library_location,
        "CREATE FUNCTION disk_full() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$",
    )
    run_sql(library_location, "CREATE TRIGGER disk_full BEFORE INSERT ON image_files EXECUTE FUNCTION disk_full()")
    with pytest.raises(LibraryError, match="disk is full") as e:
        add_upload(library, [("a.png", chest_png)], modality="X-ray", label=None)
    assert "\n" not in str(e.value)
    assert library.audit_log() == [] and library.counts().studies == 0


def test_a_library_made_before_the_log_gets_one_when_opened(tmp_path: Path, chest_png: bytes) -> None:
    # SQLite only: older versions of the app made SQLite libraries alone.
    root = tmp_path / "lib"
    open_library(root)
    with sqlite3.connect(root / DATABASE_NAME) as con:  # as an older version made it
        con.executescript("DROP TRIGGER audit_no_delete; DROP TRIGGER audit_no_update; DROP TABLE audit;")
    library = open_library(root).acting("ada")
    add_upload(library, [("a.png", chest_png)], modality="X-ray", label=None)
    assert [e.user for e in library.audit_log()] == ["ada"]


def test_user_names_are_one_line_and_bounded() -> None:
    assert clean_user("  Ada\nLovelace\x00 ") == "Ada Lovelace"
    assert clean_user("") == clean_user(None) == "unknown"
    assert len(clean_user("x" * 1000)) == 120


def test_the_command_line_records_the_account_that_ran_it(library_location: str, cohen_dataset: Path, capsys) -> None:
    status, _, err = run(
        capsys, "library", "import", "--format", "cohen", str(cohen_dataset), "--library", library_location
    )
    assert status == 0, err
    users = {e.user for e in open_library(library_location).audit_log()}
    assert users == {f"cli:{getpass.getuser()}"}


def _json_lines(capsys, *argv: str) -> list[dict]:
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def test_the_audit_command_prints_the_log_newest_first(library_location: str, chest_png: bytes, capsys) -> None:
    library = open_library(library_location).acting("Dr Ada")
    first, _ = add_upload(library, [("a.png", chest_png)], modality="X-ray", label=None)
    second, study = add_upload(library, [("b.png", chest_png[:-1] + b"\x00")], modality="X-ray", label=None)

    entries = _json_lines(capsys, "library", "audit", "--library", library_location)
    assert [e["pseudonym"] for e in entries] == [second, first]
    assert entries[0] | {"at": None, "id": None} == {
        "id": None,
        "at": None,
        "user": "Dr Ada",
        "action": "add-case",
        "pseudonym": second,
        "study_id": study,
        "detail": "X-ray from upload",
    }
    only_first = _json_lines(capsys, "library", "audit", "--library", library_location, "--pseudonym", first)
    assert [e["pseudonym"] for e in only_first] == [first]

    status, out, _ = run(capsys, "library", "audit", "--library", library_location, "--limit", "1")
    assert status == 0
    lines = out.splitlines()
    assert lines[-1] == "1 entries" and f"Dr Ada  add-case  {second} study {study}  X-ray from upload" in lines[0]


def test_the_audit_command_refuses_a_limit_below_one(library_location: str, capsys) -> None:
    open_library(library_location)
    assert_one_line_error(*run(capsys, "library", "audit", "--library", library_location, "--limit", "0"), "--limit")
