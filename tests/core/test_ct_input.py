"""Tests of core.io.ct_input: uploads and paths (DICOM, zips, NIfTI, TIFF) -> one CtVolume in HU.

Series are written in memory by core.demo.dicom_writer (from core.demo.ct_phantom volumes), then
shuffled, zipped, mixed or tampered with; NIfTI files are written by nibabel and TIFF slices by
Pillow in the test. One test reads the real series of ../shared/samples (``real_artefact``),
skipped where that folder is absent.
"""

from __future__ import annotations

import datetime
import gzip
import io
import os
import struct
import tempfile
import time
import zipfile
from functools import cache
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pydicom.uid
import pytest
from PIL import Image

from core.demo.ct_phantom import generate_ct
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid, xray_dicom_bytes
from core.errors import InconsistentSeriesError, InvalidInputError
from core.io import ct_input
from core.io.ct_input import list_ct_upload_series, read_ct_path, read_ct_upload
from core.io.ct_series import read_ct_folder
from tests.core.test_ct_series import enhanced_ct_bytes

PATIENT = DicomPatient("SMITH^ALICE", "MRN-778899", "19610514", "F", 58, institution="St Elsewhere")
STUDY = DicomStudy(new_uid("ct-input-test"), "ACC-5566", datetime.date(2020, 4, 2))
IDENTIFIERS = ("SMITH", "ALICE", "MRN-778899", "19610514", "St Elsewhere", "ACC-5566")
SPACING = (2.5, 0.75, 0.8)
REAL_SERIES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "ct-series-lung-dx-a0002"

Files = list[tuple[str, bytes]]


@cache
def phantom_hu(seed: int = 0, shape: tuple[int, int, int] = (16, 32, 32)) -> np.ndarray:
    """(z, y, x) int16 HU of a small chest phantom with an asymmetric marker: a bright voxel at
    slice 2 (inferior), row 3 (anterior), column 25 (the patient's left)."""
    hu = generate_ct("COVID-19", 0.6, seed, shape=shape).hu.copy()
    hu[2, 3, 25] = 3000
    return hu


def series(hu: np.ndarray, **kwargs: object) -> Files:
    return ct_series_files(hu, kwargs.pop("spacing_mm", SPACING), PATIENT, STUDY, **kwargs)


def zipped(files: Files, *, folder: str = "", compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression, compresslevel=1) as archive:
        for name, data in files:
            archive.writestr(f"{folder}{name}", data)
    return buffer.getvalue()


def assert_plain(message: str, *names: str) -> None:
    """No identifier, no file name, no traceback text in a message shown to a clinician."""
    for text in (*IDENTIFIERS, *names, "Traceback", "Error:"):
        assert text.casefold() not in message.casefold()


# --------------------------------------------------------------------------------------------
# DICOM uploads and zips


def test_shuffled_dicom_files_without_extensions_read_in_position_order():
    hu = phantom_hu()
    files = series(hu, description="CHEST CT")
    rng = np.random.default_rng(1)
    upload = [(f"{k:x}", files[i][1]) for k, i in enumerate(rng.permutation(len(files)))]
    volume = read_ct_upload(upload)
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.spacing_mm == SPACING
    assert (volume.description, volume.n_files, volume.window, volume.warnings) == (
        "CHEST CT",
        16,
        (-600.0, 1500.0),
        (),
    )
    (info,) = list_ct_upload_series(upload)
    assert (info.n_files, info.n_slices, info.rows, info.columns) == (16, 16, 32, 32)


@pytest.mark.parametrize("folder", ["", "SMITH_ALICE/2020-04-02/CT/"])
@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_a_zip_gives_the_same_volume_as_the_loose_files(folder, compression):
    hu = phantom_hu()
    files = series(hu)
    loose = read_ct_upload(files)
    from_zip = read_ct_upload([("SMITH_ALICE.zip", zipped(files[::-1], folder=folder, compression=compression))])
    np.testing.assert_array_equal(from_zip.hu, loose.hu)
    assert (from_zip.spacing_mm, from_zip.series_uid, from_zip.n_files, from_zip.warnings) == (
        loose.spacing_mm,
        loose.series_uid,
        16,
        (),
    )


