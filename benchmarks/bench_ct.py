"""CT path speed: reading series, COVID3D, its 3D Grad-CAM and the slice model.

Prints medians (ms) for: reading the real 30-slice sample series (``read_ct_folder``; skipped
with a message when ``../shared/samples`` is absent); reading a 64-slice 512 x 512 series
written in memory (``read_ct_series``); COVID3D's input preparation, forward, and forward +
3D Grad-CAM on its input grid; ``analyse_ct`` on the 64-slice volume (both models, map at the
volume's shape); the slice model over all 64 slices; and the process's peak memory.
Registered CT models are used when the manifest has them; otherwise untrained models at the
demo configuration (the timings are the same, the outputs meaningless), and the output says so.
Targets on this 2-core machine: 64-slice series to HU <= 1 s; COVID3D + 3D Grad-CAM <= 2 s.

``--candidates`` also times one training step (forward + backward + Adam) for a few input
grids and widths, to choose the demo configuration.

    python benchmarks/bench_ct.py [--repeats 7] [--threads 2] [--weights weights/] [--candidates]
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sys
import tracemalloc
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from timing import median_ms  # noqa: E402

SAMPLE_SERIES = ROOT.parent / "shared" / "samples" / "ct-series-lung-dx-a0002"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def series_64() -> list[tuple[str, bytes]]:
    """A 64-slice 512 x 512 COVID-19 phantom as DICOM files in memory."""
    from core.demo.ct_phantom import CT_FIELD_OF_VIEW_MM, generate_ct
    from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid

    shape = (64, 512, 512)
    hu = generate_ct("COVID-19", 0.6, seed=1, shape=shape).hu
    spacing = tuple(f / n for f, n in zip(CT_FIELD_OF_VIEW_MM, shape, strict=True))
    patient = DicomPatient("BENCH^CT", "BENCH-1", "", "", None)
    study = DicomStudy(new_uid("bench-ct"), "ACC-1", dt.date(2020, 3, 1))
    return ct_series_files(hu, spacing, patient, study)  # type: ignore[arg-type]


def ct_models(weights: str, device: torch.device):
    """(COVID3D, slice model, note): registered ones, else untrained at the demo configuration."""
    from core.ct.preprocess import LUNG_WINDOW
    from core.models.architectures import build_model
    from core.models.covid3d import DEMO_COVID3D
    from core.models.ct_slice import CT_SLICE_LABELS, DEMO_CT_SLICE
    from core.models.manifest import InputSpec, ModelCard
    from core.models.registry import LoadedModel, ModelRegistry

    registry = ModelRegistry(weights, device=device)
    out = []
    notes = []
    for kind, arch, kwargs, spec, labels in (
        (
            "ct-volume",
            "covid3d",
            {"width": DEMO_COVID3D["width"]},
            InputSpec(DEMO_COVID3D["size"], 1, (0.5,), (0.25,), depth=DEMO_COVID3D["depth"], window=LUNG_WINDOW),
            ("COVID-19",),
        ),
        (
            "ct-slice",
            "ct-resnet",
            {"depth": DEMO_CT_SLICE["depth"], "in_channels": DEMO_CT_SLICE["channels"]},
            InputSpec(DEMO_CT_SLICE["size"], DEMO_CT_SLICE["channels"], (0.5,), (0.25,), window=LUNG_WINDOW),
            CT_SLICE_LABELS,
        ),
    ):
        ids = registry.ids(kind)
        if ids:
            out.append(registry.load(ids[0]))
            notes.append(f"{kind}: registered model {ids[0]}")
            continue
        torch.manual_seed(0)
        module = build_model(arch, **kwargs).eval().to(device)
        card = ModelCard(
            id=f"untrained-{arch}",
            version="bench",
            architecture=arch,
            architecture_kwargs=kwargs,
            weights_file="",
            sha256="",
            input_kind=kind,
            input=spec,
            labels=labels,
            gradcam_layer=str(module.gradcam_layer),
            intended_use="benchmark only",
        )
        out.append(LoadedModel(card=card, module=module, device=device))
        grid = f"{spec.depth} x {spec.size} x {spec.size} voxels" if spec.depth else f"{spec.size} px slices"
        notes.append(f"{kind}: no registered model: UNTRAINED {arch} {kwargs} on {grid} (the demo configuration)")
    return out[0], out[1], notes


def train_step_ms(arch: str, kwargs: dict, shape: tuple[int, ...], batch: int, repeats: int) -> float:
    """Median time of one training step (forward, backward, Adam) on a batch of ``shape`` inputs."""
    from core.models.architectures import build_model

    torch.manual_seed(0)
    model = build_model(arch, **kwargs).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(batch, *shape)
    y = torch.arange(batch) % 2

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        out = model(x)
        if out.shape[1] == 1:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(out[:, 0], y.float())
        else:
            loss = torch.nn.functional.cross_entropy(out, y)
        loss.backward()
        optimiser.step()

    return median_ms(step, repeats)


def candidates(repeats: int) -> None:
    from core.explain.gradcam3d import covid3d_with_cam
    from core.models.architectures import build_model

    print("\n# demo configuration candidates (training step = forward + backward + Adam)")
    print(f"{'model':34s} {'params':>8s} {'step':>8s} {'per item':>9s} {'fwd':>7s} {'fwd+cam':>8s}")
    for width, depth, size in ((0.25, 32, 96), (0.25, 48, 112), (0.25, 48, 128), (0.5, 32, 96)):
        kwargs = {"width": width}
        step = train_step_ms("covid3d", kwargs, (1, depth, size, size), 8, max(3, repeats // 2))
        torch.manual_seed(0)
        model = build_model("covid3d", **kwargs).eval()
        params = sum(p.numel() for p in model.parameters())
        x = torch.randn(1, 1, depth, size, size)
        with torch.inference_mode():
            fwd = median_ms(partial(model, x), repeats)
        cam = median_ms(partial(covid3d_with_cam, model, x), repeats)
        name = f"covid3d w={width} {depth}x{size}x{size} b8"
        print(f"{name:34s} {params / 1e6:7.2f}M {step:7.0f}  {step / 8:8.0f}  {fwd:6.0f}  {cam:7.0f}")
    for depth, size in ((18, 96), (18, 128), (50, 96)):
        kwargs = {"depth": depth, "in_channels": 1}
        step = train_step_ms("ct-resnet", kwargs, (1, size, size), 16, max(3, repeats // 2))
        torch.manual_seed(0)
        model = build_model("ct-resnet", **kwargs).eval()
        params = sum(p.numel() for p in model.parameters())
        x = torch.randn(32, 1, size, size)
        with torch.inference_mode():
            fwd = median_ms(partial(model, x), repeats) / 32
        name = f"ct-resnet{depth} {size} px b16"
        print(f"{name:34s} {params / 1e6:7.2f}M {step:7.0f}  {step / 16:8.1f}  {fwd:6.1f}  {'-':>7s}")
    print("(ms; 'per item' = step / batch; 'fwd' = one volume, or one slice in batches of 32)")


def main() -> int:
    from core.ct.analysis import analyse_ct, slice_probabilities
    from core.ct.preprocess import prepare_volume
    from core.explain.gradcam3d import covid3d_with_cam
    from core.io.ct_series import read_ct_folder, read_ct_series
    from core.models.registry import DEFAULT_WEIGHTS_DIR, select_device

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS_DIR))
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None)
    parser.add_argument(
        "--candidates", action="store_true", help="also time training steps of candidate configurations"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    covid3d, slice_model, notes = ct_models(args.weights, device)
    print(f"device {device}, {torch.get_num_threads()} threads, {args.repeats} repeats (medians, ms)")
    for note in notes:
        print(f"  {note}")

    print("\n# reading")
    if SAMPLE_SERIES.is_dir():
        sample = read_ct_folder(SAMPLE_SERIES)
        ms = median_ms(partial(read_ct_folder, SAMPLE_SERIES), args.repeats)
        print(f"real sample series {sample.hu.shape} (read_ct_folder, from disk): {ms:7.1f}")
    else:
        print(f"real sample series: skipped ({SAMPLE_SERIES} is absent)")
    files = series_64()
    tracemalloc.start()
    volume = read_ct_series(files)
    read_peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
    tracemalloc.stop()
    ms = median_ms(partial(read_ct_series, files), args.repeats)
    size_mb = sum(len(b) for _, b in files) / 1e6
    print(
        f"64-slice 512x512 series to HU (read_ct_series, {size_mb:.0f} MB in memory): {ms:7.1f}  "
        f"(target <= 1000; numpy peak {read_peak_mb:.0f} MB)"
    )

    print(f"peak resident memory so far: {peak_rss_mb():.0f} MB (includes drawing the 512 px phantom)")

    print(f"\n# COVID3D ({covid3d.card.id}) on the 64 x 512 x 512 volume")
    spec = covid3d.card.input
    x = prepare_volume(volume, spec)
    ms_prep = median_ms(partial(prepare_volume, volume, spec), args.repeats)

    def forward() -> None:
        with covid3d.lock, torch.inference_mode():
            covid3d.module(x.to(device))

    ms_fwd = median_ms(forward, args.repeats)
    ms_cam = median_ms(partial(covid3d_with_cam, covid3d, x), args.repeats)
    print(f"prepare_volume -> {tuple(x.shape)}: {ms_prep:7.1f}")
    print(f"forward: {ms_fwd:7.1f}")
    print(f"forward + 3D Grad-CAM (covid3d_with_cam, input grid): {ms_cam:7.1f}  (target <= 2000)")

    print(f"\n# slice model ({slice_model.card.id}) over all {volume.hu.shape[0]} slices")
    ms_slices = median_ms(partial(slice_probabilities, volume, slice_model), args.repeats)
    per_slice = ms_slices / volume.hu.shape[0]
    print(f"prepare + inference: {ms_slices:7.1f}  ({per_slice:.1f} per slice)")

    print("\n# the page's call")
    ms_all = median_ms(partial(analyse_ct, volume, covid3d, slice_model), args.repeats)
    print(f"analyse_ct (both models, map resized to 64 x 512 x 512): {ms_all:7.1f}")
    result = analyse_ct(volume, covid3d, slice_model)
    print("  steps: " + ", ".join(f"{k} {v:.0f}" for k, v in result.timings_ms.items()))

    if args.candidates:
        candidates(args.repeats)
    print(f"\npeak resident memory of this process: {peak_rss_mb():.0f} MB")
    print("(a volume of 64 x 512 x 512 float32 is 67 MB; analyse_ct holds it, its windowed copy and the map)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
