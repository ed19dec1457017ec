"""``pacs find`` and ``pacs get``: a hospital archive (PACS) from the command line.

The archive is named by ``--dicomweb URL`` or ``--dimse HOST:PORT --aet AET``, or else by the
``DASHBOARD_PACS_*`` environment variables (:func:`core.pacs.settings.settings_from_env`). The
DICOMweb password comes only from ``DASHBOARD_PACS_PASSWORD``, never from an argument (the
arguments of a command are visible to every user of the machine). The bounds of a retrieval
(``DASHBOARD_PACS_MAX_INSTANCES``, ``..._MAX_BYTES``) and the timeout (``..._TIMEOUT_S``) are
taken from the environment too.

``pacs get`` keeps what it retrieves in memory: without ``--analyse`` it says what arrived,
with it it prints what ``predict-xray`` or ``predict-ct`` print for the same files. Nothing is
written to disk either way.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import sys
from collections.abc import Sequence

import pydicom

from core.cli.common import archive_args, archive_settings, device_arg, weights_arg
from core.cli.pacs_send import add_send_command  # the pacs command's second module: send-results
from core.cli.progress import LazyBar
from core.errors import InvalidInputError
from core.pacs.query import PacsQuery, find_one_series, find_series
from core.pacs.retrieve import retrieve_series
from core.pacs.settings import PacsSettings


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pacs", help="a hospital archive: find series, get (and analyse) one")
    commands = p.add_subparsers(dest="pacs_command", required=True, metavar="PACS_COMMAND")

    find = commands.add_parser("find", help="the series of the studies that match (C-FIND or QIDO-RS)")
    archive_args(find)
    find.add_argument("--patient-id", default="", help="patient id (wildcards * and ? allowed)")
    find.add_argument("--name", default="", help="patient name as DICOM writes it, e.g. 'DOE^JANE' or 'DOE*'")
    find.add_argument("--accession", default="", help="accession number")
    find.add_argument("--modality", default="", help="CT, DX, CR ... (series of other modalities are left out)")
    find.add_argument("--since", help="first study date (YYYY-MM-DD)")
    find.add_argument("--until", help="last study date (YYYY-MM-DD)")
    find.add_argument("--json", action="store_true", help="one JSON object per series")
    find.set_defaults(func=run_find)

    get = commands.add_parser("get", help="retrieve one series into memory (C-GET or WADO-RS), optionally analyse it")
    archive_args(get)
    get.add_argument("--study", default="", help="its Study Instance UID (looked up when not given)")
    get.add_argument("--series", required=True, help="the Series Instance UID")
    get.add_argument(
        "--analyse", action="store_true", help="print what predict-xray or predict-ct print for the same files"
    )
    get.add_argument(
        "--model",
        action="append",
        metavar="ID",
        help="with --analyse: X-ray model id (repeatable, 'all'), or the CT series' COVID3D model id",
    )
    get.add_argument("--slice-model", default=None, help="with --analyse on a CT series: the slice model id")
    get.add_argument("--json", action="store_true", help="print JSON")
    weights_arg(get)
    device_arg(get)
    # What predict-xray and predict-ct take that a retrieval has no use for: no file is written.
    get.set_defaults(func=run_get, cam_dir=None, cam_slice=None, method="gradcam", colormap="Jet", opacity=0.5)

    add_send_command(commands)


def _date(text: str | None, option: str) -> datetime.date | None:
    if not text:
        return None
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.datetime.strptime(text.strip(), form).date()
        except ValueError:
            continue
    raise InvalidInputError(f"{option} takes a date as YYYY-MM-DD, not {text!r}.")


def run_find(args: argparse.Namespace) -> int:
    settings = archive_settings(args)
    query = PacsQuery(
        patient_id=args.patient_id,
        patient_name=args.name,
        accession=args.accession,
        modality=args.modality,
        date_from=_date(args.since, "--since"),
        date_to=_date(args.until, "--until"),
    )
    matches = find_series(settings, query)
    if args.json:
        for match in matches:
            print(json.dumps(match.to_json()))
        return 0
    if not matches:
        print(f"no series at {settings.where} matches")
        return 0
    print(f"{'date':8s}  {'patient id':16s}  {'name':24s}  {'accession':12s}  {'mod':4s}  {'n':>5s}  description")
    for m in matches:
        n = "?" if m.n_instances is None else str(m.n_instances)
        print(
            f"{m.study_date:8s}  {m.patient_id[:16]:16s}  {m.patient_name[:24]:24s}  {m.accession[:12]:12s}  "
            f"{m.modality[:4]:4s}  {n:>5s}  {m.description}"
        )
        print(f"          study {m.study_instance_uid}  series {m.series_instance_uid}")
    return 0


def run_get(args: argparse.Namespace) -> int:
    settings = archive_settings(args)
    study_uid, expected = args.study, None
    if not study_uid:
        found = find_one_series(settings, args.series)
        study_uid, expected = found.study_instance_uid, found.n_instances
    with LazyBar("retrieving", "instance") as bar:
        files = retrieve_series(
            settings, study_uid, args.series, expected=expected, progress=None if args.json else bar
        )
    modality = _modality(files)
    if args.analyse:
        return _analyse(args, settings, files, modality)
    n_bytes = sum(len(data) for _, data in files)
    if args.json:
        record = {
            "study_instance_uid": study_uid,
            "series_instance_uid": args.series,
            "modality": modality,
            "instances": len(files),
            "bytes": n_bytes,
        }
        print(json.dumps(record))
    else:
        print(
            f"{len(files)} instance(s) of {modality or 'unknown modality'}, {n_bytes / 1024**2:.1f} MB, "
            f"from {settings.where}, held in memory (nothing written; --analyse to analyse them)"
        )
    return 0


def _modality(files: Sequence[tuple[str, bytes]]) -> str:
    """The Modality of the first instance ("" when it has none)."""
    header = pydicom.dcmread(io.BytesIO(files[0][1]), stop_before_pixels=True, force=True)
    return str(header.get("Modality", "") or "").strip().upper()


def _analyse(args: argparse.Namespace, settings: PacsSettings, files: list[tuple[str, bytes]], modality: str) -> int:
    # Here, not at the top: torch and the models cost seconds of import that find and a plain get need not pay.
    from core.cli.ct import predict_volume
    from core.cli.xray import predict_xray_files
    from core.io.ct_input import read_ct_upload

    if modality == "CT":
        if args.model and len(args.model) > 1:
            raise InvalidInputError("A CT series takes one --model (its COVID3D model) and one --slice-model.")
        ct_args = argparse.Namespace(**vars(args))
        ct_args.model = args.model[0] if args.model else None
        return predict_volume(ct_args, read_ct_upload(files), settings.where)
    if len(files) > 1:
        print(
            f"note: {len(files)} images of modality {modality or 'unknown'}: each is read as an X-ray", file=sys.stderr
        )
    return predict_xray_files(args, [name for name, _ in files], dict(files).__getitem__)
