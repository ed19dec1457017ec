"""``pacs send-results``: analyse a study's images and store the results in the archive as DICOM.

The source is local DICOM files (``PATH...``: files or folders) or a series retrieved into memory
from the same archive (``--study UID --series UID``). A CT series is read by COVID3D and the slice
model, a radiograph by an X-ray classifier; :mod:`core.pacs.results` builds a Secondary Capture of
the Grad-CAM overlay and a Comprehensive SR, and :mod:`core.pacs.send` stores them. Nothing is
sent without confirmation: ``--yes``, or "y" to the question asked on a terminal; with stdin not a
terminal and no ``--yes`` the command refuses before analysing anything. The DICOMweb password
comes from ``DASHBOARD_PACS_PASSWORD`` only, never from an argument.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from core.cli.common import archive_args, archive_settings, device_arg, registry_of, weights_arg
from core.errors import InvalidInputError, MissingModelError
from core.io.decoding import looks_like_raw_dicom
from core.models.registry import LoadedModel, ModelRegistry
from core.pacs.results import ct_results, describe_results, result_statement, xray_results
from core.pacs.retrieve import retrieve_series
from core.pacs.send import send_datasets
from core.pacs.settings import PacsSettings

#: The X-ray model results are made with when none is named: the real-data one where registered.
DEFAULT_XRAY_MODELS = ("cxr-real-resnet18", "cxr-resnet18")


def add_send_command(sub: argparse._SubParsersAction) -> None:
    """Add ``send-results`` to the ``pacs`` command's subcommands ``sub``."""
    p = sub.add_parser(
        "send-results",
        help="analyse DICOM files or a series of the archive and store the results there as DICOM (SC + SR)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    archive_args(p)
    p.add_argument("paths", nargs="*", metavar="PATH", help="DICOM files or folders of one study's image or series")
    p.add_argument("--study", metavar="UID", help="with --series: analyse a series of the archive itself")
    p.add_argument("--series", metavar="UID", help="the Series Instance UID to retrieve (with --study)")
    p.add_argument("--model", help="X-ray model, or the COVID3D model for a CT series (default: real-data first)")
    p.add_argument("--slice-model", help="the CT slice model (default: real-data first)")
    p.add_argument("--yes", action="store_true", help="send without asking")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    weights_arg(p)
    device_arg(p)
    p.set_defaults(func=run_send)


def _is_dicom(data: bytes) -> bool:
    return data[128:132] == b"DICM" or looks_like_raw_dicom(data)


def read_sources(paths: Sequence[str], settings: PacsSettings) -> list[tuple[str, bytes]]:
    """The bytes of the DICOM files named (a folder: its DICOM files, recursively), within the
    settings' bounds on instances and bytes. Named files must be DICOM; a folder's other files
    are skipped."""
    files: list[tuple[str, bytes]] = []
    total = 0
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found = [(p, True) for p in sorted(path.rglob("*")) if p.is_file()]
        elif path.is_file():
            found = [(path, False)]
        else:
            raise InvalidInputError(f"{name} does not exist.")
        for file, in_folder in found:
            try:
                data = file.read_bytes()
            except OSError as e:
                raise InvalidInputError(f"{file.name} cannot be read ({e.strerror or e}).") from e
            if not _is_dicom(data):
                if in_folder:
                    continue
                raise InvalidInputError(
                    f"{file.name} is not a DICOM file: results are sent with the study a DICOM file belongs to."
                )
            total += len(data)
            files.append((file.name, data))
            if len(files) > settings.max_instances or total > settings.max_bytes:
                raise InvalidInputError(
                    f"These files are more than the settings allow at once ({settings.max_instances} instances, "
                    f"{settings.max_bytes / 1e6:.0f} MB)."
                )
    if not files:
        raise InvalidInputError("No DICOM file was found in the paths given.")
    return files


def _modality(files: Sequence[tuple[str, bytes]]) -> str:
    """ "CT" when any file is a CT image, else the first file's modality."""
    modalities = []
    for _, data in files:
        try:
            header: Dataset = pydicom.dcmread(
                BytesIO(data), stop_before_pixels=True, force=True, specific_tags=["Modality"]
            )
        except Exception:  # unreadable headers are the readers' to report, in their words
            continue
        modalities.append(str(header.get("Modality", "")).upper())
    return "CT" if "CT" in modalities else (modalities[0] if modalities else "")


def _first(registry: ModelRegistry, kind: str, wanted: str | None) -> str | None:
    """``wanted``, or the first registered model of ``kind``, real-data models first."""
    if wanted:
        registry.card(wanted)  # a plain error for an unknown id
        return wanted
    ids = sorted(registry.classifier_ids(kind), key=lambda m: registry.card(m).domain != "real")
    return ids[0] if ids else None


def _load(registry: ModelRegistry, model_id: str, kind: str) -> LoadedModel:
    card = registry.card(model_id)
    if card.input_kind != kind or card.multi_label:
        raise InvalidInputError(f"Model {model_id} does not give a {kind} result that can be sent: choose another.")
    return registry.load(model_id)


def build_results(args: argparse.Namespace, files: Sequence[tuple[str, bytes]]) -> list[Dataset]:
    """The SC and SR of the source ``files`` with the models the options name."""
    registry = registry_of(args)
    if _modality(files) == "CT":
        volume_id = _first(registry, "ct-volume", args.model)
        slice_id = _first(registry, "ct-slice", args.slice_model)
        if volume_id is None and slice_id is None:
            raise MissingModelError(f"No CT model is registered in {registry.weights_dir / 'manifest.json'}.")
        return ct_results(
            files,
            _load(registry, volume_id, "ct-volume") if volume_id else None,
            _load(registry, slice_id, "ct-slice") if slice_id else None,
        )
    registered = registry.ids("xray")
    model_id = args.model or next((m for m in DEFAULT_XRAY_MODELS if m in registered), None)
    model_id = model_id or _first(registry, "xray", None)
    if model_id is None:
        raise MissingModelError(f"No X-ray model is registered in {registry.weights_dir / 'manifest.json'}.")
    return xray_results(files, _load(registry, model_id, "xray"))


def _confirmed(lines: Sequence[str], where: str) -> bool:
    """Show what would be sent on stderr and ask on the terminal."""
    print(f"To be stored in {where}:", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    print("Send? [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def run_send(args: argparse.Namespace) -> int:
    settings = archive_settings(args)
    if not args.yes and not sys.stdin.isatty():
        raise InvalidInputError("Not sending without confirmation: stdin is not a terminal; pass --yes to send.")
    if args.paths and (args.study or args.series):
        raise InvalidInputError("Give either PATHs or --study and --series, not both.")
    if args.paths:
        files = read_sources(args.paths, settings)
    elif args.study and args.series:
        files = retrieve_series(settings, args.study, args.series)
    else:
        raise InvalidInputError("Name the source: DICOM PATHs, or --study UID --series UID of the archive.")
    datasets = build_results(args, files)
    if not args.yes and not _confirmed(describe_results(datasets), settings.where):
        print("Nothing sent.", file=sys.stderr)
        return 1
    report = send_datasets(settings, datasets)
    objects = [
        {
            "sop_class": pydicom.uid.UID(str(ds.SOPClassUID)).name,
            "sop_class_uid": str(ds.SOPClassUID),
            "sop_instance_uid": str(ds.SOPInstanceUID),
            "series_instance_uid": str(ds.SeriesInstanceUID),
            "series_description": str(ds.get("SeriesDescription", "")),
        }
        for ds in datasets
    ]
    out = report.to_json() | {
        "study_instance_uid": str(datasets[0].StudyInstanceUID),
        "objects": objects,
        "statement": result_statement(datasets),
    }
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"Stored {len(report.stored)} objects in {report.where}, in study {out['study_instance_uid']}:")
    for o in objects:
        print(f"  {o['sop_class']} '{o['series_description']}' {o['sop_instance_uid']}")
    for line in out["statement"]:
        print(f"  {line}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0
