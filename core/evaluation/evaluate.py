"""A model's performance on evaluation cases, as an :class:`~core.evaluation.results.Evaluation`.

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
threshold (0.5 where the card has none). :mod:`core.evaluation.results` documents the result
and its JSON, :mod:`core.evaluation.figures` draws it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import expit, softmax

from core.errors import InsufficientDataError
from core.evaluation import metrics as em
from core.evaluation.binary import positive_probability
from core.evaluation.compare import DEFAULT_WINDOW_SD, window_robustness
from core.evaluation.data import IMAGE_KINDS, EvalData, evaluation_data, model_kind
from core.evaluation.predict import Predictions, predict
from core.evaluation.reports import kfold_table
from core.evaluation.results import (
    Calibration,
    ClassMetrics,
    Confusion,
    DataSummary,
    Evaluation,
    KFold,
    Level,
    ModelSummary,
    OperatingPoint,
    PrecisionRecall,
    Reliability,
    ReliabilityBin,
    Roc,
    Scores,
)
from core.labels import SLICE_CLASSES
from core.models.manifest import ModelCard
from core.models.registry import LoadedModel
from core.types import Progress

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


def _thin(*arrays: np.ndarray) -> list[tuple[float, ...]]:
    """Curves as tuples, thinned to at most :data:`MAX_CURVE_POINTS` (ends kept)."""
    n = arrays[0].size
    if n > MAX_CURVE_POINTS:
        idx = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(int))
        arrays = tuple(a[idx] for a in arrays)
    return [tuple(round(float(v), 5) for v in a) for a in arrays]


def _auc_ci(y: np.ndarray, score: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> tuple[float, float] | None:
    try:
        ci = em.bootstrap_ci(em.roc_auc, y, score, n_boot=n_boot, seed=seed, groups=groups)
    except InsufficientDataError:
        return None
    return ci.low, ci.high


def _reliability(y: np.ndarray, p: np.ndarray) -> Reliability:
    bins = em.reliability_bins(y, p, N_BINS)
    n = sum(b.count for b in bins)
    return Reliability(
        ece=float(sum(b.count / n * abs(b.accuracy - b.mean_confidence) for b in bins)),
        bins=tuple(ReliabilityBin(b.bin_low, b.bin_high, b.mean_confidence, b.accuracy, b.count) for b in bins),
    )


def _calibration(
    y: np.ndarray, raw: np.ndarray, cal: np.ndarray | None, temperature: float, fitted_on: str | None
) -> Calibration:
    return Calibration(
        temperature=float(temperature),
        fitted_on=fitted_on,
        uncalibrated=_reliability(y, raw),
        calibrated=_reliability(y, cal) if cal is not None else None,
    )


def _per_class_from_counts(counts: np.ndarray, labels: Sequence[str]) -> dict[str, ClassMetrics]:
    """:func:`core.evaluation.metrics.per_class_rates` with each class's prevalence; its AUC, CI
    and average precision are added where the class has curves."""
    total = counts.sum()
    rates = em.per_class_rates(counts, labels)
    return {
        name: ClassMetrics(
            **stats,
            prevalence=float(stats["support"] / total) if total else 0.0,
        )
        for name, stats in rates.items()
    }


Curves = tuple[Roc, PrecisionRecall]


def _curves(y01: np.ndarray, score: np.ndarray, groups: np.ndarray, n_boot: int, seed: int) -> Curves | None:
    if y01.min() == y01.max():
        return None
    r = em.roc(y01, score)
    p = em.pr(y01, score)
    fpr, tpr = _thin(r.fpr, r.tpr)
    recall, precision = _thin(p.recall, p.precision)
    roc = Roc(fpr, tpr, float(r.auc), _auc_ci(y01, score, groups, n_boot, seed))
    return roc, PrecisionRecall(recall, precision, float(p.average_precision), float(y01.mean()))


def _with_curves(stats: ClassMetrics, curves: Curves | None) -> ClassMetrics:
    if curves is None:
        return stats
    roc, pr = curves
    return replace(stats, auc=roc.auc, auc_ci=roc.auc_ci, average_precision=pr.average_precision)


def measure_level(
    level: LevelData, temperature: float, fitted_on: str | None, n_boot: int = N_BOOT, seed: int = 0
) -> Level:
    """Every number of one level (see the module docstring)."""
    calibrated = fitted_on is not None and temperature != 1.0
    p = level.p_cal if calibrated else level.p_raw
    accuracy: float | None = None
    confusion: Confusion | None = None
    operating: OperatingPoint | None = None
    if level.task == "multiclass":
        cm = em.confusion_matrix(level.y, p.argmax(axis=1), level.labels)
        accuracy, confusion = float(np.trace(cm.counts) / cm.counts.sum()), _confusion(cm)
        per_class = _per_class_from_counts(cm.counts, level.labels)
        curves = {
            name: _curves((level.y == k).astype(int), p[:, k], level.groups, n_boot, seed + k)
            for k, name in enumerate(level.labels)
        }
        calibration = _calibration(level.y, level.p_raw, level.p_cal if calibrated else None, temperature, fitted_on)
    elif level.task == "binary":
        threshold = level.thresholds[0]
        cm = em.confusion_matrix(level.y, (p >= threshold).astype(int), level.labels)
        accuracy, confusion = float(np.trace(cm.counts) / cm.counts.sum()), _confusion(cm)
        per_class = _per_class_from_counts(cm.counts, level.labels)
        negative, positive = level.labels
        curves = {positive: _curves(level.y, p, level.groups, n_boot, seed)}
        roc_pr = curves[positive]
        if roc_pr is not None:  # a binary AUC is the same for the negative class
            per_class[negative] = replace(per_class[negative], auc=roc_pr[0].auc, auc_ci=roc_pr[0].auc_ci)
        operating = _operating_point(positive, level.y, p, threshold)
        calibration = _calibration(level.y, level.p_raw, level.p_cal if calibrated else None, temperature, fitted_on)
    else:  # multilabel: one binary problem per finding
        per_class, curves = {}, {}
        for j, name in enumerate(level.labels):
            y = level.y[:, j].astype(int)
            pred = (p[:, j] >= level.thresholds[j]).astype(int)
            counts = em.confusion_matrix(y, pred, ("absent", name)).counts
            stats = _per_class_from_counts(counts, ("absent", name))[name]
            per_class[name] = replace(stats, threshold=float(level.thresholds[j]))
            curves[name] = _curves(y, p[:, j], level.groups, n_boot, seed + j)
        calibration = _calibration(
            level.y.reshape(-1),
            level.p_raw.reshape(-1),
            level.p_cal.reshape(-1) if calibrated else None,
            temperature,
            fitted_on,
        )
    measured = {name: c for name, c in curves.items() if c is not None}
    aucs = [roc.auc for roc, _ in measured.values()]
    return Level(
        unit=level.unit,
        n=int(level.y.shape[0]),
        n_patients=int(np.unique(level.groups).size),
        labels=level.labels,
        positive=level.positive,
        accuracy=accuracy,
        confusion_matrix=confusion,
        per_class={name: _with_curves(stats, curves.get(name)) for name, stats in per_class.items()},
        macro_auc=float(np.mean(aucs)) if aucs else None,
        roc={name: roc for name, (roc, _) in measured.items()},
        pr={name: pr for name, (_, pr) in measured.items()},
        calibration=calibration,
        operating_point=operating,
        skipped_labels=tuple(name for name, c in curves.items() if c is None),
        note=level.note,
        scores=_scores(level, p),
    )


def _operating_point(
    label: str, y: Sequence[int] | np.ndarray, p: Sequence[float] | np.ndarray, threshold: float
) -> OperatingPoint:
    return OperatingPoint(label=label, **em.operating_point(y, p, threshold))


def operating_point_at(scores: Scores, threshold: float) -> OperatingPoint:
    """The decisions ``P(scores.label) >= threshold`` on a level's scored cases, e.g. at a
    threshold the user moves."""
    return _operating_point(scores.label, scores.y, scores.p, threshold)


def _scores(level: LevelData, p: np.ndarray) -> Scores | None:
    """Each case's truth and P(positive) for a threshold the user moves: the positive class of a
    binary level, COVID-19 (else the last class) against the rest for a multi-class one."""
    if level.task == "binary":
        label, y, score = level.labels[1], level.y, p
    elif level.task == "multiclass":
        k = level.labels.index("COVID-19") if "COVID-19" in level.labels else len(level.labels) - 1
        label, y, score = level.labels[k], (level.y == k).astype(int), p[:, k]
    else:
        return None
    return Scores(label, tuple(int(v) for v in y), tuple(round(float(v), 6) for v in score))


def _confusion(cm: em.ConfusionMatrix) -> Confusion:
    return Confusion(
        labels=cm.labels,
        counts=tuple(tuple(int(v) for v in row) for row in cm.counts),
        row_percent=tuple(tuple(_f(v) for v in row) for row in cm.row_percent),
    )


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
    threshold = float(card.thresholds.get("covid", 0.5))
    y = np.array([int(c.label == "COVID-19") for c in cases])
    levels: list[LevelData] = []
    if kind == "ct-volume":
        labels = ("COVID-", "COVID+")
        p_raw, p_cal = positive_probability(preds.logits, 1.0), positive_probability(preds.logits, T)
        scans = LevelData("scan", y, p_raw, p_cal, groups, labels, "binary", "COVID+", (threshold,))
    else:
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


def kfold_record(card: ModelCard) -> KFold | None:
    """Seed 002's k-fold table (per fold and mean, train and validation) when the model was
    trained with folds."""
    folds = (card.training or {}).get("folds")
    if not folds:
        return None
    return KFold(tuple(kfold_table(folds)), (card.training or {}).get("kept_fold"))


def evaluate_predictions(
    card: ModelCard, data: EvalData, preds: Predictions, n_boot: int = N_BOOT, seed: int = 0
) -> Evaluation:
    """The evaluation of ``preds`` (a model's outputs on ``data``)."""
    levels, notes = levels_of(card, preds)
    fitted_on = calibration_of(card)
    if preds.skipped:
        notes.append(f"{len(preds.skipped)} cases could not be read and were left out.")
    if fitted_on is None:
        notes.append("No calibration temperature was fitted for this model: its probabilities are raw outputs.")
    return Evaluation(
        model=_model_summary(card, fitted_on),
        data=DataSummary(
            split=data.split,
            description=data.description,
            source=data.source,
            n_cases=len(preds.cases),
            n_patients=len({c.patient_id for c in preds.cases}),
        ),
        task=levels[0].task,
        levels=tuple(measure_level(level, card.temperature, fitted_on, n_boot, seed) for level in levels),
        kfold=kfold_record(card),
        notes=tuple(notes),
    )


def recorded_evaluation(card: ModelCard) -> Evaluation:
    """The held-out results a series model (survival, prognosis) recorded at training time.

    These models read a patient's whole series; their cards keep the confusion matrix,
    per-class table, AUC and operating point on the held-out patients, not the per-case
    outputs, so no curve or bootstrap interval can be drawn from them.
    """
    held = card.recorded_metrics.held_out
    if held is None or held.confusion_matrix is None:
        raise InsufficientDataError(f"{card.id}'s card records no held-out results.")
    counts = np.asarray(held.confusion_matrix, dtype=int)
    labels = held.labels
    auc = _f(held.auc)
    per_class = {name: replace(stats, auc=auc) for name, stats in _per_class_from_counts(counts, labels).items()}
    unit = held.unit or "patient"
    tn, fp, fn, tp = (int(v) for v in counts.ravel())
    negative, positive = (per_class[name] for name in labels)
    operating = None
    if held.threshold is not None:
        operating = OperatingPoint(
            label=labels[1],
            threshold=held.threshold,
            tp=tp,
            fp=fp,
            tn=tn,
            fn=fn,
            sensitivity=positive.recall,
            specificity=positive.specificity,
            ppv=positive.precision,
            npv=negative.precision,
        )
    n = int(counts.sum())
    n_patients = n if unit == "patient" else None  # a card counts its units only
    level = Level(
        unit=unit,
        n=n,
        n_patients=n_patients,
        labels=labels,
        positive=labels[1],
        accuracy=float(np.trace(counts) / counts.sum()),
        confusion_matrix=Confusion(
            labels=labels,
            counts=held.confusion_matrix,
            row_percent=tuple(tuple(_f(100.0 * v / row.sum()) if row.sum() else None for v in row) for row in counts),
        ),
        per_class=per_class,
        macro_auc=auc,
        operating_point=operating,
    )
    notes = [
        "Recorded at training time: this model reads a patient's whole series, and its card keeps the "
        "held-out counts and AUC, not each patient's output, so there are no curves or intervals here."
    ]
    if held.brier is not None:
        notes.append(f"Brier score on the held-out {unit}s: {held.brier:.3f}.")
    return Evaluation(
        model=_model_summary(card, calibration_of(card)),
        data=DataSummary(
            split="held-out",
            description="the held-out split, as recorded at training time",
            source=str(((card.training or {}).get("data") or {}).get("source", "")),
            n_cases=n,
            n_patients=n_patients,
        ),
        task="binary",
        levels=(level,),
        kfold=kfold_record(card),
        notes=tuple(notes),
    )


def _model_summary(card: ModelCard, fitted_on: str | None) -> ModelSummary:
    return ModelSummary(
        id=card.id,
        version=card.version,
        architecture=card.architecture,
        input_kind=card.input_kind,
        labels=card.labels,
        temperature=float(card.temperature),
        temperature_fitted=fitted_on is not None,
        intended_use=card.intended_use,
    )


def evaluate(
    model: LoadedModel,
    data: EvalData | None = None,
    *,
    progress: Progress | None = None,
    n_boot: int = N_BOOT,
    windows: int = 0,
    window_sd: tuple[float, float] | None = None,
    seed: int = 0,
) -> Evaluation:
    """Everything about one model on ``data`` (default: its recorded held-out split).

    ``windows`` > 0 adds, for a CT model, its AUC across that many perturbed windows.
    """
    card = model.card
    if model_kind(card) in ("survival", "prognosis"):
        return recorded_evaluation(card)
    data = data if data is not None else evaluation_data(card)
    preds = predict(model, data, progress)
    out = evaluate_predictions(card, data, preds, n_boot=n_boot, seed=seed)
    if windows > 0 and model_kind(card) in ("ct-volume", "ct-slice"):
        robustness = window_robustness(model, data, windows, window_sd or DEFAULT_WINDOW_SD, seed, progress)
        out = replace(out, robustness=robustness)
    return out
