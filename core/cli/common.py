"""The options every command spells the same way, and what they open.

- ``--weights``: the folder with ``manifest.json`` (:func:`weights_arg`);
- ``--device auto|cpu|cuda``: where models run, ``auto`` = CUDA when present (:func:`device_arg`,
  :func:`registry_of`);
- ``--library``: the case library (:func:`library_arg`, :func:`open_existing`);
- ``--model`` of the search embeddings (:func:`embedding_model_arg`, :func:`load_embedding_model`);
- ``--model`` of trajectories, the model that scores each scan (:func:`score_model_arg`,
  :func:`load_score_model`);
- the archive of the ``pacs`` commands: ``--dicomweb URL`` or ``--dimse HOST:PORT --aet AET``
  (:func:`archive_args`, :func:`archive_settings`).

Command modules import from here, never from each other.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping

from core.errors import InvalidInputError
from core.library.audit import cli_user
from core.library.store import MissingLibraryError, open_library
from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry, select_device
from core.pacs.settings import ENV_PREFIX, PacsSettings, settings_from_env, settings_from_mapping
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
        default=None,
        help="library folder, or a postgresql://user@host:port/database address "
        "(default: $DASHBOARD_LIBRARY, else the app's own data/library)",
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


#: Where the ``pacs`` commands read the archive's password: never an argument (it would show in
#: the shell's history and the process list).
PASSWORD_ENV = f"{ENV_PREFIX}PASSWORD"
#: What the environment still gives when the command line names the archive.
_KEPT_FROM_ENV = ("max_instances", "max_bytes", "timeout_s", "calling_aet", "username", "password")


def archive_args(p: argparse.ArgumentParser) -> None:
    """``--dicomweb URL`` or ``--dimse HOST:PORT`` with ``--aet``; ``--calling-aet``, ``--user``,
    ``--timeout``."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dicomweb", metavar="URL", help="the DICOMweb base URL, e.g. http://pacs:8042/dicom-web")
    where.add_argument("--dimse", metavar="HOST:PORT", help="the archive's DICOM host and port")
    p.add_argument("--aet", help="with --dimse: the archive's AE title")
    p.add_argument("--calling-aet", help="this application's AE title (default: DASHBOARD)")
    p.add_argument("--user", help=f"with --dicomweb: the user name (the password is read from ${PASSWORD_ENV})")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for the archive (default 30)")


def archive_settings(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> PacsSettings:
    """The archive the command names (its password from the environment), else the one of the
    ``DASHBOARD_PACS_*`` settings; a plain error when neither names one."""
    env = dict(os.environ if environ is None else environ)
    timeout = getattr(args, "timeout", None)
    if not args.dicomweb and not args.dimse:
        settings = settings_from_env(env)
        if settings is None:
            raise InvalidInputError(
                f"Name the archive: --dicomweb URL, or --dimse HOST:PORT --aet AET "
                f"(or set {ENV_PREFIX}URL or {ENV_PREFIX}HOST)."
            )
        changes = {"called_aet": args.aet, "calling_aet": args.calling_aet, "username": args.user, "timeout_s": timeout}
        return dataclasses.replace(settings, **{k: v for k, v in changes.items() if v is not None})
    values: dict[str, object] = {
        k[len(ENV_PREFIX) :].lower(): v
        for k, v in env.items()
        if k.startswith(ENV_PREFIX) and k[len(ENV_PREFIX) :].lower() in _KEPT_FROM_ENV
    }
    if args.dicomweb:
        values |= {"protocol": "dicomweb", "url": args.dicomweb}
    else:
        if not args.aet:
            raise InvalidInputError("--dimse needs --aet, the archive's AE title.")
        host, _, port = args.dimse.rpartition(":")
        if not host or not port.isdigit():
            raise InvalidInputError(f"--dimse takes HOST:PORT, e.g. pacs.example.org:104, not {args.dimse!r}.")
        values |= {"protocol": "dimse", "host": host, "port": port, "called_aet": args.aet}
    if args.calling_aet:
        values["calling_aet"] = args.calling_aet
    if args.user is not None:
        values["username"] = args.user
    if timeout is not None:
        values["timeout_s"] = timeout
    return settings_from_mapping(values)
