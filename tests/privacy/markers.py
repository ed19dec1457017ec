"""A chest X-ray and a CT series in which every attribute of PS3.15 Table E.1-1 holds a unique
marker, built in memory from the demo phantoms (so the images are valid for our models).

What is filled, and with what:

- Text (AE, CS, SH, LO, ST, LT, UT, UC, PN, UR): a marker ``MKR`` + a letter for the file
  (``X`` the X-ray, ``C`` the CT series) + 4 digits + ``Q``, e.g. ``MKRX0042Q``: nine
  characters, all markers the same length (none is a prefix of another), a pattern that no
  output of ours writes by chance (:func:`tests.privacy.scan.find_markers` is run on ordinary
  outputs to check it).
- Dates (DA) and the date part of date-times (DT): a date of its own year, two years apart
  from the next (``16010715``, ``16030715``, ...). Our de-identifier shifts dates back by 1 to
  365 days, so a shifted date never equals another attribute's marker.
- UIDs (UI): ``1.2.826.0.1.3680043.10.999.`` + 4 digits (the SOP instance UID differs per slice).
- Numbers (DS, IS): ``97`` + 4 digits (+ ``.25`` for DS).
- Bytes (OB, UN): the marker's ASCII bytes.
- Sequences (SQ): one item holding identifying attributes of the table, each with its own
  marker: a person name, an institution name, a patient ID, a referenced SOP instance UID and an
  observation date-time.
- Private elements (a private creator that is itself a marker, text and bytes, a private
  sequence whose item holds private and standard identifying elements, and a private block
  nested in a standard sequence's item); an overlay (group 6000) with a description, a label,
  comments and a bitmap holding a marker; curve data (group 5000); ``BurnedInAnnotation`` =
  ``YES``; file meta source / sending / receiving AE titles and private information; a 128-byte
  preamble beginning with a marker.
- The file names: ``<patient name marker>_<patient id marker>.dcm`` (and ``..._001.dcm`` per CT
  slice), as clinicians' exports are often named after the patient.

Kept by design, so given ordinary values and no marker (:mod:`tests.privacy.profile`): patient
sex, age, size and weight (Retain Patient Characteristics) and every time of day (TM; Retain
Longitudinal Temporal Information shifts dates by whole days). Two attributes cannot carry a
searchable marker and get ordinary values: the US attributes (two binary bytes) and the AS one
other than the patient's age (four characters, ``047Y``).

The descriptors our Clean Descriptors option may keep (Study Description, Series Description,
Protocol Name) hold the patient name's marker and a marker of their own: they must be removed.
That an ordinary descriptor ("CHEST PA") survives is checked separately (:func:`with_values`).
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
import pydicom
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from core.demo.ct_phantom import generate_ct
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid, xray_dicom_bytes
from core.demo.xray_phantom import generate_xray
from tests.privacy.profile import CLEANED_DESCRIPTORS, NOT_IN_FILES, ProfileAttribute, attributes

#: What every text marker starts with.
MARKER_PREFIX = "MKR"
#: The root of every marker UID.
UID_ROOT = "1.2.826.0.1.3680043.10.999."
#: The value of every time of day (kept by design) and of a date-time's time part.
ORDINARY_TIME = "093000"
#: X-ray size (px) and CT shape (z, y, x): small, but what the shipped models read.
XRAY_SIZE = 256
CT_SHAPE = (16, 48, 48)
#: Where the nested identifying attributes of each sequence item go, and their VRs.
NESTED = ("PersonName", "InstitutionName", "PatientID", "ReferencedSOPInstanceUID", "ObservationDateTime")
_PRIVATE_GROUP = 0x0009
# The instance UID is one marker for the file meta's and the dataset's, set by the caller.
_SET_BY_CALLER = frozenset({"MediaStorageSOPInstanceUID", "SOPInstanceUID"})


@dataclass
class MarkerBook:
    """Unique marker values and where each was put (``marker -> "X-ray: AccessionNumber"``)."""

    where: dict[str, str] = field(default_factory=dict)
    _counts: dict[str, int] = field(default_factory=dict)

    def _next(self, kind: str) -> int:
        self._counts[kind] = self._counts.get(kind, 0) + 1
        return self._counts[kind]

    def _put(self, value: str, where: str) -> str:
        if value in self.where:
            raise ValueError(f"marker {value} made twice")
        self.where[value] = where
        return value

    def text(self, letter: str, where: str) -> str:
        return self._put(f"{MARKER_PREFIX}{letter}{self._next('text' + letter):04d}Q", where)

    def date(self, where: str) -> str:
        return self._put(f"{1599 + 2 * self._next('date'):04d}0715", where)

    def uid(self, where: str) -> str:
        return self._put(f"{UID_ROOT}{1000 + self._next('uid')}", where)

    def number(self, where: str, decimal: bool) -> str:
        n = self._next("number")
        return self._put(f"97{n:04d}.25" if decimal else f"97{n:04d}", where)


@dataclass(frozen=True)
class MarkedData:
    """The marked uploads and every marker in them."""

    xray_name: str
    xray: bytes
    ct_files: tuple[tuple[str, bytes], ...]
    ct_folder_name: str  # the CT series' folder (named after the patient, too)
    markers: dict[str, str]  # marker -> where it was put
    patient_name: tuple[str, str]  # X-ray's and CT's patient name markers
    patient_id: tuple[str, str]

    @property
    def text_markers(self) -> dict[str, str]:
        return {m: w for m, w in self.markers.items() if m.startswith(MARKER_PREFIX)}


def _value(book: MarkerBook, letter: str, attr: ProfileAttribute, where: str) -> object:
    """The marker (or, for what cannot hold one, an ordinary value) for ``attr``."""
    vr = attr.vr
    if attr.keyword == "PatientSex":
        return "F"
    if attr.keyword == "PatientSize":
        return "1.62"
    if attr.keyword == "PatientWeight":
        return "61"
    if vr == "AS":
        return "047Y"
    if vr == "TM":
        return ORDINARY_TIME
    if vr == "US":
        return 1
    if vr == "DA":
        return book.date(where)
    if vr == "DT":
        return book.date(where) + ORDINARY_TIME
    if vr == "UI":
        return book.uid(where)
    if vr in ("DS", "IS"):
        return book.number(where, decimal=vr == "DS")
    if vr in ("OB", "UN", "OW"):
        return book.text(letter, where).encode("ascii") + b" "
    if vr == "UR":
        return f"https://{book.text(letter, where).lower()}.example/"
    return book.text(letter, where)


def _sequence_item(book: MarkerBook, letter: str, where: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = pydicom.uid.CTImageStorage
    for keyword in NESTED:
        vr = pydicom.datadict.dictionary_VR(keyword)
        attr = ProfileAttribute(keyword, int(Tag(keyword)), vr, "nested")
        setattr(item, keyword, _value(book, letter, attr, f"{where} > {keyword}"))
    return item


def _private(ds: Dataset, book: MarkerBook, letter: str, where: str, group: int = _PRIVATE_GROUP) -> None:
    block = ds.private_block(group, book.text(letter, f"{where} private creator"), create=True)
    block.add_new(0x10, "LO", book.text(letter, f"{where} private LO"))
    block.add_new(0x11, "SH", book.text(letter, f"{where} private SH"))
    block.add_new(0x12, "OB", book.text(letter, f"{where} private OB").encode("ascii") + b" ")


def _mark(ds: Dataset, book: MarkerBook, letter: str, label: str, name: str, pid: str) -> None:
    """Fill every profile attribute of ``ds`` (and its file meta) with a marker."""
    for attr in attributes():
        if attr.keyword in NOT_IN_FILES or attr.keyword in _SET_BY_CALLER:
            continue
        where = f"{label}: {attr.keyword}"
        if attr.keyword == "PatientName":
            value: object = name
        elif attr.keyword == "PatientID":
            value = pid
        elif attr.keyword in CLEANED_DESCRIPTORS:
            value = f"CHEST {name} {book.text(letter, where)}"
        elif attr.vr == "SQ":
            item = _sequence_item(book, letter, where)
            if attr.keyword == "ReferencedImageSequence":
                _private(item, book, letter, f"{where} item")
            value = [item]
        else:
            value = _value(book, letter, attr, where)
        target = ds.file_meta if attr.in_file_meta else ds
        target.add_new(attr.tag, attr.vr, value)

    meta = ds.file_meta
    meta.SourceApplicationEntityTitle = book.text(letter, f"{label}: file meta SourceApplicationEntityTitle")
    meta.SendingApplicationEntityTitle = book.text(letter, f"{label}: file meta SendingApplicationEntityTitle")
    meta.ReceivingApplicationEntityTitle = book.text(letter, f"{label}: file meta ReceivingApplicationEntityTitle")
    meta.PrivateInformationCreatorUID = book.uid(f"{label}: file meta PrivateInformationCreatorUID")
    meta.PrivateInformation = book.text(letter, f"{label}: file meta PrivateInformation").encode("ascii") + b" "
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID

    _private(ds, book, letter, label)
    private_item = Dataset()
    private_item.PatientName = book.text(letter, f"{label}: private sequence > PatientName")
    _private(private_item, book, letter, f"{label}: private sequence item", group=0x0011)
    ds.private_block(_PRIVATE_GROUP, book.text(letter, f"{label}: private creator 2"), create=True).add_new(
        0x10, "SQ", [private_item]
    )

    ds.BurnedInAnnotation = "YES"
    rows, columns = 8, 16  # one bit per pixel: 16 bytes, the first ten a marker
    bitmap = book.text(letter, f"{label}: OverlayData").encode("ascii") + b" "
    ds.add_new(0x60000010, "US", rows)
    ds.add_new(0x60000011, "US", columns)
    ds.add_new(0x60000022, "LO", book.text(letter, f"{label}: OverlayDescription"))
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60001500, "LO", book.text(letter, f"{label}: OverlayLabel"))
    ds.add_new(0x60003000, "OW", bitmap.ljust(rows * columns // 8, b"\0"))
    ds.add_new(0x60004000, "LT", book.text(letter, f"{label}: OverlayComments"))
    ds.add_new(0x50003000, "OB", book.text(letter, f"{label}: CurveData").encode("ascii") + b" ")
    ds.preamble = book.text(letter, f"{label}: preamble").encode("ascii").ljust(128, b"\0")


def _write(ds: Dataset) -> bytes:
    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _ordinary_patient() -> tuple[DicomPatient, DicomStudy]:
    return (
        DicomPatient("ORDINARY^NAME", "ORDINARY", "", "F", 47),
        DicomStudy(new_uid("privacy-markers"), "ORDINARY", datetime.date(2020, 4, 2)),
    )


@functools.lru_cache(maxsize=1)
def marked_data() -> MarkedData:
    """The marked X-ray and CT series (built once per process, about 1 s)."""
    book = MarkerBook()
    patient, study = _ordinary_patient()
    with config.disable_value_validation():
        x_name = book.text("X", "X-ray: PatientName (and the file name)")
        x_id = book.text("X", "X-ray: PatientID (and the file name)")
        phantom = generate_xray("COVID-19", 0.8, seed=7, size=XRAY_SIZE)
        ds = pydicom.dcmread(BytesIO(xray_dicom_bytes(phantom.pixels, 0.3 * 1024 / XRAY_SIZE, patient, study)))
        ds.file_meta.MediaStorageSOPInstanceUID = book.uid("X-ray: SOPInstanceUID / MediaStorageSOPInstanceUID")
        _mark(ds, book, "X", "X-ray", x_name, x_id)
        xray = _write(ds)

        c_name = book.text("C", "CT: PatientName (and the file names)")
        c_id = book.text("C", "CT: PatientID (and the file names)")
        ct = generate_ct("COVID-19", 0.7, seed=3, shape=CT_SHAPE)
        template: Dataset | None = None
        slices = []
        for i, (_, data) in enumerate(ct_series_files(ct.hu, ct.spacing_mm, patient, study)):
            ds = pydicom.dcmread(BytesIO(data))
            uid = book.uid(f"CT slice {i + 1}: SOPInstanceUID / MediaStorageSOPInstanceUID")
            if template is None:
                ds.file_meta.MediaStorageSOPInstanceUID = uid
                _mark(ds, book, "C", "CT", c_name, c_id)
                template = ds
            else:  # the same markers as slice 1, but this slice's position, pixels and UID
                marked = template.copy()
                for keyword in ("InstanceNumber", "ImagePositionPatient", "SliceLocation", "PixelData"):
                    setattr(marked, keyword, getattr(ds, keyword))
                marked.file_meta = template.file_meta.copy()
                marked.file_meta.MediaStorageSOPInstanceUID = uid
                marked.SOPInstanceUID = uid
                marked.preamble = template.preamble
                ds = marked
            slices.append((f"{c_name}_{c_id}_{i + 1:03d}.dcm", _write(ds)))
    return MarkedData(
        xray_name=f"{x_name}_{x_id}.dcm",
        xray=xray,
        ct_files=tuple(slices),
        ct_folder_name=f"{c_name}_{c_id}",
        markers=dict(book.where),
        patient_name=(x_name, c_name),
        patient_id=(x_id, c_id),
    )


def with_values(data: bytes, **values: str) -> bytes:
    """The DICOM file ``data`` with the given keywords set (e.g. ``StudyDescription="CHEST PA"``)."""
    ds = pydicom.dcmread(BytesIO(data))
    with config.disable_value_validation():
        for keyword, value in values.items():
            setattr(ds, keyword, value)
        return _write(ds)


def pixels_of(data: bytes) -> np.ndarray:
    """A DICOM file's pixel array (to check that marking left the image as the phantom drew it)."""
    return pydicom.dcmread(BytesIO(data)).pixel_array


def rolled(data: bytes, columns: int) -> bytes:
    """The DICOM file ``data`` with its image moved ``columns`` pixels sideways (wrapping round):
    the same markers in an image of other pixels (another patient's X-ray to the search)."""
    ds = pydicom.dcmread(BytesIO(data))
    with config.disable_value_validation():
        ds.PixelData = np.ascontiguousarray(np.roll(ds.pixel_array, columns, axis=1)).tobytes()
        return _write(ds)
