"""What the "unlike my training data" check costs next to the prediction it guards.

Prints medians (ms) on one 1024 px radiograph (a demo phantom, read as an upload) for each
registered X-ray model: the prediction (``predict_xray``), the OOD verdict (``xray_ood``: one
forward pass with hooks on the reference layers, then the Mahalanobis distances), and their
ratio; and on the demo CT phantom volume for each CT model: the slice probabilities or
COVID3D's forward against its verdict.

    python benchmarks/bench_ood.py [--repeats 7] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import median_ms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from core.ct.analysis import slice_probabilities
    from core.ct.preprocess import prepare_slices, prepare_volume
    from core.demo.ct_phantom import generate_ct
    from core.demo.xray_phantom import generate_xray
    from core.inference import predict_xray, xray_ood
    from core.io.images import read_xray
    from core.models.registry import ModelRegistry
    from core.types import CtVolume

    torch.set_num_threads(args.threads)
    registry = ModelRegistry(device=torch.device("cpu"))
    image = read_xray(generate_xray("COVID-19", 0.6, 3, size=1024).to_png(), "phantom.png")
    print(f"threads {args.threads}, repeats {args.repeats}; medians in ms")
    print(f"{'model':24s} {'predict':>9s} {'OOD check':>10s} {'ratio':>6s}")
    for model_id in registry.ids("xray"):
        model = registry.load(model_id)
        if model.ood is None:
            continue
        t_pred = median_ms(lambda m=model: predict_xray(m, image), args.repeats)
        t_ood = median_ms(lambda m=model: xray_ood(m, image), args.repeats)
        print(f"{model_id:24s} {t_pred:9.1f} {t_ood:10.1f} {t_ood / t_pred:6.2f}")
    ct = generate_ct("COVID-19", 0.6, 5)
    volume = CtVolume(ct.hu.astype("float32"), tuple(ct.spacing_mm), "bench", "phantom", None, 0)
    for model_id in registry.ids("ct-slice") + registry.ids("ct-volume"):
        model = registry.load(model_id)
        if model.ood is None:
            continue
        if model.card.input_kind == "ct-slice":
            t_pred = median_ms(lambda m=model: slice_probabilities(volume, m), args.repeats)
            t_ood = median_ms(lambda m=model: m.ood_verdict(prepare_slices(volume, m.card.input), "scan"), args.repeats)
        else:
            x = prepare_volume(volume, model.card.input)

            def forward(m=model, x=x):
                with torch.inference_mode():
                    return m.module(x)

            t_pred = median_ms(forward, args.repeats)
            t_ood = median_ms(lambda m=model, x=x: m.ood_verdict(x, "volume"), args.repeats)
        print(f"{model_id:24s} {t_pred:9.1f} {t_ood:10.1f} {t_ood / t_pred:6.2f}   ({volume.hu.shape[0]}-slice volume)")


if __name__ == "__main__":
    main()
