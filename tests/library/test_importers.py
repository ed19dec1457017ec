"""Importers: the Cohen layout, class folders and CSV manifests, de-identified, without duplicates."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from pathlib import Path

import pydicom
import pytest
from PIL import Image, ImageDraw, ImageFont

from core.demo.ct_phantom import generate_ct
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid
from core.demo.xray_phantom import generate_xray
from core.errors import InvalidInputError
from core.library.importers import add_upload, import_cohen, import_csv, import_folders
from core.library.store import open_library
from tests.datasets import IDENTIFIERS, rng_bytes
from tests.pg import everything_stored


def test_cohen_import_keeps_what_it_should_and_reports_bad_rows(library_location: str, cohen_dataset: Path) -> None:
    lib = open_library(library_location)
    report = import_cohen(lib, cohen_dataset, workers=1)
    assert report.added_studies == 5  # rows 2, 3, 5, 6, 10
    assert report.added_patients == 3
    assert report.warnings == []  # no phantom carries burned-in text
    assert report.skipped_by_option == 1  # the lateral view
    assert len(report.problems) == 3
    assert report.problems[0].startswith("row 7:") and "missing" in report.problems[0]
    assert report.problems[1].startswith("row 8:") and "offset" in report.problems[1]
    assert report.problems[2].startswith("row 9:")

    p1 = lib.patient(lib.pseudonym("cohen", "1"))
    assert [(s.modality, s.offset_onset_days) for s in p1.studies] == [("X-ray", 3), ("X-ray", 8), ("CT", 10)]
    assert p1.summary.label == "COVID-19" and p1.summary.survival is True and p1.summary.went_icu is True
    assert p1.summary.sex == "F" and p1.summary.age_years == 61
    assert p1.studies[1].note == "Increased opacities." and p1.studies[1].view == "AP"
    ct = p1.studies[2].images[0]
    assert ct.kind == "ct-series" and ct.depth == 16 and ct.n_files == 16
    assert lib.patient(lib.pseudonym("cohen", "5")).summary.label is None  # bacterial: kept, unlabelled


def test_stored_images_read_back_through_the_project_readers(library_location: str, cohen_dataset: Path) -> None:
    from core.io.ct_series import read_ct_series
    from core.io.images import read_xray

    lib = open_library(library_location)
    import_cohen(lib, cohen_dataset, workers=1)
    p1 = lib.patient(lib.pseudonym("cohen", "1"))
    for study in p1.studies:
        image = study.images[0]
        files = lib.image_files(image)
        if image.kind == "ct-series":
            volume = read_ct_series(files)
            assert volume.hu.shape == (16, 48, 48) and volume.hu.min() < -900
        else:
            xray = read_xray(files[0][1], "stored")
            assert xray.shape == (96, 96)
        assert lib.thumbnail(image.id)[:4] == b"\x89PNG"


def test_no_original_identifier_survives_anywhere_in_the_store(library_location: str, cohen_dataset: Path) -> None:
    import pydicom

    originals = {pydicom.dcmread(p).StudyInstanceUID for p in (cohen_dataset / "images" / "p1-ct").iterdir()}
    originals |= {pydicom.dcmread(p).SOPInstanceUID for p in (cohen_dataset / "images" / "p1-ct").iterdir()}
    originals.add(pydicom.dcmread(cohen_dataset / "images" / "p1-b.dcm").SeriesInstanceUID)
    import_cohen(open_library(library_location), cohen_dataset, workers=1)
    stored = everything_stored(library_location)
    for what, value in IDENTIFIERS.items():
        for form in {value, value.replace("^", " "), value.split("^")[0]}:
            assert form.encode() not in stored, f"{what} survived the import"
    for uid in originals:
        assert uid.encode() not in stored
    # Nor do the source file names, which may carry names in real exports.
    for name in ("p1-a.png", "p1-b.dcm", "p1-ct"):
        assert name.encode() not in stored


def test_reimporting_the_same_source_adds_nothing(library_location: str, tmp_path: Path, cohen_dataset: Path) -> None:
    lib = open_library(library_location)
    import_cohen(lib, cohen_dataset, workers=1)
    before = lib.counts()
    # Even from another path, under another folder name.
    copy = tmp_path / "copy"
    shutil.copytree(cohen_dataset, copy)
    again = import_cohen(lib, copy, workers=2)
    assert again.added_studies == 0 and again.duplicates == 5
    assert lib.counts() == before


def test_cohen_options_for_lateral_views_and_ct(library_location: str, cohen_dataset: Path) -> None:
    lib = open_library(library_location)
    report = import_cohen(lib, cohen_dataset, include_lateral=True, include_ct=False, workers=1)
    assert report.added_studies == 5 and report.skipped_by_option == 1
    views = [s.view for s in lib.patient(lib.pseudonym("cohen", "1")).studies]
    assert "L" in views and lib.counts().by_modality.get("CT", 0) == 0


def test_cohen_import_of_a_folder_without_metadata_fails_plainly(library_location: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="metadata.csv"):
        import_cohen(open_library(library_location), tmp_path)
    (tmp_path / "metadata.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InvalidInputError, match="patientid"):
        import_cohen(open_library(library_location), tmp_path)


def test_class_folders_import_each_image_as_a_patient(
    library_location: str, tmp_path: Path, cohen_dataset: Path
) -> None:
    src = tmp_path / "kaggle"
    for folder, name in (("COVID", "p1-a.png"), ("NORMAL", "p2.png"), ("Viral Pneumonia", "p5.png")):
        (src / folder / "images").mkdir(parents=True)
        shutil.copy(cohen_dataset / "images" / name, src / folder / "images" / "x.png")
    (src / "COVID" / "masks").mkdir()
    shutil.copy(cohen_dataset / "images" / "p2.png", src / "COVID" / "masks" / "x.png")
    (src / "NORMAL" / "images" / "broken.png").write_bytes(rng_bytes(300))
    lib = open_library(library_location)
    report = import_folders(lib, src, workers=1)
    assert report.added_studies == 3 and len(report.problems) == 1
    assert lib.counts().by_label == {"COVID-19": 1, "Normal": 1, "Viral pneumonia": 1}
    with pytest.raises(InvalidInputError, match="class folders"):
        import_folders(lib, cohen_dataset)


def test_csv_manifest_import(library_location: str, tmp_path: Path, cohen_dataset: Path) -> None:
    manifest = tmp_path / "manifest.csv"
    rows = [
        {
            "path": "cohen/images/p1-a.png",
            "label": "COVID-19",
            "patient_id": "A",
            "offset_days": "4",
            "survival": "N",
            "age": "70",
            "sex": "M",
            "note": "first",
            "outcome": "died",
        },
        {
            "path": "cohen/images/p1-ct",
            "label": "COVID",
            "patient_id": "A",
            "offset_days": "9",
            "survival": "N",
            "age": "",
            "sex": "",
            "note": "ct",
            "outcome": "",
        },
        {
            "path": "cohen/images/p2.png",
            "label": "pneumothorax",
            "patient_id": "B",
            "offset_days": "",
            "survival": "",
            "age": "",
            "sex": "",
            "note": "",
            "outcome": "",
        },
        {
            "path": "cohen/images/p2.png",
            "label": "Normal",
            "patient_id": "C",
            "offset_days": "x",
            "survival": "",
            "age": "",
            "sex": "",
            "note": "",
            "outcome": "",
        },
    ]
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    lib = open_library(library_location)
    report = import_csv(lib, manifest, workers=1)
    assert report.added_studies == 2
    assert [p.split(":")[0] for p in report.problems] == ["row 4", "row 5"]
    a = lib.patient(lib.pseudonym("csv", "A"))
    assert [s.modality for s in a.studies] == ["X-ray", "CT"]
    assert a.summary.outcome == "died" and a.summary.survival is False and a.summary.age_years == 70


def test_a_reviewed_upload_becomes_a_deidentified_case(library_location: str, cohen_dataset: Path) -> None:
    lib = open_library(library_location)
    data = (cohen_dataset / "images" / "p1-b.dcm").read_bytes()
    added = add_upload(lib, [("Doe_Jane.dcm", data)], modality="X-ray", label="COVID-19", note="ok")
    pseudonym, study_id = added
    assert pseudonym.startswith("P-") and added.warning is None
    # A second upload of the same person (same DICOM PatientID) joins the same patient.
    slices = [(p.name, p.read_bytes()) for p in sorted((cohen_dataset / "images" / "p1-ct").iterdir())]
    again, _ = add_upload(lib, slices, modality="CT", label="COVID-19", offset_admission_days=3)
    assert again == pseudonym
    assert [s.modality for s in lib.patient(pseudonym).studies] == ["CT", "X-ray"]  # day 3 first, then undated
    with pytest.raises(InvalidInputError, match="already"):
        add_upload(lib, [("again.dcm", data)], modality="X-ray", label=None)
    with pytest.raises(InvalidInputError):
        add_upload(lib, [("junk.png", rng_bytes(500))], modality="X-ray", label=None)
    stored = everything_stored(library_location)
    for value in (IDENTIFIERS["name"], IDENTIFIERS["patient_id"], "Doe_Jane"):
        assert value.encode() not in stored


# ----------------------------------------------------------------------------- burned-in text


def with_burned_in_text(png: bytes) -> bytes:
    """A PNG with a name and a date written in white along its top border."""
    im = Image.open(io.BytesIO(png)).convert("L")
    font = ImageFont.load_default(size=max(10, im.height // 24))
    ImageDraw.Draw(im).text((im.width // 10, im.height // 40), "DOE JANE 1958-04-12", fill=255, font=font)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


def burned_in_dicom(data: bytes) -> bytes:
    """A DICOM file whose header says its pixels carry burned-in annotation."""
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.BurnedInAnnotation = "YES"
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def test_an_import_warns_of_each_study_that_may_carry_burned_in_text_by_row_and_still_adds_it(
    library_location: str, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    clean = generate_xray("Normal", 0.0, 21, size=256).to_png()
    (src / "clean.png").write_bytes(clean)
    (src / "Doe_Jane.png").write_bytes(with_burned_in_text(generate_xray("COVID-19", 0.5, 22, size=256).to_png()))
    # A CT series of which one slice's header says burned-in annotation.
    ct = generate_ct("COVID-19", 0.5, 23, shape=(16, 48, 48))
    patient = DicomPatient("DOE^JANE", "MRN-9", "19580412", "F", 61)
    study = DicomStudy(new_uid("burned-in-series"), "ACC-9", dt.date(2020, 3, 15))
    files = ct_series_files(ct.hu, ct.spacing_mm, patient, study)
    (src / "series").mkdir()
    for i, (name, data) in enumerate(files):
        (src / "series" / name).write_bytes(burned_in_dicom(data) if i == 7 else data)
    manifest = src / "manifest.csv"
    manifest.write_text(
        "path,label,patient_id\nclean.png,Normal,A\nDoe_Jane.png,COVID-19,B\nseries,COVID-19,C\n", encoding="utf-8"
    )
    lib = open_library(library_location)
    report = import_csv(lib, manifest, workers=1)
    assert report.added_studies == 3 and report.problems == []
    assert [w.split(" (")[0] for w in report.warnings] == ["row 3", "row 4"]
    b, c = (lib.patient(lib.pseudonym("csv", pid)) for pid in "BC")
    assert f"patient {b.pseudonym}, study {b.studies[0].id}" in report.warnings[0]
    assert "the pixels may carry identifiers" in report.warnings[0] and "top border" in report.warnings[0]
    assert "check the image before sharing it" in report.warnings[0]
    assert f"patient {c.pseudonym}" in report.warnings[1] and "DICOM header" in report.warnings[1]
    assert "Doe_Jane" not in " ".join(report.warnings)  # never the file name
    assert report.as_dict()["warnings"] == report.warnings
    # The flag stays with the study, for whoever opens it later; the clean one has none.
    assert "top border" in (b.studies[0].burned_in or "") and "DICOM header" in (c.studies[0].burned_in or "")
    assert lib.patient(lib.pseudonym("csv", "A")).studies[0].burned_in is None


def test_class_folders_warn_of_the_one_image_with_burned_in_text(library_location: str, tmp_path: Path) -> None:
    (tmp_path / "src" / "COVID").mkdir(parents=True)
    (tmp_path / "src" / "COVID" / "a.png").write_bytes(generate_xray("COVID-19", 0.5, 31, size=256).to_png())
    text = with_burned_in_text(generate_xray("COVID-19", 0.5, 32, size=256).to_png())
    (tmp_path / "src" / "COVID" / "b.png").write_bytes(text)
    report = import_folders(open_library(library_location), tmp_path / "src", workers=1)
    assert report.added_studies == 2
    assert len(report.warnings) == 1 and report.warnings[0].startswith("row 2 (")


def test_a_reviewed_upload_whose_header_says_burned_in_annotation_warns(
    library_location: str, cohen_dataset: Path
) -> None:
    lib = open_library(library_location)
    data = burned_in_dicom((cohen_dataset / "images" / "p1-b.dcm").read_bytes())
    added = add_upload(lib, [("Doe_Jane.dcm", data)], modality="X-ray", label="COVID-19")
    assert added.warning is not None
    assert added.warning.startswith(f"Study {added.study_id} of patient {added.pseudonym}: the pixels may carry")
    assert "burned-in annotation" in added.warning and "Doe_Jane" not in added.warning
    assert lib.counts().studies == 1  # added all the same
    assert "burned-in annotation" in (lib.patient(added.pseudonym).studies[0].burned_in or "")
