"""``python -m core trajectory``: COVID3D s(t) (or an X-ray model's P(COVID-19)) over a
patient's scans, or the whole library's course; ``library score`` scores every scan."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli.common import device_arg, library_arg, open_existing, registry_of, weights_arg
from core.cli.progress import LazyBar
from core.errors import InvalidInputError

DEFAULT_MODEL = "covid3d"


def model_arg(p: argparse.ArgumentParser) -> None:

    p.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"CT volume model (default {DEFAULT_MODEL}) or an X-ray model"
    )
    weights_arg(p)
    device_arg(p)


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trajectory", help="s(t): a model's score over a patient's scans, or the cohort's course")
    p.add_argument("patient", nargs="?", metavar="PATIENT_ID", help="a library pseudonym (P-...)")
    p.add_argument("--cohort", action="store_true", help="every patient: the median course and each one's features")
    p.add_argument("--label", action="append", help="--cohort: only patients with this diagnosis (repeatable)")
    p.add_argument("--bin-days", type=float, default=2.0, help="--cohort: width of the day bins of the median")
    p.add_argument("--csv", type=Path, default=None, help="--cohort: write each patient's curve features here")
    p.add_argument(
        "--since", choices=("admission", "onset"), default=None, help="days since admission (default) or symptom onset"
    )
    p.add_argument("--json", action="store_true")
    model_arg(p)
    library_arg(p)
    p.set_defaults(func=run_trajectory)


def load_model(args: argparse.Namespace):  # noqa: ANN201 - LoadedModel
    from core.trajectory.scores import score_name

    registry = registry_of(args)
    model = registry.load(args.model)
    score_name(model)  # a plain error for a model that gives no COVID score
    return model


def run_score(args: argparse.Namespace) -> int:
    from core.trajectory.scores import score_library

    library = open_existing(args)
    model = load_model(args)
    with LazyBar(f"scoring ({model.id} on {model.device.type})", "scan") as bar:
        report = score_library(library, model, progress=bar)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"{report.added} scans scored, {report.already} already had {model.id} scores ({report.total} in all)")
        for problem in report.problems:
            print(f"  skipped {problem}")
    return 0


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def run_trajectory(args: argparse.Namespace) -> int:
    from core.trajectory.curves import (
        cohort_curve,
        cohort_points,
        cohort_trajectories,
        features_csv,
        patient_trajectory,
    )
    from core.trajectory.scores import score_library

    if bool(args.patient) == bool(args.cohort):
        raise InvalidInputError("Give a patient id, or --cohort for every patient.")
    if args.bin_days <= 0:
        raise InvalidInputError("--bin-days must be positive.")
    if args.patient and (args.label or args.csv):
        raise InvalidInputError("--label and --csv go with --cohort, not with one patient.")
    from core.labels import canonical_label

    # Refuse a bad label before scoring a whole library.
    labels = tuple(canonical_label(x) for x in args.label) if args.label else None
    library = open_existing(args)
    model = load_model(args)
    if args.patient:
        t = patient_trajectory(library, args.patient, model, args.since)
        if args.json:
            print(json.dumps(t.as_dict()))
            return 0
        s = t.patient
        print(f"{s.pseudonym}: {s.label or 'unlabelled'}, {s.outcome or 'outcome unknown'}; {t.score} of {t.model_id}")
        if not t.points:
            print("  no scan this model scores")
        for p in t.points:
            print(f"  day {p.day:>5g}  {t.score} = {p.value:7.3f}  P(COVID+) = {p.probability:.3f}  study {p.study_id}")
        f = t.features
        print(
            f"  peak {_fmt(f.peak)} on day {_fmt(f.peak_day)}; first {_fmt(f.first)}, last {_fmt(f.last)}; AUC {_fmt(f.auc)}"
        )
        return 0
    with LazyBar(f"scoring ({model.id} on {model.device.type})", "scan") as bar:
        report = score_library(library, model, progress=bar)
    for problem in report.problems:
        print(f"note: skipped {problem}", file=sys.stderr)
    trajectories = [
        t for t in cohort_trajectories(library, model, args.since) if labels is None or t.patient.label in labels
    ]
    days, values = cohort_points(trajectories)
    curve = cohort_curve(days, values, bin_days=args.bin_days)
    if args.csv:
        try:
            args.csv.write_text(features_csv(trajectories))
        except OSError as e:
            raise InvalidInputError(f"Could not write {args.csv}: {e.strerror}.") from e
    if args.json:
        print(
            json.dumps(
                {
                    "model_id": model.id,
                    "n_patients": len(trajectories),
                    "n_scans": int(days.size),
                    "curve": curve.as_dict(),
                    "patients": [t.as_dict() for t in trajectories],
                }
            )
        )
        return 0
    print(
        f"{len(trajectories)} patients, {days.size} scans; median {trajectories[0].score if trajectories else ''} by day:"
    )
    for c, m, lo, hi, n in zip(curve.centres, curve.median, curve.q25, curve.q75, curve.counts, strict=True):
        print(f"  day {c:>5g}  median {m:7.3f}  IQR {lo:7.3f} .. {hi:7.3f}  ({n} scans)")
    print(f"peak of the median on day {_fmt(curve.peak_day)}")
    return 0
