"""Fuzzing the case library's table importers (:func:`core.library.importers.import_cohen` and
:func:`~core.library.importers.import_csv`), which ``library import`` and the library page reach.

Inputs: a ``metadata.csv`` (Cohen layout) or a CSV manifest whose header holds the required
columns, known optional ones and random names, in random order, sometimes one missing; 0 to 6
rows of values typical of each column mixed with random text (quotes, commas, line breaks,
NUL, non-ASCII), a field of 200 000 characters (over Python's csv field limit) and rows of the
wrong length; written in UTF-8, UTF-8 with a BOM, UTF-16, Latin-1 or cp1252. Rows point at one
real 8 x 8 PNG, at a missing file, at a folder, or at a path that climbs out.

Property: an import gives an :class:`ImportReport` whose problems are each one plain line, or
raises a :class:`DashboardError` whose message is one plain line (:mod:`tests.fuzz.plain`);
nothing else. Each example imports into the same temporary library (created once per test).

Bounds: every table is under 256 KiB (the one long field included); each example must finish
within the profile's deadline (5 s, :mod:`tests.fuzz.conftest`); the only image is 8 x 8 px,
so memory stays at a few MB beyond the tables.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from core.errors import InvalidInputError
from core.library.importers import import_cohen, import_csv
from core.library.records import ImportReport
from core.library.store import CaseLibrary, open_library
from tests.fuzz.plain import assert_plain, result_or_plain_error

# UTF-8 (what the importers read) most often; the others to be refused, or read by their BOM.
_ENCODINGS = ("utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252")
_HUGE = "x" * 200_000
_ODD_TEXT = st.text(max_size=24)
_IMAGES = ("a.png", "missing.png", "sub", "../a.png", "", " ", "/etc/passwd")

# Values typical of each column, mixed with random text.
_COLUMN_VALUES: dict[str, st.SearchStrategy[str]] = {
    "patientid": st.sampled_from(["1", "2", "p 3", ""]),
    "patient_id": st.sampled_from(["1", "2", "p 3", ""]),
    "finding": st.sampled_from(["COVID-19", "Pneumonia/Viral/COVID-19", "No Finding", "todo", ""]),
    "label": st.sampled_from(["COVID-19", "Normal", "viral pneumonia", "?", ""]),
    "filename": st.sampled_from(_IMAGES),
    "path": st.sampled_from(tuple(f"images/{name}" for name in _IMAGES) + ("images", "")),
    "folder": st.sampled_from(["images", "", "..", "nowhere"]),
    "modality": st.sampled_from(["X-ray", "CT", "ct", "MRI", ""]),
    "view": st.sampled_from(["PA", "AP", "L", "lateral", ""]),
    "offset": st.sampled_from(["3", "-2", "1e309", "nan", "three", ""]),
    "offset_days": st.sampled_from(["3", "-2", "inf", "x", ""]),
    "survival": st.sampled_from(["Y", "N", "yes", "maybe", ""]),
    "age": st.sampled_from(["61", "-5", "200", "1e400", "sixty", ""]),
    "sex": st.sampled_from(["M", "F", "female", "X", ""]),
    "outcome": st.sampled_from(["died", "discharged", "dead", "gone", ""]),
    "went_icu": st.sampled_from(["Y", "N", "2", ""]),
    "intubated": st.sampled_from(["Y", "N", "?", ""]),
    "length_of_stay": st.sampled_from(["12", "-1", "x", ""]),
    "clinical_notes": st.sampled_from(["Increased opacities.", "line\nbreak", ""]),
    "note": st.sampled_from(["fine", 'a "quoted", note', ""]),
    "ggo": st.sampled_from(["1", "0", "-1", "2", "yes", ""]),
}
_COHEN_REQUIRED = ("patientid", "finding", "filename")
_CSV_REQUIRED = ("path", "label", "patient_id")


def _value(column: str) -> st.SearchStrategy[str]:
    typical = _COLUMN_VALUES.get(column, _ODD_TEXT)
    return st.one_of(typical, typical, _ODD_TEXT)


@st.composite
def tables(draw: st.DrawFn, required: tuple[str, ...]) -> bytes:
    """A CSV table (bytes) with the ``required`` columns (sometimes one missing) and others."""
    columns = list(required)
    if draw(st.integers(0, 7)) == 0:
        columns.remove(draw(st.sampled_from(required)))
    columns += draw(st.lists(st.sampled_from(sorted(_COLUMN_VALUES)), max_size=5))
    columns += draw(st.lists(_ODD_TEXT, max_size=2))
    columns = draw(st.permutations(columns))
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        row = [draw(_value(c)) for c in columns]
        if draw(st.integers(0, 7)) == 0:  # a row of the wrong length
            row = row[: draw(st.integers(0, len(row)))] if draw(st.booleans()) else [*row, "extra"]
        lines.append(row)
    if lines and draw(st.integers(0, 7)) == 0:  # one huge field
        row = draw(st.sampled_from(lines))
        if row:
            row[draw(st.integers(0, len(row) - 1))] = _HUGE
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    writer.writerows(lines)
    text = buffer.getvalue()
    if draw(st.integers(0, 5)) == 0:  # a raw line: unbalanced quotes, NUL, odd separators
        text += draw(st.sampled_from(['"unterminated,1,2\n', "a\x00b,1\n", "1;2;3\n", "\n\n"]))
    return text.encode(draw(st.sampled_from(_ENCODINGS)), errors="replace")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> CaseLibrary:
    return open_library(tmp_path_factory.mktemp("fuzz-library") / "lib")


def _dataset(table: bytes, table_name: str) -> tuple[tempfile.TemporaryDirectory[str], Path]:
    """A folder with ``table``, ``images/a.png`` (8 x 8) and an empty ``images/sub`` folder."""
    folder = tempfile.TemporaryDirectory()
    root = Path(folder.name)
    (root / "images" / "sub").mkdir(parents=True)
    pixels = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    Image.fromarray(pixels).save(root / "images" / "a.png")
    (root / table_name).write_bytes(table)
    return folder, root / table_name


def check(import_: Callable[[], ImportReport]) -> None:
    outcome = result_or_plain_error(import_)
    if isinstance(outcome, ImportReport):
        for problem in outcome.problems:
            assert_plain(problem)
        assert outcome.added_studies >= 0 and outcome.added_images <= outcome.added_studies


@given(tables(_COHEN_REQUIRED))
# Found by this test: a file name with a line break made a problem line of two lines, and a
# Latin-1 table was refused with Python's codec message.
@example(b'patientid,finding,filename\n1,COVID-19,"a\nb.png"\n')
@example("patientid,finding,filename,clinical_notes\n1,COVID-19,a.png,fi\u00e8vre\n".encode("latin-1"))
def test_cohen_metadata_tables_import_or_refuse_plainly(library: CaseLibrary, table: bytes) -> None:
    folder, path = _dataset(table, "metadata.csv")
    with folder:
        check(lambda: import_cohen(library, path.parent, workers=1))


@given(tables(_CSV_REQUIRED))
@example(b'path,label,patient_id\n"images/a\nb.png",COVID-19,1\n')
@example(b'path,label,patient_id\nimages/a.png,"0\n",1\n')  # the long run: a label with a line break
def test_csv_manifests_import_or_refuse_plainly(library: CaseLibrary, table: bytes) -> None:
    folder, path = _dataset(table, "manifest.csv")
    with folder:
        check(lambda: import_csv(library, path, workers=1))


def test_a_utf16_table_imports_and_a_latin1_one_is_refused_in_plain_words(tmp_path: Path) -> None:
    library = open_library(tmp_path / "lib")
    text = "path,label,patient_id,note\nimages/a.png,COVID-19,utf16-1,fi\u00e8vre\n"
    folder, path = _dataset(text.encode("utf-16"), "manifest.csv")
    with folder:
        report = import_csv(library, path, workers=1)
        assert report.problems == [] and report.added_studies == 1
        path.write_bytes(text.encode("latin-1"))
        with pytest.raises(InvalidInputError, match=r"^manifest.csv is not UTF-8 text \(byte 60 is not valid UTF-8\)"):
            import_csv(library, path, workers=1)
