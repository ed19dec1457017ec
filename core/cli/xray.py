"""``predict-xray`` and ``train-xray``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from core.case_reports.common import upload_pseudonym
from core.cli.common import device_arg, registry_of, weights_arg
from core.errors import DashboardError
from core.explain.attributions import METHOD_ALIASES
from core.explain.overlay import COLORMAPS, png_bytes, render_overlay
from core.inference import analyse_xray, predict_xray, xray_reading
from core.io.images import read_xray
from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry

#: The default model of predict-xray: the real-data reference model when registered, else the demo one.
DEFAULT_MODELS = ("cxr-real-resnet18", "cxr-resnet18")


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict-xray")
    p.add_argument("files", nargs="+", metavar="FILE", help="PNG, JPEG, BMP, TIFF or DICOM files")
    p.add_argument(
        "--model",
        action="append",
        metavar="ID",
        help="model id (repeatable; 'all' for every X-ray model; default: cxr-real-resnet18, the model trained on "
        "real X-rays, or cxr-resnet18 where it is not registered)",
    )
    p.add_argument("--cam-dir", type=Path, help="also write an attribution overlay PNG per file and model here")
    p.add_argument(
        "--method", default="gradcam", choices=sorted(METHOD_ALIASES), help="attribution method for --cam-dir"
    )
    p.add_argument("--colormap", default="Jet", choices=COLORMAPS)
    p.add_argument("--opacity", type=float, default=0.5)
    p.add_argument("--json", action="store_true", help="print one JSON object per file and model")
    weights_arg(p)
    device_arg(p)
    p.set_defaults(func=run_predict)

    t = sub.add_parser("train-xray")
    t.add_argument("--data", required=True, help="class-folder dataset or CSV manifest (path,label[,patient_id])")
    t.add_argument("--arch", required=True, choices=("resnet18", "densenet121", "custom"))
    t.add_argument("--out", default=str(DEFAULT_WEIGHTS_DIR), help="weights folder (default: weights/)")
    t.add_argument("--id", dest="model_id", help="model id (default cxr-ARCH)")
    t.add_argument("--lr", type=float, default=3e-5)
    t.add_argument("--batch-size", type=int, default=24)
    t.add_argument("--epochs", type=int, default=20, help="maximum epochs (early stopping on dev loss)")
    t.add_argument("--patience", type=int, default=3, help="epochs without dev-loss improvement before stopping")
    t.add_argument("--balanced", action="store_true", help="balanced sampler (inverse class frequency)")
    t.add_argument("--no-augment", dest="augment", action="store_false")
    t.add_argument("--size", type=int, default=224, help="input size in pixels")
    t.add_argument("--dropout", type=float, default=0.0, help="dropout before the final FC layer")
    t.add_argument("--freeze-features", action="store_true", help="densenet121: train the classifier only")
    t.add_argument(
        "--init",
        choices=("scratch", "imagenet"),
        default="scratch",
        help="imagenet: start from torchvision weights already in the local torch cache",
    )
    t.add_argument("--blocks", type=int, default=6, help="custom CNN: number of conv blocks")
    t.add_argument("--width", type=int, default=16, help="custom CNN: channels of the first block")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, help="CPU threads for torch")
    device_arg(t)
    add_image_training_options(t)
    t.set_defaults(func=run_train)


def add_image_training_options(t: argparse.ArgumentParser, common: bool = True) -> None:
    """Options of the 2D image trainer, shared by train-xray and train-ct-slice (on slice images);
    ``common``: also --note and --intended-use (train-ct-slice has its own)."""
    if common:
        t.add_argument("--note", default="", help="a description of the training data, stored in the manifest")
        t.add_argument("--intended-use", help="the model card's intended use (default: from the data's domain)")
    t.add_argument("--licences", default="", help="the data's sources and licences, for the model card")
    t.add_argument("--caveats", default="", help="what a reader of the model card must know (e.g. a site confound)")
    t.add_argument(
        "--domain",
        choices=("demo", "real"),
        help="what the data are (default: demo when the dataset folder's dataset.json says synthetic, else real)",
    )
    if common:
        t.add_argument("--channels", type=int, choices=(1, 3), default=3, help="resnet18/densenet121 input channels")
    t.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (0: plain Adam)")
    t.add_argument("--schedule", choices=("constant", "cosine"), default="constant", help="learning-rate schedule")
    t.add_argument(
        "--strong-augment",
        action="store_true",
        help="blur/resampling, blanked borders and gamma on top of the affine jitter (for training from scratch)",
    )
    t.add_argument(
        "--block",
        type=int,
        default=25,
        help="images without a patient id are split in blocks of this many neighbouring file numbers "
        "(default: %(default)s; 1: image by image)",
    )


def _model_ids(args: argparse.Namespace, registry: ModelRegistry) -> list[str]:
    ids = args.model or [next((m for m in DEFAULT_MODELS if m in registry.ids("xray")), DEFAULT_MODELS[-1])]
    if "all" in ids:
        return registry.classifier_ids("xray")
    return ids


def run_predict(args: argparse.Namespace) -> int:
    return predict_xray_files(args, args.files, _read_file)


def _read_file(name: str) -> bytes:
    path = Path(name)
    try:
        return path.read_bytes()
    except OSError as e:
        raise DashboardError(f"{path.name} cannot be read ({e.strerror or e}).") from e


def predict_xray_files(args: argparse.Namespace, names: Sequence[str], read: Callable[[str], bytes]) -> int:
    """What ``predict-xray`` prints for the files ``names``, each read by ``read`` (from disk,
    or from the instances ``pacs get`` retrieved): a record per file and model, a line on
    stderr per file that cannot be read; the exit status (1 when any could not)."""
    registry = registry_of(args)
    models = [registry.load(mid) for mid in _model_ids(args, registry)]
    if args.cam_dir:
        args.cam_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in names:
        try:
            data = read(name)
            image = read_xray(data, Path(name).name)
        except DashboardError as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failures += 1
            continue
        for warning in image.warnings:
            print(f"warning: {name}: {warning}", file=sys.stderr)
        for model in models:
            if args.cam_dir:
                pred, cam = analyse_xray(model, image, method=args.method)
            else:
                pred, cam = predict_xray(model, image), None
            reading = xray_reading(model, image, pred)
            record = {"file": name} | reading.to_dict()
            if cam is not None:
                # Named like the page's downloads: a file name can carry the patient's name.
                out = args.cam_dir / f"{upload_pseudonym(data)}.{model.id}.{args.method}.png"
                out.write_bytes(png_bytes(render_overlay(image.windowed(), cam.values, args.colormap, args.opacity)))
                record["overlay"] = str(out)
                record["overlay_target"] = cam.target_label
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                probs = "  ".join(f"{k}: {v:.3f}" for k, v in record["probabilities"].items())
                if reading.accepted:
                    print(f"{name}  [{model.id}, {reading.domain}]  predicted {pred.predicted_label}  ({probs})")
                else:
                    assert reading.ood is not None
                    print(f"{name}  [{model.id}, {reading.domain}]  NO RESULT: {reading.ood.headline()}  ({probs})")
                sys.stdout.flush()
    if failures:
        print(f"{failures} of {len(names)} file(s) could not be read", file=sys.stderr)
        return 1
    return 0


def run_train(args: argparse.Namespace) -> int:
    # Here, not at the top: it costs 1.3-1.5 s of import (python -X importtime) that predict-xray need not pay.
    from core.training import distributed
    from core.training.xray import XrayTrainConfig, train_xray

    if args.threads:
        torch.set_num_threads(args.threads)
    config = XrayTrainConfig(
        kind=getattr(args, "image_kind", "xray"),
        architecture=args.arch,
        model_id=args.model_id,
        lr=args.lr,
        batch_size=args.batch_size,
        max_epochs=args.epochs,
        patience=args.patience,
        balanced=args.balanced,
        augment=args.augment,
        size=args.size,
        dropout=args.dropout,
        freeze_features=args.freeze_features,
        init=args.init,
        blocks=args.blocks,
        width=args.width,
        seed=args.seed,
        device=args.device,
        intended_use=args.intended_use,
        data_note=args.note,
        licences=args.licences,
        caveats=args.caveats,
        domain=args.domain,
        channels=args.channels,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        strong_augment=args.strong_augment,
        block=args.block,
    )
    # Under torchrun the other processes train quietly; rank 0 shows progress and writes.
    result = train_xray(args.data, args.out, config, progress=distributed.is_main())
    if not distributed.is_main():
        return 0
    held = result.card.metrics["held_out"]
    print(
        f"wrote {result.weights_path} ({result.card.id} {result.card.version}); "
        f"held-out accuracy {held['accuracy']:.3f} on {held['n']} images; curves in {result.curves_path}"
    )
    return 0
