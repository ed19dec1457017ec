"""The options every command spells the same way, and what they open.

- ``--weights``: the folder with ``manifest.json`` (:func:`weights_arg`);
- ``--device auto|cpu|cuda``: where models run, ``auto`` = CUDA when present (:func:`device_arg`,
  :func:`registry_of`);
- ``--library``: the case library (:func:`library_arg`, :func:`open_existing`);
- ``--model`` of the search embeddings (:func:`embedding_model_arg`, :func:`load_embedding_model`);
- ``--model`` of trajectories, the model that scores each scan (:func:`score_model_arg`,
  :func:`load_score_model`).

Command modules import from here, never from each other.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import InvalidInputError
from core.library.audit import cli_user
from core.library.store import MissingLibraryError, open_library
from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry, select_device
from core.search.embeddings import REFERENCE_MODEL, check_embeddable
from core.trajectory.scores import score_name

#: The choices of ``--device``.
DEVICES = ("auto", "cpu", "cuda")

#: The default ``--model`` of trajectories.
DEFAULT_SCORE_MODEL = "covid3d"


def weights_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--weights", default=str(DEFAULT_WEIGHTS_DIR), help="folder with manifest.json (default: the shipped weights/)"
    )


def device_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=DEVICES, default="auto", help="where models run (auto: CUDA when present)")


def registry_of(args: argparse.Namespace):
    """The model registry of ``--weights`` on ``--device``."""
    return ModelRegistry(args.weights, device=select_device(args.device))


def library_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--library",
        type=Path,
        default=None,
        help="library folder (default: $DASHBOARD_LIBRARY, else the app's own data/library)",
    )


def open_library_of(args: argparse.Namespace, *, create: bool):
    """The case library of ``--library``; a missing one is a plain error unless ``create``."""
    try:
        return open_library(args.library, create=create).acting(cli_user())
    except MissingLibraryError as e:
        raise InvalidInputError(f"{e} Build one with `python -m core library build-demo` or import a dataset.") from e


def open_existing(args: argparse.Namespace):
    return open_library_of(args, create=False)


def embedding_model_arg(p: argparse.ArgumentParser) -> None:
    """``--model`` (the search embedding model), ``--weights`` and ``--device``."""
    p.add_argument("--model", default=REFERENCE_MODEL, help=f"embedding model (default {REFERENCE_MODEL})")
    weights_arg(p)
    device_arg(p)


def load_embedding_model(args: argparse.Namespace):
    model = registry_of(args).load(args.model)
    check_embeddable(model)
    return model


def score_model_arg(p: argparse.ArgumentParser) -> None:
    """``--model`` (the model whose score trajectories follow), ``--weights`` and ``--device``."""
    p.add_argument(
        "--model",
        default=DEFAULT_SCORE_MODEL,
        help=f"CT volume model (default {DEFAULT_SCORE_MODEL}) or an X-ray model",
    )
    weights_arg(p)
    device_arg(p)


def load_score_model(args: argparse.Namespace):
    model = registry_of(args).load(args.model)
    score_name(model)  # a plain error for a model that gives no COVID score
    return model
