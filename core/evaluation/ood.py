"""Fit a model's OOD reference from its recorded splits, and measure how well it flags inputs
unlike its training data.

:func:`fit_model_reference` serves the weights trained before the reference existed (``python
-m core fit-ood``, as ``calibrate`` does for temperatures): the training and dev splits are
rebuilt exactly as :mod:`core.evaluation.data` rebuilds the held-out one, the model's
penultimate features are computed on them and :func:`core.ood.fit_reference` is fitted.

:func:`measure_probes` scores sets of inputs of a known kind (a photograph, a lateral film, a
real X-ray given to a demo model, ...) against the model's own in-distribution held-out
cases: per kind the detection AUROC (the OOD score ranking probes above held-out cases) and
the share of probes flagged at the card's threshold, with the share of held-out cases flagged
(the false-alarm rate, about 5% by construction of the threshold).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from core.ct.preprocess import prepare_slices, prepare_volume
from core.demo import ood_probes
from core.demo.xray_phantom import generate_xray
from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.data import IMAGE_KINDS, EvalData, evaluation_data, model_kind
from core.evaluation.predict import Predictions, predict
from core.io.images import read_xray
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import LoadedModel, ModelRegistry
from core.ood import OodReference, batched, fit_reference, layer_features, write_reference
from core.preprocess import normalise, to_unit_square
from core.types import Progress

#: Model kinds that have an OOD reference: the classifiers (not the survival / prognosis models).
OOD_KINDS = ("xray", "slice-images", "findings", "ct-volume", "ct-slice")


def _rows(card: ModelCard, preds: Predictions) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Per-layer feature rows and their class labels as the model was trained: per image, per
    scan (COVID3D: COVID-19 against the rest), or per slice of known truth (the slice model on
    series: its training slices); the findings model has one class."""
    kind = model_kind(card)
    x = preds.layer_features()
    if kind in IMAGE_KINDS:
        return x, np.array([list(card.labels).index(c.label) for c in preds.cases])
    if kind == "findings":
        return x, None
    if kind == "ct-volume":
        return x, np.array([int(c.label == "COVID-19") for c in preds.cases])
    assert preds.slice_truth is not None
    known = ~np.isnan(preds.slice_truth)
    if known.any():
        return [f[known] for f in x], preds.slice_truth[known].astype(int)
    return x, None


def fit_model_reference(registry: ModelRegistry, model_id: str, progress: Progress | None = None) -> ModelCard:
    """Fit ``model_id``'s reference on its recorded training split (threshold on its dev split),
    write ``<id>.ood.pt`` beside the weights and the card's ``ood`` entry; return the new card.
    Detection figures measured for an older reference are dropped with it."""
    card = registry.card(model_id)
    if model_kind(card) not in OOD_KINDS:
        raise InvalidInputError(f"{model_id} is a {model_kind(card)} model: OOD references are for the classifiers.")
    model = registry.load(model_id, with_ood=False)
    layers = list(model.module.ood_layers)
    train = evaluation_data(card, split="train")
    dev = evaluation_data(card, split="dev")
    x_train, y_train = _rows(card, predict(model, train, progress, features=layers))
    x_dev, _ = _rows(card, predict(model, dev, progress, features=layers))
    ref = fit_reference(x_train, y_train, x_dev, layers)
    if card.domain == "real" and model_kind(card) in IMAGE_KINDS:
        slices = model_kind(card) == "slice-images"
        look = lookalike_features(model.module, card.input, slices, model.device, layers)
        ref = ref.with_lookalike(LOOKALIKE, look[-1], x_dev[-1])
    if model_kind(card) == "ct-slice":  # per slice: say how many of the scans' slices
        where = (
            f"{train.description}, {len(x_train[0])} lung slices; threshold on {dev.description}, "
            f"{len(x_dev[0])} slices"
        )
    else:
        where = f"{train.description}; threshold on {dev.description}"
    record = write_reference(registry.weights_dir, card.id, ref, where, len(x_train[0]), len(x_dev[0]))
    new = replace(card, extra=card.extra | {"ood": record})
    write_manifest_entry(registry.weights_dir, new)
    return new


#: What a real-data model's look-alike domain is, in the page's words.
LOOKALIKE = "a synthetic demo phantom"
#: Phantoms the look-alike domain is fitted on (seeds apart from the probes of core.evaluation.probes).
LOOKALIKE_N = 150


