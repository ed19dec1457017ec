"""Write synthetic studies as real DICOM: single radiographs (DX / CR) and CT series.

Everything written is deterministic: UIDs come from :func:`new_uid` (a hash of given values),
times are fixed, and no clock or random source is read, so a seeded cohort writes bit-identical
files on every run. The files carry realistic identifying tags (name, ID, birth date, address,
institution, accession number, referring physician) so that the de-identification of the case
library can be exercised on them.

Conventions
-----------
- Radiograph pixels: float (H, W) in [0, 1], brighter = denser (the MONOCHROME2 sense).
- CT volumes: (z, y, x) in Hounsfield units; axis 0 runs from inferior (index 0) to superior,
  rows from anterior to posterior, columns from the patient's right to left, i.e.
  Image Orientation (Patient) ``[1, 0, 0, 0, 1, 0]`` with z increasing with the slice index.

A CT series is written from one template per series: the elements shared by all slices are
encoded once with pydicom, and per slice only the instance UID, instance number, position,
slice location and pixel data are encoded and spliced in (about 10x faster than building and
writing a pydicom Dataset per slice, which matters when a cohort of a few hundred series is
written at first launch).
"""

from __future__ import annotations

import datetime
import hashlib
import math
import struct
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag
from pydicom.valuerep import format_number_as_ds

__all__ = [
    "DicomPatient",
    "DicomStudy",
    "new_uid",
    "write_ct_series",
    "xray_dicom_bytes",
]

#: Character set of every file written (UTF-8), so names with accents survive.
CHARACTER_SET: str = "ISO_IR 192"
#: Study, series and content time of every file written (the cohort has dates, not times).
STUDY_TIME: str = "093000"
#: Display window written into CT slices: the lung window (center, width) in HU.
CT_LUNG_WINDOW: tuple[float, float] = (-600.0, 1500.0)

_SOP_CLASSES = {
    "DX": pydicom.uid.DigitalXRayImageStorageForPresentation,
    "CR": pydicom.uid.ComputedRadiographyImageStorage,
}
# View Position defined terms (PS3.3 C.8.11.5), plus the spellings used by public datasets.
_VIEW_POSITIONS = frozenset({"AP", "PA", "LL", "RL", "RLD", "LLD", "RLO", "LLO"})
_VIEW_ALIASES = {"L": "LL", "LATERAL": "LL", "AP SUPINE": "AP", "AP ERECT": "AP"}
# Patient Orientation (row direction, column direction) as a chest film is displayed: frontal
# views with the patient's right on the viewer's left, laterals facing the viewer's left.
_PATIENT_ORIENTATION = {"LL": ("P", "F"), "RL": ("A", "F"), "LLD": ("P", "F"), "RLD": ("A", "F")}
_FRONTAL_ORIENTATION = ("L", "F")
_MANUFACTURER = "Synthetic demo"
_PREAMBLE = bytes(128)
_UINT16_MAX = 65535


@dataclass(frozen=True)
class DicomPatient:
    """Patient-level tags of a written file (identifying on purpose: the demo de-identifies them)."""

    name: str  # DICOM PN, e.g. "DEMO^PATIENT0001"
    patient_id: str  # e.g. "MRN-0001"
    birth_date: str  # "YYYYMMDD", or "" when unknown
    sex: str  # "M", "F" or ""
    age_years: int | None
    address: str = ""  # PatientAddress
    institution: str = ""  # InstitutionName
    institution_address: str = ""  # InstitutionAddress


@dataclass(frozen=True)
class DicomStudy:
    """Study-level tags of a written file."""

    study_uid: str
    accession: str
    date: datetime.date
    description: str = ""
    referring_physician: str = ""  # DICOM PN


