"""``library migrate``: a SQLite library copied into PostgreSQL is the same library there.

The source is the tests' demo library (X-rays and CT series, a meeting) with everything the app
adds later put in it too (a Cohen import, embeddings, pixel digests, scores, a second meeting with
a study case, hidden and revealed cases, reads, a setting, a deleted patient, the audit log).
What a user would notice is compared through the library's own interface on both sides.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInputError
from core.library.importers import import_cohen
from core.library.migrate import TABLES, MigrationReport, _compare, migrate_library
from core.library.postgres import PostgresLibrary
from core.library.records import NewPatient, NewStudy
from core.library.store import NewImage, SqliteLibrary, open_library
from tests.cli_helpers import assert_one_line_error, run, run_json
from tests.datasets import write_cohen_dataset
from tests.pg import PostgresServer, everything_stored, run_sql

MODEL, VERSION, OLD_VERSION = "test-embedder", "2", "1"
DIM = 16
COHEN = "cohen"
#: The source, its copy in PostgreSQL (with pgvector) and the migration's report.
Migrated = tuple[SqliteLibrary, PostgresLibrary, MigrationReport]


def _enrich(lib: SqliteLibrary, cohen: Path) -> None:
    """Put into ``lib`` what the app adds to a library after it is built."""
    lib = lib.acting("dr migrate")
    assert import_cohen(lib, cohen, workers=1).added_patients > 0
    refs = lib.image_refs()
    rng = np.random.default_rng(0)
    lib.put_embeddings(MODEL, VERSION, {r.image_id: rng.normal(size=DIM).astype(np.float32) for r in refs})
    lib.put_embeddings(MODEL, OLD_VERSION, {r.image_id: rng.normal(size=DIM).astype(np.float32) for r in refs[:5]})
    lib.put_pixel_digests({r.image_id: hashlib.sha256(str(r.image_id).encode()).hexdigest() for r in refs})
    studies = sorted({r.study_id for r in refs})
    lib.put_scores(MODEL, VERSION, "severity", {s: s / 100 for s in studies})
    # A gap in the ids (a demo patient's: the Cohen import is repeated on the copy): the copy
    # must keep the ids as they are, not number the rows again.
    lib.delete_patient(sorted(p.pseudonym for p in lib.patients() if p.source == "demo")[2])
    patients = [p.pseudonym for p in lib.patients()]
    demo = lib.meetings()[0]
    lib.reveal(demo.cases[0].id)
    lib.set_hidden(demo.cases[1].id, ["diagnosis"])
    xray = next(r for r in lib.image_refs(["xray"]) if r.patient_pseudonym in patients)
    meeting = lib.create_meeting("Thursday teaching", "2026-03-05")
    whole = lib.add_to_meeting(meeting, patients[0])
    one_study = lib.add_to_meeting(meeting, xray.patient_pseudonym, xray.study_id, hidden=["outcome"])
    lib.add_read(whole.id, "Dr A", "COVID", 4, agrees_with_model=True, comment="GGO", model_id=MODEL,
                 model_version=VERSION, model_label="COVID-19", model_probability=0.91, model_threshold=0.5)  # fmt: skip
    lib.add_read(one_study.id, "Dr B", "Normal", 2, agrees_with_model=None, comment="")
    lib.add_read(
        one_study.id, "Dr A", "COVID-19", 3, agrees_with_model=False, model_id=MODEL, model_version=OLD_VERSION
    )
    lib.set_setting("site", "ward 7")


@pytest.fixture(scope="module")
def source(demo_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite library with some of everything (read-only for the tests: they migrate it)."""
    root = tmp_path_factory.mktemp("migrate") / "source"
    shutil.copytree(demo_library, root)
    _enrich(SqliteLibrary(root), write_cohen_dataset(tmp_path_factory.mktemp("cohen")))
    return root


@pytest.fixture
def new_database(postgres_server: PostgresServer) -> Iterator[Callable[..., str]]:
    """A factory of empty PostgreSQL databases (with pgvector, or without), dropped afterwards."""
    made: list[str] = []

    def make(*, vector: bool = True) -> str:
        made.append(postgres_server.create_database(vector=vector))
        return made[-1]

    yield make
    for url in made:
        postgres_server.drop_later(url)


