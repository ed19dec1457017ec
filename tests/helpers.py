"""Builders shared by tests: small untrained registered models and in-memory images."""

from __future__ import annotations

from pathlib import Path

import torch

from core.labels import XRAY_LABELS
from core.models.architectures import build_model
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import sha256_of
from core.training.publish import save_half
from core.training.xray import IMAGENET_MEAN, IMAGENET_STD

ROOT = Path(__file__).resolve().parents[1]

TINY_MODELS = {
    "cxr-resnet18": ("resnet18", {"num_classes": 3, "in_channels": 3}, 3),
    "cxr-densenet121": ("densenet121", {"num_classes": 3, "in_channels": 3}, 3),
    "cxr-custom": ("custom", {"num_classes": 3, "in_channels": 1, "blocks": 3, "width": 4}, 1),
}


def register_tiny_model(weights_dir: Path, model_id: str, size: int = 64, seed: int = 0) -> ModelCard:
    arch, kwargs, channels = TINY_MODELS[model_id]
    torch.manual_seed(seed)
    module = build_model(arch, **kwargs)
    path = weights_dir / f"{model_id}.pt"
    weights_dir.mkdir(parents=True, exist_ok=True)
    save_half(module.state_dict(), path)
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,), (0.25,))
    card = ModelCard(
        id=model_id,
        version="test-1",
        architecture=arch,
        architecture_kwargs=kwargs,
        weights_file=path.name,
        sha256=sha256_of(path),
        input_kind="xray",
        input=InputSpec(size, channels, mean, std, "test"),
        labels=XRAY_LABELS,
        gradcam_layer=str(module.gradcam_layer),
        intended_use="untrained test model",
    )
    write_manifest_entry(weights_dir, card)
    return card


def register_tiny_findings_model(weights_dir: Path, model_id: str = "cxr-findings", seed: int = 0) -> ModelCard:
    """An untrained multi-label DenseNet-121 (one output per finding) at 64 px."""
    from core.demo.xray_phantom import FINDINGS

    kwargs = {"num_classes": len(FINDINGS), "in_channels": 3, "dropout": 0.0}
    torch.manual_seed(seed)
    module = build_model("densenet121", **kwargs)
    path = weights_dir / f"{model_id}.pt"
    weights_dir.mkdir(parents=True, exist_ok=True)
    save_half(module.state_dict(), path)
    card = ModelCard(
        id=model_id,
        version="test-1",
        architecture="densenet121",
        architecture_kwargs=kwargs,
        weights_file=path.name,
        sha256=sha256_of(path),
        input_kind="xray",
        input=InputSpec(64, 3, IMAGENET_MEAN, IMAGENET_STD, "test"),
        labels=FINDINGS,
        gradcam_layer=str(module.gradcam_layer),
        intended_use="untrained test model",
        extra={"task": "multi-label"},
    )
    write_manifest_entry(weights_dir, card)
    return card


def fit_phantom_reference(weights_dir: Path, model_id: str, n_train: int = 48, n_dev: int = 24) -> ModelCard:
    """Give a registered tiny X-ray model an OOD reference fitted on demo phantoms (as a demo model
    trained on them would have), written beside it and into its card."""
    from dataclasses import replace

    from core.demo.xray_phantom import generate_xray
    from core.models.manifest import read_manifest
    from core.models.registry import ModelRegistry
    from core.ood import fit_reference, layer_features, write_reference
    from core.preprocess import normalise, to_unit_square

    model = ModelRegistry(weights_dir, device=torch.device("cpu")).load(model_id)
    spec = model.card.input
    layers = list(model.module.ood_layers)

    def features(seeds: range) -> list:
        images = [generate_xray(XRAY_LABELS[s % 3], 0.6, s, size=128).pixels for s in seeds]
        x = normalise(torch.cat([to_unit_square(im, spec.size) for im in images]), spec)
        return layer_features(model.module, [x], model.device, layers)

    labels = torch.tensor([s % 3 for s in range(n_train)]).numpy()
    ref = fit_reference(features(range(n_train)), labels, features(range(10_000, 10_000 + n_dev)), layers)
    record = write_reference(weights_dir, model_id, ref, "test phantoms", n_train, n_dev)
    card = next(c for c in read_manifest(weights_dir) if c.id == model_id)
    card = replace(card, extra=card.extra | {"ood": record})
    write_manifest_entry(weights_dir, card)
    return card
