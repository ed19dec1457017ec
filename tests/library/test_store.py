"""The case library, on SQLite and on PostgreSQL: what goes in comes out, in time order, filtered,
without duplicates."""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInputError
from core.library.records import NewPatient, NewStudy, PatientFilter
from core.library.store import (
    DATABASE_NAME,
    CaseLibrary,
    LibraryError,
    NewImage,
    SqliteLibrary,
    content_key,
    open_library,
)
from tests.pg import run_sql


def png(seed: int = 0) -> bytes:
    from core.demo.xray_phantom import generate_xray

    return generate_xray("COVID-19", 0.5, seed, size=64).to_png()


def add(lib: CaseLibrary, pseudonym: str, day: float | None, modality: str = "X-ray", **patient) -> int:
    data = png(zlib.crc32(f"{pseudonym}|{day}|{modality}".encode()) % 100_000)
    return lib.add_case(
        NewPatient(pseudonym=pseudonym, source="test", **patient),
        NewStudy(modality=modality, offset_admission_days=day, note=f"day {day}"),
        [NewImage("xray", (("image.png", data),), width=64, height=64, thumbnail_png=data)],
        lib.content_key([data]),
    )


def n_stored_files(lib: CaseLibrary) -> int:
    """How many image files the store holds: under ``files/`` (SQLite), in the database (PostgreSQL)."""
    if isinstance(lib, SqliteLibrary):
        return sum(1 for p in (lib.root / "files").rglob("*") if p.is_file())
    return run_sql(lib.location, "SELECT COUNT(*) FROM image_files")[0][0]


def test_a_new_sqlite_library_is_one_file_and_a_files_folder(tmp_path: Path) -> None:
    # SQLite only: the layout of the folder.
    open_library(tmp_path / "lib")
    assert (tmp_path / "lib" / "library.sqlite").is_file() and (tmp_path / "lib" / "files").is_dir()


def test_a_new_library_is_empty_and_keeps_its_secret(
    library_location: str, make_location: Callable[..., str], make_library: Callable[..., CaseLibrary]
) -> None:
    lib = open_library(library_location)
    assert lib.counts().patients == 0
    # The secret survives reopening, so pseudonyms stay stable.
    assert open_library(library_location).pseudonym("x", "1") == lib.pseudonym("x", "1")
    assert make_library("other").pseudonym("x", "1") != lib.pseudonym("x", "1")
    # Not made when it is not to be: an empty folder or an empty database is no library.
    with pytest.raises(LibraryError):
        open_library(make_location("missing"), create=False)


def test_two_openings_of_one_library_see_each_others_additions(library_location: str) -> None:
    first, second = open_library(library_location), open_library(library_location)
    add(first, "P-A", 0)
    add(second, "P-B", 1)
    assert [p.pseudonym for p in first.patients()] == [p.pseudonym for p in second.patients()] == ["P-A", "P-B"]
    first.delete_patient("P-B")
    assert second.counts().patients == 1


