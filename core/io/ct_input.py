"""Whatever a clinician gives as a CT series -> one :class:`CtVolume` in Hounsfield units.

Accepted, in any mix (the kind of each file is decided by its first bytes, never by its name):

- DICOM slices, with or without a ``.dcm`` extension, or one multi-frame (Enhanced) CT file;
  read by :mod:`core.io.ct_series`;
- a NIfTI-1 or NIfTI-2 volume (``.nii``, or gzip-compressed ``.nii.gz``), read with nibabel from
  memory (:mod:`core.io.ct_nifti_tiff`); other gzip-compressed files (a ``.dcm.gz``) are ignored;
- 16-bit TIFF slices (one file per slice, as COVID-CTset ships them, or multi-page TIFF), read by
  :mod:`core.io.ct_nifti_tiff`;
- zips of any of these, with subfolders, read in memory with :mod:`zipfile` (nothing is
  extracted, nothing is written to disk). Only one level is opened: a zip inside a zip is not
  opened; it is counted and reported ("unzip it first").

Each DICOM series, each NIfTI file and each folder of TIFF slices is one series; with several,
the caller chooses one by ``series_uid`` (:func:`list_ct_upload_series` lists them). A NIfTI file
or a TIFF folder gets a made-up ``series_uid`` ("nifti-..." or "tiff-..." and a hash of its
contents), stable from one call to the next. Anything else (text, PNG, PDF...) is ignored and
counted in a warning; when nothing usable remains, the error says so in plain words.

NIfTI, orientation and values
    The volume is put in the project's (z, y, x) order, the order of a DICOM axial series: axis 0
    from inferior to superior, axis 1 (rows) from anterior to posterior, axis 2 (columns) from
    the patient's right to the patient's left, so that an axial viewer that draws row 0 at the
    top and column 0 on the left shows it upright, in radiological convention. This is done as
    :func:`nibabel.as_closest_canonical` does it (flip and permute the voxel axes to the RAS+
    axes nearest to the affine, no resampling), on the float32 array, followed by
    ``transpose(2, 1, 0)`` and a flip of the last two axes (RAS+ -> S, P, L). An oblique affine
    is not resampled: a warning says so; a file without qform nor sform gets nibabel's default
    affine (as for Analyze files), with a warning. Values are the stored values times ``scl_slope`` plus ``scl_inter`` (nibabel
    applies them); a volume whose lowest value is above -500 has no air, which every chest CT
    has, so a warning says they are probably not Hounsfield units (values are kept as they are).
    Spacing comes from the header's zooms, permuted like the axes.

TIFF, order and values
    TIFF states no position, no spacing and no rescale. Slices are stacked in the natural order
    of their file names ("slice2" before "slice10"; the folder is the series), pages of a
    multi-page file in page order; 1 x 1 x 1 mm voxels are assumed. Values: a stack whose values
    are all >= 0, with air near 0 (1st percentile below 200) and tissue above 900 (99th
    percentile between 900 and 4095), looks like the unsigned stored values of a CT scanner
    before its rescale; they are mapped with HU = value - 1024, the rescale intercept that most
    scanners (and COVID-CTset's Siemens scanner) use. Signed values are taken as HU. Anything
    else is kept unchanged. Each choice is stated in a warning.

Limits (each refusal is an :class:`InvalidInputError` in plain words, raised before any pixel is
decoded; messages never name a file, since file names may carry patient names):
:data:`MAX_FILES` files after unzipping; zips whose members climb out of the zip (``../``,
absolute paths), are password-protected or use an unknown compression; zip bombs: per member a
declared size over :data:`MAX_MEMBER_BYTES` or a compression ratio over :data:`MAX_RATIO`
(members over :data:`RATIO_MIN_BYTES`), in all more than :data:`MAX_TOTAL_BYTES` of declared or
actually decompressed bytes (zips and gzip together); volumes over
:data:`core.io.ct_slices.MAX_VOXELS` voxels.
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path, PurePosixPath

from core.errors import InconsistentSeriesError, InvalidInputError
from core.io.ct_nifti_tiff import gunzip_head, natural_key, nifti_series, nifti_version, read_nifti, tiff_stack
from core.io.ct_series import DicomScan, SeriesInfo, scan_dicom
from core.io.decoding import looks_like_raw_dicom
from core.types import CtVolume

__all__ = [
    "MAX_FILES",
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "RATIO_MIN_BYTES",
    "list_ct_upload_series",
    "read_ct_path",
    "read_ct_upload",
]

logger = logging.getLogger(__name__)

#: Most files in one upload or folder, counted after unzipping (a thin-slice chest CT has < 1000).
MAX_FILES: int = 1000
#: Most bytes decompressed in all (zip members and gzip-compressed NIfTI) for one upload.
MAX_TOTAL_BYTES: int = 2 * 1024**3
#: Most bytes of one zip member, one gunzipped NIfTI, or one file read from a folder.
MAX_MEMBER_BYTES: int = 1024**3
#: Highest compression ratio (uncompressed / compressed) of a zip member over RATIO_MIN_BYTES.
MAX_RATIO: float = 200.0
#: Zip members up to this size are not held to MAX_RATIO (a blank slice compresses a lot).
RATIO_MIN_BYTES: int = 1024**2

_CHUNK = 16 * 1024**2
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_ZIP_COMPRESSIONS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA})
_NOTHING_USABLE = "a CT slice (DICOM or 16-bit TIFF), a NIfTI volume or a zip of them"


# --------------------------------------------------------------------------------------------
# Public functions


def list_ct_upload_series(files: Sequence[tuple[str, bytes]]) -> list[SeriesInfo]:
    """The CT series among uploaded files, so that a page can offer a choice.

    DICOM series first (in order of first appearance), then each NIfTI volume, then each folder
    of TIFF slices. Headers only: no pixel is decoded. An empty list when nothing is usable;
    the limits (see the module) raise :class:`InvalidInputError` as in :func:`read_ct_upload`.
    """
    collected = _collect_upload(files)
    return [candidate.info for candidate in _candidates(collected, _scan(collected))]


def read_ct_upload(files: Sequence[tuple[str, bytes]], series_uid: str | None = None) -> CtVolume:
    """Read uploaded files (``(name, bytes)`` pairs, as a file uploader gives them) into a volume.

    Parameters
    ----------
    files
        DICOM slices, zips, a NIfTI file or TIFF slices, in any order and mix; names are used
        only to group TIFF slices by folder and to order them, never shown.
    series_uid
        The series to read (a :attr:`SeriesInfo.series_uid` from :func:`list_ct_upload_series`);
        needed only when the files hold more than one series.

    Returns
    -------
    CtVolume
        ``hu`` float32 (z, y, x) in HU, ``spacing_mm`` (z, y, x), with warnings in plain words.

    Raises
    ------
    InvalidInputError
        Nothing usable, an unknown ``series_uid``, a single slice, a limit exceeded, an unsafe
        or damaged zip, an unreadable NIfTI or TIFF.
    InconsistentSeriesError
        Several series and none chosen, or slices that do not form one volume.
    UnsupportedDicomError
        DICOM pixel data that cannot be decoded.
    """
    return _read_chosen(_collect_upload(files), series_uid)


def read_ct_path(path: str | Path, series_uid: str | None = None) -> CtVolume:
    """Read a CT series from disk, for the command line: a folder (read recursively, with the
    zips in it), a zip, a NIfTI file, a single multi-frame DICOM file, or a folder of TIFF slices.

    A single-frame DICOM file or a single-page TIFF is one slice, not a volume: a plain error.
    Files are read into memory within the limits of the module; nothing is written.
    """
    root = Path(path)
    try:
        if root.is_dir():
            files = _read_folder(root)
        elif root.is_file():
            size = root.stat().st_size
            if size > MAX_TOTAL_BYTES:
                raise InvalidInputError(
                    f"This file is too large to read ({_size(size)}; the limit is {_size(MAX_TOTAL_BYTES)})."
                )
            files = [(root.name, root.read_bytes())]
        else:
            raise InvalidInputError("The CT series to read was not found: the path does not exist.")
    except OSError as e:
        raise InvalidInputError("The CT files could not be read (a file may be locked or not permitted).") from e
    return _read_chosen(_collect_upload(files), series_uid)


# --------------------------------------------------------------------------------------------
# Collecting the files: limits, unzipping, kinds


@dataclass
class _Budget:
    """Bytes decompressed so far for one upload, against :data:`MAX_TOTAL_BYTES`."""

    spent: int = 0

    @property
    def left(self) -> int:
        return MAX_TOTAL_BYTES - self.spent

    def spend(self, n: int) -> None:
        self.spent += n
        if self.spent > MAX_TOTAL_BYTES:
            raise InvalidInputError(_too_much_message())


@dataclass
class _Collected:
    """The files of one upload after unzipping, sorted by kind (names kept, never shown)."""

    n_files: int = 0  # after unzipping, zips themselves not counted
    dicom: list[tuple[str, bytes]] = field(default_factory=list)
    nifti: list[tuple[str, bytes]] = field(default_factory=list)  # possibly still gzip-compressed
    tiff: list[tuple[str, bytes]] = field(default_factory=list)
    n_other: int = 0  # not DICOM, NIfTI, TIFF nor zip
    n_nested_zips: int = 0
    budget: _Budget = field(default_factory=_Budget)

    def notes(self) -> list[str]:
        if self.n_nested_zips == 1:
            return ["1 zip inside a zip was not opened (only one level of zips is read); unzip it first."]
        if self.n_nested_zips:
            return [
                f"{self.n_nested_zips} zips inside a zip were not opened (only one level of zips is read); "
                "unzip them first."
            ]
        return []


def _collect_upload(files: Sequence[tuple[str, bytes]]) -> _Collected:
    """Check the limits, open the zips (one level) and sort every file by kind."""
    if isinstance(files, (bytes, bytearray, str)) or not isinstance(files, Sequence):
        raise InvalidInputError("The CT files could not be read: expected a list of files.")
    if not files:
        raise InvalidInputError("No files were given.")
    if len(files) > MAX_FILES:
        raise InvalidInputError(_too_many_message(len(files)))
    loose: list[tuple[str, bytes]] = []
    for item in files:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise InvalidInputError("The CT files could not be read: expected each file as a name and its contents.")
        name, data = item
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if not isinstance(data, bytes):
            raise InvalidInputError("The CT files could not be read: expected each file's contents as bytes.")
        loose.append((str(name), data))

    # First every zip's directory: the file count and the zips' safety are checked before any
    # member is read.
    zips: list[tuple[zipfile.ZipFile, list[zipfile.ZipInfo]]] = []
    n_files = 0
    try:
        for _name, data in loose:
            if _is_zip(data):
                archive = _open_zip(data)
                zips.append((archive, _zip_members(archive)))
                n_files += len(zips[-1][1])
            else:
                n_files += 1
            if n_files > MAX_FILES:
                raise InvalidInputError(_too_many_message(n_files, unzipped=True))
        collected = _Collected(n_files=n_files)
        declared = sum(info.file_size for _, members in zips for info in members)
        if declared > MAX_TOTAL_BYTES:
            raise InvalidInputError(_too_much_message())
        for name, data in loose:
            if not _is_zip(data):
                _sort(collected, name, data)
        for archive, members in zips:
            for info in members:
                data = _read_member(archive, info, collected.budget)
                if _is_zip(data):
                    collected.n_nested_zips += 1
                else:
                    _sort(collected, info.filename, data)
    finally:
        for archive, _ in zips:
            archive.close()
    logger.debug(
        "CT upload: %d files, %d DICOM, %d NIfTI, %d TIFF, %d other, %d nested zips",
        collected.n_files,
        len(collected.dicom),
        len(collected.nifti),
        len(collected.tiff),
        collected.n_other,
        collected.n_nested_zips,
    )
    return collected


def _sort(collected: _Collected, name: str, data: bytes) -> None:
    kind = _kind(data)
    if kind == "dicom":
        collected.dicom.append((name, data))
    elif kind == "nifti":
        collected.nifti.append((name, data))
    elif kind == "tiff":
        collected.tiff.append((name, data))
    else:
        collected.n_other += 1


def _kind(data: bytes) -> str:
    """The kind of a file from its first bytes: dicom, nifti (possibly gzip-compressed), tiff, zip
    or other."""
    # DICOM first: its 128-byte preamble may itself be a TIFF header (dual-personality files).
    if data[128:132] == b"DICM":
        return "dicom"
    if _is_zip(data):
        return "zip"
    if data[:2] == b"\x1f\x8b":
        return "nifti" if nifti_version(gunzip_head(data)) else "other"
    if nifti_version(data):
        return "nifti"
    if data[:4] in _TIFF_MAGIC:
        return "tiff"
    if looks_like_raw_dicom(data):
        return "dicom"
    return "other"


def _is_zip(data: bytes) -> bool:
    return data[:4] in (b"PK\x03\x04", b"PK\x05\x06")


def _read_folder(root: Path) -> list[tuple[str, bytes]]:
    """All files under ``root`` (recursively, sorted), counted and sized before any is read."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for filename in sorted(filenames):
            paths.append(Path(dirpath) / filename)
            if len(paths) > MAX_FILES:
                raise InvalidInputError(_too_many_message(len(paths), folder=True))
    if not paths:
        raise InvalidInputError("The folder holds no files.")
    sizes = [p.stat().st_size for p in paths]
    if max(sizes) > MAX_MEMBER_BYTES:
        raise InvalidInputError(
            f"A file in the folder is too large to read ({_size(max(sizes))}; "
            f"the limit is {_size(MAX_MEMBER_BYTES)} per file)."
        )
    if sum(sizes) > MAX_TOTAL_BYTES:
        raise InvalidInputError(
            f"The folder holds too much data to read ({_size(sum(sizes))}; the limit is {_size(MAX_TOTAL_BYTES)})."
        )
    return [(p.relative_to(root).as_posix(), p.read_bytes()) for p in paths]


