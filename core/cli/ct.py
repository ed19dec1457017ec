"""``predict-ct``, ``train-ct3d`` and ``train-ct-slice``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from core.case_reports.common import upload_pseudonym
from core.cli.common import device_arg, registry_of, weights_arg
from core.cli.xray import add_image_training_options
from core.cli.xray import run_train as run_image_train
from core.ct.analysis import analyse_ct, slice_cam
from core.ct.preprocess import LUNG_WINDOW, window_hu
from core.datasets.sources import is_image_source
from core.errors import InvalidInputError, MissingModelError
from core.evaluation.reports import kfold_table
from core.explain.overlay import png_bytes, render_overlay
from core.io.ct_input import read_ct_path
from core.models.covid3d import DEMO_COVID3D
from core.models.ct_slice import DEMO_CT_SLICE
from core.models.registry import DEFAULT_WEIGHTS_DIR
from core.types import CtVolume


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict-ct")
    p.add_argument("path", metavar="PATH", help="a folder of DICOM slices, a zip, a NIfTI file or a single DICOM")
    p.add_argument("--series", help="SeriesInstanceUID to read when PATH holds several series")
    p.add_argument("--model", default=None, help="COVID3D model id (default: the first ct-volume model)")
    p.add_argument("--slice-model", default=None, help="slice model id (default: the first ct-slice model)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--cam-dir", type=Path, help="also write the slice model's Grad-CAM overlay PNG of one axial slice here"
    )
    p.add_argument(
        "--cam-slice",
        type=int,
        help="axial slice for --cam-dir, 1 = most inferior (default: the slice read with the highest P(COVID-19))",
    )
    weights_arg(p)
    device_arg(p)
    p.set_defaults(func=run_predict)

    for name, kind in (("train-ct3d", "covid3d"), ("train-ct-slice", "ct-slice")):
        t = sub.add_parser(name)
        t.add_argument("--data", required=True, help="demo, demo:N, a folder with metadata.csv, or a CSV manifest")
        t.add_argument("--out", default=str(DEFAULT_WEIGHTS_DIR), help="weights folder (default: weights/)")
        t.add_argument("--id", dest="model_id", help="model id")
        t.add_argument(
            "--folds",
            type=int,
            default=10 if kind == "covid3d" else 5,
            help="k of the patient-level k-fold cross-validation (default: %(default)s, as seed "
            + ("003" if kind == "covid3d" else "002")
            + ")",
        )
        t.add_argument("--test-fraction", type=float, default=0.15, help="held-out test patients")
        t.add_argument("--epochs", type=int, default=6)
        t.add_argument("--lr", type=float, default=1e-3)
        t.add_argument("--batch-size", type=int, default=8)
        demo = DEMO_COVID3D if kind == "covid3d" else DEMO_CT_SLICE
        t.add_argument("--size", type=int, default=demo["size"], help="input pixels in-plane (default: %(default)s)")
        if kind == "covid3d":
            t.add_argument(
                "--width",
                type=float,
                default=DEMO_COVID3D["width"],
                help="channel multiplier (default: %(default)s; the paper's network: 1.0)",
            )
            t.add_argument(
                "--depth",
                type=int,
                default=DEMO_COVID3D["depth"],
                dest="input_depth",
                help="input slices after resampling (default: %(default)s)",
            )
        else:
            t.add_argument(
                "--arch",
                type=int,
                choices=(18, 50, 152),
                default=DEMO_CT_SLICE["depth"],
                dest="resnet_depth",
                help="ResNet depth (default: %(default)s)",
            )
            t.add_argument(
                "--max-slices", type=int, default=6, help="training slices kept per scan (default: %(default)s)"
            )
            t.add_argument(
                "--patience",
                type=int,
                default=3,
                help="slice images only: epochs without dev-loss improvement before stopping",
            )
            add_image_training_options(t, common=False)
        t.add_argument("--dropout", type=float, default=0.0)
        t.add_argument("--no-augment", dest="augment", action="store_false")
        t.add_argument("--seed", type=int, default=0)
        t.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
        device_arg(t)
        t.add_argument("--note", default="", help="a description of the training data, stored in the manifest")
        t.add_argument("--intended-use", default=None)
        t.set_defaults(func=run_train, kind=kind)


def _first(registry, kind: str, wanted: str | None) -> str | None:
    if wanted:
        registry.card(wanted)  # a plain error for an unknown id
        return wanted
    # Real-data models first: a user's CT series is read by the model trained on real CT.
    ids = sorted(registry.ids(kind), key=lambda m: registry.card(m).domain != "real")
    return ids[0] if ids else None


def _ood_fields(verdict) -> dict:
    if verdict is None:
        return {"in_distribution": None, "ood_score": None, "ood_threshold": None}
    return verdict.to_dict()


def _ood_line(fields: dict) -> str:
    if fields.get("in_distribution") is False:
        return (
            f"NO RESULT: this CT is unlike the model's training data (OOD score {fields['ood_score']:.1f} > "
            f"threshold {fields['ood_threshold']:.1f}); "
        )
    return ""


def _write_slice_cam(args: argparse.Namespace, volume, model, result, pseudonym: str) -> dict:
    """The slice model's Grad-CAM overlay of one axial slice as a PNG in ``args.cam_dir``."""
    n = volume.hu.shape[0]
    if args.cam_slice is None:
        read = np.flatnonzero(result.slices_read)
        z = int(read[np.argmax(result.slice_probabilities[read])])
    elif 1 <= args.cam_slice <= n:
        z = args.cam_slice - 1
    else:
        raise InvalidInputError(f"--cam-slice {args.cam_slice} is outside the series' {n} axial slices (1 to {n}).")
    args.cam_dir.mkdir(parents=True, exist_ok=True)
    target = args.cam_dir / f"{pseudonym}.{model.id}.slice-{z + 1}.gradcam.png"
    gray = window_hu(volume.hu[z], *LUNG_WINDOW)
    target.write_bytes(png_bytes(render_overlay(gray, slice_cam(volume, model, z), "Jet", 0.5)))
    return {"overlay": str(target), "overlay_slice": z + 1, "overlay_slice_read": bool(result.slices_read[z])}


