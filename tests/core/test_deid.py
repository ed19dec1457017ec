"""Tests of core.library.deid: pseudonyms, UID remapping, date shifts, DICOM de-identification.

The main check searches the raw output bytes for every original identifier (in UTF-8 and
Latin-1), on files written by core.demo.dicom_writer and on real sample files from pydicom
(``real_artefact``), which carry private tags, sequences and vendor quirks.
"""

from __future__ import annotations

import datetime
import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from core.demo.dicom_writer import DicomPatient, DicomStudy, new_uid, write_ct_series, xray_dicom_bytes
from core.errors import InvalidInputError, UnsupportedDicomError
from core.io.ct_series import read_ct_series
from core.library.deid import DEIDENTIFICATION_METHOD, Deidentifier

SECRET = bytes(range(100, 132))
PATIENT = DicomPatient(
    name="MÜLLER^JÖRG^Anton",
    patient_id="MRN-445566",
    birth_date="19470203",
    sex="M",
    age_years=73,
    address="Lindenstraße 12, Würzburg",
    institution="Klinikum Nordstadt",
    institution_address="Am Klinikum 1, Würzburg",
)
STUDY = DicomStudy(
    study_uid=new_uid("deid-study", 1),
    accession="ACC-99812",
    date=datetime.date(2020, 3, 11),
    description="CHEST PA",
    referring_physician="HOUSE^GREGORY",
)
LATER_STUDY = DicomStudy(new_uid("deid-study", 2), "ACC-99977", datetime.date(2020, 3, 21), "CHEST AP")
PATIENT_TEXT = (
    "MÜLLER",
    "JÖRG",
    "Anton",
    "MRN-445566",
    "19470203",
    "Lindenstraße",
    "Würzburg",
    "Klinikum",
    "Nordstadt",
    "ACC-99812",
    "ACC-99977",
    "HOUSE",
    "GREGORY",
    "20200311",
    "20200321",
)
REAL_SAMPLES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "rtplan.dcm", "emri_small_big_endian.dcm"]
REAL_SERIES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "ct-series-lung-dx-a0002"
PSEUDONYM = re.compile(r"^P-[0-9A-HJKMNP-TV-Z]{8}$")


@pytest.fixture
def deid() -> Deidentifier:
    return Deidentifier(SECRET)


@pytest.fixture
def radiograph() -> np.ndarray:
    return np.random.default_rng(5).uniform(0, 1, (32, 24))


def byte_forms(text: str) -> set[bytes]:
    forms = {text.encode("utf-8")}
    try:
        forms.add(text.encode("latin-1"))
    except UnicodeEncodeError:
        pass
    return forms


def assert_absent(data: bytes, texts: list[str] | tuple[str, ...]) -> None:
    for text in texts:
        for form in byte_forms(text):
            assert form not in data, f"{text!r} survived de-identification"


def instance_uids(ds: Dataset) -> set[str]:
    """Every UID of ``ds`` (and its file meta) that names an instance, not a kind of thing."""
    found: set[str] = set()

    def collect(dataset: Dataset, elem: pydicom.DataElement) -> None:
        if elem.VR != "UI" or elem.keyword.endswith("ClassUID") or elem.keyword == "TransferSyntaxUID":
            return
        values = elem.value if isinstance(elem.value, list | pydicom.multival.MultiValue) else [elem.value]
        found.update(str(v) for v in values if v and not str(v).startswith("1.2.840.10008."))

    ds.walk(collect)
    if "MediaStorageSOPInstanceUID" in getattr(ds, "file_meta", {}):
        found.add(str(ds.file_meta.MediaStorageSOPInstanceUID))
    return found


def identifying_text(ds: Dataset) -> list[str]:
    """Names, IDs, addresses, institutions and dates of a sample file, as they are stored."""
    texts: list[str] = []

    def collect(dataset: Dataset, elem: pydicom.DataElement) -> None:
        value = str(elem.value or "").strip()
        if elem.VR == "PN":
            texts.extend(part for part in re.split(r"[\^=]", value) if len(part) >= 3 and part != "----")
        elif elem.VR == "DA" and value:
            texts.append(value)
        elif elem.keyword in ("PatientID", "AccessionNumber", "InstitutionName", "StationName", "DeviceSerialNumber"):
            if len(value) >= 4:
                texts.append(value)

    ds.walk(collect)
    kept = str(ds.get("Manufacturer") or "")  # equipment make is kept on purpose
    return [text for text in texts if text not in kept]


# ------------------------------------------------------------------------------------------
# Keyed values


