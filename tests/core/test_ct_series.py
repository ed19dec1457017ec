"""Tests of core.io.ct_series: DICOM slices (bytes) -> one CtVolume in HU.

Series are written by core.demo.dicom_writer and then shuffled, renamed, cut or tampered with;
one test reads a real scanner's series from ../shared/samples (``real_artefact``), skipped where
that folder is absent.
"""

from __future__ import annotations

import datetime
import io
import logging
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array

from core.demo.dicom_writer import DicomPatient, DicomStudy, new_uid, write_ct_series, xray_dicom_bytes
from core.errors import InconsistentSeriesError, InvalidInputError, UnsupportedDicomError
from core.io.ct_series import SeriesInfo, list_series, read_ct_folder, read_ct_series

PATIENT = DicomPatient("SMITH^ALICE", "MRN-778899", "19610514", "F", 58, institution="St Elsewhere")
STUDY = DicomStudy(new_uid("ct-series-test"), "ACC-5566", datetime.date(2020, 4, 2))
IDENTIFIERS = ("SMITH", "ALICE", "MRN-778899", "19610514", "St Elsewhere", "ACC-5566")
SPACING = (2.5, 0.75, 0.8)
REAL_SERIES = Path(__file__).resolve().parents[3] / "shared" / "samples" / "ct-series-lung-dx-a0002"

Files = list[tuple[str, bytes]]


def phantom(n_slices: int = 8, size: int = 12, seed: int = 0) -> np.ndarray:
    """(z, y, x) int16 HU whose slices all differ (so the order can be checked)."""
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 400, size=(n_slices, size, size)).astype(np.int16)
    hu[:, 0, 0] = np.arange(n_slices) * 10 - 1000
    return hu


def written(tmp_path: Path, hu: np.ndarray, name: str = "ct", **kwargs: object) -> Files:
    paths = write_ct_series(tmp_path / name, hu, kwargs.pop("spacing_mm", SPACING), PATIENT, STUDY, **kwargs)
    return [(f"{name}/{p.name}", p.read_bytes()) for p in paths]


def tampered(data: bytes, **tags: object) -> bytes:
    """The file with some tags changed (a value of None deletes the tag)."""
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in tags.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def assert_no_identifier(text: str) -> None:
    for identifier in IDENTIFIERS:
        assert identifier.casefold() not in text.casefold()


def test_series_reads_back_with_the_same_hu_spacing_and_window(tmp_path):
    hu = phantom()
    volume = read_ct_series(written(tmp_path, hu, description="CHEST CT"))
    assert volume.hu.dtype == np.float32
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.spacing_mm == SPACING
    assert volume.window == (-600.0, 1500.0)
    assert volume.description == "CHEST CT"
    assert volume.n_files == 8
    assert volume.warnings == ()


def test_order_comes_from_positions_not_file_names(tmp_path):
    hu = phantom()
    files = written(tmp_path, hu)
    rng = np.random.default_rng(3)
    # Names that sort in the opposite order of the slices, then shuffled.
    renamed = [(f"slice-{len(files) - k:03d}.dcm", data) for k, (_, data) in enumerate(files)]
    shuffled = [renamed[i] for i in rng.permutation(len(renamed))]
    np.testing.assert_array_equal(read_ct_series(shuffled).hu, hu)
    # Instance numbers that contradict the positions are not used either.
    misnumbered = [(name, tampered(data, InstanceNumber=100 - k)) for k, (name, data) in enumerate(files)]
    np.testing.assert_array_equal(read_ct_series(misnumbered[::-1]).hu, hu)


def test_order_follows_the_slice_normal_of_a_sagittal_series(tmp_path):
    hu = phantom(5)
    files = []
    for k, (name, data) in enumerate(written(tmp_path, hu)):
        # Sagittal: rows along y, columns along -z; the normal is -x, so x decreases as k grows.
        files.append(
            (name, tampered(data, ImageOrientationPatient=[0, 1, 0, 0, 0, -1], ImagePositionPatient=[-2.5 * k, 0, 0]))
        )
    volume = read_ct_series(files[::-1])
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.spacing_mm[0] == 2.5


def test_float_hu_with_a_rescale_slope_round_trip(tmp_path):
    hu = np.random.default_rng(1).uniform(-1000, 1000, (4, 10, 10))
    volume = read_ct_series(written(tmp_path, hu, rescale_slope=0.5, rescale_intercept=-2000.0))
    np.testing.assert_allclose(volume.hu, hu, atol=0.25 + 1e-4)