@pytest.fixture(scope="module")
def migrated(source: Path, postgres_server: PostgresServer) -> Iterator[Migrated]:
    """The source migrated into a new PostgreSQL database with pgvector (read-only for the tests)."""
    url = postgres_server.create_database()
    target = PostgresLibrary(url)
    report = migrate_library(SqliteLibrary(source, create=False), target)
    yield SqliteLibrary(source, create=False), target, report
    postgres_server.drop_later(url)


def test_every_table_has_as_many_rows_and_the_report_says_so(migrated: Migrated) -> None:
    source, target, report = migrated
    assert report.ok, report.problems
    for table in TABLES:
        count = f"SELECT COUNT(*) FROM {table}"
        [(want,)], [(got,)] = run_sql(source.location, count), run_sql(target.location, count)
        extra = 1 if table == "audit" else 0  # the migration's own entry
        assert got == want + extra, table
        assert report.rows[table] == (want, want), table
    n_files = sum(source.image_record(r.image_id).n_files for r in source.image_refs())
    assert run_sql(target.location, "SELECT COUNT(*) FROM image_files")[0][0] == n_files == report.files_checked
    assert report.images_checked == len(source.image_refs())
    assert source.counts() == target.counts()
    assert source.counts().by_modality.keys() == {"X-ray", "CT"}


def test_every_patient_and_every_image_is_the_same(migrated: Migrated) -> None:
    source, target, _ = migrated
    assert source.patients() == target.patients()
    for summary in source.patients():
        assert source.patient(summary.pseudonym) == target.patient(summary.pseudonym)
    kinds = set()
    for ref in source.image_refs():
        record = source.image_record(ref.image_id)
        kinds.add(record.kind)
        assert target.image_record(ref.image_id) == record
        assert target.image_files(record) == source.image_files(record)
        assert target.thumbnail(ref.image_id) == source.thumbnail(ref.image_id)
        assert target.pixel_digest_of(ref.image_id) == source.pixel_digest_of(ref.image_id)
    assert kinds == {"xray", "ct-series"}
    assert target.source_keys() == source.source_keys()


def test_derived_data_meetings_reads_settings_and_the_audit_log_come_along(migrated: Migrated) -> None:
    source, target, _ = migrated
    for version in (VERSION, OLD_VERSION):
        ids, vectors = source.embeddings(MODEL, version)
        got_ids, got_vectors = target.embeddings(MODEL, version)
        assert got_ids == ids and np.array_equal(got_vectors, vectors)
    assert target.scores(MODEL, VERSION, "severity") == source.scores(MODEL, VERSION, "severity") != {}
    meetings = source.meetings()
    assert target.meetings() == meetings and len(meetings) == 2
    assert any(c.revealed for m in meetings for c in m.cases)
    assert any(c.study_id is not None for m in meetings for c in m.cases)
    for m in meetings:
        assert target.reads(m.id) == source.reads(m.id)
    assert len(target.reads(meetings[0].id)) + len(target.reads(meetings[1].id)) == 3
    assert target.setting("site") == "ward 7"
    log = target.audit_log()
    assert log[1:] == source.audit_log()
    assert log[0].action == "migrate-library" and source.location in log[0].detail
    assert {e.user for e in log[1:]} >= {"demo build", "dr migrate"}


def test_a_reimport_finds_its_patients_the_secret_came_along(migrated: Migrated, tmp_path: Path) -> None:
    source, target, _ = migrated
    assert target.secret() == source.secret()
    assert target.pseudonym(COHEN, "1") == source.pseudonym(COHEN, "1")
    # Reopened from the database (another app process), the secret is the copied one.
    assert PostgresLibrary(target.url).pseudonym(COHEN, "1") == source.pseudonym(COHEN, "1")
    scratch = open_library(target.url)
    before = everything_stored(target.url)
    again = import_cohen(scratch, write_cohen_dataset(tmp_path), workers=1)
    assert again.added_studies == 0 and again.added_patients == 0 and again.duplicates > 0
    assert everything_stored(target.url) == before