def test_a_series_split_over_two_zips_and_loose_files_is_one_volume():
    hu = phantom_hu()
    files = series(hu)
    upload = [("a.zip", zipped(files[:6], folder="a/")), *files[6:10], ("b.zip", zipped(files[10:], folder="b/c/"))]
    np.testing.assert_array_equal(read_ct_upload(upload).hu, hu)


def test_two_series_need_a_choice_and_choosing_works():
    chest, thin = phantom_hu(0), phantom_hu(1)[:8]
    upload = [
        (
            "both.zip",
            zipped(
                [
                    *series(chest, description="CHEST CT"),
                    *[(f"thin/{n}", d) for n, d in series(thin, description="LUNG THIN")],
                ]
            ),
        ),
    ]
    # Two series with their own UIDs (the writer derives them from the description).
    listed = list_ct_upload_series(upload)
    assert [(s.description, s.n_slices) for s in listed] == [("CHEST CT", 16), ("LUNG THIN", 8)]
    with pytest.raises(InconsistentSeriesError) as caught:
        read_ct_upload(upload)
    message = str(caught.value)
    assert message.startswith("These files hold 2 series; please choose one: 'CHEST CT' (CT, 16 slices of 32 x 32)")
    assert_plain(message)
    volume = read_ct_upload(upload, series_uid=listed[1].series_uid)
    np.testing.assert_array_equal(volume.hu, thin)
    assert volume.description == "LUNG THIN"
    with pytest.raises(InvalidInputError, match="not among these files"):
        read_ct_upload(upload, series_uid="1.2.3")


def test_a_missing_slice_and_a_duplicate_slice_are_reported_in_plain_words():
    hu = phantom_hu()
    files = series(hu)
    upload = [*files[:5], *files[6:], ("copy", files[9][1])]
    volume = read_ct_upload([("series.zip", zipped(upload))])
    np.testing.assert_array_equal(volume.hu, np.delete(hu, 5, axis=0))
    assert volume.warnings == (
        "1 duplicate slice (same position, same image) was ignored.",
        "There is a gap of 5.0 mm between slices 5 and 6 (at 10.0 and 15.0 mm), where the usual spacing is "
        "2.50 mm; slices may be missing. The viewer shows the slices on either side of the gap next to each other.",
    )


def test_non_ct_dicom_files_are_ignored_and_counted():
    hu = phantom_hu()
    dx = xray_dicom_bytes(np.full((16, 16), 0.4), 0.2, PATIENT, STUDY)
    dicomdir = Path(pydicom.data.get_testdata_file("DICOMDIR")).read_bytes()
    upload = [("SMITH_ALICE_xray.dcm", dx), *series(hu), ("DICOMDIR", dicomdir), ("notes.txt", b"see report")]
    volume = read_ct_upload(upload)
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.warnings == (
        "2 files that are not DICOM images were ignored (e.g. a DICOMDIR index, a dose report or a text file).",
        "1 DICOM image that is not a CT slice was ignored (1 radiograph).",
    )
    with pytest.raises(InvalidInputError) as caught:
        read_ct_upload([("SMITH_ALICE_xray.dcm", dx), ("notes.txt", b"see report")])
    assert str(caught.value) == (
        "None of the 2 files is a CT slice (DICOM or 16-bit TIFF), a NIfTI volume or a zip of them. "
        "The DICOM images among them are 1 radiograph."
    )


@pytest.mark.parametrize("syntax", [pydicom.uid.RLELossless, pydicom.uid.JPEG2000Lossless], ids=["rle", "j2k"])
def test_compressed_slices_in_a_zip_are_decoded(syntax):
    hu = phantom_hu()[:4]
    files = []
    for name, data in series(hu):
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.compress(syntax)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        files.append((name, buffer.getvalue()))
    assert all(pydicom.dcmread(io.BytesIO(d)).file_meta.TransferSyntaxUID == syntax for _, d in files)
    np.testing.assert_array_equal(read_ct_upload([("ct.zip", zipped(files))]).hu, hu)


