"""Fuzzing the X-ray reader (:func:`core.io.images.read_xray`), which every X-ray upload reaches.

Inputs: valid PNG, JPEG, TIFF and BMP files made by Pillow in the test (1 to 24 px a side, the
modes each format saves) with up to 8 bytes of the header (first 64 bytes) or body overwritten,
bytes inserted and the file cut; and DICOM datasets written by pydicom with random transfer
syntaxes, pixel descriptions (Rows, Columns, Bits Allocated / Stored, Pixel Representation,
Samples per Pixel, Photometric Interpretation, Number of Frames, a Pixel Data length that may
not match), random extra tags and VRs, and a few bytes overwritten.

Property: :func:`read_xray` gives an :class:`XrayImage` of the size the file describes, or raises
a :class:`DashboardError` whose message is one plain line (:mod:`tests.fuzz.plain`); nothing else.

Bounds: every input is under 64 KiB; each example must finish within the profile's deadline
(5 s, :mod:`tests.fuzz.conftest`). Memory is bounded by the reader's own limit checked before
decoding (:data:`core.io.images.MAX_PIXELS`, 50 megapixels, i.e. at most a few hundred MB for a
header that lies about its size); the generated files themselves decode to at most 24 x 24 px
(DICOM: 40 x 40 px, 3 frames).
"""

from __future__ import annotations

import io

import numpy as np
import pydicom.uid
import pytest
from hypothesis import example, given, reject
from hypothesis import strategies as st
from PIL import Image
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.tag import Tag

from core.errors import DashboardError
from core.io.images import read_xray
from core.types import XrayImage
from tests.fuzz.plain import result_or_plain_error

# pydicom warns about the invalid values written and read on purpose here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# Modes each Pillow writer saves (JPEG and BMP refuse 16-bit and float).
_MODES = {
    "PNG": ("L", "I;16", "RGB", "RGBA", "P", "1", "LA"),
    "JPEG": ("L", "RGB", "CMYK"),
    "TIFF": ("L", "I;16", "I", "F", "RGB", "RGBA", "P", "1", "CMYK"),
    "BMP": ("L", "RGB", "P", "1"),
}


@st.composite
def raster_files(draw: st.DrawFn) -> bytes:
    fmt = draw(st.sampled_from(sorted(_MODES)))
    mode = draw(st.sampled_from(_MODES[fmt]))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**16))
    values = np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)
    if mode == "I;16":
        image = Image.fromarray(values.astype(np.uint16) * 257)
    else:
        image = Image.fromarray(values).convert(mode)
    buffer = io.BytesIO()
    options: dict[str, object] = {}
    if fmt == "TIFF":
        options["compression"] = draw(st.sampled_from([None, "tiff_deflate", "packbits", "tiff_lzw"]))
    image.save(buffer, format=fmt, **options)
    return mutated(draw, buffer.getvalue())


