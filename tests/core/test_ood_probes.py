"""Tests of the out-of-distribution probe generators (core.demo.ood_probes)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from core.demo import ood_probes as probes
from core.io.images import read_xray


def _most_common_colour_fraction(rgb: np.ndarray) -> float:
    _, counts = np.unique(rgb.reshape(-1, 3), axis=0, return_counts=True)
    return float(counts.max() / counts.sum())


def _content_rows(image: np.ndarray) -> np.ndarray:
    return np.flatnonzero(image.max(axis=1) > 0)


def _content_cols(image: np.ndarray) -> np.ndarray:
    return np.flatnonzero(image.max(axis=0) > 0)


def _png_chunks(data: bytes) -> list[bytes]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, i = [], 8
    while i < len(data):
        (length,) = struct.unpack(">I", data[i : i + 4])
        chunks.append(data[i + 4 : i + 8])
        i += 12 + length
    return chunks


# --------------------------------------------------------------------------- photograph


@pytest.mark.parametrize("seed", range(6))
def test_photograph_is_a_noisy_colour_image(seed: int) -> None:
    image = probes.photograph(seed)
    assert image.shape == (256, 256, 3)
    assert image.dtype == np.uint8
    channels = image.astype(np.int16)
    assert np.abs(channels[..., 0] - channels[..., 1]).mean() > 10.0
    assert (channels.max(axis=-1) - channels.min(axis=-1)).mean() > 30.0
    # Texture noise: no flat area (unlike a screenshot).
    assert _most_common_colour_fraction(image) < 0.05
    assert image.std() > 20.0


def test_photograph_is_deterministic_and_depends_on_the_seed() -> None:
    first = probes.photograph(3)
    np.testing.assert_array_equal(first, probes.photograph(3))
    other = probes.photograph(4)
    assert np.abs(first.astype(np.int16) - other.astype(np.int16)).mean() > 20.0


def test_photograph_size() -> None:
    assert probes.photograph(0, size=100).shape == (100, 100, 3)
    with pytest.raises(ValueError):
        probes.photograph(0, size=10)


# --------------------------------------------------------------------------- screenshot


@pytest.mark.parametrize("seed", range(4))
def test_screenshot_is_mostly_flat_with_text(seed: int) -> None:
    image = probes.screenshot(seed)
    assert image.shape == (256, 256, 3)
    assert image.dtype == np.uint8
    assert _most_common_colour_fraction(image) > 0.3
    # Few distinct colours (flat fills plus anti-aliased text edges).
    assert len(np.unique(image.reshape(-1, 3), axis=0)) < 2000
    # The background is light; the text is dark.
    assert image.reshape(-1, 3).mean(axis=0).min() > 180
    dark = (image.max(axis=-1) < 90).mean()
    assert dark > 0.002


def test_screenshot_is_deterministic_and_depends_on_the_seed() -> None:
    first = probes.screenshot(5)
    np.testing.assert_array_equal(first, probes.screenshot(5))
    assert not np.array_equal(first, probes.screenshot(6))
    assert probes.screenshot(5, size=128).shape == (128, 128, 3)


# --------------------------------------------------------------------------- DRRs on made-up volumes

AIR, WATER = -1000, 0


def test_drr_of_a_uniform_slab_is_half_bright_where_the_body_is() -> None:
    hu = np.full((20, 20, 20), AIR, np.int16)
    hu[:, :, 5:15] = WATER  # every lateral ray crosses 10 voxels of water
    image = probes.lateral_drr(hu, (5.0, 5.0, 5.0), size=64)
    assert image.shape == (64, 64)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image[8:56, 8:56], 0.5, atol=1e-5)


def test_drr_axes_rows_z_head_up_and_columns() -> None:
    hu = np.full((16, 16, 16), AIR, np.int16)
    hu[8:, :8, :] = WATER  # upper half (high z), anterior half (low y)
    lateral = probes.lateral_drr(hu, (4.0, 4.0, 4.0), size=32)
    frontal = probes.frontal_drr(hu, (4.0, 4.0, 4.0), size=32)
    # Row 0 is the last z index: the water is in the top half of both.
    assert lateral[:14, :14].mean() > 0.4 and lateral[18:].max() == 0.0
    assert frontal[:14].mean() > 0.4 and frontal[18:].max() == 0.0
    # Lateral columns are y: only the anterior (left) half is dense.
    assert lateral[:, 18:].max() == 0.0
    # Frontal columns are x: every x column has the same water along y.
    np.testing.assert_allclose(frontal[2:14, 2:30], frontal[8, 16], atol=1e-5)


def test_drr_keeps_the_physical_aspect_in_a_black_frame() -> None:
    hu = np.full((10, 20, 30), WATER, np.int16)
    spacing = (10.0, 5.0, 2.0)  # extents: z 100 mm, y 100 mm, x 60 mm
    lateral = probes.lateral_drr(hu, spacing, size=50)
    frontal = probes.frontal_drr(hu, spacing, size=50)
    assert lateral.min() > 0.0  # square extent: no padding
    assert len(_content_rows(frontal)) == 50
    cols = _content_cols(frontal)
    assert len(cols) == 30 and cols[0] == 10  # 60 / 100 of the width, centred
    assert frontal[:, :10].max() == 0.0 and frontal[:, 40:].max() == 0.0


def test_drr_of_air_only_is_black_and_bad_inputs_raise() -> None:
    air = np.full((4, 5, 6), AIR, np.int16)
    assert probes.frontal_drr(air, (1.0, 1.0, 1.0), size=16).max() == 0.0
    with pytest.raises(ValueError):
        probes.lateral_drr(np.zeros((4, 4)), (1.0, 1.0, 1.0))
    with pytest.raises(ValueError):
        probes.lateral_drr(air, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        probes.lateral_drr(air, (1.0, 1.0, 1.0), size=2)


# --------------------------------------------------------------------------- DRRs of the CT phantom


def test_phantom_drrs() -> None:
    lateral = probes.lateral_phantom(2)
    frontal = probes.frontal_phantom(2)
    for image in (lateral, frontal):
        assert image.shape == (256, 256)
        assert image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        # Field of view 288 mm (z) x 358.4 mm: black bands above and below, full width.
        rows = _content_rows(image)
        assert 200 <= len(rows) <= 210
        assert image[: rows[0]].max() == 0.0 and image[rows[-1] + 1 :].max() == 0.0
        body = image[rows[0] + 40 : rows[-1] - 40, 96:160]
        assert body.mean() > 0.3  # through the body, much brighter than the black frame
    assert np.abs(lateral - frontal).mean() > 0.05
    # Head up on the frontal view: the abdomen under the diaphragm (bottom rows) is denser
    # than the upper lungs.
    rows = _content_rows(frontal)
    height = len(rows)
    bottom = frontal[rows[-1] - height // 8 : rows[-1] + 1, 64:192].mean()
    upper = frontal[rows[0] + height // 4 : rows[0] + height * 2 // 5, 64:192].mean()
    assert bottom > upper + 0.03


def test_phantom_drrs_are_deterministic_and_depend_on_the_seed() -> None:
    first = probes.lateral_phantom(7, size=96)
    assert first.shape == (96, 96)
    np.testing.assert_array_equal(first, probes.lateral_phantom(7, size=96))
    assert not np.array_equal(first, probes.lateral_phantom(8, size=96))


# --------------------------------------------------------------------------- CT slices


def test_ct_slice_image_window() -> None:
    hu = np.array([[-2000.0, -1350.0, -600.0], [150.0, 400.0, -975.0]])
    image = probes.ct_slice_image(hu)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, [[0.0, 0.0, 0.5], [1.0, 1.0, 0.25]], atol=1e-6)
    np.testing.assert_allclose(probes.ct_slice_image(hu, window=(40.0, 400.0))[1], [0.775, 1.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError):
        probes.ct_slice_image(hu, window=(0.0, 0.0))
    with pytest.raises(ValueError):
        probes.ct_slice_image(np.zeros((2, 2, 2)))


def test_ct_phantom_slices() -> None:
    slices = probes.ct_phantom_slices(4, n=3)
    assert len(slices) == 3
    for image in slices:
        assert image.shape == (128, 128)
        assert image.dtype == np.float32
        assert image.min() >= 0.0 and image.max() <= 1.0
        # In the lung window (-1350 to 150 HU): air around the body about 0.23, aerated lung
        # (about -865 HU) about 0.32, soft tissue and bone white.
        assert ((image > 0.15) & (image < 0.27)).mean() > 0.2
        assert ((image > 0.29) & (image < 0.45)).mean() > 0.1
        assert (image > 0.85).mean() > 0.1
    assert not np.array_equal(slices[0], slices[1]) and not np.array_equal(slices[1], slices[2])
    again = probes.ct_phantom_slices(4, n=3)
    for a, b in zip(slices, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(probes.ct_phantom_slices(4, n=1)) == 1


# --------------------------------------------------------------------------- inversion and files


def test_inverted() -> None:
    unit = np.random.default_rng(0).random((16, 12)).astype(np.float32)
    copy = unit.copy()
    flipped = probes.inverted(unit)
    assert flipped.dtype == np.float32 and flipped.shape == unit.shape
    np.testing.assert_array_equal(unit, copy)  # input untouched
    np.testing.assert_allclose(flipped, 1.0 - unit, atol=1e-7)
    np.testing.assert_allclose(probes.inverted(flipped), unit, atol=1e-7)
    np.testing.assert_array_equal(probes.inverted(np.array([0.0, 0.5, 1.0])), [1.0, 0.5, 0.0])
    with pytest.raises(ValueError):
        probes.inverted(np.array([1.5]))
    with pytest.raises(ValueError):
        probes.inverted(np.array([1], np.uint8))


def test_to_png_grey_float_round_trips_through_the_reader() -> None:
    image = probes.frontal_phantom(1, size=64)
    data = probes.to_png(image)
    assert set(_png_chunks(data)) <= {b"IHDR", b"IDAT", b"IEND"}  # no metadata
    read = read_xray(data, "x.png")
    assert read.shape == image.shape
    assert read.file_format == "png" and read.bits_stored == 8
    assert read.warnings == ()
    np.testing.assert_array_equal(read.pixels, np.rint(image.astype(np.float64) * 255.0))
    assert probes.to_png(image) == data


def test_to_png_uint8_grey_and_colour() -> None:
    grey = (np.arange(20 * 30) % 256).astype(np.uint8).reshape(20, 30)
    read = read_xray(probes.to_png(grey), "x.png")
    assert read.shape == (20, 30)
    np.testing.assert_array_equal(read.pixels, grey)

    for colour in (probes.photograph(0, size=64), probes.screenshot(0, size=64)):
        read = read_xray(probes.to_png(colour), "x.png")
        assert read.shape == (64, 64)
        assert read.photometric == "RGB"
        assert len(read.warnings) == 1


def test_to_png_rejects_other_inputs() -> None:
    with pytest.raises(ValueError):
        probes.to_png(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError):
        probes.to_png(np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError):
        probes.to_png(np.full((4, 4), 1.2))
    with pytest.raises(ValueError):
        probes.to_png(np.zeros((4, 4, 3), np.float32))
