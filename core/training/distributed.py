"""Training on several processes with DistributedDataParallel, started by ``torchrun``.

``torchrun --nproc-per-node N -m core train-xray ...`` starts N copies of the command with
``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set. :func:`start` (called by
:func:`core.training.loop.seeded_device`, which every trainer runs first) joins them into one
process group: NCCL when the device is CUDA (each process on the GPU ``LOCAL_RANK``), gloo on
the CPU. Without ``torchrun`` (or with one process) nothing here starts a group, and every
helper below returns what a single process had before: the same loaders, the same model, the
same numbers.

In a group:

- each process trains on its shard of the training data (:func:`training_loader` with a
  :class:`~torch.utils.data.distributed.DistributedSampler`, or :func:`shard` for a trainer's
  own batches), padded so that every process takes the same number of steps;
- :func:`wrap` puts the network in DistributedDataParallel: the gradients are averaged across
  the processes at every step, and rank 0's initial weights and BatchNorm buffers are
  broadcast, so all processes hold the same weights;
- the loop (:func:`core.training.loop.fit`) sums the training loss over all processes,
  validates on rank 0 over the whole dev split and sends that record to all, so the best
  epoch and early stopping are decided identically everywhere;
- :func:`core.training.publish.publish` runs on rank 0 only (weights, card, manifest entry);
  the others wait at a barrier and receive the card.

``--batch-size`` is per process: N processes step with N times the batch.
"""

from __future__ import annotations

import atexit
import datetime as dt
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler
from torch.utils.data.distributed import DistributedSampler

T = TypeVar("T")
S = TypeVar("S", list, np.ndarray, torch.Tensor)

#: How long a process waits for the others at a collective (rank 0 alone measures and writes
#: the shipped model while the others wait at a barrier; on a large data set that takes a while).
TIMEOUT = dt.timedelta(hours=2)


def requested() -> bool:
    """Whether this process was started by ``torchrun`` (or a like launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """Whether this process is in a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank: in the group, or the one ``torchrun`` gave it before the group is
    joined (so a command can quiet the other processes from its start); 0 for one process."""
    if active():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if requested() else 0


def world_size() -> int:
    """The number of processes training together (1 without a group)."""
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Whether this process writes and reports (rank 0, or the only process)."""
    return rank() == 0


def start(device: torch.device) -> torch.device:
    """Join the process group ``torchrun`` asked for, once; return this process's device.

    ``device`` is the device chosen for a single process (:func:`core.models.registry.select_device`).
    On CUDA the process takes the GPU ``LOCAL_RANK`` and the group talks NCCL; on the CPU, gloo.
    Without ``torchrun`` (or with ``WORLD_SIZE`` 1) ``device`` comes back unchanged and no
    group is started.
    """
    if not requested():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=TIMEOUT)
        atexit.register(stop)
    return device


def stop() -> None:
    """Leave the process group (at exit; harmless without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def describe() -> dict[str, Any]:
    """The model card's record of a run on several processes (empty for one process)."""
    if not active():
        return {}
    return {
        "distributed": {
            "processes": world_size(),
            "backend": str(dist.get_backend()),
            "batch_size": "per process; each step averages the gradients of all processes",
        }
    }


def wrap(model: nn.Module, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` in DistributedDataParallel in a group (rank 0's weights and buffers broadcast
    to all), else ``model`` itself. Train through what this returns, validate and save ``model``.

    ``find_unused_parameters``: the model holds trainable parameters its forward pass may not
    reach (DDP then looks for them at every step instead of waiting for their gradients forever).
    """
    if not active():
        return model
    device = next(model.parameters()).device
    return nn.parallel.DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=find_unused_parameters,
    )


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def sum_across(values: Sequence[float]) -> list[float]:
    """``values`` summed element by element over all processes (unchanged for one process)."""
    if not active():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return [float(v) for v in t.cpu()]


def from_main(value: T) -> T:
    """Rank 0's ``value`` on every process (picklable; unchanged for one process)."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, device=_collective_device())
    return box[0]


def barrier() -> None:
    """Wait until every process gets here (nothing for one process)."""
    if active():
        dist.barrier()


def shard(order: S) -> S:
    """This process's share of an epoch's (shuffled, identical on every process) ``order``:
    every ``world_size``-th item from ``rank``, after repeating the first items so that every
    process gets as many (each must take the same number of steps). ``order`` itself for one process."""
    if not active():
        return order
    n, size = len(order), world_size()
    total = math.ceil(n / size) * size
    padded = list(order) + [order[i % n] for i in range(total - n)] if n else []
    mine = padded[rank() :: size]
    if isinstance(order, torch.Tensor):
        return torch.stack(mine) if mine else order[:0]
    if isinstance(order, np.ndarray):
        return np.asarray(mine, dtype=order.dtype)
    return mine


class ShardedWeightedSampler(Sampler[int]):
    """A weighted sampler (with replacement) for a group: every process draws the same
    ``ceil(N / world) * world`` indices from the epoch's seed and keeps its :func:`shard`."""

    def __init__(self, weights: torch.Tensor, seed: int) -> None:
        self.weights, self.seed, self.epoch = weights, seed, 0
        self.num_samples = math.ceil(len(weights) / world_size())

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        drawn = torch.multinomial(self.weights, self.num_samples * world_size(), replacement=True, generator=gen)
        return iter(drawn[rank() :: world_size()].tolist())

    def __len__(self) -> int:
        return self.num_samples


def training_loader(dataset: Dataset, batch_size: int, seed: int, weights: torch.Tensor | None = None) -> DataLoader:
    """The training batches: shuffled with a generator seeded ``seed`` (or drawn with replacement
    by ``weights``, a balanced sampler) for one process, as the trainers always did; in a group,
    this process's shard (:class:`DistributedSampler`, or :class:`ShardedWeightedSampler`).
    Call :func:`for_epoch` before each epoch."""
    if not active():
        gen = torch.Generator().manual_seed(seed)
        if weights is None:
            return DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen)
        sampler = WeightedRandomSampler(weights, num_samples=len(weights), replacement=True, generator=gen)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    group_sampler: Sampler[int] = (
        DistributedSampler(dataset, shuffle=True, seed=seed)
        if weights is None
        else ShardedWeightedSampler(weights, seed)
    )
    return DataLoader(dataset, batch_size=batch_size, sampler=group_sampler)


def for_epoch(loader: DataLoader, epoch: int) -> DataLoader:
    """``loader`` with its sampler set to ``epoch`` (a new shuffle in a group; nothing otherwise)."""
    set_epoch = getattr(loader.sampler, "set_epoch", None)
    if set_epoch is not None:
        set_epoch(epoch)
    return loader
