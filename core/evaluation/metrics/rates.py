"""Classification rates: the confusion matrix of a multi-class model with each class's rates, and
the operating point of a binary one at a threshold."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn import metrics as skm

from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.metrics.checks import binary_labels, class_indices, finite_scores


@dataclass(frozen=True, eq=False)
class ConfusionMatrix:
    """Counts with rows the true class and columns the predicted class, both in ``labels`` order.

    ``counts`` is int64 (K, K); ``row_percent`` is float64 (K, K), each row's counts as a
    percentage of that row's total (NaN for a class with no cases).
    """

    labels: tuple[str, ...]
    counts: np.ndarray
    row_percent: np.ndarray


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, labels: Sequence[str]) -> ConfusionMatrix:
    """Counts of (true class, predicted class), rows true and columns predicted.

    Parameters
    ----------
    y_true, y_pred : (N,) int class indices in ``labels`` order
    labels : K class names
    """
    k = len(labels)
    y = class_indices(y_true, k)
    pred = class_indices(y_pred, k)
    if pred.shape != y.shape:
        raise InvalidInputError(f"y_pred must have one class per case, shape {y.shape}; got {pred.shape}.")
    counts = skm.confusion_matrix(y, pred, labels=list(range(k))).astype(np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        row_percent = np.where(totals > 0, 100.0 * counts / totals, np.nan)
    return ConfusionMatrix(labels=tuple(str(name) for name in labels), counts=counts, row_percent=row_percent)


def per_class_rates(counts: npt.ArrayLike, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per class of a confusion matrix (rows true, columns predicted), one class against the rest:
    ``precision``, ``recall`` (sensitivity), ``specificity``, ``f1`` (``None`` where the
    denominator is 0) and ``support`` (the row's count)."""
    c = np.asarray(counts, dtype=np.int64)
    k = len(labels)
    if c.shape != (k, k):
        raise InvalidInputError(f"counts must be {k} x {k} for {k} labels; got {c.shape}.")
    total = int(c.sum())
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(labels):
        tp = int(c[i, i])
        fn = int(c[i].sum()) - tp
        fp = int(c[:, i].sum()) - tp
        tn = total - tp - fn - fp
        out[str(name)] = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "support": tp + fn,
        }
    return out


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def operating_point(y_true: npt.ArrayLike, p: npt.ArrayLike, threshold: float) -> dict[str, Any]:
    """Counts and rates of a binary model called positive when ``p >= threshold``.

    Parameters
    ----------
    y_true : (N,) 0/1
    p : (N,) P(positive) or any score
    threshold : float

    Returns
    -------
    dict
        ``threshold``; ``tp``, ``fp``, ``tn``, ``fn`` (int); ``sensitivity``, ``specificity``,
        ``ppv``, ``npv`` (float, ``None`` where the denominator is 0).
    """
    y = binary_labels(y_true)
    s = finite_scores(p, y.size, "p")
    predicted = (s >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, predicted, labels=[0, 1]).ravel())
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
    }


def threshold_for_sensitivity(y_true: npt.ArrayLike, p: npt.ArrayLike, target: float) -> float:
    """The highest threshold whose sensitivity (``p >= threshold``) reaches ``target``.

    The highest such threshold calls the fewest cases positive, so it has the best specificity
    among the thresholds meeting the target on these cases.

    Parameters
    ----------
    y_true : (N,) 0/1, with at least one positive
    p : (N,) P(positive) or any score
    target : float in (0, 1]

    Returns
    -------
    float
        One of the positives' scores.
    """
    if not 0.0 < target <= 1.0:
        raise InvalidInputError(f"The target sensitivity must lie in (0, 1]; got {target}.")
    y = binary_labels(y_true)
    s = finite_scores(p, y.size, "p")
    positive_scores = np.sort(s[y == 1])[::-1]
    if positive_scores.size == 0:
        raise InsufficientDataError("A sensitivity target needs at least one positive case; this set has none.")
    # Calling the k highest-scoring positives positive gives sensitivity k / n_pos (ties only add).
    sensitivity = np.arange(1, positive_scores.size + 1) / positive_scores.size
    k = int(np.argmax(sensitivity >= target))
    return float(positive_scores[k])
