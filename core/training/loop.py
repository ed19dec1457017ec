"""The one training loop every trainer runs, and the one way it reads a network's logits.

:func:`seeded_device` starts every run: the seed, then the device.

:func:`fit` owns what every trainer used to repeat: train mode, ``zero_grad`` / backward /
step (and a per-step learning-rate schedule), the running training loss, one validation per
epoch, the learning curves, keeping the best epoch's weights and early stopping. A trainer
brings its batches, its loss (a ``step`` turning one batch into a :class:`StepLoss`), its
validation (one dict of numbers per epoch) and, where "best" is not the lowest dev loss, its
own rule. :func:`fit_binary` is the loop with the weighted binary cross-entropy of the
survival and prognosis models.

:func:`predict_logits` runs a network in eval mode over batches and returns its logits; every
trainer measures its shipped weights with it.

Under ``torchrun`` (:mod:`core.training.distributed`) :func:`seeded_device` joins the process
group, and :func:`fit` sums the training loss over the processes, validates on rank 0 only (the
whole dev split, so the numbers are those of one process) and hands that record to every
process: the kept epoch and early stopping are the same decisions everywhere.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from core.models.registry import select_device
from core.training import distributed

#: One batch of :func:`fit_binary`: the model's positional inputs, the 0/1 targets (N,) and
#: per-sample weights (N,).
Batch = tuple[tuple[torch.Tensor, ...], torch.Tensor, torch.Tensor]
#: One epoch's numbers in the learning curves, e.g. ``{"epoch": 3, "train_loss": ..., "dev_loss": ...}``.
Record = dict[str, float]
#: Whether an epoch's record beats the best so far (``None`` before the first epoch).
Improved = Callable[[Record, Record | None], bool]
B = TypeVar("B")

#: How much the dev loss must fall for an epoch to count as better.
MIN_DELTA = 1e-4


@dataclass(frozen=True)
class StepLoss:
    """One batch's loss: ``value`` a mean the loop back-propagates, ``weight`` what it is a mean
    over (the batch size, or the sum of sample weights), ``correct`` the correctly classified
    samples where a trainer reports a training accuracy."""

    value: torch.Tensor
    weight: float
    correct: int | None = None


@dataclass
class FitResult:
    """The kept epoch's weights (``state``; the initial weights at epoch 0 when no epoch
    improved), its number and every epoch's record."""

    state: dict[str, torch.Tensor]
    best_epoch: int
    history: list[Record] = field(default_factory=list)

    def to_record(self) -> dict[str, Any]:
        """The model card's ``training`` entries of the run: epochs run, the kept one, the curves."""
        return {"epochs_run": len(self.history), "best_epoch": self.best_epoch, "learning_curves": self.history}


def seeded_device(seed: int, device: str | None) -> torch.device:
    """Seed torch's global generator (initial weights, augmentation, shuffling) with ``seed`` and
    pick the device (``device`` "cpu", "cuda" or None: CUDA when present). Under ``torchrun``,
    join the process group (:func:`core.training.distributed.start`; on CUDA, this process's GPU):
    every process starts from the same seed, so from the same weights."""
    torch.manual_seed(seed)
    return distributed.start(select_device(device))


def lowest_dev_loss(record: Record, best: Record | None) -> bool:
    """The default rule: an epoch is better when its ``dev_loss`` is lower by more than :data:`MIN_DELTA`."""
    return record["dev_loss"] < (math.inf if best is None else best["dev_loss"]) - MIN_DELTA


