"""A model's performance on evaluation cases, as one JSON-ready dict.

:func:`evaluate` runs a model over its held-out split (or a user's dataset) and measures, per
level of the model (an X-ray image; a CT slice, scan and patient):

- the confusion matrix (rows true, columns predicted) with row percentages, per-class
  precision, recall (sensitivity), specificity and F1, overall accuracy;
- ROC curves with AUC and a patient-level bootstrap 95% CI, precision-recall curves;
- the reliability diagram and expected calibration error before (T = 1) and after the card's
  temperature (fitted on the dev split at training time);
- the operating threshold of a binary model with its sensitivity and specificity.

Multi-class decisions are the arg-max of the probabilities; a binary model calls a case
positive when P(positive) >= the card's threshold; the findings model each finding at its own
threshold (0.5 where the card has none). The schema of the dict is documented in
:mod:`core.evaluation.figures`, which draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from core.errors import InsufficientDataError
from core.evaluation import metrics as em
from core.evaluation.data import IMAGE_KINDS, EvalData, model_kind
from core.evaluation.predict import Predictions, Progress, predict
from core.models.manifest import ModelCard
from core.models.registry import LoadedModel

N_BOOT = 1000
N_BINS = 10
#: Points kept of each ROC / PR curve in the JSON (the AUC is computed on all of them).
MAX_CURVE_POINTS = 400


@dataclass(frozen=True)
class LevelData:
    """What one level is measured on: truth, uncalibrated and calibrated probabilities."""

    unit: str
    y: np.ndarray  # (N,) class index / 0-1, or (N, L) 0-1 for multi-label
    p_raw: np.ndarray  # (N, K) probabilities, or (N,) P(positive), or (N, L)
    p_cal: np.ndarray
    groups: np.ndarray  # (N,) patient of each row
    labels: tuple[str, ...]
    task: str  # multiclass, binary, multilabel
    positive: str | None = None
    thresholds: tuple[float, ...] = ()
    note: str | None = None  # what the level's score is, where it is not the model's own probability


#: The slice model's scan and patient levels score a summary of calibrated slice probabilities.
SCAN_SCORE_NOTE = (
    "The scan score is the mean calibrated P(COVID-19) of the top 10% of the scan's slices (the patient's, "
    "the highest of their scans): it ranks scans, but the temperature calibrates slices, not this summary."
)


def _f(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _thin(*arrays: np.ndarray) -> list[list[float]]:
    """Curves as lists, thinned to at most :data:`MAX_CURVE_POINTS` (ends kept)."""
    n = arrays[0].size
    if n > MAX_CURVE_POINTS:
        idx = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))
        arrays = tuple(a[idx] for a in arrays)
    return [[round(float(v), 5) for v in a] for a in arrays]


def _auc_ci(y: np.ndarray, score: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> list[float] | None:
    try:
        ci = em.bootstrap_ci(em.roc_auc, y, score, n_boot=n_boot, seed=seed, groups=groups)
    except InsufficientDataError:
        return None
    return [ci.low, ci.high]


def _calibration(
    y: np.ndarray, raw: np.ndarray, cal: np.ndarray | None, temperature: float, fitted_on: str | None
) -> dict:
    def part(p: np.ndarray) -> dict[str, Any]:
        bins = em.reliability_bins(y, p, N_BINS)
        n = sum(b.count for b in bins)
        return {
            "ece": float(sum(b.count / n * abs(b.accuracy - b.mean_confidence) for b in bins)),
            "bins": [
                {
                    "lo": b.bin_low,
                    "hi": b.bin_high,
                    "confidence": b.mean_confidence,
                    "accuracy": b.accuracy,
                    "count": b.count,
                }
                for b in bins
            ],
        }

    return {
        "temperature": float(temperature),
        "fitted_on": fitted_on,
        "uncalibrated": part(raw),
        "calibrated": part(cal) if cal is not None else None,
    }


def _per_class_from_counts(counts: np.ndarray, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """:func:`core.evaluation.metrics.per_class_rates` with each class's prevalence, and room for
    its AUC, CI and average precision."""
    total = counts.sum()
    rates = em.per_class_rates(counts, labels)
    return {
        name: stats
        | {
            "prevalence": float(stats["support"] / total) if total else 0.0,
            "auc": None,
            "auc_ci": None,
            "average_precision": None,
        }
        for name, stats in rates.items()
    }


def _curves(
    y01: np.ndarray, score: np.ndarray, groups: np.ndarray, n_boot: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    if y01.min() == y01.max():
        return None
    r = em.roc(y01, score)
    p = em.pr(y01, score)
    fpr, tpr = _thin(r.fpr, r.tpr)
    recall, precision = _thin(p.recall, p.precision)
    roc = {"fpr": fpr, "tpr": tpr, "auc": float(r.auc), "auc_ci": _auc_ci(y01, score, groups, n_boot, seed)}
    pr = {
        "recall": recall,
        "precision": precision,
        "average_precision": float(p.average_precision),
        "prevalence": float(y01.mean()),
    }
    return roc, pr


def measure_level(
    level: LevelData, temperature: float, fitted_on: str | None, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """Every number of one level (see the module docstring)."""
    calibrated = fitted_on is not None and temperature != 1.0
    out: dict[str, Any] = {
        "unit": level.unit,
        "n": int(level.y.shape[0]),
        "n_patients": int(np.unique(level.groups).size),
        "labels": list(level.labels),
        "positive": level.positive,
        "accuracy": None,
        "confusion_matrix": None,
        "per_class": {},
        "macro_auc": None,
        "roc": {},
        "pr": {},
        "calibration": None,
        "operating_point": None,
        "skipped_labels": [],
        "note": level.note,
    }
    p = level.p_cal if calibrated else level.p_raw
    if level.task == "multiclass":
        cm = em.confusion_matrix(level.y, p.argmax(axis=1), level.labels)
        out["accuracy"] = float(np.trace(cm.counts) / cm.counts.sum())
        out["confusion_matrix"] = _cm_dict(cm)
        out["per_class"] = _per_class_from_counts(cm.counts, level.labels)
        for k, name in enumerate(level.labels):
            curves = _curves((level.y == k).astype(int), p[:, k], level.groups, n_boot, seed + k)
            _attach(out, name, curves)
        out["calibration"] = _calibration(
            level.y, level.p_raw, level.p_cal if calibrated else None, temperature, fitted_on
        )
    elif level.task == "binary":
        threshold = level.thresholds[0]
        predicted = (p >= threshold).astype(int)
        cm = em.confusion_matrix(level.y, predicted, level.labels)
        out["accuracy"] = float(np.trace(cm.counts) / cm.counts.sum())
        out["confusion_matrix"] = _cm_dict(cm)
        out["per_class"] = _per_class_from_counts(cm.counts, level.labels)
        curves = _curves(level.y, p, level.groups, n_boot, seed)
        _attach(out, level.labels[1], curves)
        if curves is not None:  # a binary AUC is the same for the negative class
            for key in ("auc", "auc_ci"):
                out["per_class"][level.labels[0]][key] = out["per_class"][level.labels[1]][key]
        out["operating_point"] = {"label": level.labels[1], **em.operating_point(level.y, p, threshold)}
        out["calibration"] = _calibration(
            level.y, level.p_raw, level.p_cal if calibrated else None, temperature, fitted_on
        )
    else:  # multilabel: one binary problem per finding
        for j, name in enumerate(level.labels):
            y = level.y[:, j].astype(int)
            pred = (p[:, j] >= level.thresholds[j]).astype(int)
            counts = em.confusion_matrix(y, pred, ("absent", name)).counts
            stats = _per_class_from_counts(counts, ("absent", name))[name]
            stats["threshold"] = float(level.thresholds[j])
            out["per_class"][name] = stats
            curves = _curves(y, p[:, j], level.groups, n_boot, seed + j)
            _attach(out, name, curves)
        flat_y = level.y.reshape(-1)
        out["calibration"] = _calibration(
            flat_y, level.p_raw.reshape(-1), level.p_cal.reshape(-1) if calibrated else None, temperature, fitted_on
        )
    out["scores"] = _scores(level, p)
    aucs = [c["auc"] for c in out["roc"].values()]
    out["macro_auc"] = float(np.mean(aucs)) if aucs else None
    return out


def _scores(level: LevelData, p: np.ndarray) -> dict[str, Any] | None:
    """Each case's truth and P(positive) for a threshold the user moves: the positive class of a
    binary level, COVID-19 (else the last class) against the rest for a multi-class one."""
    if level.task == "binary":
        label, y, score = level.labels[1], level.y, p
    elif level.task == "multiclass":
        k = level.labels.index("COVID-19") if "COVID-19" in level.labels else len(level.labels) - 1
        label, y, score = level.labels[k], (level.y == k).astype(int), p[:, k]
    else:
        return None
    return {"label": label, "y": [int(v) for v in y], "p": [round(float(v), 6) for v in score]}


def _cm_dict(cm: em.ConfusionMatrix) -> dict[str, Any]:
    return {
        "labels": list(cm.labels),
        "counts": cm.counts.astype(int).tolist(),
        "row_percent": [[_f(v) for v in row] for row in cm.row_percent],
    }


def _attach(out: dict[str, Any], name: str, curves: tuple[dict[str, Any], dict[str, Any]] | None) -> None:
    if curves is None:
        if name not in out["skipped_labels"]:
            out["skipped_labels"].append(name)
        return
    roc, pr = curves
    out["roc"][name], out["pr"][name] = roc, pr
    stats = out["per_class"].get(name)
    if stats is not None:
        stats["auc"], stats["auc_ci"], stats["average_precision"] = roc["auc"], roc["auc_ci"], pr["average_precision"]


# ----------------------------------------------------------------------------- levels per model


def calibration_of(card: ModelCard) -> str | None:
    """Where the card's temperature was fitted, in words; None when it was not (T = 1)."""
    record = (card.training or {}).get("calibration")
    if isinstance(record, dict) and record.get("fitted_on"):
        return str(record["fitted_on"])
    return "the dev split" if card.temperature != 1.0 else None


