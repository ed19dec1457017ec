"""Tiny trained survival and prognosis models for tests, and the session fixture that holds them.

The fixture lives here, not in ``tests/conftest.py``: each test module imports it
(``from tests.survival_helpers import survival_weights  # noqa: F401``). pytest makes one fixture
definition per module that imports it, so a session-scoped fixture alone would train the models
once per module; the folder is therefore kept here per pytest temporary root, and every module of
the session (of each xdist worker) gets the same one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

#: Ids the helper registers.
CT_ID = "covid3d-tiny"
SURVIVAL_ID = "survival-cnn-lstm"
PROGNOSIS_IDS = {1: "covid3d-prognosis-1scan", 2: "covid3d-prognosis-2scan"}

#: Demo patients the tiny models train on (seed 1, the training seed; phantoms drawn when loaded).
SURVIVAL_PATIENTS = 80
PROGNOSIS_PATIENTS = 80
#: The CNN-LSTM's input size in the tiny model (pixels).
SURVIVAL_SIZE = 32


def register_tiny_survival_models(folder: Path) -> None:
    """Write into ``folder``: covid3d-tiny (untrained), a CNN-LSTM (32 px, FC 16, LSTM 8) and the
    1- and 2-scan prognosis models fine-tuned from covid3d-tiny, each trained for 2 epochs."""
    from core.survival.cohort import demo_patients
    from core.training.prognosis import PrognosisTrainConfig, train_prognosis
    from core.training.survival import SurvivalTrainConfig, train_survival
    from tests.ct_helpers import register_tiny_ct_model

    register_tiny_ct_model(folder, CT_ID)
    train_survival(
        demo_patients(SURVIVAL_PATIENTS, seed=1),
        folder,
        SurvivalTrainConfig(
            cnn_init=None, size=SURVIVAL_SIZE, fc_features=16, hidden=8, max_epochs=2, patience=1, max_xrays=4
        ),
        source="demo test",
        progress=False,
    )
    patients = demo_patients(PROGNOSIS_PATIENTS, seed=1)
    for scans in (1, 2):
        train_prognosis(
            patients,
            folder,
            PrognosisTrainConfig(scans=scans, init=CT_ID, max_epochs=2, patience=1),
            source="demo test",
            progress=False,
        )


_BUILT: dict[Path, Path] = {}  # pytest's temporary root -> the session's weights folder


@pytest.fixture(scope="session")
def survival_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder with the tiny models of :func:`register_tiny_survival_models`; read-only."""
    root = tmp_path_factory.getbasetemp()
    if root not in _BUILT:
        folder = tmp_path_factory.mktemp("survival-weights")
        register_tiny_survival_models(folder)
        _BUILT[root] = folder
    return _BUILT[root]


def load_role_models(folder: Path) -> dict:
    """The tiny models by the roles :func:`core.survival.analysis.stratify` takes them
    ("survival", "prognosis-1", "prognosis-2"), loaded on the CPU."""
    import torch

    from core.models.registry import ModelRegistry

    registry = ModelRegistry(folder, device=torch.device("cpu"))
    return {
        "survival": registry.load(SURVIVAL_ID),
        "prognosis-1": registry.load(PROGNOSIS_IDS[1]),
        "prognosis-2": registry.load(PROGNOSIS_IDS[2]),
    }
