"""Read one 2D image (PNG, JPEG, BMP, TIFF or DICOM) from bytes into an :class:`XrayImage`.

The format is taken from the bytes' magic numbers, never from the file name, which only appears
in messages. Everything happens in memory. Every failure is an :class:`InvalidInputError` (an
:class:`UnsupportedDicomError` for DICOM problems) whose message names the file in plain words;
the third-party cause is chained.

Pixel conventions (see :class:`XrayImage`): float32 (H, W), C-contiguous, larger = brighter.

- 8-bit raster images keep their values 0..255 with the window (127.5, 255).
- 16-bit and float raster images keep their raw values; the window is the 0.5-99.5 percentile
  range, because a 12-bit CT slice stored in 16 bits looks black at the full 16-bit range.
- DICOM goes through the modality LUT (rescale slope / intercept or a Modality LUT Sequence);
  MONOCHROME1 is inverted; the window comes from Window Center / Width, else an approximation
  of the VOI LUT, else the percentile range.
- Colour images become luminance (ITU-R BT.601 weights) with a warning, except RGB files whose
  three channels hold the same grey (a common way of saving radiographs).
"""

from __future__ import annotations

import logging
import math
import struct
from io import BytesIO

import numpy as np
import pydicom
import pydicom.uid
from PIL import Image, ImageOps
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import (
    apply_color_lut,
    apply_modality_lut,
    apply_voi,
    get_decoder,
    pixel_array,
)

from core.errors import InvalidInputError, UnsupportedDicomError
from core.io.decoding import GREY_PHOTOMETRICS, is_decoder_failure, looks_like_raw_dicom
from core.io.numbers import dicom_number
from core.types import XrayImage

logger = logging.getLogger(__name__)

#: Largest image accepted, in pixels (width x height), checked from the header before decoding.
MAX_PIXELS: int = 50_000_000
#: Largest file accepted, in bytes.
MAX_BYTES: int = 200 * 1024 * 1024

_SUPPORTED = "PNG, JPEG, BMP, TIFF or DICOM"
_BMP_DIB_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_LABELS = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF", "dicom": "DICOM"}
# Pillow plugin per format: Image.open tries only that one, never guesses from other plugins.
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "bmp": "BMP", "tiff": "TIFF"}

# Files people upload by mistake, recognised so the message can say what they are.
_OTHER_KINDS: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF", "a PDF document, not an image"),
    (0, b"PK\x03\x04", "a ZIP archive, not an image"),
    (0, b"\x1f\x8b", "a gzip-compressed file, not an image"),
    (0, b"GIF8", "a GIF image, a format that is not supported"),
    (8, b"WEBP", "a WebP image, a format that is not supported"),
    (4, b"ftypheic", "a HEIC photo, a format that is not supported"),
    (4, b"ftypheix", "a HEIC photo, a format that is not supported"),
    (4, b"ftypmif1", "a HEIF photo, a format that is not supported"),
    (0, b"\x00\x00\x00\x0cjP  ", "a JPEG 2000 image, a format that is not supported"),
)

# Colour encodings pydicom turns into RGB (YBR_FULL*: by conversion, YBR_ICT/RCT: in the
# JPEG 2000 decoder) or, for PALETTE COLOR, that apply_color_lut maps to RGB.
_COLOUR_PHOTOMETRICS = frozenset({"RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT", "PALETTE COLOR"})
# Modalities that are plain projection radiographs ("OT" is common for secondary captures).
_RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG", "OT"})
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")

_LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
# Largest channel difference (in 8-bit levels) still taken as grey: lossy JPEG and YBR -> RGB
# conversion can leave +-1 or 2 levels between the channels of a grey image.
_GREY_TOLERANCE_8BIT = 2
# Percentiles are taken on a regular subsample of about this many pixels: exact enough for a
# display window and ~15x faster than on a full 2048 x 2048 image.
_WINDOW_SAMPLES = 1 << 18
_WINDOW_PERCENTILES = (0.5, 99.5)
_WINDOW_8BIT = (127.5, 255.0)


