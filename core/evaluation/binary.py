"""Figures of binary models and of per-finding (multi-label) models: the held-out report of one
probability against a threshold (:func:`binary_report`, in two card layouts), the operating
threshold at Youden's J, and P(positive) from a model's logits at a temperature. Trainers and
evaluations share them, so a card's training-time figures and a later ``evaluate`` are the same
computation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.special import expit

from core.demo.xray_phantom import FINDINGS
from core.errors import InvalidInputError
from core.evaluation.metrics import apply_temperature
from core.evaluation.reports import classification_report

#: P(present) at or above which a finding without a fitted threshold is called present.
DEFAULT_THRESHOLD = 0.5


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float, classes: tuple[str, str]) -> dict[str, Any]:
    """Held-out numbers of a binary model in the survival and prognosis cards' layout: accuracy,
    sensitivity and specificity (``None`` without a case to measure them on), ROC AUC (``None``
    with one class), Brier score, and :func:`binary_report`'s confusion matrix (rows true,
    columns predicted) and per-class rates, all at ``threshold`` on P(positive)."""
    # sklearn.metrics costs about 1 s of the CLI's start-up (measured): imported where used.
    from sklearn.metrics import brier_score_loss

    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    report = binary_report(y, p, classes, threshold)
    (tn, fp), (fn, tp) = report["confusion_matrix"]["rows_true_columns_predicted"]
    auc = report["roc_auc_ovr"]
    return {
        "n": report["n"],
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float((tp + tn) / max(len(y), 1)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "roc_auc": None if np.isnan(auc) else auc,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "confusion_matrix": report["confusion_matrix"],
        "per_class": report["per_class"],
    }


def youden_threshold(y: Sequence[float], p: Sequence[float]) -> float:
    """The operating threshold on P(positive) that maximises sensitivity + specificity - 1 on a
    dev split (sklearn's ROC curve); 0.5 when the split holds one class only."""
    # sklearn.metrics costs about 1 s of the CLI's start-up (measured): imported where used.
    from sklearn.metrics import roc_curve

    y = np.asarray(y, dtype=int)
    if len(set(y.tolist())) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, np.asarray(p, dtype=np.float64))
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thresholds[best], 0.0), 1.0))


def positive_probability(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """float64 (N,) P(positive class) from COVID3D's one logit (sigmoid) or the slice model's two
    (softmax), each divided by ``temperature`` first."""
    if logits.shape[-1] == 1:
        return expit(logits[:, 0].astype(np.float64) / temperature)
    return apply_temperature(logits, temperature)[:, 1]


def binary_report(y: np.ndarray, p: np.ndarray, classes: tuple[str, str], threshold: float = 0.5) -> dict[str, Any]:
    """The one report of a binary model at an operating threshold, in the CT cards' layout
    (:func:`core.evaluation.reports.classification_report`): P(positive) -> 2 columns, positive when
    P >= ``threshold`` (the report records the threshold). :func:`binary_metrics` lays it out
    for the survival and prognosis cards."""
    report = classification_report(
        y.astype(int).tolist(), np.stack([1 - p, p], axis=1), classes, y_pred=(p >= threshold).astype(int)
    )
    return report | {"threshold": float(threshold)}


def finding_metrics(
    targets: np.ndarray, probs: np.ndarray, threshold: float | Mapping[str, float] = DEFAULT_THRESHOLD
) -> dict[str, Any]:
    """Per finding: prevalence, ROC AUC (None when only one class is present), the threshold on
    P(present) and the sensitivity and specificity there; and the mean AUC over findings that have one.

    ``targets`` and ``probs`` are (N, findings) in :data:`FINDINGS` order. ``threshold`` is one
    number for every finding, or a mapping finding -> threshold (e.g. the dev split's operating
    points, :func:`operating_thresholds`); a finding the mapping leaves out is called present at
    :data:`DEFAULT_THRESHOLD`.
    """
    # sklearn.metrics costs about 1 s of the CLI's start-up (measured): imported where used.
    from sklearn.metrics import roc_auc_score

    if isinstance(threshold, Mapping):
        unknown = sorted(set(threshold) - set(FINDINGS))
        if unknown:
            raise InvalidInputError(f"Thresholds given for unknown findings: {', '.join(unknown)}.")
        cut = {name: float(threshold.get(name, DEFAULT_THRESHOLD)) for name in FINDINGS}
    else:
        cut = dict.fromkeys(FINDINGS, float(threshold))
    per: dict[str, Any] = {}
    aucs = []
    for j, name in enumerate(FINDINGS):
        y, p = targets[:, j], probs[:, j]
        both = 0 < y.sum() < y.size
        auc = float(roc_auc_score(y, p)) if both else None
        if auc is not None:
            aucs.append(auc)
        pred = p >= cut[name]
        pos, neg = y == 1, y == 0
        per[name] = {
            "prevalence": float(y.mean()) if y.size else None,
            "n_positive": int(y.sum()),
            "auc": auc,
            "threshold": cut[name],
            "sensitivity": float(pred[pos].mean()) if pos.any() else None,
            "specificity": float((~pred[neg]).mean()) if neg.any() else None,
        }
    return {"per_finding": per, "mean_auc": float(np.mean(aucs)) if aucs else None, "n_images": int(targets.shape[0])}


def operating_thresholds(targets: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Per finding with both classes in ``targets``: the threshold on P(present) at Youden's J
    (:func:`youden_threshold`). ``targets`` and ``probs`` are (N, findings),
    the dev split's truth and calibrated probabilities; findings with one class are left out."""
    out: dict[str, float] = {}
    for j, name in enumerate(FINDINGS):
        y = targets[:, j]
        if 0 < y.sum() < y.size:
            out[name] = youden_threshold(y, probs[:, j])
    return out
