"""Argument parsing and dispatch for ``python -m core``.

Every command reports a failure the user can act on as one line on stderr and a non-zero exit
status, never a traceback (``--debug`` shows it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from core.errors import DashboardError


def build_parser() -> argparse.ArgumentParser:
    from core.cli import ct, demo, evaluate, findings, library, models, ood, search, survival, trajectory, xray

    parser = argparse.ArgumentParser(
        prog="python -m core", description="COVID-19 chest imaging dashboard: command line."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    xray.add_commands(sub)
    models.add_commands(sub)
    demo.add_commands(sub)
    library.add_commands(sub)
    ct.add_commands(sub)
    search.add_commands(sub)
    trajectory.add_commands(sub)
    findings.add_commands(sub)
    survival.add_commands(sub)
    evaluate.add_commands(sub)
    ood.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args) or 0)
    except DashboardError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
