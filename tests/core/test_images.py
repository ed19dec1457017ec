"""Tests of core.io.images: one image file (bytes) -> XrayImage.

Raster images are built in memory with Pillow; DICOM tests use real sample files from pydicom
and pydicom-data (marked ``real_artefact`` in their ids) plus datasets written in memory.
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import tracemalloc
import zlib
from collections.abc import Callable

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_modality_lut

from core.errors import InvalidInputError, UnsupportedDicomError
from core.io import images, read_xray
from core.types import XrayImage

COLOUR_WARNING = "{} is a colour image; it was converted to grayscale and may not be a radiograph."


def assert_well_formed(image: XrayImage, fmt: str, shape: tuple[int, int]) -> None:
    assert image.file_format == fmt
    assert image.shape == shape
    assert image.pixels.dtype == np.float32
    assert image.pixels.flags.c_contiguous
    assert np.isfinite(image.pixels).all()
    assert np.isfinite(image.window_center) and image.window_width > 0


def naive_dicom_linear_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1 LINEAR window, written out, scaled to [0, 1]."""
    out = np.empty_like(x, dtype=np.float64)
    low = x <= center - 0.5 - (width - 1) / 2
    high = x > center - 0.5 + (width - 1) / 2
    mid = ~low & ~high
    out[low], out[high] = 0.0, 1.0
    out[mid] = (x[mid] - (center - 0.5)) / (width - 1) + 0.5
    return out


# ------------------------------------------------------------------------------------------
# PNG, JPEG, BMP, TIFF


RASTER_CASES = [
    # (Pillow format, Pillow mode, highest value, lossless)
    ("PNG", "L", 255, True),
    ("PNG", "I;16", 4095, True),
    ("JPEG", "L", 255, False),
    ("BMP", "L", 255, True),
    ("TIFF", "L", 255, True),
    ("TIFF", "I;16", 4095, True),
    ("TIFF", "I;16B", 4095, True),
    ("TIFF", "I", 4095, True),
    ("TIFF", "F", 4095, True),
]


@pytest.mark.parametrize(("pil_format", "mode", "high", "lossless"), RASTER_CASES)
def test_reads_grey_raster_images(files, rng, pil_format, mode, high, lossless):
    values = files.radiograph_like(rng, (48, 64), high)
    if mode == "L":
        source = Image.fromarray(values.astype(np.uint8))
    elif mode == "F":
        source = Image.fromarray(values.astype(np.float32))
    else:
        source = Image.fromarray(values.astype(np.int32)).convert(mode)
    data = files.encode(source, pil_format)
    image = read_xray(data, "chest.img")

    fmt = pil_format.lower()
    assert_well_formed(image, fmt, (48, 64))
    assert image.warnings == ()
    assert image.photometric == "MONOCHROME2"
    assert image.modality is None and image.pixel_spacing_mm is None
    np.testing.assert_array_equal(image.pixels, np.asarray(Image.open(io.BytesIO(data))))
    if lossless:
        np.testing.assert_array_equal(image.pixels, values)
    if high == 255:
        assert image.bits_stored == 8
        assert (image.window_center, image.window_width) == (127.5, 255.0)
    else:
        # 12-bit data in a 16-bit file: windowed to its own range, not 0..65535 (looks black).
        assert image.bits_stored == (32 if mode == "F" else 16)
        low = image.window_center - image.window_width / 2
        high_edge = image.window_center + image.window_width / 2
        assert low == pytest.approx(np.percentile(values, 0.5), abs=0.02 * high)
        assert high_edge == pytest.approx(np.percentile(values, 99.5), abs=0.02 * high)
        assert image.windowed().mean() == pytest.approx(0.5, abs=0.15)


