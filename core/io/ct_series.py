"""Read a set of CT DICOM slices (bytes in memory) into one :class:`CtVolume` in Hounsfield units.

Files are grouped by Series Instance UID. Slices are ordered by the projection of Image Position
(Patient) on the slice normal (the cross product of the row and column directions of Image
Orientation (Patient)), never by file name; Instance Number is used only when positions are
missing, with a warning. Stored values go through the modality LUT (Rescale Slope / Intercept,
or a Modality LUT Sequence) to HU as float32. A multi-frame (Enhanced) CT file is split into
its frames, each placed by its own Plane Position in the per-frame functional groups.

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
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder, pixel_array

from core.errors import DashboardError, InconsistentSeriesError, InvalidInputError, UnsupportedDicomError
from core.io.images import MAX_BYTES
from core.io.numbers import dicom_number
from core.types import CtVolume

__all__ = ["DicomScan", "SeriesInfo", "list_series", "read_ct_folder", "read_ct_series", "scan_dicom"]

logger = logging.getLogger(__name__)

#: Largest volume accepted, in voxels (2 GiB as float32), checked from the headers before decoding.
MAX_VOXELS: int = 512 * 512 * 2048
#: A step between slices larger than this multiple of the median spacing is reported as a gap.
GAP_FACTOR: float = 1.5
#: Steps that differ from the median spacing by more than this fraction are reported.
NON_UNIFORM_TOLERANCE: float = 0.02
#: Positions closer than this (mm) along the slice normal are the same position.
DUPLICATE_TOLERANCE_MM: float = 0.01
#: Image Orientation (Patient) cosines that differ by more than this are different orientations.
ORIENTATION_TOLERANCE: float = 1e-3
#: A row or column direction further than this from every patient axis (degrees) is oblique.
OBLIQUE_TOLERANCE_DEG: float = 1.0

_AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
_MAX_GAPS_NAMED = 3
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


@dataclass(frozen=True, eq=False)
class _Slice:
    """The header of one DICOM image (read without its pixels) and its file's bytes.

    For a frame of a multi-frame file, ``header`` is built from the functional groups (position,
    orientation, spacing, rescale and window of that frame) and ``frame`` is its index.
    """

    header: Dataset
    data: bytes
    raw: bool  # a bare dataset, without preamble nor file meta
    frame: int | None = None

    @property
    def series_uid(self) -> str:
        return str(self.header.get("SeriesInstanceUID") or "").strip()


@dataclass(frozen=True)
class DicomScan:
    """The headers of a set of files, read once, with what was set aside (counts only).

    Build it with :func:`scan_dicom`; :mod:`core.io.ct_input` uses it to offer DICOM series next
    to NIfTI volumes and TIFF stacks.
    """

    slices: tuple[_Slice, ...]
    n_files: int  # files given
    n_ignored: int  # not DICOM, or DICOM without an image (DICOMDIR, report, ...)
    n_unreadable: int  # DICOM that could not be parsed (truncated, damaged)
    not_ct: tuple[tuple[tuple[str, str], int], ...] = field(default=())  # ((singular, plural), count)

    @property
    def groups(self) -> dict[str, list[_Slice]]:
        """The CT slices by Series Instance UID, in order of first appearance."""
        groups: dict[str, list[_Slice]] = {}
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
        return _read_volume(groups[series_uid], series_uid, list(notes))

    def nothing_found_message(self) -> str:
        """Why there is no CT series among the files, in plain words."""
        total = self.n_files
        files = f"the {total} file{'s' if total != 1 else ''} given"
        if self.not_ct:
            return f"No CT slices were found among {files}; the DICOM images among them are {self.not_ct_words()}."
        return f"No DICOM images were found among {files}."


def scan_dicom(files: Sequence[tuple[str, bytes]]) -> DicomScan:
    """Read the headers (not the pixels) of ``files`` (``(name, bytes)`` pairs; names unused).

    Raises :class:`InvalidInputError` only when a file's contents are not bytes.
    """
    slices: list[_Slice] = []
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
        except Exception:
            n_unreadable += 1
            continue
        if "Rows" not in header or "Columns" not in header:  # DICOMDIR, report, presentation state
            n_ignored += 1
            continue
        kind = _not_ct_kind(header)
        if kind is not None:
            not_ct[kind] += 1
            continue
        frames = _split_frames(header, data, raw)
        slices.extend(frames if frames is not None else [_Slice(header, data, raw)])
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


def looks_like_raw_dicom(data: bytes) -> bool:
    """A dataset without preamble nor meta header starts with a tag of group 0002 or 0008."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


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


