"""Every real DICOM file that pydicom and pydicom-data ship, through ``predict-xray`` and
``predict-ct`` as a user runs them: structured reports, RT plans, waveforms, DICOMDIR members,
truncated files and unusual codecs.

Each file is read (a result on stdout) or refused with one ``error:`` line; nothing else reaches
the console: no traceback, no log record or warning of the DICOM library (pydicom logs a full
traceback for each pixel decoder that fails on ``JPEG-lossy.dcm``, a 12-bit JPEG whose scan
header is invalid, and on ``JPEG2000-embedded-sequence-delimiter.dcm``, a damaged JPEG 2000).

The files are listed from the two packages' folders: ``get_testdata_files`` would also try to
download pydicom's online test files.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pydicom.data.data_manager import DATA_ROOT, external_data_sources

from core.cli.main import main
from core.console import QUIET_LIBRARIES
from tests.helpers import register_tiny_model

#: pydicom's test folder also holds text dumps, JSON, a gzip and an ICC profile: not DICOM.
_NOT_DICOM_SUFFIXES = frozenset({".py", ".dump", ".txt", ".json", ".gz", ".icc"})


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix not in _NOT_DICOM_SUFFIXES)


PYDICOM_FILES = _files(Path(DATA_ROOT) / "test_files")
PYDICOM_DATA_FILES = _files(Path(external_data_sources()["pydicom-data"].data_path))
CORPUS = PYDICOM_FILES + PYDICOM_DATA_FILES


@contextmanager
def fresh_console() -> Iterator[list[warnings.WarningMessage]]:
    """The console of a fresh process, inside a test's body (pytest adds its log handlers to the
    root logger after the fixtures are set up): no logging set up, so the CLI installs its stderr
    handler, which capsys captures; every warning shown (the list: those that would be printed).
    Logging is restored afterwards."""
    loggers = [logging.getLogger(), *map(logging.getLogger, QUIET_LIBRARIES)]
    saved = [(lg, lg.level, lg.propagate, lg.handlers) for lg in loggers]
    loggers[0].handlers = []
    try:
        with warnings.catch_warnings(record=True) as shown:
            warnings.simplefilter("always")
            yield shown
    finally:
        for lg, level, propagate, handlers in saved:
            lg.handlers, lg.propagate = handlers, propagate
            lg.setLevel(level)


def test_the_corpus_is_both_packages() -> None:
    # pydicom 3.0.2: 168 files; pydicom-data 1.0.0: 68. A missing package must not pass as an empty corpus.
    assert len(PYDICOM_FILES) >= 150 and len(PYDICOM_DATA_FILES) >= 60


def test_predict_xray_reads_or_refuses_each_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The smallest X-ray model: loaded once for the whole corpus, as a user passing many files would.
    register_tiny_model(tmp_path, "cxr-custom")
    files = [str(p) for p in CORPUS]
    with fresh_console() as shown:
        status = main(["predict-xray", *files, "--model", "cxr-custom", "--weights", str(tmp_path), "--json"])
    out, err = capsys.readouterr()

    records = [json.loads(line) for line in out.splitlines()]
    read = {r["file"] for r in records}
    assert len(read) == len(records)
    for r in records:
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4), r["file"]
    refused = [f for f in files if f not in read]
    lines = err.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    # One error line per refused file, in order, naming it; our own warnings name a read file.
    assert [line.split(": ", 2)[1] for line in errors] == refused
    others = [line for line in lines if not line.startswith("error: ")]
    assert others[-1] == f"{len(refused)} of {len(files)} file(s) could not be read"
    assert all(line.startswith("warning: ") and line.split(": ", 2)[1] in read for line in others[:-1]), others
    assert "Traceback" not in err
    assert status == 1
    assert [str(w.message) for w in shown] == []
    # 156 of the 236 are read with pydicom 3.0.2 and pydicom-data 1.0.0: a reader that refuses more has regressed.
    assert len(read) >= 156
    assert {Path(f).name for f in refused} >= {"JPEG-lossy.dcm", "JPEG2000-embedded-sequence-delimiter.dcm"}


def test_predict_ct_reads_or_refuses_each_file_in_one_line(
    ct_weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    problems, read = [], []
    with fresh_console() as shown:
        for path in CORPUS:
            status = main(["predict-ct", str(path), "--weights", str(ct_weights), "--json"])
            out, err = capsys.readouterr()
            if status == 0 and err == "" and json.loads(out)["shape_zyx"]:
                read.append(path.name)
            elif status != 0 and out == "" and err.count("\n") == 1 and err.startswith("error: "):
                continue
            else:
                problems.append(f"{path.name}: exit {status}, stdout {out[:200]!r}, stderr {err[:400]!r}")
    assert problems == []
    assert [str(w.message) for w in shown] == []
    # A single file is a volume only when it holds many frames (an enhanced CT).
    assert "eCT_Supplemental.dcm" in read


def test_debug_shows_the_dicom_library_its_records_and_their_tracebacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    register_tiny_model(tmp_path, "cxr-custom")
    (lossy,) = [str(p) for p in PYDICOM_FILES if p.name == "JPEG-lossy.dcm"]
    with fresh_console():
        status = main(["--debug", "predict-xray", lossy, "--model", "cxr-custom", "--weights", str(tmp_path)])
    err = capsys.readouterr().err
    assert status == 1
    assert "ERROR pydicom.pixels.decoders.base:" in err and "Traceback" in err
