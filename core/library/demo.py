"""Build the embedded default's case library straight from the demo cohort simulator.

``python -m core demo build`` followed by ``library import --format cohen`` gives the same
library the long way round: files with made-up identifiers on disk, read back, de-identified
slice by slice. On a 2-core laptop that round trip costs about a minute for the default cohort,
most of it de-identifying twenty thousand CT slices that carry no real identifier, which is too
slow for a first launch. So the app's own build draws each patient in a worker process with
only the patient's pseudonym written into the DICOM files (no name, record number, birth date,
accession number or institution to remove), reads each scan's row with the Cohen importer's
own row parser, prepares X-rays with the importer's own function, and stores the CT slices as
written. Both ways give the same patients, studies, notes, findings and outcomes (a test checks
this); the de-identification of real files is tested on the long way.
"""

from __future__ import annotations

import datetime
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path

from core.demo.build import finding_columns, render_patient
from core.demo.cohort import DEFAULT_PATIENTS, DemoPatient, simulate_cohort
from core.labels import XRAY_LABELS
from core.library.deid import Deidentifier
from core.library.importers import cohen_row, prepare_image, series_image
from core.library.meeting_records import HIDEABLE
from core.library.records import ImportReport, PatientSummary
from core.library.store import (
    CaseLibrary,
    LibraryError,
    MissingLibraryError,
    NewImage,
    content_key,
    default_library_location,
    is_database_url,
    library_exists,
    open_library,
)
from core.types import Progress

#: ``progress(done, total)`` in patients.

#: The ``source`` the demo patients are pseudonymised under.
DEMO_SOURCE = "demo"
#: The library setting that records a demo build: "started", then "complete".
BUILD_SETTING = "demo_build"
#: The meeting a fresh install holds, so the Case review page is never empty.
DEMO_MEETING_TITLE = "Teaching file: 8 demo patients"
DEMO_MEETING_SIZE = 8
#: The library setting that records the demo meeting's making: "started", then "complete".
MEETING_SETTING = "demo_meeting"


@dataclass(frozen=True)
class DemoLibraryReport:
    library: str  # where: a folder, or a PostgreSQL address
    n_patients: int
    seconds: float
    imported: ImportReport


@dataclass(frozen=True)
class _DemoCase:
    row: dict[str, str]
    image: NewImage
    source_key: str


def _patient_cases(patient: DemoPatient, secret: bytes) -> list[_DemoCase]:
    """Draw one patient's scans and prepare them for the library. Runs in a worker."""
    pseudonym = Deidentifier(secret).pseudonym(DEMO_SOURCE, patient.patient_id)
    cases = []
    for scan in render_patient(patient, pseudonym=pseudonym):
        key = content_key(secret, (data for _, data in scan.files))
        if scan.hu is None:
            name, data = scan.files[0]
            image = prepare_image(name, data, secret, pseudonym, scan.row["modality"])
        else:
            image = series_image(scan.files, scan.hu)
        cases.append(_DemoCase(scan.row, image, key))
    return cases


#: Who the audit log records for the cases of the demo cohort.
DEMO_BUILD_USER = "demo build"


