"""The pieces every binary trainer of the survival and prognosis models shares: a weighted
BCE epoch loop with early stopping on the dev loss, the calibration temperature fitted on
the dev split, and a patient-level split stratified by outcome.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.errors import InsufficientDataError

#: One batch: the model's positional inputs, the 0/1 targets (N,) and per-sample weights (N,).
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]


@dataclass
class FitResult:
    state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)


def _weighted_bce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return (F.binary_cross_entropy_with_logits(logits.reshape(-1), y, reduction="none") * w).sum() / w.sum()


def fit_binary(
    model: nn.Module,
    forward: Callable[..., torch.Tensor],
    train_batches: Callable[[int], Iterable[Batch]],
    dev_batches: Callable[[], Iterable[Batch]],
    *,
    lr: float,
    max_epochs: int,
    patience: int,
    progress: bool = True,
    desc: str = "epoch",
) -> FitResult:
    """Adam on the trainable parameters, weighted BCE on one logit, the epoch with the lowest
    dev loss kept (stop after ``patience`` epochs without improvement).

    ``forward(*inputs)`` returns logits (N, 1); ``train_batches(epoch)`` yields that epoch's
    (shuffled) batches, ``dev_batches()`` the dev split's.
    """
    from tqdm import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimiser = torch.optim.Adam(params, lr=lr)
    best = FitResult(copy.deepcopy(model.state_dict()), 0)
    best_loss, stale = math.inf, 0
    bar = tqdm(range(1, max_epochs + 1), desc=desc, unit="epoch", disable=not progress)
    for epoch in bar:
        model.train()
        total, weight = 0.0, 0.0
        for inputs, y, w in train_batches(epoch):
            optimiser.zero_grad(set_to_none=True)
            loss = _weighted_bce(forward(*inputs), y, w)
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * float(w.sum())
            weight += float(w.sum())
        dev_loss = evaluate_loss(model, forward, dev_batches())
        best.history.append({"epoch": epoch, "train_loss": total / max(weight, 1e-12), "dev_loss": dev_loss})
        bar.set_postfix(train=f"{total / max(weight, 1e-12):.4f}", dev=f"{dev_loss:.4f}")
        if dev_loss < best_loss - 1e-4:
            best_loss, stale = dev_loss, 0
            best.state, best.best_epoch = copy.deepcopy(model.state_dict()), epoch
        else:
            stale += 1
            if stale >= patience:
                break
    return best


@torch.inference_mode()
def evaluate_loss(model: nn.Module, forward: Callable[..., torch.Tensor], batches: Iterable[Batch]) -> float:
    model.eval()
    total, weight = 0.0, 0.0
    for inputs, y, w in batches:
        total += float(_weighted_bce(forward(*inputs), y, w)) * float(w.sum())
        weight += float(w.sum())
    return total / weight if weight else math.nan


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature T in [0.2, 10] minimising the BCE of sigmoid(logit / T) on a dev split (Guo et al.
    2017's temperature scaling, for one logit); 1.0 when the split holds one class only."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(targets, dtype=np.float64).reshape(-1)
    if z.size == 0 or len(set(y.tolist())) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    res = minimize_scalar(nll, bounds=(math.log(0.2), math.log(10.0)), method="bounded")
    return float(math.exp(res.x))


def balanced_weights(y: Sequence[float]) -> np.ndarray:
    """Per-sample weights giving each class half of the total weight."""
    y = np.asarray(y, dtype=np.float64)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return np.ones_like(y)
    return np.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * n_neg))


def split_patients(strata: dict[str, str], seed: int, fractions: tuple[float, float, float]) -> dict[str, set[str]]:
    """Seeded train/dev/test sets of patient ids, stratified: each stratum (e.g. outcome) is
    shuffled and cut by ``fractions`` on its own, so every part keeps the mix."""
    by: dict[str, list[str]] = defaultdict(list)
    for pid, stratum in strata.items():
        by[stratum].append(pid)
    rng = np.random.default_rng(seed)
    parts: dict[str, set[str]] = {"train": set(), "dev": set(), "test": set()}
    for stratum in sorted(by):
        ids = sorted(by[stratum])
        rng.shuffle(ids)
        n = len(ids)
        n_test = round(n * fractions[2])
        n_dev = round(n * fractions[1])
        parts["test"].update(ids[:n_test])
        parts["dev"].update(ids[n_test : n_test + n_dev])
        parts["train"].update(ids[n_test + n_dev :])
    for name, ids in parts.items():
        if not ids:
            raise InsufficientDataError(
                f"Too few patients for a {name} split ({len(strata)} patients in all); add patients."
            )
    return parts


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float, classes: tuple[str, str]) -> dict[str, Any]:
    """Held-out numbers of a binary model: accuracy, sensitivity, specificity, ROC AUC, Brier
    score and the confusion matrix (rows true, columns predicted) at ``threshold`` on P(positive)."""
    from sklearn.metrics import brier_score_loss, confusion_matrix, precision_recall_fscore_support, roc_auc_score

    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    cm = confusion_matrix(y, pred, labels=[0, 1])
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    both = len(set(y.tolist())) == 2
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=0)
    per_class = {
        name: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "specificity": float(recall[1 - i]),  # with two classes, one's specificity is the other's recall
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, name in enumerate(classes)
    }
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float((tp + tn) / max(len(y), 1)),
        "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
        "specificity": float(tn / (tn + fp)) if tn + fp else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "confusion_matrix": {"labels": list(classes), "rows_true_columns_predicted": cm.tolist()},
        "per_class": per_class,
    }


def youden_threshold(y: Sequence[float], p: Sequence[float]) -> float:
    """The operating threshold on P(positive) that maximises sensitivity + specificity - 1 on a
    dev split (sklearn's ROC curve); 0.5 when the split holds one class only."""
    from sklearn.metrics import roc_curve

    y = np.asarray(y, dtype=int)
    if len(set(y.tolist())) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y, np.asarray(p, dtype=np.float64))
    best = int(np.argmax(tpr - fpr))
    return float(min(max(thresholds[best], 0.0), 1.0))