# --------------------------------------------------------------------------------------------
# Limits and unsafe input


@pytest.mark.parametrize("member", ["../evil.dcm", "ok/../../evil.dcm", "/etc/evil.dcm", "C:/evil.dcm", "..\\evil.dcm"])
def test_a_zip_with_a_member_that_climbs_out_is_refused(member):
    files = series(phantom_hu()[:3])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            archive.writestr(name, data)
        info = zipfile.ZipInfo("placeholder")
        archive.writestr(info, b"x")
    # zipfile cleans names when writing: put the hostile path into the archive's bytes directly.
    data = buffer.getvalue().replace(b"placeholder", b"PLACEHOLDER")
    data = _rename_member(data, b"PLACEHOLDER", member.encode())
    with pytest.raises(InvalidInputError) as caught:
        read_ct_upload([("SMITH_ALICE.zip", data)])
    assert str(caught.value) == (
        "A zip file was refused: it holds a file whose path points outside the zip "
        "(for example '../' or an absolute path), which is unsafe."
    )
    assert_plain(str(caught.value), "evil", "SMITH_ALICE")


def _rename_member(data: bytes, old: bytes, new: bytes) -> bytes:
    """Rename a zip member in place in both its local and central headers (lengths updated)."""
    out = bytearray()
    pos = 0
    while True:
        at = data.find(old, pos)
        if at < 0:
            break
        # The name length field sits 26 (local header) or 28 (central header) bytes after "PK".
        local = data.rfind(b"PK\x03\x04", 0, at)
        central = data.rfind(b"PK\x01\x02", 0, at)
        start, offset = (central, 28) if central > local else (local, 26)
        out += data[pos:start]
        header = bytearray(data[start:at])
        struct.pack_into("<H", header, offset, len(new))
        out += header + new
        pos = at + len(old)
    out += data[pos:]
    # Offsets in the end-of-central-directory record moved by the length change of the local name.
    delta = len(new) - len(old)
    end = out.rfind(b"PK\x05\x06")
    cd_size, cd_offset = struct.unpack_from("<II", out, end + 12)
    struct.pack_into("<II", out, end + 12, cd_size + delta, cd_offset + delta)
    return bytes(out)


def test_a_zip_bomb_is_refused_from_its_directory():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("IM-0001.dcm", series(phantom_hu()[:1])[0][1])
        with archive.open("IM-0002.dcm", "w") as member:  # 32 MiB of zeros, about 32 kB compressed
            block = bytes(1024**2)
            for _ in range(32):
                member.write(block)
    data = buffer.getvalue()
    assert len(data) < 100_000
    started = time.perf_counter()
    with pytest.raises(InvalidInputError) as caught:
        read_ct_upload([("SMITH_ALICE.zip", data)])
    assert time.perf_counter() - started < 0.5
    assert "zip bomb" in str(caught.value)
    assert_plain(str(caught.value), "SMITH_ALICE", "IM-0002")


