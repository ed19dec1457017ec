"""The SQL of case-review meetings, for :class:`core.library.sql.SqlLibrary` (SQLite and PostgreSQL).

Each function works inside a connection (and, for a change, the transaction) that the store
opened, so a change and its audit entry are written together; the store's methods are the
public face (see :class:`core.library.store.CaseLibrary`). Tables (in the store's schema):

- ``meetings``: id, title, date (the meeting's own day), created_by, created_at;
- ``meeting_cases``: a patient (``patient_id``) or one of their studies (``study_id``) in a
  meeting, with its ``position``, what it ``hidden`` until ``revealed``; it references the
  patient and the study with ``ON DELETE CASCADE``, so removing a patient removes their
  meeting cases (and with them the reads of those cases);
- ``reads``: one per reader and case (recording again replaces the reader's read), with the
  model it was compared with and what that model read in the case (``model_label``,
  ``model_probability``, ``model_threshold``; added to older libraries when they are opened).

Positions shown to users run 1..n in presentation order; they are recomputed from the stored
order on every read, so a gap left by a removed patient never shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import InvalidInputError
from core.library.base import Connection
from core.library.meeting_records import Meeting, MeetingCase, Read, hidden_of, hidden_text

_CASE_SQL = (
    "SELECT c.id, c.meeting_id, p.pseudonym, c.study_id, c.hidden, c.revealed"
    " FROM meeting_cases c JOIN patients p ON p.id = c.patient_id"
)
_ORDER = " ORDER BY c.position, c.id"


def _case(row: Sequence[object], position: int) -> MeetingCase:
    return MeetingCase(
        id=int(row[0]),  # type: ignore[call-overload]
        meeting_id=int(row[1]),  # type: ignore[call-overload]
        position=position,
        pseudonym=str(row[2]),
        study_id=None if row[3] is None else int(row[3]),  # type: ignore[call-overload]
        hidden=hidden_of(str(row[4])),
        revealed=bool(row[5]),
    )


def _meeting_row(con: Connection, meeting_id: int) -> tuple[int, str, str, str]:
    row = con.execute("SELECT id, title, date, created_by FROM meetings WHERE id = ?", (int(meeting_id),)).fetchone()
    if row is None:
        raise InvalidInputError(f"There is no meeting {meeting_id} in the case library.")
    return int(row[0]), str(row[1]), str(row[2]), str(row[3])


def cases_of(con: Connection, meeting_id: int) -> list[MeetingCase]:
    """A meeting's cases in presentation order, at positions 1..n."""
    rows = con.execute(_CASE_SQL + " WHERE c.meeting_id = ?" + _ORDER, (int(meeting_id),)).fetchall()
    return [_case(r, n) for n, r in enumerate(rows, start=1)]


def case(con: Connection, case_id: int) -> MeetingCase:
    """One meeting case with its current position; a plain error when there is none."""
    row = con.execute("SELECT meeting_id FROM meeting_cases WHERE id = ?", (int(case_id),)).fetchone()
    if row is None:
        raise InvalidInputError(f"There is no meeting case {case_id} in the case library.")
    return next(c for c in cases_of(con, int(row[0])) if c.id == int(case_id))


def meeting(con: Connection, meeting_id: int) -> Meeting:
    mid, title, date, created_by = _meeting_row(con, meeting_id)
    return Meeting(mid, title, date, created_by, tuple(cases_of(con, mid)))


def meetings(con: Connection) -> list[Meeting]:
    """Every meeting with its cases, the latest meeting day first (then the latest created)."""
    ids = [int(r[0]) for r in con.execute("SELECT id FROM meetings ORDER BY date DESC, id DESC")]
    return [meeting(con, i) for i in ids]


def create(con: Connection, title: str, date: str, user: str, at: str) -> int:
    row = con.execute(
        "INSERT INTO meetings (title, date, created_by, created_at) VALUES (?, ?, ?, ?) RETURNING id",
        (title, date, user, at),
    ).fetchone()
    return int(row[0])


def add(con: Connection, meeting_id: int, pseudonym: str, study_id: int | None, hidden: frozenset[str]) -> MeetingCase:
    """Put a patient (or one of their studies) last in a meeting; plain errors for an unknown
    meeting, patient or study, and for a case the meeting already has."""
    mid = _meeting_row(con, meeting_id)[0]
    row = con.execute("SELECT id FROM patients WHERE pseudonym = ?", (pseudonym,)).fetchone()
    if row is None:
        raise InvalidInputError(f"There is no patient {pseudonym} in the case library.")
    patient_id = int(row[0])
    what = pseudonym if study_id is None else f"{pseudonym}'s study {study_id}"
    if study_id is not None:
        owner = con.execute("SELECT patient_id FROM studies WHERE id = ?", (int(study_id),)).fetchone()
        if owner is None or int(owner[0]) != patient_id:
            raise InvalidInputError(f"Study {study_id} is not one of {pseudonym}'s studies.")
    for c in cases_of(con, mid):
        if c.pseudonym == pseudonym and c.study_id == study_id:
            raise InvalidInputError(f"{what} is already case {c.position} of meeting {mid}.")
    last = con.execute("SELECT COALESCE(MAX(position), 0) FROM meeting_cases WHERE meeting_id = ?", (mid,)).fetchone()
    row = con.execute(
        "INSERT INTO meeting_cases (meeting_id, position, patient_id, study_id, hidden, revealed)"
        " VALUES (?, ?, ?, ?, ?, 0) RETURNING id",
        (mid, int(last[0]) + 1, patient_id, study_id, hidden_text(hidden)),
    ).fetchone()
    return case(con, int(row[0]))


