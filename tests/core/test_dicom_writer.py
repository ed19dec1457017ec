"""Tests of core.demo.dicom_writer: synthetic radiographs and CT series written as real DICOM."""

from __future__ import annotations

import datetime
import io

import numpy as np
import pydicom
import pydicom.uid
import pytest
from pydicom.pixels import pixel_array

from core.demo.dicom_writer import (
    CT_LUNG_WINDOW,
    DicomPatient,
    DicomStudy,
    new_uid,
    write_ct_series,
    xray_dicom_bytes,
)
from core.io import read_xray

PATIENT = DicomPatient(
    name="DEMO^PATIENT0001",
    patient_id="MRN-0001",
    birth_date="19750203",
    sex="F",
    age_years=45,
    address="12 Harbour Road, Springfield",
    institution="Springfield General Hospital",
    institution_address="1 Hospital Way, Springfield",
)
STUDY = DicomStudy(
    study_uid=new_uid("test-study", 1),
    accession="ACC-20200311-01",
    date=datetime.date(2020, 3, 11),
    description="CHEST",
    referring_physician="HOUSE^GREGORY",
)


@pytest.fixture
def radiograph() -> np.ndarray:
    rng = np.random.default_rng(11)
    rows, cols = np.mgrid[0:48, 0:40]
    return np.clip(rows / 47 * 0.7 + cols / 39 * 0.2 + rng.normal(0, 0.03, (48, 40)), 0, 1)


def hu_phantom(n_slices: int = 5, size: int = 16) -> np.ndarray:
    """(z, y, x) int16 HU: air outside, a body of soft tissue with lungs, varying per slice."""
    z, y, x = np.mgrid[0:n_slices, 0:size, 0:size]
    hu = np.full((n_slices, size, size), -1000, dtype=np.int16)
    body = (y - size / 2) ** 2 + (x - size / 2) ** 2 < (size * 0.45) ** 2
    hu[body] = 40
    lungs = body & ((x - size / 2) ** 2 > 4) & ((y - size / 2) ** 2 < (size * 0.3) ** 2)
    hu[lungs] = -850 + 10 * z[lungs]
    return hu


# ------------------------------------------------------------------------------------------
# Radiographs


@pytest.mark.parametrize("modality", ["DX", "CR"])
@pytest.mark.parametrize("bits_stored", [8, 12, 16])
@pytest.mark.parametrize("monochrome1", [False, True])
def test_xray_reads_back_to_the_same_image(radiograph, modality, bits_stored, monochrome1):
    data = xray_dicom_bytes(
        radiograph, 0.2, PATIENT, STUDY, modality=modality, bits_stored=bits_stored, monochrome1=monochrome1
    )
    image = read_xray(data, "written.dcm")
    assert image.file_format == "dicom"
    assert image.modality == modality
    assert image.photometric == ("MONOCHROME1" if monochrome1 else "MONOCHROME2")
    assert image.pixel_spacing_mm == (0.2, 0.2)
    assert image.warnings == ()
    # The file's own window spans the stored range: the displayed image is the input, quantised.
    step = 1.0 / ((1 << bits_stored) - 1)
    np.testing.assert_allclose(image.windowed(), radiograph, atol=step / 2 + 1e-6)


def test_monochrome1_and_monochrome2_display_identically(radiograph):
    plain = read_xray(xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY), "a.dcm")
    inverted = read_xray(xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY, monochrome1=True), "b.dcm")
    np.testing.assert_array_equal(plain.windowed(), inverted.windowed())
    stored_plain = pixel_array(io.BytesIO(xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY)))
    stored_inverted = pixel_array(io.BytesIO(xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY, monochrome1=True)))
    np.testing.assert_array_equal(stored_inverted, 4095 - stored_plain)  # really stored inverted


