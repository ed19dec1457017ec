"""What the console shows of other libraries' logging (``core.console``), apart from the DICOM
corpus run through the CLI (tests/core/test_dicom_corpus.py)."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from core.console import ConsoleFormatter, configure_console


def _record_with_traceback(logger: str) -> logging.LogRecord:
    try:
        raise RuntimeError("decoder failed")
    except RuntimeError:
        return logging.getLogger(logger).makeRecord(logger, logging.ERROR, "f.py", 1, "it failed", (), sys.exc_info())


@pytest.mark.parametrize("logger", ["PIL.TiffImagePlugin", "torch", "streamlit.runtime"])
def test_another_librarys_record_is_one_line_and_is_left_whole_for_other_handlers(logger: str) -> None:
    record = _record_with_traceback(logger)
    assert ConsoleFormatter(tracebacks=False).format(record) == f"ERROR {logger}: it failed"
    assert record.exc_info is not None  # a log file or a debugging handler still gets the stack
    assert "Traceback" in ConsoleFormatter(tracebacks=True).format(record)


def test_the_projects_own_records_keep_their_stack() -> None:
    # The page frame logs an unexpected error's stack (without its message) for whoever runs the server.
    assert "Traceback" in ConsoleFormatter(tracebacks=False).format(_record_with_traceback("ui.frame"))


@pytest.mark.parametrize("debug", [False, True])
def test_the_dicom_librarys_records_reach_a_console_set_up_by_someone_else_only_when_debugging(debug: bool) -> None:
    # A server or a test runner that set up logging keeps its handlers; pydicom's records (from its
    # child loggers, where the decoders log) reach them only when debugging.
    root, pydicom_logger = logging.getLogger(), logging.getLogger("pydicom")
    saved = root.handlers, root.level, pydicom_logger.propagate, pydicom_logger.handlers
    stream = io.StringIO()
    root.handlers = [logging.StreamHandler(stream)]
    try:
        configure_console(debug=debug)
        assert root.handlers[0].stream is stream and len(root.handlers) == 1
        logging.getLogger("pydicom.pixels.decoders.base").error("decoder failed", exc_info=RuntimeError("x"))
    finally:
        root.handlers, pydicom_logger.propagate, pydicom_logger.handlers = saved[0], saved[2], saved[3]
        root.setLevel(saved[1])
    assert ("decoder failed" in stream.getvalue()) is debug
