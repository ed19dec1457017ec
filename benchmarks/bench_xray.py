"""X-ray path speed: decode, predict and Grad-CAM per model on a 2048 x 2048 DICOM.

Prints medians (ms): decode; per X-ray model, predict alone (``predict_xray``: preprocessing
from the 2048 px image, one forward) and predict + Grad-CAM as the X-ray page runs it
(``analyse_xray`` with the map made at the page's display size, 1024 px here: the same
preprocessing, one forward, the backward pass to the Grad-CAM layer, the map resampled and
scaled); and their ratio (predict + Grad-CAM) / predict. Target: <= 1.3 for every model.
The two are timed in turns, so a load on a shared machine weighs on both alike.

    python benchmarks/bench_xray.py [--repeats 15] [--weights weights/] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import timing  # noqa: E402
import torch  # noqa: E402

median_ms = partial(timing.median_ms, warmup=2)


def paired_medians_ms(first: Callable[[], object], second: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Median wall times (ms) of two calls timed in turns, so a load that comes and goes on a
    shared machine weighs on both alike (after two warm-up rounds)."""
    times: tuple[list[float], list[float]] = ([], [])
    for round_ in range(repeats + 2):
        for fn, kept in zip((first, second), times, strict=True):
            start = time.perf_counter()
            fn()
            if round_ >= 2:
                kept.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def dicom_2048() -> bytes:
    """A 2048 x 2048 16-bit DX DICOM of a chest phantom, uncompressed, in memory."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    from core.demo.xray_phantom import generate_xray

    pixels = (generate_xray("COVID-19", 0.7, seed=3, size=2048).pixels * 4095).astype(np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("bench.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PhotometricInterpretation = "DX", "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 16, 12, 11, 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def main() -> int:
    from core.explain.overlay import display_shape
    from core.inference import analyse_xray, predict_xray
    from core.io.images import read_xray
    from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS_DIR))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = dicom_2048()
    decode = median_ms(lambda: read_xray(data, "bench.dcm"), args.repeats)
    image = read_xray(data, "bench.dcm")
    registry = ModelRegistry(args.weights)
    print(
        f"device {registry.device}, {torch.get_num_threads()} threads, {args.repeats} repeats; "
        f"DICOM 2048x2048 16-bit, {len(data) / 1e6:.1f} MB"
    )
    print(f"decode (read_xray): {decode:.1f} ms median")
    shown = display_shape(image.shape)
    header = f"{'model':18s} {'predict':>9s} {'pred+cam':>9s} {'ratio':>6s}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for card in registry.cards("xray"):
        model = registry.load(card.id)
        predict, both = paired_medians_ms(
            partial(predict_xray, model, image), partial(analyse_xray, model, image, shape=shown), args.repeats
        )
        ratio = both / predict
        worst = max(worst, ratio)
        print(f"{card.id:18s} {predict:8.1f}  {both:8.1f}  {ratio:5.2f}")
    print(f"worst ratio (predict + Grad-CAM) / predict: {worst:.2f}  (target <= 1.3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