def test_vectors_are_searched_in_the_database_after_the_migration(migrated: Migrated) -> None:
    source, target, _ = migrated
    assert target.has_vector_index()
    ids, vectors = source.embeddings(MODEL, VERSION)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = np.random.default_rng(1).normal(size=(4, DIM)).astype(np.float32)
    k = 5
    sims, found = target.nearest(MODEL, VERSION, queries, k)
    exact = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
    order = np.argsort(-exact, axis=1)[:, :k]
    assert found.tolist() == np.asarray(ids)[order].tolist()
    np.testing.assert_allclose(sims, np.take_along_axis(exact, order, axis=1), atol=1e-5)
    # The old version's few vectors are searched apart from the current version's.
    old_ids = set(source.embeddings(MODEL, OLD_VERSION)[0])
    n_old = len(old_ids)
    assert 0 < n_old < len(ids)
    _, old = target.nearest(MODEL, OLD_VERSION, queries, n_old + 2)
    assert (old[:, n_old:] == -1).all() and all(set(row) == old_ids for row in old[:, :n_old].tolist())


def test_a_case_added_after_the_migration_gets_new_ids(source: Path, new_database: Callable[..., str]) -> None:
    src = SqliteLibrary(source, create=False)
    target = PostgresLibrary(new_database())
    assert migrate_library(src, target).ok
    top = {t: run_sql(str(source), f"SELECT MAX(id) FROM {t}")[0][0] for t in ("patients", "studies", "images")}
    png = src.image_files(src.image_record(src.image_refs(["xray"])[0].image_id))[0][1]
    lib = target.acting("dr after")
    study = lib.add_case(
        NewPatient(pseudonym="P-NEWAFTER", source="test", label="Normal"),
        NewStudy(modality="X-ray", view="PA", label="Normal"),
        [NewImage("xray", (("image.png", png + b"\0"),), width=256, height=256)],
        lib.content_key([png + b"\0"]),
    )
    assert study > top["studies"]
    new = lib.patient("P-NEWAFTER")
    assert new.studies[0].id == study and new.studies[0].images[0].id > top["images"]
    assert run_sql(target.url, "SELECT id FROM patients WHERE pseudonym = 'P-NEWAFTER'")[0][0] > top["patients"]
    meeting = lib.create_meeting("After the move", "2026-04-01")
    case = lib.add_to_meeting(meeting, "P-NEWAFTER")
    assert lib.add_read(case.id, "Dr C", "Normal", 5) > max(r.id for m in src.meetings() for r in src.reads(m.id))
    assert meeting > max(m.id for m in src.meetings())
    # Everything copied is still there, unchanged.
    for summary in src.patients():
        assert lib.patient(summary.pseudonym) == src.patient(summary.pseudonym)
    assert lib.counts().patients == src.counts().patients + 1
    assert lib.audit_log(limit=1)[0].action == "record-read"


def test_an_app_process_that_had_the_empty_library_open_uses_the_copied_secret(
    source: Path, new_database: Callable[..., str]
) -> None:
    # A department's app already running on the new, empty database while the library is moved
    # in: its next import must give a patient the pseudonym the copied library gives them.
    url = new_database()
    running = PostgresLibrary(url)
    src = SqliteLibrary(source, create=False)
    assert running.pseudonym("cohen", "patient 7") != src.pseudonym("cohen", "patient 7")
    assert migrate_library(src, PostgresLibrary(url)).ok
    assert running.pseudonym("cohen", "patient 7") == src.pseudonym("cohen", "patient 7")
    assert running.content_key([b"a file"]) == src.content_key([b"a file"])


def test_a_library_that_is_not_empty_is_refused_and_left_as_it_was(migrated: Migrated) -> None:
    source, target, _ = migrated
    before = everything_stored(target.url)
    with pytest.raises(InvalidInputError, match="not empty") as refused:
        migrate_library(source, target)
    assert "\n" not in str(refused.value) and target.location in str(refused.value)
    assert everything_stored(target.url) == before


