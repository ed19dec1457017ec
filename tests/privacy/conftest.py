"""Fixtures of the PHI marker tests: the marked data, the log records at DEBUG, what pages serve,
and a small case library holding the marked cases (built once per test process)."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.library.demo import build_demo_library
from core.library.importers import import_source
from core.library.store import open_library
from tests.privacy.checks import Served, write_inputs
from tests.privacy.markers import MarkedData, marked_data, rolled, with_values

#: Patients of the Kaplan-Meier cohort built from the marked X-ray (five under 60, five over).
KM_PATIENTS = 10
#: Demo patients drawn into the library beside the marked ones: ordinary cases for the searches.
DEMO_PATIENTS = 2


@pytest.fixture(scope="session")
def marked() -> MarkedData:
    return marked_data()


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """Every log record of every logger at DEBUG and up (pydicom's too), while the test runs."""
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    handler = Keep(logging.DEBUG)
    root = logging.getLogger()
    saved = root.level, {name: (lg.level, lg.propagate) for name, lg in _loggers()}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for _, lg in _loggers():
        lg.setLevel(logging.NOTSET)
        lg.propagate = True
    try:
        yield got
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, (level, propagate) in saved[1].items():
            logging.getLogger(name).setLevel(level)
            logging.getLogger(name).propagate = propagate


def _loggers() -> list[tuple[str, logging.Logger]]:
    return [(n, lg) for n, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Served]:
    """Every file given as bytes to Streamlit's media file manager while the test runs: the
    images a page shows and the downloads whose data it passes at once."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    got: list[Served] = []
    original = MediaFileManager.add

    def add(self, path_or_data, mimetype, coordinates, file_name=None, **kwargs):  # noqa: ANN001, ANN202
        if isinstance(path_or_data, bytes):
            got.append(Served(path_or_data, mimetype, file_name))
        return original(self, path_or_data, mimetype, coordinates, file_name=file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add", add)
    return got


@dataclass(frozen=True)
class MarkedLibrary:
    """A case library of a few demo patients and the marked cases, imported from a CSV manifest:
    the marked patient (the marked X-ray on days 1 and 6, the marked CT series on days 2 and 5;
    died on day 9) and a Kaplan-Meier cohort of COVID-19 patients, each with the marked X-ray
    (moved sideways, so that each is an image of its own) and a patient id holding a marker."""

    root: Path
    pseudonym: str  # the marked patient's
    inputs: Path  # the files imported, named after the patient (and the manifest)
    xray_files: tuple[tuple[str, bytes], ...]  # the marked patient's two X-rays


@pytest.fixture(scope="session")
def marked_library(marked: MarkedData, tmp_path_factory: pytest.TempPathFactory) -> MarkedLibrary:
    root = tmp_path_factory.mktemp("marked-library") / "library"
    inputs = tmp_path_factory.mktemp("marked-inputs")
    xray, ct = write_inputs(marked, inputs)
    x_name, x_id = marked.patient_name[0], marked.patient_id[0]
    second = inputs / f"{x_name}_{x_id}_day6.dcm"
    second.write_bytes(rolled(marked.xray, 9))
    ct2 = inputs / f"{marked.ct_folder_name}_day5"
    ct2.mkdir()
    for name, data in marked.ct_files:
        (ct2 / name).write_bytes(with_values(data, AcquisitionNumber="2"))
    header = ["path", "label", "patient_id", "offset_admission_days", "modality", "view", "age", "sex"]
    header += ["outcome", "length_of_stay", "note"]
    rows = [
        [xray.name, "COVID-19", x_id, "1", "X-ray", "PA", "47", "F", "died", "9", "admitted"],
        [ct.name, "COVID-19", x_id, "2", "CT", "", "47", "F", "died", "9", ""],
        [ct2.name, "COVID-19", x_id, "5", "CT", "", "47", "F", "died", "9", ""],
        [second.name, "COVID-19", x_id, "6", "X-ray", "PA", "47", "F", "died", "9", "worse than before"],
    ]
    for i in range(KM_PATIENTS):
        path = inputs / f"{x_name}_{x_id}_{i}.dcm"
        path.write_bytes(rolled(marked.xray, 17 + 5 * i))
        old = i % 2 == 1
        outcome = "died" if i % 3 == 0 else "discharged"
        stay = str(6 + i)
        rows.append(
            [path.name, "COVID-19", f"{x_id}-{i}", "1", "X-ray", "PA", "72" if old else "45", "M", outcome, stay, ""]
        )
    manifest = inputs / "manifest.csv"
    with manifest.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    build_demo_library(root, DEMO_PATIENTS, seed=0, workers=1)
    library = open_library(root)
    report = import_source(library, "csv", manifest, workers=1)
    assert report.added_studies == len(rows), report.problems
    pseudonym = library.pseudonym("csv", x_id)
    assert library.patient(pseudonym).summary.n_ct == 2
    return MarkedLibrary(root, pseudonym, inputs, ((xray.name, marked.xray), (second.name, second.read_bytes())))


@pytest.fixture
def in_marked_library(marked_library: MarkedLibrary, monkeypatch: pytest.MonkeyPatch) -> MarkedLibrary:
    """The app pointed at the library of the marked cases."""
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(marked_library.root))
    return marked_library