def _patient_max(y: np.ndarray, p_raw: np.ndarray, p_cal: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, ...]:
    """One row per patient: the patient's truth (any positive scan) and highest score."""
    patients = sorted(set(groups.tolist()))
    rows = [np.flatnonzero(groups == g) for g in patients]
    return (
        np.array([y[r].max() for r in rows]),
        np.array([p_raw[r].max() for r in rows]),
        np.array([p_cal[r].max() for r in rows]),
        np.array(patients),
    )


def levels_of(card: ModelCard, preds: Predictions) -> tuple[list[LevelData], list[str]]:
    """The levels a model is measured at, and notes on cases left out."""
    kind = model_kind(card)
    T = card.temperature
    cases = preds.cases
    groups = np.array([c.patient_id for c in cases])
    notes: list[str] = []
    if kind in IMAGE_KINDS:
        labels = tuple(card.labels)
        keep = np.array([c.label in labels for c in cases])
        if not keep.all():
            notes.append(f"{int((~keep).sum())} cases with labels outside {', '.join(labels)} left out.")
        y = np.array([labels.index(c.label) for c, k in zip(cases, keep, strict=True) if k])
        z = preds.logits[keep]
        return [
            LevelData("image", y, softmax(z, axis=1), softmax(z / T, axis=1), groups[keep], labels, "multiclass")
        ], notes
    if kind == "findings":
        labels = tuple(card.labels)
        y = np.array([c.findings for c in cases], dtype=int)
        thresholds = tuple(float(card.thresholds.get(name, 0.5)) for name in labels)
        return [
            LevelData(
                "image",
                y,
                expit(preds.logits),
                expit(preds.logits / T),
                groups,
                labels,
                "multilabel",
                thresholds=thresholds,
            )
        ], notes
    from core.evaluation.binary import positive_probability as _positive_probability

    threshold = float(card.thresholds.get("covid", 0.5))
    y = np.array([int(c.label == "COVID-19") for c in cases])
    levels: list[LevelData] = []
    if kind == "ct-volume":
        labels = ("COVID-", "COVID+")
        p_raw, p_cal = _positive_probability(preds.logits, 1.0), _positive_probability(preds.logits, T)
        scans = LevelData("scan", y, p_raw, p_cal, groups, labels, "binary", "COVID+", (threshold,))
    else:
        from core.labels import SLICE_CLASSES

        labels = SLICE_CLASSES
        assert preds.slice_case is not None and preds.slice_truth is not None
        s_raw, s_cal = preds.slice_probabilities(1.0), preds.slice_probabilities(T)
        known = ~np.isnan(preds.slice_truth)
        if known.any():
            levels.append(
                LevelData(
                    "slice", preds.slice_truth[known].astype(int), s_raw[known], s_cal[known],
                    groups[preds.slice_case[known]], labels, "binary", "COVID-19", (threshold,),
                )
            )  # fmt: skip
        else:
            notes.append("The source has no per-slice truth: no slice-level results.")
        p_raw, p_cal = preds.scan_scores(1.0), preds.scan_scores(T)
        in_classes = np.array([c.label in SLICE_CLASSES for c in cases])
        if not in_classes.all():
            notes.append(
                f"{int((~in_classes).sum())} scans of other classes (e.g. viral pneumonia) left out: the slice model "
                "tells COVID-19 from normal."
            )
        y, p_raw, p_cal, groups = y[in_classes], p_raw[in_classes], p_cal[in_classes], groups[in_classes]
        threshold = float(card.thresholds.get("scan", threshold))  # the scan score's own, fitted on dev
        scans = LevelData("scan", y, p_raw, p_cal, groups, labels, "binary", "COVID-19", (threshold,), SCAN_SCORE_NOTE)
    levels.append(scans)
    py, praw, pcal, pg = _patient_max(scans.y, scans.p_raw, scans.p_cal, scans.groups)
    if pg.size < scans.y.size:
        levels.append(
            LevelData("patient", py, praw, pcal, pg, scans.labels, "binary", scans.positive, (threshold,), scans.note)
        )
    return levels, notes


