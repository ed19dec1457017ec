"""Case-review meetings: what the page and the command line use to prepare, present and record.

The records (:class:`Meeting`, :class:`MeetingCase`, :class:`Read`) and their checks live in
:mod:`core.library.meeting_records`, because the case library stores and returns them and the
library layer sits below this one; this module re-exports them, so callers above the library
import meetings from here, and adds what a meeting needs beyond storage: the model version a
read is compared with, the meeting day, the presenter's progress, and a meeting's reads by case.

Storage is the library's (:meth:`core.library.store.CaseLibrary.create_meeting` and the methods
after it): every change is one transaction with its audit entry.
"""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from core.errors import InvalidInputError, MissingModelError
from core.library.meeting_records import (
    CONFIDENCES,
    CT_READS,
    HIDEABLE,
    Meeting,
    MeetingCase,
    Read,
    check_date,
    check_hidden,
    read_choices,
)
from core.library.records import Study
from core.models.manifest import ModelCard, read_manifest

__all__ = [
    "CONFIDENCES",
    "CT_READS",
    "HIDEABLE",
    "Meeting",
    "MeetingCase",
    "Read",
    "case_at",
    "check_date",
    "check_hidden",
    "model_card",
    "progress_text",
    "read_choices",
    "reads_by_case",
    "study_day",
    "today",
]


def today() -> str:
    """Today's date, YYYY-MM-DD, on this computer's calendar (a new meeting's default day)."""
    return datetime.date.today().isoformat()


def model_card(weights_dir: str | Path, model_id: str) -> ModelCard:
    """The manifest's card of the model a read is compared with (its ``version`` is stored
    with the read); a plain error naming the registered models when it is not there."""
    cards = {c.id: c for c in read_manifest(weights_dir)}
    if model_id not in cards:
        known = ", ".join(sorted(cards)) or "none"
        raise MissingModelError(
            f"No model '{model_id}' in {Path(weights_dir) / 'manifest.json'} (registered: {known})."
        )
    return cards[model_id]


def case_at(meeting: Meeting, position: int) -> MeetingCase:
    """The case shown at ``position`` (1 = first) of a meeting."""
    if not meeting.cases:
        raise InvalidInputError(f"Meeting {meeting.id} has no cases yet.")
    if isinstance(position, bool) or not 1 <= int(position) <= len(meeting.cases):
        raise InvalidInputError(f"Meeting {meeting.id} has {len(meeting.cases)} cases: no case {position}.")
    return meeting.cases[int(position) - 1]


def progress_text(meeting: Meeting, case: MeetingCase) -> str:
    """Where the presenter is: "case 3 of 12"."""
    return f"case {case.position} of {len(meeting.cases)}"


def reads_by_case(reads: Iterable[Read]) -> dict[int, list[Read]]:
    """A meeting's reads grouped by meeting case id, each case's in the order recorded."""
    out: dict[int, list[Read]] = defaultdict(list)
    for r in reads:
        out[r.meeting_case_id].append(r)
    return dict(out)


def study_day(study: Study) -> str:
    """When a study was taken in days since admission (else since symptom onset): the only
    time a meeting shows, never a calendar date."""
    if study.offset_admission_days is not None:
        return f"day {study.offset_admission_days:g} since admission"
    if study.offset_onset_days is not None:
        return f"day {study.offset_onset_days:g} since symptom onset"
    return "day unknown"