def test_pseudonym_is_keyed_and_deterministic(deid):
    pseudonym = deid.pseudonym("hospital-a", "MRN-445566")
    assert PSEUDONYM.match(pseudonym)
    assert deid.pseudonym("hospital-a", " MRN-445566 ") == pseudonym  # DICOM padding ignored
    assert Deidentifier(bytes(SECRET)).pseudonym("hospital-a", "MRN-445566") == pseudonym
    assert Deidentifier(b"another secret!!").pseudonym("hospital-a", "MRN-445566") != pseudonym
    assert deid.pseudonym("hospital-b", "MRN-445566") != pseudonym
    assert deid.pseudonym("hospital-a", "MRN-445567") != pseudonym
    assert deid.pseudonym("ab", "c") != deid.pseudonym("a", "bc")
    many = {deid.pseudonym("s", str(k)) for k in range(2000)}
    assert len(many) == 2000 and all(PSEUDONYM.match(p) for p in many)
    with pytest.raises(ValueError):
        deid.pseudonym("s", "  ")


def test_uid_remap_is_a_valid_keyed_uid(deid):
    original = "1.3.6.1.4.1.14519.5.2.1.6655.2359.207154000096236603057216610983"
    new = deid.uid(original)
    assert new.startswith("2.25.") and len(new) <= 64 and pydicom.uid.UID(new).is_valid
    assert deid.uid(original) == new
    assert Deidentifier(b"another secret!!").uid(original) != new
    assert deid.uid(original + "1") != new


def test_date_shift_is_keyed_within_a_year_before(deid):
    shifts = [deid.date_shift_days(f"P-{k:08d}") for k in range(500)]
    assert all(-365 <= s <= -1 for s in shifts)
    assert len(set(shifts)) > 200  # spread over the year
    assert deid.date_shift_days("P-00000001") == shifts[1]
    other = Deidentifier(b"another secret!!")
    assert [other.date_shift_days(f"P-{k:08d}") for k in range(500)] != shifts


@pytest.mark.parametrize("secret", [b"", b"short", b"x" * 15])
def test_a_short_secret_is_refused(secret):
    with pytest.raises(ValueError, match="at least 16"):
        Deidentifier(secret)


def test_the_secret_is_not_shown(deid):
    assert repr(deid) == "Deidentifier(secret=<hidden>)"


# ------------------------------------------------------------------------------------------
# Files written by the demo writer


def test_no_identifier_survives_in_a_radiograph(deid, radiograph):
    data = xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY, monochrome1=True)
    original = pydicom.dcmread(io.BytesIO(data))
    pseudonym = deid.pseudonym("demo", PATIENT.patient_id)
    out = deid.deidentify_bytes(data, pseudonym)
    assert_absent(out, [*PATIENT_TEXT, *instance_uids(original)])

    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.PatientName == ds.PatientID == pseudonym
    assert ds.PatientBirthDate == "" and ds.AccessionNumber == "" and ds.ReferringPhysicianName == ""
    for keyword in ("PatientAddress", "InstitutionName", "InstitutionAddress"):
        assert keyword not in ds
    assert (ds.PatientSex, ds.PatientAge) == ("M", "073Y")
    assert ds.StudyDescription == "CHEST PA" and ds.SeriesDescription == "CHEST PA"
    assert ds.PatientIdentityRemoved == "YES"
    assert list(ds.DeidentificationMethod) == list(DEIDENTIFICATION_METHOD)
    assert {item.CodeValue for item in ds.DeidentificationMethodCodeSequence} >= {"113100", "113107", "113108"}
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert ds.SOPClassUID == original.SOPClassUID  # a class, not an instance: kept
    assert ds.PixelData == original.PixelData
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID == deid.uid(original.SOPInstanceUID)
    assert ds.StudyInstanceUID == deid.uid(STUDY.study_uid)
    shift = datetime.timedelta(days=deid.date_shift_days(pseudonym))
    assert ds.StudyDate == ds.ContentDate == (STUDY.date + shift).strftime("%Y%m%d")
    assert ds.StudyTime == original.StudyTime


def test_a_patients_studies_keep_their_intervals_and_links(deid, radiograph):
    pseudonym = deid.pseudonym("demo", PATIENT.patient_id)
    first = [
        deid.deidentify_bytes(xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY, view=v), pseudonym) for v in ("PA", "L")
    ]
    later = deid.deidentify_bytes(xray_dicom_bytes(radiograph, 0.2, PATIENT, LATER_STUDY), pseudonym)
    a, b, c = (pydicom.dcmread(io.BytesIO(data)) for data in [*first, later])
    assert a.StudyInstanceUID == b.StudyInstanceUID != c.StudyInstanceUID  # same study -> same new UID
    assert a.SeriesInstanceUID != b.SeriesInstanceUID
    days = datetime.datetime.strptime(c.StudyDate, "%Y%m%d") - datetime.datetime.strptime(a.StudyDate, "%Y%m%d")
    assert days.days == 10