def lookalike_features(
    module: torch.nn.Module, spec: InputSpec, slices: bool, device: torch.device, layers: list[str]
) -> list[np.ndarray]:
    """A network's features on demo phantoms of its kind (X-rays, or CT slices with ``slices``):
    the known look-alike domain of a model trained on real images."""
    labels = ("Normal", "COVID-19", "Viral pneumonia")
    rng = np.random.default_rng(20201204)
    if slices:
        images = [s for i in range(LOOKALIKE_N // 3) for s in ood_probes.ct_phantom_slices(200_000 + i, 3)]
    else:
        images = [
            read_xray(
                generate_xray(labels[i % 3], float(rng.uniform(0.2, 0.9)), 200_000 + i, size=256).to_png(), "p.png"
            ).windowed()
            for i in range(LOOKALIKE_N)
        ]
    return layer_features(module, batched(_prepared(spec, images)), device, layers)


# ----------------------------------------------------------------------------- scoring inputs


def _prepared(spec: InputSpec, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Model inputs of 2D images in [0, 1], as the pages prepare them."""
    return normalise(torch.cat([to_unit_square(np.asarray(u, dtype=np.float32), spec.size) for u in images]), spec)


def _image_inputs(card: ModelCard, images: Sequence[np.ndarray]) -> torch.Tensor:
    return _prepared(card.input, images)


def image_scores(model: LoadedModel, ref: OodReference, images: Sequence[np.ndarray]) -> np.ndarray:
    """OOD scores of 2D images in [0, 1] (as :meth:`core.types.XrayImage.windowed` gives them)
    for an image model (X-ray, findings, or the slice model on slice images)."""
    if not images:
        return np.zeros(0)
    with model.lock:
        feats = layer_features(model.module, batched(_image_inputs(model.card, images)), model.device, _names(ref))
    return ref.scores(feats)


def _names(ref: OodReference) -> list[str]:
    return [layer.name for layer in ref.layers]


def volume_scores(model: LoadedModel, ref: OodReference, volumes: Sequence[np.ndarray]) -> np.ndarray:
    """OOD scores of CT volumes in HU (z, y, x): COVID3D once per volume; a slice model per scan,
    the median of its slices' scores (as :func:`core.ood.verdict` judges a scan)."""
    out = []
    for hu in volumes:
        with model.lock:
            if model.card.input_kind == "ct-volume":
                feats = layer_features(model.module, [prepare_volume(hu, model.card.input)], model.device, _names(ref))
                out.append(float(ref.scores(feats)[0]))
            else:
                x = prepare_slices(hu, model.card.input)
                feats = layer_features(model.module, batched(x), model.device, _names(ref))
                out.append(float(np.median(ref.scores(feats))))
    return np.array(out)


def held_out_scores(
    model: LoadedModel, ref: OodReference, data: EvalData, progress: Progress | None = None
) -> np.ndarray:
    """OOD scores of the model's own held-out cases, in its unit (image, volume, scan)."""
    preds = predict(model, data, progress, features=_names(ref))
    if model_kind(model.card) != "ct-slice":
        return ref.scores(preds.layer_features())
    assert preds.slice_case is not None
    s = ref.scores(preds.layer_features())
    return np.array([np.median(s[preds.slice_case == i]) for i in range(len(preds.cases))])


def detection(held_out: np.ndarray, probe: np.ndarray, threshold: float) -> tuple[float, float]:
    """(AUROC of the scores telling probes from held-out cases, share of probes flagged)."""
    from sklearn.metrics import roc_auc_score

    if probe.size == 0 or held_out.size == 0:
        raise InsufficientDataError("no probes or no held-out cases to compare")
    y = np.r_[np.zeros(held_out.size), np.ones(probe.size)]
    return float(roc_auc_score(y, np.r_[held_out, probe])), float(np.mean(probe > threshold))


def measure_probes(
    model: LoadedModel,
    held_out: np.ndarray,
    probes: dict[str, tuple[str, np.ndarray]],
) -> dict[str, Any]:
    """Per probe kind the detection AUROC and share flagged, against ``held_out`` scores.
    ``probes`` maps a kind to (a description, its inputs' OOD scores)."""
    if model.ood is None:
        raise InvalidInputError(f"{model.id} has no OOD reference: run python -m core fit-ood --model {model.id}.")
    threshold = model.ood.threshold  # scores above it are flagged (the look-alike rule is folded in)
    results = []
    for kind, (description, scores) in probes.items():
        if scores.size == 0:
            continue
        auroc, flagged = detection(held_out, scores, threshold)
        results.append(
            {"kind": kind, "description": description, "n": int(scores.size), "auroc": round(auroc, 4),
             "flagged": round(flagged, 4)}
        )  # fmt: skip
    return {
        "held_out_n": int(held_out.size),
        "held_out_flagged": round(float(np.mean(held_out > threshold)), 4),
        "threshold": float(threshold),
        "probes": results,
    }