def test_compressed_slices_are_decoded(tmp_path):
    hu = phantom(3)
    files = []
    for name, data in written(tmp_path, hu):
        ds = pydicom.dcmread(io.BytesIO(data))
        ds.compress(pydicom.uid.RLELossless)
        buffer = io.BytesIO()
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        files.append((name, buffer.getvalue()))
    np.testing.assert_array_equal(read_ct_series(files).hu, hu)


def test_an_unsupported_compression_is_refused(tmp_path):
    files = written(tmp_path, phantom(3))
    ds = pydicom.dcmread(io.BytesIO(files[1][1]))
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML  # no decoder exists for it
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    files[1] = (files[1][0], buffer.getvalue())
    with pytest.raises(UnsupportedDicomError, match="cannot decode") as caught:
        read_ct_series(files)
    assert_no_identifier(str(caught.value))


def test_several_series_must_be_chosen(tmp_path):
    chest = written(tmp_path, phantom(6), "a", description="CHEST CT")
    thin = written(tmp_path, phantom(4, seed=1), "b", description="LUNG THIN", series_uid=new_uid("thin"))
    files = chest + thin
    with pytest.raises(InconsistentSeriesError) as caught:
        read_ct_series(files)
    message = str(caught.value)
    assert "2 series" in message and "'CHEST CT' (CT, 6 slices" in message and "'LUNG THIN' (CT, 4 slices" in message
    assert_no_identifier(message)
    assert new_uid("thin") not in message

    series = list_series(files)
    assert series == [
        SeriesInfo(pydicom.dcmread(io.BytesIO(chest[0][1])).SeriesInstanceUID, "CHEST CT", "CT", 6, 12, 12, 6),
        SeriesInfo(new_uid("thin"), "LUNG THIN", "CT", 4, 12, 12, 4),
    ]
    volume = read_ct_series(files, series_uid=new_uid("thin"))
    np.testing.assert_array_equal(volume.hu, phantom(4, seed=1))
    assert (volume.description, volume.n_files, volume.series_uid) == ("LUNG THIN", 4, new_uid("thin"))
    with pytest.raises(InvalidInputError, match="not among"):
        read_ct_series(files, series_uid="1.2.3.4")


@pytest.mark.parametrize(
    "description", ["CHEST SMITH", "Alice lung 1.25", "CT MRN-778899", "ct st elsewhere", "LUNG 20200402"]
)
def test_a_series_description_that_may_name_the_patient_is_not_shown(tmp_path, description):
    """The series chooser and the page show the description; it is typed by people, and then
    sometimes holds a name, an id, the institution or a date (the Clean Descriptors rule)."""
    named = written(tmp_path, phantom(6), "a", description=description)
    plain = written(tmp_path, phantom(4, seed=1), "b", description="LUNG 1.25 B70f", series_uid=new_uid("plain"))
    assert [s.description for s in list_series(named + plain)] == ["", "LUNG 1.25 B70f"]
    assert read_ct_series(named).description == ""
    with pytest.raises(InconsistentSeriesError) as caught:
        read_ct_series(named + plain)
    assert "an unnamed series" in str(caught.value)
    assert_no_identifier(str(caught.value))


def test_a_gap_is_reported_where_it_is(tmp_path):
    hu = phantom(8)
    files = written(tmp_path, hu)
    del files[3]  # the 4th slice, between 5.0 and 10.0 mm
    rng = np.random.default_rng(4)
    volume = read_ct_series([files[i] for i in rng.permutation(len(files))])
    np.testing.assert_array_equal(volume.hu, np.delete(hu, 3, axis=0))
    assert volume.hu.shape[0] == 7 and volume.spacing_mm[0] == 2.5
    (warning,) = volume.warnings
    assert warning == (
        "There is a gap of 5.0 mm between slices 3 and 4 (at 5.0 and 10.0 mm), where the usual spacing is "
        "2.50 mm; slices may be missing. The viewer shows the slices on either side of the gap next to each other."
    )


def test_several_gaps_are_counted_beyond_the_first_three(tmp_path):
    files = written(tmp_path, phantom(20, size=4))
    volume = read_ct_series([f for k, f in enumerate(files) if k not in (2, 5, 8, 11)])
    assert volume.spacing_mm[0] == 2.5
    assert len(volume.warnings) == 4
    assert volume.warnings[-1] == "There is 1 more gap between slices."


