"""X-ray path speed: decode, predict and Grad-CAM per model on a 2048 x 2048 DICOM.

Prints medians (ms): decode; predict alone; predict + Grad-CAM as the page and CLI run them
(``analyse_xray``: preprocessing from the 2048 px image, one forward, backward to the Grad-CAM
layer, map upsampled to 2048 px); and the bare model's forward + full backward on the prepared
input. The ratio is (predict + Grad-CAM) / (forward + backward). Target: <= 1.5.

    python benchmarks/bench_xray.py [--repeats 15] [--weights weights/] [--threads 2]
"""

from __future__ import annotations

import argparse
import io
import sys
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import timing  # noqa: E402
import torch  # noqa: E402

median_ms = partial(timing.median_ms, warmup=2)


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


def forward_backward(module: torch.nn.Module, x: torch.Tensor, target: int) -> None:
    """The bare cost: one forward and a full backward to the input."""
    xi = x.clone().requires_grad_(True)
    module(xi)[0, target].backward()
    module.zero_grad(set_to_none=True)


def main() -> int:
    from core.inference import analyse_xray, predict_xray
    from core.io.images import read_xray
    from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry
    from core.preprocess import xray_to_input

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
    header = f"{'model':18s} {'predict':>9s} {'pred+cam':>9s} {'fwd+bwd':>9s} {'ratio':>6s}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    for card in registry.cards("xray"):
        model = registry.load(card.id)
        pred = predict_xray(model, image)
        predict = median_ms(partial(predict_xray, model, image), args.repeats)
        both = median_ms(partial(analyse_xray, model, image), args.repeats)
        x = xray_to_input(image, card.input)
        bare = median_ms(partial(forward_backward, model.module, x, pred.predicted_index), args.repeats)
        ratio = both / bare
        worst = max(worst, ratio)
        print(f"{card.id:18s} {predict:8.1f}  {both:8.1f}  {bare:8.1f}  {ratio:5.2f}")
    print(f"worst ratio (predict + Grad-CAM) / (forward + backward): {worst:.2f}  (target <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
