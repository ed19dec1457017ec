"""A model trained on images of slices through the lungs reads a CT series the same way: each
slice cropped to its lungs, and only the slices that show the lungs count."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from core.ct.analysis import analyse_ct, patient_score, slice_cam
from core.ct.preprocess import (
    LUNG_WINDOW,
    body_box,
    lung_boxes,
    lung_slices,
    prepare_slices,
    slices_read,
    window_hu,
)
from core.errors import DashboardError
from core.models.manifest import InputSpec
from core.models.registry import ModelRegistry
from core.types import CtVolume
from tests.ct_helpers import register_tiny_ct_model

LUNGS = InputSpec(64, 1, (0.5,), (0.25,), "test", window=LUNG_WINDOW, crop="lungs")
WHOLE = dataclasses.replace(LUNGS, crop=None)

#: Lung half-width (px) of each of 20 slices: none in the neck and abdomen, tapering at apex and base.
LUNG_WIDTHS = [0, 0, 0, 5, 7, 14, 16, 17, 18, 18, 18, 18, 17, 16, 15, 8, 6, 0, 0, 0]


def chest(widths: list[int] = LUNG_WIDTHS, size: int = 128) -> np.ndarray:
    """Air around a soft-tissue body with a table line under it and, per slice, two lungs of the given half-width."""
    yy, xx = np.mgrid[:size, :size]
    body = ((yy - 60) / 36.0) ** 2 + ((xx - 64) / 52.0) ** 2 <= 1
    hu = np.full((len(widths), size, size), -1000.0, dtype=np.float32)
    for z, w in enumerate(widths):
        hu[z][body] = 40.0
        hu[z, 110:113, 5:123] = 200.0  # the table: outside the body, never part of it
        if w:
            for cx in (40, 88):
                hu[z][((yy - 58) / (1.4 * w)) ** 2 + ((xx - cx) / w) ** 2 <= 1] = -850.0
    return hu


def test_each_slice_gets_its_own_lung_box_inside_the_body() -> None:
    hu = chest()
    boxes, areas = lung_boxes(hu)
    assert [b is None for b in boxes] == [w == 0 for w in LUNG_WIDTHS]
    by0, by1, bx0, bx1 = body_box(hu)
    for z, box in enumerate(boxes):
        if box is None:
            assert areas[z] == 0
            continue
        y0, y1, x0, x1 = box
        w = LUNG_WIDTHS[z]
        # Both lungs inside the box, the box inside the body's box and hugging the lungs.
        assert x0 <= 40 - w and x1 >= 88 + w and y0 <= 58 - 1.4 * w and y1 >= 58 + 1.4 * w
        assert by0 <= y0 and y1 <= by1 and bx0 <= x0 and x1 <= bx1
        assert (x1 - x0) < 1.3 * (48 + 2 * w) + 4
    # Wider lungs, larger area.
    assert areas[9] > areas[5] > areas[4] > areas[3] > 0


def test_only_slices_through_the_lungs_are_read() -> None:
    hu = chest()
    read = lung_slices(hu)
    # At least half the largest cross-section: the slices with half-width 14 and more.
    assert read.tolist() == [w >= 14 for w in LUNG_WIDTHS]
    assert slices_read(hu, LUNGS).tolist() == read.tolist()
    assert slices_read(hu, WHOLE).all()
    # A series that shows no lung at all (a head, a phantom without air) is read whole.
    assert lung_slices(chest([0] * 6)).all()


def test_the_lung_crop_spans_the_input_with_the_lungs_where_there_is_lung() -> None:
    hu = chest()
    lungs, body = prepare_slices(hu, LUNGS), prepare_slices(hu, dataclasses.replace(LUNGS, crop="body"))
    assert lungs.shape == body.shape == (20, 1, 64, 64)

    def lung_span(x: torch.Tensor) -> tuple[float, float]:
        """The share of the input's width and height from the first to the last column (row) that
        holds lung (-850 HU; outside air is -1000)."""
        unit = x[0] * 0.25 + 0.5
        lung = ((unit - float(window_hu(np.array([-850.0]), *LUNG_WINDOW)[0])).abs() < 0.03).numpy()
        lung = ndimage.binary_erosion(lung)  # not the thin band where air meets the body

        def extent(hit: np.ndarray) -> float:
            idx = np.flatnonzero(hit)
            return (idx[-1] - idx[0] + 1) / hit.size

        return extent(lung.any(axis=0)), extent(lung.any(axis=1))

    for z, w in enumerate(LUNG_WIDTHS):
        if w >= 14:
            (lx, ly), (bx, by) = lung_span(lungs[z]), lung_span(body[z])
            assert lx >= 0.75 and ly >= 0.75, (z, lx, ly)
            assert lx > bx and ly > by + 0.1, (z, lx, bx, ly, by)
    # A slice without lung falls back to the body's box.
    assert torch.allclose(lungs[0], body[0])


def test_the_patient_score_and_the_ood_verdict_use_the_slices_read(tmp_path: Path) -> None:
    register_tiny_ct_model(tmp_path, "ct-slice-tiny")
    model = ModelRegistry(tmp_path, device=torch.device("cpu")).load("ct-slice-tiny")
    model.card = dataclasses.replace(model.card, input=dataclasses.replace(model.card.input, crop="lungs"))
    volume = CtVolume(chest(), (8.0, 2.5, 2.5), "1.2.3", "chest", None, 0)
    result = analyse_ct(volume, None, model)
    assert result.slices_read.tolist() == lung_slices(volume.hu).tolist()
    probs = result.slice_probabilities
    assert probs.shape == (20,)
    assert result.patient_score == pytest.approx(patient_score(probs[result.slices_read]))
    # Unread slices still have a probability (the page shows them greyed), they only do not count.
    model.card = dataclasses.replace(model.card, input=dataclasses.replace(model.card.input, crop=None))
    whole = analyse_ct(volume, None, model)
    assert whole.slices_read.all() and whole.patient_score == pytest.approx(patient_score(whole.slice_probabilities))


def test_the_slice_models_grad_cam_covers_the_region_it_reads(tmp_path: Path) -> None:
    # Seed 1: an untrained net whose COVID-19 gradient at layer4 is positive, so the ReLU'd map is not all zero.
    register_tiny_ct_model(tmp_path, "ct-slice-tiny", seed=1)
    register_tiny_ct_model(tmp_path, "covid3d-tiny")
    registry = ModelRegistry(tmp_path, device=torch.device("cpu"))
    model = registry.load("ct-slice-tiny")
    model.card = dataclasses.replace(model.card, input=dataclasses.replace(model.card.input, crop="lungs"))
    volume = CtVolume(chest(), (8.0, 2.5, 2.5), "1.2.3", "chest", None, 0)
    z = 9
    cam = slice_cam(volume, model, z)
    assert cam.shape == volume.hu.shape[1:] and cam.dtype == np.float32
    assert cam.min() >= 0.0 and cam.max() == pytest.approx(1.0)
    y0, y1, x0, x1 = lung_boxes(volume.hu)[0][z]
    outside = np.ones_like(cam, dtype=bool)
    outside[y0:y1, x0:x1] = False
    assert not cam[outside].any() and cam[~outside].any()
    with pytest.raises(DashboardError, match="ct-slice"):
        slice_cam(volume, registry.load("covid3d-tiny"), z)