def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with a few bytes overwritten (mostly in the header), bytes inserted, or cut."""
    out = bytearray(data)
    for _ in range(draw(st.integers(0, 8))):
        in_header = draw(st.booleans())
        limit = min(len(out), 64) if in_header else len(out)
        if limit == 0:
            break
        out[draw(st.integers(0, limit - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(out)))
        out[at:at] = draw(st.binary(max_size=16))
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return bytes(out)


_SYNTAXES = (
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.ExplicitVRLittleEndian,
    pydicom.uid.ExplicitVRBigEndian,
    pydicom.uid.DeflatedExplicitVRLittleEndian,
    pydicom.uid.JPEGBaseline8Bit,
    pydicom.uid.JPEGExtended12Bit,
    pydicom.uid.JPEGLosslessSV1,
    pydicom.uid.JPEGLSLossless,
    pydicom.uid.JPEG2000Lossless,
    pydicom.uid.RLELossless,
    pydicom.uid.HTJ2KLossless,
    "1.2.3.4.5",
)
_PHOTOMETRICS = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "PALETTE COLOR", "HSV", "", "x")
# (keyword, strategy of values) for attributes the reader looks at besides the pixel description.
_EXTRA = {
    "RescaleSlope": st.sampled_from(["1", "0", "-2.5", "1e308", "nan", "abc", ""]),
    "RescaleIntercept": st.sampled_from(["0", "-1024", "1e308", "inf", "x"]),
    "WindowCenter": st.sampled_from(["40", "-600", "nan", "1e400", ""]),
    "WindowWidth": st.sampled_from(["400", "0", "-1", "inf", ""]),
    "VOILUTFunction": st.sampled_from(["LINEAR", "SIGMOID", "LINEAR_EXACT", "?"]),
    "PixelSpacing": st.sampled_from(["0.2\\0.2", "0\\-1", "nan\\1", "1"]),
    "Modality": st.sampled_from(["CR", "DX", "CT", "MR", ""]),
    "PlanarConfiguration": st.integers(0, 3),
    "SOPClassUID": st.sampled_from(["1.2.840.10008.5.1.4.1.1.1", "1.2.3"]),
}
# VRs a random tag is given; its value is 0 to 12 random bytes, a whole number of 4-byte words
# (so that pydicom can write every VR here).
_VRS = ("AE", "AS", "CS", "DA", "DS", "FL", "IS", "LO", "LT", "OB", "OW", "SH", "SL", "SS", "UL", "US", "UN", "UT")


@st.composite
def dicom_files(draw: st.DrawFn) -> bytes:
    rows, columns = draw(st.integers(0, 40)), draw(st.integers(0, 40))
    bits_allocated = draw(st.sampled_from([1, 8, 16, 32, 64, 12, 0]))
    samples = draw(st.sampled_from([1, 1, 3, 4, 0]))
    frames = draw(st.sampled_from([None, 1, 2, 3, 0, -1]))
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    syntax = pydicom.uid.UID(draw(st.sampled_from(_SYNTAXES)))
    ds.file_meta.TransferSyntaxUID = syntax
    implicit, little = syntax == pydicom.uid.ImplicitVRLittleEndian, syntax != pydicom.uid.ExplicitVRBigEndian
    # An unknown syntax is written as explicit VR little endian, its pixel data encapsulated.
    known = syntax.is_transfer_syntax
    encoding = {} if known else {"implicit_vr": False, "little_endian": True}
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = draw(st.integers(0, max(bits_allocated, 1) + 2))
    ds.HighBit = max(ds.BitsStored - 1, 0)
    ds.PixelRepresentation = draw(st.sampled_from([0, 1, 2]))
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = draw(st.sampled_from(_PHOTOMETRICS))
    if frames is not None:
        ds.NumberOfFrames = frames
    for keyword in draw(st.lists(st.sampled_from(sorted(_EXTRA)), max_size=4, unique=True)):
        value = draw(_EXTRA[keyword])
        if isinstance(value, str):  # written as it is, even where it is not a valid value
            raw = value.encode("ascii") + b" " * (len(value) % 2)
            tag = Tag(keyword)
            ds[tag] = RawDataElement(tag, dictionary_VR(tag), len(raw), raw, 0, implicit, little)
        else:
            setattr(ds, keyword, value)
    for _ in range(draw(st.integers(0, 3))):
        tag = Tag(draw(st.integers(0x0008, 0x7FDF)) & ~1 | draw(st.integers(0, 1)), draw(st.integers(0x10, 0xFFFF)))
        if tag in ds or tag.group == 0x7FE0:
            continue
        raw = draw(st.binary(min_size=4, max_size=4)) * draw(st.integers(0, 3))
        ds[tag] = RawDataElement(tag, draw(st.sampled_from(_VRS)), len(raw), raw, 0, implicit, little)
    expected = rows * columns * max(samples, 1) * max(frames or 1, 1) * max(bits_allocated, 8) // 8
    length = draw(st.one_of(st.just(expected), st.integers(0, min(expected + 64, 20_000))))
    pixels = np.random.default_rng(length).integers(0, 256, size=length + length % 2, dtype=np.uint8).tobytes()
    if not known or syntax.is_compressed:
        frames = draw(st.integers(1, 3))
        step = max(1, len(pixels) // frames)
        pixels = encapsulate([pixels[i : i + step] + b"\0\0" for i in range(0, len(pixels), step)] or [b"\0\0"])
    ds.PixelData = pixels
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=True, **encoding)
    except (ValueError, OSError):  # a value pydicom cannot convert to the syntax's encoding
        reject()
    return mutated(draw, buffer.getvalue()) if draw(st.booleans()) else buffer.getvalue()


def check(data: bytes) -> None:
    outcome = result_or_plain_error(lambda: read_xray(data, "upload.img"))
    if isinstance(outcome, DashboardError):
        return
    assert isinstance(outcome, XrayImage)
    assert outcome.pixels.dtype == np.float32 and outcome.pixels.ndim == 2
    assert min(outcome.shape) >= 1
    assert np.isfinite(outcome.window_center) and np.isfinite(outcome.window_width)


@given(raster_files())
def test_raster_files_with_damaged_headers_read_or_refuse_plainly(data: bytes) -> None:
    check(data)


def _grey_with_three_samples() -> bytes:
    """A 1 x 1 MONOCHROME2 image that says each pixel has three samples."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.Rows = ds.Columns = 1
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = ds.PlanarConfiguration = 0
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = b"\x01\x02\x03\x00"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@given(dicom_files())
# Found by the long run: a grey image with three samples per pixel came back as a (1, 1, 3) image.
@example(_grey_with_three_samples())
def test_dicom_datasets_with_random_pixel_descriptions_read_or_refuse_plainly(data: bytes) -> None:
    check(data)


@given(st.binary(max_size=512))
@example(b"DICM" + bytes(4))
@example(b"\x08\x00\x05\x00CS\x00\x00" + bytes(16))
def test_random_bytes_read_or_refuse_plainly(data: bytes) -> None:
    check(data)