# ----------------------------------------------------------------------------- the whole evaluation


def kfold_record(card: ModelCard) -> dict[str, Any] | None:
    """Seed 002's k-fold table (per fold and mean, train and validation) when the model was
    trained with folds."""
    from core.evaluation.reports import kfold_table

    folds = (card.training or {}).get("folds")
    if not folds:
        return None
    return {"rows": kfold_table(folds), "kept_fold": (card.training or {}).get("kept_fold")}


def evaluate_predictions(
    card: ModelCard, data: EvalData, preds: Predictions, n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, Any]:
    """The evaluation dict of ``preds`` (a model's outputs on ``data``)."""
    levels, notes = levels_of(card, preds)
    fitted_on = calibration_of(card)
    if preds.skipped:
        notes.append(f"{len(preds.skipped)} cases could not be read and were left out.")
    if fitted_on is None:
        notes.append("No calibration temperature was fitted for this model: its probabilities are raw outputs.")
    return {
        "model": _model_record(card, fitted_on),
        "data": {
            "split": data.split,
            "description": data.description,
            "source": data.source,
            "n_cases": len(preds.cases),
            "n_patients": len({c.patient_id for c in preds.cases}),
        },
        "task": levels[0].task,
        "levels": [measure_level(level, card.temperature, fitted_on, n_boot, seed) for level in levels],
        "kfold": kfold_record(card),
        "robustness": None,
        "notes": notes,
    }


