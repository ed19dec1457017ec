"""The demo cohort on disk: real formats, the Cohen layout, the truth, and the full demo library."""

from __future__ import annotations

import csv
from pathlib import Path

import pydicom
import pytest

from core.demo.build import COHEN_COLUMNS, build_demo_cohort
from core.demo.cohort import simulate_cohort


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    build_demo_cohort(out, 5, seed=1, workers=1)
    return out


def test_metadata_is_in_the_cohen_layout_with_one_row_per_scan(built: Path) -> None:
    rows = read_rows(built / "metadata.csv")
    assert list(rows[0])[: len(COHEN_COLUMNS)] == list(COHEN_COLUMNS)
    cohort = simulate_cohort(5, seed=1)
    assert len(rows) == sum(len(p.scans) for p in cohort)
    for row in rows:
        path = built / row["folder"] / row["filename"]
        assert path.exists()
        assert row["modality"] in ("X-ray", "CT")
        assert (row["modality"] == "CT") == path.is_dir()
        assert row["clinical_notes"]
        assert row["finding"] in ("Pneumonia/Viral/COVID-19", "Pneumonia/Viral/Influenza", "No Finding")


def test_xrays_and_ct_series_read_back_through_our_readers_and_pydicom(built: Path) -> None:
    from core.io.ct_series import read_ct_folder
    from core.io.images import read_xray

    rows = read_rows(built / "metadata.csv")
    truth = {r["filename"]: r for r in read_rows(built / "truth_scans.csv")}
    for row in rows:
        path = built / "images" / row["filename"]
        if row["modality"] == "CT":
            volume = read_ct_folder(path)
            files = sorted(path.iterdir())
            assert volume.hu.shape[0] == len(files)
            ds = pydicom.dcmread(files[0])
            assert ds.Modality == "CT" and len(ds.ImagePositionPatient) == 3 and ds.SliceThickness > 0
            assert len({pydicom.dcmread(f, stop_before_pixels=True).SeriesInstanceUID for f in files}) == 1
            # Lesions drawn exactly when the note reports involvement.
            involved = float(truth[row["filename"]]["lesion_fraction"]) > 0
            assert involved == ("involved" in row["clinical_notes"])
        else:
            image = read_xray(path.read_bytes(), path.name)
            assert image.shape == (256, 256)
            if path.suffix == ".dcm":
                assert pydicom.dcmread(path).Modality == "DX"


def test_labels_match_what_was_drawn(built: Path) -> None:
    for row in read_rows(built / "metadata.csv"):
        if row["modality"] != "X-ray":
            continue
        note = row["clinical_notes"]
        assert (row["Consolidation"] == "1") == ("consolidation" in note)
        assert (row["Pleural Effusion"] == "1") == ("Pleural effusion." in note)
        assert (row["Lung Opacity"] == "1") == ("opacities" in note.split("Compared")[0])