def read_xray(data: bytes, name: str = "upload") -> XrayImage:
    """Read one 2D image from its bytes.

    Parameters
    ----------
    data
        The whole file (``bytes``, ``bytearray`` or ``memoryview``), at most :data:`MAX_BYTES`.
    name
        How to call the file in messages (e.g. the uploaded file name); not used otherwise.

    Returns
    -------
    XrayImage
        ``pixels`` float32 (H, W); ``file_format`` one of "png", "jpeg", "bmp", "tiff", "dicom";
        ``photometric`` is the file's own encoding ("MONOCHROME1" pixels are already inverted;
        raster images say "MONOCHROME2", or "RGB" when they hold colour);
        ``pixel_spacing_mm`` (row, column) spacing in mm, DICOM only.

    Raises
    ------
    InvalidInputError
        Empty, too large, truncated or damaged input, or not an image in a supported format.
    UnsupportedDicomError
        A DICOM file without pixel data, or with a compression or colour encoding we cannot use.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise InvalidInputError(f"{name} could not be read: expected the file's contents as bytes.")
    if len(data) == 0:
        raise InvalidInputError(f"{name} is empty (0 bytes).")
    if len(data) > MAX_BYTES:
        raise InvalidInputError(
            f"{name} is too large ({len(data) / 2**20:.0f} MB; the limit is {MAX_BYTES / 2**20:.0f} MB)."
        )

    fmt = _detect_format(data)
    if fmt == "dicom":
        if data[128:132] != b"DICM":  # "DICM" without the 128-byte preamble
            data = bytes(128) + data
        return _read_dicom(data, name, force=False)
    if fmt is not None:
        return _read_raster(data, name, fmt)

    for offset, magic, kind in _OTHER_KINDS:
        if data[offset : offset + len(magic)] == magic:
            raise InvalidInputError(f"{name} is {kind}. Please upload a {_SUPPORTED} file.")
    if looks_like_raw_dicom(data):
        return _read_raw_dicom(data, name)
    raise InvalidInputError(f"{name} is not a recognised image format ({_SUPPORTED}).")


# --------------------------------------------------------------------------------------------
# Format detection and header sizes


def _detect_format(data: bytes) -> str | None:
    # DICOM first: its 128-byte preamble may itself be a TIFF header (dual-personality files).
    if data[128:132] == b"DICM" or data[:4] == b"DICM":
        return "dicom"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    # "BM" alone is too weak a signature; also require a known DIB header size.
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    return None


def _header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from the file header without decoding pixels; None when not found."""
    try:
        if fmt == "png":
            return _png_size(data)
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "bmp":
            return _bmp_size(data)
        if fmt == "tiff":
            return _tiff_size(data)
    except struct.error:
        return None
    return None


def _png_size(data: bytes) -> tuple[int, int] | None:
    if data[12:16] != b"IHDR":
        return None
    width, height = struct.unpack_from(">II", data, 16)
    return int(width), int(height)


