"""Slices in three planes, their physical pixel sizes, and the signed overlay's colours."""

from __future__ import annotations

import numpy as np
import pytest

from core.ct.views import map_projection, mean_projection, n_slices, pixel_size_mm, signed_overlay, take_slice


def marked_volume() -> np.ndarray:
    """(z, y, x) = (4, 5, 6) with a marker at the most superior slice, front row, left column."""
    v = np.zeros((4, 5, 6), dtype=np.float32)
    v[3, 0, 0] = 1.0
    return v


def test_planes_are_oriented_head_up_and_sized_by_axis() -> None:
    v = marked_volume()
    assert [n_slices(v.shape, p) for p in ("Axial", "Coronal", "Sagittal")] == [4, 5, 6]
    assert take_slice(v, "Axial", 3)[0, 0] == 1.0  # anterior row at the top
    coronal = take_slice(v, "Coronal", 0)
    assert coronal.shape == (4, 6) and coronal[0, 0] == 1.0  # the superior slice at the top
    sagittal = take_slice(v, "Sagittal", 0)
    assert sagittal.shape == (4, 5) and sagittal[0, 0] == 1.0
    assert take_slice(v, "Axial", 99).shape == (5, 6)  # an index past the end shows the last slice
    with pytest.raises(ValueError):
        take_slice(v, "Oblique", 0)


def test_pixel_sizes_follow_the_spacing() -> None:
    spacing = (6.0, 0.7, 0.8)
    assert pixel_size_mm(spacing, "Axial") == (0.7, 0.8)
    assert pixel_size_mm(spacing, "Coronal") == (6.0, 0.8)
    assert pixel_size_mm(spacing, "Sagittal") == (6.0, 0.7)


def test_signed_overlay_is_red_for_positive_blue_for_negative_and_gray_where_zero() -> None:
    gray = np.full((1, 3), 0.5, dtype=np.float32)
    rgb = signed_overlay(gray, np.array([[1.0, -1.0, 0.0]]), opacity=1.0)
    red, blue, plain = rgb[0]
    assert red[0] > 200 and red[2] < 60
    assert blue[2] > 200 and blue[0] < 60
    assert plain[0] == plain[1] == plain[2] == 128


def test_projections_keep_the_strongest_evidence_and_the_display_orientation() -> None:
    cam = np.zeros((4, 5, 6), dtype=np.float32)
    cam[1, 2, 3] = 0.3
    cam[2, 2, 3] = -0.9
    assert map_projection(cam, "Axial")[2, 3] == pytest.approx(0.3)
    assert map_projection(cam, "Axial", signed=True)[2, 3] == pytest.approx(-0.9)
    v = marked_volume()
    assert map_projection(v, "Coronal")[0, 0] == 1.0  # head up, as take_slice shows it
    assert mean_projection(v, "Sagittal").shape == (4, 5)