def test_non_uniform_spacing_is_reported(tmp_path):
    files = written(tmp_path, phantom(6))
    name, data = files[2]
    files[2] = (name, tampered(data, ImagePositionPatient=[-4.4, -4.125, 5.6]))  # 5.0 -> 5.6 mm
    volume = read_ct_series(files)
    (warning,) = volume.warnings
    assert "not uniform (from 1.90 to 3.10 mm)" in warning and "median, 2.50 mm" in warning


def test_a_tilted_gantry_is_reported_with_its_angle(tmp_path):
    hu = phantom(4)
    files = written(tmp_path, hu)
    # A gantry tilted by 15 degrees: each slice's origin moves tan(15 deg) x 2.5 mm along y as z grows.
    shift = 2.5 * np.tan(np.radians(15.0))
    sheared = [
        (n, tampered(d, ImagePositionPatient=[-4.4, -4.125 + shift * k, 2.5 * k])) for k, (n, d) in enumerate(files)
    ]
    volume = read_ct_series(sheared[::-1])
    np.testing.assert_array_equal(volume.hu, hu)  # in acquisition order, not resampled
    assert volume.spacing_mm[0] == 2.5
    assert volume.warnings == (
        "The slices were taken with a tilted gantry (about 15 degrees): each slice is shifted sideways from the "
        "one before. The viewer shows the slices in acquisition order, stacked straight and not resampled, so the "
        "anatomy looks slightly slanted in side views.",
    )


def test_a_shift_under_half_a_pixel_is_not_a_tilt(tmp_path):
    files = written(tmp_path, phantom(4))
    nudged = [
        (n, tampered(d, ImagePositionPatient=[-4.4, -4.125 + 0.1 * k, 2.5 * k])) for k, (n, d) in enumerate(files)
    ]
    assert read_ct_series(nudged).warnings == ()


def test_an_oblique_orientation_is_reported(tmp_path):
    hu = phantom(5)
    angle = np.radians(20.0)
    # Axial slices turned 20 degrees about the patient's left-right axis; positions step along the normal.
    row, column = np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(angle), np.sin(angle)])
    normal = np.cross(row, column)
    files = [
        (n, tampered(d, ImageOrientationPatient=[*row, *column], ImagePositionPatient=list(2.5 * k * normal)))
        for k, (n, d) in enumerate(written(tmp_path, hu))
    ]
    volume = read_ct_series(files[::-1])
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.spacing_mm == pytest.approx(SPACING)
    assert volume.warnings == (
        "The slices are oblique: they are turned about 20 degrees away from the patient's axes (closest to axial). "
        "The viewer shows them as they were acquired, in acquisition order, not resampled to true axial, coronal "
        "or sagittal planes.",
    )


def test_a_duplicate_slice_is_dropped(tmp_path):
    hu = phantom(5)
    files = written(tmp_path, hu)
    files.append(("copy-of-slice-2.dcm", tampered(files[1][1], SOPInstanceUID=new_uid("copy"))))
    volume = read_ct_series(files)
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.n_files == 6
    assert volume.warnings == ("1 duplicate slice (same position, same image) was ignored.",)


def test_two_images_at_one_position_are_refused(tmp_path):
    files = written(tmp_path, phantom(5))
    other = pydicom.dcmread(io.BytesIO(files[1][1]))
    other.PixelData = bytes(len(other.PixelData))
    other.SOPInstanceUID = new_uid("other")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, other, enforce_file_format=True)
    with pytest.raises(InconsistentSeriesError, match="same position") as caught:
        read_ct_series([*files, ("x.dcm", buffer.getvalue())])
    assert_no_identifier(str(caught.value))


def test_mixed_orientations_are_refused(tmp_path):
    files = written(tmp_path, phantom(5))
    name, data = files[4]
    files[4] = (name, tampered(data, ImageOrientationPatient=[1, 0, 0, 0, 0, -1]))
    with pytest.raises(InconsistentSeriesError, match="different orientations") as caught:
        read_ct_series(files)
    assert_no_identifier(str(caught.value))


def test_mixed_slice_sizes_are_refused(tmp_path):
    big = written(tmp_path, phantom(4, size=12), "a", series_uid=new_uid("same"))
    small = written(tmp_path, phantom(2, size=8), "b", series_uid=new_uid("same"), origin_mm=(0.0, 0.0, 50.0))
    with pytest.raises(InconsistentSeriesError, match=r"different sizes \(8 x 8, 12 x 12 pixels\)"):
        read_ct_series(big + small)


