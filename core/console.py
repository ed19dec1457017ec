"""What the console of the command line and of the app's server shows of the logging and the
warnings of other libraries, above all those of the readers' DICOM library.

pydicom logs the full traceback of every pixel decoder that fails on a file, even when the next
one succeeds (``pydicom.pixels.decoders.base`` calls ``LOGGER.exception``), and logs and warns
about what it finds odd in a file, often quoting the file's own values (an invalid UID, a
name). The readers already turn each failure into one error in plain words, so these records
only repeat it in a developer's words, with a stack, and perhaps with patient data in it.

:func:`configure_console` is called by ``python -m core`` (its ``--debug`` shows everything) and
by the app's page frame; nothing is configured at import.
"""

from __future__ import annotations

import logging
import re
import warnings

#: Libraries whose log records and Python warnings reach the console only when debugging.
QUIET_LIBRARIES: tuple[str, ...] = ("pydicom",)

#: Top-level names of this project's loggers: their records keep their tracebacks (the page
#: frame logs an unexpected error's stack without its message, on purpose).
OWN_LOGGERS: frozenset[str] = frozenset({"core", "ui", "pages", "__main__"})

#: How a record looks on the console.
CONSOLE_FORMAT = "%(levelname)s %(name)s: %(message)s"


class ConsoleFormatter(logging.Formatter):
    """:data:`CONSOLE_FORMAT`; another library's record loses its traceback and stack unless
    ``tracebacks`` (the record itself is left as it is, for any other handler)."""

    def __init__(self, tracebacks: bool) -> None:
        super().__init__(CONSOLE_FORMAT)
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        own = record.name.split(".", 1)[0] in OWN_LOGGERS
        if self.tracebacks or own or not (record.exc_info or record.exc_text or record.stack_info):
            return super().format(record)
        plain = logging.makeLogRecord(record.__dict__)
        plain.exc_info, plain.exc_text, plain.stack_info = None, None, None
        return super().format(plain)


def configure_console(debug: bool = False) -> None:
    """Log to stderr with :class:`ConsoleFormatter`, DEBUG and up when ``debug``, else WARNING
    and up, unless the process already logs somewhere (a test runner's or an embedding
    program's handlers are left alone). Unless ``debug``, the records and the Python warnings of
    :data:`QUIET_LIBRARIES` stay off the console, whoever configured it.

    Calling it again is harmless: the app's frame calls it on every run of a page.
    """
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(ConsoleFormatter(tracebacks=debug))
        root.addHandler(handler)
        root.setLevel(logging.DEBUG if debug else logging.WARNING)
    for name in QUIET_LIBRARIES:
        library = logging.getLogger(name)
        # Not propagating is what keeps the records of the library's child loggers (where the
        # decoders log) away too: a filter on this logger would see only its own records. The
        # null handler stops Python's last-resort handler printing them when nothing else would.
        library.propagate = debug
        if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
            library.addHandler(logging.NullHandler())
        module = rf"{re.escape(name)}(\.|$)"
        # Added once: the filter list is process-wide, and the app's pages run in threads.
        if not debug and not any(f[0] == "ignore" and f[3] and f[3].pattern == module for f in warnings.filters):
            warnings.filterwarnings("ignore", module=module)
