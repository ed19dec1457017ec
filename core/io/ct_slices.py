"""The slices of one DICOM CT series -> one :class:`CtVolume` in Hounsfield units: the geometry
checks (spacing, orientation, positions, duplicates, gaps, tilt), decoding and the modality LUT.

:mod:`core.io.ct_series` finds the series and their slices from the headers; the checks are told,
in plain words, in its docstring.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
import pydicom
import pydicom.uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_modality_lut, get_decoder, pixel_array

from core.errors import InconsistentSeriesError, InvalidInputError, UnsupportedDicomError
from core.io.decoding import GREY_PHOTOMETRICS, is_decoder_failure
from core.io.numbers import dicom_number
from core.types import CtVolume

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
_MAX_GAPS_NAMED = 3


@dataclass(frozen=True, eq=False)
class DicomSlice:
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


def read_volume(
    group: Sequence[DicomSlice], series_uid: str, description: str, n_files: int, notes: list[str]
) -> CtVolume:
    """The slices of one series (of ``n_files`` files) in HU, ordered along the slice normal;
    ``notes`` are warnings to put first, and the checks' warnings follow."""
    for item in group:
        if item.frame is None and dicom_number(item.header.get("NumberOfFrames")) not in (None, 1.0):
            raise UnsupportedDicomError(
                "This series is stored as multi-frame DICOM without a position for each frame, which is not "
                "supported; export it as one file per slice."
            )
    if len(group) < 2:
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
        description=description,
        window=window,
        n_files=n_files,
        warnings=tuple(notes),
    )


def _pixel_spacing(group: Sequence[DicomSlice], notes: list[str]) -> tuple[float, float]:
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


def _slice_normal(group: Sequence[DicomSlice], notes: list[str]) -> np.ndarray:
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


def _slice_positions(group: Sequence[DicomSlice], normal: np.ndarray, notes: list[str]) -> tuple[np.ndarray, bool]:
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


def _slice_hu(item: DicomSlice, index: int, total: int, decoded: dict[int, np.ndarray]) -> np.ndarray:
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
        if photometric not in GREY_PHOTOMETRICS or int(ds.get("SamplesPerPixel") or 1) != 1:
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
        if not is_decoder_failure(e):
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
    ordered: Sequence[DicomSlice],
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