def test_a_huge_series_is_refused_before_decoding(tmp_path):
    files = [(n, tampered(d, Rows=60000, Columns=60000)) for n, d in written(tmp_path, phantom(2))]
    with pytest.raises(InvalidInputError, match="too large to open"):
        read_ct_series(files)


def test_a_single_slice_is_not_a_volume(tmp_path):
    files = written(tmp_path, phantom(1))
    with pytest.raises(InvalidInputError, match="single slice is not a volume") as caught:
        read_ct_series(files)
    assert type(caught.value) is InvalidInputError


def test_files_that_are_not_dicom_images_are_ignored(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="core.io.ct_series")
    hu = phantom(4)
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, "PNG")
    others = [
        ("notes.txt", b"scanned on the new scanner"),
        ("preview.png", png.getvalue()),
        ("DICOMDIR", Path(get_testdata_file("DICOMDIR")).read_bytes()),
        ("plan.dcm", Path(get_testdata_file("rtplan.dcm")).read_bytes()),  # DICOM, but no image
        ("empty", b""),
    ]
    files = written(tmp_path, hu)
    volume = read_ct_series([*others[:2], *files, *others[2:]])
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.warnings == (
        "5 files that are not DICOM images were ignored (e.g. a DICOMDIR index, a dose report or a text file).",
    )
    assert [s.n_files for s in list_series([*others, *files])] == [4]
    with pytest.raises(InvalidInputError, match="No DICOM images were found among the 5 files"):
        read_ct_series(others)
    assert caplog.records and not any(name in caplog.text for name, _ in [*others, *files])


