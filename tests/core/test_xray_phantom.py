"""Tests of the chest X-ray phantom generator (the core/demo/xray_phantom package).

Phantoms are generated small (64-128 px) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from PIL import Image

from core.demo.xray_phantom import (
    DATASET_FOLDERS,
    FIELD_OF_VIEW_MM,
    FINDINGS,
    XrayPhantom,
    generate_xray,
    write_xray_dataset,
)
from core.labels import XRAY_LABELS

SIZE = 128
SEEDS = range(6)


def _region(size: int, x_range: tuple[float, float], y_range: tuple[float, float]) -> np.ndarray:
    """Boolean (size, size) mask of both halves of the image where |x| and y lie in the ranges.

    Coordinates are normalised: x from -1 (left edge) to 1, y from -1 (top) to 1 (bottom).
    """
    c = (np.arange(size) + 0.5) / size * 2.0 - 1.0
    ax, y = np.abs(c)[None, :], c[:, None]
    return (ax >= x_range[0]) & (ax <= x_range[1]) & (y >= y_range[0]) & (y <= y_range[1])


# Lateral lower lung zones versus the central perihilar zones, wide enough to hold the lungs of
# every patient despite their random size, shift and rotation.
LATERAL_LOWER = _region(SIZE, (0.42, 0.6), (0.0, 0.3))
PERIHILAR = _region(SIZE, (0.12, 0.28), (-0.3, -0.05))


def _added(label: str, severity: float, seed: int) -> np.ndarray:
    """Brightness added by disease: the phantom minus the Normal phantom of the same seed."""
    normal = generate_xray("Normal", 0.0, seed, size=SIZE).pixels
    return generate_xray(label, severity, seed, size=SIZE).pixels - normal


def test_same_seed_gives_identical_phantom() -> None:
    a = generate_xray("COVID-19", 0.7, 11, size=SIZE)
    b = generate_xray("COVID-19", 0.7, 11, size=SIZE)
    assert np.array_equal(a.pixels, b.pixels)
    assert a.findings == b.findings
    assert a.severity == b.severity


def test_different_seeds_give_different_phantoms() -> None:
    a = generate_xray("Normal", 0.0, 1, size=SIZE).pixels
    b = generate_xray("Normal", 0.0, 2, size=SIZE).pixels
    assert np.abs(a - b).mean() > 0.01


@pytest.mark.parametrize("label", XRAY_LABELS)
@pytest.mark.parametrize("size", [64, 128, 512])
def test_pixels_are_float32_in_unit_range(label: str, size: int) -> None:
    phantom = generate_xray(label, 0.8, 3, size=size)
    assert isinstance(phantom, XrayPhantom)
    assert phantom.pixels.shape == (size, size)
    assert phantom.pixels.dtype == np.float32
    assert float(phantom.pixels.min()) >= 0.0
    assert float(phantom.pixels.max()) <= 1.0
    assert phantom.label == label
    assert phantom.pixel_spacing_mm == pytest.approx(FIELD_OF_VIEW_MM / size)


@pytest.mark.parametrize("seed", SEEDS)
def test_looks_like_a_chest(seed: int) -> None:
    """Air outside the body is darkest, aerated lung dark, the mediastinum and spine bright."""
    pixels = generate_xray("Normal", 0.0, seed, size=SIZE).pixels
    outside = pixels[_region(SIZE, (0.97, 1.0), (0.6, 1.0))].mean()
    lungs = pixels[_region(SIZE, (0.35, 0.5), (-0.4, -0.1))].mean()
    mediastinum = pixels[_region(SIZE, (0.0, 0.06), (-0.2, 0.2))].mean()
    assert outside < 0.1
    assert outside < lungs < mediastinum
    assert mediastinum - lungs > 0.25


def test_unknown_label_raises() -> None:
    with pytest.raises(ValueError, match="label"):
        generate_xray("Bacterial pneumonia", 0.5, 0, size=64)


@pytest.mark.parametrize("severity", [-0.1, 1.01, math.nan])
def test_severity_outside_unit_interval_raises(severity: float) -> None:
    with pytest.raises(ValueError, match="[Ss]everity"):
        generate_xray("COVID-19", severity, 0, size=64)


def test_negative_seed_raises() -> None:
    with pytest.raises(ValueError, match="[Ss]eed"):
        generate_xray("Normal", 0.0, -1, size=64)


def test_normal_has_no_disease_findings() -> None:
    phantom = generate_xray("Normal", 0.8, 5, size=SIZE)
    assert phantom.severity == 0.0
    assert tuple(phantom.findings) == FINDINGS
    for name in ("Lung Opacity", "Pneumonia", "Consolidation", "Pleural Effusion"):
        assert phantom.findings[name] == 0


@pytest.mark.parametrize("label", ["COVID-19", "Viral pneumonia"])
def test_diseased_findings_follow_what_was_drawn(label: str) -> None:
    mild = generate_xray(label, 0.3, 5, size=SIZE)
    severe = generate_xray(label, 0.95, 5, size=SIZE)
    for phantom in (mild, severe):
        assert tuple(phantom.findings) == FINDINGS
        assert set(phantom.findings.values()) <= {0, 1}
        assert phantom.findings["Lung Opacity"] == 1
        assert phantom.findings["Pneumonia"] == 1
    assert mild.findings["Consolidation"] == 0
    assert severe.findings["Consolidation"] == 1
    assert mild.findings["Pleural Effusion"] == 0  # only drawn from severity 0.6 up


def test_disease_at_zero_severity_draws_nothing() -> None:
    normal = generate_xray("Normal", 0.0, 8, size=SIZE)
    covid = generate_xray("COVID-19", 0.0, 8, size=SIZE)
    assert np.array_equal(normal.pixels, covid.pixels)
    assert covid.findings["Lung Opacity"] == 0


def test_disease_changes_only_the_chest_not_the_patient() -> None:
    """The same seed keeps the anatomy: disease adds density inside the thorax only."""
    added = _added("COVID-19", 1.0, 4)
    assert added.min() >= -1e-6
    outside_thorax = _region(SIZE, (0.0, 1.0), (-1.0, -0.85)) | _region(SIZE, (0.95, 1.0), (-1, 1))
    assert np.abs(added[outside_thorax]).max() < 1e-6


@pytest.mark.parametrize("seed", SEEDS)
def test_covid_is_peripheral_and_lower_while_viral_is_perihilar(seed: int) -> None:
    covid = _added("COVID-19", 0.7, seed)
    viral = _added("Viral pneumonia", 0.7, seed)
    assert covid[LATERAL_LOWER].mean() > 2.0 * covid[PERIHILAR].mean()
    assert viral[PERIHILAR].mean() > 2.0 * viral[LATERAL_LOWER].mean()
    # Relative to each other, too: not merely a brighter or darker image.
    assert covid[LATERAL_LOWER].mean() > viral[LATERAL_LOWER].mean()
    assert viral[PERIHILAR].mean() > covid[PERIHILAR].mean()


@pytest.mark.parametrize("label", ["COVID-19", "Viral pneumonia"])
@pytest.mark.parametrize("seed", [0, 7])
def test_higher_severity_adds_more_density(label: str, seed: int) -> None:
    added = [_added(label, s, seed).mean() for s in (0.25, 0.5, 0.75, 1.0)]
    assert added[0] > 0.0
    assert np.all(np.diff(added) > 0)


def test_classes_differ_by_pattern_more_than_by_mean_brightness() -> None:
    """Exposure varies more between patients than disease shifts the mean brightness."""
    seeds = range(10)
    normal = np.array([generate_xray("Normal", 0.0, s, size=64).pixels.mean() for s in seeds])
    for label in ("COVID-19", "Viral pneumonia"):
        sick = np.array([generate_xray(label, 0.6, s, size=64).pixels.mean() for s in seeds])
        assert abs(float((sick - normal).mean())) < 0.5 * float(normal.std())


def test_cardiomegaly_belongs_to_the_patient_not_the_class() -> None:
    flags = [generate_xray("Normal", 0.0, s, size=64).findings["Cardiomegaly"] for s in range(60)]
    assert 0 < sum(flags) < 30
    seed = flags.index(1)
    assert generate_xray("COVID-19", 0.6, seed, size=64).findings["Cardiomegaly"] == 1


def test_write_xray_dataset_layout_and_manifest(tmp_path) -> None:
    calls: list[tuple[int, int]] = []
    out = write_xray_dataset(
        tmp_path / "demo", n_per_class=2, seed=3, size=64, progress=lambda d, t: calls.append((d, t))
    )
    assert out == tmp_path / "demo"
    assert calls == [(i, 6) for i in range(1, 7)]
    for folder in ("COVID", "NORMAL", "Viral Pneumonia"):
        names = sorted(p.name for p in (out / folder).iterdir())
        assert names == [f"{folder}-0001.png", f"{folder}-0002.png"]

    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader)
        rows = list(reader)
    assert header == ["path", "label", "patient_id", "severity"]
    assert len(rows) == 6
    assert len({r[2] for r in rows}) == 6
    assert {r[2] for r in rows} == {f"demo-xr-{i:04d}" for i in range(1, 7)}
    listed = set()
    for path, label, _patient, severity in rows:
        assert label in XRAY_LABELS
        assert path.startswith(DATASET_FOLDERS[label] + "/")
        value = float(severity)
        assert severity == f"{value:.3f}"
        if label == "Normal":
            assert value == 0.0
        else:
            assert 0.25 <= value <= 1.0
        with Image.open(out / path) as image:
            assert image.mode == "L"
            assert image.size == (64, 64)
        listed.add(path)
    on_disk = {p.relative_to(out).as_posix() for p in out.glob("*/*.png")}
    assert listed == on_disk


def test_write_xray_dataset_is_bit_identical(tmp_path) -> None:
    a = write_xray_dataset(tmp_path / "a", n_per_class=1, seed=9, size=64)
    b = write_xray_dataset(tmp_path / "b", n_per_class=1, seed=9, size=64)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 5  # three images, manifest.csv, and the dataset.json that says it is synthetic
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    import json

    assert json.loads((a / "dataset.json").read_text())["synthetic"] is True


def test_written_png_is_an_upright_chest_image(tmp_path) -> None:
    out = write_xray_dataset(tmp_path, n_per_class=1, seed=2, size=64)
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    covid = next(r for r in rows if r["label"] == "COVID-19")
    with Image.open(out / covid["path"]) as image:
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    # Not blank and not inverted: the mediastinum is bright (MONOCHROME2).
    assert pixels.std() > 0.1
    assert pixels[_region(64, (0.0, 0.06), (-0.2, 0.2))].mean() > 0.6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_per_class": 0}, "n_per_class"),
        ({"n_per_class": 1.5}, "n_per_class"),
        ({"n_per_class": 1, "seed": -3}, "[Ss]eed"),
        ({"n_per_class": 1, "size": 10}, "[Ss]ize"),
    ],
)
def test_write_xray_dataset_rejects_bad_arguments_without_writing(tmp_path, kwargs, match) -> None:
    out = tmp_path / "demo"
    with pytest.raises(ValueError, match=match):
        write_xray_dataset(out, **{"size": 64, **kwargs})
    assert not out.exists()
