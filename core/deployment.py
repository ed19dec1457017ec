"""The settings of a shared deployment: where typed paths may lead, and read-only screens.

When the app is opened to a network, anyone who reaches it can type a path into the Case
library's import box or the Model performance page's dataset box, and the server would read it.
:func:`confine` keeps those paths inside the *data roots*: the folders in
``$DASHBOARD_DATA_ROOTS`` (separated by ``os.pathsep``, ``:`` on Linux), else the app's own
``data`` folder and the folder the server was started in. A path is resolved first (``~``,
``..`` and every symbolic link), so ``../..``, a link inside a root that points out, and an
absolute path elsewhere are all refused with one plain line.

``DASHBOARD_READ_ONLY=1`` (or ``true``, ``yes``, ``on``) marks a meeting-room screen: the pages
hide every action that adds to the case library (:func:`read_only`).

The command line (``python -m core ...``) is not confined: it runs in the user's own shell,
with the user's own rights, so the paths it is given are the user's to choose.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.errors import OutsideDataRootsError

__all__ = ["APP_DATA_DIR", "DATA_ROOTS_ENV", "READ_ONLY_ENV", "confine", "data_roots", "read_only", "roots_hint"]

DATA_ROOTS_ENV = "DASHBOARD_DATA_ROOTS"
READ_ONLY_ENV = "DASHBOARD_READ_ONLY"
#: The app's own data folder (the case library lives in ``data/library`` unless moved).
APP_DATA_DIR = Path(__file__).resolve().parents[1] / "data"

_TRUE = frozenset({"1", "true", "yes", "on"})


def data_roots(environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The folders typed paths may lead into, resolved: ``$DASHBOARD_DATA_ROOTS``, else the
    working folder (unless it is the filesystem's root) and :data:`APP_DATA_DIR`.

    Empty entries are skipped; a relative entry is taken from the working folder. A root need
    not exist yet (nothing inside it does either, so nothing is let through by that).
    """
    env = os.environ if environ is None else environ
    entries = [e.strip() for e in env.get(DATA_ROOTS_ENV, "").split(os.pathsep) if e.strip()]
    if not entries:
        cwd = Path.cwd().resolve()
        # A server started in / (a service with no working folder set) must not open every path.
        return (APP_DATA_DIR.resolve(),) if cwd == Path(cwd.anchor) else (cwd, APP_DATA_DIR.resolve())
    return tuple(Path(e).expanduser().resolve() for e in entries)


def read_only(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this is a read-only screen (``$DASHBOARD_READ_ONLY`` is 1, true, yes or on)."""
    env = os.environ if environ is None else environ
    return env.get(READ_ONLY_ENV, "").strip().lower() in _TRUE


def _where(roots: Sequence[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def roots_hint(roots: Sequence[Path] | None = None) -> str:
    """One sentence for a path box: where the typed path may lead."""
    return f"The dashboard reads only inside {_where(data_roots() if roots is None else roots)} ({DATA_ROOTS_ENV})."


def confine(typed: str | Path, roots: Sequence[Path] | None = None) -> Path:
    """The real path that ``typed`` leads to, when it lies inside one of ``roots``.

    Parameters
    ----------
    typed
        A path as a user typed it: absolute, ``~/...``, or relative. A relative path is taken
        from the first root that holds it, else from the first root.
    roots
        The allowed folders; :func:`data_roots` when None.

    Raises
    ------
    OutsideDataRootsError
        The path, once ``..`` and symbolic links are followed, is outside every root, or it
        cannot be a path at all (a NUL character, a loop of links).
    """
    allowed = tuple(Path(r).resolve() for r in roots) if roots is not None else data_roots()
    text = str(typed).strip()
    refusal = f"the dashboard reads only from {_where(allowed)}; whoever runs it can add a folder to {DATA_ROOTS_ENV}."
    try:
        path = Path(text).expanduser()
        if path.is_absolute():
            candidates = [path]
        else:
            candidates = [root / path for root in allowed]
            candidates = [c for c in candidates if c.exists()][:1] or candidates[:1]
        real = candidates[0].resolve()
    except (OSError, RuntimeError, ValueError) as e:  # NUL characters, link loops, unknown ~user
        raise OutsideDataRootsError(f"'{text}' is not a path this dashboard can read: {refusal}") from e
    if any(real.is_relative_to(root) for root in allowed):
        return real
    lexical = Path(os.path.normpath(candidates[0]))
    if any(lexical.is_relative_to(root) for root in allowed):
        raise OutsideDataRootsError(f"'{text}' leads through a link to a folder outside the allowed ones: {refusal}")
    raise OutsideDataRootsError(f"'{text}' is outside the folders this dashboard may read: {refusal}")