# --------------------------------------------------------------------------------------------
# Zips


def _open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError) as e:
        raise InvalidInputError("A zip file could not be read; it may be truncated or damaged.") from e
    except NotImplementedError as e:  # a member needs a newer zip version than Python reads
        raise InvalidInputError(
            "A zip file uses a zip feature this application cannot read; re-create it with a usual zip tool."
        ) from e


def _zip_members(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """The members to read (files, not folders nor macOS metadata), after the safety checks on
    the zip's directory: paths, encryption, compression method, declared sizes and ratios."""
    members = []
    for info in archive.infolist():
        if _climbs_out(info.filename) or _climbs_out(info.orig_filename):
            raise InvalidInputError(
                "A zip file was refused: it holds a file whose path points outside the zip "
                "(for example '../' or an absolute path), which is unsafe."
            )
        if info.is_dir() or info.filename.startswith("__MACOSX/"):
            continue
        if info.flag_bits & 0x1:
            raise InvalidInputError("A zip file is password-protected; unzip it first and upload its files.")
        if info.compress_type not in _ZIP_COMPRESSIONS:
            raise InvalidInputError(
                "A zip file uses a compression method this application cannot read; "
                "re-create it with the usual 'deflate' compression."
            )
        if info.file_size > MAX_MEMBER_BYTES:
            raise InvalidInputError(
                f"A file in a zip is too large to read ({_size(info.file_size)}; "
                f"the limit is {_size(MAX_MEMBER_BYTES)} per file)."
            )
        if info.file_size > RATIO_MIN_BYTES and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise InvalidInputError(_bomb_message())
        members.append(info)
    return members


def _climbs_out(name: str) -> bool:
    """Whether a member's path is absolute or climbs above the zip's root."""
    parts = name.replace("\\", "/").split("/")
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in parts


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, budget: _Budget) -> bytes:
    """A member's bytes, read in chunks that are counted as they come: more than it declares
    (zipfile already stops there), than :data:`MAX_MEMBER_BYTES`, than the ratio allows or than
    is left of the budget is refused."""
    limit = min(info.file_size, MAX_MEMBER_BYTES, budget.left)
    chunks = []
    n = 0
    try:
        with archive.open(info) as member:
            while chunk := member.read(min(_CHUNK, limit + 1 - n)):
                n += len(chunk)
                if n > limit or (n > RATIO_MIN_BYTES and n > MAX_RATIO * max(info.compress_size, 1)):
                    raise InvalidInputError(_bomb_message())
                chunks.append(chunk)
                if n == limit:
                    if member.read(1):
                        raise InvalidInputError(_bomb_message())
                    break
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as e:
        raise InvalidInputError("A file in a zip could not be read; the zip may be truncated or damaged.") from e
    except NotImplementedError as e:
        raise InvalidInputError(
            "A zip file uses a compression method this application cannot read; "
            "re-create it with the usual 'deflate' compression."
        ) from e
    budget.spend(n)
    return b"".join(chunks)


