"""The one step that turns trained weights into a registered model, for every trainer.

:func:`publish` saves the kept weights in half precision, loads the saved file back into a
network (every number on the card is measured on the weights exactly as shipped), fits the
calibration temperature on the dev split (:func:`core.evaluation.calibration.fit_calibration`),
lets the trainer measure the shipped network at that temperature (its metrics and operating
thresholds; the dev logits are handed over, read once), and writes the model card (version from the file's sha256, provenance, the
calibration record) into the manifest.

A trainer says what it knows before the weights exist (:class:`CardDraft`), which split the
temperature comes from (:class:`DevSplit`) and how it measures the shipped network
(``measure`` returning :class:`Measured`).

Under ``torchrun`` (:mod:`core.training.distributed`) only rank 0 publishes: it writes the
weights, measures them and writes the one manifest entry (the same entry a single process
writes, with a ``distributed`` record of the run); the other processes wait at a barrier and
receive its card.

Examples
--------
>>> published = publish(best.state, lambda: build_model(arch, **kwargs), device, out_dir, draft,
...                     DevSplit(dev_logits, dev_targets, "softmax", "dev split (40 images)"), measure, training)
>>> published.card.temperature, published.card.metrics["held_out"]
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.evaluation.calibration import Calibration, fit_calibration
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import load_state_dict, sha256_of
from core.training import distributed

DEMO_INTENDED_USE = "Demo weights trained on synthetic phantoms; not for clinical use."


@dataclass(frozen=True)
class CardDraft:
    """The model card's fields a trainer knows before its weights are saved."""

    id: str
    architecture: str
    architecture_kwargs: dict[str, Any]
    input_kind: str
    input: InputSpec
    labels: tuple[str, ...]
    gradcam_layer: str
    intended_use: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DevSplit:
    """The split the temperature is fitted on: ``logits(shipped)`` gives the shipped network's
    logits there, ``targets`` their truth, ``output`` the kind of output
    (:data:`core.evaluation.calibration.OUTPUTS`), ``fitted_on`` the split in words for the card."""

    logits: Callable[[nn.Module], np.ndarray]
    targets: np.ndarray
    output: str
    fitted_on: str


@dataclass(frozen=True)
class Measured:
    """What a trainer measured on its shipped network: the card's ``metrics``, its operating
    ``thresholds`` and any further top-level entries (``extra``)."""

    metrics: dict[str, Any]
    thresholds: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """A trainer's result: the card written to the manifest, the weights file and the learning curves."""

    card: ModelCard
    weights_path: Path
    history: list[dict[str, float]]


@dataclass(frozen=True)
class Published:
    """What :func:`publish` wrote, with the shipped network (eval mode) and its calibration
    (``shipped`` is None on the processes of a group other than rank 0, which wrote nothing)."""

    card: ModelCard
    weights_path: Path
    shipped: nn.Module | None
    calibration: Calibration


def save_half(state: dict[str, torch.Tensor], path: Path) -> None:
    """Save a state dict with floating tensors in half precision (storage only)."""
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in state.items()}, path)


def provenance() -> dict[str, str]:
    """When and with what a model was trained, for the model card's ``training`` record."""
    return {
        "trained_on": dt.date.today().isoformat(),
        "torch": torch.__version__,
        "stored_as": "float16 (loaded as float32)",
    } | distributed.describe()


def card_version(digest: str) -> str:
    """A model version: the training date and the start of the weights' sha256."""
    return f"{dt.date.today():%Y%m%d}-{digest[:8]}"


def publish(
    state: dict[str, torch.Tensor],
    network: Callable[[], nn.Module],
    device: torch.device,
    out_dir: str | Path,
    draft: CardDraft,
    dev: DevSplit,
    measure: Callable[[nn.Module, float, np.ndarray], Measured],
    training: dict[str, Any],
) -> Published:
    """Save ``state`` as ``<out_dir>/<id>.pt`` in half precision, load the file into ``network()``
    on ``device``, fit its temperature on ``dev``, ``measure(shipped, temperature, dev_logits)``
    and write the card into ``out_dir``'s manifest.

    ``training`` is the trainer's record of the run (data, config, curves); the calibration
    record and :func:`provenance` are added to it.

    In a process group rank 0 alone does all this; every process then returns its card.
    """
    out = Path(out_dir)
    if not distributed.is_main():
        distributed.barrier()
        card, calibration = distributed.from_main(None)
        return Published(card, out / f"{draft.id}.pt", None, calibration)
    published = _publish(state, network, device, out, draft, dev, measure, training)
    if distributed.active():
        distributed.barrier()
        distributed.from_main((published.card, published.calibration))
    return published


def _publish(
    state: dict[str, torch.Tensor],
    network: Callable[[], nn.Module],
    device: torch.device,
    out: Path,
    draft: CardDraft,
    dev: DevSplit,
    measure: Callable[[nn.Module, float, np.ndarray], Measured],
    training: dict[str, Any],
) -> Published:
    out.mkdir(parents=True, exist_ok=True)
    weights_path = out / f"{draft.id}.pt"
    save_half(state, weights_path)
    shipped = network()
    shipped.load_state_dict(load_state_dict(weights_path))
    shipped.to(device).eval()
    dev_logits = dev.logits(shipped)
    calibration = fit_calibration(dev_logits, dev.targets, dev.output, fitted_on=dev.fitted_on)
    measured = measure(shipped, calibration.temperature, dev_logits)
    digest = sha256_of(weights_path)
    card = ModelCard(
        id=draft.id,
        version=card_version(digest),
        architecture=draft.architecture,
        architecture_kwargs=draft.architecture_kwargs,
        weights_file=weights_path.name,
        sha256=digest,
        input_kind=draft.input_kind,
        input=draft.input,
        labels=draft.labels,
        gradcam_layer=draft.gradcam_layer,
        intended_use=draft.intended_use,
        temperature=calibration.temperature,
        thresholds=measured.thresholds,
        training=training | {"calibration": calibration.to_record(), **provenance()},
        metrics=measured.metrics,
        extra=draft.extra | measured.extra,
    )
    write_manifest_entry(out, card)
    return Published(card, weights_path, shipped, calibration)
