"""Read a set of CT DICOM slices (bytes in memory) into one :class:`CtVolume` in Hounsfield units.

Files are grouped by Series Instance UID. Slices are ordered by the projection of Image Position
(Patient) on the slice normal (the cross product of the row and column directions of Image
Orientation (Patient)), never by file name; Instance Number is used only when positions are
missing, with a warning. Stored values go through the modality LUT (Rescale Slope / Intercept,
or a Modality LUT Sequence) to HU as float32. A multi-frame (Enhanced) CT file is split into
its frames, each placed by its own Plane Position in the per-frame functional groups. Headers
are read here; the slices of the chosen series become a volume, with the checks below, in
:mod:`core.io.ct_slices`.

What is read, and what is set aside:

- CT slices: a CT SOP class (CT, Enhanced CT, Legacy Converted Enhanced CT), or Modality "CT"
  with a position and an orientation (some converters write CT slices as secondary captures),
  or a dataset stating neither SOP class nor modality;
- other DICOM images (a radiograph, a scout view, a screen capture such as a dose screen, an MR
  image...) are ignored and counted, with a warning that says what they were;
- files that are not DICOM images (a DICOMDIR, a dose report, a text file) are ignored and counted.

Checks, in plain words for a clinician:

- several series and none chosen, mixed orientations, different slice sizes or pixel spacings:
  :class:`InconsistentSeriesError`;
- no CT slice at all, or fewer than two slices (a single slice is not a volume):
  :class:`InvalidInputError`;
- two slices at the same position: the later one is dropped with a warning when both hold the
  same pixels, otherwise :class:`InconsistentSeriesError` (two acquisitions mixed in one series);
- a gap (a step more than 1.5x the median spacing) or steps that differ from the median by more
  than 2 %: a warning; the volume uses the median spacing;
- a tilted gantry (the step from one slice to the next is not along the slice normal) or an
  oblique orientation (row or column direction more than 1 degree off the patient's axes): a
  warning; the viewer shows the slices in acquisition order, not resampled.

Compressed transfer syntaxes are decoded by pydicom's pixel handlers (pylibjpeg); one that no
installed decoder supports is an :class:`UnsupportedDicomError`. No message or log line names
a file (file names may contain patient names) or carries an identifier.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
import pydicom.uid
from pydicom.dataset import Dataset

from core.errors import InconsistentSeriesError, InvalidInputError
from core.io.ct_slices import DicomSlice, read_volume
from core.io.decoding import looks_like_raw_dicom
from core.io.descriptors import shown_descriptor
from core.io.images import MAX_BYTES
from core.io.numbers import dicom_number
from core.types import CtVolume

__all__ = ["DicomScan", "SeriesInfo", "list_series", "read_ct_folder", "read_ct_series", "scan_dicom"]

logger = logging.getLogger(__name__)


_CT_SOP_CLASSES = frozenset(
    {
        pydicom.uid.CTImageStorage,
        pydicom.uid.EnhancedCTImageStorage,
        pydicom.uid.LegacyConvertedEnhancedCTImageStorage,
    }
)
_SECONDARY_CAPTURE_ROOT = "1.2.840.10008.5.1.4.1.1.7"
# What a DICOM image that is not a CT slice is, in words (singular, plural).
_MODALITY_WORDS: dict[str, tuple[str, str]] = {
    "CR": ("radiograph", "radiographs"),
    "DX": ("radiograph", "radiographs"),
    "DR": ("radiograph", "radiographs"),
    "RG": ("radiograph", "radiographs"),
    "MG": ("mammogram", "mammograms"),
    "MR": ("MR image", "MR images"),
    "PT": ("PET image", "PET images"),
    "NM": ("nuclear medicine image", "nuclear medicine images"),
    "US": ("ultrasound image", "ultrasound images"),
    "XA": ("angiogram", "angiograms"),
    "RF": ("fluoroscopy image", "fluoroscopy images"),
    "OT": ("image of another kind", "images of other kinds"),
}
_SCOUT = ("scout view", "scout views")
_CAPTURE = ("screen capture", "screen captures")


@dataclass(frozen=True)
class SeriesInfo:
    """One series found among a set of files: what a user needs to choose it.

    ``n_files`` counts files, ``n_slices`` slices: they differ for a multi-frame DICOM file or a
    NIfTI volume (one file, many slices).
    """

    series_uid: str
    description: str
    modality: str
    n_files: int
    rows: int
    columns: int
    n_slices: int

    @property
    def label(self) -> str:
        """The series in plain words, e.g. "'CHEST CT' (CT, 48 slices of 512 x 512)"."""
        name = f"'{self.description}'" if self.description else "an unnamed series"
        modality = f"{self.modality}, " if self.modality else ""
        slices = "1 slice" if self.n_slices == 1 else f"{self.n_slices} slices"
        return f"{name} ({modality}{slices} of {self.rows} x {self.columns})"


@dataclass(frozen=True)
class DicomScan:
    """The headers of a set of files, read once, with what was set aside (counts only).

    Build it with :func:`scan_dicom`; :mod:`core.io.ct_input` uses it to offer DICOM series next
    to NIfTI volumes and TIFF stacks.
    """

    slices: tuple[DicomSlice, ...]
    n_files: int  # files given
    n_ignored: int  # not DICOM, or DICOM without an image (DICOMDIR, report, ...)
    n_unreadable: int  # DICOM that could not be parsed (truncated, damaged)
    not_ct: tuple[tuple[tuple[str, str], int], ...] = field(default=())  # ((singular, plural), count)

    @property
    def groups(self) -> dict[str, list[DicomSlice]]:
        """The CT slices by Series Instance UID, in order of first appearance."""
        groups: dict[str, list[DicomSlice]] = {}
        for item in self.slices:
            groups.setdefault(item.series_uid, []).append(item)
        return groups

    def series(self) -> list[SeriesInfo]:
        """The CT series found, in order of first appearance."""
        return [_series_info(uid, group) for uid, group in self.groups.items()]

    def notes(self, n_other_ignored: int = 0) -> list[str]:
        """Warnings about the files set aside; ``n_other_ignored`` files that the caller already
        found not to be DICOM count with those that are not DICOM images."""
        notes = []
        n_ignored = self.n_ignored + n_other_ignored
        if n_ignored == 1:
            notes.append(
                "1 file that is not a DICOM image was ignored (e.g. a DICOMDIR index, a dose report or a text file)."
            )
        elif n_ignored:
            notes.append(
                f"{n_ignored} files that are not DICOM images were ignored (e.g. a DICOMDIR index, a dose report or a text file)."
            )
        n_not_ct = sum(count for _, count in self.not_ct)
        if n_not_ct:
            images = (
                "1 DICOM image that is not a CT slice was"
                if n_not_ct == 1
                else (f"{n_not_ct} DICOM images that are not CT slices were")
            )
            notes.append(f"{images} ignored ({self.not_ct_words()}).")
        if self.n_unreadable == 1:
            notes.append("1 DICOM file could not be read (truncated or damaged) and was ignored.")
        elif self.n_unreadable:
            notes.append(f"{self.n_unreadable} DICOM files could not be read (truncated or damaged) and were ignored.")
        return notes

    def not_ct_words(self) -> str:
        """The DICOM images that are not CT slices, e.g. "1 radiograph, 2 screen captures"."""
        return ", ".join(f"{count} {words[0] if count == 1 else words[1]}" for words, count in self.not_ct)

    def read_volume(self, series_uid: str, notes: Sequence[str] = ()) -> CtVolume:
        """Read the series ``series_uid`` (one of :meth:`series`) into a volume in HU; ``notes``
        are warnings to put first."""
        groups = self.groups
        if series_uid not in groups:
            raise InvalidInputError("The chosen series is not among these files.")
        info = _series_info(series_uid, groups[series_uid])
        return read_volume(groups[series_uid], series_uid, info.description, info.n_files, list(notes))

    def nothing_found_message(self) -> str:
        """Why there is no CT series among the files, in plain words."""
        total = self.n_files
        files = f"the {total} file{'s' if total != 1 else ''} given"
        if self.not_ct:
            return f"No CT slices were found among {files}; the DICOM images among them are {self.not_ct_words()}."
        return f"No DICOM images were found among {files}."


#: The attributes the CT readers use, parsed while scanning: a damaged one (a length that does
#: not fit its VR, an unknown VR) makes its file unreadable here, not an error in a later step.
_USED_KEYWORDS = (
    "SOPClassUID",
    "Modality",
    "ImageType",
    "SeriesInstanceUID",
    "SeriesDescription",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "InstanceNumber",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "ModalityLUTSequence",
    "WindowCenter",
    "WindowWidth",
    "SharedFunctionalGroupsSequence",
    "PerFrameFunctionalGroupsSequence",
)


def scan_dicom(files: Sequence[tuple[str, bytes]]) -> DicomScan:
    """Read the headers (not the pixels) of ``files`` (``(name, bytes)`` pairs; names unused).

    Raises :class:`InvalidInputError` only when a file's contents are not bytes.
    """
    slices: list[DicomSlice] = []
    n_ignored = n_unreadable = 0
    not_ct: Counter[tuple[str, str]] = Counter()
    for _name, data in files:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidInputError("The CT files could not be read: expected each file's contents as bytes.")
        raw = data[128:132] != b"DICM"
        if raw and not looks_like_raw_dicom(data):
            n_ignored += 1
            continue
        try:
            header = pydicom.dcmread(BytesIO(data), stop_before_pixels=True, force=raw)
            for keyword in _USED_KEYWORDS:  # pydicom parses a value when it is first read
                header.get(keyword)
        except Exception:
            n_unreadable += 1
            continue
        if "Rows" not in header or "Columns" not in header:  # DICOMDIR, report, presentation state
            n_ignored += 1
            continue
        if not (isinstance(header.Rows, int) and isinstance(header.Columns, int)):  # several values
            n_unreadable += 1
            continue
        kind = _not_ct_kind(header)
        if kind is not None:
            not_ct[kind] += 1
            continue
        frames = _split_frames(header, data, raw)
        slices.extend(frames if frames is not None else [DicomSlice(header, data, raw)])
    if n_ignored or n_unreadable or not_ct:
        logger.info(
            "CT files: %d not DICOM images, %d not CT, %d unreadable DICOM; ignored",
            n_ignored,
            sum(not_ct.values()),
            n_unreadable,
        )
    return DicomScan(tuple(slices), len(files), n_ignored, n_unreadable, tuple(sorted(not_ct.items())))


def list_series(files: Sequence[tuple[str, bytes]]) -> list[SeriesInfo]:
    """The CT series among ``files`` (``(name, bytes)`` pairs), in order of first appearance.

    Files that are not DICOM CT images are skipped (their count is logged, never their names).
    """
    return scan_dicom(files).series()


def read_ct_series(files: Sequence[tuple[str, bytes]], series_uid: str | None = None) -> CtVolume:
    """Read the slices of one series into a volume in HU.

    Parameters
    ----------
    files
        ``(name, bytes)`` pairs, in any order; names are never used (nor shown).
    series_uid
        The series to read; needed only when the files hold more than one CT series.

    Returns
    -------
    CtVolume
        ``hu`` float32 (z, y, x) ordered by increasing position along the slice normal;
        ``spacing_mm`` (z, y, x); ``n_files`` the number of files of the series.

    Raises
    ------
    InvalidInputError
        No CT image among the files, an unknown ``series_uid``, or fewer than two slices.
    InconsistentSeriesError
        Several series and none chosen, or slices that do not form one volume.
    UnsupportedDicomError
        Pixel data that cannot be decoded (unsupported compression, colour).
    """
    scan = scan_dicom(files)
    series = scan.series()
    if not series:
        raise InvalidInputError(scan.nothing_found_message())
    if series_uid is None:
        if len(series) > 1:
            choices = "; ".join(info.label for info in series)
            raise InconsistentSeriesError(f"These files hold {len(series)} series; please choose one: {choices}.")
        series_uid = series[0].series_uid
    elif series_uid not in {info.series_uid for info in series}:
        choices = "; ".join(info.label for info in series)
        raise InvalidInputError(f"The chosen series is not among these files, which hold: {choices}.")
    return scan.read_volume(series_uid, scan.notes())


def read_ct_folder(folder: str | Path, series_uid: str | None = None) -> CtVolume:
    """Read a series from all files under ``folder`` (recursively) with :func:`read_ct_series`.

    Files larger than :data:`core.io.images.MAX_BYTES` are not read (they count as ignored).
    :func:`core.io.ct_input.read_ct_path` also reads zips, NIfTI and TIFF, with limits.
    """
    root = Path(folder)
    if not root.is_dir():
        raise InvalidInputError("The folder to read the CT series from does not exist or is not a folder.")
    files: list[tuple[str, bytes]] = []
    try:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes() if path.stat().st_size <= MAX_BYTES else b""
            files.append((path.relative_to(root).as_posix(), data))
    except OSError as e:
        raise InvalidInputError("A file in the folder could not be read (it may be locked or not permitted).") from e
    return read_ct_series(files, series_uid)


# --------------------------------------------------------------------------------------------
# Header pass


def _not_ct_kind(header: Dataset) -> tuple[str, str] | None:
    """None for a CT slice (or frames of CT slices), else what the image is, in words."""
    image_type = header.get("ImageType") or []
    if isinstance(image_type, str):
        image_type = image_type.split("\\")
    if "LOCALIZER" in {str(v).strip().upper() for v in image_type}:
        return _SCOUT
    sop_class = str(header.get("SOPClassUID") or "").strip()
    if not sop_class:
        meta = getattr(header, "file_meta", None)
        sop_class = str(meta.get("MediaStorageSOPClassUID") or "").strip() if meta is not None else ""
    modality = str(header.get("Modality") or "").strip().upper()
    if sop_class in _CT_SOP_CLASSES or (not sop_class and modality in ("", "CT")):
        return None
    if modality == "CT" and "ImagePositionPatient" in header and "ImageOrientationPatient" in header:
        return None  # a CT slice stored under another SOP class by a converter
    if sop_class.startswith(_SECONDARY_CAPTURE_ROOT):
        return _CAPTURE
    if modality in _MODALITY_WORDS:
        return _MODALITY_WORDS[modality]
    return (f"{modality} image", f"{modality} images") if modality else _MODALITY_WORDS["OT"]


def _split_frames(header: Dataset, data: bytes, raw: bool) -> list[DicomSlice] | None:
    """The frames of a multi-frame file as slices, each with its own position from the per-frame
    functional groups; None for a single-frame file or a multi-frame file without them (which
    :func:`core.io.ct_slices.read_volume` refuses)."""
    n_frames = dicom_number(header.get("NumberOfFrames"))
    if n_frames is None or n_frames <= 1:
        return None
    per_frame = header.get("PerFrameFunctionalGroupsSequence")
    if not per_frame or len(per_frame) != int(n_frames):
        return None
    shared_seq = header.get("SharedFunctionalGroupsSequence")
    shared = shared_seq[0] if shared_seq else None

    def find(groups: Dataset, sequence: str, keyword: str) -> Any:
        for source in (groups, shared):
            items = source.get(sequence) if source is not None else None
            if items and keyword in items[0]:
                return items[0][keyword].value
        return None

    common = (
        "SOPClassUID",
        "Modality",
        "SeriesInstanceUID",
        "SeriesDescription",
        "Rows",
        "Columns",
        "PhotometricInterpretation",
        "SamplesPerPixel",
    )
    out = []
    for index, groups in enumerate(per_frame):
        frame = Dataset()
        for keyword in common:
            if keyword in header:
                setattr(frame, keyword, header[keyword].value)
        frame.InstanceNumber = index + 1
        for sequence, keyword in (
            ("PlanePositionSequence", "ImagePositionPatient"),
            ("PlaneOrientationSequence", "ImageOrientationPatient"),
            ("PixelMeasuresSequence", "PixelSpacing"),
            ("PixelMeasuresSequence", "SliceThickness"),
            ("PixelMeasuresSequence", "SpacingBetweenSlices"),
            ("PixelValueTransformationSequence", "RescaleSlope"),
            ("PixelValueTransformationSequence", "RescaleIntercept"),
            ("FrameVOILUTSequence", "WindowCenter"),
            ("FrameVOILUTSequence", "WindowWidth"),
        ):
            value = find(groups, sequence, keyword)
            if value is not None:
                setattr(frame, keyword, value)
        out.append(DicomSlice(frame, data, raw, frame=index))
    return out


def _series_info(series_uid: str, group: Sequence[DicomSlice]) -> SeriesInfo:
    first = group[0].header
    return SeriesInfo(
        series_uid=series_uid,
        # Shown to the user to choose a series: not when it may name the patient.
        description=shown_descriptor(first),
        modality=str(first.get("Modality") or "").strip().upper(),
        n_files=sum(item.frame is None for item in group)
        + len({id(item.data) for item in group if item.frame is not None}),
        rows=int(first.get("Rows") or 0),
        columns=int(first.get("Columns") or 0),
        n_slices=len(group),
    )