def test_a_ct_series_stays_one_volume(deid, tmp_path):
    hu = np.random.default_rng(2).integers(-1000, 300, (6, 10, 10)).astype(np.int16)
    paths = write_ct_series(tmp_path, hu, (2.0, 0.8, 0.8), PATIENT, STUDY, description="CHEST CT")
    originals = [pydicom.dcmread(p) for p in paths]
    pseudonym = deid.pseudonym("demo", PATIENT.patient_id)
    outs = [(f"{k}.dcm", deid.deidentify_bytes(p.read_bytes(), pseudonym)) for k, p in enumerate(paths)]
    every_uid = set().union(*(instance_uids(ds) for ds in originals))
    for _, out in outs:
        assert_absent(out, [*PATIENT_TEXT, *every_uid])
    datasets = [pydicom.dcmread(io.BytesIO(out)) for _, out in outs]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.FrameOfReferenceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 6
    assert datasets[0].SeriesInstanceUID == deid.uid(originals[0].SeriesInstanceUID)
    volume = read_ct_series(outs)
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.spacing_mm == (2.0, 0.8, 0.8)
    assert volume.description == "CHEST CT"
    assert volume.series_uid == datasets[0].SeriesInstanceUID


def test_deidentify_bytes_is_deterministic(deid, radiograph):
    data = xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY)
    assert deid.deidentify_bytes(data, "P-AAAAAAAA") == deid.deidentify_bytes(data, "P-AAAAAAAA")


# ------------------------------------------------------------------------------------------
# Real sample files


@pytest.mark.parametrize("name", REAL_SAMPLES, ids=[f"real_artefact-{n}" for n in REAL_SAMPLES])
def test_no_identifier_survives_in_real_files_real_artefact(deid, name):
    data = Path(get_testdata_file(name)).read_bytes()
    original = pydicom.dcmread(io.BytesIO(data))
    identifiers = identifying_text(original)
    assert identifiers  # the sample really carries identifiers
    pseudonym = deid.pseudonym("samples", str(original.get("PatientID") or name))
    out = deid.deidentify_bytes(data, pseudonym)
    assert_absent(out, [*identifiers, *instance_uids(original)])

    ds = pydicom.dcmread(io.BytesIO(out))
    assert ds.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    if "PixelData" in original:
        assert ds.PixelData == original.PixelData  # compressed fragments included
    assert not any(elem.tag.is_private for elem in ds.iterall())
    for elem in ds.iterall():
        if elem.VR == "PN":
            assert elem.value in ("", pseudonym), elem.keyword
    shift = datetime.timedelta(days=deid.date_shift_days(pseudonym))
    expected = datetime.datetime.strptime(original.StudyDate, "%Y%m%d") + shift
    assert ds.StudyDate == expected.strftime("%Y%m%d")


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="the shared real CT sample is not available")
def test_a_real_ct_series_is_deidentified_and_still_one_volume_real_artefact(deid):
    paths = sorted(REAL_SERIES.glob("*.dcm"))[:3]
    originals = [pydicom.dcmread(p) for p in paths]
    pseudonym = deid.pseudonym("tcia", "Lung_Dx-A0002")
    outs = [(f"{k}", deid.deidentify_bytes(p.read_bytes(), pseudonym)) for k, p in enumerate(paths)]
    for original, (_, out) in zip(originals, outs, strict=True):
        assert_absent(out, ["Lung_Dx-A0002", "Lung-PET-CT-Dx", "POSDA", "20070425", *instance_uids(original)])
        assert b"SIEMENS CSA HEADER" not in out  # private elements
    volume = read_ct_series(outs)
    assert volume.hu.shape == (3, 512, 512) and volume.spacing_mm[0] == 8.0
    expected = read_ct_series([(p.name, p.read_bytes()) for p in paths])
    np.testing.assert_array_equal(volume.hu, expected.hu)


