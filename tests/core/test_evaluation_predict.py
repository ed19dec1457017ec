"""core.evaluation.predict runs the registry's shared model under the model's lock."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.evaluation.data import EvalCase, EvalData
from core.evaluation.predict import BATCH, predict
from core.models.registry import LoadedModel, ModelRegistry
from core.preprocess import normalise, to_unit_square


class _LockChecking(nn.Module):
    """Wraps a network; records at each forward pass whether the calling thread holds ``lock``."""

    def __init__(self, inner: nn.Module, lock: threading.RLock) -> None:
        super().__init__()
        self.inner = inner
        self.lock = lock
        self.held: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.held.append(self.lock._is_owned())  # type: ignore[attr-defined]
        return self.inner(x)


def test_every_batch_runs_under_the_model_lock_and_the_lock_is_free_between(tiny_weights: Path) -> None:
    loaded = ModelRegistry(tiny_weights, device=torch.device("cpu")).load("cxr-custom")
    lock = threading.RLock()
    module = _LockChecking(loaded.module, lock).eval()
    model = dataclasses.replace(loaded, module=module, lock=lock)
    rng = np.random.default_rng(0)
    images = [rng.random((40, 30), dtype=np.float32) for _ in range(BATCH["xray"] + 3)]
    cases = tuple(EvalCase(f"c{i}", f"p{i}", "Normal", lambda im=im: im) for i, im in enumerate(images))
    progress_held: list[bool] = []
    out = predict(
        model, EvalData("user", "test", "test", cases), progress=lambda *_: progress_held.append(lock._is_owned())
    )
    assert out.logits.shape == (len(images), 3)
    assert module.held == [True, True]  # two batches
    assert not any(progress_held) and not lock._is_owned()  # type: ignore[attr-defined]
    # The same logits as the plain network.
    with torch.inference_mode():
        first = loaded.module(_prepared(model, images[:1]))
    np.testing.assert_allclose(out.logits[0], first[0].numpy(), atol=1e-5)


def _prepared(model: LoadedModel, images: list[np.ndarray]) -> torch.Tensor:
    spec = model.card.input
    return normalise(torch.cat([to_unit_square(im, spec.size) for im in images]), spec)