def build_demo_library(
    path: str | Path | None = None,
    n_patients: int = DEFAULT_PATIENTS,
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> DemoLibraryReport:
    """Simulate the demo cohort and store it in the library at ``path`` (created if missing).

    Patients are drawn in parallel by ``workers`` processes (default: the CPU count, at most
    4). Building into a library that already holds the demo cohort adds nothing; a library
    left half-built by an interrupted build is completed by the next call, which draws only
    the patients missing. The library's ``demo_build`` setting says "started" until the build
    is complete (see :func:`needs_demo_build`).
    """
    start = time.perf_counter()
    library = open_library(path).acting(DEMO_BUILD_USER)
    secret = library.secret()
    cohort = simulate_cohort(n_patients, seed)
    report = ImportReport()
    stored = {p.pseudonym: p.n_xray + p.n_ct for p in library.patients()}
    known = set(stored)
    # Patients stored whole by an earlier (perhaps interrupted) build are not drawn again.
    todo = [p for p in cohort if stored.get(library.pseudonym(DEMO_SOURCE, p.patient_id), 0) < len(p.scans)]
    report.duplicates = sum(len(p.scans) for p in cohort) - sum(len(p.scans) for p in todo)
    library.set_setting(BUILD_SETTING, "started")
    findings = finding_columns()
    n_workers = max(1, min(workers or os.cpu_count() or 1, 4, len(todo)))

    def drawn() -> Iterator[list[_DemoCase]]:
        if n_workers == 1:
            for p in todo:
                yield _patient_cases(p, secret)
        else:
            # "spawn": a forked copy of a process that runs torch threads (the app) can deadlock.
            # Only a few patients in flight: a stopped app (Ctrl+C) waits for those, not for all.
            with ProcessPoolExecutor(n_workers, mp_context=get_context("spawn")) as pool:
                waiting = iter(todo)
                running = deque(pool.submit(_patient_cases, p, secret) for p in islice(waiting, 2 * n_workers))
                while running:
                    cases = running.popleft().result()
                    following = next(waiting, None)
                    if following is not None:
                        try:
                            running.append(pool.submit(_patient_cases, following, secret))
                        except RuntimeError as e:  # the process is exiting (the app was stopped)
                            raise LibraryError(
                                "The demo library build was stopped; it resumes on the next launch."
                            ) from e
                    yield cases

    if progress is not None:
        progress(len(cohort) - len(todo), len(cohort))
    for done, cases in enumerate(drawn(), start=len(cohort) - len(todo) + 1):
        for line, case in enumerate(cases, start=1):
            # The demo's images are in memory: no dataset folder is read (check_files=False).
            row = cohen_row(library, Path(), line, case.row, findings, True, True, DEMO_SOURCE, check_files=False)
            assert row is not None  # every modality and view is included
            if library.has_source_key(case.source_key):
                report.duplicates += 1
                continue
            library.add_case(row.patient, row.study, (case.image,), case.source_key)
            report.added_studies += 1
            report.added_images += 1
            if row.patient.pseudonym not in known:
                known.add(row.patient.pseudonym)
                report.added_patients += 1
        if progress is not None:
            progress(done, len(cohort))
    add_demo_meeting(library)
    library.set_setting(BUILD_SETTING, "complete")
    return DemoLibraryReport(library.location, len(cohort), time.perf_counter() - start, report)


def choose_demo_patients(patients: list[PatientSummary], n: int = DEMO_MEETING_SIZE) -> list[str]:
    """The pseudonyms of up to ``n`` demo patients that show the cohort's spread, in the order
    a teaching file presents them: one of each diagnosis, the patient with the most CTs, one
    who died, then the others taken in turn from each diagnosis (by pseudonym, which the
    library's secret makes an arbitrary but stable order)."""
    pool = sorted((p for p in patients if p.source == DEMO_SOURCE), key=lambda p: p.pseudonym)
    chosen: list[str] = []

    def take(candidates: list[PatientSummary]) -> None:
        left = [p for p in candidates if p.pseudonym not in chosen]
        if left and len(chosen) < n:
            chosen.append(left[0].pseudonym)

    for label in XRAY_LABELS:
        take([p for p in pool if p.label == label])
    take(sorted((p for p in pool if p.n_ct >= 2), key=lambda p: -p.n_ct))
    take([p for p in pool if p.outcome == "died"])
    by_label = [[p for p in pool if p.label == label] for label in XRAY_LABELS]
    by_label.append([p for p in pool if p.label not in XRAY_LABELS])
    while len(chosen) < min(n, len(pool)):  # each round takes one more patient at least
        for group in by_label:
            take(group)
    return chosen


def add_demo_meeting(library: CaseLibrary) -> int:
    """Make the demo meeting (:data:`DEMO_MEETING_TITLE`, dated today) of chosen demo patients
    (:func:`choose_demo_patients`) with everything hideable hidden until revealed (the notes
    too: the demo's notes name the findings that give the diagnosis away); return its id.

    A library that has a meeting of that title keeps it: a resumed build does not make a
    second, and only completes one whose making was interrupted. Recorded in the audit log
    under :data:`DEMO_BUILD_USER`.
    """
    library = library.acting(DEMO_BUILD_USER)
    existing = [m for m in library.meetings() if m.title == DEMO_MEETING_TITLE]
    if existing and library.setting(MEETING_SETTING) != "started":
        return existing[0].id
    library.set_setting(MEETING_SETTING, "started")
    if existing:
        meeting = existing[0]
    else:
        meeting = library.meeting(library.create_meeting(DEMO_MEETING_TITLE, datetime.date.today().isoformat()))
    present = {c.pseudonym for c in meeting.cases if c.study_id is None}
    for pseudonym in choose_demo_patients(library.patients()):
        if pseudonym not in present:
            library.add_to_meeting(meeting.id, pseudonym, hidden=HIDEABLE)
    library.set_setting(MEETING_SETTING, "complete")
    return meeting.id


def needs_demo_meeting(library: CaseLibrary) -> bool:
    """True when a library of demo patients has never had its demo meeting made, or its making
    was interrupted: a library built before meetings existed gets one the next time it is opened.
    A demo meeting someone deleted stays deleted (its making was recorded as complete)."""
    if library.setting(MEETING_SETTING) == "complete":
        return False
    return any(p.source == DEMO_SOURCE for p in library.patients())


def needs_demo_build(path: str | Path | None = None) -> bool:
    """True when there is no library folder at ``path`` yet, it holds no patient, or a demo build
    into it started and did not finish (the app was stopped during its first launch).

    A PostgreSQL library is a department's: the app never fills it with the demo cohort on
    its own (``python -m core library demo --library postgresql://...`` does, when asked); only
    a demo build into it that was interrupted is resumed.
    """
    where = default_library_location() if path is None else path
    if is_database_url(where):
        try:  # through the process's pooled connections: this runs on every page
            return open_library(where, create=False).setting(BUILD_SETTING) == "started"
        except MissingLibraryError:
            return False
    if not library_exists(where):
        return True
    library = open_library(where)
    return library.setting(BUILD_SETTING) == "started" or library.counts().patients == 0