def test_a_zip_member_larger_than_it_declares_is_refused():
    files = series(phantom_hu()[:3])
    data = bytearray(zipped(files))
    # Declare a smaller size than the real one for the first member (local and central header).
    size = len(files[0][1])
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = data.find(signature)
        assert struct.unpack_from("<I", data, at + offset)[0] == size
        struct.pack_into("<I", data, at + offset, size // 2)
    with pytest.raises(InvalidInputError) as caught:
        read_ct_upload([("x.zip", bytes(data))])
    assert str(caught.value) == "A file in a zip could not be read; the zip may be truncated or damaged."


def test_the_total_and_per_member_caps_are_enforced(monkeypatch):
    files = series(phantom_hu()[:4])
    upload = [("x.zip", zipped(files))]
    monkeypatch.setattr(ct_input, "MAX_TOTAL_BYTES", 3 * len(files[0][1]))
    with pytest.raises(InvalidInputError, match="unpack to more than"):
        read_ct_upload(upload)
    monkeypatch.setattr(ct_input, "MAX_TOTAL_BYTES", 2 * 1024**3)
    monkeypatch.setattr(ct_input, "MAX_MEMBER_BYTES", len(files[0][1]) - 1)
    with pytest.raises(InvalidInputError, match="too large to read"):
        read_ct_upload(upload)


def test_a_password_protected_zip_is_refused():
    data = bytearray(zipped(series(phantom_hu()[:2])))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = -1
        while (at := data.find(signature, at + 1)) >= 0:
            data[at + offset] |= 0x1
    with pytest.raises(InvalidInputError, match="password-protected"):
        read_ct_upload([("x.zip", bytes(data))])


def test_2000_tiny_files_are_refused_fast():
    tiny = [(f"SMITH_ALICE_{k}.dcm", b"DICM" + bytes(8)) for k in range(2000)]
    started = time.perf_counter()
    with pytest.raises(InvalidInputError) as caught:
        read_ct_upload(tiny)
    assert str(caught.value) == (
        "2000 files were given; the limit is 1000 files, about one CT series. Please give one series at a time."
    )
    in_zip = [("x.zip", zipped([(f"{k}.dcm", b"x") for k in range(2000)]))]
    with pytest.raises(
        InvalidInputError, match="These files hold at least 2000 files once unzipped; the limit is 1000"
    ):
        list_ct_upload_series(in_zip)
    assert time.perf_counter() - started < 1.0


def test_garbage_files_give_a_plain_error():
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, "PNG")
    garbage = [("SMITH_ALICE.pdf", b"%PDF-1.4 report"), ("scan.png", png.getvalue()), ("empty", b"")]
    assert list_ct_upload_series(garbage) == []
    with pytest.raises(InvalidInputError) as caught:
        read_ct_upload(garbage)
    assert str(caught.value) == (
        "None of the 3 files is a CT slice (DICOM or 16-bit TIFF), a NIfTI volume or a zip of them."
    )
    with pytest.raises(InvalidInputError, match="No files were given"):
        read_ct_upload([])
    with pytest.raises(InvalidInputError, match="expected each file's contents as bytes"):
        read_ct_upload([("a", "text")])  # type: ignore[list-item]
    with pytest.raises(InvalidInputError, match="truncated or damaged"):
        read_ct_upload([("x.zip", zipped(series(phantom_hu()[:2]))[:300])])


def test_a_zip_inside_a_zip_is_not_opened():
    hu = phantom_hu()
    inner = zipped(series(hu))
    with pytest.raises(InvalidInputError) as caught:
        read_ct_upload([("outer.zip", zipped([("inner.zip", inner), ("readme.txt", b"hello")]))])
    assert str(caught.value) == (
        "None of the 2 files is a CT slice (DICOM or 16-bit TIFF), a NIfTI volume or a zip of them. "
        "A zip inside a zip is not opened: unzip it first."
    )
    volume = read_ct_upload([("outer.zip", zipped([("inner.zip", inner), *series(hu)]))])
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.warnings == ("1 zip inside a zip was not opened (only one level of zips is read); unzip it first.",)


def test_reading_a_zip_leaves_no_file_on_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the default temp dir, for this test
    upload = [("ct.zip", zipped(series(phantom_hu()), folder="a/b/"))]
    before = sorted(os.listdir(tempfile.gettempdir()))
    read_ct_upload(upload)
    list_ct_upload_series(upload)
    assert sorted(os.listdir(tempfile.gettempdir())) == before


# --------------------------------------------------------------------------------------------
# NIfTI