_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack_from(">HH", data, i + 5)
            return int(width), int(height)
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _bmp_size(data: bytes) -> tuple[int, int] | None:
    if int.from_bytes(data[14:18], "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit fields
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return abs(int(width)), abs(int(height))  # negative height = top-down rows


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack_from(order + "H", data, 2)[0] != 42:  # BigTIFF: Pillow checks the size
        return None
    ifd = struct.unpack_from(order + "I", data, 4)[0]
    n_entries = struct.unpack_from(order + "H", data, ifd)[0]
    found: dict[int, int] = {}
    for k in range(n_entries):
        entry = ifd + 2 + 12 * k
        tag, value_type = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength
            if value_type == 3:  # SHORT
                found[tag] = struct.unpack_from(order + "H", data, entry + 8)[0]
            elif value_type == 4:  # LONG
                found[tag] = struct.unpack_from(order + "I", data, entry + 8)[0]
    if 256 in found and 257 in found:
        return int(found[256]), int(found[257])
    return None


def _too_large_message(name: str, width: int | None, height: int | None) -> str:
    limit = f"limit {MAX_PIXELS / 1e6:g} megapixels"
    if width is None or height is None:
        return f"{name} is too large to open safely ({limit})."
    return f"{name} is too large ({width} x {height} pixels, {limit})."


def _check_pixel_count(name: str, width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise InvalidInputError(_too_large_message(name, width, height))
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"{name} has no pixels ({width} x {height}).")


# --------------------------------------------------------------------------------------------
# PNG, JPEG, BMP, TIFF through Pillow


def _read_raster(data: bytes, name: str, fmt: str) -> XrayImage:
    label = _LABELS[fmt]
    size = _header_size(data, fmt)
    if size is not None:
        _check_pixel_count(name, *size)
    warnings_out: list[str] = []
    try:
        # Our limit (checked above from the header and here on the lazy open) is below Pillow's
        # own, so Pillow's bomb error can only fire if other code lowered its global limit. No
        # warnings filter is touched: that state is process-wide and the server is threaded.
        with Image.open(BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as im:
            _check_pixel_count(name, *im.size)
            n_pages = int(getattr(im, "n_frames", 1)) if fmt == "tiff" else 1
            im.load()
            _apply_exif_orientation(im)
            pixels, bits_stored, is_colour = _pillow_to_grey(im)
    except Image.DecompressionBombError as e:
        width, height = size if size is not None else (None, None)
        raise InvalidInputError(_too_large_message(name, width, height)) from e
    except BaseException as e:
        if not is_decoder_failure(e):
            raise
        raise InvalidInputError(
            f"{name} could not be decoded as a {label} image; the file may be truncated or damaged."
        ) from e

    if n_pages > 1:
        warnings_out.append(f"{name} has {n_pages} pages; only the first one is shown.")
    if is_colour:
        warnings_out.append(_colour_warning(name))
    if bits_stored == 8:
        center, width = _WINDOW_8BIT
    else:
        center, width = _percentile_window(pixels)
    logger.debug("read a %s image: %d x %d, %d bits", label, pixels.shape[1], pixels.shape[0], bits_stored)
    return XrayImage(
        pixels=pixels,
        window_center=center,
        window_width=width,
        source_name=name,
        file_format=fmt,
        bits_stored=bits_stored,
        photometric="RGB" if is_colour else "MONOCHROME2",
        warnings=tuple(warnings_out),
    )


def _apply_exif_orientation(im: Image.Image) -> None:
    """Rotate as the EXIF orientation says (phone photos of a light box); a malformed EXIF
    block is ignored rather than making an otherwise good image unreadable."""
    try:
        ImageOps.exif_transpose(im, in_place=True)
    except BaseException as e:
        if not is_decoder_failure(e):
            raise
        logger.debug("ignored an unreadable EXIF orientation")


def _pillow_to_grey(im: Image.Image) -> tuple[np.ndarray, int, bool]:
    """A loaded Pillow image -> (float32 (H, W) pixels, bits stored, holds colour)."""
    mode = im.mode
    if mode.startswith("I") or mode == "F":  # I;16, I;16B, I;16L, I;16N, I (int32), F (float32)
        arr = np.asarray(im)
        pixels = arr.astype(np.float32)  # also swaps big-endian I;16B to native order
        if mode.startswith("I;16"):
            bits = 16
        elif mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 0xFFFF:
            bits = 16  # Pillow opens some 16-bit files as 32-bit "I"
        else:
            bits = 32
        return (_replace_non_finite(pixels) if mode == "F" else pixels), bits, False
    if mode == "L":
        return np.asarray(im).astype(np.float32), 8, False
    if mode in ("1", "LA", "La"):
        return np.asarray(im.convert("L")).astype(np.float32), 8, False
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
    elif mode not in ("RGB", "RGBA", "RGBX", "RGBa"):  # CMYK, YCbCr, LAB, HSV
        im = im.convert("RGB")
    rgb = np.asarray(im)[..., :3]
    pixels, is_colour = _rgb_to_grey(rgb)
    return pixels, 8, is_colour


# --------------------------------------------------------------------------------------------
# DICOM


def _read_raw_dicom(data: bytes, name: str) -> XrayImage:
    """Last resort: a dataset without preamble nor meta header, accepted only with pixel data."""
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
        has_pixels = any(k in ds for k in _PIXEL_DATA_KEYWORDS)
        is_dicom = has_pixels or "SOPClassUID" in ds
    except BaseException as e:
        if not is_decoder_failure(e):
            raise
        raise InvalidInputError(f"{name} is not a recognised image format ({_SUPPORTED}).") from e
    if not is_dicom:
        raise InvalidInputError(f"{name} is not a recognised image format ({_SUPPORTED}).")
    return _dataset_to_image(ds, name)


def _read_dicom(data: bytes, name: str, *, force: bool) -> XrayImage:
    try:
        ds = pydicom.dcmread(BytesIO(data), force=force)
    except BaseException as e:
        if not is_decoder_failure(e):
            raise
        raise UnsupportedDicomError(f"{name} could not be read as DICOM; the file may be truncated or damaged.") from e
    return _dataset_to_image(ds, name)


def _dataset_to_image(ds: Dataset, name: str) -> XrayImage:
    try:
        return _decode_dataset(ds, name)
    except BaseException as e:
        if not is_decoder_failure(e):
            raise
        raise UnsupportedDicomError(
            f"{name}: the DICOM image data could not be decoded; the file may be truncated or damaged."
        ) from e


def _decode_dataset(ds: Dataset, name: str) -> XrayImage:
    if not any(k in ds for k in _PIXEL_DATA_KEYWORDS):
        hint = "; the file may be truncated" if _expects_pixels(ds) else ""
        raise UnsupportedDicomError(f"{name} is a DICOM file without image data (no Pixel Data){hint}.")
    tsyntax = _transfer_syntax(ds, name)

    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if not photometric:
        raise UnsupportedDicomError(
            f"{name} does not say how its DICOM pixels encode grey levels or colours (no Photometric Interpretation)."
        )
    if photometric not in GREY_PHOTOMETRICS | _COLOUR_PHOTOMETRICS:
        raise UnsupportedDicomError(f"{name} uses the DICOM colour encoding '{photometric}', which is not supported.")
    samples = dicom_number(ds.get("SamplesPerPixel"))
    if photometric in GREY_PHOTOMETRICS and samples not in (None, 1.0):
        raise UnsupportedDicomError(
            f"{name} says its pixels are grey ({photometric}) but have {samples:g} values each; "
            "a grey DICOM image has one."
        )
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    _check_pixel_count(name, columns, rows)
    n_frames = _number_of_frames(ds)

    try:
        decoder = get_decoder(tsyntax)
    except NotImplementedError as e:
        raise UnsupportedDicomError(
            f"{name} is stored as '{tsyntax.name}', a DICOM compression this application cannot decode."
        ) from e
    if not decoder.is_available:
        raise UnsupportedDicomError(
            f"{name} is stored as '{tsyntax.name}'; the decoder for this DICOM compression is not installed."
        )
    try:
        # Only the first frame is decoded; view_only avoids a copy of uncompressed data, but
        # where Bits Stored < Bits Allocated pydicom must mask the unused high bits (a copy).
        full_words = dicom_number(ds.get("BitsStored")) == dicom_number(ds.get("BitsAllocated"))
        arr = pixel_array(ds, index=0, view_only=full_words)
    except BaseException as e:
        if not is_decoder_failure(e):
            raise
        raise UnsupportedDicomError(
            f"{name}: the DICOM image data ('{tsyntax.name}') could not be decoded; "
            "the file may be truncated or damaged."
        ) from e

    notes: list[str] = []
    if n_frames > 1:
        notes.append(f"{name} has {n_frames} frames; only the first one is shown.")
    modality = str(ds.get("Modality") or "").strip().upper() or None
    if modality is not None and modality not in _RADIOGRAPH_MODALITIES:
        notes.append(f"{name} has modality {modality}; it may not be a chest radiograph.")

    bits_stored = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    if photometric in GREY_PHOTOMETRICS:
        pixels = _modality_values(arr, ds)
        if arr.dtype.kind == "f":  # Float Pixel Data may hold NaN
            _replace_non_finite(pixels)
        window = _dicom_window(ds)
        if photometric == "MONOCHROME1":
            # Stored small = bright; flip within the full range the modality LUT can output so
            # that the same file always maps the same way, whatever its pixel content.
            low, high = _modality_range(arr, ds)
            np.subtract(np.float32(low + high), pixels, out=pixels)
            if window is not None:
                window = (low + high - window[0], window[1])
        center, width = window if window is not None else _percentile_window(pixels)
    else:
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
            bits_stored = arr.dtype.itemsize * 8  # the palette's output depth, not the index's
        pixels, is_colour = _rgb_to_grey(arr)
        if is_colour:
            notes.append(_colour_warning(name))
        center, width = _percentile_window(pixels)

    logger.debug(
        "read a DICOM image: %d x %d, modality %s, %s, %s, %d frame(s)",
        columns,
        rows,
        modality,
        photometric,
        tsyntax.name,
        n_frames,
    )
    return XrayImage(
        pixels=pixels,
        window_center=float(center),
        window_width=float(width),
        source_name=name,
        file_format="dicom",
        bits_stored=bits_stored,
        photometric=photometric,
        modality=modality,
        pixel_spacing_mm=_pixel_spacing(ds),
        warnings=tuple(notes),
    )


def _expects_pixels(ds: Dataset) -> bool:
    """Whether the dataset says it is an image (so missing pixels mean a cut-off file)."""
    file_meta = getattr(ds, "file_meta", None)
    sop_class = ds.get("SOPClassUID") or (file_meta.get("MediaStorageSOPClassUID") if file_meta else None)
    sop_name = getattr(sop_class, "name", "") if sop_class else ""
    return "Rows" in ds or "Image Storage" in str(sop_name)


def _transfer_syntax(ds: Dataset, name: str) -> pydicom.uid.UID:
    """The dataset's Transfer Syntax UID; for a dataset read without meta header, the encoding
    pydicom found while parsing (only possible for uncompressed pixel data)."""
    file_meta = getattr(ds, "file_meta", None)
    tsyntax = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if tsyntax:
        return pydicom.uid.UID(tsyntax)
    pixel_element = next(ds[k] for k in _PIXEL_DATA_KEYWORDS if k in ds)
    implicit_vr, little_endian = ds.original_encoding
    if pixel_element.is_undefined_length or little_endian is None:  # compressed: codec unknown
        raise UnsupportedDicomError(f"{name} does not say how its DICOM image data is stored (no Transfer Syntax).")
    if implicit_vr:
        inferred = pydicom.uid.ImplicitVRLittleEndian
    elif little_endian:
        inferred = pydicom.uid.ExplicitVRLittleEndian
    else:
        inferred = pydicom.uid.ExplicitVRBigEndian
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = inferred
    return inferred


def _number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def _modality_values(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> modality units (e.g. HU), float32 (H, W), a new C-contiguous array."""
    if ds.get("ModalityLUTSequence"):
        return np.ascontiguousarray(apply_modality_lut(arr, ds), dtype=np.float32)
    # Rescale done here in float32: pydicom's apply_modality_lut upcasts to float64, which
    # doubles memory and time on a 2048 x 2048 radiograph for no useful precision.
    slope = dicom_number(ds.get("RescaleSlope"))
    intercept = dicom_number(ds.get("RescaleIntercept"))
    if slope is not None and slope != 1.0:
        out = np.multiply(arr, np.float32(slope), dtype=np.float32)
    else:
        out = arr.astype(np.float32)  # always a copy: the input may be a read-only view
    if intercept:
        out += np.float32(intercept)
    return out


def _modality_range(arr: np.ndarray, ds: Dataset) -> tuple[float, float]:
    """The (low, high) modality values that the stored bit depth allows (float pixel data:
    its actual range)."""
    if arr.dtype.kind == "f":
        ends = np.array([np.nanmin(arr), np.nanmax(arr)], dtype=np.float64)
    else:
        bits = min(int(ds.get("BitsStored") or 64), arr.dtype.itemsize * 8)
        if int(ds.get("PixelRepresentation") or 0) == 1:
            ends = np.array([-(1 << (bits - 1)), (1 << (bits - 1)) - 1], dtype=np.int64)
        else:
            ends = np.array([0, (1 << bits) - 1], dtype=np.int64)
    mapped = _modality_values(ends, ds)
    return float(mapped.min()), float(mapped.max())


def _dicom_window(ds: Dataset) -> tuple[float, float] | None:
    """(center, width) in modality units for ``XrayImage.windowed``, or None when absent."""
    center = dicom_number(ds.get("WindowCenter"))
    width = dicom_number(ds.get("WindowWidth"))
    if center is not None and width is not None and width > 0:
        function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
        if function == "LINEAR" and width > 1:
            # DICOM's LINEAR window spans [c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2];
            # XrayImage.windowed uses [c - w / 2, c + w / 2] (LINEAR_EXACT).
            return center - 0.5, width - 1.0
        return center, width  # LINEAR_EXACT exactly; SIGMOID approximated by its linear part
    if ds.get("VOILUTSequence"):
        return _voi_lut_window(ds)
    return None


def _voi_lut_window(ds: Dataset) -> tuple[float, float] | None:
    """The linear window closest to the first VOI LUT: the input range over which it rises."""
    item = ds.VOILUTSequence[0]
    descriptor = item.LUTDescriptor
    n_entries = int(descriptor[0]) or 1 << 16
    first_mapped = int(descriptor[1])
    inputs = np.arange(first_mapped - 1, first_mapped + n_entries + 1, dtype=np.int64)
    outputs = apply_voi(inputs, ds).astype(np.int64)
    low_out, high_out = outputs.min(), outputs.max()
    if high_out == low_out:
        return None
    rising = np.flatnonzero((outputs > low_out) & (outputs < high_out))
    if rising.size == 0:  # a step: the window is the step itself
        step = int(np.flatnonzero(outputs != outputs[0])[0])
        return float(inputs[step]) - 0.5, 1.0
    low = float(inputs[max(rising[0] - 1, 0)])
    high = float(inputs[min(rising[-1] + 1, inputs.size - 1)])
    return (low + high) / 2.0, high - low


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """(row, column) spacing in mm from PixelSpacing, else ImagerPixelSpacing; None if unusable."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        try:
            row, column = float(value[0]), float(value[1])
        except (TypeError, ValueError, IndexError):
            continue
        if row > 0 and column > 0 and math.isfinite(row) and math.isfinite(column):
            return row, column
    return None


# --------------------------------------------------------------------------------------------
# Shared pixel helpers


def _colour_warning(name: str) -> str:
    return f"{name} is a colour image; it was converted to grayscale and may not be a radiograph."


def _rgb_to_grey(rgb: np.ndarray) -> tuple[np.ndarray, bool]:
    """(H, W, 3) RGB -> (float32 (H, W) luminance, whether the channels really differ).

    Works channel by channel: a float32 (H, W, 3) copy would triple the peak memory.
    """
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    if np.array_equal(red, green) and np.array_equal(green, blue):
        return red.astype(np.float32, order="C"), False
    if rgb.dtype.kind in "ui":
        spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
        tolerance = _GREY_TOLERANCE_8BIT * (1 if rgb.dtype.itemsize == 1 else 257)
        is_colour = int(spread.max()) > tolerance
    else:
        is_colour = True
    grey = np.multiply(red, _LUMA_WEIGHTS[0], dtype=np.float32)
    term = np.multiply(green, _LUMA_WEIGHTS[1], dtype=np.float32)
    grey += term
    np.multiply(blue, _LUMA_WEIGHTS[2], out=term, dtype=np.float32)
    grey += term
    if rgb.dtype.kind == "f":
        _replace_non_finite(grey)
    return grey, is_colour


def _replace_non_finite(pixels: np.ndarray) -> np.ndarray:
    """NaN / inf (float TIFF or DICOM) -> the lowest finite value, in place."""
    if pixels.dtype.kind == "f":
        bad = ~np.isfinite(pixels)
        if bad.any():
            finite = pixels[~bad]
            pixels[bad] = finite.min() if finite.size else 0.0
    return pixels


def _percentile_window(pixels: np.ndarray) -> tuple[float, float]:
    """(center, width) spanning the 0.5-99.5 percentiles of the pixel values."""
    step = max(1, math.ceil(math.sqrt(pixels.size / _WINDOW_SAMPLES)))
    sample = pixels[::step, ::step]
    low, high = (float(v) for v in np.percentile(sample, _WINDOW_PERCENTILES))
    if high <= low:  # (almost) constant image: fall back to the full range, at least 1 wide
        low, high = float(sample.min()), float(sample.max())
        high = max(high, low + 1.0)
    return (low + high) / 2.0, high - low
