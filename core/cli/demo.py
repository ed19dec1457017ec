"""``python -m core demo ...``: build the embedded default's data."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic demo data")
    demo_sub = p.add_subparsers(dest="demo_command", required=True, metavar="DEMO_COMMAND")
    x = demo_sub.add_parser("xray-dataset", help="write chest X-ray phantoms as class folders + manifest.csv")
    x.add_argument("--out", type=Path, required=True)
    x.add_argument("--per-class", type=int, default=300)
    x.add_argument("--size", type=int, default=256, help="image side in pixels")
    x.add_argument("--seed", type=int, default=0)
    x.set_defaults(func=run_xray_dataset)


def run_xray_dataset(args: argparse.Namespace) -> int:
    from core.demo.xray_phantom import write_xray_dataset
    from core.errors import InvalidInputError

    if args.per_class < 3:
        raise InvalidInputError("--per-class must be at least 3 (train, dev and test need one patient each).")
    out = write_xray_dataset(args.out, n_per_class=args.per_class, seed=args.seed, size=args.size)
    print(f"wrote {3 * args.per_class} phantoms to {out} (class folders and manifest.csv)")
    return 0
