"""Builders of small image files in memory, shared by the ``core`` tests.

Tests get them through the ``files`` fixture (``files.encode(...)``, ``files.sample_bytes(...)``)
rather than importing this module, whose name pytest reserves.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20200311)


def radiograph_like(rng: np.random.Generator, shape: tuple[int, int], high: int) -> np.ndarray:
    """A smooth gradient with noise, integer values in [0, high], int64 (H, W)."""
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = (rows / max(shape[0] - 1, 1) * 0.6 + cols / max(shape[1] - 1, 1) * 0.3) * high
    noisy = base + rng.normal(0.0, high * 0.03, size=shape)
    return np.clip(np.rint(noisy), 0, high).astype(np.int64)


def encode(image: Image.Image, fmt: str, **save_kwargs: object) -> bytes:
    """The bytes of ``image`` saved as ``fmt`` (a Pillow format name), built in memory."""
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_kwargs)
    return buffer.getvalue()


def sample_path(name: str) -> Path:
    """A real sample DICOM from pydicom or pydicom-data (a dev requirement: fail if missing)."""
    path = get_testdata_file(name)
    assert path is not None, f"sample {name} not found: is pydicom-data installed?"
    return Path(path)


def sample_bytes(name: str) -> bytes:
    return sample_path(name).read_bytes()


def dx_dataset(pixels: np.ndarray, bits_stored: int = 12, **tags: object) -> Dataset:
    """A DX MONOCHROME2 dataset with identifying tags (to check they never leak)."""
    ds = Dataset()
    ds.SOPClassUID = DX_SOP_CLASS
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "DX"
    ds.PatientName = "Doe^Jane"
    ds.PatientID = "PID-12345"
    ds.PatientBirthDate = "19470203"
    ds.set_pixel_data(pixels.astype(np.uint16), "MONOCHROME2", bits_stored)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    return ds


def dicom_bytes(ds: Dataset, *, file_format: bool = True, **write_kwargs: object) -> bytes:
    """``ds`` written in memory: as a DICOM file (preamble, "DICM", meta) or as a bare dataset."""
    buffer = io.BytesIO()
    if file_format:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True, **write_kwargs)
    else:
        bare = ds.copy()
        del bare.file_meta
        pydicom.dcmwrite(buffer, bare, implicit_vr=True, little_endian=True)
    return buffer.getvalue()


# Files whose headers announce a huge image but carry (almost) no pixel data: cheap to build and
# a reader that decodes before checking the size would need gigabytes.


def huge_png(width: int, height: int) -> bytes:
    def chunk(tag: bytes, payload: bytes) -> bytes:
        body = tag + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grey
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def huge_bmp(width: int, height: int) -> bytes:
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(dib) + 64, 0, 0, 14 + len(dib)) + dib + bytes(64)


def huge_jpeg(width: int, height: int) -> bytes:
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + bytes(64) + b"\xff\xd9"


def huge_tiff(width: int, height: int) -> bytes:
    entries = [(256, 4, 1, width), (257, 4, 1, height), (258, 3, 1, 8), (262, 3, 1, 1)]
    ifd = struct.pack("<H", len(entries))
    for tag, value_type, count, value in entries:
        ifd += struct.pack("<HHII", tag, value_type, count, value)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + bytes(64)


class ImageFiles:
    """The builders above, as one object handed to tests by the ``files`` fixture."""

    radiograph_like = staticmethod(radiograph_like)
    encode = staticmethod(encode)
    sample_path = staticmethod(sample_path)
    sample_bytes = staticmethod(sample_bytes)
    dx_dataset = staticmethod(dx_dataset)
    dicom_bytes = staticmethod(dicom_bytes)
    huge: ClassVar[dict[str, Callable[[int, int], bytes]]] = {
        "png": huge_png,
        "bmp": huge_bmp,
        "jpeg": huge_jpeg,
        "tiff": huge_tiff,
    }


@pytest.fixture
def files() -> type[ImageFiles]:
    return ImageFiles
