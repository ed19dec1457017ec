"""Keeping patient identifiers and credentials out of the logs of the network libraries.

pynetdicom logs every identifier it sends and receives at INFO (``(0010,0010) PN [DOE^JANE]``),
dicomweb-client logs each request's URL at DEBUG, and urllib3 logs each URL (with the QIDO-RS
query string: a patient's id or name) at DEBUG. None of it may reach a log file or the console,
whoever configured logging and at whatever level, so :func:`quiet_network_logs` (called before
each request, never at import) stops pynetdicom's and dicomweb-client's loggers propagating, and
:func:`dicomweb_requests` drops urllib3's records of the requests this thread makes while it
lasts (the rest of the application's HTTP logging stays as it was).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Loggers (with their children) whose records never leave them: they quote identifiers
#: (highdicom logs the source instance's UID as it copies a study's patient module).
SILENCED_LOGGERS: tuple[str, ...] = ("pynetdicom", "dicomweb_client", "highdicom")
#: The logger of urllib3 that writes each request's URL.
URLLIB3_REQUESTS = "urllib3.connectionpool"

_state = threading.local()
_lock = threading.Lock()


class _DropDuringRequests(logging.Filter):
    """Drops the records logged by a thread inside :func:`dicomweb_requests`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_state, "depth", 0)


def quiet_network_logs() -> None:
    """Silence the loggers that quote identifiers (idempotent; safe from any thread)."""
    with _lock:
        for name in SILENCED_LOGGERS:
            library = logging.getLogger(name)
            library.propagate = False
            if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
                # Without a handler, Python's last-resort handler would print WARNING and up.
                library.addHandler(logging.NullHandler())
        urllib3 = logging.getLogger(URLLIB3_REQUESTS)
        if not any(isinstance(f, _DropDuringRequests) for f in urllib3.filters):
            urllib3.addFilter(_DropDuringRequests())


@contextmanager
def dicomweb_requests() -> Iterator[None]:
    """While it lasts, urllib3 logs nothing of this thread's requests (their URLs hold the query)."""
    quiet_network_logs()
    _state.depth = getattr(_state, "depth", 0) + 1
    try:
        yield
    finally:
        _state.depth -= 1
