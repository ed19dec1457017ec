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
