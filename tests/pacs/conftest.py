"""The archive the PACS tests talk to: one Orthanc per test worker (see :mod:`tests.pacs.orthanc`),
loaded with two demo studies written as a hospital's DICOM (names, ids, accession numbers and
dates in their headers) and, when ``../shared/samples`` is beside the project, its real CT series.
The two demo studies are fixtures of their own too (``xray_source``, ``ct_source``), for the tests
that build results from them or load them into an archive of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from core.demo.ct_phantom import generate_ct
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid, xray_dicom_bytes
from core.demo.xray_phantom import generate_xray
from tests.helpers import ROOT
from tests.pacs.orthanc import Orthanc

SAMPLE_SERIES = ROOT.parent / "shared" / "samples" / "ct-series-lung-dx-a0002"


@dataclass(frozen=True)
class LoadedStudy:
    """A study put into the archive: who and what it is, and the files as they were sent."""

    patient_id: str
    patient_name: str
    accession: str
    date: dt.date
    modality: str
    study_uid: str
    series_uid: str
    files: tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Archive:
    orthanc: Orthanc
    xray: LoadedStudy
    ct: LoadedStudy
    sample: LoadedStudy | None  # the real CT series of ../shared/samples, when present


@pytest.fixture(scope="session")
def xray_source() -> LoadedStudy:
    """The demo X-ray study (DOE^JANE, PACS-0001, ACC-0001): one DX instance, as a hospital writes it."""
    patient = DicomPatient("DOE^JANE", "PACS-0001", "19580412", "F", 61, institution="St Elsewhere Hospital")
    study = DicomStudy(new_uid("pacs-xray-study"), "ACC-0001", dt.date(2020, 3, 15), "CHEST PA")
    series_uid, instance_uid = new_uid("pacs-xray-series"), new_uid("pacs-xray-instance")
    data = xray_dicom_bytes(
        generate_xray("COVID-19", 0.6, 4242, size=256).pixels,
        1.4,
        patient,
        study,
        series_uid=series_uid,
        instance_uid=instance_uid,
    )
    return LoadedStudy(
        "PACS-0001", "DOE^JANE", "ACC-0001", study.date, "DX", study.study_uid, series_uid, (("xray.dcm", data),)
    )


@pytest.fixture(scope="session")
def ct_source() -> LoadedStudy:
    """The demo CT study (ROE^RICHARD, PACS-0002, ACC-0002): a series of 16 slices of 64 x 64."""
    patient = DicomPatient("ROE^RICHARD", "PACS-0002", "19490102", "M", 71, institution="St Elsewhere Hospital")
    study = DicomStudy(new_uid("pacs-ct-study"), "ACC-0002", dt.date(2020, 4, 2), "CT CHEST")
    series_uid = new_uid("pacs-ct-series")
    ct = generate_ct("COVID-19", 0.6, 4343, shape=(16, 64, 64))
    files = ct_series_files(ct.hu, ct.spacing_mm, patient, study, series_uid=series_uid)
    return LoadedStudy(
        "PACS-0002", "ROE^RICHARD", "ACC-0002", study.date, "CT", study.study_uid, series_uid, tuple(files)
    )


def _sample_study() -> LoadedStudy | None:
    if not SAMPLE_SERIES.is_dir():
        return None
    files = tuple((p.name, p.read_bytes()) for p in sorted(SAMPLE_SERIES.glob("*.dcm")))
    ds = pydicom.dcmread(SAMPLE_SERIES / files[0][0], stop_before_pixels=True)
    date = dt.datetime.strptime(ds.StudyDate, "%Y%m%d").date() if ds.get("StudyDate") else dt.date(1900, 1, 1)
    return LoadedStudy(
        str(ds.PatientID),
        str(ds.PatientName),
        str(ds.get("AccessionNumber", "")),
        date,
        "CT",
        str(ds.StudyInstanceUID),
        str(ds.SeriesInstanceUID),
        files,
    )


@pytest.fixture(scope="session")
def archive(
    tmp_path_factory: pytest.TempPathFactory, xray_source: LoadedStudy, ct_source: LoadedStudy
) -> Iterator[Archive]:
    """An Orthanc loaded with the demo X-ray and CT studies (and the sample series when present)."""
    orthanc = Orthanc(tmp_path_factory.mktemp("orthanc"))
    with orthanc:
        sample = _sample_study()
        for study in (xray_source, ct_source, sample):
            if study is not None:
                orthanc.store(data for _, data in study.files)
        yield Archive(orthanc, xray_source, ct_source, sample)


@pytest.fixture
def fresh_orthanc(tmp_path: Path) -> Iterator[Orthanc]:
    """An empty Orthanc of this test's own (for tests that store into the archive or stop it)."""
    with Orthanc(tmp_path / "orthanc") as orthanc:
        yield orthanc