def nifti_bytes(hu: np.ndarray, spacing_mm: tuple[float, float, float], axcodes: tuple[str, str, str]) -> bytes:
    """``hu`` (z, y, x in the project's convention) as a NIfTI-1 file whose voxel axes run along
    ``axcodes`` (nibabel's letters: the direction each voxel axis points to)."""
    dz, dy, dx = spacing_mm
    # Project (z: S, y: P, x: L) -> RAS+ voxel order (R, A, S).
    ras = np.ascontiguousarray(hu.transpose(2, 1, 0)[::-1, ::-1, :])
    affine = np.diag([dx, dy, dz, 1.0])
    affine[:3, 3] = (-100.0, -120.0, -300.0)
    image = nib.Nifti1Image(ras, affine)
    target = nib.orientations.axcodes2ornt(axcodes)
    image = image.as_reoriented(nib.orientations.ornt_transform(nib.orientations.axcodes2ornt("RAS"), target))
    assert nib.aff2axcodes(image.affine) == axcodes
    image.set_data_dtype(np.int16)
    return image.to_bytes()


@pytest.mark.parametrize("axcodes", [("R", "A", "S"), ("L", "P", "S"), ("L", "A", "I"), ("P", "S", "R")])
@pytest.mark.parametrize("compressed", [False, True], ids=["nii", "nii.gz"])
def test_a_nifti_volume_is_oriented_like_an_axial_dicom_series(axcodes, compressed):
    hu = phantom_hu()
    data = nifti_bytes(hu, SPACING, axcodes)
    if compressed:
        data = gzip.compress(data, compresslevel=1)
    (info,) = list_ct_upload_series([("SMITH_ALICE.nii.gz", data)])
    assert (info.description, info.n_files, info.n_slices, info.rows, info.columns) == ("NIfTI volume", 1, 16, 32, 32)
    volume = read_ct_upload([("SMITH_ALICE.nii.gz", data)])
    assert volume.hu.dtype == np.float32 and volume.hu.flags.c_contiguous
    np.testing.assert_array_equal(volume.hu, hu)
    assert tuple(int(v) for v in np.unravel_index(np.argmax(volume.hu), volume.hu.shape)) == (2, 3, 25)
    assert volume.spacing_mm == pytest.approx(SPACING)
    assert (volume.series_uid, volume.n_files, volume.window, volume.warnings) == (info.series_uid, 1, None, ())


def test_nifti_scaling_is_applied_and_stored_values_are_flagged():
    hu = phantom_hu()
    ras = np.ascontiguousarray(hu.transpose(2, 1, 0)[::-1, ::-1, :])
    image = nib.Nifti1Image((ras + 1024).astype(np.uint16), np.diag([0.8, 0.75, 2.5, 1.0]))
    image.set_data_dtype(np.uint16)
    stored = image.to_bytes()
    scaled = bytearray(stored)
    struct.pack_into("<ff", scaled, 112, 1.0, -1024.0)  # scl_slope, scl_inter
    np.testing.assert_array_equal(read_ct_upload([("a.nii", bytes(scaled))]).hu, hu)

    volume = read_ct_upload([("a.nii", stored)])
    np.testing.assert_array_equal(volume.hu, hu + 1024)
    (warning,) = volume.warnings
    assert warning.startswith("These values do not look like Hounsfield units: the lowest is 0,")
    assert "stored values without their rescale to HU" in warning


def test_an_oblique_nifti_and_one_without_orientation_are_reported():
    hu = phantom_hu()
    ras = np.ascontiguousarray(hu.transpose(2, 1, 0)[::-1, ::-1, :])
    angle = np.radians(20.0)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.8, 0.75, 2.5])
    volume = read_ct_upload([("a.nii", nib.Nifti1Image(ras, affine).to_bytes())])
    np.testing.assert_array_equal(volume.hu, hu)  # the voxel grid, not resampled
    assert volume.spacing_mm == pytest.approx(SPACING)
    assert volume.warnings == (
        "The NIfTI volume is oblique: its axes are turned about 20 degrees away from the patient's axes. The viewer "
        "shows it on its own voxel grid, flipped to the nearest axial orientation, not resampled.",
    )

    bare = nib.Nifti1Image(ras, np.eye(4))
    bare.header.set_qform(None, code=0)
    bare.header.set_sform(None, code=0)
    data = bytearray(bare.to_bytes())
    struct.pack_into("<hh", data, 252, 0, 0)  # qform_code, sform_code
    volume = read_ct_upload([("a.nii", bytes(data))])
    assert volume.hu.shape == hu.shape
    assert volume.warnings[0].startswith("The NIfTI file does not state its orientation (no qform nor sform)")


