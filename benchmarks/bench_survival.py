"""Survival and prognosis speed: what the Survival page waits for.

Prints medians (ms) for: the CNN-LSTM over a 5-X-ray series (prediction alone, and with a
Grad-CAM per time point, and their ratio: one backward pass gives every map); the 1- and
2-scan prognosis models on demo CTs; a Kaplan-Meier analysis of two groups (curves, log-rank,
Cox) on 200 and on 5000 patients; and the ratio of a page-sized figure's build to the analysis.
Uses the registered models (weights/); a model that is not registered is skipped with a line.

    python benchmarks/bench_survival.py [--repeats 7] [--threads 2] [--weights weights/]
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
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=str(ROOT / "weights"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from core.demo.ct_phantom import generate_ct
    from core.demo.xray_phantom import generate_xray
    from core.errors import MissingModelError
    from core.models.registry import ModelRegistry
    from core.survival.analysis import model_role_ids
    from core.survival.km import km_analysis
    from core.survival.km_figure import km_figure
    from core.survival.predict import predict_prognosis, predict_survival

    registry = ModelRegistry(args.weights, device=torch.device("cpu"))
    roles = model_role_ids(registry)
    print(f"torch threads {args.threads}, {args.repeats} repeats, medians")

    if "survival" in roles:
        model = registry.load(roles["survival"])
        xrays = [
            generate_xray("COVID-19", s, seed=3, size=512, session=i).pixels
            for i, s in enumerate((0.3, 0.5, 0.7, 0.5, 0.2))
        ]
        plain = median_ms(lambda: predict_survival(model, xrays, gradcam=False), args.repeats)
        cams = median_ms(lambda: predict_survival(model, xrays), args.repeats)
        print(
            f"CNN-LSTM, 5 X-rays (512 px):   predict {plain:7.1f} ms   + Grad-CAM per X-ray {cams:7.1f} ms   ratio {cams / plain:.2f}"
        )
    else:
        print("no survival model registered: CNN-LSTM skipped")

    volumes = [generate_ct("COVID-19", s, seed=4, session=i).hu for i, s in enumerate((0.5, 0.8))]
    for role in ("prognosis-1", "prognosis-2"):
        if role not in roles:
            print(f"no {role} model registered: skipped")
            continue
        try:
            model = registry.load(roles[role])
        except MissingModelError as e:
            print(f"{role}: {e}")
            continue
        scans = int(model.card.architecture_kwargs.get("scans", 1))
        ms = median_ms(lambda m=model, k=scans: predict_prognosis(m, volumes[-k:]), args.repeats)
        print(f"{model.id}: {scans} CT(s) {volumes[0].shape} -> P(high risk) {ms:7.1f} ms")

    rng = np.random.default_rng(0)
    for n in (200, 5000):
        groups = np.where(rng.random(n) < 0.5, "Low risk", "High risk")
        durations = rng.exponential(np.where(groups == "High risk", 10.0, 6.0)).round() + 1
        events = rng.random(n) < 0.8
        analysis_ms = median_ms(
            lambda d=durations, e=events, g=groups: km_analysis(d, e, g, group_order=("Low risk", "High risk")),
            args.repeats,
        )
        analysis = km_analysis(durations, events, groups, group_order=("Low risk", "High risk"))
        figure_ms = median_ms(lambda a=analysis: km_figure(a), args.repeats)
        print(
            f"Kaplan-Meier, 2 groups, {n:5d} patients: analysis {analysis_ms:7.1f} ms   figure {figure_ms:6.1f} ms   figure / analysis {figure_ms / analysis_ms:.2f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
