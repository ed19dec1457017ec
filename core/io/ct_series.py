"""Read a set of CT DICOM slices (bytes in memory) into one :class:`CtVolume` in Hounsfield units.

Files are grouped by Series Instance UID. Slices are ordered by the projection of Image Position
(Patient) on the slice normal (the cross product of the row and column directions of Image
Orientation (Patient)), never by file name; Instance Number is used only when positions are
missing, with a warning. Stored values go through the modality LUT (Rescale Slope / Intercept,
or a Modality LUT Sequence) to HU as float32.

Checks, in plain words for a clinician:

- several series and none chosen, mixed orientations, different slice sizes or pixel spacings:
  :class:`InconsistentSeriesError`;
- fewer than two slices (a single slice is not a volume): :class:`InvalidInputError`;
- two slices at the same position: the later one is dropped with a warning when both hold the
  same pixels, otherwise :class:`InconsistentSeriesError` (two acquisitions mixed in one series);
- a gap (a step more than 1.5x the median spacing) or steps that differ from the median by more
  than 2 %: a warning; the volume uses the median spacing;
- files that are not DICOM images (a DICOMDIR, a text file, a report) are ignored and counted.

Compressed transfer syntaxes are decoded by pydicom's pixel handlers (pylibjpeg); one that no
installed decoder supports is an :class:`UnsupportedDicomError`. No message or log line names
a file (file names may contain patient names) or carries an identifier.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
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
from core.types import CtVolume

__all__ = ["SeriesInfo", "list_series", "read_ct_folder", "read_ct_series"]

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

_AXIAL = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
_GREY = frozenset({"MONOCHROME1", "MONOCHROME2"})
_MAX_GAPS_NAMED = 3


@dataclass(frozen=True)
class SeriesInfo:
    """One series found among a set of files: what a user needs to choose it."""

    series_uid: str
    description: str
    modality: str
    n_files: int
    rows: int
    columns: int

    @property
    def label(self) -> str:
        """The series in plain words, e.g. "'CHEST CT' (CT, 48 slices of 512 x 512)"."""
        name = f"'{self.description}'" if self.description else "an unnamed series"
        modality = f"{self.modality}, " if self.modality else ""
        slices = "1 slice" if self.n_files == 1 else f"{self.n_files} slices"
        return f"{name} ({modality}{slices} of {self.rows} x {self.columns})"


@dataclass(frozen=True, eq=False)
class _Slice:
    """The header of one DICOM image file (read without its pixels) and its bytes."""

    header: Dataset
    data: bytes
    raw: bool  # a bare dataset, without preamble nor file meta

    @property
    def series_uid(self) -> str:
        return str(self.header.get("SeriesInstanceUID") or "").strip()


@dataclass(frozen=True)
class _Scan:
    slices: tuple[_Slice, ...]
    n_ignored: int  # not DICOM, or DICOM without an image (DICOMDIR, report, ...)
    n_unreadable: int  # DICOM that could not be parsed (truncated, damaged)

    def notes(self) -> list[str]:
        notes = []
        if self.n_ignored == 1:
            notes.append("1 file that is not a DICOM image was ignored (e.g. a DICOMDIR index or a text file).")
        elif self.n_ignored:
            notes.append(
                f"{self.n_ignored} files that are not DICOM images were ignored (e.g. a DICOMDIR index or a text file)."
            )
        if self.n_unreadable == 1:
            notes.append("1 DICOM file could not be read (truncated or damaged) and was ignored.")
        elif self.n_unreadable:
            notes.append(f"{self.n_unreadable} DICOM files could not be read (truncated or damaged) and were ignored.")
        return notes


def list_series(files: Sequence[tuple[str, bytes]]) -> list[SeriesInfo]:
    """The image series among ``files`` (``(name, bytes)`` pairs), in order of first appearance.

    Files that are not DICOM images are skipped (their count is logged, never their names).
    """
    scan = _scan(files)
    return [_series_info(uid, group) for uid, group in _group(scan.slices).items()]


def read_ct_series(files: Sequence[tuple[str, bytes]], series_uid: str | None = None) -> CtVolume:
    """Read the slices of one series into a volume in HU.

    Parameters
    ----------
    files
        ``(name, bytes)`` pairs, in any order; names are never used (nor shown).
    series_uid
        The series to read; needed only when the files hold more than one series.

    Returns
    -------
    CtVolume
        ``hu`` float32 (z, y, x) ordered by increasing position along the slice normal;
        ``spacing_mm`` (z, y, x); ``n_files`` the number of files of the series.

    Raises
    ------
    InvalidInputError
        No DICOM image among the files, an unknown ``series_uid``, or fewer than two slices.
    InconsistentSeriesError
        Several series and none chosen, or slices that do not form one volume.
    UnsupportedDicomError
        Pixel data that cannot be decoded (unsupported compression, colour, multi-frame).
    """
    scan = _scan(files)
    groups = _group(scan.slices)
    if not groups:
        total = len(files)
        raise InvalidInputError(f"No DICOM images were found among the {total} file{'s' if total != 1 else ''} given.")
    if series_uid is None:
        if len(groups) > 1:
            choices = "; ".join(_series_info(uid, group).label for uid, group in groups.items())
            raise InconsistentSeriesError(f"These files hold {len(groups)} series; please choose one: {choices}.")
        series_uid = next(iter(groups))
    elif series_uid not in groups:
        choices = "; ".join(_series_info(uid, group).label for uid, group in groups.items())
        raise InvalidInputError(f"The chosen series is not among these files, which hold: {choices}.")

    return _read_volume(groups[series_uid], series_uid, scan.notes())


def read_ct_folder(folder: str | Path, series_uid: str | None = None) -> CtVolume:
    """Read a series from all files under ``folder`` (recursively) with :func:`read_ct_series`.

    Files larger than :data:`core.io.images.MAX_BYTES` are not read (they count as ignored).
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


