"""The CT formats other than DICOM, read from memory: a NIfTI-1 or NIfTI-2 volume (with nibabel) and a
stack of 16-bit TIFF slices. How each is oriented and turned into Hounsfield units is told in
:mod:`core.io.ct_input`, which collects the files, applies the limits and offers the series.
"""

from __future__ import annotations

import hashlib
import math
import re
import zlib
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import numpy as np
from PIL import Image

from core.errors import InconsistentSeriesError, InvalidInputError
from core.io.ct_series import SeriesInfo
from core.io.ct_slices import MAX_VOXELS, OBLIQUE_TOLERANCE_DEG
from core.types import CtVolume

_NIFTI1_MAGIC = (b"n+1\x00",)
_NIFTI2_MAGIC = b"n+2\x00\r\n\x1a\n"
_NIFTI_HEADER_BYTES = 540
_HU_OFFSET = 1024.0  # the usual rescale intercept, for unsigned TIFF stored values
_NO_AIR_HU = -500.0  # a chest CT always holds voxels below this (air, aerated lung)


def nifti_version(data: bytes) -> int:
    """1 or 2 for a single-file NIfTI header (".nii"), else 0 (a ".hdr" of a pair is 0 too)."""
    if len(data) >= 348 and data[344:348] in _NIFTI1_MAGIC and data[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c"):
        return 1
    if len(data) >= 540 and data[4:12] == _NIFTI2_MAGIC and data[:4] in (b"\x1c\x02\x00\x00", b"\x00\x00\x02\x1c"):
        return 2
    return 0


def gunzip_head(data: bytes) -> bytes:
    """The first bytes of gzip-compressed ``data`` (enough for a NIfTI header), or b""."""
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data[: 64 * 1024], _NIFTI_HEADER_BYTES)
    except zlib.error:
        return b""


def nifti_series(data: bytes) -> SeriesInfo:
    """The series a NIfTI file (possibly gzip-compressed) offers, from its header alone; its
    made-up ``series_uid`` is "nifti-" and a hash of the file."""
    header = _nifti_header(gunzip_head(data) if data[:2] == b"\x1f\x8b" else data)
    x, y, z = _canonical_shape(header, _nifti_shape(header))
    uid = "nifti-" + hashlib.sha256(data).hexdigest()[:24]
    return SeriesInfo(uid, "NIfTI volume", "", 1, y, x, z)


def read_nifti(data: bytes, uid: str, notes: list[str]) -> CtVolume:
    """An uncompressed single-file NIfTI volume -> CtVolume in the project's (z, y, x) order, with
    ``notes`` first among its warnings (see :mod:`core.io.ct_input` for orientation and values)."""
    import nibabel as nib

    header = _nifti_header(data)
    shape = _nifti_shape(header)
    if math.prod(shape) > MAX_VOXELS:
        raise InvalidInputError(
            f"This NIfTI volume is too large to open ({shape[0]} x {shape[1]} x {shape[2]} voxels; "
            f"the limit is {MAX_VOXELS / 2**20:.0f} million voxels)."
        )
    dtype = header.get_data_dtype()
    if dtype.fields is not None or dtype.kind not in "iuf":
        raise InvalidInputError("This NIfTI file holds colour or complex values, not a CT volume.")
    needed = int(header.get_data_offset()) + math.prod(header.get_data_shape()) * dtype.itemsize
    if len(data) < needed:
        raise InvalidInputError("The NIfTI file is cut short: it holds fewer voxels than its header states.")
    klass = nib.Nifti2Image if nifti_version(data) == 2 else nib.Nifti1Image
    try:
        image = klass.from_bytes(data)
        # get_fdata applies scl_slope / scl_inter, computed in float32.
        values = image.get_fdata(dtype=np.float32).reshape(shape)
    except Exception as e:
        raise InvalidInputError("The NIfTI file could not be read; it may be damaged.") from e

    if int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0:
        notes.append(
            "The NIfTI file does not state its orientation (no qform nor sform); the usual default layout is "
            "assumed, so the volume may be shown upside down or mirrored."
        )
    ornt = _orientation(header)
    affine = header.get_best_affine()
    ras = nib.orientations.apply_orientation(values, ornt)  # views: flips and a transpose
    hu = np.ascontiguousarray(ras.transpose(2, 1, 0)[:, ::-1, ::-1])  # RAS+ -> (S, P, L) = (z, y, x)
    del values, ras

    zooms = [float(v) for v in header.get_zooms()[:3]]
    ras_zooms = [1.0, 1.0, 1.0]
    for axis, (target, _flip) in enumerate(ornt):
        ras_zooms[int(target)] = zooms[axis]
    if not all(math.isfinite(v) and v > 0 for v in ras_zooms):
        notes.append("The NIfTI file does not state a usable voxel size; 1 mm is assumed.")
        ras_zooms = [v if math.isfinite(v) and v > 0 else 1.0 for v in ras_zooms]
    off_axis = float(np.degrees(np.max(nib.affines.obliquity(affine))))
    if off_axis > OBLIQUE_TOLERANCE_DEG:
        notes.append(
            f"The NIfTI volume is oblique: its axes are turned about {off_axis:.0f} degrees away from the "
            "patient's axes. The viewer shows it on its own voxel grid, flipped to the nearest axial "
            "orientation, not resampled."
        )
    check_finite(hu, notes)
    lowest = float(hu.min())
    if lowest > _NO_AIR_HU:
        cause = (
            "they may be stored values without their rescale to HU"
            if lowest >= 0
            else "they may be normalised intensities"
        )
        notes.append(
            f"These values do not look like Hounsfield units: the lowest is {lowest:.0f}, whereas chest CT "
            f"shows air at about -1000 HU; {cause}. They are shown unchanged, so densities and CT windows "
            "will be off, and the models' results are unreliable."
        )
    return CtVolume(
        hu=hu,
        spacing_mm=(ras_zooms[2], ras_zooms[1], ras_zooms[0]),
        series_uid=uid,
        description="NIfTI volume",
        window=None,
        n_files=1,
        warnings=tuple(notes),
    )