def run_predict(args: argparse.Namespace) -> int:
    path = Path(args.path)
    if not path.exists():
        raise InvalidInputError(f"{args.path} does not exist.")
    return predict_volume(args, read_ct_path(path, series_uid=args.series), str(path))


def predict_volume(args: argparse.Namespace, volume: CtVolume, source: str) -> int:
    """What ``predict-ct`` prints for ``volume`` (read from a path, or from the series
    ``pacs get`` retrieved), ``source`` being what its ``path`` field and first line name."""
    registry = registry_of(args)
    volume_id = _first(registry, "ct-volume", args.model)
    slice_id = _first(registry, "ct-slice", args.slice_model)
    if volume_id is None and slice_id is None:
        raise MissingModelError(f"No CT model is registered in {registry.weights_dir / 'manifest.json'}.")
    result = analyse_ct(
        volume,
        registry.load(volume_id) if volume_id else None,
        registry.load(slice_id) if slice_id else None,
        cam=False,
    )
    pseudonym = upload_pseudonym(volume.hu.tobytes())
    out = {
        "path": source,
        "shape_zyx": list(volume.hu.shape),
        "spacing_mm_zyx": [round(float(v), 4) for v in volume.spacing_mm],
        # The series' original UID identifies the examination: a hash of its voxels names it instead.
        "pseudonym": pseudonym,
        "warnings": list(volume.warnings),
        "covid3d": None,
        "slice_model": None,
    }
    if result.covid3d_id:
        out["covid3d"] = {
            "model": result.covid3d_id,
            "version": result.covid3d_version,
            "probability_covid": round(float(result.probability), 6),
            "score_s": round(float(result.score), 6),
            "threshold": result.threshold,
            "predicted": "COVID+" if result.probability >= result.threshold else "COVID-",
            "domain": registry.card(result.covid3d_id).domain_words,
        } | _ood_fields(result.covid3d_ood)
    if result.slice_model_id:
        probs = result.slice_probabilities[result.slices_read]
        out["slice_model"] = {
            "model": result.slice_model_id,
            "version": result.slice_model_version,
            "patient_score": round(float(result.patient_score), 6),
            "slices": int(len(result.slice_probabilities)),
            "slices_read": int(len(probs)),
            "slices_above_0.5": int((probs >= 0.5).sum()),
            "max_slice_probability": round(float(probs.max()), 6) if len(probs) else None,
            "domain": registry.card(result.slice_model_id).domain_words,
        } | _ood_fields(result.slice_ood)
        if args.cam_dir:
            out["slice_model"] |= _write_slice_cam(
                args, volume, registry.load(result.slice_model_id), result, pseudonym
            )
    if args.json:
        print(json.dumps(out))
        return 0
    z, y, x = volume.hu.shape
    dz, dy, dx = volume.spacing_mm
    print(f"{source}: {z} x {y} x {x} voxels (z, y, x) at {dz:.2f} x {dy:.2f} x {dx:.2f} mm")
    for w in volume.warnings:
        print(f"  warning: {w}")
    if out["covid3d"]:
        c = out["covid3d"]
        print(
            f"  {c['model']} ({c['domain']}): {_ood_line(c)}P(COVID+) {c['probability_covid']:.3f}, "
            f"score s {c['score_s']:+.3f} -> {c['predicted']}"
        )
    if out["slice_model"]:
        s = out["slice_model"]
        print(
            f"  {s['model']} ({s['domain']}): {_ood_line(s)}patient score {s['patient_score']:.3f}; "
            f"{s['slices_above_0.5']} of {s['slices_read']} slices read above 0.5"
            + (
                f" ({s['slices'] - s['slices_read']} of {s['slices']} show too little lung to be read)"
                if s["slices_read"] < s["slices"]
                else ""
            )
        )
        if "overlay" in s:
            print(f"  Grad-CAM of axial slice {s['overlay_slice']}: {s['overlay']}")
    return 0


