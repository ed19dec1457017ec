"""Tests of the chest CT phantom generator (the core/demo/ct_phantom package).

Volumes are generated at the default shape (about 60 ms each) and cached per argument tuple, so
the whole file runs in a few seconds. Distances to the pleura are measured here independently
of the generator, by in-plane erosions of the lung mask.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from core.demo.ct_phantom import (
    CONSOLIDATION_SEVERITY,
    CRAZY_PAVING_SEVERITY,
    CT_FIELD_OF_VIEW_MM,
    CT_FINDINGS,
    CT_SHAPE,
    CT_SPACING_MM,
    EFFUSION_SEVERITY,
    PERIPHERAL_DISTANCE_MM,
    PERIPHERAL_MIN_FRACTION,
    CtPhantom,
    generate_ct,
)
from core.labels import XRAY_LABELS

SEEDS = (0, 1, 2, 3)
DISEASES = ("COVID-19", "Viral pneumonia")


@cache
def _ct(label: str, severity: float, seed: int, session: int = 0) -> CtPhantom:
    """Cached phantom at the default shape; tests must not modify it."""
    return generate_ct(label, severity, seed, session=session)


def _inplane_distance_mm(mask: np.ndarray, spacing_mm: float) -> np.ndarray:
    """Distance (mm) of each voxel of ``mask`` to the boundary of its slice, by 4-neighbour erosions."""
    dist = np.zeros(mask.shape, np.float32)
    cur = mask.copy()
    while cur.any():
        dist += cur
        nxt = cur.copy()
        nxt[:, 1:, :] &= cur[:, :-1, :]
        nxt[:, :-1, :] &= cur[:, 1:, :]
        nxt[:, :, 1:] &= cur[:, :, :-1]
        nxt[:, :, :-1] &= cur[:, :, 1:]
        nxt[:, [0, -1], :] = False
        nxt[:, :, [0, -1]] = False
        cur = nxt
    return dist * spacing_mm


@cache
def _pleural_distance(seed: int) -> np.ndarray:
    lung = _ct("Normal", 0.0, seed).lung_mask
    return _inplane_distance_mm(lung, CT_SPACING_MM[1])


def _split_column(lung: np.ndarray) -> int:
    """Column between the lungs: the emptiest column of the lung mask's central third."""
    counts = lung.sum(axis=(0, 1))
    n = counts.size
    return n // 3 + int(np.argmin(counts[n // 3 : 2 * n // 3]))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


# --------------------------------------------------------------------------- volume and units


@pytest.mark.parametrize("label", XRAY_LABELS)
def test_volume_is_int16_hounsfield_units_of_the_default_shape(label: str) -> None:
    phantom = _ct(label, 0.8, 1)
    assert isinstance(phantom, CtPhantom)
    assert phantom.hu.shape == CT_SHAPE
    assert phantom.hu.dtype == np.int16
    assert phantom.lung_mask.shape == CT_SHAPE and phantom.lung_mask.dtype == bool
    assert phantom.lesion_mask.shape == CT_SHAPE and phantom.lesion_mask.dtype == bool
    assert phantom.spacing_mm == pytest.approx(CT_SPACING_MM)
    assert int(phantom.hu.min()) >= -1024 and int(phantom.hu.max()) <= 3071
    assert phantom.label == label
    assert phantom.severity == (0.0 if label == "Normal" else 0.8)


@pytest.mark.parametrize("shape", [(16, 32, 32), (30, 64, 96)])
def test_spacing_keeps_the_field_of_view_for_other_shapes(shape: tuple[int, int, int]) -> None:
    phantom = generate_ct("COVID-19", 0.6, 2, shape=shape)
    assert phantom.hu.shape == shape
    extent = np.array(phantom.spacing_mm) * np.array(shape)
    assert extent == pytest.approx(CT_FIELD_OF_VIEW_MM)
    assert phantom.lung_mask.any() and phantom.lesion_mask.any()