@pytest.mark.parametrize("pil_format", ["PNG", "JPEG", "BMP", "TIFF"])
def test_rgb_file_holding_grey_is_not_a_colour_image(files, rng, pil_format):
    grey = files.radiograph_like(rng, (40, 56), 255).astype(np.uint8)
    rgb = Image.fromarray(np.stack([grey] * 3, axis=-1))
    image = read_xray(files.encode(rgb, pil_format), "xray_rgb")
    assert_well_formed(image, pil_format.lower(), (40, 56))
    assert image.warnings == ()
    assert image.photometric == "MONOCHROME2"
    assert image.bits_stored == 8
    decoded = np.asarray(Image.open(io.BytesIO(files.encode(rgb, pil_format))))
    np.testing.assert_array_equal(image.pixels, decoded[..., 0])
    if pil_format != "JPEG":
        np.testing.assert_array_equal(image.pixels, grey)


def test_palette_png_with_grey_palette_is_not_a_colour_image(files, rng):
    grey = files.radiograph_like(rng, (32, 32), 255).astype(np.uint8)
    image = read_xray(files.encode(Image.fromarray(grey).convert("P"), "PNG"), "grey_palette.png")
    assert image.warnings == ()
    np.testing.assert_array_equal(image.pixels, grey)


def _colour_photo(rng: np.random.Generator) -> np.ndarray:
    rgb = rng.integers(0, 256, size=(36, 44, 3), dtype=np.uint8)
    rgb[:, :22, 0] = 250  # a red half: clearly colour
    return rgb


@pytest.mark.parametrize(
    ("pil_format", "to_image"),
    [
        ("PNG", lambda rgb: Image.fromarray(rgb)),
        ("PNG", lambda rgb: Image.fromarray(rgb).convert("RGBA")),
        ("PNG", lambda rgb: Image.fromarray(rgb).quantize(64)),
        ("JPEG", lambda rgb: Image.fromarray(rgb)),
        ("JPEG", lambda rgb: Image.fromarray(rgb).convert("CMYK")),
        ("BMP", lambda rgb: Image.fromarray(rgb)),
        ("TIFF", lambda rgb: Image.fromarray(rgb)),
    ],
    ids=["png-rgb", "png-rgba", "png-palette", "jpeg-rgb", "jpeg-cmyk", "bmp-rgb", "tiff-rgb"],
)
def test_colour_image_becomes_luminance_with_a_warning(files, rng, pil_format, to_image):
    source = to_image(_colour_photo(rng))
    image = read_xray(files.encode(source, pil_format), "holiday.jpg")

    assert_well_formed(image, pil_format.lower(), (36, 44))
    assert image.warnings == (COLOUR_WARNING.format("holiday.jpg"),)
    assert image.photometric == "RGB"
    decoded = np.asarray(Image.open(io.BytesIO(files.encode(source, pil_format))).convert("RGB"))
    luminance = decoded.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(image.pixels, luminance, atol=1e-3)


def test_format_comes_from_the_bytes_not_the_name(files, rng):
    grey = Image.fromarray(files.radiograph_like(rng, (16, 16), 255).astype(np.uint8))
    assert read_xray(files.encode(grey, "PNG"), "scan.dcm").file_format == "png"
    dicom = files.dicom_bytes(files.dx_dataset(files.radiograph_like(rng, (16, 16), 4095)))
    assert read_xray(dicom, "photo.png").file_format == "dicom"