def new_uid(*entropy: object) -> str:
    """A DICOM UID derived from the given values only (their ``str``), under pydicom's root.

    The same values always give the same UID, different values (in practice) different UIDs.
    """
    if not entropy:
        raise ValueError("new_uid needs at least one value to derive the UID from")
    return str(pydicom.uid.generate_uid(entropy_srcs=[str(value) for value in entropy]))


# --------------------------------------------------------------------------------------------
# Radiographs


def xray_dicom_bytes(
    pixels: np.ndarray,
    pixel_spacing_mm: float,
    patient: DicomPatient,
    study: DicomStudy,
    *,
    view: str = "PA",
    modality: str = "DX",
    monochrome1: bool = False,
    bits_stored: int = 12,
    series_uid: str | None = None,
    instance_uid: str | None = None,
) -> bytes:
    """Encode one radiograph as a DICOM file (Explicit VR Little Endian) in memory.

    Parameters
    ----------
    pixels
        float (H, W) in [0, 1], brighter = denser; values outside are clipped.
    pixel_spacing_mm
        Square pixel size in mm (written as Pixel Spacing and Imager Pixel Spacing).
    view
        View Position: "PA", "AP", "LL", "RL", ... ("L" / "LATERAL" mean "LL", "AP Supine" "AP").
    modality
        "DX" (Digital X-Ray Image Storage - For Presentation) or "CR" (Computed Radiography).
    monochrome1
        Store inverted values with Photometric Interpretation MONOCHROME1; a correct reader
        shows the same image as for MONOCHROME2.
    bits_stored
        8 to 16: pixels are scaled to 0 .. 2**bits_stored - 1.
    series_uid, instance_uid
        Defaults are derived from the study, modality, view and pixel content.

    Returns
    -------
    bytes
        The whole file: preamble, "DICM", file meta information and dataset.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"pixels must be a non-empty 2D array (H, W), got shape {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise ValueError("pixels must be finite")
    _check_positive("pixel_spacing_mm", pixel_spacing_mm)
    modality = modality.upper()
    if modality not in _SOP_CLASSES:
        raise ValueError(f"modality must be 'DX' or 'CR', got {modality!r}")
    if not 8 <= bits_stored <= 16:
        raise ValueError(f"bits_stored must be between 8 and 16, got {bits_stored}")
    view_position = _view_position(view)

    highest = (1 << bits_stored) - 1
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    stored = np.rint(np.clip(pixels, 0.0, 1.0) * highest).astype(dtype)
    if monochrome1:
        stored = (highest - stored).astype(dtype)
    stored = np.ascontiguousarray(stored, dtype=np.dtype(dtype).newbyteorder("<"))

    if series_uid is None:
        series_uid = new_uid(study.study_uid, "series", modality, view_position)
    if instance_uid is None:
        instance_uid = new_uid(series_uid, "instance", hashlib.sha256(stored.tobytes()).hexdigest())
    sop_class = _SOP_CLASSES[modality]

    ds = _patient_study_dataset(patient, study, sop_class)
    ds.SOPInstanceUID = instance_uid
    ds.file_meta.MediaStorageSOPInstanceUID = instance_uid
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.SeriesDescription = f"CHEST {view_position}"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = view_position
    ds.PatientOrientation = list(_PATIENT_ORIENTATION.get(view_position, _FRONTAL_ORIENTATION))
    ds.ImageLaterality = "U"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    spacing = format_number_as_ds(float(pixel_spacing_mm))
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    if modality == "DX":
        ds.PresentationIntentType = "FOR PRESENTATION"
        ds.DetectorType = "DIRECT"
        ds.PixelIntensityRelationship = "LOG"
        ds.PixelIntensityRelationshipSign = -1 if monochrome1 else 1
        ds.PresentationLUTShape = "INVERSE" if monochrome1 else "IDENTITY"
    ds.RescaleIntercept = "0"
    ds.RescaleSlope = "1"
    ds.RescaleType = "US"
    # A LINEAR window covering stored values 0 .. highest exactly (PS3.3 C.11.2.1.2.1).
    ds.WindowCenter = format_number_as_ds(highest / 2.0 + 0.5)
    ds.WindowWidth = str(highest + 1)
    ds.VOILUTFunction = "LINEAR"
    _set_pixel_module(ds, stored, bits_stored, "MONOCHROME1" if monochrome1 else "MONOCHROME2")

    buffer = BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def _view_position(view: str) -> str:
    key = " ".join(view.upper().split())
    key = _VIEW_ALIASES.get(key, key)
    if key not in _VIEW_POSITIONS:
        raise ValueError(f"view must be one of {sorted(_VIEW_POSITIONS)} (or L, Lateral, AP Supine), got {view!r}")
    return key


# --------------------------------------------------------------------------------------------
# CT series


def write_ct_series(
    folder: str | Path,
    hu: np.ndarray,
    spacing_mm: tuple[float, float, float],
    patient: DicomPatient,
    study: DicomStudy,
    **options: Any,
) -> list[Path]:
    """Write :func:`ct_series_files` into ``folder`` (created if missing; files of the same
    names are overwritten) and return the paths, in slice order (index 0 first)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for name, data in ct_series_files(hu, spacing_mm, patient, study, **options):
        path = folder / name
        path.write_bytes(data)
        paths.append(path)
    return paths