def non_ct_images(tmp_path: Path) -> Files:
    """A radiograph, a dose screen (a secondary capture with Modality CT) and a scout view."""
    dx = xray_dicom_bytes(np.full((8, 8), 0.5), 0.2, PATIENT, STUDY)
    screen = Dataset()
    screen.SOPClassUID = pydicom.uid.SecondaryCaptureImageStorage
    screen.SOPInstanceUID = new_uid("dose-screen")
    screen.SeriesInstanceUID = new_uid("dose-series")
    screen.Modality = "CT"
    screen.PatientName = PATIENT.name
    screen.set_pixel_data(np.zeros((8, 8, 3), dtype=np.uint8), "RGB", 8)
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, screen, enforce_file_format=True)
    (scout,) = written(tmp_path, phantom(1), "scout", series_uid=new_uid("scout"))
    scout = (scout[0], tampered(scout[1], ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    return [("SMITH_ALICE_chest.dcm", dx), ("dose.dcm", buffer.getvalue()), scout]


def test_dicom_images_that_are_not_ct_slices_are_ignored(tmp_path):
    hu = phantom(4)
    others = non_ct_images(tmp_path)
    files = [others[0], *written(tmp_path, hu), *others[1:]]
    assert [s.n_slices for s in list_series(files)] == [4]  # no choice to make
    volume = read_ct_series(files)
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.warnings == (
        "3 DICOM images that are not CT slices were ignored (1 radiograph, 1 scout view, 1 screen capture).",
    )
    with pytest.raises(InvalidInputError) as caught:
        read_ct_series(others)
    assert str(caught.value) == (
        "No CT slices were found among the 3 files given; the DICOM images among them are "
        "1 radiograph, 1 scout view, 1 screen capture."
    )
    assert_no_identifier(str(caught.value))


def test_ct_slices_written_as_secondary_captures_are_read(tmp_path):
    hu = phantom(3)
    files = [(n, tampered(d, SOPClassUID=pydicom.uid.SecondaryCaptureImageStorage)) for n, d in written(tmp_path, hu)]
    np.testing.assert_array_equal(read_ct_series(files).hu, hu)


def enhanced_ct_bytes(hu: np.ndarray, spacing_mm: tuple[float, float, float], *, intercept: float = -1024.0) -> bytes:
    """One multi-frame Enhanced CT file holding ``hu`` (z, y, x), frames written in reverse order."""
    dz, dy, dx = spacing_mm
    n = hu.shape[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.SOPClassUID = pydicom.uid.EnhancedCTImageStorage
    ds.SOPInstanceUID = new_uid("enhanced", n)
    ds.SeriesInstanceUID = new_uid("enhanced-series")
    ds.Modality = "CT"
    ds.SeriesDescription = "ENHANCED CT"
    ds.PatientName = PATIENT.name
    order = list(range(n))[::-1]
    stored = (hu[order] - intercept).astype(np.uint16)
    ds.set_pixel_data(stored, "MONOCHROME2", 16)
    shared = Dataset()
    measures, orientation, transform, voi = Dataset(), Dataset(), Dataset(), Dataset()
    measures.PixelSpacing = [dy, dx]
    measures.SliceThickness = dz
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    transform.RescaleIntercept = intercept
    transform.RescaleSlope = 1
    voi.WindowCenter, voi.WindowWidth = 40, 400
    shared.PixelMeasuresSequence = [measures]
    shared.PlaneOrientationSequence = [orientation]
    shared.PixelValueTransformationSequence = [transform]
    shared.FrameVOILUTSequence = [voi]
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for k in order:
        position, groups = Dataset(), Dataset()
        position.ImagePositionPatient = [0.0, 0.0, dz * k]
        groups.PlanePositionSequence = [position]
        frames.append(groups)
    ds.PerFrameFunctionalGroupsSequence = frames
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def test_a_multi_frame_enhanced_ct_is_split_into_its_frames():
    hu = phantom(5)
    (info,) = list_series([("enhanced.dcm", enhanced_ct_bytes(hu, SPACING))])
    assert (info.n_files, info.n_slices, info.label) == (1, 5, "'ENHANCED CT' (CT, 5 slices of 12 x 12)")
    volume = read_ct_series([("enhanced.dcm", enhanced_ct_bytes(hu, SPACING))])
    np.testing.assert_array_equal(volume.hu, hu)  # ordered by position, not frame number
    assert volume.spacing_mm == SPACING
    assert (volume.n_files, volume.window, volume.warnings) == (1, (40.0, 400.0), ())


def test_a_multi_frame_file_without_frame_positions_is_refused(tmp_path):
    data = enhanced_ct_bytes(phantom(3), SPACING)
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PerFrameFunctionalGroupsSequence
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    with pytest.raises(UnsupportedDicomError, match="multi-frame DICOM without a position for each frame"):
        read_ct_series([("x.dcm", buffer.getvalue())])


def test_a_damaged_slice_is_reported_without_its_name(tmp_path):
    files = written(tmp_path, phantom(4))
    name, data = files[2]
    files[2] = ("SMITH_ALICE_3.dcm", data[:-100])  # pixel data cut short
    with pytest.raises(UnsupportedDicomError, match="Slice 3 of 4 could not be decoded") as caught:
        read_ct_series(files)
    assert_no_identifier(str(caught.value))


def test_missing_positions_fall_back_to_instance_numbers(tmp_path):
    hu = phantom(5)
    files = [(name, tampered(data, ImagePositionPatient=None)) for name, data in written(tmp_path, hu)]
    volume = read_ct_series(files[::-1])
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.spacing_mm == SPACING  # from Spacing Between Slices
    assert len(volume.warnings) == 1 and "instance number" in volume.warnings[0]


def test_read_ct_folder_reads_subfolders(tmp_path):
    hu = phantom(4)
    write_ct_series(tmp_path / "patient" / "study" / "series", hu, SPACING, PATIENT, STUDY)
    (tmp_path / "patient" / "README.txt").write_text("exported")
    volume = read_ct_folder(tmp_path)
    np.testing.assert_array_equal(volume.hu, hu)
    assert volume.n_files == 4 and len(volume.warnings) == 1
    with pytest.raises(InvalidInputError, match="does not exist") as caught:
        read_ct_folder(tmp_path / "SMITH_ALICE")
    assert_no_identifier(str(caught.value))


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="the shared real CT sample is not available")
def test_real_series_reads_into_one_volume_real_artefact():
    volume = read_ct_folder(REAL_SERIES)
    assert volume.hu.shape == (30, 512, 512)
    assert volume.spacing_mm == pytest.approx((8.0, 0.646484375, 0.646484375))
    assert volume.n_files == 30 and volume.warnings == ()
    assert volume.window == (40.0, 350.0)
    assert "B40f" in volume.description
    air = volume.hu[:, :20, :20]  # a corner outside the body
    assert -1030 <= float(np.median(air)) <= -950
    lung = np.count_nonzero((volume.hu > -900) & (volume.hu < -800))
    assert lung > 0.02 * volume.hu.size  # aerated lung is a sizeable part of a chest CT
    assert float(volume.hu.max()) > 500  # bone

    # Slice 0 is the file with the lowest position along the normal (+z for axial slices).
    headers = {p: pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(REAL_SERIES.glob("*.dcm"))}
    lowest = min(headers, key=lambda p: float(headers[p].ImagePositionPatient[2]))
    ds = pydicom.dcmread(lowest)
    np.testing.assert_array_equal(volume.hu[0], pixel_array(ds) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
