"""Classification reports in the layout the model cards store (``metrics.held_out``, the k-fold
records), for the training commands; scikit-learn and :mod:`core.evaluation.metrics` underneath."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from core.evaluation.metrics import per_class_rates


def classification_report(
    y_true: Sequence[int],
    y_prob: np.ndarray,
    labels: Sequence[str],
    y_pred: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Confusion matrix (rows true, columns predicted), per-class precision / recall /
    specificity / F1, accuracy and one-vs-rest ROC AUC.

    ``y_prob`` is (N, K) class probabilities in ``labels`` order; the predicted class is their
    arg-max unless ``y_pred`` gives it (e.g. a binary model's call at its operating threshold).
    """
    from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

    y_true = np.asarray(y_true, dtype=int)
    y_prob = np.asarray(y_prob, dtype=np.float64)
    y_pred = y_prob.argmax(axis=1) if y_pred is None else np.asarray(y_pred, dtype=int)
    k = len(labels)
    idx = list(range(k))
    cm = confusion_matrix(y_true, y_pred, labels=idx)
    # The manifest has always stored 0.0 where a rate is undefined (scikit-learn's zero_division=0).
    per_class = {
        name: {key: (0.0 if value is None else value) for key, value in stats.items()}
        for name, stats in per_class_rates(cm, labels).items()
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


def kfold_table(folds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seed 002's k-fold tables as rows: for each fold and part (``train``, ``validation``),
    accuracy, each class's precision / recall (sensitivity) / specificity, and ROC AUC; then
    a ``mean`` row per part. ``folds`` are the training record's entries, each with ``fold``
    and a :func:`classification_report` per part."""
    rows: list[dict[str, Any]] = []
    for part in ("train", "validation"):
        part_rows = []
        for fold in folds:
            report = fold.get(part)
            if not report:
                continue
            row: dict[str, Any] = {"fold": str(fold["fold"]), "part": part, "accuracy": report["accuracy"]}
            for name, stats in report["per_class"].items():
                for key in ("precision", "recall", "specificity"):
                    row[f"{name} {key}"] = stats[key]
            row["ROC AUC"] = report.get("roc_auc_ovr", float("nan"))
            part_rows.append(row)
        if part_rows:
            mean = {"fold": "mean", "part": part}
            for key in part_rows[0]:
                if key not in mean:
                    mean[key] = float(np.nanmean([r[key] for r in part_rows]))
            rows.extend([*part_rows, mean])
    return rows
