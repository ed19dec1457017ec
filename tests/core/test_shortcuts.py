"""The shortcut checks catch a model that reads a marker at the image edge instead of the chest."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.cli.main import main
from core.evaluation.shortcuts import BORDER, blank_border, central_mask, shortcut_check
from core.models.registry import ModelRegistry
from core.training.xray import XrayTrainConfig, train_xray


def test_the_central_region_leaves_out_the_border_of_each_side() -> None:
    mask = central_mask(100, 0.15)
    assert mask.mean() == pytest.approx(0.49)
    assert not mask[:15].any() and not mask[:, :15].any() and not mask[85:].any() and not mask[:, 85:].any()
    assert mask[15:85, 15:85].all()
    x = torch.ones(2, 1, 100, 100)
    blanked = blank_border(x)
    assert float(blanked[0, 0, 50, 50]) == 1.0 and float(blanked[0, 0, 5, 50]) == 0.0
    assert float(blanked.mean()) == pytest.approx(0.49)


@pytest.fixture(scope="module")
def marker_model(tmp_path_factory) -> tuple[ModelRegistry, str]:
    """A small model trained where the class is told only by a white square in the top-left corner
    (as a burned-in marker might tell a hospital): the chests are the same phantom class. 128 px,
    so that ResNet-18's Grad-CAM layer has a 4 x 4 grid to place the corner on."""
    from core.demo.xray_phantom import generate_xray

    root = tmp_path_factory.mktemp("marker-data")
    rows = []
    for i in range(120):
        pixels = generate_xray("Normal", 0.0, 9_000 + i, size=128).pixels.copy()
        label = "COVID-19" if i % 2 else "Normal"
        if label == "COVID-19":
            pixels[4:16, 4:16] = 1.0
        name = f"img-{i:04d}.png"
        Image.fromarray(np.rint(pixels * 255).astype(np.uint8)).save(root / name)
        rows.append((name, label, f"p{i}"))
    with (root / "manifest.csv").open("w", newline="") as f:
        csv.writer(f).writerows([("path", "label", "patient_id"), *rows])
    weights = tmp_path_factory.mktemp("marker-weights")
    config = XrayTrainConfig(
        architecture="resnet18", model_id="marker", size=128, channels=1, max_epochs=4, patience=9, lr=1e-3,
        batch_size=16, augment=False,
    )  # fmt: skip
    train_xray(root / "manifest.csv", weights, config, progress=False)
    return ModelRegistry(weights), "marker"


def test_border_check_and_grad_cam_expose_a_corner_marker(marker_model) -> None:
    registry, model_id = marker_model
    result = shortcut_check(registry.load(model_id))
    assert result["auc"] > 0.95  # the marker tells the classes apart
    assert result["auc_border_blanked"] < 0.7  # blanked, nothing is left to read
    assert result["border"] == BORDER and result["central_area"] == pytest.approx(0.49, abs=0.02)
    assert set(result["cam_central_share"]) == {"Normal", "COVID-19"}


def test_grad_cam_mass_is_measured_inside_the_central_region(marker_model, monkeypatch) -> None:
    """The share is the map's mass inside the central region: a map lit only at the top-left corner
    gives 0, one lit evenly gives the region's area. (ResNet-18's Grad-CAM grid at 128 px is 4 x 4,
    too coarse to place a 12 px marker on: the arithmetic is checked with given maps.)"""
    import core.evaluation.shortcuts as shortcuts
    from core.types import ExplanationMap

    registry, model_id = marker_model
    model = registry.load(model_id)

    def corner_map(_model, _x, _target, method, out_hw):
        values = np.zeros(out_hw, dtype=np.float32)
        values[:10, :10] = 1.0
        return ExplanationMap(values, method, "COVID-19", model_id), torch.zeros(1, 2)

    monkeypatch.setattr(shortcuts, "attribute", corner_map)
    assert all(v == 0.0 for v in shortcut_check(model)["cam_central_share"].values())

    def even_map(_model, _x, _target, method, out_hw):
        return ExplanationMap(np.ones(out_hw, dtype=np.float32), method, "COVID-19", model_id), torch.zeros(1, 2)

    monkeypatch.setattr(shortcuts, "attribute", even_map)
    shares = shortcut_check(model)["cam_central_share"].values()
    assert all(v == pytest.approx(central_mask(128).mean()) for v in shares)


def test_shortcut_check_command_records_the_figures_in_the_card(marker_model, capsys) -> None:
    registry, model_id = marker_model
    status = main(
        ["shortcut-check", "--model", model_id, "--weights", str(registry.weights_dir), "--caveats", "a test marker"]
    )
    assert status == 0
    out = capsys.readouterr().out
    assert "with the outer 15% of each side blanked" in out and "Grad-CAM mass inside the central region" in out
    card = ModelRegistry(registry.weights_dir).card(model_id)
    assert card.metrics["shortcuts"]["auc_border_blanked"] < 0.7
    assert card.extra["caveats"] == "a test marker"


def test_shortcut_check_refuses_a_ct_volume_model(tmp_path: Path, capsys) -> None:
    from tests.ct_helpers import register_tiny_ct_model

    register_tiny_ct_model(tmp_path, "covid3d-tiny")
    status = main(["shortcut-check", "--model", "covid3d-tiny", "--weights", str(tmp_path)])
    assert status == 1
    assert capsys.readouterr().err.startswith("error: covid3d-tiny is not a 2D single-label image classifier")