@pytest.mark.parametrize("seed", SEEDS)
def test_tissues_have_their_hounsfield_units(seed: int) -> None:
    phantom = _ct("Normal", 0.0, seed)
    hu = phantom.hu.astype(np.float32)
    # Air in front of the chest, in the corners of every slice.
    air = hu[:, :6, :6]
    assert abs(float(np.median(air)) + 1000.0) < 15.0
    assert 8.0 < float(air.std()) < 25.0  # quantum noise of about 10-20 HU
    lungs = hu[phantom.lung_mask]
    assert -900.0 <= float(np.median(lungs)) <= -780.0
    # The spine: posterior midline, bone above 300 HU.
    split = _split_column(phantom.lung_mask)
    behind = hu[:, CT_SHAPE[1] // 2 :, split - 4 : split + 5]
    assert float(behind.max()) > 300.0
    # The body is mostly fat and soft tissue outside the lungs and bones.
    body = hu[(hu > -500) & ~phantom.lung_mask]
    assert float(((body >= -150) & (body <= 100)).mean()) > 0.7


@pytest.mark.parametrize("seed", SEEDS)
def test_lungs_are_two_sizeable_air_filled_organs(seed: int) -> None:
    phantom = _ct("Normal", 0.0, seed)
    lung = phantom.lung_mask
    litres = float(lung.sum()) * float(np.prod(phantom.spacing_mm)) / 1e6
    assert 2.0 < litres < 7.0
    split = _split_column(lung)
    right, left = lung[:, :, :split].sum(), lung[:, :, split:].sum()
    assert 0.6 < right / left < 1.6
    # The lungs span most of the volume from the bases (inferior) to the apices (superior).
    slices = np.flatnonzero(lung.any(axis=(1, 2)))
    assert slices[0] < CT_SHAPE[0] * 0.25 and slices[-1] > CT_SHAPE[0] * 0.8


# --------------------------------------------------------------------------- determinism


def test_same_arguments_give_identical_volumes() -> None:
    a = generate_ct("Viral pneumonia", 0.7, 5, session=2)
    b = generate_ct("Viral pneumonia", 0.7, 5, session=2)
    assert np.array_equal(a.hu, b.hu)
    assert np.array_equal(a.lung_mask, b.lung_mask)
    assert np.array_equal(a.lesion_mask, b.lesion_mask)
    assert a.findings == b.findings
    assert a.lesion_fraction == b.lesion_fraction


@pytest.mark.parametrize("label", XRAY_LABELS)
def test_session_changes_the_noise_only(label: str) -> None:
    first = _ct(label, 0.6, 3, session=0)
    later = _ct(label, 0.6, 3, session=4)
    assert _dice(first.lung_mask, later.lung_mask) > 0.95
    assert np.array_equal(first.lesion_mask, later.lesion_mask)
    assert first.findings == later.findings
    diff = first.hu.astype(np.float32) - later.hu
    assert float(np.abs(diff).mean()) > 5.0
    assert abs(float(diff.mean())) < 1.0


def test_seeds_give_different_patients() -> None:
    a = _ct("Normal", 0.0, 0).lung_mask
    b = _ct("Normal", 0.0, 1).lung_mask
    assert _dice(a, b) < 0.95


@pytest.mark.parametrize("label", DISEASES)
def test_disease_changes_only_the_lesion_voxels(label: str) -> None:
    """Same seed and session: the patient and the noise are the same, only disease is added."""
    normal = _ct("Normal", 0.0, 2)
    sick = _ct(label, 0.9, 2)
    assert np.array_equal(normal.lung_mask, sick.lung_mask)
    outside = ~sick.lesion_mask
    assert np.array_equal(normal.hu[outside], sick.hu[outside])
    added = sick.hu[sick.lesion_mask].astype(np.float32) - normal.hu[sick.lesion_mask]
    assert float(np.median(added)) > 150.0


# --------------------------------------------------------------------------- disease extent


def test_normal_lungs_are_clear() -> None:
    phantom = _ct("Normal", 0.8, 4)
    assert phantom.severity == 0.0
    assert not phantom.lesion_mask.any()
    assert phantom.lesion_fraction == 0.0
    assert tuple(phantom.findings) == CT_FINDINGS
    assert set(phantom.findings.values()) == {0}


@pytest.mark.parametrize("label", DISEASES)
def test_zero_severity_draws_no_disease(label: str) -> None:
    phantom = _ct(label, 0.0, 4)
    assert not phantom.lesion_mask.any()
    assert np.array_equal(phantom.hu, _ct("Normal", 0.0, 4).hu)


@pytest.mark.parametrize("label", DISEASES)
@pytest.mark.parametrize("seed", SEEDS)
def test_lesions_only_grow_with_severity(label: str, seed: int) -> None:
    severities = (0.1, 0.3, 0.8, 1.0)
    phantoms = [_ct(label, s, seed) for s in severities]
    for lower, higher in zip(phantoms[:-1], phantoms[1:], strict=True):
        assert not (lower.lesion_mask & ~higher.lesion_mask).any()
    fractions = [p.lesion_fraction for p in phantoms]
    assert fractions[0] > 0.0
    assert np.all(np.diff(fractions) > 0.0)
    for p in phantoms:
        assert not (p.lesion_mask & ~p.lung_mask).any()
        assert p.lesion_fraction == pytest.approx(p.lesion_mask.sum() / p.lung_mask.sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_covid_extent_from_mild_to_severe(seed: int) -> None:
    mild = _ct("COVID-19", 0.1, seed)
    severe = _ct("COVID-19", 1.0, seed)
    assert 0.001 < mild.lesion_fraction < 0.03  # small but visible
    assert severe.lesion_fraction > 0.3
    added = mild.hu[mild.lesion_mask].astype(np.float32) - _ct("Normal", 0.0, seed).hu[mild.lesion_mask]
    assert float(np.median(added)) > 150.0


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("seed", SEEDS)
def test_covid_ground_glass_density(seed: int) -> None:
    below = CONSOLIDATION_SEVERITY["COVID-19"] - 0.05
    phantom = _ct("COVID-19", below, seed)
    hu = phantom.hu[phantom.lesion_mask]
    assert float(((hu >= -700) & (hu <= -250)).mean()) > 0.85
    assert phantom.findings["Ground-glass opacity"] == 1
    assert phantom.findings["Consolidation"] == 0


@pytest.mark.parametrize("seed", SEEDS)
def test_severe_covid_is_ground_glass_or_consolidation(seed: int) -> None:
    phantom = _ct("COVID-19", 0.95, seed)
    normal = _ct("Normal", 0.0, seed)
    hu = phantom.hu[phantom.lesion_mask]
    ggo = (hu >= -700) & (hu <= -250)
    cons = (hu >= -150) & (hu <= 100)
    assert float((ggo | cons).mean()) > 0.95
    assert 0.05 < float(cons.mean()) < 0.8
    # Aerated lung turned dense: consolidation density, not anything in between or above.
    was_air = normal.hu[phantom.lesion_mask] < -600
    dense = hu[was_air & (hu > -250)]
    assert dense.size > 0
    assert float(((dense >= -150) & (dense <= 100)).mean()) > 0.95
    assert phantom.findings["Consolidation"] == 1


# --------------------------------------------------------------------------- distributions


@pytest.mark.parametrize("seed", SEEDS)
def test_covid_is_bilateral_peripheral_posterior_and_lower(seed: int) -> None:
    phantom = _ct("COVID-19", 0.7, seed)
    lesion, lung = phantom.lesion_mask, phantom.lung_mask
    split = _split_column(lung)
    assert lesion[:, :, :split].any() and lesion[:, :, split:].any()
    near = _pleural_distance(seed)[lesion] <= PERIPHERAL_DISTANCE_MM
    assert float(near.mean()) > 0.6
    slices = np.flatnonzero(lung.any(axis=(1, 2)))
    z_mid = 0.5 * (slices[0] + slices[-1])
    z = np.nonzero(lesion)[0]
    assert (z < z_mid).sum() > (z > z_mid).sum()  # inferior (lower zones) predominant
    rows = np.flatnonzero(lung.any(axis=(0, 2)))
    y_mid = 0.5 * (rows[0] + rows[-1])
    y = np.nonzero(lesion)[1]
    assert (y > y_mid).sum() > (y < y_mid).sum()  # posterior predominant


@pytest.mark.parametrize("seed", SEEDS)
def test_viral_pneumonia_is_more_central_than_covid(seed: int) -> None:
    severity = EFFUSION_SEVERITY["Viral pneumonia"] - 0.05  # parenchymal opacities only
    distance = _pleural_distance(seed)
    covid = _ct("COVID-19", severity, seed)
    viral = _ct("Viral pneumonia", severity, seed)
    assert float(distance[covid.lesion_mask].mean()) + 3.0 < float(distance[viral.lesion_mask].mean())
    assert covid.findings["Peripheral"] == 1
    assert viral.findings["Peripheral"] == 0


def test_viral_pneumonia_is_more_often_one_sided_than_covid() -> None:
    seeds = range(10)
    covid = sum(_ct("COVID-19", 0.5, s).findings["Bilateral"] for s in seeds)
    viral = sum(_ct("Viral pneumonia", 0.5, s).findings["Bilateral"] for s in seeds)
    assert covid >= 9
    assert viral <= 6


# --------------------------------------------------------------------------- findings


CASES = [(label, severity, seed) for label in DISEASES for severity in (0.2, 0.6, 0.9) for seed in (0, 1, 2)]


@pytest.mark.parametrize(("label", "severity", "seed"), CASES)
def test_findings_follow_the_masks(label: str, severity: float, seed: int) -> None:
    phantom = _ct(label, severity, seed)
    normal = _ct("Normal", 0.0, seed)
    findings = phantom.findings
    assert tuple(findings) == CT_FINDINGS
    assert set(findings.values()) <= {0, 1}
    lesion = phantom.lesion_mask
    hu = phantom.hu[lesion]
    was_air = normal.hu[lesion] < -600
    split = _split_column(phantom.lung_mask)
    both_sides = bool(lesion[:, :, :split].any() and lesion[:, :, split:].any())
    if findings["Bilateral"]:
        assert both_sides
    elif not findings["Pleural Effusion"]:
        assert not both_sides
    if findings["Consolidation"]:
        assert (was_air & (hu >= -150) & (hu <= 100)).any()
    else:
        assert severity <= CONSOLIDATION_SEVERITY[label]
    if findings["Ground-glass opacity"]:
        assert (was_air & (hu >= -700) & (hu <= -250)).any()
    if findings["Peripheral"]:
        near = _pleural_distance(seed)[lesion] <= PERIPHERAL_DISTANCE_MM
        assert float(near.mean()) >= PERIPHERAL_MIN_FRACTION
    if findings["Pleural Effusion"]:
        assert severity >= EFFUSION_SEVERITY[label]
        assert (was_air & (hu >= -40) & (hu <= 60)).sum() > 50
    if findings["Crazy paving"]:
        assert label == "COVID-19" and severity >= CRAZY_PAVING_SEVERITY


def test_crazy_paving_belongs_to_some_covid_patients() -> None:
    flags = [_ct("COVID-19", 0.6, s).findings["Crazy paving"] for s in range(10)]
    assert 0 < sum(flags) < 10
    patient = flags.index(1)
    assert _ct("COVID-19", 0.9, patient).findings["Crazy paving"] == 1
    assert _ct("COVID-19", CRAZY_PAVING_SEVERITY - 0.05, patient).findings["Crazy paving"] == 0


def test_viral_effusion_lies_at_the_back_of_the_lung_base() -> None:
    seed = next(s for s in range(20) if _ct("Viral pneumonia", 1.0, s).findings["Pleural Effusion"])
    phantom = _ct("Viral pneumonia", 1.0, seed)
    normal = _ct("Normal", 0.0, seed)
    fluid = phantom.lesion_mask & (normal.hu < -600) & (phantom.hu >= -40) & (phantom.hu <= 60)
    lung = phantom.lung_mask
    slices = np.flatnonzero(lung.any(axis=(1, 2)))
    rows = np.flatnonzero(lung.any(axis=(0, 2)))
    # Fluid-density lesion voxels in the lower half of the lungs lie at the back, where a supine
    # patient's effusion collects (central consolidation of the same density may lie higher up).
    z, y, _ = np.nonzero(fluid)
    low = z < 0.5 * (slices[0] + slices[-1])
    assert low.sum() > 50
    assert float(np.mean(y[low] > 0.5 * (rows[0] + rows[-1]))) > 0.8
    assert _ct("Viral pneumonia", EFFUSION_SEVERITY["Viral pneumonia"] - 0.05, seed).findings["Pleural Effusion"] == 0


# --------------------------------------------------------------------------- validation


def test_unknown_label_raises() -> None:
    with pytest.raises(ValueError, match="label"):
        generate_ct("Bacterial pneumonia", 0.5, 0)


@pytest.mark.parametrize("severity", [-0.1, 1.01, math.nan, "high"])
def test_severity_outside_unit_interval_raises(severity: object) -> None:
    with pytest.raises(ValueError, match="[Ss]everity"):
        generate_ct("COVID-19", severity, 0)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seed_raises(seed: object) -> None:
    with pytest.raises(ValueError, match="[Ss]eed"):
        generate_ct("Normal", 0.0, seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("session", [-1, 0.5, None])
def test_bad_session_raises(session: object) -> None:
    with pytest.raises(ValueError, match="[Ss]ession"):
        generate_ct("Normal", 0.0, 0, session=session)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "shape", [(15, 32, 32), (16, 31, 32), (129, 128, 128), (48, 128, 513), (48, 128), (48.0, 128, 128), "big"]
)
def test_bad_shape_raises(shape: object) -> None:
    with pytest.raises(ValueError, match="[Ss]hape"):
        generate_ct("Normal", 0.0, 0, shape=shape)  # type: ignore[arg-type]
