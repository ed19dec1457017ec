"""The numbers of the Model performance page, as plain functions of arrays.

Curves, confusion matrices and average precision come from scikit-learn (``roc_curve``,
``precision_recall_curve``, ``average_precision_score``, ``confusion_matrix``); written here is
only what it lacks: a rank-based ROC AUC fast enough to bootstrap, percentile bootstrap intervals
(optionally resampling whole patients), top-label calibration error, multi-class temperature
scaling, DeLong's test for two correlated AUCs (Sun & Xu 2014) and a paired bootstrap of an AUC
difference, and operating points.

Conventions: ``y_true`` holds 0/1 (binary), class indices 0..K-1 (multi-class, in ``labels``
order) or an (N, K) 0/1 matrix (multi-label); ``score`` is (N,) where larger means more likely
positive; ``probs`` is (N, K) class probabilities or (N,) P(positive); ``logits`` is (N, K).
A set lacking a class that a number needs raises :class:`~core.errors.InsufficientDataError`;
malformed arrays raise :class:`~core.errors.InvalidInputError`.

Import from this package; its modules are its parts, by concern: ``curves`` (ROC, PR, AUC),
``rates`` (confusion matrix, per-class rates, operating points), ``bootstrap`` (intervals),
``paired_auc`` (two models on the same cases), ``reliability`` (calibration bins, ECE,
temperature), ``checks`` (the input checks they share).

Examples
--------
>>> curve = roc(y, p)
>>> point, low, high = bootstrap_ci(roc_auc, y, p, groups=patient_ids)
>>> result = delong_test(y, p_resnet, p_densenet)
>>> result.p_value
"""

from __future__ import annotations

from core.evaluation.metrics.bootstrap import ConfidenceInterval, Metric, bootstrap_ci
from core.evaluation.metrics.curves import (
    PrCurve,
    RocCurve,
    one_vs_rest_pr,
    one_vs_rest_roc,
    per_label_pr,
    per_label_roc,
    pr,
    roc,
    roc_auc,
)
from core.evaluation.metrics.paired_auc import DeLongResult, PairedBootstrapResult, delong_test, paired_bootstrap_auc
from core.evaluation.metrics.rates import (
    ConfusionMatrix,
    confusion_matrix,
    operating_point,
    per_class_rates,
    threshold_for_sensitivity,
)
from core.evaluation.metrics.reliability import (
    TEMPERATURE_BOUNDS,
    ReliabilityBin,
    apply_temperature,
    expected_calibration_error,
    reliability_bins,
)

__all__ = [
    "TEMPERATURE_BOUNDS",
    "ConfidenceInterval",
    "ConfusionMatrix",
    "DeLongResult",
    "Metric",
    "PairedBootstrapResult",
    "PrCurve",
    "ReliabilityBin",
    "RocCurve",
    "apply_temperature",
    "bootstrap_ci",
    "confusion_matrix",
    "delong_test",
    "expected_calibration_error",
    "one_vs_rest_pr",
    "one_vs_rest_roc",
    "operating_point",
    "paired_bootstrap_auc",
    "per_class_rates",
    "per_label_pr",
    "per_label_roc",
    "pr",
    "reliability_bins",
    "roc",
    "roc_auc",
    "threshold_for_sensitivity",
]
