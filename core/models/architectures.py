"""The registry of every network architecture, by the name the manifest gives it.

The networks live in their own modules: the X-ray classifiers in :mod:`core.models.xray`,
COVID3D in :mod:`core.models.covid3d`, the CT slice ResNet in :mod:`core.models.ct_slice`, the
survival CNN-LSTM in :mod:`core.models.survival` and the prognosis head in
:mod:`core.models.prognosis`.

Architectures are described in the manifest by name and keyword arguments, so that
``build_model(card.architecture, **card.architecture_kwargs)`` rebuilds the exact network.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from core.models.covid3d import Covid3D
from core.models.ct_slice import CtSliceResNet
from core.models.prognosis import Covid3DPrognosis
from core.models.survival import CnnLstmSurvival
from core.models.xray import XrayCustomCNN, XrayDenseNet121, XrayResNet18

ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "resnet18": XrayResNet18,
    "densenet121": XrayDenseNet121,
    "custom": XrayCustomCNN,
    # CT: COVID3D on whole volumes (seed 003) and the ResNet slice model (seed 002).
    "covid3d": Covid3D,
    "ct-resnet": CtSliceResNet,
    # Survival from an X-ray series (seed 000) and prognosis from CT (seed 003).
    "cnn-lstm": CnnLstmSurvival,
    "covid3d-prognosis": Covid3DPrognosis,
}


def build_model(architecture: str, **kwargs: Any) -> nn.Module:
    """Build an untrained network by manifest architecture name and keyword arguments."""
    try:
        builder = ARCHITECTURES[architecture]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise ValueError(f"unknown architecture {architecture!r}; known: {known}") from None
    return builder(**kwargs)


def gradcam_layer_of(model: nn.Module, layer_name: str) -> nn.Module:
    """Return the submodule named ``layer_name`` (a dotted path, never evaluated as code)."""
    try:
        return model.get_submodule(layer_name)
    except AttributeError as e:
        raise ValueError(f"model has no layer named {layer_name!r}") from e
