"""Case-review meetings in the library: what a presenter prepares comes back in order after
reopening, hides and reveals per case, keeps each reader's read with the model it was compared
with, is audited without free text, and goes with a removed patient."""

from __future__ import annotations

import datetime
import sqlite3
import zlib
from pathlib import Path

import pytest

from core.errors import InvalidInputError, MissingModelError
from core.library.audit import ACTIONS
from core.library.records import NewPatient, NewStudy
from core.library.store import DATABASE_NAME, CaseLibrary, NewImage, open_library
from core.review.meetings import HIDEABLE, case_at, model_card, progress_text, reads_by_case
from tests.pg import run_sql


def add(lib: CaseLibrary, pseudonym: str, day: float, modality: str = "X-ray", **patient: object) -> int:
    """One study of ``pseudonym`` (tiny made-up files: meetings never read the pixels)."""
    data = f"{pseudonym}|{day}|{modality}".encode()
    kind = "xray" if modality == "X-ray" else "ct-series"
    return lib.add_case(
        NewPatient(pseudonym=pseudonym, source="test", **patient),  # type: ignore[arg-type]
        NewStudy(modality=modality, offset_admission_days=day),
        [NewImage(kind, (("a", data),))],
        str(zlib.crc32(data)),
    )


@pytest.fixture
def lib(library_location: str) -> CaseLibrary:
    """Three patients: P-A (X-ray and CT), P-B (X-ray), P-C (X-ray); opened as Dr Ada, on each backend."""
    library = open_library(library_location).acting("Dr Ada")
    add(library, "P-A", 0, label="COVID-19", outcome="died")
    add(library, "P-A", 3, "CT")
    add(library, "P-B", 0, label="Normal")
    add(library, "P-C", 1, label="Viral pneumonia")
    return library


def study_of(lib: CaseLibrary, pseudonym: str, modality: str) -> int:
    return next(s.id for s in lib.patient(pseudonym).studies if s.modality == modality)


def test_a_meeting_keeps_its_cases_in_order_across_reopening(lib: CaseLibrary) -> None:
    mid = lib.create_meeting("  Friday review ", "2026-03-06")
    ct = study_of(lib, "P-A", "CT")
    lib.add_to_meeting(mid, "P-B")
    lib.add_to_meeting(mid, "P-A", study_id=ct, hidden=("diagnosis",))
    lib.add_to_meeting(mid, "P-A")  # the whole patient is another case than one of their studies

    again = open_library(lib.location).meeting(mid)
    assert (again.title, again.date, again.created_by) == ("Friday review", "2026-03-06", "Dr Ada")
    assert [(c.position, c.pseudonym, c.study_id) for c in again.cases] == [
        (1, "P-B", None),
        (2, "P-A", ct),
        (3, "P-A", None),
    ]
    assert again.cases[0].hidden == frozenset(HIDEABLE) and again.cases[1].hidden == {"diagnosis"}
    assert not any(c.revealed for c in again.cases)
    assert progress_text(again, case_at(again, 2)) == "case 2 of 3"


def test_meetings_are_listed_latest_day_first(lib: CaseLibrary) -> None:
    old = lib.create_meeting("January", "2026-01-10")
    new = lib.create_meeting("March", "2026-03-01")
    same_day = lib.create_meeting("March, second", "2026-03-01")
    assert [m.id for m in lib.meetings()] == [same_day, new, old]


def test_moving_a_case_keeps_the_others_in_their_order(lib: CaseLibrary) -> None:
    mid = lib.create_meeting("Order", "2026-03-06")
    a, b, c = (lib.add_to_meeting(mid, p).id for p in ("P-A", "P-B", "P-C"))

    def order() -> list[int]:
        return [x.id for x in lib.meeting(mid).cases]

    assert lib.move_case(mid, a, 3).position == 3
    assert order() == [b, c, a]
    lib.move_case(mid, a, 1)
    assert order() == [a, b, c]
    lib.move_case(mid, c, 2)
    assert order() == [a, c, b]
    assert [x.position for x in lib.meeting(mid).cases] == [1, 2, 3]
    with pytest.raises(InvalidInputError, match="from 1 to 3"):
        lib.move_case(mid, a, 4)
    with pytest.raises(InvalidInputError, match="from 1 to 3"):
        lib.move_case(mid, a, 0)
    other = lib.create_meeting("Other", "2026-03-07")
    with pytest.raises(InvalidInputError, match=f"Meeting {other} has no case {a}"):
        lib.move_case(other, a, 1)
    assert order() == [a, c, b]

    lib.remove_from_meeting(c)
    assert order() == [a, b] and [x.position for x in lib.meeting(mid).cases] == [1, 2]