@pytest.mark.parametrize("name", ["CT_small.dcm"], ids=["real_artefact-CT_small.dcm"])
def test_sequences_are_cleaned_and_references_remapped_real_artefact(deid, name):
    original = pydicom.dcmread(get_testdata_file(name))
    original.ReferencedImageSequence = [Dataset()]
    item = original.ReferencedImageSequence[0]
    item.ReferencedSOPClassUID = pydicom.uid.CTImageStorage
    item.ReferencedSOPInstanceUID = original.SOPInstanceUID
    item.ContentDate = "20040119"
    item.PerformingPhysicianName = "NESTED^NAME"
    item.add_new(0x00431010, "LO", "PRIVATE NESTED")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, original, enforce_file_format=True)

    out = deid.deidentify_bytes(buffer.getvalue(), "P-TEST0001")
    assert_absent(out, ["NESTED", "PRIVATE NESTED", original.SOPInstanceUID])
    ds = pydicom.dcmread(io.BytesIO(out))
    (item,) = ds.ReferencedImageSequence
    assert item.ReferencedSOPClassUID == pydicom.uid.CTImageStorage
    assert item.ReferencedSOPInstanceUID == ds.SOPInstanceUID  # the reference still resolves
    assert item.ContentDate == ds.StudyDate
    assert "PerformingPhysicianName" not in item and "OtherPatientIDsSequence" not in ds


# ------------------------------------------------------------------------------------------
# Rules on hand-made datasets


def dataset_with(**tags: object) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    ds.SOPInstanceUID = new_uid("hand-made")
    ds.PatientName = "DOE^JANE"
    ds.PatientID = "PID-12345"
    ds.PatientBirthDate = "19470203"
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    ("age", "expected"), [("045Y", "045Y"), ("089Y", "089Y"), ("090Y", "090Y"), ("104Y", "090Y"), ("006M", "006M")]
)
def test_ages_of_90_and_over_are_capped(deid, age, expected):
    assert deid.deidentify(dataset_with(PatientAge=age), "P-1").PatientAge == expected


def test_malformed_values_are_removed(deid):
    with pytest.warns(UserWarning, match="Invalid value"):
        ds = dataset_with(StudyDate="2020-03-11", SeriesDate="20200230", PatientAge="45 years")
    ds.AcquisitionDateTime = "2020"  # a partial date-time cannot be shifted by days
    deid.deidentify(ds, "P-1")
    for keyword in ("StudyDate", "SeriesDate", "PatientAge", "AcquisitionDateTime"):
        assert keyword not in ds


def test_date_times_keep_their_time_and_offset(deid):
    ds = deid.deidentify(dataset_with(AcquisitionDateTime="20200311093015.123+0100"), "P-1")
    shifted = datetime.date(2020, 3, 11) + datetime.timedelta(days=deid.date_shift_days("P-1"))
    assert ds.AcquisitionDateTime == shifted.strftime("%Y%m%d") + "093015.123+0100"


@pytest.mark.parametrize(
    ("description", "kept"),
    [
        ("CHEST PA", True),
        ("Thorax^AThoraxRoutine (Adult)", True),
        ("CT chest for Doe", False),  # the patient's family name
        ("Chest PID-12345", False),  # the patient ID
        ("Chest 19470203", False),  # a long number
    ],
)
def test_descriptors_are_kept_only_when_they_name_an_examination(deid, description, kept):
    ds = deid.deidentify(dataset_with(StudyDescription=description, SeriesDescription=description), "P-1")
    assert ("StudyDescription" in ds) is kept and ("SeriesDescription" in ds) is kept


def test_free_text_people_devices_and_overlays_are_removed(deid):
    ds = dataset_with(
        ImageComments="Patient Jane Doe, bed 4",
        AdditionalPatientHistory="smoker",
        OperatorsName="TECH^TOM",
        PerformingPhysicianName="DR^WHO",
        StationName="CT-ROOM-2",
        DeviceSerialNumber="SN-0042",
        OtherPatientIDs="OLD-999",
        EthnicGroup="X",
        RequestedProcedureDescription="for Jane",
        PatientTelephoneNumbers="555-1234",
        IssuerOfPatientID="HOSPITAL A",
        PatientWeight=70,
        PatientSize=1.7,
        Manufacturer="ACME",
    )
    ds.add_new(0x60003000, "OW", b"\x00\x01" * 8)  # overlay bits
    ds.add_new(0x00091001, "LO", "private")
    deid.deidentify(ds, "P-1")
    kept = {elem.keyword for elem in ds}
    assert {"PatientWeight", "PatientSize", "Manufacturer", "SOPClassUID"} <= kept
    for keyword in (
        "ImageComments",
        "AdditionalPatientHistory",
        "OperatorsName",
        "PerformingPhysicianName",
        "StationName",
        "DeviceSerialNumber",
        "OtherPatientIDs",
        "EthnicGroup",
        "RequestedProcedureDescription",
        "PatientTelephoneNumbers",
        "IssuerOfPatientID",
        "OverlayData",
    ):
        assert keyword not in kept
    assert not any(elem.tag.is_private for elem in ds)