def recorded_evaluation(card: ModelCard) -> dict[str, Any]:
    """The held-out results a series model (survival, prognosis) recorded at training time.

    These models read a patient's whole series; their cards keep the confusion matrix,
    per-class table, AUC and operating point on the held-out patients, not the per-case
    outputs, so no curve or bootstrap interval can be drawn from them.
    """
    held = (card.metrics or {}).get("held_out")
    if not isinstance(held, dict) or "confusion_matrix" not in held:
        raise InsufficientDataError(f"{card.id}'s card records no held-out results.")
    cm = held["confusion_matrix"]
    counts = np.asarray(cm["rows_true_columns_predicted"], dtype=int)
    labels = tuple(cm["labels"])
    per_class = _per_class_from_counts(counts, labels)
    auc = _f(held.get("roc_auc"))
    for stats in per_class.values():
        stats["auc"] = auc
    unit = str(held.get("unit") or "patient")
    threshold = held.get("threshold")
    tn, fp, fn, tp = (int(v) for v in counts.ravel())
    negative, positive = (per_class[name] for name in labels)
    operating = None
    if threshold is not None:
        operating = {
            "label": labels[1],
            "threshold": float(threshold),
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
            "sensitivity": positive["recall"],
            "specificity": positive["specificity"],
            "ppv": positive["precision"],
            "npv": negative["precision"],
        }
    level = {
        "unit": unit,
        "n": int(counts.sum()),
        "n_patients": int(counts.sum()) if unit == "patient" else None,  # a card counts its units only
        "labels": list(labels),
        "positive": labels[1],
        "accuracy": float(np.trace(counts) / counts.sum()),
        "confusion_matrix": {
            "labels": list(labels),
            "counts": counts.tolist(),
            "row_percent": [[_f(100.0 * v / row.sum()) if row.sum() else None for v in row] for row in counts],
        },
        "per_class": per_class,
        "macro_auc": auc,
        "roc": {},
        "pr": {},
        "calibration": None,
        "operating_point": operating,
        "skipped_labels": [],
        "note": None,
        "scores": None,
    }
    fitted_on = calibration_of(card)
    return {
        "model": _model_record(card, fitted_on),
        "data": {
            "split": "held-out",
            "description": "the held-out split, as recorded at training time",
            "source": str(((card.training or {}).get("data") or {}).get("source", "")),
            "n_cases": level["n"],
            "n_patients": level["n_patients"],
        },
        "task": "binary",
        "levels": [level],
        "kfold": kfold_record(card),
        "robustness": None,
        "notes": [
            note
            for note in (
                "Recorded at training time: this model reads a patient's whole series, and its card keeps the "
                "held-out counts and AUC, not each patient's output, so there are no curves or intervals here.",
                f"Brier score on the held-out {unit}s: {held['brier']:.3f}." if held.get("brier") is not None else "",
            )
            if note
        ],
    }