def test_hiding_and_revealing_are_per_case(lib: CaseLibrary) -> None:
    mid = lib.create_meeting("Reveal", "2026-03-06")
    first = lib.add_to_meeting(mid, "P-A", hidden=("diagnosis", "outcome"))
    second = lib.add_to_meeting(mid, "P-B", hidden=())
    assert first.hidden_now == {"diagnosis", "outcome"} and second.hidden_now == frozenset()

    assert lib.reveal(first.id).revealed
    a, b = lib.meeting(mid).cases
    assert (a.revealed, a.hidden_now, a.hidden) == (True, frozenset(), {"diagnosis", "outcome"})
    assert (b.revealed, b.hidden) == (False, frozenset())

    lib.set_hidden(second.id, ["model outputs", "notes"])
    assert not lib.reveal(first.id, revealed=False).revealed
    a, b = open_library(lib.location).meeting(mid).cases
    assert a.hidden_now == {"diagnosis", "outcome"} and b.hidden_now == {"notes", "model outputs"}


def test_reads_keep_the_model_they_were_compared_with_and_when(lib: CaseLibrary) -> None:
    mid = lib.create_meeting("Reads", "2026-03-06")
    xray = lib.add_to_meeting(mid, "P-B", study_id=study_of(lib, "P-B", "X-ray"))
    ct = lib.add_to_meeting(mid, "P-A", study_id=study_of(lib, "P-A", "CT"))
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    first = lib.add_read(xray.id, "Dr Bob", "normal", 4, True, "clear lungs", "cxr-resnet18", "1.2.0")
    lib.add_read(xray.id, "Dr Cy", "viral", 2, False, "", "cxr-resnet18", "1.2.0")
    lib.add_read(ct.id, "Dr Bob", "not covid", 3)

    reads = open_library(lib.location).reads(mid)
    assert [(r.meeting_case_id, r.reader, r.read, r.confidence, r.agrees_with_model) for r in reads] == [
        (xray.id, "Dr Bob", "Normal", 4, True),
        (xray.id, "Dr Cy", "Viral pneumonia", 2, False),
        (ct.id, "Dr Bob", "not COVID", 3, None),
    ]
    assert (reads[0].id, reads[0].comment, reads[0].model_id, reads[0].model_version) == (
        first,
        "clear lungs",
        "cxr-resnet18",
        "1.2.0",
    )
    assert (reads[2].model_id, reads[2].model_version) == (None, None)
    at = datetime.datetime.strptime(reads[0].at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    assert before <= at <= datetime.datetime.now(datetime.UTC)

    # A reader has one read per case: reading again replaces theirs.
    assert lib.add_read(xray.id, "Dr Bob", "COVID-19", 5, False, "changed my mind", "cxr-resnet18", "1.2.0") == first
    assert [(r.reader, r.read) for r in reads_by_case(lib.reads(mid))[xray.id]] == [
        ("Dr Bob", "COVID-19"),
        ("Dr Cy", "Viral pneumonia"),
    ]
    # The read's vocabulary is the case's modality's; a whole patient takes either.
    with pytest.raises(InvalidInputError, match="expected one of: COVID, not COVID"):
        lib.add_read(ct.id, "Dr Bob", "Normal", 3)
    with pytest.raises(InvalidInputError, match="expected one of: Normal, Viral pneumonia, COVID-19"):
        lib.add_read(xray.id, "Dr Bob", "not covid", 3)
    whole = lib.add_to_meeting(mid, "P-A")
    lib.add_read(whole.id, "Dr Bob", "COVID-19", 3)
    lib.add_read(whole.id, "Dr Cy", "COVID", 3)


def test_a_read_keeps_what_the_model_read_in_the_case(lib: CaseLibrary) -> None:
    """So that reader-vs-model agreement can be computed again without running the model."""
    mid = lib.create_meeting("Model reads", "2026-03-06")
    ct = lib.add_to_meeting(mid, "P-A", study_id=study_of(lib, "P-A", "CT"))
    xray = lib.add_to_meeting(mid, "P-B")
    lib.add_read(ct.id, "Dr Bob", "COVID", 4, True, "", "covid3d", "v1", "COVID", 0.73, 0.5)
    lib.add_read(xray.id, "Dr Bob", "Normal", 4, None, "", "cxr-resnet18", "v2", None, 0.91)  # withheld: OOD
    lib.add_read(xray.id, "Dr Cy", "Normal", 2)

    reads = open_library(lib.location).reads(mid)
    assert [(r.model_label, r.model_probability, r.model_threshold) for r in reads] == [
        ("COVID", 0.73, 0.5),
        (None, 0.91, None),
        (None, None, None),
    ]
    assert reads[0].as_dict()["model_label"] == "COVID" and reads[0].as_dict()["model_threshold"] == 0.5
    # Reading again replaces the model's read too (the model may have been updated since).
    lib.add_read(ct.id, "Dr Bob", "COVID", 4, True, "", "covid3d", "v3", "not COVID", 0.2, 0.5)
    again = lib.reads(mid)[0]
    assert (again.model_version, again.model_label, again.model_probability) == ("v3", "not COVID", 0.2)


def test_every_change_is_audited_without_a_title_or_a_comment(lib: CaseLibrary) -> None:
    mid = lib.create_meeting("Mr Smith's scans", "2026-03-06")
    case = lib.add_to_meeting(mid, "P-B", hidden=("outcome",))
    other = lib.add_to_meeting(mid, "P-C")
    lib.move_case(mid, other.id, 1)
    lib.set_hidden(case.id, ())
    lib.reveal(case.id)
    lib.reveal(case.id, revealed=False)
    lib.add_read(case.id, "Dr Bob", "Normal", 4, True, "looks like JOHN SMITH's old film", "cxr-resnet18", "1.2.0")
    lib.remove_from_meeting(other.id)

    actions = [e.action for e in reversed(lib.audit_log())][4:]  # after the four add-case entries
    assert actions == [
        "create-meeting",
        "add-to-meeting",
        "add-to-meeting",
        "move-in-meeting",
        "set-hidden",
        "reveal-case",
        "hide-case-again",
        "record-read",
        "remove-from-meeting",
    ]
    assert set(actions) <= set(ACTIONS)
    entries = lib.audit_log()[:9]
    assert {e.user for e in entries} == {"Dr Ada"}
    read = next(e for e in entries if e.action == "record-read")
    assert (read.pseudonym, read.study_id) == ("P-B", None)
    assert read.detail == f"meeting {mid}, case {case.id}: read 1 by Dr Bob, compared with cxr-resnet18 1.2.0"
    assert next(e for e in entries if e.action == "create-meeting").detail == f"meeting {mid} of 2026-03-06"
    for e in entries:
        assert "Smith" not in e.detail and "SMITH" not in e.detail and "old film" not in e.detail


def test_removing_a_patient_removes_their_meeting_cases_and_reads(lib: CaseLibrary) -> None:
    mid = lib.create_meeting("Cascade", "2026-03-06")
    whole = lib.add_to_meeting(mid, "P-A")
    one_study = lib.add_to_meeting(mid, "P-A", study_id=study_of(lib, "P-A", "CT"))
    kept = lib.add_to_meeting(mid, "P-B")
    lib.add_read(whole.id, "Dr Bob", "COVID-19", 4)
    lib.add_read(one_study.id, "Dr Bob", "COVID", 4)
    lib.add_read(kept.id, "Dr Bob", "Normal", 4)

    lib.delete_patient("P-A")
    (left,) = lib.meeting(mid).cases
    assert (left.id, left.position) == (kept.id, 1)
    assert [r.meeting_case_id for r in lib.reads(mid)] == [kept.id]
    # Nothing left behind that points at nobody.
    assert run_sql(lib.location, "SELECT COUNT(*) FROM reads") == [(1,)]
    assert run_sql(lib.location, "SELECT COUNT(*) FROM meeting_cases") == [(1,)]
    assert lib.audit_log(limit=1)[0].detail == "with 2 meeting cases and 2 reads"
    with pytest.raises(InvalidInputError, match=f"no meeting case {whole.id}"):
        lib.reveal(whole.id)


def test_a_library_made_before_meetings_gets_them_when_opened(tmp_path: Path) -> None:
    # SQLite only: older versions of the app made SQLite libraries alone.
    root = tmp_path / "lib"
    add(open_library(root), "P-A", 0)
    with sqlite3.connect(root / DATABASE_NAME) as con:  # as the first versions made it
        con.executescript("DROP TABLE reads; DROP TABLE meeting_cases; DROP TABLE meetings;")
        con.execute("ALTER TABLE studies DROP COLUMN burned_in")
    library = open_library(root)
    mid = library.create_meeting("After the update", "2026-03-06")
    case = library.add_to_meeting(mid, "P-A")
    library.add_read(case.id, "Dr Bob", "Normal", 3)
    # The older library's missing column came back on the same open, not the next one.
    add(library, "P-B", 1)
    assert [c.pseudonym for c in library.meeting(mid).cases] == ["P-A"] and len(library.reads(mid)) == 1


def test_a_library_with_reads_of_before_the_models_read_gets_its_columns_when_opened(tmp_path: Path) -> None:
    # SQLite only: older versions of the app made SQLite libraries alone.
    root = tmp_path / "lib"
    library = open_library(root)
    add(library, "P-A", 0)
    case = library.add_to_meeting(library.create_meeting("Old", "2026-03-06"), "P-A")
    library.add_read(case.id, "Dr Bob", "Normal", 3, None, "", "cxr-resnet18", "v1")
    with sqlite3.connect(root / DATABASE_NAME) as con:  # as the first version with meetings made it
        for column in ("model_label", "model_probability", "model_threshold"):
            con.execute(f"ALTER TABLE reads DROP COLUMN {column}")
    library = open_library(root)
    old = library.reads(case.meeting_id)[0]
    assert (old.read, old.model_id, old.model_label, old.model_probability) == ("Normal", "cxr-resnet18", None, None)
    library.add_read(case.id, "Dr Cy", "COVID-19", 3, None, "", "cxr-resnet18", "v1", "Normal", 0.6)
    assert [r.model_label for r in library.reads(case.meeting_id)] == [None, "Normal"]


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda lib, m: lib.create_meeting("", "2026-03-06"), "needs a title"),
        (lambda lib, m: lib.create_meeting("T", "06/03/2026"), "YYYY-MM-DD"),
        (lambda lib, m: lib.create_meeting("T", "2026-02-30"), "YYYY-MM-DD"),
        (lambda lib, m: lib.meeting(999), "no meeting 999"),
        (lambda lib, m: lib.add_to_meeting(999, "P-A"), "no meeting 999"),
        (lambda lib, m: lib.add_to_meeting(m, "P-NOBODY"), "no patient P-NOBODY"),
        (lambda lib, m: lib.add_to_meeting(m, "P-B", study_id=study_of(lib, "P-A", "CT")), "not one of P-B's"),
        (lambda lib, m: lib.add_to_meeting(m, "P-A"), "P-A is already case 1"),
        (lambda lib, m: lib.add_to_meeting(m, "P-B", hidden=("the name",)), "cannot hide 'the name'"),
        (lambda lib, m: lib.add_read(1, "", "Normal", 3), "reader's name"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", 6), "from 1 to 5"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", True), "from 1 to 5"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", 3, True), "needs the model's id"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", 3, None, "", "cxr-resnet18"), "version"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "pneumonia?", 3), "Unknown read 'pneumonia?'"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", 3, None, "x" * 5000), "at most 4000"),
        (lambda lib, m: lib.add_read(99, "Dr Bob", "Normal", 3), "no meeting case 99"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", 3, None, "", None, None, "Normal"), "model's id"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", 3, None, "", "m", "v", "Normal", 1.5), "from 0 to 1"),
        (lambda lib, m: lib.add_read(1, "Dr Bob", "Normal", 3, None, "", "m", "v", "Normal", float("nan")), "0 to 1"),
    ],
)
def test_bad_input_is_refused_in_plain_words_and_changes_nothing(lib: CaseLibrary, call, words: str) -> None:  # noqa: ANN001
    mid = lib.create_meeting("Errors", "2026-03-06")
    lib.add_to_meeting(mid, "P-A")  # case 1
    before = (lib.meetings(), lib.reads(mid), len(lib.audit_log()))
    with pytest.raises(InvalidInputError) as e:
        call(lib, mid)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert (lib.meetings(), lib.reads(mid), len(lib.audit_log())) == before


def test_the_model_a_read_is_compared_with_is_found_in_the_manifest(tiny_weights: Path) -> None:
    card = model_card(tiny_weights, "cxr-resnet18")
    assert card.id == "cxr-resnet18" and card.version
    with pytest.raises(MissingModelError, match="No model 'nope'.*registered: .*cxr-resnet18"):
        model_card(tiny_weights, "nope")
