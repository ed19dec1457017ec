"""The property every fuzz test checks: a reader returns, or raises one of the project's own
errors with a message a clinician can read."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from hypothesis import event

from core.errors import DashboardError

T = TypeVar("T")

# Text that only a Python repr, a traceback or an exception's own wording would put in a message.
_NOT_PLAIN = ("Traceback", 'File "', " object at 0x", "<class ", "<module", "Error:", "b'\\x", 'b"\\x', "codec can't")


def assert_plain(message: str) -> None:
    """One non-empty line, without traceback or repr text."""
    assert message.strip(), "an empty message"
    assert "\n" not in message and "\r" not in message, f"a message on several lines: {message!r}"
    for text in _NOT_PLAIN:
        assert text not in message, f"{text!r} in the message {message!r}"


def result_or_plain_error(read: Callable[[], T]) -> T | DashboardError:
    """Call ``read``; give back its result, or the :class:`DashboardError` it raised after checking
    its message. Any other exception propagates and fails the test. The outcome is counted in
    Hypothesis' statistics (``--hypothesis-show-statistics``)."""
    try:
        result = read()
    except DashboardError as e:
        assert_plain(str(e))
        event(f"refused: {type(e).__name__}")
        return e
    event("read")
    return result