def _split_frames(header: Dataset, data: bytes, raw: bool) -> list[_Slice] | None:
    """The frames of a multi-frame file as slices, each with its own position from the per-frame
    functional groups; None for a single-frame file or a multi-frame file without them (which
    :func:`_read_volume` refuses)."""
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
        out.append(_Slice(frame, data, raw, frame=index))
    return out


def _series_info(series_uid: str, group: Sequence[_Slice]) -> SeriesInfo:
    first = group[0].header
    return SeriesInfo(
        series_uid=series_uid,
        description=str(first.get("SeriesDescription") or "").strip(),
        modality=str(first.get("Modality") or "").strip().upper(),
        n_files=sum(item.frame is None for item in group)
        + len({id(item.data) for item in group if item.frame is not None}),
        rows=int(first.get("Rows") or 0),
        columns=int(first.get("Columns") or 0),
        n_slices=len(group),
    )


# --------------------------------------------------------------------------------------------
# Geometry and volume


def _read_volume(group: Sequence[_Slice], series_uid: str, notes: list[str]) -> CtVolume:
    info = _series_info(series_uid, group)
    for item in group:
        if item.frame is None and dicom_number(item.header.get("NumberOfFrames")) not in (None, 1.0):
            raise UnsupportedDicomError(
                "This series is stored as multi-frame DICOM without a position for each frame, which is not "
                "supported; export it as one file per slice."
            )
    if info.n_slices < 2:
        raise InvalidInputError(
            "This series has a single slice, and a single slice is not a volume; open it as a single image instead."
        )
    sizes = {(int(s.header.get("Rows") or 0), int(s.header.get("Columns") or 0)) for s in group}
    if len(sizes) > 1:
        listed = ", ".join(f"{r} x {c}" for r, c in sorted(sizes))
        raise InconsistentSeriesError(
            f"The slices of this series have different sizes ({listed} pixels); they do not form one volume."
        )
    rows, columns = sizes.pop()
    if rows < 1 or columns < 1:
        raise UnsupportedDicomError("The slices of this series do not state their size in pixels.")
    if rows * columns * len(group) > MAX_VOXELS:
        raise InvalidInputError(
            f"This series is too large to open ({len(group)} slices of {rows} x {columns} pixels; "
            f"the limit is {MAX_VOXELS / 2**20:.0f} million voxels)."
        )
    pixel_spacing = _pixel_spacing(group, notes)
    normal = _slice_normal(group, notes)
    positions, by_position = _slice_positions(group, normal, notes)

    order = np.argsort(positions, kind="stable")
    ordered = [group[i] for i in order]
    positions = positions[order]
    hu = np.empty((len(ordered), rows, columns), dtype=np.float32)
    decoded: dict[int, np.ndarray] = {}  # id(file bytes) -> all frames of a multi-frame file
    for k, item in enumerate(ordered):
        hu[k] = _slice_hu(item, k, len(ordered), decoded)
    decoded.clear()

    keep = _drop_duplicates(hu, positions, notes)
    if not keep.all():
        hu, positions = hu[keep], positions[keep]
        ordered = [item for item, kept in zip(ordered, keep, strict=True) if kept]
        if len(ordered) < 2:
            raise InvalidInputError(
                "All slices of this series lie at the same position, and a single slice is not a volume."
            )
    if by_position:
        spacing_z = _check_spacing(positions, notes)
        _check_tilt(ordered, normal, positions, pixel_spacing, notes)
    else:
        spacing_z = _nominal_spacing(ordered[0].header, notes)

    first = ordered[0].header
    window = None
    center, width = dicom_number(first.get("WindowCenter")), dicom_number(first.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        window = (center, width)
    logger.debug("read a CT series: %d slices of %d x %d", len(ordered), rows, columns)
    return CtVolume(
        hu=hu,
        spacing_mm=(spacing_z, pixel_spacing[0], pixel_spacing[1]),
        series_uid=series_uid,
        description=info.description,
        window=window,
        n_files=info.n_files,
        warnings=tuple(notes),
    )


def _pixel_spacing(group: Sequence[_Slice], notes: list[str]) -> tuple[float, float]:
    """(row, column) spacing in mm, the same for every slice."""
    found = {_pair(s.header.get("PixelSpacing")) for s in group}
    if None in found:
        if len(found) > 1:
            raise InconsistentSeriesError("Some slices of this series do not state their pixel spacing.")
        notes.append("The slices do not state their pixel spacing; 1 mm is assumed.")
        return 1.0, 1.0
    spacings = np.array(sorted(found), dtype=np.float64)  # type: ignore[arg-type]
    if not np.allclose(spacings, spacings[0], rtol=1e-4, atol=1e-6):
        raise InconsistentSeriesError(
            "The slices of this series have different pixel spacings; they do not form one volume."
        )
    return float(spacings[0][0]), float(spacings[0][1])


def _slice_normal(group: Sequence[_Slice], notes: list[str]) -> np.ndarray:
    """The unit normal of the common slice orientation (row x column direction)."""
    found = [_orientation(s.header) for s in group]
    if all(o is None for o in found):
        notes.append("The slices do not state their orientation; axial slices are assumed.")
        found = [_AXIAL] * len(found)
    elif any(o is None for o in found):
        raise InconsistentSeriesError("Some slices of this series do not state their orientation.")
    first = found[0]
    if any(np.abs(o - first).max() > ORIENTATION_TOLERANCE for o in found[1:]):  # type: ignore[operator]
        raise InconsistentSeriesError(
            "The slices of this series have different orientations (for example axial and coronal); "
            "they do not form one volume."
        )
    normal = np.cross(first[:3], first[3:])  # type: ignore[index]
    normal = normal / np.linalg.norm(normal)
    _check_oblique(first, normal, notes)  # type: ignore[arg-type]
    return normal


def _check_oblique(orientation: np.ndarray, normal: np.ndarray, notes: list[str]) -> None:
    """Warn when the row or column direction is not along a patient axis (an oblique plane, or
    slices turned in their plane): the viewer shows the slices as acquired, not resampled."""
    off_axis = max(
        math.degrees(math.acos(min(1.0, float(np.abs(orientation[:3]).max())))),
        math.degrees(math.acos(min(1.0, float(np.abs(orientation[3:]).max())))),
    )
    if off_axis > OBLIQUE_TOLERANCE_DEG:
        plane = ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]
        notes.append(
            f"The slices are oblique: they are turned about {off_axis:.0f} degrees away from the patient's axes "
            f"(closest to {plane}). The viewer shows them as they were acquired, in acquisition order, "
            "not resampled to true axial, coronal or sagittal planes."
        )