def fit(
    model: nn.Module,
    optimiser: torch.optim.Optimizer,
    batches: Callable[[int], Iterable[B]],
    step: Callable[[B], StepLoss],
    validate: Callable[[], Record],
    *,
    max_epochs: int,
    patience: int | None = None,
    improved: Improved = lowest_dev_loss,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    progress: bool = True,
    desc: str = "",
    say: Callable[[str], None] | None = None,
) -> FitResult:
    """Train ``model`` for up to ``max_epochs`` epochs and keep the best epoch's weights.

    Parameters
    ----------
    model : the network whose weights are kept (not its DistributedDataParallel wrapper)
    batches : epoch -> that epoch's training batches (shuffled by the trainer, with its seed; in a
        process group this process's shard, :mod:`core.training.distributed`)
    step : one batch -> its :class:`StepLoss` (the forward pass and the loss; the model is in train
        mode); in a group it runs the network through :func:`core.training.distributed.wrap`
    validate : () -> the epoch's validation numbers, e.g. ``{"dev_loss": ...}``; it sets eval mode
        itself. In a group it runs on rank 0 only (on ``model``, no collective) and its record is
        sent to the other processes
    patience : stop after this many epochs without improvement; ``None`` runs every epoch
    improved : whether an epoch's record beats the best so far (default :func:`lowest_dev_loss`)
    scheduler : stepped after every optimiser step
    desc : what the progress bar and the per-epoch lines start with, e.g. ``"fold 2 "``
    say : where the per-epoch lines go (default: above the progress bar when ``progress``)
    """
    main = distributed.is_main()
    progress = progress and main
    if say is None or not main:
        say = tqdm.write if progress else _silent
    best = FitResult(copy.deepcopy(model.state_dict()), 0)
    best_record: Record | None = None
    stale = 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        total, weight, correct = 0.0, 0.0, None
        bar = tqdm(batches(epoch), desc=f"{desc}epoch {epoch}/{max_epochs}", unit="batch", disable=not progress)
        for batch in bar:
            optimiser.zero_grad(set_to_none=True)
            loss = step(batch)
            loss.value.backward()
            optimiser.step()
            if scheduler is not None:
                scheduler.step()
            total += float(loss.value.detach()) * loss.weight
            weight += loss.weight
            if loss.correct is not None:
                correct = (correct or 0) + loss.correct
            bar.set_postfix(loss=f"{total / max(weight, 1e-12):.4f}")
        total, weight, n_correct = distributed.sum_across([total, weight, correct or 0])
        record: Record = {"epoch": epoch, "train_loss": total / max(weight, 1e-12)}
        if correct is not None:
            record["train_accuracy"] = n_correct / weight
        record |= distributed.from_main(validate() if main else {})
        best.history.append(record)
        say(
            f"{desc}epoch {epoch}: "
            + ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in record.items() if k != "epoch")
        )
        if improved(record, best_record):
            best_record, stale = record, 0
            best.state, best.best_epoch = copy.deepcopy(model.state_dict()), epoch
        else:
            stale += 1
            if patience is not None and stale >= patience:
                say(f"early stopping: no better epoch for {patience} epochs")
                break
    return best


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Iterable[B], step: Callable[[B], StepLoss], split: str = "dev") -> Record:
    """The mean loss of ``step`` over ``batches`` in eval mode, weighted as each step says (NaN
    without a batch), and the accuracy where the steps count correct samples: ``{"dev_loss": ...,
    "dev_accuracy": ...}`` for ``split`` "dev"."""
    model.eval()
    total, weight, correct = 0.0, 0.0, None
    for batch in batches:
        loss = step(batch)
        total += float(loss.value) * loss.weight
        weight += loss.weight
        if loss.correct is not None:
            correct = (correct or 0) + loss.correct
    record = {f"{split}_loss": total / weight if weight else math.nan}
    if correct is not None:
        record[f"{split}_accuracy"] = correct / weight
    return record


def _silent(_: str) -> None:
    """A ``say`` that says nothing (progress off)."""


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
    desc: str = "",
) -> FitResult:
    """:func:`fit` with Adam on the trainable parameters and weighted BCE on one logit, the epoch
    with the lowest dev loss kept (stop after ``patience`` epochs without improvement).

    ``forward(*inputs)`` returns logits (N, 1); ``train_batches(epoch)`` yields that epoch's
    (shuffled) batches, ``dev_batches()`` the dev split's.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")

    # In a process group the gradients are averaged through DistributedDataParallel, which must
    # run the forward pass: ``forward`` may reach only part of ``model`` (a frozen CNN's features).
    trained = (
        distributed.wrap(_Forward(model, forward), find_unused_parameters=True) if distributed.active() else forward
    )

    def step(batch: Batch) -> StepLoss:
        inputs, y, w = batch
        return StepLoss(_weighted_bce(trained(*inputs), y, w), float(w.sum()))

    def dev_step(batch: Batch) -> StepLoss:
        inputs, y, w = batch
        return StepLoss(_weighted_bce(forward(*inputs), y, w), float(w.sum()))

    return fit(
        model,
        torch.optim.Adam(params, lr=lr),
        train_batches,
        step,
        lambda: evaluate(model, dev_batches(), dev_step),
        max_epochs=max_epochs,
        patience=patience,
        progress=progress,
        desc=desc,
    )


class _Forward(nn.Module):
    """``model`` (its parameters registered) called through ``forward``: what
    DistributedDataParallel wraps when the training pass is not ``model.forward``."""

    def __init__(self, model: nn.Module, forward: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        object.__setattr__(self, "call", forward)  # not a second registration when ``forward`` is ``model``

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.call(*inputs)


def balanced_weights(y: Sequence[float]) -> np.ndarray:
    """Per-sample weights giving each class half of the total weight."""
    y = np.asarray(y, dtype=np.float64)
    n_pos, n_neg = float(y.sum()), float(len(y) - y.sum())
    if n_pos == 0 or n_neg == 0:
        return np.ones_like(y)
    return np.where(y == 1, len(y) / (2 * n_pos), len(y) / (2 * n_neg))


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, ...]],
    forward: Callable[..., torch.Tensor] | None = None,
) -> np.ndarray:
    """float32 logits (N, C) of ``model`` in eval mode: ``forward`` (default the model itself)
    called on each batch's positional inputs, already on the model's device; (0, 1) without a batch."""
    model.eval()
    call = forward or model
    out = [call(*inputs).float().cpu() for inputs in batches]
    return torch.cat(out).numpy() if out else np.zeros((0, 1), dtype=np.float32)


def device_batches(x: torch.Tensor, size: int, device: torch.device) -> Iterable[tuple[torch.Tensor]]:
    """Prepared inputs ``x`` (N, ...) as float32 one-tensor batches of at most ``size`` on ``device``."""
    for start in range(0, x.shape[0], size):
        yield (x[start : start + size].to(device, torch.float32),)