def test_xray_carries_the_tags_of_a_real_radiograph(radiograph):
    ds = pydicom.dcmread(io.BytesIO(xray_dicom_bytes(radiograph, 0.15, PATIENT, STUDY, view="AP")))
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.DigitalXRayImageStorageForPresentation
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.PresentationIntentType == "FOR PRESENTATION"
    assert (ds.Modality, ds.ViewPosition, ds.BodyPartExamined) == ("DX", "AP", "CHEST")
    assert list(ds.PatientOrientation) == ["L", "F"]
    assert [float(v) for v in ds.PixelSpacing] == [0.15, 0.15]
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.15, 0.15]
    assert (ds.PatientName, ds.PatientID, ds.PatientBirthDate) == ("DEMO^PATIENT0001", "MRN-0001", "19750203")
    assert (ds.PatientSex, ds.PatientAge, ds.PatientAddress) == ("F", "045Y", PATIENT.address)
    assert (ds.InstitutionName, ds.InstitutionAddress) == (PATIENT.institution, PATIENT.institution_address)
    assert (ds.AccessionNumber, ds.ReferringPhysicianName, ds.StudyDescription) == (
        STUDY.accession,
        "HOUSE^GREGORY",
        "CHEST",
    )
    assert ds.StudyDate == ds.SeriesDate == ds.ContentDate == "20200311"
    assert ds.StudyInstanceUID == STUDY.study_uid
    assert pydicom.uid.UID(ds.SeriesInstanceUID).is_valid and pydicom.uid.UID(ds.SOPInstanceUID).is_valid
    assert float(ds.WindowCenter) - 0.5 == 4095 / 2 and float(ds.WindowWidth) == 4096


def test_cr_and_lateral_views():
    pixels = np.linspace(0, 1, 64).reshape(8, 8)
    ds = pydicom.dcmread(io.BytesIO(xray_dicom_bytes(pixels, 0.2, PATIENT, STUDY, modality="CR", view="L")))
    assert ds.SOPClassUID == pydicom.uid.ComputedRadiographyImageStorage
    assert "PresentationIntentType" not in ds
    assert ds.ViewPosition == "LL"
    assert list(ds.PatientOrientation) == ["P", "F"]
    ds = pydicom.dcmread(io.BytesIO(xray_dicom_bytes(pixels, 0.2, PATIENT, STUDY, view="AP Supine")))
    assert ds.ViewPosition == "AP"


@pytest.mark.parametrize(
    ("kwargs", "pixels", "match"),
    [
        ({"modality": "CT"}, np.zeros((4, 4)), "modality"),
        ({"view": "OBLIQUE"}, np.zeros((4, 4)), "view"),
        ({"bits_stored": 17}, np.zeros((4, 4)), "bits_stored"),
        ({}, np.zeros((4, 4, 3)), "2D"),
        ({}, np.full((4, 4), np.nan), "finite"),
    ],
)
def test_xray_rejects_bad_arguments(kwargs, pixels, match):
    with pytest.raises(ValueError, match=match):
        xray_dicom_bytes(pixels, 0.2, PATIENT, STUDY, **kwargs)


def test_xray_is_deterministic(radiograph):
    first = xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY, monochrome1=True)
    assert xray_dicom_bytes(radiograph.copy(), 0.2, PATIENT, STUDY, monochrome1=True) == first
    other = radiograph.copy()
    other[0, 0] = 1.0 - other[0, 0]
    other_ds = pydicom.dcmread(io.BytesIO(xray_dicom_bytes(other, 0.2, PATIENT, STUDY, monochrome1=True)))
    first_ds = pydicom.dcmread(io.BytesIO(first))
    assert other_ds.SOPInstanceUID != first_ds.SOPInstanceUID  # another image, another instance
    assert other_ds.SeriesInstanceUID == first_ds.SeriesInstanceUID


def test_new_uid_is_deterministic_and_valid():
    assert new_uid("a", 1) == new_uid("a", 1)
    assert new_uid("a", 1) != new_uid("a", 2) != new_uid("a1")
    assert pydicom.uid.UID(new_uid("a", 1)).is_valid
    with pytest.raises(ValueError):
        new_uid()


# ------------------------------------------------------------------------------------------
# CT series