def _scan(files: Sequence[tuple[str, bytes]]) -> _Scan:
    slices: list[_Slice] = []
    n_ignored = n_unreadable = 0
    for _name, data in files:
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidInputError("The CT files could not be read: expected each file's contents as bytes.")
        raw = data[128:132] != b"DICM"
        if raw and not _looks_like_raw_dicom(data):
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
        slices.append(_Slice(header, data, raw))
    if n_ignored or n_unreadable:
        logger.info("CT files: %d not DICOM images, %d unreadable DICOM; ignored", n_ignored, n_unreadable)
    return _Scan(tuple(slices), n_ignored, n_unreadable)


def _looks_like_raw_dicom(data: bytes) -> bool:
    """A dataset without preamble nor meta header starts with a tag of group 0002 or 0008."""
    return len(data) >= 8 and data[:2] in (b"\x02\x00", b"\x08\x00", b"\x00\x02", b"\x00\x08")


def _group(slices: Sequence[_Slice]) -> dict[str, list[_Slice]]:
    groups: dict[str, list[_Slice]] = {}
    for item in slices:
        groups.setdefault(item.series_uid, []).append(item)
    return groups


def _series_info(series_uid: str, group: Sequence[_Slice]) -> SeriesInfo:
    first = group[0].header
    return SeriesInfo(
        series_uid=series_uid,
        description=str(first.get("SeriesDescription") or "").strip(),
        modality=str(first.get("Modality") or "").strip().upper(),
        n_files=len(group),
        rows=int(first.get("Rows") or 0),
        columns=int(first.get("Columns") or 0),
    )


# --------------------------------------------------------------------------------------------
# Geometry and volume


def _read_volume(group: Sequence[_Slice], series_uid: str, notes: list[str]) -> CtVolume:
    info = _series_info(series_uid, group)
    if info.n_files < 2:
        raise InvalidInputError(
            "This series has a single slice, and a single slice is not a volume; open it as a single image instead."
        )
    if info.modality and info.modality != "CT":
        notes.append(f"This series is {info.modality}, not CT: its values are probably not Hounsfield units.")
    for item in group:
        if _number(item.header.get("NumberOfFrames")) not in (None, 1.0):
            raise UnsupportedDicomError(
                "This series is stored as multi-frame (enhanced) DICOM, which is not supported; "
                "export it as one file per slice."
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
    for k, item in enumerate(ordered):
        hu[k] = _slice_hu(item, k, len(ordered))

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
        _check_shear(ordered, normal, positions, pixel_spacing, notes)
    else:
        spacing_z = _nominal_spacing(ordered[0].header, notes)

    first = ordered[0].header
    window = None
    center, width = _number(first.get("WindowCenter")), _number(first.get("WindowWidth"))
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
    return normal / np.linalg.norm(normal)


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
    numbers = [_number(s.header.get("InstanceNumber")) for s in group]
    if any(n is None for n in numbers):
        raise InconsistentSeriesError(
            "The slices of this series cannot be put in order: some state neither their position nor their number."
        )
    notes.append(
        "Some slices do not state their position; the slices were ordered by their instance number, "
        "which may not match their true order."
    )
    return np.array(numbers, dtype=np.float64), False


def _slice_hu(item: _Slice, index: int, total: int) -> np.ndarray:
    """Decode one slice and rescale it to HU, float32 (rows, columns)."""
    where = f"Slice {index + 1} of {total}"
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
        arr = pixel_array(ds, index=0)
        return _rescale(arr, ds)
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
    """Stored values -> HU (modality LUT), float32."""
    if ds.get("ModalityLUTSequence"):
        return np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
    slope = _number(ds.get("RescaleSlope"))
    intercept = _number(ds.get("RescaleIntercept"))
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
            "slices may be missing."
        )
    if len(gaps) > _MAX_GAPS_NAMED:
        notes.append(f"There are {len(gaps) - _MAX_GAPS_NAMED} more gaps between slices.")
    regular = np.delete(steps, gaps)
    deviation = np.abs(regular - median)
    if regular.size and deviation.max() > max(NON_UNIFORM_TOLERANCE * median, DUPLICATE_TOLERANCE_MM):
        notes.append(
            f"The spacing between slices is not uniform (from {regular.min():.2f} to {regular.max():.2f} mm); "
            f"the volume uses the median, {median:.2f} mm."
        )
    return median


def _check_shear(
    ordered: Sequence[_Slice],
    normal: np.ndarray,
    positions: np.ndarray,
    pixel_spacing: tuple[float, float],
    notes: list[str],
) -> None:
    """Warn when slice origins drift sideways (a tilted gantry): the volume is not resampled."""
    first = _numbers(ordered[0].header.get("ImagePositionPatient"), 3)
    last = _numbers(ordered[-1].header.get("ImagePositionPatient"), 3)
    assert first is not None and last is not None
    sideways = (last - first) - (positions[-1] - positions[0]) * normal
    if float(np.linalg.norm(sideways)) > 0.5 * min(pixel_spacing):
        notes.append(
            "The slices are shifted sideways from one to the next (a tilted gantry?); "
            "the volume is shown without correcting for it."
        )


def _nominal_spacing(header: Dataset, notes: list[str]) -> float:
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = _number(header.get(keyword))
        if value is not None and value > 0:
            return abs(value)
    notes.append("The distance between slices is unknown; 1 mm is assumed.")
    return 1.0


# --------------------------------------------------------------------------------------------
# Values


def _number(value: Any) -> float | None:
    """A DS/IS value (possibly multi-valued, empty or malformed) as a finite float, or None."""
    if value is None:
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


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
