"""Build the embedded default's case library: generate the demo cohort, import it, clean up.

The demo cohort is written in real formats to a temporary folder and enters the library
through the same Cohen importer a real dataset would use; the temporary files are removed
afterwards, so only the library's de-identified copies stay on disk.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.demo.cohort import DEFAULT_PATIENTS
from core.library.records import ImportReport
from core.library.store import DATABASE_NAME, SqliteLibrary, open_library

#: ``progress(stage, done, total)``, stage "generating" or "importing".
StageProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class DemoLibraryReport:
    library: Path
    n_patients: int
    generation_s: float
    import_s: float
    imported: ImportReport


def build_demo_library(
    path: str | Path | None = None,
    n_patients: int = DEFAULT_PATIENTS,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: StageProgress | None = None,
) -> DemoLibraryReport:
    """Generate the demo cohort and import it into the library at ``path`` (created if missing).

    Building into a library that already holds the demo cohort adds nothing (the importer
    recognises the files). A library left half-built by an interrupted first build is
    completed by the next call for the same reason.
    """
    import time

    from core.demo.build import build_demo_cohort
    from core.library.importers import import_cohen

    library: SqliteLibrary = open_library(path)
    scratch = Path(tempfile.mkdtemp(prefix="demo-cohort-", dir=library.root))
    try:
        built = build_demo_cohort(
            scratch,
            n_patients,
            seed,
            workers=workers,
            progress=None if progress is None else (lambda d, t: progress("generating", d, t)),
        )
        start = time.perf_counter()
        report = import_cohen(
            library,
            scratch,
            include_lateral=True,
            source="demo",
            workers=workers,
            progress=None if progress is None else (lambda d, t: progress("importing", d, t)),
        )
        import_s = time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return DemoLibraryReport(library.root, built.n_patients, built.seconds, import_s, report)


def library_is_empty(path: str | Path | None = None) -> bool:
    """True when there is no library at ``path`` yet, or it holds no patient."""
    from core.library.store import default_library_path

    root = default_library_path() if path is None else Path(path)
    if not (root / DATABASE_NAME).is_file():
        return True
    return open_library(root).counts().patients == 0