def _orientation(header: Dataset) -> np.ndarray | None:
    """Image Orientation (Patient) as unit row and column cosines (6,), or None if unusable."""
    values = _numbers(header.get("ImageOrientationPatient"), 6)
    if values is None:
        return None
    row, column = values[:3], values[3:]
    row_norm, column_norm = np.linalg.norm(row), np.linalg.norm(column)
    if row_norm < 1e-6 or column_norm < 1e-6 or np.linalg.norm(np.cross(row, column)) < 1e-3 * row_norm * column_norm:
        return None
    return np.concatenate([row / row_norm, column / column_norm])


def _slice_positions(group: Sequence[_Slice], normal: np.ndarray, notes: list[str]) -> tuple[np.ndarray, bool]:
    """Each slice's position along the normal (mm), or its Instance Number when a position is
    missing; and whether positions were used."""
    positions = [_numbers(s.header.get("ImagePositionPatient"), 3) for s in group]
    if all(p is not None for p in positions):
        return np.array([float(np.dot(p, normal)) for p in positions]), True
    numbers = [dicom_number(s.header.get("InstanceNumber")) for s in group]
    if any(n is None for n in numbers):
        raise InconsistentSeriesError(
            "The slices of this series cannot be put in order: some state neither their position nor their number."
        )
    notes.append(
        "Some slices do not state their position; the slices were ordered by their instance number, "
        "which may not match their true order."
    )
    return np.array(numbers, dtype=np.float64), False


