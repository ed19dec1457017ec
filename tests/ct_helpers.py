"""Builders shared by the CT tests: tiny untrained CT models registered in a temporary manifest,
and small phantom volumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.ct.preprocess import LUNG_WINDOW
from core.models.architectures import build_model
from core.models.ct_slice import CT_SLICE_LABELS
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import sha256_of
from core.training.publish import save_half
from core.types import CtVolume

#: id -> (architecture, kwargs, input kind, input spec, labels). Inputs are small: COVID3D
#: sees 16 x 32 x 32 voxels, the slice model 32 px slices.
TINY_CT_MODELS: dict[str, tuple[str, dict[str, Any], str, InputSpec, tuple[str, ...]]] = {
    "covid3d-tiny": (
        "covid3d",
        {"width": 0.0625, "in_channels": 1},
        "ct-volume",
        InputSpec(32, 1, (0.5,), (0.25,), "test", depth=16, window=LUNG_WINDOW),
        ("COVID-19",),
    ),
    "ct-slice-tiny": (
        "ct-resnet",
        {"depth": 18, "in_channels": 1, "num_classes": 2},
        "ct-slice",
        InputSpec(32, 1, (0.5,), (0.25,), "test", window=LUNG_WINDOW),
        CT_SLICE_LABELS,
    ),
}


def register_tiny_ct_model(
    weights_dir: Path,
    model_id: str,
    seed: int = 0,
    temperature: float = 1.0,
    thresholds: dict[str, float] | None = None,
) -> ModelCard:
    """Write an untrained tiny CT model (half-precision weights) and its manifest entry."""
    arch, kwargs, kind, spec, labels = TINY_CT_MODELS[model_id]
    torch.manual_seed(seed)
    module = build_model(arch, **kwargs)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{model_id}.pt"
    save_half(module.state_dict(), path)
    card = ModelCard(
        id=model_id,
        version="test-1",
        architecture=arch,
        architecture_kwargs=kwargs,
        weights_file=path.name,
        sha256=sha256_of(path),
        input_kind=kind,
        input=spec,
        labels=labels,
        gradcam_layer=str(module.gradcam_layer),
        intended_use="untrained test model",
        temperature=temperature,
        thresholds=dict(thresholds or {}),
    )
    write_manifest_entry(weights_dir, card)
    return card


def phantom_volume(
    label: str = "COVID-19", severity: float = 0.7, shape: tuple[int, int, int] = (20, 40, 36)
) -> CtVolume:
    """A small CT phantom as a :class:`CtVolume` (float32 HU)."""
    from core.demo.ct_phantom import CT_FIELD_OF_VIEW_MM, generate_ct

    phantom = generate_ct(label, severity if label != "Normal" else 0.0, seed=3, shape=shape)
    spacing = tuple(float(f / n) for f, n in zip(CT_FIELD_OF_VIEW_MM, shape, strict=True))
    return CtVolume(
        hu=phantom.hu.astype(np.float32),
        spacing_mm=spacing,  # type: ignore[arg-type]
        series_uid="1.2.3",
        description="phantom",
        window=None,
        n_files=0,
    )