def _model_record(card: ModelCard, fitted_on: str | None) -> dict[str, Any]:
    return {
        "id": card.id,
        "version": card.version,
        "architecture": card.architecture,
        "input_kind": card.input_kind,
        "labels": list(card.labels),
        "temperature": float(card.temperature),
        "temperature_fitted": fitted_on is not None,
        "intended_use": card.intended_use,
    }


def evaluate(
    model: LoadedModel,
    data: EvalData | None = None,
    *,
    progress: Progress | None = None,
    n_boot: int = N_BOOT,
    windows: int = 0,
    window_sd: tuple[float, float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Everything about one model on ``data`` (default: its recorded held-out split).

    ``windows`` > 0 adds, for a CT model, its AUC across that many perturbed windows.
    """
    from core.evaluation.compare import DEFAULT_WINDOW_SD, window_robustness
    from core.evaluation.data import evaluation_data

    card = model.card
    if model_kind(card) in ("survival", "prognosis"):
        return recorded_evaluation(card)
    data = data if data is not None else evaluation_data(card)
    preds = predict(model, data, progress)
    out = evaluate_predictions(card, data, preds, n_boot=n_boot, seed=seed)
    if windows > 0 and model_kind(card) in ("ct-volume", "ct-slice"):
        out["robustness"] = window_robustness(model, data, windows, window_sd or DEFAULT_WINDOW_SD, seed, progress)
    return out