def test_studies_come_back_in_time_order_not_insert_order(library_location: str) -> None:
    lib = open_library(library_location)
    for day in (9, 0, None, 3):
        add(lib, "P-A", day, label="COVID-19")
    patient = lib.patient("P-A")
    assert [s.day for s in patient.studies] == [0, 3, 9, None]
    assert [s.note for s in patient.studies] == ["day 0", "day 3", "day 9", "day None"]
    image = patient.studies[0].images[0]
    assert lib.thumbnail(image.id) is not None
    assert lib.image_files(image)[0][1][:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(InvalidInputError):
        lib.patient("P-NOBODY")


def test_patient_fields_are_filled_by_later_rows_not_erased(library_location: str) -> None:
    lib = open_library(library_location)
    add(lib, "P-A", 0, label="COVID-19", age_years=61)
    add(lib, "P-A", 2, outcome="died", survival=False, length_of_stay_days=12)
    s = lib.patient("P-A").summary
    assert (s.label, s.age_years, s.outcome, s.survival, s.length_of_stay_days) == ("COVID-19", 61, "died", False, 12)
    assert s.n_studies == 2 and s.n_xray == 2 and s.n_ct == 0


def test_filters_and_counts(library_location: str) -> None:
    lib = open_library(library_location)
    add(lib, "P-A", 0, label="COVID-19", outcome="died")
    add(lib, "P-A", 4, modality="CT")
    add(lib, "P-B", 0, label="Normal", outcome="discharged")
    add(lib, "P-C", 1, label="Viral pneumonia", outcome="in hospital")
    names = lambda f: [p.pseudonym for p in lib.patients(f)]  # noqa: E731
    assert names(None) == ["P-A", "P-B", "P-C"]
    assert names(PatientFilter(labels=("COVID-19", "Normal"))) == ["P-A", "P-B"]
    assert names(PatientFilter(outcomes=("in hospital",))) == ["P-C"]
    assert names(PatientFilter(modality="CT")) == ["P-A"]
    assert names(PatientFilter(min_studies=2)) == ["P-A"]
    assert names(PatientFilter(max_studies=1)) == ["P-B", "P-C"]
    c = lib.counts()
    assert (c.patients, c.studies, c.images) == (3, 4, 4)
    assert c.by_modality == {"X-ray": 3, "CT": 1} and c.by_label["Normal"] == 1


def test_a_source_key_is_stored_once(library_location: str) -> None:
    lib = open_library(library_location)
    add(lib, "P-A", 0)
    key = lib.content_key([png(zlib.crc32(b"P-A|0|X-ray") % 100_000)])
    assert lib.has_source_key(key)
    with pytest.raises(LibraryError):
        add(lib, "P-A", 0)
    # The failed insert left no stray study, image or file.
    assert (lib.counts().studies, lib.counts().images, n_stored_files(lib)) == (1, 1, 1)
    # Keys do not depend on file order and need the library's secret.
    a, b = b"one", b"two"
    assert content_key(b"k" * 32, [a, b]) == content_key(b"k" * 32, [b, a]) != content_key(b"j" * 32, [a, b])


def test_ct_series_are_stored_as_their_slices(library_location: str) -> None:
    lib = open_library(library_location)
    slices = tuple((f"IM-{i:04d}.dcm", bytes([i]) * 10) for i in range(1, 4))
    lib.add_case(
        NewPatient("P-CT", "test"),
        NewStudy("CT", offset_admission_days=1),
        [NewImage("ct-series", slices, width=8, height=8, depth=3)],
        "k1",
    )
    image = lib.patient("P-CT").studies[0].images[0]
    assert image.kind == "ct-series" and image.n_files == 3 and n_stored_files(lib) == 3
    assert lib.image_files(image) == list(slices)


def test_bad_modality_or_kind_is_refused(library_location: str) -> None:
    lib = open_library(library_location)
    with pytest.raises(InvalidInputError):
        lib.add_case(NewPatient("P", "t"), NewStudy("MRI"), [NewImage("xray", (("a.png", b"x"),))], "k")
    with pytest.raises(InvalidInputError):
        lib.add_case(NewPatient("P", "t"), NewStudy("CT"), [NewImage("volume", (("a", b"x"),))], "k")
    assert lib.counts().patients == 0


def test_embeddings_and_scores_round_trip_per_model_version(library_location: str) -> None:
    lib = open_library(library_location)
    study = add(lib, "P-A", 0)
    image_id = lib.patient("P-A").studies[0].images[0].id
    v = np.arange(512, dtype=np.float32) / 512
    lib.put_embeddings("cxr-resnet18", "v1", {image_id: v})
    ids, matrix = lib.embeddings("cxr-resnet18", "v1")
    assert ids == [image_id] and np.array_equal(matrix[0], v)
    assert lib.embeddings("cxr-resnet18", "v2")[0] == []
    lib.put_scores("covid3d", "v1", "s", {study: 0.75})
    assert lib.scores("covid3d", "v1", "s") == {study: 0.75}
    # Deleting the patient removes derived data and files too.
    lib.delete_patient("P-A")
    assert lib.embeddings("cxr-resnet18", "v1")[0] == [] and n_stored_files(lib) == 0


def test_count_embeddings_counts_without_reading_vectors(library_location: str) -> None:
    lib = open_library(library_location)
    add(lib, "P-A", 0)
    add(lib, "P-B", 0)
    first, second = (r.image_id for r in lib.image_refs())
    assert lib.count_embeddings("m", "v1") == 0
    lib.put_embeddings("m", "v1", {first: np.ones(4), second: np.zeros(4)})
    lib.put_embeddings("m", "v2", {first: np.ones(4)})
    assert lib.count_embeddings("m", "v1") == 2 and lib.count_embeddings("m", "v2") == 1


def test_a_library_made_before_the_burned_in_flag_gets_its_column_when_opened(tmp_path: Path) -> None:
    # SQLite only: older versions of the app made SQLite libraries alone.
    root = tmp_path / "lib"
    open_library(root)
    with sqlite3.connect(root / DATABASE_NAME) as con:  # the studies table as the first version made it
        con.execute("ALTER TABLE studies DROP COLUMN burned_in")
    library = open_library(root)
    image = NewImage("xray", (("a.png", b"png"),), width=1, height=1)
    study_id = library.add_case(
        NewPatient("P-1", "csv"), NewStudy("X-ray", burned_in="text-like marks along the top border"), (image,), "k"
    )
    (study,) = library.patient("P-1").studies
    assert (study.id, study.burned_in) == (study_id, "text-like marks along the top border")