def _nifti_header(data: bytes) -> Any:
    import nibabel as nib

    klass = nib.Nifti2Header if nifti_version(data) == 2 else nib.Nifti1Header
    try:
        return klass.from_fileobj(BytesIO(data[:_NIFTI_HEADER_BYTES]))
    except Exception as e:
        raise InvalidInputError("The NIfTI file could not be read; its header is damaged.") from e


def _nifti_shape(header: Any) -> tuple[int, int, int]:
    """(x, y, z) of the voxel grid, as stored; a 4D file with one volume counts as 3D."""
    shape = tuple(int(n) for n in header.get_data_shape())
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) > 3:
        raise InvalidInputError(
            f"This NIfTI file holds {math.prod(shape[3:])} volumes (a 4D series); only a single 3D CT volume is supported."
        )
    if len(shape) < 3 or min(shape) < 2:
        raise InvalidInputError("This NIfTI file holds a single slice, and a single slice is not a volume.")
    return shape[0], shape[1], shape[2]  # type: ignore[return-value]


def _canonical_shape(header: Any, shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """(x, y, z) sizes along the RAS+ axes nearest to the header's affine."""
    out = [0, 0, 0]
    for axis, (target, _flip) in enumerate(_orientation(header)):
        out[int(target)] = shape[axis]
    return out[0], out[1], out[2]


def _orientation(header: Any) -> np.ndarray:
    """nibabel's ``io_orientation`` of the header's affine: for each voxel axis, the RAS+ axis it
    runs along and its direction.

    Raises
    ------
    InvalidInputError
        An affine that gives a voxel axis no direction (zero, NaN or infinite scales).
    """
    import nibabel as nib

    try:
        ornt = nib.orientations.io_orientation(header.get_best_affine())
    except Exception as e:
        raise InvalidInputError("The NIfTI file could not be read; its orientation is damaged.") from e
    if not np.isfinite(ornt).all():
        raise InvalidInputError(
            "The NIfTI file does not state a usable orientation: an axis of its voxel grid has no direction."
        )
    return ornt


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key in which digit runs compare as numbers: "IM2" < "IM10"; case is ignored."""
    parts = re.split(r"(\d+)", name.replace("\\", "/").casefold())
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts))


@dataclass(frozen=True)
class TiffStack:
    """One folder of TIFF slices, in the natural order of their names, with the sizes they hold."""

    files: list[tuple[str, bytes]]
    info: SeriesInfo
    sizes: frozenset[tuple[int, int]]

    def read(self, notes: list[str]) -> CtVolume:
        """The slices stacked into a CtVolume (1 mm voxels), with ``notes`` first among its warnings."""
        files, info, sizes = self.files, self.info, self.sizes
        if len(sizes) > 1:
            listed = ", ".join(f"{r} x {c}" for r, c in sorted(sizes))
            raise InconsistentSeriesError(
                f"The TIFF slices have different sizes ({listed} pixels); they do not form one volume."
            )
        if info.n_slices < 2:
            raise InvalidInputError("There is a single TIFF slice, and a single slice is not a volume.")
        if info.rows * info.columns * info.n_slices > MAX_VOXELS:
            raise InvalidInputError(
                f"These TIFF slices are too large to open ({info.n_slices} slices of {info.rows} x {info.columns} "
                f"pixels; the limit is {MAX_VOXELS / 2**20:.0f} million voxels)."
            )
        stack = np.empty((info.n_slices, info.rows, info.columns), dtype=np.float32)
        k = 0
        signed = False
        for _name, data in files:
            try:
                with Image.open(BytesIO(data), formats=["TIFF"]) as im:
                    for page in range(int(getattr(im, "n_frames", 1))):
                        im.seek(page)
                        if im.mode not in ("I;16", "I;16B", "I;16L", "I;16S", "I", "F", "L"):
                            raise InvalidInputError(
                                f"TIFF slice {k + 1} of {info.n_slices} is a colour image ('{im.mode}'), not a CT slice."
                            )
                        pixels = np.asarray(im)
                        if pixels.shape != (info.rows, info.columns):
                            raise InconsistentSeriesError(
                                "The TIFF slices have different sizes; they do not form one volume."
                            )
                        signed |= pixels.dtype.kind in "if" and bool((pixels < 0).any())
                        stack[k] = pixels
                        k += 1
            except InvalidInputError:  # also InconsistentSeriesError
                raise
            except Exception as e:
                raise InvalidInputError(
                    f"TIFF slice {k + 1} of {info.n_slices} could not be read; it may be truncated or damaged."
                ) from e
        notes.append(
            "TIFF slices state neither their position nor their size: they are stacked in the order of their "
            "file names (slice 2 before slice 10), and 1 x 1 x 1 mm voxels are assumed, so distances are not "
            "real millimetres and which end is the head is not known."
        )
        hu = _tiff_to_hu(stack, signed, notes)
        return CtVolume(
            hu=hu,
            spacing_mm=(1.0, 1.0, 1.0),
            series_uid=info.series_uid,
            description=info.description,
            window=None,
            n_files=info.n_files,
            warnings=tuple(notes),
        )


def tiff_stack(files: list[tuple[str, bytes]], index: int, n_groups: int) -> TiffStack:
    """Folder ``index`` of ``n_groups`` of TIFF slices, from the slices' headers; its made-up
    ``series_uid`` is "tiff-" and a hash of the names and contents."""
    files = sorted(files, key=lambda f: natural_key(f[0]))
    sizes = set()
    n_slices = 0
    for _name, data in files:
        try:
            with Image.open(BytesIO(data), formats=["TIFF"]) as im:
                sizes.add((im.height, im.width))
                n_slices += int(getattr(im, "n_frames", 1))
        except Exception as e:
            raise InvalidInputError("A TIFF slice could not be read; it may be truncated or damaged.") from e
    rows, columns = min(sizes)
    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode("utf-8", "replace") + b"\0" + hashlib.sha256(data).digest())
    uid = "tiff-" + digest.hexdigest()[:24]
    description = "TIFF slices" if n_groups == 1 else f"TIFF slices, folder {index} of {n_groups}"
    info = SeriesInfo(uid, description, "", len(files), rows, columns, n_slices)
    return TiffStack(files, info, frozenset(sizes))


def _tiff_to_hu(stack: np.ndarray, signed: bool, notes: list[str]) -> np.ndarray:
    """TIFF values -> HU, in place; the choice made is stated in ``notes`` (see the module)."""
    check_finite(stack, notes)
    sample = stack[:, ::4, ::4]
    low, high = (float(v) for v in np.percentile(sample, [1, 99]))
    if signed:
        notes.append("The TIFF values are signed and taken as Hounsfield units as they are.")
        if low > _NO_AIR_HU:
            notes.append(
                "These values do not look like Hounsfield units (chest CT shows air at about -1000 HU); "
                "densities and CT windows may be off."
            )
    elif low < 200 and 900 < high <= 4095:
        stack -= np.float32(_HU_OFFSET)
        notes.append(
            "The TIFF values look like a CT scanner's stored values (0 and up, air near 0), not Hounsfield "
            f"units; they were converted with HU = value - {_HU_OFFSET:.0f}, the usual rescale of CT scanners "
            "(TIFF does not store it). Check that air shows at about -1000 HU."
        )
    else:
        notes.append(
            f"The TIFF values (from {float(stack.min()):.0f} to {float(stack.max()):.0f}) do not look like "
            "Hounsfield units nor like a CT scanner's stored values; they are shown unchanged, so densities "
            "and CT windows will be off, and the models' results are unreliable."
        )
    return stack


def check_finite(values: np.ndarray, notes: list[str]) -> None:
    """NaN / infinite values (float files) -> the lowest finite value, in place, with a warning."""
    finite = np.isfinite(values)
    if finite.all():
        return
    if not finite.any():
        raise InvalidInputError("The volume holds no valid values (all are missing or infinite).")
    values[~finite] = values[finite].min()
    notes.append("Some voxels had no valid value (missing or infinite); they are shown as the lowest value.")