# --------------------------------------------------------------------------------------------
# Choosing a series


@dataclass(frozen=True)
class _Candidate:
    info: SeriesInfo
    read: Callable[[list[str]], CtVolume]  # notes to put first -> volume


def _scan(collected: _Collected) -> DicomScan:
    return scan_dicom(collected.dicom)


def _candidates(collected: _Collected, scan: DicomScan) -> list[_Candidate]:
    """Every series that can be read: DICOM series, NIfTI files, folders of TIFF slices."""
    out: list[_Candidate] = []
    if scan.slices:
        for info in scan.series():
            out.append(_Candidate(info, _dicom_reader(scan, info.series_uid)))
    for _name, data in collected.nifti:
        out.append(_nifti_candidate(data, collected.budget))
    groups: dict[str, list[tuple[str, bytes]]] = {}
    for name, data in collected.tiff:
        groups.setdefault(str(PurePosixPath(name.replace("\\", "/")).parent), []).append((name, data))
    for index, folder in enumerate(sorted(groups, key=natural_key)):
        stack = tiff_stack(groups[folder], index + 1, len(groups))
        out.append(_Candidate(stack.info, stack.read))
    return out


def _read_chosen(collected: _Collected, series_uid: str | None) -> CtVolume:
    scan = _scan(collected)
    candidates = _candidates(collected, scan)
    if not candidates:
        raise InvalidInputError(_nothing_usable_message(collected, scan))
    if series_uid is None:
        if len(candidates) > 1:
            choices = "; ".join(c.info.label for c in candidates)
            raise InconsistentSeriesError(f"These files hold {len(candidates)} series; please choose one: {choices}.")
        chosen = candidates[0]
    else:
        found = [c for c in candidates if c.info.series_uid == series_uid]
        if not found:
            choices = "; ".join(c.info.label for c in candidates)
            raise InvalidInputError(f"The chosen series is not among these files, which hold: {choices}.")
        chosen = found[0]
    return chosen.read([*scan.notes(collected.n_other), *collected.notes()])


