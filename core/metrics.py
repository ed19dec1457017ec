"""Classification metrics (scikit-learn underneath), in the layout the manifest stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_report(
    y_true: Sequence[int],
    y_prob: np.ndarray,
    labels: Sequence[str],
) -> dict[str, Any]:
    """Confusion matrix (rows true, columns predicted), per-class precision / recall /
    specificity / F1, accuracy and one-vs-rest ROC AUC.

    ``y_prob`` is (N, K) class probabilities in ``labels`` order.
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y_true = np.asarray(y_true, dtype=int)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    y_pred = y_prob.argmax(axis=1)
    k = len(labels)
    idx = list(range(k))
    cm = confusion_matrix(y_true, y_pred, labels=idx)
    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    per_class: dict[str, dict[str, float]] = {}
    for i, name in enumerate(labels):
        tn = cm.sum() - cm[i, :].sum() - cm[:, i].sum() + cm[i, i]
        fp = cm[:, i].sum() - cm[i, i]
        per_class[name] = {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "specificity": float(tn / (tn + fp)) if (tn + fp) else 0.0,
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
    try:
        auc = (
            float(roc_auc_score(y_true, y_prob, multi_class="ovr", labels=idx))
            if k > 2
            else float(roc_auc_score(y_true, y_prob[:, 1]))
        )
    except ValueError:  # a class absent from y_true
        auc = float("nan")
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "roc_auc_ovr": auc,
        "confusion_matrix": {"labels": list(labels), "rows_true_columns_predicted": cm.tolist()},
        "per_class": per_class,
    }
