"""Shared fixtures. Tests never depend on the shipped demo weights unless marked ``demo_weights``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.helpers import TINY_MODELS, register_tiny_model

#: Fixtures shared by several test folders (the ``deferred`` download recorder).
pytest_plugins = ["tests.report_helpers"]


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per xdist worker (and in the processes tests start): with ``-n 2`` on a
    2-core machine, two workers of two threads each oversubscribe the cores, and torch's thread
    pool then runs about ten times slower (measured: the demo-weights tests took 240 s instead
    of 22 s)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        os.environ["OMP_NUM_THREADS"] = "1"
        os.environ["MKL_NUM_THREADS"] = "1"
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with the three X-ray model ids, untrained, 64 px input."""
    folder = tmp_path_factory.mktemp("weights")
    for model_id in TINY_MODELS:
        register_tiny_model(folder, model_id)
    return folder


@pytest.fixture(scope="session")
def ct_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with a tiny untrained COVID3D and slice model (see tests/ct_helpers.py)."""
    from tests.ct_helpers import TINY_CT_MODELS, register_tiny_ct_model

    folder = tmp_path_factory.mktemp("ct-weights")
    for model_id in TINY_CT_MODELS:
        register_tiny_ct_model(folder, model_id)
    return folder


@pytest.fixture
def chest_png() -> bytes:
    """A 256 px chest X-ray phantom (COVID-19, severity 0.8) as PNG bytes."""
    from core.demo.xray_phantom import generate_xray

    phantom = generate_xray("COVID-19", 0.8, seed=7, size=256)
    return phantom.to_png()


#: Size of the demo cohort the tests build (the app's default is 200).
TEST_PATIENTS = 6


@pytest.fixture(scope="session")
def demo_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A case library built from a small demo cohort, shared read-only by the session's tests."""
    from core.library.demo import build_demo_library

    root = tmp_path_factory.mktemp("demo-library")
    build_demo_library(root, TEST_PATIENTS, seed=0, workers=1)
    return root


@pytest.fixture(autouse=True)
def _never_the_real_library(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may build or touch the app's own library under data/: point it at a scratch folder."""
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(tmp_path / "scratch-library"))
    monkeypatch.setenv("DASHBOARD_DEMO_PATIENTS", "3")
    # No background warm-up behind a test that opens Home (tests/pages/test_warmup.py turns it on).
    monkeypatch.setenv("DASHBOARD_WARM_UP", "0")


@pytest.fixture
def library_copy(demo_library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private, writable copy of the demo library, and the app pointed at it."""
    root = tmp_path / "library"
    shutil.copytree(demo_library, root)
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(root))
    return root


@pytest.fixture
def cohen_dataset(tmp_path: Path) -> Path:
    """A small covid-chestxray-dataset folder with good and bad rows; see tests.datasets."""
    from tests.datasets import write_cohen_dataset

    return write_cohen_dataset(tmp_path)
