"""What every page's case report shares: the image size, the pseudonym of an upload, and the
identifier rows."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

#: Longest side, in pixels, of an image in a report: enough to read a chest film on a screen in
#: a meeting, and it keeps a report of one radiograph near 1 MB.
REPORT_IMAGE_MAX_SIDE = 1024


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
