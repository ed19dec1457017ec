"""Fit a registered model's calibration temperature on its dev split, after training.

The training commands fit the temperature themselves (:mod:`core.evaluation.calibration`);
this is for weights trained before they did: the dev split recorded in the card is rebuilt
(:mod:`core.evaluation.data`), the shipped model run over it, the temperature fitted, and the
manifest entry rewritten with it, with the operating thresholds fitted on the same split (the
findings model's per finding, the slice model's on its scan score). The weights file is not
touched. The held-out numbers those move are measured again on the held-out split.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import expit

from core.errors import InvalidInputError
from core.evaluation.binary import binary_report, finding_metrics, operating_thresholds, youden_threshold
from core.evaluation.calibration import Calibration, fit_calibration
from core.evaluation.data import IMAGE_KINDS, evaluation_data, model_kind
from core.evaluation.predict import predict
from core.labels import SLICE_CLASSES
from core.models.manifest import ModelCard, write_manifest_entry
from core.models.registry import ModelRegistry
from core.types import Progress


@dataclass(frozen=True)
class Recalibration:
    card: ModelCard  # as written to the manifest
    calibration: Calibration
    thresholds_changed: bool


def _fit(card: ModelCard, registry: ModelRegistry, progress: Progress | None) -> tuple[Calibration, dict[str, float]]:
    kind = model_kind(card)
    data = evaluation_data(card, split="dev")
    preds = predict(registry.load(card.id), data, progress)
    cases = preds.cases
    thresholds: dict[str, float] = {}
    if kind in IMAGE_KINDS:
        y = np.array([list(card.labels).index(c.label) for c in cases])
        cal = fit_calibration(preds.logits, y, "softmax", f"dev split ({len(y)} images)")
    elif kind == "findings":
        y = np.array([c.findings for c in cases], dtype=float)
        cal = fit_calibration(preds.logits, y, "multilabel", f"dev split ({len(y)} images)")
        thresholds = operating_thresholds(y, expit(preds.logits / cal.temperature))
    elif kind == "ct-volume":
        y = np.array([int(c.label == "COVID-19") for c in cases])
        cal = fit_calibration(
            preds.logits[:, 0], y, "sigmoid", f"validation patients of the kept fold ({len(y)} scans)"
        )
    else:  # ct-slice: the slices whose truth is known, as the model was trained
        assert preds.slice_truth is not None and preds.slice_case is not None
        known = ~np.isnan(preds.slice_truth)
        y = preds.slice_truth[known].astype(int)
        cal = fit_calibration(
            preds.logits[known], y, "softmax", f"validation patients of the kept fold ({int(known.sum())} slices)"
        )
        keep = [i for i, c in enumerate(cases) if c.label in SLICE_CLASSES]
        scan_y = [int(cases[i].label == "COVID-19") for i in keep]
        scan_score = preds.scan_scores(cal.temperature)[keep]
        thresholds = dict(card.thresholds) | {"scan": youden_threshold(scan_y, scan_score)}
    return cal, thresholds


def _held_out_metrics(card: ModelCard, registry: ModelRegistry, progress: Progress | None) -> dict[str, Any]:
    """The card's recorded held-out metrics, measured again where the temperature moves them."""
    kind = model_kind(card)
    metrics = dict(card.metrics)
    if kind not in ("findings", "ct-slice"):
        return metrics  # arg-max decisions, AUCs and a threshold at logit 0 do not move with T
    data = evaluation_data(card, split="test")
    preds = predict(registry.load(card.id), data, progress)
    if kind == "findings":
        y = np.array([c.findings for c in preds.cases], dtype=float)
        metrics["held_out"] = finding_metrics(y, expit(preds.logits / card.temperature), card.thresholds)
    else:
        keep = [i for i, c in enumerate(preds.cases) if c.label in SLICE_CLASSES]
        y = np.array([int(preds.cases[i].label == "COVID-19") for i in keep])
        p = preds.scan_scores(card.temperature)[keep]
        per_scan = binary_report(y, p, SLICE_CLASSES, float(card.thresholds.get("scan", 0.5)))
        per_scan["unit"] = (card.metrics.get("held_out_per_scan") or {}).get("unit", "scan")
        metrics["held_out_per_scan"] = per_scan
    return metrics


def recalibrate(
    model_id: str, weights_dir: str | Path, progress: Progress | None = None, registry: ModelRegistry | None = None
) -> Recalibration:
    """Fit ``model_id``'s temperature on its recorded dev split and write it to the manifest."""
    registry = registry or ModelRegistry(weights_dir)
    card = registry.card(model_id)
    if model_kind(card) in ("survival", "prognosis"):
        raise InvalidInputError(f"{model_id} fitted its temperature on its dev split when it was trained.")
    cal, thresholds = _fit(card, registry, progress)
    training = dict(card.training) | {"calibration": cal.to_record()}
    new = replace(card, temperature=cal.temperature, training=training)
    if thresholds:
        how = "per finding" if model_kind(card) == "findings" else "of the scan score"
        new = replace(new, thresholds=thresholds)
        new = replace(new, training=training | {"operating_thresholds": f"Youden's J {how} on the dev split"})
    new = replace(new, metrics=_held_out_metrics(new, registry, progress))
    write_manifest_entry(weights_dir, new)
    return Recalibration(new, cal, bool(thresholds))