def ct_series_files(
    hu: np.ndarray,
    spacing_mm: tuple[float, float, float],
    patient: DicomPatient,
    study: DicomStudy,
    *,
    series_uid: str | None = None,
    description: str = "CHEST CT",
    origin_mm: tuple[float, float, float] | None = None,
    rescale_intercept: float = -1024.0,
    rescale_slope: float = 1.0,
) -> list[tuple[str, bytes]]:
    """A CT volume as one DICOM file per slice (CT Image Storage, Explicit VR Little Endian),
    in memory: ``(name, contents)`` pairs named ``IM-0001.dcm``, ``IM-0002.dcm``, ...

    Parameters
    ----------
    hu
        (z, y, x) Hounsfield units, integer or float; slice 0 is the most inferior.
    spacing_mm
        (z, y, x) voxel size in mm: slice spacing (also Slice Thickness), row spacing, column
        spacing.
    origin_mm
        Image Position (Patient) of slice 0, i.e. the patient-coordinate (x, y, z) position in mm
        of its first voxel; default: the volume centred on x = y = 0, slice 0 at z = 0.
    rescale_intercept, rescale_slope
        HU = stored * slope + intercept; stored values are unsigned 16-bit, so HU outside
        [intercept, intercept + 65535 * slope] are clipped.

    Returns
    -------
    list[tuple[str, bytes]]
        The files, in slice order (index 0 first).
    """
    hu = np.asarray(hu)
    if hu.ndim != 3 or min(hu.shape) < 1:
        raise ValueError(f"hu must be a non-empty 3D array (z, y, x), got shape {hu.shape}")
    if hu.dtype.kind not in "iuf":
        raise ValueError(f"hu must hold numbers, got dtype {hu.dtype}")
    if hu.dtype.kind == "f" and not np.isfinite(hu).all():
        raise ValueError("hu must be finite")
    if len(spacing_mm) != 3:
        raise ValueError(f"spacing_mm must be (z, y, x), got {spacing_mm!r}")
    for value in spacing_mm:
        _check_positive("spacing_mm", value)
    _check_positive("rescale_slope", rescale_slope)
    if not math.isfinite(rescale_intercept):
        raise ValueError("rescale_intercept must be finite")
    n_slices, rows, columns = (int(n) for n in hu.shape)
    if rows > _UINT16_MAX or columns > _UINT16_MAX:
        raise ValueError(f"slices of {rows} x {columns} pixels are too large for DICOM")
    dz, dy, dx = (float(v) for v in spacing_mm)
    if origin_mm is None:
        origin_mm = (-(columns - 1) * dx / 2.0, -(rows - 1) * dy / 2.0, 0.0)
    if len(origin_mm) != 3 or not all(math.isfinite(float(v)) for v in origin_mm):
        raise ValueError(f"origin_mm must be three finite numbers (x, y, z), got {origin_mm!r}")
    x0, y0, z0 = (float(v) for v in origin_mm)

    stored = _hu_to_stored(hu, rescale_intercept, rescale_slope)
    bits_stored = 12 if int(stored.max()) < (1 << 12) else 16
    if series_uid is None:
        series_uid = new_uid(study.study_uid, "ct-series", description)

    ds = _patient_study_dataset(patient, study, pydicom.uid.CTImageStorage)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 1
    ds.SeriesDescription = description
    ds.BodyPartExamined = "CHEST"
    ds.PatientPosition = "HFS"
    ds.FrameOfReferenceUID = new_uid(series_uid, "frame-of-reference")
    ds.PositionReferenceIndicator = ""
    ds.AcquisitionNumber = 1
    ds.KVP = "120"
    ds.ConvolutionKernel = "LUNG"
    ds.SliceThickness = format_number_as_ds(dz)
    ds.SpacingBetweenSlices = format_number_as_ds(dz)
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [format_number_as_ds(dy), format_number_as_ds(dx)]
    ds.RescaleIntercept = format_number_as_ds(float(rescale_intercept))
    ds.RescaleSlope = format_number_as_ds(float(rescale_slope))
    ds.RescaleType = "HU"
    ds.WindowCenter = format_number_as_ds(CT_LUNG_WINDOW[0])
    ds.WindowWidth = format_number_as_ds(CT_LUNG_WINDOW[1])
    ds.WindowCenterWidthExplanation = "LUNG"
    _set_pixel_module(ds, stored[0], bits_stored, "MONOCHROME2")
    encoder = _SliceEncoder(ds)

    digits = max(4, len(str(n_slices)))
    files: list[tuple[str, bytes]] = []
    for index in range(n_slices):
        z = z0 + index * dz
        data = encoder.encode(
            instance_uid=new_uid(series_uid, "slice", index),
            instance_number=index + 1,
            position=(x0, y0, z),
            pixel_data=stored[index].tobytes(),
        )
        files.append((f"IM-{index + 1:0{digits}d}.dcm", data))
    return files