def test_ct_series_files_carry_the_tags_of_a_real_series(tmp_path):
    hu = hu_phantom()
    paths = write_ct_series(tmp_path / "new" / "ct", hu, (2.5, 0.7, 0.8), PATIENT, STUDY, origin_mm=(-5.0, -6.0, 100.0))
    assert [p.name for p in paths] == [f"IM-000{k}.dcm" for k in range(1, 6)]
    datasets = [pydicom.dcmread(p) for p in paths]
    first = datasets[0]
    assert first.SOPClassUID == pydicom.uid.CTImageStorage
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert len({str(ds[key].value) for ds in datasets}) == 1
    assert first.StudyInstanceUID == STUDY.study_uid
    assert len({ds.SOPInstanceUID for ds in datasets}) == 5
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in datasets)
    assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3, 4, 5]
    for k, ds in enumerate(datasets):
        assert [float(v) for v in ds.ImagePositionPatient] == [-5.0, -6.0, 100.0 + 2.5 * k]
        assert float(ds.SliceLocation) == 100.0 + 2.5 * k
    assert [float(v) for v in first.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    assert [float(v) for v in first.PixelSpacing] == [0.7, 0.8]
    assert float(first.SliceThickness) == 2.5
    assert (first.BitsAllocated, first.BitsStored, first.HighBit, first.PixelRepresentation) == (16, 12, 11, 0)
    assert (float(first.RescaleSlope), float(first.RescaleIntercept)) == (1.0, -1024.0)
    assert (float(first.WindowCenter), float(first.WindowWidth)) == CT_LUNG_WINDOW
    assert float(first.KVP) > 0 and first.ConvolutionKernel
    assert (first.Modality, first.BodyPartExamined, first.SeriesDescription) == ("CT", "CHEST", "CHEST CT")
    assert (first.PatientName, first.PatientID, first.PatientAge) == ("DEMO^PATIENT0001", "MRN-0001", "045Y")
    assert (first.AccessionNumber, first.InstitutionName, first.StudyDate) == (
        STUDY.accession,
        PATIENT.institution,
        "20200311",
    )
    for k, ds in enumerate(datasets):
        np.testing.assert_array_equal(pixel_array(ds) * 1.0 - 1024.0, hu[k])


def test_ct_slice_bytes_are_what_pydicom_would_write(tmp_path):
    """The spliced encoding is well formed: pydicom re-encodes each file to the same bytes."""
    paths = write_ct_series(tmp_path, hu_phantom(3), (1.25, 0.5, 0.5), PATIENT, STUDY, description="Ärzte CT")
    for path in paths:
        data = path.read_bytes()
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, pydicom.dcmread(io.BytesIO(data)), enforce_file_format=True)
        assert buffer.getvalue() == data
    assert pydicom.dcmread(paths[0]).SeriesDescription == "Ärzte CT"


def test_ct_stored_values_rescale_clip_and_bit_depth(tmp_path):
    hu = np.array([[[-3000.0, -1000.0], [0.0, 3500.25]]] * 2)
    paths = write_ct_series(tmp_path / "a", hu, (1.0, 1.0, 1.0), PATIENT, STUDY, rescale_slope=0.5)
    ds = pydicom.dcmread(paths[0])
    assert ds.BitsStored == 16  # (3500.25 + 1024) / 0.5 does not fit in 12 bits
    values = pixel_array(ds) * 0.5 - 1024.0
    np.testing.assert_allclose(values, [[-1024.0, -1000.0], [0.0, 3500.0]], atol=0.25)  # -3000 clipped


def test_ct_series_is_deterministic(tmp_path):
    hu = hu_phantom()
    first = write_ct_series(tmp_path / "a", hu, (2.0, 1.0, 1.0), PATIENT, STUDY)
    second = write_ct_series(tmp_path / "b", hu, (2.0, 1.0, 1.0), PATIENT, STUDY)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    third = write_ct_series(tmp_path / "c", hu, (2.0, 1.0, 1.0), PATIENT, STUDY, description="OTHER")
    assert pydicom.dcmread(third[0]).SeriesInstanceUID != pydicom.dcmread(first[0]).SeriesInstanceUID


@pytest.mark.parametrize(
    ("hu", "spacing", "match"),
    [
        (np.zeros((4, 4)), (1.0, 1.0, 1.0), "3D"),
        (np.zeros((2, 4, 4)), (0.0, 1.0, 1.0), "spacing_mm"),
        (np.zeros((2, 4, 4)), (1.0, 1.0), "spacing_mm"),
        (np.full((2, 4, 4), np.inf), (1.0, 1.0, 1.0), "finite"),
    ],
)
def test_ct_series_rejects_bad_arguments(tmp_path, hu, spacing, match):
    with pytest.raises(ValueError, match=match):
        write_ct_series(tmp_path, hu, spacing, PATIENT, STUDY)
    assert list(tmp_path.iterdir()) == []  # nothing written
