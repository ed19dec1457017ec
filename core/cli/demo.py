"""``python -m core demo ...``: build the embedded default's data."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.progress import LazyBar
from core.demo.build import build_demo_cohort
from core.demo.cohort import DEFAULT_PATIENTS
from core.demo.xray_phantom import write_xray_dataset
from core.errors import InvalidInputError


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo")
    demo_sub = p.add_subparsers(dest="demo_command", required=True, metavar="DEMO_COMMAND")
    x = demo_sub.add_parser("xray-dataset", help="write chest X-ray phantoms as class folders + manifest.csv")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--per-class", type=int, default=300)
    x.add_argument("--size", type=int, default=256, help="image side in pixels")
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=run_xray_dataset)
    b = demo_sub.add_parser("build", help="write the demo cohort (X-rays, CT series, metadata.csv) to a folder")
    b.add_argument("--out", type=Path, default=Path("demo-data"), help="output folder (default: demo-data)")
    b.add_argument("--patients", type=int, default=None, help="number of patients (default: 200)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 4)")
    b.set_defaults(func=run_build)


def run_xray_dataset(args: argparse.Namespace) -> int:
    if args.per_class < 3:
        raise InvalidInputError("--per-class must be at least 3 (train, dev and test need one patient each).")
    out = write_xray_dataset(args.out, n_per_class=args.per_class, seed=args.seed, size=args.size)
    print(f"wrote {3 * args.per_class} phantoms to {out} (class folders and manifest.csv)")
    return 0


def run_build(args: argparse.Namespace) -> int:
    n = DEFAULT_PATIENTS if args.patients is None else args.patients
    with LazyBar("generating", "patient") as bar:
        try:
            report = build_demo_cohort(args.out, n, args.seed, workers=args.workers, progress=bar)
        except ValueError as e:
            raise InvalidInputError(str(e)) from e
    print(
        f"wrote {report.n_patients} patients ({report.n_xrays} X-rays, {report.n_cts} CT series) to {report.out_dir} "
        f"in {report.seconds:.1f} s; import with: python -m core library import --format cohen {report.out_dir}"
    )
    return 0
