"""The pieces every binary trainer of the survival and prognosis models shares: a weighted
BCE epoch loop with early stopping on the dev loss, the calibration temperature fitted on
the dev split, and a patient-level split stratified by outcome.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


def balanced_weights(y: Sequence[float]) -> np.ndarray:
    """Per-sample weights giving each class half of the total weight."""
    y = np.asarray(y, dtype=np.float64)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return np.ones_like(y)
    return np.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * n_neg))