def _hu_to_stored(hu: np.ndarray, intercept: float, slope: float) -> np.ndarray:
    """(z, y, x) HU -> little-endian uint16 stored values, rounded and clipped."""
    values = (hu.astype(np.float64) - intercept) / slope if slope != 1.0 else hu.astype(np.float64) - intercept
    np.rint(values, out=values)
    np.clip(values, 0, _UINT16_MAX, out=values)
    return values.astype("<u2")


class _SliceEncoder:
    """The bytes of one series' slices from a template encoded once.

    The template's elements are encoded with pydicom into runs that lie between the per-slice
    elements (in tag order, as DICOM requires); :meth:`encode` encodes only the per-slice
    elements (short strings and the pixel data, Explicit VR Little Endian) and joins the runs.
    The result is byte for byte what ``pydicom.dcmwrite`` writes for the same dataset.
    """

    _INSTANCE_UID = 0x00080018
    _INSTANCE_NUMBER = 0x00200013
    _POSITION = 0x00200032
    _SLICE_LOCATION = 0x00201041
    _PIXEL_DATA = 0x7FE00010
    _PER_SLICE = (_INSTANCE_UID, _INSTANCE_NUMBER, _POSITION, _SLICE_LOCATION, _PIXEL_DATA)

    def __init__(self, template: Dataset) -> None:
        template = template.copy()
        for tag in self._PER_SLICE:
            if tag in template:
                del template[tag]
        encoding = template.get("SpecificCharacterSet", "ISO_IR 6")
        bounds = (0, *self._PER_SLICE, 0x100000000)
        self._runs = [
            self._encode_run(template[Tag(low) : Tag(high)] if high < 0x100000000 else template[Tag(low) :], encoding)
            for low, high in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        meta = template.file_meta
        self._meta_head = self._encode_run(meta[Tag(0x00020001) : Tag(0x00020003)], encoding)
        self._meta_tail = self._encode_run(meta[Tag(0x00020004) :], encoding)

    @staticmethod
    def _encode_run(dataset: Dataset, encoding: str | list[str]) -> bytes:
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, False
        write_dataset(buffer, dataset, parent_encoding=encoding)
        return buffer.getvalue()

    def encode(
        self, *, instance_uid: str, instance_number: int, position: tuple[float, float, float], pixel_data: bytes
    ) -> bytes:
        uid = _element(0x00020003, b"UI", instance_uid.encode("ascii"))
        meta = self._meta_head + uid + self._meta_tail
        group_length = struct.pack("<HH2sHI", 0x0002, 0x0000, b"UL", 4, len(meta))
        position_text = "\\".join(format_number_as_ds(v) for v in position)
        runs = self._runs
        return b"".join(
            (
                _PREAMBLE,
                b"DICM",
                group_length,
                meta,
                runs[0],
                _element(self._INSTANCE_UID, b"UI", instance_uid.encode("ascii")),
                runs[1],
                _element(self._INSTANCE_NUMBER, b"IS", str(instance_number).encode("ascii")),
                runs[2],
                _element(self._POSITION, b"DS", position_text.encode("ascii")),
                runs[3],
                _element(self._SLICE_LOCATION, b"DS", format_number_as_ds(position[2]).encode("ascii")),
                runs[4],
                struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, len(pixel_data)),
                pixel_data,
                runs[5],
            )
        )