def _slice_hu(item: _Slice, index: int, total: int, decoded: dict[int, np.ndarray]) -> np.ndarray:
    """Decode one slice and rescale it to HU, float32 (rows, columns).

    A multi-frame file is decoded once, all its frames kept in ``decoded`` for its other frames.
    """
    where = f"Slice {index + 1} of {total}"
    if item.frame is not None and id(item.data) in decoded:
        return _rescale(decoded[id(item.data)][item.frame], item.header)
    try:
        ds = pydicom.dcmread(BytesIO(item.data), force=item.raw)
        tsyntax = _transfer_syntax(ds, where)
        try:
            decoder = get_decoder(tsyntax)
        except NotImplementedError as e:
            raise UnsupportedDicomError(
                f"{where} is stored as '{tsyntax.name}', a DICOM compression this application cannot decode."
            ) from e
        if not decoder.is_available:
            raise UnsupportedDicomError(
                f"{where} is stored as '{tsyntax.name}'; the decoder for this DICOM compression is not installed."
            )
        photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
        if photometric not in _GREY or int(ds.get("SamplesPerPixel") or 1) != 1:
            raise UnsupportedDicomError(f"{where} is a colour image ('{photometric}'), not a CT slice.")
        if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise UnsupportedDicomError(f"{where} has no image data; the file may be truncated.")
        if item.frame is not None:
            frames = pixel_array(ds)
            if frames.ndim != 3 or frames.shape[0] <= item.frame:
                raise UnsupportedDicomError(f"{where} could not be found in its multi-frame file.")
            decoded[id(item.data)] = frames
            return _rescale(frames[item.frame], item.header)
        return _rescale(pixel_array(ds, index=0), item.header)
    except BaseException as e:
        if not _is_decoder_failure(e):
            raise
        raise UnsupportedDicomError(f"{where} could not be decoded; the file may be truncated or damaged.") from e


def _transfer_syntax(ds: Dataset, where: str) -> pydicom.uid.UID:
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if tsyntax:
        return pydicom.uid.UID(tsyntax)
    # A bare dataset: only uncompressed pixel data can be, and its encoding is what pydicom found.
    implicit_vr, little_endian = ds.original_encoding
    encapsulated = "PixelData" in ds and ds["PixelData"].is_undefined_length
    if little_endian is None or encapsulated:
        raise UnsupportedDicomError(f"{where} does not say how its image data is stored (no Transfer Syntax).")
    if implicit_vr:
        inferred = pydicom.uid.ImplicitVRLittleEndian
    else:
        inferred = pydicom.uid.ExplicitVRLittleEndian if little_endian else pydicom.uid.ExplicitVRBigEndian
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = inferred
    return inferred