def _dicom_reader(scan: DicomScan, series_uid: str) -> Callable[[list[str]], CtVolume]:
    return lambda notes: scan.read_volume(series_uid, notes)


def _nothing_usable_message(collected: _Collected, scan: DicomScan) -> str:
    total = collected.n_files
    if total == 0:
        return "The zip file given holds no files."
    if total == 1:
        message = f"The file given is not {_NOTHING_USABLE}."
    else:
        message = f"None of the {total} files is {_NOTHING_USABLE}."
    if scan.not_ct:
        message += f" The DICOM images among them are {scan.not_ct_words()}."
    if collected.n_nested_zips:
        message += " A zip inside a zip is not opened: unzip it first."
    return message


# --------------------------------------------------------------------------------------------
# NIfTI: the gzip side (the reader is core.io.ct_nifti_tiff)


def _gunzip(data: bytes, limit: int) -> bytes:
    """Decompress gzip ``data`` (several concatenated members too), refusing more than ``limit``
    bytes as they come, never after."""
    out: list[bytes] = []
    total = 0
    rest = memoryview(data)
    while len(rest) >= 2 and bytes(rest[:2]) == b"\x1f\x8b":
        stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
        pos = 0
        while not stream.eof:
            if stream.unconsumed_tail:
                chunk: bytes | memoryview = stream.unconsumed_tail
            elif pos < len(rest):
                chunk = rest[pos : pos + _CHUNK]
                pos += len(chunk)
            else:
                raise InvalidInputError("The NIfTI file is cut short (its gzip compression ends too early).")
            piece = stream.decompress(chunk, limit + 1 - total)
            total += len(piece)
            if total > limit:
                raise InvalidInputError(
                    f"The compressed NIfTI file unpacks to more than {_size(limit)}, the most that can be read."
                )
            out.append(piece)
        rest = memoryview(stream.unused_data + bytes(rest[pos:])) if stream.unused_data or pos < len(rest) else rest[:0]
    return b"".join(out)