def test_a_4d_nifti_and_a_truncated_nifti_are_refused():
    four_d = nib.Nifti1Image(np.zeros((4, 4, 3, 2), dtype=np.int16), np.eye(4)).to_bytes()
    with pytest.raises(InvalidInputError, match="holds 2 volumes"):
        read_ct_upload([("a.nii", four_d)])
    whole = nifti_bytes(phantom_hu(), SPACING, ("R", "A", "S"))
    with pytest.raises(InvalidInputError, match="cut short"):
        read_ct_upload([("a.nii", whole[:-100])])
    with pytest.raises(InvalidInputError, match="cut short"):
        read_ct_upload([("a.nii.gz", gzip.compress(whole)[:-100])])


def test_a_gzip_nifti_that_unpacks_too_much_is_refused(monkeypatch):
    data = gzip.compress(nifti_bytes(phantom_hu(), SPACING, ("R", "A", "S")))
    monkeypatch.setattr(ct_input, "MAX_MEMBER_BYTES", 10_000)
    with pytest.raises(InvalidInputError, match="unpacks to more than"):
        read_ct_upload([("a.nii.gz", data)])


# --------------------------------------------------------------------------------------------
# TIFF


def tiff_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint16)).save(buffer, "TIFF")
    return buffer.getvalue()


def tiff_slices(hu: np.ndarray, folder: str = "") -> Files:
    """One 16-bit TIFF per slice, stored as unsigned values (HU + 1024), named IM1 ... IMn."""
    return [(f"{folder}IM{k + 1}.tif", tiff_bytes(hu[k] + 1024)) for k in range(hu.shape[0])]


def test_tiff_slices_are_stacked_in_natural_name_order_and_mapped_to_hu():
    hu = phantom_hu()
    files = tiff_slices(hu)
    assert Image.open(io.BytesIO(files[0][1])).mode == "I;16"
    rng = np.random.default_rng(2)
    volume = read_ct_upload([files[i] for i in rng.permutation(len(files))])  # IM2 before IM10
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.spacing_mm == (1.0, 1.0, 1.0)
    assert volume.n_files == 16
    assert volume.warnings == (
        "TIFF slices state neither their position nor their size: they are stacked in the order of their file "
        "names (slice 2 before slice 10), and 1 x 1 x 1 mm voxels are assumed, so distances are not real "
        "millimetres and which end is the head is not known.",
        "The TIFF values look like a CT scanner's stored values (0 and up, air near 0), not Hounsfield units; "
        "they were converted with HU = value - 1024, the usual rescale of CT scanners (TIFF does not store it). "
        "Check that air shows at about -1000 HU.",
    )


def test_tiff_values_that_do_not_look_like_ct_are_kept_with_a_warning():
    rng = np.random.default_rng(3)
    files = [(f"{k}.tif", tiff_bytes(rng.integers(20000, 60000, (8, 8)))) for k in range(3)]
    volume = read_ct_upload(files)
    assert volume.hu.min() >= 20000
    assert "do not look like Hounsfield units nor like a CT scanner's stored values" in volume.warnings[-1]


