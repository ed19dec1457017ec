"""Write the demo cohort to disk in the formats real data come in.

Layout of the output folder (the covid-chestxray-dataset layout, plus the truth)::

    metadata.csv            one row per image or CT series (Cohen et al.'s columns, see below)
    images/                 X-rays as 8-bit PNG or DICOM DX (some MONOCHROME1);
                            CT series as folders of DICOM slices (one file per slice)
    truth_patients.csv      the simulator's truth per patient (course, outcome)
    truth_scans.csv         the truth per scan (latent severity, change category, lesion fraction)

``metadata.csv`` has Cohen's columns ``patientid, offset, sex, age, finding, RT_PCR_positive,
survival, intubated, went_icu, view, modality, date, location, folder, filename, doi, url,
license, clinical_notes, other_notes`` (offset = days since symptom onset) and, beyond them,
``offset_admission`` (days since admission), ``length_of_stay`` (days from admission to
discharge, death or the data freeze), ``outcome`` (discharged / died / in hospital) and one
column per finding (1 / 0, blank where the finding does not apply to the modality). The
importer reads those extra columns when present. CT rows name a series folder in ``filename``.

The DICOM files carry made-up identifiers (names, record numbers, birth dates, an address,
an institution), so that the importer's de-identification has something to remove.
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from core.demo.cohort import DEFAULT_PATIENTS, DemoPatient, simulate_cohort
from core.demo.ct_phantom import CT_FINDINGS, CT_SHAPE, generate_ct
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid, xray_dicom_bytes
from core.demo.notes import Prior, change_category, ct_note, xray_note
from core.demo.xray_phantom import FINDINGS, generate_xray
from core.types import Progress

logger = logging.getLogger(__name__)

#: Calendar date of admission window day 0.
FIRST_ADMISSION_DATE = dt.date(2020, 3, 2)
#: Side of the X-ray phantoms in pixels.
XRAY_SIZE: int = 256

COHEN_COLUMNS: tuple[str, ...] = (
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
EXTRA_COLUMNS: tuple[str, ...] = ("offset_admission", "length_of_stay", "outcome")

#: Cohen's ``finding`` value of each label.
COHEN_FINDING: dict[str, str] = {
    "COVID-19": "Pneumonia/Viral/COVID-19",
    "Viral pneumonia": "Pneumonia/Viral/Influenza",
    "Normal": "No Finding",
}


@dataclass(frozen=True)
class BuildReport:
    out_dir: Path
    n_patients: int
    n_xrays: int
    n_cts: int
    seconds: float


def finding_columns() -> tuple[str, ...]:
    """Finding columns of ``metadata.csv``: the X-ray findings, then the CT-only ones."""
    return FINDINGS + tuple(f for f in CT_FINDINGS if f not in FINDINGS)


def _yn(value: bool | None) -> str:
    return "" if value is None else ("Y" if value else "N")


def dicom_identity(patient: DemoPatient, pseudonym: str | None = None) -> DicomPatient:
    """Who the patient's DICOM files say they are: made-up identifiers of a fictional hospital
    (for the importer's de-identification to remove), or only ``pseudonym`` when given."""
    if pseudonym is not None:
        return DicomPatient(name=pseudonym, patient_id=pseudonym, birth_date="", sex=patient.sex, age_years=patient.age)
    number = int(patient.patient_id.rsplit("-", 1)[-1])
    admission = admission_date(patient)
    birth = admission.replace(year=admission.year - patient.age) - dt.timedelta(days=patient.seed % 300)
    return DicomPatient(
        name=f"DEMO^PATIENT{number:04d}",
        patient_id=f"MRN{patient.seed % 10_000_000:07d}",
        birth_date=birth.strftime("%Y%m%d"),
        sex=patient.sex,
        age_years=patient.age,
        address=f"{number} Synthetic Street, Demoville",
        institution="Demo General Hospital",
        institution_address="1 Hospital Road, Demoville",
    )


def admission_date(patient: DemoPatient) -> dt.date:
    return FIRST_ADMISSION_DATE + dt.timedelta(days=patient.admission_calendar_day)


@dataclass(frozen=True)
class RenderedScan:
    """One scan of a patient, drawn and encoded in memory.

    ``files`` is one ``(name, contents)`` pair for an X-ray (PNG or DICOM), one per slice for a
    CT series; ``hu`` is the CT volume those slices encode (None for an X-ray).
    """

    row: dict[str, str]
    truth: dict[str, str]
    files: list[tuple[str, bytes]]
    hu: np.ndarray | None


def render_patient(
    patient: DemoPatient,
    xray_size: int = XRAY_SIZE,
    ct_shape: tuple[int, int, int] | None = None,
    *,
    pseudonym: str | None = None,
) -> list[RenderedScan]:
    """Draw all scans of one patient, with their ``metadata.csv`` rows, notes and truth.

    The DICOM files carry made-up identifiers, or only ``pseudonym`` (and no accession number,
    institution or referring physician) when it is given.
    """
    admission = admission_date(patient)
    identity = dicom_identity(patient, pseudonym)
    anonymous = pseudonym is not None
    columns = finding_columns()
    scans: list[RenderedScan] = []
    priors: dict[str, Prior] = {}
    for scan in patient.scans:
        date = admission + dt.timedelta(days=scan.day)
        stem = f"{patient.patient_id}-{scan.index:02d}"
        study = DicomStudy(
            study_uid=new_uid("study", patient.seed, scan.index),
            accession="" if anonymous else f"ACC{patient.seed % 100_000:05d}{scan.index:02d}",
            date=date,
            description="CHEST CT" if scan.modality == "CT" else "CHEST XRAY",
            referring_physician="" if anonymous else "DEMO^REFERRER",
        )
        prior = priors.get(scan.modality)
        lesion_fraction = ""
        hu = None
        if scan.modality == "X-ray":
            phantom = generate_xray(patient.label, scan.severity, patient.seed, size=xray_size, session=scan.index)
            findings = dict(phantom.findings)
            note = xray_note(patient.label, scan.view, scan.severity, findings, prior)
            if scan.as_dicom:
                filename = f"{stem}.dcm"
                data = xray_dicom_bytes(
                    phantom.pixels,
                    phantom.pixel_spacing_mm,
                    identity,
                    study,
                    view=scan.view.split()[0],
                    monochrome1=scan.monochrome1,
                )
            else:
                filename = f"{stem}.png"
                data = phantom.to_png()
            files = [(filename, data)]
        else:
            ct = generate_ct(patient.label, scan.severity, patient.seed, shape=ct_shape or CT_SHAPE, session=scan.index)
            findings = dict(ct.findings)
            lesion_fraction = f"{ct.lesion_fraction:.4f}"
            note = ct_note(patient.label, scan.severity, findings, ct.lesion_fraction, prior)
            filename = f"{stem}-ct"
            files = ct_series_files(ct.hu, ct.spacing_mm, identity, study)
            hu = ct.hu
        priors[scan.modality] = Prior(scan.day, scan.severity, findings)
        row = {
            "patientid": patient.patient_id,
            "offset": str(scan.onset_day),
            "sex": patient.sex,
            "age": str(patient.age),
            "finding": COHEN_FINDING[patient.label],
            "RT_PCR_positive": _yn(patient.label == "COVID-19") if patient.label != "Normal" else "",
            "survival": _yn(patient.survived),
            "intubated": _yn(patient.intubated),
            "went_icu": _yn(patient.went_icu),
            "view": scan.view,
            "modality": scan.modality,
            "date": f"{date:%B} {date.day}, {date.year}",
            "location": "Demoland (synthetic)",
            "folder": "images",
            "filename": filename,
            "doi": "",
            "url": "",
            "license": "CC0 (synthetic phantom)",
            "clinical_notes": note,
            "other_notes": "",
            "offset_admission": str(scan.day),
            "length_of_stay": str(patient.length_of_stay_days),
            "outcome": patient.outcome,
        }
        for name in columns:
            row[name] = str(int(findings[name])) if name in findings else ""
        truth = {
            "patientid": patient.patient_id,
            "filename": filename,
            "modality": scan.modality,
            "offset_admission": str(scan.day),
            "severity": f"{scan.severity:.4f}",
            "change": "" if prior is None else change_category(scan.severity, prior),
            "lesion_fraction": lesion_fraction,
            "remaining_stay": str(patient.remaining_stay_days(scan.day)),
        }
        scans.append(RenderedScan(row, truth, files, hu))
    return scans


def _write_patient(patient: DemoPatient, out_dir: str, xray_size: int, ct_shape: tuple[int, int, int]):
    """Draw and write all scans of one patient; return (metadata rows, truth rows). Runs in a worker."""
    images = Path(out_dir) / "images"
    scans = render_patient(patient, xray_size, ct_shape)
    for scan in scans:
        if scan.hu is None:
            (images / scan.row["filename"]).write_bytes(scan.files[0][1])
        else:
            folder = images / scan.row["filename"]
            folder.mkdir(exist_ok=True)
            for name, data in scan.files:
                (folder / name).write_bytes(data)
    return [s.row for s in scans], [s.truth for s in scans]


def _truth_patient_row(p: DemoPatient) -> dict[str, str]:
    c = p.course
    return {
        "patientid": p.patient_id,
        "label": p.label,
        "age": str(p.age),
        "sex": p.sex,
        "onset_to_admission": str(p.onset_to_admission_days),
        "peak_severity": "" if c is None else f"{c.peak:.4f}",
        "peak_day": "" if c is None else f"{c.peak_day:.2f}",
        "presentation_fraction": "" if c is None else f"{c.presentation_fraction:.4f}",
        "recovery_halfwidth": "" if c is None else f"{c.recovery_halfwidth_days:.3f}",
        "outcome": p.outcome,
        "length_of_stay": str(p.length_of_stay_days),
        "went_icu": _yn(p.went_icu),
        "intubated": _yn(p.intubated),
        "n_scans": str(len(p.scans)),
    }


def _write_csv(path: Path, rows: list[dict[str, str]], fields: tuple[str, ...]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(fields))
        writer.writeheader()
        writer.writerows(rows)


def build_demo_cohort(
    out_dir: str | Path,
    n_patients: int = DEFAULT_PATIENTS,
    seed: int = 0,
    *,
    xray_size: int = XRAY_SIZE,
    ct_shape: tuple[int, int, int] | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> BuildReport:
    """Simulate the demo cohort and write it to ``out_dir`` (see the module docstring).

    Patients are drawn and written in parallel by ``workers`` processes (default: the CPU
    count, at most 4); each patient's files depend only on the seed, so the output is the
    same whatever the number of workers. ``progress(done, total)`` is called per patient.

    Raises
    ------
    ValueError
        For a bad number of patients, seed or size.
    """
    start = time.perf_counter()
    cohort = simulate_cohort(n_patients, seed)
    shape = tuple(ct_shape or CT_SHAPE)
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    n_workers = max(1, min(workers or os.cpu_count() or 1, 4, len(cohort)))
    results: list[tuple[list[dict[str, str]], list[dict[str, str]]] | None] = [None] * len(cohort)
    if n_workers == 1:
        for i, p in enumerate(cohort):
            results[i] = _write_patient(p, str(out), xray_size, shape)
            if progress is not None:
                progress(i + 1, len(cohort))
    else:
        # "spawn": a forked copy of a process that runs torch threads (the app) can deadlock.
        with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
            futures = {pool.submit(_write_patient, p, str(out), xray_size, shape): i for i, p in enumerate(cohort)}
            for done, future in enumerate(as_completed(futures), start=1):
                results[futures[future]] = future.result()
                if progress is not None:
                    progress(done, len(cohort))
    rows = [r for res in results if res for r in res[0]]
    truth = [t for res in results if res for t in res[1]]
    _write_csv(out / "metadata.csv", rows, COHEN_COLUMNS + EXTRA_COLUMNS + finding_columns())
    _write_csv(out / "truth_scans.csv", truth, tuple(truth[0]) if truth else ("patientid",))
    patients = [_truth_patient_row(p) for p in cohort]
    _write_csv(out / "truth_patients.csv", patients, tuple(patients[0]))
    n_ct = sum(r["modality"] == "CT" for r in rows)
    seconds = time.perf_counter() - start
    logger.info("Wrote a demo cohort of %d patients in %.1f s", len(cohort), seconds)
    return BuildReport(out, len(cohort), len(rows) - n_ct, n_ct, seconds)
