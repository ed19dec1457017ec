"""Argument parsing and dispatch for ``python -m core``.

Every command reports a failure the user can act on as one line on stderr and a non-zero exit
status, never a traceback, nor the log records and warnings of the DICOM library
(:mod:`core.console`); ``--debug`` shows them all.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from core.console import configure_console
from core.errors import DashboardError

#: Every command, in the order ``--help`` lists them: the module of ``core.cli`` that defines it
#: (its ``add_commands``), and the line ``--help`` shows for it. Only the module of the command
#: given is imported: together the command modules import torch, scikit-learn and scipy
#: (``python -X importtime``: 1.2 s before this table, 4.6 s with every import at the top of its
#: module), and ``python -m core --help`` needs none of them.
COMMANDS: dict[str, tuple[str, str]] = {
    "predict-xray": ("xray", "3-class probabilities (and overlays) for chest X-ray files"),
    "train-xray": ("xray", "train an X-ray classifier (the data's classes) and register it"),
    "models": ("models", "list the models in the manifest"),
    "demo": ("demo", "synthetic demo data"),
    "library": ("library", "the case library: import, list, show"),
    "meeting": ("meeting", "case-review meetings: create, add, list, show, move, record a read"),
    "pacs": ("pacs", "a hospital archive (PACS): find series, get one into memory and analyse it"),
    "predict-ct": ("ct", "COVID3D and slice-model predictions for one CT series"),
    "train-ct3d": ("ct", "train COVID3D (3D CNN on whole volumes) with patient-level k-fold CV"),
    "train-ct-slice": ("ct", "train the 2D slice model (ResNet, COVID vs normal) with patient-level k-fold CV"),
    "similar": ("search", "the patients most similar to an X-ray file or a library case"),
    "evaluate-retrieval": ("search", "precision@k by label and same-patient hit rate of the search"),
    "trajectory": ("trajectory", "s(t): a model's score over a patient's scans, or the cohort's course"),
    "train-findings": (
        "findings",
        "train cxr-findings (DenseNet-121, one sigmoid per finding) on a CheXpert-style CSV or the demo cohort",
    ),
    "findings-change": (
        "findings",
        "finding changes between sequential X-rays: Worse / Stable / Improved statistics and predictor (seed 004)",
    ),
    "train-survival": ("survival", "train the CNN-LSTM survival model on X-ray series (seed 000)"),
    "train-prognosis": ("survival", "fine-tune COVID3D for prognosis: remaining stay >= 7 days (seed 003)"),
    "km": ("survival", "Kaplan-Meier curves of groups: log-rank p-value and Cox hazard ratio"),
    "evaluate": ("evaluate", "a model's performance on its held-out split or a dataset (page 7)"),
    "calibrate": ("evaluate", "fit a model's temperature on its recorded dev split (writes the manifest)"),
    "fit-ood": ("ood", "fit each model's 'unlike my training data' reference on its recorded splits"),
    "ood-check": ("ood", "measure how well each model flags inputs unlike its training data"),
    "shortcut-check": ("ood", "border check and Grad-CAM mass in the central region, on the held-out split"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of ``python -m core``; with the arguments of ``command`` (a key of
    :data:`COMMANDS`) and the other commands of its module, or else every command by name only,
    which is all that ``--help`` and a misspelt command need."""
    parser = argparse.ArgumentParser(
        prog="python -m core", description="COVID-19 chest imaging dashboard: command line."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if command in COMMANDS:
        importlib.import_module(f"core.cli.{COMMANDS[command][0]}").add_commands(sub)
    else:
        for name, (_, text) in COMMANDS.items():
            sub.add_parser(name, help=text)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first word that is not an option (the options before
    it, ``--debug`` and ``--help``, take no value)."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    configure_console(args.debug)
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
