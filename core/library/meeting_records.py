"""Typed records of case-review meetings as the case library stores them, and their checks.

A meeting is a list of cases (a patient, or one study of a patient) that a room reads
together; each case hides some of what is known about it (the diagnosis, the outcome, the
notes, the model's outputs) until the presenter reveals it, and each reader records a read of
it. The records live here, in the library layer, because the store returns them;
:mod:`core.review.meetings` builds the meeting workflow on them (and re-exports them), and the
library never imports :mod:`core.review`.

Nothing here identifies a patient: a case is known by its pseudonym and study id. Readers'
names are staff names, and a read's comment is free text typed by a reader (the page asks
them not to type a patient's name); the audit log never copies a comment.

The ``check_*`` functions turn what a user typed into what the store keeps, or raise
:class:`~core.errors.InvalidInputError` with a one-line message in plain words.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from core.errors import InvalidInputError
from core.labels import XRAY_LABELS, canonical_label

MAX_MODEL_LABEL_CHARS = 60

#: What a meeting case may hide until it is revealed, in the order pages list them.
HIDEABLE: tuple[str, ...] = ("diagnosis", "outcome", "notes", "model outputs")
#: The reads of a CT case (COVID3D's question); an X-ray case is read as one of ``XRAY_LABELS``.
CT_READS: tuple[str, ...] = ("COVID", "not COVID")
#: A read's confidence, from 1 (a guess) to 5 (certain).
CONFIDENCES: tuple[int, ...] = (1, 2, 3, 4, 5)

MAX_TITLE_CHARS = 200
MAX_READER_CHARS = 120
MAX_COMMENT_CHARS = 4000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True)
class MeetingCase:
    """One case of a meeting, at ``position`` (1 = first shown).

    ``study_id`` is None when the whole patient is presented. ``hidden`` is what the case keeps
    out of sight until it is revealed (a subset of :data:`HIDEABLE`); ``revealed`` says whether
    the presenter has revealed it.
    """

    id: int
    meeting_id: int
    position: int
    pseudonym: str
    study_id: int | None
    hidden: frozenset[str]
    revealed: bool

    @property
    def hidden_now(self) -> frozenset[str]:
        """What is out of sight at this moment: the hidden items until the case is revealed."""
        return frozenset() if self.revealed else self.hidden

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "meeting_id": self.meeting_id,
            "position": self.position,
            "pseudonym": self.pseudonym,
            "study_id": self.study_id,
            "hidden": [h for h in HIDEABLE if h in self.hidden],
            "revealed": self.revealed,
        }


@dataclass(frozen=True)
class Meeting:
    """A case-review meeting: its title, its own date (ISO, never a patient's), who created it,
    and its cases in the order they are presented."""

    id: int
    title: str
    date: str
    created_by: str
    cases: tuple[MeetingCase, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "date": self.date,
            "created_by": self.created_by,
            "cases": [c.as_dict() for c in self.cases],
        }


@dataclass(frozen=True)
class Read:
    """One reader's read of one meeting case.

    ``read`` is one of ``XRAY_LABELS`` for an X-ray, or one of :data:`CT_READS` for a CT;
    ``agrees_with_model`` says whether the reader agreed with the model named by ``model_id``
    and ``model_version`` (None when not asked); ``at`` is when it was recorded (UTC, ISO).
    ``model_label``, ``model_probability`` and ``model_threshold`` are what that model read in
    the case when the read was recorded (see :mod:`core.review.model_read`), so that agreement
    figures can be computed again later: ``model_label`` is None when the model gave no label
    (the study was unlike its training data) or was not run, ``model_threshold`` None for an
    argmax label.
    """

    id: int
    meeting_case_id: int
    reader: str
    read: str
    confidence: int
    agrees_with_model: bool | None
    comment: str
    model_id: str | None
    model_version: str | None
    at: str
    model_label: str | None = None
    model_probability: float | None = None
    model_threshold: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "meeting_case_id": self.meeting_case_id,
            "reader": self.reader,
            "read": self.read,
            "confidence": self.confidence,
            "agrees_with_model": self.agrees_with_model,
            "comment": self.comment,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "model_label": self.model_label,
            "model_probability": self.model_probability,
            "model_threshold": self.model_threshold,
            "at": self.at,
        }


def _one_line(value: object) -> str:
    return _CONTROL.sub(" ", str(value)).strip()


def check_title(title: object) -> str:
    """A meeting title: one line, not empty, at most 200 characters."""
    text = _one_line(title or "")
    if not text:
        raise InvalidInputError("A meeting needs a title.")
    if len(text) > MAX_TITLE_CHARS:
        raise InvalidInputError(f"A meeting title may have at most {MAX_TITLE_CHARS} characters, got {len(text)}.")
    return text


def check_date(date: object) -> str:
    """A meeting date written YYYY-MM-DD (a real calendar day)."""
    text = str(date or "").strip()
    try:
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise InvalidInputError(f"The meeting date must be a day written YYYY-MM-DD, got '{text}'.") from None


def check_hidden(hidden: Iterable[str] | str) -> frozenset[str]:
    """What a case hides until revealed: any of :data:`HIDEABLE` (an empty set hides nothing)."""
    items = (hidden,) if isinstance(hidden, str) else tuple(hidden)
    unknown = [str(h) for h in items if h not in HIDEABLE]
    if unknown:
        raise InvalidInputError(
            f"A case cannot hide {', '.join(repr(u) for u in unknown)}; it can hide: {', '.join(HIDEABLE)}."
        )
    return frozenset(items)


def hidden_text(hidden: frozenset[str]) -> str:
    """How the store keeps a hidden set: the items in :data:`HIDEABLE` order, comma-separated."""
    return ",".join(h for h in HIDEABLE if h in hidden)


def hidden_of(text: str) -> frozenset[str]:
    """The hidden set the store kept with :func:`hidden_text`."""
    return frozenset(h for h in text.split(",") if h)


def check_reader(reader: object) -> str:
    """A reader's name: one line, not empty, at most 120 characters."""
    text = _one_line(reader or "")
    if not text:
        raise InvalidInputError("A read needs the reader's name.")
    if len(text) > MAX_READER_CHARS:
        raise InvalidInputError(f"A reader's name may have at most {MAX_READER_CHARS} characters, got {len(text)}.")
    return text


def read_choices(modalities: Iterable[str]) -> tuple[str, ...]:
    """The reads a case of these modalities takes: the X-ray labels and/or the CT reads."""
    found = set(modalities)
    return (XRAY_LABELS if "X-ray" in found else ()) + (CT_READS if "CT" in found else ())


def check_read(read: object, modalities: Iterable[str]) -> str:
    """A read in its canonical spelling, for a case of these modalities (a whole patient may
    have both); the X-ray labels' usual spellings are accepted (``covid-19``, ``viral``)."""
    text = _one_line(read or "")
    found = set(modalities)
    if "CT" in found:
        for choice in CT_READS:
            if text.lower() == choice.lower():
                return choice
    if "X-ray" in found:
        try:
            return canonical_label(text)
        except InvalidInputError:
            pass
    choices = read_choices(found)
    if not choices:
        raise InvalidInputError("This case has no X-ray or CT to read.")
    raise InvalidInputError(f"Unknown read '{text}' for this case; expected one of: {', '.join(choices)}.")


def check_confidence(confidence: object) -> int:
    """A confidence from 1 to 5."""
    if isinstance(confidence, bool) or not isinstance(confidence, int | str):
        raise InvalidInputError(f"Confidence must be a whole number from 1 to 5, got {confidence!r}.")
    try:
        value = int(confidence)
    except ValueError:
        raise InvalidInputError(f"Confidence must be a whole number from 1 to 5, got '{confidence}'.") from None
    if value not in CONFIDENCES:
        raise InvalidInputError(f"Confidence must be a whole number from 1 to 5, got {value}.")
    return value


def check_comment(comment: object) -> str:
    """A reader's comment: free text (several lines allowed), at most 4000 characters."""
    text = str(comment or "").replace("\x00", "").strip()
    if len(text) > MAX_COMMENT_CHARS:
        raise InvalidInputError(f"A comment may have at most {MAX_COMMENT_CHARS} characters, got {len(text)}.")
    return text


def check_model(
    agrees_with_model: bool | None, model_id: str | None, model_version: str | None
) -> tuple[str | None, str | None]:
    """The model a read was compared with: an id and a version together, or neither; a reader
    can only agree or disagree with a model that is named."""
    if agrees_with_model is not None and not isinstance(agrees_with_model, bool):
        raise InvalidInputError("Whether the reader agrees with the model must be yes, no or not given.")
    mid = _one_line(model_id) if model_id else None
    version = _one_line(model_version) if model_version else None
    if mid and not version:
        raise InvalidInputError(f"The version of model '{mid}' is needed with its id.")
    if version and not mid:
        raise InvalidInputError("A model version was given without the model's id.")
    if agrees_with_model is not None and not mid:
        raise InvalidInputError("Agreeing or disagreeing with the model needs the model's id and version.")
    return mid, version


def _unit_or_none(value: object, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidInputError(f"The model's {what} must be a number from 0 to 1, got {value!r}.") from None
    if isinstance(value, bool) or not 0.0 <= number <= 1.0:
        raise InvalidInputError(f"The model's {what} must be a number from 0 to 1, got {value!r}.")
    return number


def check_model_read(
    model_id: str | None, model_label: object, model_probability: object, model_threshold: object = None
) -> tuple[str | None, float | None, float | None]:
    """What the model read in the case, stored with a read: its label (None when it gave none),
    the probability behind it and the threshold it was held against, each from 0 to 1; only
    with the model's id."""
    label = (_one_line(model_label) or None) if model_label is not None else None
    probability = _unit_or_none(model_probability, "probability")
    threshold = _unit_or_none(model_threshold, "threshold")
    if (label is not None or probability is not None or threshold is not None) and not model_id:
        raise InvalidInputError("The model's read of a case needs the model's id and version.")
    if label is not None and len(label) > MAX_MODEL_LABEL_CHARS:
        raise InvalidInputError(f"A model's label may have at most {MAX_MODEL_LABEL_CHARS} characters.")
    return label, probability, threshold