def _renumber(con: Connection, case_ids: Sequence[int]) -> None:
    con.executemany("UPDATE meeting_cases SET position = ? WHERE id = ?", [(n, i) for n, i in enumerate(case_ids, 1)])


def move(con: Connection, meeting_id: int, case_id: int, new_position: int) -> tuple[MeetingCase, int]:
    """Move a case to ``new_position`` (1 = first), the others keeping their order; return the
    moved case and the position it had."""
    mid = _meeting_row(con, meeting_id)[0]
    cases = cases_of(con, mid)
    moved = next((c for c in cases if c.id == int(case_id)), None)
    if moved is None:
        raise InvalidInputError(f"Meeting {mid} has no case {case_id}.")
    if isinstance(new_position, bool) or not 1 <= int(new_position) <= len(cases):
        raise InvalidInputError(f"Meeting {mid} has {len(cases)} cases: a position must be from 1 to {len(cases)}.")
    order = [c.id for c in cases if c.id != moved.id]
    order.insert(int(new_position) - 1, moved.id)
    _renumber(con, order)
    return case(con, moved.id), moved.position


def remove(con: Connection, case_id: int) -> MeetingCase:
    """Remove a case (and its reads) from its meeting; return it as it was."""
    gone = case(con, case_id)
    con.execute("DELETE FROM meeting_cases WHERE id = ?", (gone.id,))
    _renumber(con, [c.id for c in cases_of(con, gone.meeting_id)])
    return gone


def set_hidden(con: Connection, case_id: int, hidden: frozenset[str]) -> MeetingCase:
    c = case(con, case_id)
    con.execute("UPDATE meeting_cases SET hidden = ? WHERE id = ?", (hidden_text(hidden), c.id))
    return case(con, c.id)


def reveal(con: Connection, case_id: int, revealed: bool) -> MeetingCase:
    c = case(con, case_id)
    con.execute("UPDATE meeting_cases SET revealed = ? WHERE id = ?", (int(bool(revealed)), c.id))
    return case(con, c.id)


def modalities(con: Connection, c: MeetingCase) -> set[str]:
    """The modalities a case shows: its study's, or every one of the patient's studies'."""
    if c.study_id is not None:
        rows = con.execute("SELECT modality FROM studies WHERE id = ?", (c.study_id,))
    else:
        rows = con.execute(
            "SELECT DISTINCT s.modality FROM studies s JOIN patients p ON p.id = s.patient_id WHERE p.pseudonym = ?",
            (c.pseudonym,),
        )
    return {str(r[0]) for r in rows}


def put_read(
    con: Connection,
    case_id: int,
    reader: str,
    read: str,
    confidence: int,
    agrees_with_model: bool | None,
    comment: str,
    model_id: str | None,
    model_version: str | None,
    at: str,
    model_label: str | None = None,
    model_probability: float | None = None,
    model_threshold: float | None = None,
) -> tuple[int, bool]:
    """Store a reader's read of a case (with what the model read in it), replacing their
    earlier read of it; return the read's id and whether it replaced one."""
    agrees = None if agrees_with_model is None else int(agrees_with_model)
    values = (
        read,
        confidence,
        agrees,
        comment,
        model_id,
        model_version,
        at,
        model_label,
        model_probability,
        model_threshold,
    )
    row = con.execute("SELECT id FROM reads WHERE meeting_case_id = ? AND reader = ?", (case_id, reader)).fetchone()
    if row is not None:
        con.execute(
            "UPDATE reads SET read = ?, confidence = ?, agrees_with_model = ?, comment = ?, model_id = ?,"
            " model_version = ?, at = ?, model_label = ?, model_probability = ?, model_threshold = ? WHERE id = ?",
            (*values, int(row[0])),
        )
        return int(row[0]), True
    row = con.execute(
        "INSERT INTO reads (meeting_case_id, reader, read, confidence, agrees_with_model, comment, model_id,"
        " model_version, at, model_label, model_probability, model_threshold)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (case_id, reader, *values),
    ).fetchone()
    return int(row[0]), False


def reads(con: Connection, meeting_id: int) -> list[Read]:
    """A meeting's reads, by case in presentation order, then in the order they were recorded."""
    mid = _meeting_row(con, meeting_id)[0]
    rows = con.execute(
        "SELECT r.id, r.meeting_case_id, r.reader, r.read, r.confidence, r.agrees_with_model, r.comment,"
        " r.model_id, r.model_version, r.at, r.model_label, r.model_probability, r.model_threshold"
        " FROM reads r JOIN meeting_cases c ON c.id = r.meeting_case_id"
        " WHERE c.meeting_id = ? ORDER BY c.position, c.id, r.id",
        (mid,),
    ).fetchall()
    return [
        Read(
            id=int(r[0]),
            meeting_case_id=int(r[1]),
            reader=str(r[2]),
            read=str(r[3]),
            confidence=int(r[4]),
            agrees_with_model=None if r[5] is None else bool(r[5]),
            comment=str(r[6]),
            model_id=r[7],
            model_version=r[8],
            at=str(r[9]),
            model_label=r[10],
            model_probability=None if r[11] is None else float(r[11]),
            model_threshold=None if r[12] is None else float(r[12]),
        )
        for r in rows
    ]


def count_for_patient(con: Connection, pseudonym: str) -> tuple[int, int]:
    """How many meeting cases and reads a patient has (what removing them removes)."""
    row = con.execute(
        "SELECT COUNT(DISTINCT c.id), COUNT(r.id) FROM meeting_cases c JOIN patients p ON p.id = c.patient_id"
        " LEFT JOIN reads r ON r.meeting_case_id = c.id WHERE p.pseudonym = ?",
        (pseudonym,),
    ).fetchone()
    return int(row[0]), int(row[1])
