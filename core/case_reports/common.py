"""What every page's case report shares: the image size, the pseudonym of an upload, and the
identifier rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from core.explain.overlay import DISPLAY_MAX_SIDE

#: Longest side, in pixels, of an image in a report: the page's display size (enough to read a
#: chest film on a screen in a meeting, and a report of one radiograph stays near 1 MB). One
#: constant, since the page hands the report the attribution map it computed at that size.
REPORT_IMAGE_MAX_SIDE = DISPLAY_MAX_SIDE


def upload_pseudonym(data: bytes) -> str:
    """``upload-`` and the first 8 hex digits of the SHA-256 of the uploaded bytes."""
    return f"upload-{hashlib.sha256(data).hexdigest()[:8]}"


def identifier_rows(items: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``(field, value)`` pairs, one row per field, its distinct values joined by ", " in order
    of first appearance (a CT series gives one SOP Instance UID per slice)."""
    values: dict[str, list[str]] = {}
    for field, value in items:
        seen = values.setdefault(field, [])
        if value not in seen:
            seen.append(value)
    return tuple((field, ", ".join(vs)) for field, vs in values.items())