def _element(tag: int, vr: bytes, value: bytes) -> bytes:
    """One Explicit VR Little Endian element with a 2-byte length (UI padded with NUL, text with
    a space, to an even length)."""
    if len(value) % 2:
        value += b"\x00" if vr == b"UI" else b" "
    return struct.pack("<HH2sH", tag >> 16, tag & 0xFFFF, vr, len(value)) + value


# --------------------------------------------------------------------------------------------
# Shared


def _patient_study_dataset(patient: DicomPatient, study: DicomStudy, sop_class: str) -> Dataset:
    """A dataset with file meta, SOP class, patient, study and equipment tags."""
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = "1.2"  # replaced per instance
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"PYDICOM {pydicom.__version__}"

    date = study.date.strftime("%Y%m%d")
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = CHARACTER_SET
    ds.SOPClassUID = sop_class
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = STUDY_TIME
    ds.AccessionNumber = study.accession
    ds.Manufacturer = _MANUFACTURER
    ds.InstitutionName = patient.institution
    if patient.institution_address:
        ds.InstitutionAddress = patient.institution_address
    ds.ReferringPhysicianName = study.referring_physician
    ds.StudyDescription = study.description
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    if patient.age_years is not None:
        if not 0 <= patient.age_years <= 999:
            raise ValueError(f"age_years must be between 0 and 999, got {patient.age_years}")
        ds.PatientAge = f"{patient.age_years:03d}Y"
    if patient.address:
        ds.PatientAddress = patient.address
    ds.StudyInstanceUID = study.study_uid
    ds.StudyID = study.accession[-16:]
    return ds


def _set_pixel_module(ds: Dataset, stored: np.ndarray, bits_stored: int, photometric: str) -> None:
    """Image Pixel module tags and Pixel Data for one grey frame of unsigned integers."""
    rows, columns = stored.shape
    bits_allocated = stored.dtype.itemsize * 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelData = stored.tobytes()
    ds["PixelData"].VR = "OB" if bits_allocated == 8 else "OW"


def _check_positive(name: str, value: float) -> None:
    if not (isinstance(value, (int, float, np.floating, np.integer)) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
