"""Model performance speed: what the Model performance page and `evaluate` wait for.

Prints medians for: rebuilding cxr-resnet18's held-out split (the demo dataset drawn again),
running the model over it, and measuring everything from its outputs (curves, 1000-resample
bootstrap CIs, calibration) with the measuring / running ratio; COVID3D over its held-out scans
and the cost of one perturbed window (the robustness band at 20 and 100 windows follows);
and a DeLong test against a 1000-resample paired bootstrap on 500 cases.

    python benchmarks/bench_evaluation.py [--repeats 3] [--threads 2] [--weights weights/]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import median_ms  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=str(ROOT / "weights"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from core.evaluation import metrics as em
    from core.evaluation.compare import window_robustness
    from core.evaluation.data import evaluation_data
    from core.evaluation.evaluate import evaluate_predictions
    from core.evaluation.predict import predict, read_volumes
    from core.models.registry import ModelRegistry

    registry = ModelRegistry(args.weights, device=torch.device("cpu"))
    print(f"torch threads {args.threads}, {args.repeats} repeats, medians")

    if "cxr-resnet18" in registry.ids():
        model = registry.load("cxr-resnet18")
        build = median_ms(lambda: evaluation_data(model.card), args.repeats)
        data = evaluation_data(model.card)
        run = median_ms(lambda: predict(model, data), args.repeats)
        preds = predict(model, data)
        measure = median_ms(lambda: evaluate_predictions(model.card, data, preds), args.repeats)
        print(
            f"cxr-resnet18, {len(data.cases)} held-out images: rebuild split {build:8.0f} ms   run model {run:7.0f} ms   "
            f"measure {measure:6.0f} ms   measure / run {measure / run:.2f}"
        )
    else:
        print("cxr-resnet18 is not registered: skipped")

    if "covid3d" in registry.ids():
        model = registry.load("covid3d")
        data = evaluation_data(model.card)
        read = median_ms(lambda: read_volumes(data), args.repeats)
        cases, volumes = read_volumes(data)
        run = median_ms(lambda: predict(model, cases, volumes=volumes), args.repeats)
        one = median_ms(lambda: window_robustness(model, data, n_windows=2), args.repeats)
        per_window = (one - read) / 3  # the training window and 2 perturbed ones, after reading
        print(
            f"COVID3D, {len(cases.cases)} held-out scans: draw scans {read:7.0f} ms   run model {run:7.0f} ms   "
            f"one window {per_window:6.0f} ms   -> 20 windows ~{(read + 21 * per_window) / 1000:.0f} s, "
            f"100 windows ~{(read + 101 * per_window) / 1000:.0f} s"
        )
    else:
        print("covid3d is not registered: skipped")

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    a = y + rng.normal(0, 1.0, 500)
    b = y + rng.normal(0, 1.3, 500)
    delong = median_ms(lambda: em.delong_test(y, a, b), max(args.repeats, 7))
    boot = median_ms(lambda: em.paired_bootstrap_auc(y, a, b, n_boot=1000), args.repeats)
    print(f"500 cases: DeLong {delong:6.1f} ms   paired bootstrap (1000) {boot:7.0f} ms   ratio {boot / delong:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