def test_tiff_folders_are_series_and_slice_sizes_must_match():
    a, b = phantom_hu(0)[:6], phantom_hu(1)[:4]
    upload = [("covid-ctset.zip", zipped([*tiff_slices(a, "patient1/SR_2/"), *tiff_slices(b, "patient2/SR_3/")]))]
    listed = list_ct_upload_series(upload)
    assert [(s.description, s.n_slices) for s in listed] == [
        ("TIFF slices, folder 1 of 2", 6),
        ("TIFF slices, folder 2 of 2", 4),
    ]
    with pytest.raises(InconsistentSeriesError, match="2 series"):
        read_ct_upload(upload)
    np.testing.assert_array_equal(read_ct_upload(upload, listed[1].series_uid).hu, b)

    mixed = [*tiff_slices(a[:2]), ("IM3.tif", tiff_bytes(np.zeros((8, 8))))]
    with pytest.raises(InconsistentSeriesError, match=r"different sizes \(8 x 8, 32 x 32 pixels\)"):
        read_ct_upload(mixed)
    with pytest.raises(InvalidInputError, match="single TIFF slice"):
        read_ct_upload(tiff_slices(a[:1]))


# --------------------------------------------------------------------------------------------
# Paths (the command line)


def test_read_ct_path_reads_a_folder_a_zip_a_nifti_and_a_multi_frame_file(tmp_path):
    hu = phantom_hu()
    folder = tmp_path / "SMITH_ALICE" / "study" / "series"
    folder.mkdir(parents=True)
    for name, data in series(hu):
        (folder / name.removesuffix(".dcm")).write_bytes(data)
    (tmp_path / "SMITH_ALICE" / "README.txt").write_text("exported")
    volume = read_ct_path(tmp_path / "SMITH_ALICE")
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.warnings == (
        "1 file that is not a DICOM image was ignored (e.g. a DICOMDIR index, a dose report or a text file).",
    )

    (tmp_path / "ct.zip").write_bytes(zipped(series(hu), folder="x/"))
    np.testing.assert_array_equal(read_ct_path(str(tmp_path / "ct.zip")).hu, hu)

    (tmp_path / "ct.nii.gz").write_bytes(gzip.compress(nifti_bytes(hu, SPACING, ("L", "P", "S"))))
    nifti = read_ct_path(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(nifti.hu, hu)
    assert nifti.spacing_mm == pytest.approx(SPACING)

    (tmp_path / "enhanced.dcm").write_bytes(enhanced_ct_bytes(hu, SPACING))
    enhanced = read_ct_path(tmp_path / "enhanced.dcm")
    np.testing.assert_array_equal(enhanced.hu, hu)
    assert enhanced.spacing_mm == SPACING

    tiffs = tmp_path / "tiff"
    tiffs.mkdir()
    for name, data in tiff_slices(hu):
        (tiffs / name).write_bytes(data)
    np.testing.assert_array_equal(read_ct_path(tiffs).hu, hu)


def test_read_ct_path_refuses_a_single_slice_a_missing_path_and_too_many_files(tmp_path, monkeypatch):
    (name, data), *_ = series(phantom_hu())
    (tmp_path / "SMITH_ALICE.dcm").write_bytes(data)
    with pytest.raises(InvalidInputError, match="a single slice is not a volume"):
        read_ct_path(tmp_path / "SMITH_ALICE.dcm")
    with pytest.raises(InvalidInputError) as caught:
        read_ct_path(tmp_path / "SMITH_ALICE_2")
    assert str(caught.value) == "The CT series to read was not found: the path does not exist."
    monkeypatch.setattr(ct_input, "MAX_FILES", 5)
    for k in range(6):
        (tmp_path / f"{k}.dcm").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="This folder holds more than 5 files; the limit is 5 files"):
        read_ct_path(tmp_path)


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="the shared real CT sample is not available")
def test_real_series_reads_the_same_from_a_zip_real_artefact():
    files = [(p.name, p.read_bytes()) for p in sorted(REAL_SERIES.glob("*.dcm"))]
    expected = read_ct_folder(REAL_SERIES)
    volume = read_ct_upload([("series.zip", zipped(files, folder="Lung_Dx-A0002/"))])
    np.testing.assert_array_equal(volume.hu, expected.hu)
    assert (volume.spacing_mm, volume.window, volume.warnings) == (expected.spacing_mm, expected.window, ())