def test_the_same_seed_writes_identical_files_whatever_the_workers(built: Path, tmp_path: Path) -> None:
    build_demo_cohort(tmp_path, 5, seed=1, workers=2)
    a = sorted(p.relative_to(built) for p in built.rglob("*") if p.is_file())
    b = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert a == b
    for rel in a:
        assert (built / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_demo_build_then_cohen_import_gives_the_full_library(built: Path, tmp_path: Path) -> None:
    from core.library.importers import import_cohen
    from core.library.store import open_library

    lib = open_library(tmp_path / "lib")
    report = import_cohen(lib, built, workers=1)
    rows = read_rows(built / "metadata.csv")
    assert report.problems == [] and report.added_studies == len(rows)
    truth = {r["patientid"]: r for r in read_rows(built / "truth_patients.csv")}
    assert lib.counts().patients == len(truth)
    for pid, t in truth.items():
        p = lib.patient(lib.pseudonym("cohen", pid))
        assert p.summary.outcome == t["outcome"] and p.summary.length_of_stay_days == float(t["length_of_stay"])
        assert len(p.studies) == int(t["n_scans"])
        assert p.summary.label == t["label"]
        days = [s.offset_admission_days for s in p.studies]
        assert days == sorted(days)


def test_the_apps_direct_build_equals_demo_build_then_cohen_import(built: Path, tmp_path: Path) -> None:
    from core.library.demo import DEMO_SOURCE, build_demo_library
    from core.library.importers import import_cohen
    from core.library.store import open_library

    long_way = open_library(tmp_path / "imported")
    import_cohen(long_way, built, include_lateral=True, source=DEMO_SOURCE, workers=1)
    report = build_demo_library(tmp_path / "direct", 5, seed=1, workers=1)
    direct = open_library(tmp_path / "direct")
    assert report.imported.added_studies == long_way.counts().studies == direct.counts().studies
    assert direct.counts() == long_way.counts()

    def described(lib, pid: str):
        p = lib.patient(lib.pseudonym(DEMO_SOURCE, pid))
        s = p.summary
        facts = (s.label, s.sex, s.age_years, s.outcome, s.length_of_stay_days, s.went_icu, s.intubated)
        studies = [
            (
                st.modality,
                st.view,
                st.offset_onset_days,
                st.offset_admission_days,
                st.note,
                st.findings,
                [(im.kind, im.width, im.height, im.depth) for im in st.images],
            )
            for st in p.studies
        ]
        return facts, studies

    for pid in {r["patientid"] for r in read_rows(built / "truth_patients.csv")}:
        assert described(direct, pid) == described(long_way, pid)


def test_the_direct_build_stores_no_made_up_identifier_and_adds_nothing_twice(tmp_path: Path) -> None:
    from core.library.demo import build_demo_library

    build_demo_library(tmp_path / "lib", 4, seed=3, workers=1)
    again = build_demo_library(tmp_path / "lib", 4, seed=3, workers=1)
    assert again.imported.added_studies == 0 and again.imported.duplicates > 0
    stored = b"".join(p.read_bytes() for p in (tmp_path / "lib").rglob("*") if p.is_file())
    for identifier in (b"DEMO^PATIENT", b"MRN", b"Demo General Hospital", b"Synthetic Street", b"demo-0001"):
        assert identifier not in stored


def test_an_interrupted_build_is_flagged_and_the_next_one_completes_it(tmp_path: Path) -> None:
    from core.library.demo import build_demo_library, needs_demo_build
    from core.library.store import open_library

    class Stopped(Exception):
        pass

    def stop_after_two(done: int, total: int) -> None:
        if done == 2:
            raise Stopped

    root = tmp_path / "lib"
    assert needs_demo_build(root)
    with pytest.raises(Stopped):
        build_demo_library(root, 5, seed=2, workers=1, progress=stop_after_two)
    assert open_library(root).counts().patients == 2
    assert needs_demo_build(root)  # half-built: the app builds again on its next launch

    report = build_demo_library(root, 5, seed=2, workers=1)
    assert not needs_demo_build(root)
    whole = build_demo_library(tmp_path / "whole", 5, seed=2, workers=1)
    assert open_library(root).counts() == open_library(tmp_path / "whole").counts()
    assert report.imported.duplicates > 0  # the two stored patients were not added twice
    assert report.imported.added_studies + report.imported.duplicates == whole.imported.added_studies


def test_a_fresh_library_has_the_demo_meeting_once_and_a_resumed_build_completes_it(library_copy: Path) -> None:
    from core.library.demo import (
        DEMO_BUILD_USER,
        DEMO_MEETING_TITLE,
        MEETING_SETTING,
        add_demo_meeting,
        build_demo_library,
    )
    from core.library.meeting_records import HIDEABLE
    from core.library.store import open_library
    from tests.conftest import TEST_PATIENTS

    library = open_library(library_copy)
    (meeting,) = library.meetings()
    assert meeting.title == DEMO_MEETING_TITLE and meeting.created_by == DEMO_BUILD_USER
    patients = {p.pseudonym: p for p in library.patients()}
    shown = [patients[c.pseudonym] for c in meeting.cases]
    # The small test cohort has fewer than 8 patients: all of them, each label among them.
    assert len(shown) == min(8, len(patients)) and all(c.study_id is None for c in meeting.cases)
    assert {p.label for p in shown} == {p.label for p in patients.values()}
    assert max(p.n_ct for p in shown) == max(p.n_ct for p in patients.values())
    assert all(c.hidden == frozenset(HIDEABLE) and not c.revealed for c in meeting.cases)

    build_demo_library(library_copy, TEST_PATIENTS, seed=0, workers=1)  # a build run again
    assert [m.id for m in library.meetings()] == [meeting.id]
    # A build stopped while it made the meeting: the next one completes that meeting.
    library.remove_from_meeting(meeting.cases[-1].id)
    library.set_setting(MEETING_SETTING, "started")
    assert add_demo_meeting(library) == meeting.id
    assert [c.pseudonym for c in library.meeting(meeting.id).cases] == [c.pseudonym for c in meeting.cases]


@pytest.mark.parametrize("library_backend", ["postgresql"])
def test_a_postgresql_library_gets_the_demo_cohort_only_when_asked_and_an_interrupted_build_resumes(
    library_location: str,
) -> None:
    from core.library.demo import BUILD_SETTING, DEMO_SOURCE, build_demo_library, needs_demo_build
    from core.library.store import open_library

    # A department's empty database: the app opens it as it is, no synthetic patient drawn in.
    assert not needs_demo_build(library_location)
    library = open_library(library_location)
    assert library.counts().patients == 0 and not needs_demo_build(library_location)

    report = build_demo_library(library_location, 3, seed=4, workers=1)  # `library build-demo --library URL`
    assert report.library == library.location and report.imported.added_studies > 0
    assert {p.source for p in library.patients()} == {DEMO_SOURCE} and len(library.patients()) == 3
    assert library.meetings(), "the demo meeting comes with the demo cohort"
    assert not needs_demo_build(library_location)

    library.set_setting(BUILD_SETTING, "started")  # a build cut short, as by stopping the app
    assert needs_demo_build(library_location)
    again = build_demo_library(library_location, 3, seed=4, workers=1)
    assert again.imported.added_studies == 0 and not needs_demo_build(library_location)
