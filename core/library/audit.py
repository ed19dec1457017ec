"""The case library's audit log: who did what to which case, and when.

Every change a user makes to the library is recorded in the same transaction as the change
itself: a case added (by an import, a reviewed upload or the demo build), a patient removed,
and every change to a case-review meeting (a meeting created, a case added, moved, removed,
hidden or revealed, a read recorded; the entry names the meeting, the case and the reader,
never a meeting's title or a read's comment, which are free text). An entry says who (the signed-in user, or the account that ran the command line),
when (UTC), which action and which pseudonym and study; never an original identifier, a file
name or a path, which may carry a patient's name.

The log is append-only: the database refuses to change or delete an entry (SQLite triggers),
so it records the library's history even for someone who opens the file with another tool
and tries to edit it through SQL; only replacing the whole file defeats it, which is why the
README says to keep backups of the library where its users cannot write.
"""

from __future__ import annotations

import datetime
import getpass
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTIONS", "AuditEntry", "cli_user", "clean_user", "utc_now"]

#: What an entry can record.
ACTIONS: tuple[str, ...] = (
    "add-case",
    "delete-patient",
    "create-meeting",
    "add-to-meeting",
    "move-in-meeting",
    "remove-from-meeting",
    "set-hidden",
    "reveal-case",
    "hide-case-again",
    "record-read",
)
#: Who did it when nobody is known (a script calling core without saying who it is).
UNKNOWN_USER = "unknown"
_MAX_USER_CHARS = 120
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class AuditEntry:
    """One line of the audit log."""

    id: int
    at: str  # ISO 8601, UTC, to the second: "2026-12-06T09:41:07Z"
    user: str
    action: str
    pseudonym: str | None
    study_id: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at,
            "user": self.user,
            "action": self.action,
            "pseudonym": self.pseudonym,
            "study_id": self.study_id,
            "detail": self.detail,
        }


def clean_user(name: object) -> str:
    """A user name as the log stores it: one line of at most 120 characters, ``unknown`` when empty."""
    text = _CONTROL.sub(" ", str(name or "")).strip()
    return text[:_MAX_USER_CHARS] or UNKNOWN_USER


def cli_user() -> str:
    """Who runs the command line: ``cli:`` and the operating system's account name."""
    try:
        account = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's anonymous user)
        account = UNKNOWN_USER
    return clean_user(f"cli:{account}")


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
