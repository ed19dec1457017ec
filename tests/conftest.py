"""Shared fixtures. Tests never depend on the shipped demo weights unless marked ``demo_weights``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import TINY_MODELS, register_tiny_model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with the three X-ray model ids, untrained, 64 px input."""
    folder = tmp_path_factory.mktemp("weights")
    for model_id in TINY_MODELS:
        register_tiny_model(folder, model_id)
    return folder


@pytest.fixture
def chest_png() -> bytes:
    """A 256 px chest X-ray phantom (COVID-19, severity 0.8) as PNG bytes."""
    from core.demo.xray_phantom import generate_xray

    phantom = generate_xray("COVID-19", 0.8, seed=7, size=256)
    return phantom.to_png()
