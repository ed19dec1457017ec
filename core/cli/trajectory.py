"""``python -m core trajectory``: COVID3D s(t) (or an X-ray model's P(COVID-19)) over a
patient's scans, or the whole library's course (``library score`` scores every scan ahead)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from core.cli.common import library_arg, load_score_model, open_existing, score_model_arg
from core.cli.progress import LazyBar
from core.errors import InvalidInputError
from core.labels import canonical_label
from core.trajectory.curves import cohort_curve, cohort_points, cohort_trajectories, features_csv, patient_trajectory
from core.trajectory.scores import score_library


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trajectory")
    p.add_argument("patient", nargs="?", metavar="PATIENT_ID", help="a library pseudonym (P-...)")
    p.add_argument("--cohort", action="store_true", help="every patient: the median course and each one's features")
    p.add_argument("--label", action="append", help="--cohort: only patients with this diagnosis (repeatable)")
    p.add_argument("--bin-days", type=float, default=2.0, help="--cohort: width of the day bins of the median")
    p.add_argument("--csv", type=Path, default=None, help="--cohort: write each patient's curve features here")
    p.add_argument(
        "--since", choices=("admission", "onset"), default=None, help="days since admission (default) or symptom onset"
    )
    p.add_argument("--json", action="store_true")
    score_model_arg(p)
    library_arg(p)
    p.set_defaults(func=run_trajectory)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def run_trajectory(args: argparse.Namespace) -> int:
    if bool(args.patient) == bool(args.cohort):
        raise InvalidInputError("Give a patient id, or --cohort for every patient.")
    if args.bin_days <= 0:
        raise InvalidInputError("--bin-days must be positive.")
    if args.patient and (args.label or args.csv):
        raise InvalidInputError("--label and --csv go with --cohort, not with one patient.")
    # Refuse a bad label before scoring a whole library.
    labels = tuple(canonical_label(x) for x in args.label) if args.label else None
    library = open_existing(args)
    model = load_score_model(args)
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