def test_jpeg_exif_orientation_is_applied(files, rng):
    source = Image.fromarray(files.radiograph_like(rng, (20, 40), 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    image = read_xray(files.encode(source, "JPEG", exif=exif.tobytes()), "phone.jpg")
    assert image.shape == (40, 20)


def test_multi_page_tiff_reads_the_first_page_with_a_warning(files, rng):
    pages = [Image.fromarray(np.full((8, 8), v, dtype=np.uint8)) for v in (10, 200)]
    data = files.encode(pages[0], "TIFF", save_all=True, append_images=pages[1:])
    image = read_xray(data, "stack.tif")
    assert image.warnings == ("stack.tif has 2 pages; only the first one is shown.",)
    assert (image.pixels == 10).all()


def test_accepts_bytearray_and_memoryview(files, rng):
    data = files.encode(Image.fromarray(np.zeros((4, 4), np.uint8)), "PNG")
    assert read_xray(bytearray(data)).shape == (4, 4)
    assert read_xray(memoryview(data)).shape == (4, 4)


# ------------------------------------------------------------------------------------------
# Bad input: a plain-words error naming the file, never a traceback


def _truncated_png(files, rng) -> bytes:
    data = files.encode(Image.fromarray(files.radiograph_like(rng, (64, 64), 255).astype(np.uint8)), "PNG")
    return data[: len(data) // 2]


def _truncated_jpeg(files, rng) -> bytes:
    data = files.encode(Image.fromarray(files.radiograph_like(rng, (64, 64), 255).astype(np.uint8)), "JPEG")
    return data[: len(data) // 2]


def _dx_without_pixel_data(files, rng) -> bytes:
    ds = files.dx_dataset(files.radiograph_like(rng, (16, 16), 4095))
    del ds.PixelData
    return files.dicom_bytes(ds)


def _dx_with_transfer_syntax(uid: str) -> Callable:
    def build(files, rng) -> bytes:
        ds = files.dx_dataset(files.radiograph_like(rng, (16, 16), 4095))
        ds.file_meta.TransferSyntaxUID = uid
        ds.PixelData = encapsulate([b"\x00" * 64])  # an opaque compressed frame
        ds["PixelData"].VR = "OB"
        return files.dicom_bytes(ds, implicit_vr=False, little_endian=True)

    return build


def _dx_with_photometric(value: str) -> Callable:
    def build(files, rng) -> bytes:
        ds = files.dx_dataset(files.radiograph_like(rng, (16, 16), 4095))
        ds.PhotometricInterpretation = value
        return files.dicom_bytes(ds)

    return build


BAD_INPUTS = [
    # (id, build(files, rng) -> bytes, error class, expected words)
    ("empty", lambda f, r: b"", InvalidInputError, "bad.png is empty (0 bytes)."),
    (
        "random-bytes",
        lambda f, r: r.bytes(4096),
        InvalidInputError,
        "bad.png is not a recognised image format (PNG, JPEG, BMP, TIFF or DICOM).",
    ),
    ("one-byte", lambda f, r: b"\x89", InvalidInputError, "is not a recognised image format"),
    (
        "pdf-renamed",
        lambda f, r: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj",
        InvalidInputError,
        "is a PDF document, not an image",
    ),
    ("zip", lambda f, r: b"PK\x03\x04" + bytes(60), InvalidInputError, "is a ZIP archive"),
    ("gif", lambda f, r: b"GIF89a" + bytes(60), InvalidInputError, "is a GIF image"),
    (
        "truncated-png",
        _truncated_png,
        InvalidInputError,
        "could not be decoded as a PNG image; the file may be truncated",
    ),
    (
        "truncated-jpeg",
        _truncated_jpeg,
        InvalidInputError,
        "could not be decoded as a JPEG image; the file may be truncated",
    ),
    (
        "truncated-dicom-real_artefact",
        lambda f, r: f.sample_bytes("RG1_UNCR.dcm")[:3_000_000],
        UnsupportedDicomError,
        "the file may be truncated or damaged",
    ),
    (
        "truncated-dicom-header-real_artefact",
        lambda f, r: f.sample_bytes("CT_small.dcm")[:600],
        UnsupportedDicomError,
        "may be truncated",
    ),
    (
        "short-pixel-data-real_artefact",
        lambda f, r: f.sample_bytes("MR_truncated.dcm"),
        UnsupportedDicomError,
        "the file may be truncated or damaged",
    ),
    (
        "damaged-jpeg-in-dicom-real_artefact",
        lambda f, r: f.sample_bytes("JPEG-lossy.dcm"),
        UnsupportedDicomError,
        "could not be decoded",
    ),
    (
        "dicom-without-pixel-data",
        _dx_without_pixel_data,
        UnsupportedDicomError,
        "bad.png is a DICOM file without image data (no Pixel Data)",
    ),
    (
        "dicom-rtplan-real_artefact",
        lambda f, r: f.sample_bytes("rtplan.dcm"),
        UnsupportedDicomError,
        "bad.png is a DICOM file without image data (no Pixel Data).",
    ),
    (
        "dicom-mpeg2",
        _dx_with_transfer_syntax("1.2.840.10008.1.2.4.100"),
        UnsupportedDicomError,
        "a DICOM compression this application cannot decode",
    ),
    (
        "dicom-unknown-syntax",
        _dx_with_transfer_syntax("1.2.3.4.5.6"),
        UnsupportedDicomError,
        "cannot decode",
    ),
    (
        "dicom-hsv",
        _dx_with_photometric("HSV"),
        UnsupportedDicomError,
        "uses the DICOM colour encoding 'HSV', which is not supported",
    ),
]


@pytest.mark.parametrize(("build", "error", "words"), [c[1:] for c in BAD_INPUTS], ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_gets_a_clear_message(files, rng, build, error, words):
    data = build(files, rng)
    with pytest.raises(error) as info:
        read_xray(data, "bad.png")
    message = str(info.value)
    assert words in message
    assert message.startswith("bad.png")
    assert "Traceback" not in message and "\n" not in message


def test_third_party_errors_are_chained(files, rng):
    with pytest.raises(InvalidInputError) as info:
        read_xray(_truncated_png(files, rng), "cut.png")
    assert info.value.__cause__ is not None


@pytest.mark.parametrize("fmt", ["png", "bmp", "jpeg", "tiff"])
def test_huge_image_is_rejected_from_its_header_before_decoding(files, monkeypatch, fmt):
    def no_decoding(*args, **kwargs):
        raise AssertionError("the pixels must not be decoded")

    monkeypatch.setattr(images.Image, "open", no_decoding)
    tracemalloc.start()
    try:
        with pytest.raises(InvalidInputError) as info:
            read_xray(files.huge[fmt](30000, 30000), "bomb.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(info.value) == "bomb.png is too large (30000 x 30000 pixels, limit 50 megapixels)."
    assert peak < 10 * 2**20


def test_huge_png_is_rejected_with_pillow_limit_disabled(files, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with pytest.raises(InvalidInputError, match="too large"):
        read_xray(files.huge["png"](8000, 7000), "big.png")


def test_pillow_decompression_bomb_error_becomes_our_error(files, monkeypatch):
    # Pillow raises above twice its MAX_IMAGE_PIXELS (only reachable if someone lowered it below
    # ours); ours is lifted out of the way here.
    side = 20
    monkeypatch.setattr(images, "MAX_PIXELS", 10**12)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = files.encode(Image.fromarray(np.zeros((side, side), np.uint8)), "PNG")
    with pytest.raises(InvalidInputError, match=rf"^x\.png is too large \({side} x {side} pixels"):
        read_xray(data, "x.png")


def test_does_not_change_pillow_settings(files, rng):
    before = Image.MAX_IMAGE_PIXELS
    read_xray(files.encode(Image.fromarray(np.zeros((8, 8), np.uint8)), "PNG"), "x.png")
    assert Image.MAX_IMAGE_PIXELS == before


def test_too_many_bytes(files, monkeypatch):
    monkeypatch.setattr(images, "MAX_BYTES", 1024)
    data = files.encode(Image.fromarray(np.zeros((64, 64), np.uint8)), "BMP")
    with pytest.raises(InvalidInputError, match=r"^scan\.bmp is too large \(0 MB; the limit is 0 MB\)\.$"):
        read_xray(data, "scan.bmp")


def test_wrong_type_is_invalid_input():
    with pytest.raises(InvalidInputError, match="^notes.txt could not be read"):
        read_xray("not bytes", "notes.txt")  # type: ignore[arg-type]


def test_missing_decoder_is_reported(files, rng, monkeypatch):
    class NoPlugins:
        is_available = False

    monkeypatch.setattr(images, "get_decoder", lambda uid: NoPlugins())
    data = files.dicom_bytes(files.dx_dataset(files.radiograph_like(rng, (8, 8), 4095)))
    with pytest.raises(UnsupportedDicomError, match="the decoder for this DICOM compression is not installed"):
        read_xray(data, "dx.dcm")


# ------------------------------------------------------------------------------------------
# Nothing written, nothing identifying logged


def test_writes_nothing_to_disk(files, rng, monkeypatch, tmp_path):
    inputs = [
        files.encode(Image.fromarray(files.radiograph_like(rng, (32, 32), 255).astype(np.uint8)), "JPEG"),
        files.encode(
            Image.fromarray(files.radiograph_like(rng, (32, 32), 4095).astype(np.int32)).convert("I;16"),
            "TIFF",
        ),
        files.sample_bytes("RG1_J2KI.dcm"),
        files.sample_bytes("SC_rgb_rle.dcm"),
    ]
    for data in inputs:  # first pass outside the guard: lazy imports of decoder plugins
        read_xray(data, "warm-up")

    real_open, real_os_open = builtins.open, os.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            raise AssertionError(f"read_xray opened {file!r} for writing")
        return real_open(file, mode, *args, **kwargs)

    def read_only_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise AssertionError(f"read_xray opened {path!r} for writing")
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", read_only_open)
    monkeypatch.setattr(os, "open", read_only_os_open)
    monkeypatch.chdir(tmp_path)
    for data in inputs:
        read_xray(data, "case.dcm")
    assert list(tmp_path.iterdir()) == []


def test_patient_identifiers_never_reach_logs_or_messages(files, rng, caplog):
    ds = files.dx_dataset(files.radiograph_like(rng, (16, 16), 4095), WindowCenter=2000, WindowWidth=4000)
    caplog.set_level(logging.DEBUG)
    image = read_xray(files.dicom_bytes(ds), "Doe_Jane_PID-12345.dcm")
    del ds.PixelData
    with pytest.raises(UnsupportedDicomError) as info:
        read_xray(files.dicom_bytes(ds), "upload")
    logged = caplog.text + " ".join(image.warnings) + str(info.value)
    for identifier in ("Doe", "Jane", "PID-12345", "19470203"):
        assert identifier not in logged
    assert any(r.name == "core.io.images" for r in caplog.records)  # it does log, just not those


# ------------------------------------------------------------------------------------------
# DICOM: real sample files (real_artefact) and datasets written in memory

RADIOGRAPH, COLOUR, OTHER_MODALITY, MULTI_FRAME = "radiograph", "colour", "modality", "frames"

DICOM_SAMPLES = [
    # (file, photometric, modality, expected kinds of warning)
    ("CT_small.dcm", "MONOCHROME2", "CT", {OTHER_MODALITY}),
    ("RG1_UNCR.dcm", "MONOCHROME1", "CR", set()),
    ("RG1_J2KI.dcm", "MONOCHROME1", "CR", set()),  # JPEG 2000 (lossy)
    ("RG3_UNCR.dcm", "MONOCHROME1", "CR", set()),  # 10-bit
    ("SC_rgb_jpeg_dcmtk.dcm", "YBR_FULL", "OT", {COLOUR}),  # JPEG baseline
    ("JPGExtended.dcm", "MONOCHROME2", "NM", {OTHER_MODALITY}),  # JPEG extended, 12-bit
    ("JPEG-LL.dcm", "MONOCHROME2", "NM", {OTHER_MODALITY}),  # JPEG lossless, signed 16-bit
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", "MONOCHROME2", "US", {OTHER_MODALITY}),
    ("MR_small_RLE.dcm", "MONOCHROME2", "MR", {OTHER_MODALITY}),  # RLE
    ("SC_rgb_rle.dcm", "RGB", "OT", {COLOUR}),  # RLE colour
    ("MR_small_jpeg_ls_lossless.dcm", "MONOCHROME2", "MR", {OTHER_MODALITY}),  # JPEG-LS
    ("JPEG2000.dcm", "MONOCHROME2", "NM", {OTHER_MODALITY}),
    ("MR_small_bigendian.dcm", "MONOCHROME2", "MR", {OTHER_MODALITY}),
    ("OT-PAL-8-face.dcm", "PALETTE COLOR", "OT", {COLOUR}),  # no preamble, no meta header
    ("examples_palette.dcm", "PALETTE COLOR", "US", {COLOUR, OTHER_MODALITY}),
    ("US1_UNCR.dcm", "RGB", "US", {COLOUR, OTHER_MODALITY}),
    ("SC_ybr_full_uncompressed.dcm", "YBR_FULL", "OT", {COLOUR}),
    ("mlut_18.dcm", "MONOCHROME2", "OT", set()),  # Modality LUT Sequence
    ("vlut_04.dcm", "MONOCHROME2", "OT", set()),  # VOI LUT Sequence
    ("emri_small.dcm", "MONOCHROME2", "MR", {OTHER_MODALITY, MULTI_FRAME}),
    ("color3d_jpeg_baseline.dcm", "YBR_FULL_422", "US", {COLOUR, OTHER_MODALITY, MULTI_FRAME}),
]


@pytest.mark.parametrize(
    ("sample", "photometric", "modality", "warned"),
    DICOM_SAMPLES,
    ids=[f"real_artefact-{s[0]}" for s in DICOM_SAMPLES],
)
def test_reads_real_dicom_samples(files, sample, photometric, modality, warned):
    path = files.sample_path(sample)
    image = read_xray(path.read_bytes(), sample)
    reference = pydicom.dcmread(path, force=True)

    assert_well_formed(image, "dicom", (int(reference.Rows), int(reference.Columns)))
    assert image.photometric == photometric
    assert image.modality == modality
    kinds = set()
    for text in image.warnings:
        assert text.startswith(sample)
        if "colour image" in text:
            kinds.add(COLOUR)
        elif "may not be a chest radiograph" in text:
            kinds.add(OTHER_MODALITY)
        elif "frames; only the first one is shown" in text:
            kinds.add(MULTI_FRAME)
    assert kinds == warned and len(image.warnings) == len(warned)

    if photometric == "MONOCHROME2" and "TransferSyntaxUID" in reference.file_meta:
        frames = reference.pixel_array
        first = frames[0] if MULTI_FRAME in warned else frames
        np.testing.assert_allclose(image.pixels, apply_modality_lut(first, reference), rtol=1e-6)


def test_monochrome1_is_inverted_real_artefact(files):
    path = files.sample_path("RG1_UNCR.dcm")
    image = read_xray(path.read_bytes(), "RG1_UNCR.dcm")
    stored = pydicom.dcmread(path).pixel_array  # 15 bits stored, no rescale

    assert np.corrcoef(image.pixels.ravel(), stored.ravel())[0, 1] < -0.999
    np.testing.assert_array_equal(image.pixels, 32767 - stored.astype(np.float32))
    # WindowCenter 15000 / WindowWidth 30000 (LINEAR) mirrored into the inverted values.
    assert image.window_center == pytest.approx(32767 - 14999.5)
    assert image.window_width == pytest.approx(29999)
    assert image.bits_stored == 15
    assert image.pixel_spacing_mm is None  # the file says 0.000 mm: not usable


def test_jpeg2000_matches_uncompressed_real_artefact(files):
    lossy = read_xray(files.sample_bytes("RG1_J2KI.dcm"), "RG1_J2KI.dcm")
    exact = read_xray(files.sample_bytes("RG1_UNCR.dcm"), "RG1_UNCR.dcm")
    assert lossy.shape == exact.shape
    assert np.corrcoef(lossy.pixels.ravel(), exact.pixels.ravel())[0, 1] > 0.99
    assert np.abs(lossy.pixels - exact.pixels).mean() < 0.01 * np.ptp(exact.pixels)
    assert (lossy.window_center, lossy.window_width) == (exact.window_center, exact.window_width)


def test_voi_lut_sequence_gives_a_matching_window_real_artefact(files):
    path = files.sample_path("vlut_04.dcm")
    image = read_xray(path.read_bytes(), "vlut_04.dcm")
    ds = pydicom.dcmread(path)
    with_lut = pydicom.pixels.apply_voi_lut(ds.pixel_array, ds).astype(np.float64)
    assert np.corrcoef(image.windowed().ravel(), with_lut.ravel())[0, 1] > 0.95


def test_dicom_round_trip_applies_rescale_and_window(files, rng):
    stored = files.radiograph_like(rng, (40, 30), 4095)
    ds = files.dx_dataset(
        stored,
        RescaleSlope="2",
        RescaleIntercept="-1000",
        WindowCenter=["500", "300"],  # multi-valued: the first pair is the default view
        WindowWidth=["2000", "800"],
        ImagerPixelSpacing=["0.143", "0.139"],
    )
    image = read_xray(files.dicom_bytes(ds), "dx.dcm")

    assert_well_formed(image, "dicom", (40, 30))
    np.testing.assert_array_equal(image.pixels, stored * 2.0 - 1000.0)
    assert (image.window_center, image.window_width) == (499.5, 1999.0)
    np.testing.assert_allclose(image.windowed(), naive_dicom_linear_window(stored * 2.0 - 1000.0, 500, 2000), atol=1e-5)
    assert image.modality == "DX" and image.photometric == "MONOCHROME2"
    assert image.bits_stored == 12
    assert image.pixel_spacing_mm == (0.143, 0.139)
    assert image.warnings == ()


def test_pixel_spacing_is_preferred_to_imager_pixel_spacing(files, rng):
    ds = files.dx_dataset(
        files.radiograph_like(rng, (8, 8), 4095),
        PixelSpacing=["0.1", "0.2"],
        ImagerPixelSpacing=["0.3", "0.3"],
    )
    assert read_xray(files.dicom_bytes(ds), "dx.dcm").pixel_spacing_mm == (0.1, 0.2)


def test_dicom_without_window_uses_percentiles(files, rng):
    stored = files.radiograph_like(rng, (64, 64), 4095)
    image = read_xray(files.dicom_bytes(files.dx_dataset(stored)), "dx.dcm")
    low = image.window_center - image.window_width / 2
    high = image.window_center + image.window_width / 2
    assert low == pytest.approx(np.percentile(stored, 0.5), abs=1.0)
    assert high == pytest.approx(np.percentile(stored, 99.5), abs=1.0)


@pytest.mark.parametrize("layout", ["bare-dataset", "no-preamble"])
def test_dicom_without_preamble(files, rng, layout):
    stored = files.radiograph_like(rng, (24, 20), 4095)
    ds = files.dx_dataset(stored)
    data = files.dicom_bytes(ds, file_format=False) if layout == "bare-dataset" else files.dicom_bytes(ds)[128:]
    image = read_xray(data, "old.dcm")
    assert image.file_format == "dicom"
    np.testing.assert_array_equal(image.pixels, stored)


def test_monochrome1_round_trip_with_rescale(files, rng):
    stored = files.radiograph_like(rng, (16, 16), 1023)
    ds = files.dx_dataset(stored, bits_stored=10, RescaleSlope="1", RescaleIntercept="100")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter, ds.WindowWidth = "600", "1000"
    image = read_xray(files.dicom_bytes(ds), "m1.dcm")
    # Modality range is [100, 1123]: x' = 1223 - x.
    np.testing.assert_array_equal(image.pixels, 1223.0 - (stored + 100.0))
    assert image.window_center == pytest.approx(1223 - 599.5)


def test_bytes_that_only_start_like_a_bare_dataset_are_not_recognised():
    data = b"\x08\x00\x05\x00" + zlib.compress(b"not a dataset at all" * 10)
    with pytest.raises(InvalidInputError, match="is not a recognised image format"):
        read_xray(data, "odd.bin")


class PanicException(BaseException):
    """Stands in for pyo3's PanicException, which Rust decoders (pylibjpeg-rle) raise."""


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (PanicException("index out of bounds"), UnsupportedDicomError),
        (ValueError("odd frame"), UnsupportedDicomError),
        (MemoryError(), MemoryError),  # not the file's fault: propagates unchanged
    ],
    ids=["rust-panic", "value-error", "memory-error"],
)
def test_decoder_crashes_become_clear_errors(files, rng, monkeypatch, raised, expected):
    def crash(*args, **kwargs):
        raise raised

    monkeypatch.setattr(images, "pixel_array", crash)
    data = files.dicom_bytes(files.dx_dataset(files.radiograph_like(rng, (8, 8), 4095)))
    with pytest.raises(expected) as info:
        read_xray(data, "dx.dcm")
    if expected is UnsupportedDicomError:
        assert str(info.value).startswith("dx.dcm: the DICOM image data")
        assert info.value.__cause__ is raised