def _train_on_slice_images(args: argparse.Namespace) -> int:
    """train-ct-slice on 2D slice images (class folders or a CSV of PNGs): the 2D image trainer,
    one seeded train/dev/test split (no k-fold: the images are slices, not series)."""
    if args.resnet_depth != 18:
        print("error: on slice images the slice model is a ResNet-18", file=sys.stderr)
        return 2
    args.image_kind, args.arch, args.epochs = "ct-slice", "ct-resnet", args.epochs
    args.balanced, args.freeze_features, args.init, args.blocks, args.width = False, False, "scratch", 6, 16
    args.channels = 1
    return run_image_train(args)


def run_train(args: argparse.Namespace) -> int:
    # Here, not at the top: they cost 1.3-1.5 s of import (python -X importtime) that predict-ct need not pay.
    from core.training import distributed
    from core.training.ct import CtTrainConfig, train_ct
    from core.training.xray import DEMO_INTENDED_USE

    if args.kind == "ct-slice" and is_image_source(args.data):
        return _train_on_slice_images(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {
        "kind": args.kind,
        "model_id": args.model_id,
        "folds": args.folds,
        "test_fraction": args.test_fraction,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": args.batch_size,
        "size": args.size,
        "dropout": args.dropout,
        "augment": args.augment,
        "seed": args.seed,
        "device": args.device,
        "intended_use": args.intended_use or DEMO_INTENDED_USE,
        "data_note": args.note,
    }
    if args.kind == "covid3d":
        options.update(width=args.width, input_depth=args.input_depth)
    else:
        options.update(resnet_depth=args.resnet_depth, max_slices_per_scan=args.max_slices)
    # Under torchrun the other processes train quietly; rank 0 shows progress and writes.
    result = train_ct(args.data, args.out, CtTrainConfig(**options), progress=distributed.is_main())
    if not distributed.is_main():
        return 0
    held = result.card.metrics["held_out"]
    print(
        f"wrote {result.weights_path} ({result.card.id} {result.card.version}); kept fold "
        f"{result.card.training['kept_fold']}; held-out accuracy {held['accuracy']:.3f}, "
        f"ROC AUC {held['roc_auc_ovr']:.3f} on {held['n']} {result.card.training['data']['unit']}s"
    )
    positive = result.card.training["folds"][0]["validation"]["confusion_matrix"]["labels"][1]
    print(
        f"{'part':10s} {'fold':>4s} {'accuracy':>8s} {'sensitivity':>11s} {'specificity':>11s} {'precision':>9s} {'AUC':>6s}"
    )
    for row in kfold_table(result.folds):
        print(
            f"{row['part']:10s} {row['fold']:>4s} {row['accuracy']:8.3f} {row[f'{positive} recall']:11.3f} "
            f"{row[f'{positive} specificity']:11.3f} {row[f'{positive} precision']:9.3f} {row['ROC AUC']:6.3f}"
        )
    print(f"(sensitivity, specificity and precision of {positive}; all classes are in the manifest)")
    return 0