def _nifti_candidate(data: bytes, budget: _Budget) -> _Candidate:
    info = nifti_series(data)
    return _Candidate(info, lambda notes: read_nifti(_gunzipped(data, budget), info.series_uid, notes))


def _gunzipped(data: bytes, budget: _Budget) -> bytes:
    """``data``, decompressed if gzip-compressed, within :data:`MAX_MEMBER_BYTES` and the budget."""
    if data[:2] != b"\x1f\x8b":
        return data
    data = _gunzip(data, min(MAX_MEMBER_BYTES, budget.left))
    budget.spend(len(data))
    return data


# --------------------------------------------------------------------------------------------
# Shared


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1024**3:.1f} GB" if n_bytes >= 1024**3 else f"{n_bytes / 1024**2:.0f} MB"


def _too_many_message(n: int, *, unzipped: bool = False, folder: bool = False) -> str:
    if folder:
        found = f"This folder holds more than {MAX_FILES} files"
    elif unzipped:
        found = f"These files hold at least {n} files once unzipped"
    else:
        found = f"{n} files were given"
    return f"{found}; the limit is {MAX_FILES} files, about one CT series. Please give one series at a time."


def _too_much_message() -> str:
    return (
        f"These files unpack to more than {_size(MAX_TOTAL_BYTES)}, the most that can be read at once; "
        "please give one series at a time."
    )


def _bomb_message() -> str:
    return (
        "A zip file was refused: a file in it unpacks to far more than its compressed size (a 'zip bomb'), "
        "which is unsafe."
    )
