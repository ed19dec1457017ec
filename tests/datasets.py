"""Small datasets written by the tests themselves (the covid-chestxray-dataset layout)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np

#: Identifiers written into the fixture's DICOM files; none may survive an import.
IDENTIFIERS = {
    "name": "Doe^Jane",
    "patient_id": "MRN-778899",
    "birth_date": "19580412",
    "address": "12 Elm Street, Springfield",
    "institution": "Saint Example Hospital",
    "institution_address": "99 Hospital Way, Springfield",
    "accession": "ACC-20200315-42",
    "referrer": "House^Gregory",
    "study_date": "20200315",
}

COLUMNS = (
    "patientid",
    "offset",
    "sex",
    "age",
    "finding",
    "RT_PCR_positive",
    "survival",
    "intubated",
    "went_icu",
    "view",
    "modality",
    "date",
    "location",
    "folder",
    "filename",
    "doi",
    "url",
    "license",
    "clinical_notes",
    "other_notes",
)


def _row(**values: str) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(folder="images", **values)
    return row


def write_cohen_dataset(tmp_path: Path) -> Path:
    """metadata.csv + images/: PNG and DICOM X-rays, a lateral view, a CT series folder, and bad rows.

    Rows (line numbers as the importer reports them, the header being line 1):
      2  patient 1, day 0, PA PNG, COVID-19
      3  patient 1, day 5, AP DICOM (MONOCHROME1) carrying IDENTIFIERS
      4  patient 1, day 5, lateral PNG (skipped unless lateral views are asked for)
      5  patient 1, day 7, CT series folder carrying IDENTIFIERS
      6  patient 2, PA PNG, No Finding
      7  patient 3, image missing
      8  patient 3, offset "soon" (malformed)
      9  patient 4, empty filename
     10  patient 5, Pneumonia/Bacterial (kept, unlabelled)
    """
    from core.demo.ct_phantom import generate_ct
    from core.demo.dicom_writer import DicomPatient, DicomStudy, new_uid, write_ct_series, xray_dicom_bytes
    from core.demo.xray_phantom import generate_xray

    root = tmp_path / "cohen"
    images = root / "images"
    images.mkdir(parents=True)
    (images / "p1-a.png").write_bytes(generate_xray("COVID-19", 0.4, 11, size=96).to_png())
    (images / "p1-lat.png").write_bytes(generate_xray("COVID-19", 0.5, 12, size=96).to_png())
    (images / "p2.png").write_bytes(generate_xray("Normal", 0.0, 13, size=96).to_png())
    (images / "p5.png").write_bytes(generate_xray("Viral pneumonia", 0.6, 14, size=96).to_png())
    ident = DicomPatient(
        name=IDENTIFIERS["name"],
        patient_id=IDENTIFIERS["patient_id"],
        birth_date=IDENTIFIERS["birth_date"],
        sex="F",
        age_years=61,
        address=IDENTIFIERS["address"],
        institution=IDENTIFIERS["institution"],
        institution_address=IDENTIFIERS["institution_address"],
    )
    study = DicomStudy(
        study_uid=new_uid("fixture-study"),
        accession=IDENTIFIERS["accession"],
        date=dt.date(2020, 3, 15),
        description="CHEST",
        referring_physician=IDENTIFIERS["referrer"],
    )
    xr = generate_xray("COVID-19", 0.7, 11, size=96, session=1)
    (images / "p1-b.dcm").write_bytes(
        xray_dicom_bytes(xr.pixels, xr.pixel_spacing_mm, ident, study, view="AP", monochrome1=True)
    )
    ct = generate_ct("COVID-19", 0.6, 11, shape=(16, 48, 48), session=2)
    write_ct_series(images / "p1-ct", ct.hu, ct.spacing_mm, ident, study)
    rows = [
        _row(
            patientid="1",
            offset="3",
            sex="F",
            age="61",
            finding="Pneumonia/Viral/COVID-19",
            survival="Y",
            view="PA",
            modality="X-ray",
            filename="p1-a.png",
            clinical_notes="Bilateral peripheral opacities.",
        ),
        _row(
            patientid="1",
            offset="8",
            sex="F",
            age="61",
            finding="Pneumonia/Viral/COVID-19",
            survival="Y",
            intubated="N",
            went_icu="Y",
            view="AP",
            modality="X-ray",
            filename="p1-b.dcm",
            clinical_notes="Increased opacities.",
        ),
        _row(
            patientid="1",
            offset="8",
            finding="Pneumonia/Viral/COVID-19",
            view="L",
            modality="X-ray",
            filename="p1-lat.png",
        ),
        _row(
            patientid="1",
            offset="10",
            finding="Pneumonia/Viral/COVID-19",
            view="Axial",
            modality="CT",
            filename="p1-ct",
            clinical_notes="Ground-glass opacities.",
        ),
        _row(
            patientid="2",
            offset="",
            sex="M",
            age="40",
            finding="No Finding",
            view="PA",
            modality="X-ray",
            filename="p2.png",
        ),
        _row(
            patientid="3",
            offset="1",
            finding="Pneumonia/Viral/COVID-19",
            view="PA",
            modality="X-ray",
            filename="not-there.png",
        ),
        _row(
            patientid="3",
            offset="soon",
            finding="Pneumonia/Viral/COVID-19",
            view="PA",
            modality="X-ray",
            filename="p2.png",
        ),
        _row(patientid="4", offset="1", finding="Pneumonia/Viral/COVID-19", view="PA", modality="X-ray", filename=""),
        _row(patientid="5", offset="2", finding="Pneumonia/Bacterial", view="PA", modality="X-ray", filename="p5.png"),
    ]
    with open(root / "metadata.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return root


def everything_stored(library_root: Path) -> bytes:
    """Every byte the library holds: the database (and its WAL) and all files."""
    blobs = [p.read_bytes() for p in sorted(library_root.rglob("*")) if p.is_file()]
    return b"".join(blobs)


def rng_bytes(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
