"""Many sessions at once: the app's sessions share one loaded instance of each model, and each
session's page runs in its own thread. Calls from several threads at once must give what the
same calls give one after another (benchmarks/bench_load.py measures the running app)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from core.demo.xray_phantom import generate_xray
from core.inference import predict_xray, xray_analysis
from core.labels import XRAY_LABELS
from core.models.registry import LoadedModel, ModelRegistry
from core.types import XrayImage

THREADS = 8


def _image(seed: int) -> XrayImage:
    pixels = generate_xray(XRAY_LABELS[seed % 3], 0.7, seed=seed, size=96).pixels.astype(np.float32) * 255
    return XrayImage(
        pixels=pixels, window_center=127.5, window_width=255.0, source_name=f"{seed}.png", file_format="png"
    )


def _calls(models: list[LoadedModel]) -> list[tuple]:
    """A session's work: a prediction and Grad-CAMs for two targets, per image and model."""
    calls = []
    for seed in range(4):
        for model in models:
            calls.append(("predict", model, seed, None))
            calls.append(("analysis", model, seed, None))
            calls.append(("analysis", model, seed, "Normal"))
    return calls


def _run(call: tuple) -> tuple[tuple[float, ...], np.ndarray | None]:
    kind, model, seed, target = call
    image = _image(seed)
    if kind == "predict":
        return predict_xray(model, image).probabilities, None
    analysis = xray_analysis(model, image, target)
    return analysis.prediction.probabilities, analysis.explanation((48, 48)).values


def _models(weights: Path) -> list[LoadedModel]:
    registry = ModelRegistry(weights, device=torch.device("cpu"))
    return [registry.load(mid) for mid in ("cxr-custom", "cxr-resnet18")]


def _same(a: list, b: list) -> bool:
    return all(
        np.allclose(pa, pb, rtol=0, atol=1e-6) and (ma is None and mb is None or np.allclose(ma, mb, rtol=0, atol=1e-5))
        for (pa, ma), (pb, mb) in zip(a, b, strict=True)
    )


def _concurrently(calls: list[tuple]) -> list:
    """Every call from THREADS threads at once, started together; results in the calls' order."""
    start = threading.Barrier(THREADS)

    def session(part: list[tuple]) -> list:
        start.wait()
        return [_run(c) for c in part]

    parts = [calls[i::THREADS] for i in range(THREADS)]
    with ThreadPoolExecutor(THREADS) as pool:
        done = list(pool.map(session, parts))
    out: list = [None] * len(calls)
    for i, results in enumerate(done):
        out[i::THREADS] = results
    return out


def test_eight_threads_sharing_the_models_get_what_one_thread_gets(tiny_weights: Path) -> None:
    models = _models(tiny_weights)
    calls = _calls(models) * 2
    sequential = [_run(c) for c in calls]
    concurrent = _concurrently(calls)
    assert _same(concurrent, sequential)
    for model in models:  # the shared modules are given back as they were
        assert not model.module.training
        assert all(p.requires_grad for p in model.module.parameters())
        assert not any(m._forward_hooks or m._backward_hooks for m in model.module.modules())
