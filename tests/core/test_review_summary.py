"""A meeting's summary: each reader and the room against the model, the truth and each other,
computed from the reads as stored, with the cases where the room and the model disagreed first."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import pytest

from core.errors import InvalidInputError
from core.library.records import NewPatient, NewStudy
from core.library.store import NewImage, SqliteLibrary, open_library
from core.review.agreement import cohen_kappa, fleiss_kappa, rating_counts
from core.review.summary import (
    ALL_READERS,
    COVID_QUESTION,
    XRAY_QUESTION,
    export_rows,
    meeting_summary,
    reads_csv,
)


def add(lib: SqliteLibrary, pseudonym: str, modality: str, study_label: str | None, patient_label: str | None) -> int:
    data = f"{pseudonym}|{modality}|{study_label}".encode()
    return lib.add_case(
        NewPatient(pseudonym=pseudonym, source="test", label=patient_label),
        NewStudy(modality=modality, offset_admission_days=3, label=study_label),
        [NewImage("xray" if modality == "X-ray" else "ct-series", (("a", data),))],
        str(zlib.crc32(data)),
    )


@pytest.fixture
def lib(tmp_path: Path) -> SqliteLibrary:
    """Five patients; the truth of P-D is only the patient's diagnosis, P-E's is not known."""
    library = open_library(tmp_path / "lib")
    add(library, "P-A", "X-ray", "COVID-19", "COVID-19")
    add(library, "P-B", "CT", "COVID-19", "COVID-19")
    add(library, "P-C", "X-ray", "Normal", "Normal")
    add(library, "P-D", "CT", None, "Viral pneumonia")
    add(library, "P-E", "X-ray", None, None)
    return library


def meeting_of(lib: SqliteLibrary, title: str = "Friday") -> tuple[int, dict[str, int]]:
    mid = lib.create_meeting(title, "2026-03-06")
    cases = {}
    for p in ("P-A", "P-B", "P-C", "P-D", "P-E"):
        study = lib.patient(p).studies[0].id
        cases[p] = lib.add_to_meeting(mid, p, study).id
    return mid, cases


#: What the model read in each case: (label, probability, threshold); P-E's X-ray was unlike its
#: training data, so it gave no label.
MODEL = {
    "P-A": ("cxr-resnet18", "COVID-19", 0.9, None),
    "P-B": ("covid3d", "not COVID", 0.3, 0.5),
    "P-C": ("cxr-resnet18", "Normal", 0.8, None),
    "P-D": ("covid3d", "not COVID", 0.1, 0.5),
    "P-E": ("cxr-resnet18", None, 0.7, None),
}
#: Three readers' reads of the five cases.
READS = {
    "Ann": {"P-A": "COVID-19", "P-B": "COVID", "P-C": "Normal", "P-D": "not COVID", "P-E": "Normal"},
    "Bob": {"P-A": "Viral pneumonia", "P-B": "COVID", "P-C": "Normal", "P-D": "COVID", "P-E": "COVID-19"},
    "Cy": {"P-A": "COVID-19", "P-B": "not COVID", "P-C": "Viral pneumonia", "P-D": "not COVID", "P-E": "Normal"},
}


def record(lib: SqliteLibrary, cases: dict[str, int], reads: dict[str, dict[str, str]] = READS) -> None:
    for reader, mine in reads.items():
        for p, read in mine.items():
            model, label, prob, threshold = MODEL[p]
            lib.add_read(cases[p], reader, read, 3, None, "", model, "v1", label, prob, threshold)


def binary(label: str | None) -> str | None:
    return None if label is None else ("COVID" if label in ("COVID", "COVID-19") else "not COVID")


def test_reader_against_model_is_cohens_kappa_of_the_same_pairs(lib: SqliteLibrary) -> None:
    mid, cases = meeting_of(lib)
    record(lib, cases)
    summary = meeting_summary(lib, [mid])
    covid = summary.question(COVID_QUESTION)
    assert covid is not None and "COVID-19 is COVID" in covid.note
    assert [f.reader for f in covid.readers] == ["Ann", "Bob", "Cy"] and covid.pooled.reader == ALL_READERS
    every_a, every_b = [], []
    for figures in covid.readers:
        # P-E is left out: the model gave no label there.
        a = [binary(READS[figures.reader][p]) for p in ("P-A", "P-B", "P-C", "P-D")]
        b = [binary(MODEL[p][1]) for p in ("P-A", "P-B", "P-C", "P-D")]
        expected = cohen_kappa(a, b, ("COVID", "not COVID"))
        assert figures.n_reads == 5 and figures.vs_model.n == 4
        assert figures.vs_model.kappa == pytest.approx(expected.kappa)
        assert figures.vs_model.ci_low == pytest.approx(expected.ci_low)
        every_a += a
        every_b += b
    assert covid.pooled.vs_model.kappa == pytest.approx(cohen_kappa(every_a, every_b).kappa)
    assert covid.pooled.vs_model.n == 12

    # The 3-class X-ray question holds the X-ray reads only, against the model's X-ray classes.
    xray = summary.question(XRAY_QUESTION)
    assert xray is not None
    ann = next(f for f in xray.readers if f.reader == "Ann")
    assert ann.n_reads == 3 and ann.vs_model.n == 2  # P-A and P-C (P-E has no model label)
    assert ann.sensitivity is None  # sensitivity belongs to the binary question


def test_the_cases_where_the_room_and_the_model_disagreed_come_first(lib: SqliteLibrary) -> None:
    mid, cases = meeting_of(lib)
    record(lib, cases)
    summary = meeting_summary(lib, [mid])
    # Rooms: P-A COVID-19 (2 of 3) = model; P-B COVID (2 of 3) vs model not COVID; P-C Normal = model;
    # P-D not COVID = model; P-E Normal, and the model gave no label.
    assert [c.pseudonym for c in summary.cases] == ["P-B", "P-A", "P-C", "P-D", "P-E"]
    assert [c.pseudonym for c in summary.disagreements] == ["P-B"]
    b = summary.cases[0]
    assert (b.room_read, b.model_label, b.model_threshold, b.compared_on) == ("COVID", "not COVID", 0.5, COVID_QUESTION)
    a = summary.cases[1]
    assert (a.room_read, a.compared_on, a.agrees) == ("COVID-19", XRAY_QUESTION, True)
    e = summary.cases[-1]
    assert (e.room_read, e.model_label, e.agrees) == ("Normal", None, None)
    assert summary.to_json()["n_disagreements"] == 1


def test_a_tie_in_the_room_is_no_read_of_the_room(lib: SqliteLibrary) -> None:
    mid, cases = meeting_of(lib)
    record(lib, cases, {"Ann": {"P-B": "COVID"}, "Bob": {"P-B": "not COVID"}})
    b = next(c for c in meeting_summary(lib, [mid]).cases if c.pseudonym == "P-B")
    assert (b.room_read, b.agrees, b.disagrees) == (None, None, False)


def test_figures_against_the_truth_use_the_study_label_else_the_patients(lib: SqliteLibrary) -> None:
    mid, cases = meeting_of(lib)
    record(lib, cases)
    summary = meeting_summary(lib, [mid])
    sources = {c.pseudonym: (c.truth, c.truth_source) for c in summary.cases}
    assert sources["P-D"] == ("Viral pneumonia", "patient") and sources["P-E"] == (None, None)
    assert sources["P-B"] == ("COVID-19", "study")
    assert "3 cases from the study, 1 from the patient, 1 unknown" in summary.truth_note

    covid = summary.question(COVID_QUESTION)
    assert covid is not None
    bob = next(f for f in covid.readers if f.reader == "Bob")
    # Truths on the binary scale: A COVID, B COVID, C not, D not (E unknown). Bob: not, COVID, not, COVID.
    assert (bob.accuracy.successes, bob.accuracy.n) == (2, 4)
    assert (bob.sensitivity.successes, bob.sensitivity.n) == (1, 2)  # type: ignore[union-attr]
    assert (bob.specificity.successes, bob.specificity.n) == (1, 2)  # type: ignore[union-attr]
    # The model on the same cases: COVID, not, not, not.
    assert (bob.model_accuracy.successes, bob.model_accuracy.n) == (3, 4)
    assert (bob.model_sensitivity.successes, bob.model_specificity.successes) == (1, 2)  # type: ignore[union-attr]
    assert 0 < bob.sensitivity.ci_low < 0.5 < bob.sensitivity.ci_high < 1  # type: ignore[union-attr]
    assert (covid.pooled.accuracy.successes, covid.pooled.accuracy.n) == (4 + 2 + 3, 12)  # Ann 4, Bob 2, Cy 3

    # The 3-class question: the X-ray truths are COVID-19 (A) and Normal (C); E's is unknown.
    xray = summary.question(XRAY_QUESTION)
    assert xray is not None
    assert [(f.reader, f.accuracy.successes, f.accuracy.n) for f in xray.readers] == [
        ("Ann", 2, 2),
        ("Bob", 1, 2),
        ("Cy", 1, 2),
    ]


def test_between_readers_is_fleiss_kappa_of_the_cases_all_read(lib: SqliteLibrary) -> None:
    mid, cases = meeting_of(lib)
    record(lib, cases)
    covid = meeting_summary(lib, [mid]).question(COVID_QUESTION)
    assert covid is not None
    per_case = [[binary(READS[r][p]) for r in READS] for p in ("P-A", "P-B", "P-C", "P-D", "P-E")]
    expected = fleiss_kappa(rating_counts(per_case, ("COVID", "not COVID")).counts)
    assert covid.between_readers.kappa == pytest.approx(expected.kappa)
    assert covid.between_readers.n_raters == 3 and covid.between_readers.n == 5


def test_a_meeting_with_no_reads_has_undefined_figures_with_reasons(lib: SqliteLibrary) -> None:
    mid, _ = meeting_of(lib)
    summary = meeting_summary(lib, [mid])
    assert (summary.n_cases, summary.n_reads, summary.readers, summary.disagreements) == (5, 0, (), ())
    assert [q.question for q in summary.questions] == [COVID_QUESTION]
    pooled = summary.questions[0].pooled
    assert math.isnan(pooled.vs_model.kappa) and "model label" in pooled.vs_model.reason
    assert math.isnan(pooled.accuracy.estimate) and pooled.accuracy.reason
    assert pooled.sensitivity is not None and pooled.sensitivity.reason
    assert math.isnan(summary.questions[0].between_readers.kappa) and summary.questions[0].between_readers.reason
    assert summary.models_note == "No read was compared with a model."
    as_json = summary.to_json()
    assert as_json["questions"][0]["pooled"]["vs_model"]["kappa"] is None  # nan is not JSON
    assert [c["room_read"] for c in as_json["cases"]] == [None] * 5


def test_several_meetings_are_pooled(lib: SqliteLibrary) -> None:
    first, cases = meeting_of(lib, "First")
    record(lib, cases, {"Ann": READS["Ann"]})
    second, cases = meeting_of(lib, "Second")
    record(lib, cases, {"Ann": READS["Ann"], "Bob": READS["Bob"]})
    summary = meeting_summary(lib, [second, first, second])
    assert summary.meeting_ids == (second, first) and summary.titles == ("Second", "First")
    assert (summary.n_cases, summary.n_reads) == (10, 15)
    covid = summary.question(COVID_QUESTION)
    assert covid is not None
    assert [(f.reader, f.n_reads) for f in covid.readers] == [("Ann", 10), ("Bob", 5)]
    # Between readers: the second meeting's five cases, read by two; the first's read by one are left out.
    assert covid.between_readers.n == 5 and covid.between_readers.n_raters == 2
    with pytest.raises(InvalidInputError, match="no meeting 99"):
        meeting_summary(lib, [first, 99])
    with pytest.raises(InvalidInputError, match="at least one meeting"):
        meeting_summary(lib, [])


def test_the_export_has_one_row_per_read_and_nothing_that_names_or_dates_the_patient(lib: SqliteLibrary) -> None:
    mid, cases = meeting_of(lib)
    lib.add_read(cases["P-B"], "Dr Ann", "COVID", 4, False, "=HYPERLINK(1)", "covid3d", "v1", "not COVID", 0.3, 0.5)
    lib.add_read(cases["P-A"], "Dr Bob", "covid-19", 2)
    rows = export_rows(lib, mid)
    assert [(r["position"], r["pseudonym"], r["reader"], r["read"]) for r in rows] == [
        (1, "P-A", "Dr Bob", "COVID-19"),
        (2, "P-B", "Dr Ann", "COVID"),
    ]
    assert (rows[1]["model_label"], rows[1]["model_threshold"], rows[1]["truth"]) == ("not COVID", 0.5, "COVID-19")
    assert rows[1]["days_since_admission"] == 3 and rows[0]["model_id"] is None
    text = reads_csv(lib, mid)
    assert "'=HYPERLINK(1)" in text  # a comment cannot start a spreadsheet formula
    assert ",no," in text.splitlines()[2]