def test_a_changed_copy_is_found_by_the_comparison(source: Path, new_database: Callable[..., str]) -> None:
    src = SqliteLibrary(source, create=False)
    target = PostgresLibrary(new_database())
    assert migrate_library(src, target).ok
    ct = next(r.image_id for r in src.image_refs(["ct-series"]))
    xray = next(r.image_id for r in src.image_refs(["xray"]))
    run_sql(target.url, f"UPDATE image_files SET data = data || '\\x00'::bytea WHERE image_id = {ct} AND n = 3")
    run_sql(target.url, f"DELETE FROM image_files WHERE image_id = {xray}")
    run_sql(target.url, "DELETE FROM scores WHERE study_id = (SELECT MIN(study_id) FROM scores)")
    report = MigrationReport(src.location, target.location)
    _compare(src, target, report)
    assert not report.ok
    n_audit = report.rows["audit"][0]
    assert sorted(report.problems) == sorted(
        [
            f"audit: {n_audit} rows in the source, {n_audit + 1} in the target",  # the migration's own entry
            f"image {ct}: its files differ in the target",
            f"image {xray}: not readable in the target (The files of image {xray} are missing from the case "
            f"library at {target.location}.)",
            f"scores: {report.rows['scores'][0]} rows in the source, {report.rows['scores'][0] - 1} in the target",
        ]
    )


def test_postgresql_without_pgvector_takes_the_copy_and_leaves_search_to_the_app(
    source: Path, new_database: Callable[..., str]
) -> None:
    src = SqliteLibrary(source, create=False)
    target = PostgresLibrary(new_database(vector=False))
    assert not target.has_vector_index()
    report = migrate_library(src, target)
    assert report.ok, report.problems
    assert target.nearest(MODEL, VERSION, np.ones((1, DIM), np.float32), 3) is None
    ids, vectors = src.embeddings(MODEL, VERSION)
    got_ids, got_vectors = target.embeddings(MODEL, VERSION)
    assert got_ids == ids and np.array_equal(got_vectors, vectors)
    assert target.counts() == src.counts()


@pytest.mark.parametrize("into", ["postgresql", "postgresql without pgvector", "sqlite"])
def test_a_postgresql_library_moves_on_into_another_store(
    migrated: Migrated, into: str, new_database: Callable[..., str], tmp_path: Path
) -> None:
    _, source, _ = migrated  # PostgreSQL with pgvector: its embeddings carry vectors SQLite has no column for
    location = str(tmp_path / "back") if into == "sqlite" else new_database(vector=into == "postgresql")
    target = open_library(location)
    report = migrate_library(source, target)
    assert report.ok, report.problems
    assert target.patients() == source.patients() and target.meetings() == source.meetings()
    assert target.audit_log()[1:] == source.audit_log()
    for ref in source.image_refs(["ct-series"]):
        record = source.image_record(ref.image_id)
        assert target.image_files(record) == source.image_files(record)
    ids, vectors = target.embeddings(MODEL, VERSION)
    want_ids, want_vectors = source.embeddings(MODEL, VERSION)
    assert ids == want_ids and np.array_equal(vectors, want_vectors)
    query = vectors[:1]
    if into == "postgresql":  # the target built its own HNSW index of each model version
        hnsw = run_sql(location, "SELECT COUNT(*) FROM pg_indexes WHERE indexdef ILIKE '%USING hnsw%'")[0][0]
        assert hnsw == 2
        assert target.nearest(MODEL, VERSION, query, 1)[1][0, 0] == ids[0]
    else:
        assert target.nearest(MODEL, VERSION, query, 1) is None


def test_the_command_copies_and_prints_its_report(
    source: Path, new_database: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = new_database()
    report = run_json(capsys, "library", "migrate", "--from", str(source), "--to", url)
    assert report["ok"] is True and report["problems"] == []
    assert report["source"] == str(source) and report["target"] == url
    src = SqliteLibrary(source, create=False)
    n = src.counts().patients
    assert report["rows"]["patients"] == {"source": n, "target": n}
    assert report["images_checked"] == len(src.image_refs())
    assert open_library(url, create=False).counts() == src.counts()


def test_the_command_refuses_a_missing_source_in_one_line(
    tmp_path: Path, new_database: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = new_database()
    status, out, err = run(capsys, "library", "migrate", "--from", str(tmp_path / "nothing"), "--to", url)
    assert_one_line_error(status, out, err, "no case library", str(tmp_path / "nothing"))
    assert run_sql(url, "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'") == [(0,)]  # target untouched
    assert not (tmp_path / "nothing").exists()


def test_the_command_refuses_a_full_target_in_one_line(
    migrated: Migrated, source: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, target, _ = migrated
    before = everything_stored(target.url)
    status, out, err = run(capsys, "library", "migrate", "--from", str(source), "--to", target.url)
    assert_one_line_error(status, out, err, "not empty")
    assert everything_stored(target.url) == before