def _rescale(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> HU (modality LUT of ``ds``, the slice's header), float32."""
    if ds.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    slope = dicom_number(ds.get("RescaleSlope"))
    intercept = dicom_number(ds.get("RescaleIntercept"))
    out = arr.astype(np.float32)
    if slope is not None and slope != 1.0:
        out *= np.float32(slope)
    if intercept:
        out += np.float32(intercept)
    return out


def _drop_duplicates(hu: np.ndarray, positions: np.ndarray, notes: list[str]) -> np.ndarray:
    """A mask of the slices to keep: of two at the same position holding the same pixels, the
    second is dropped; at the same position with different pixels, the series is refused."""
    keep = np.ones(len(positions), dtype=bool)
    last = 0
    for k in range(1, len(positions)):
        if abs(positions[k] - positions[last]) > DUPLICATE_TOLERANCE_MM:
            last = k
            continue
        if not np.array_equal(hu[k], hu[last]):
            raise InconsistentSeriesError(
                f"Two slices of this series lie at the same position ({positions[k]:.1f} mm) but hold different "
                "images; the series may mix several acquisitions."
            )
        keep[k] = False
    n_dropped = int((~keep).sum())
    if n_dropped:
        copies = "1 duplicate slice" if n_dropped == 1 else f"{n_dropped} duplicate slices"
        notes.append(f"{copies} (same position, same image) {'was' if n_dropped == 1 else 'were'} ignored.")
    return keep


def _check_spacing(positions: np.ndarray, notes: list[str]) -> float:
    """The median step between consecutive positions (mm), with warnings for gaps and steps that
    differ from it."""
    steps = np.diff(positions)
    median = float(np.median(steps))
    gaps = np.flatnonzero(steps > GAP_FACTOR * median)
    for k in gaps[:_MAX_GAPS_NAMED]:
        notes.append(
            f"There is a gap of {steps[k]:.1f} mm between slices {k + 1} and {k + 2} "
            f"(at {positions[k]:.1f} and {positions[k + 1]:.1f} mm), where the usual spacing is {median:.2f} mm; "
            "slices may be missing. The viewer shows the slices on either side of the gap next to each other."
        )
    if len(gaps) > _MAX_GAPS_NAMED:
        more = len(gaps) - _MAX_GAPS_NAMED
        notes.append(
            "There is 1 more gap between slices." if more == 1 else f"There are {more} more gaps between slices."
        )
    regular = np.delete(steps, gaps)
    deviation = np.abs(regular - median)
    if regular.size and deviation.max() > max(NON_UNIFORM_TOLERANCE * median, DUPLICATE_TOLERANCE_MM):
        notes.append(
            f"The spacing between slices is not uniform (from {regular.min():.2f} to {regular.max():.2f} mm); "
            f"the volume uses the median, {median:.2f} mm."
        )
    return median


def _check_tilt(
    ordered: Sequence[_Slice],
    normal: np.ndarray,
    positions: np.ndarray,
    pixel_spacing: tuple[float, float],
    notes: list[str],
) -> None:
    """Warn when the step from slice to slice is not along the slice normal (the slices shift
    sideways: a tilted gantry); the volume is not resampled."""
    first = _numbers(ordered[0].header.get("ImagePositionPatient"), 3)
    last = _numbers(ordered[-1].header.get("ImagePositionPatient"), 3)
    assert first is not None and last is not None
    along = float(positions[-1] - positions[0])
    sideways = float(np.linalg.norm((last - first) - along * normal))
    if sideways > 0.5 * min(pixel_spacing):
        angle = math.degrees(math.atan2(sideways, abs(along)))
        notes.append(
            f"The slices were taken with a tilted gantry (about {angle:.0f} degrees): each slice is shifted "
            "sideways from the one before. The viewer shows the slices in acquisition order, stacked straight "
            "and not resampled, so the anatomy looks slightly slanted in side views."
        )


def _nominal_spacing(header: Dataset, notes: list[str]) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = dicom_number(header.get(keyword))
        if value is not None and value > 0:
            return abs(value)
    notes.append("The distance between slices is unknown; 1 mm is assumed.")
    return 1.0


# --------------------------------------------------------------------------------------------
# Values


def _numbers(value: Any, count: int) -> np.ndarray | None:
    """Exactly ``count`` finite numbers as float64, or None."""
    if value is None or not isinstance(value, (list, tuple, MultiValue)) or len(value) != count:
        return None
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out).all() else None


def _pair(value: Any) -> tuple[float, float] | None:
    pair = _numbers(value, 2)
    if pair is None or (pair <= 0).any():
        return None
    return float(pair[0]), float(pair[1])


def _is_decoder_failure(error: BaseException) -> bool:
    """Whether a third-party error means "this file cannot be decoded" (the same rule as
    :mod:`core.io.images`: our own errors and MemoryError propagate; Rust decoders' panics,
    BaseExceptions, count as failures)."""
    if isinstance(error, (DashboardError, MemoryError)):
        return False
    return isinstance(error, Exception) or type(error).__name__ == "PanicException"