def test_labels_identifiers_gps_and_the_rest_of_the_profile_table_are_removed(deid):
    """Attributes of PS3.15 Table E.1-1 that no rule by VR or keyword part used to reach (found
    by tests/privacy, which fills the whole table): they were kept with their values."""
    ds = dataset_with(
        ContrastBolusAgent="IOPAMIDOL FOR JANE DOE",
        TreatmentMachineName="LINAC-ST-BRIGID",
        ContainerIdentifier="BOX-0042",
        AcquisitionFieldOfViewLabel="DOE FOV",
        SourceSerialNumber="SRC-77",
        SelectorLOValue="DOE",
        SmokingStatus="YES",
        GPSLatitude="53.3498",
        MakerNote=b"camera owner Jane",
        ManufacturerDeviceClassUID="1.2.3.4.5.6.7",
        Manufacturer="ACME",
        ImageLaterality="U",
    )
    deid.deidentify(ds, "P-1")
    kept = {elem.keyword for elem in ds}
    assert {"Manufacturer", "ImageLaterality", "ManufacturerDeviceClassUID"} <= kept
    for keyword in (
        "ContrastBolusAgent",
        "TreatmentMachineName",
        "ContainerIdentifier",
        "AcquisitionFieldOfViewLabel",
        "SourceSerialNumber",
        "SelectorLOValue",
        "SmokingStatus",
        "GPSLatitude",
        "MakerNote",
    ):
        assert keyword not in kept, keyword
    # It names one device, so it is remapped like an instance UID, not kept like a SOP class.
    assert ds.ManufacturerDeviceClassUID == deid.uid("1.2.3.4.5.6.7")


def test_the_preamble_is_zeroed(deid, radiograph):
    data = bytearray(xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY))
    data[:16] = b"DOE^JANE PID-123"  # a preamble is free for applications to fill
    out = deid.deidentify_bytes(bytes(data), "P-1")
    assert out[:132] == bytes(128) + b"DICM"


def test_a_bare_dataset_is_accepted_and_keeps_its_encoding(deid):
    ds = dataset_with(Modality="OT")
    ds.set_pixel_data(np.arange(16, dtype=np.uint8).reshape(4, 4), "MONOCHROME2", 8)
    del ds.file_meta
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, implicit_vr=True, little_endian=True)  # no preamble, no file meta
    out = deid.deidentify_bytes(buffer.getvalue(), "P-1")
    assert_absent(out, ["DOE", "PID-12345", "19470203"])
    read = pydicom.dcmread(io.BytesIO(out))
    assert read.file_meta.TransferSyntaxUID == pydicom.uid.ImplicitVRLittleEndian
    assert read.PixelData == ds.PixelData


# ------------------------------------------------------------------------------------------
# Bad input


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (np.random.default_rng(0).bytes(4096), "not a DICOM file"),
        (png_bytes(), "not a DICOM file"),
        pytest.param(
            b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100" + b"\xff" * 64,  # starts like a bare dataset
            "not a DICOM file",
            marks=pytest.mark.filterwarnings("ignore:End of file reached"),
        ),
    ],
    ids=["empty", "random", "png", "fake-bare-dataset"],
)
def test_input_that_is_not_dicom_is_refused(deid, data, match):
    with pytest.raises(InvalidInputError, match=match) as caught:
        deid.deidentify_bytes(data, "P-1")
    assert_absent(str(caught.value).encode(), PATIENT_TEXT)


def test_a_truncated_or_index_file_is_refused_without_identifiers(deid, radiograph):
    data = xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY)
    for cut in (data[: data.index(PATIENT.patient_id.encode()) + 40], data[:-10]):
        with pytest.raises(UnsupportedDicomError, match="incomplete") as caught:
            deid.deidentify_bytes(cut, "P-1")
        assert_absent(str(caught.value).encode(), PATIENT_TEXT)

    dicomdir = Path(get_testdata_file("DICOMDIR")).read_bytes()
    with pytest.raises(UnsupportedDicomError, match="DICOMDIR") as caught:
        deid.deidentify_bytes(dicomdir, "P-1")
    assert "Doe" not in str(caught.value) and "77654033" not in str(caught.value)


@pytest.mark.parametrize("pseudonym", ["", "DOE^JANE", "P 1", "x" * 65])
def test_a_malformed_pseudonym_is_a_programming_error(deid, radiograph, pseudonym):
    with pytest.raises(ValueError, match="pseudonym"):
        deid.deidentify_bytes(xray_dicom_bytes(radiograph, 0.2, PATIENT, STUDY), pseudonym)
