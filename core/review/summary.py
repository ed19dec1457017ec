"""What a case-review meeting (or several) concluded, against the model and against the truth.

:func:`meeting_summary` reads the reads stored in the library, each with what the model read
in its case when the read was recorded (:mod:`core.review.model_read`), so the figures come
out the same every time they are computed and no model runs here. For each question a read
answers, per reader and pooled over every read:

- reader against model: Cohen's kappa over the reads whose case has a model label (a model
  that gave no label, the study being unlike its training data, leaves its reads out);
- reader against truth and model against truth: accuracy, and for the binary question
  sensitivity and specificity for COVID, each with its Wilson interval, over the cases whose
  truth is known. The truth of a case is its study's label, else the patient's diagnosis in the
  library (each case says which);
- between readers: Fleiss' kappa over the cases read by the most common number of readers
  (at least two).

The questions: every read answers "COVID or not?" (an X-ray read of COVID-19, a CT read of
COVID; the other X-ray classes and "not COVID" are "not COVID"), which puts X-ray and CT cases
on one scale; X-ray reads also answer the 3-class question (Normal, Viral pneumonia,
COVID-19), where a model or a truth outside those three classes (e.g. the real-data model's
"Pneumonia (non-COVID)") is left out, since a pneumonia of any cause is not a viral one.

The cases come back with the room's read (the majority of its reads; none on a tie) beside the
model's, the ones where the two disagree first. Undefined figures (nothing to compare, one
label throughout) hold ``nan`` with a reason, as :mod:`core.review.agreement` gives them.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from core.errors import InvalidInputError
from core.labels import KNOWN_LABELS, XRAY_LABELS
from core.library.meeting_records import CT_READS, Read
from core.library.records import Patient, Study
from core.library.store import CaseLibrary
from core.review.agreement import (
    Agreement,
    Proportion,
    accuracy,
    cohen_kappa,
    fleiss_kappa,
    proportion,
    rating_counts,
    sensitivity_specificity,
)

#: The binary question every read answers, and its labels (the CT reads' words).
COVID_QUESTION = "COVID vs not COVID"
COVID, NOT_COVID = CT_READS
#: The 3-class question of X-ray reads.
XRAY_QUESTION = "X-ray class"
#: How the pooled row is named among the readers.
ALL_READERS = "all readers"
#: Resamples of Fleiss' kappa's bootstrap interval.
FLEISS_RESAMPLES = 2000

_NAN = float("nan")
_NOT_COVID_LABELS = frozenset((*XRAY_LABELS, *KNOWN_LABELS, NOT_COVID)) - {"COVID-19"}


def covid_or_not(label: str | None) -> str | None:
    """A read, a model's label or a truth on the binary question: "COVID", "not COVID", or
    None for no label or one outside the known vocabularies."""
    if label in ("COVID-19", COVID):
        return COVID
    if label in _NOT_COVID_LABELS:
        return NOT_COVID
    return None


def xray_class(label: str | None) -> str | None:
    """A label on the 3-class X-ray question, or None when it is not one of its classes."""
    return label if label in XRAY_LABELS else None


_QUESTIONS = {COVID_QUESTION: (covid_or_not, CT_READS), XRAY_QUESTION: (xray_class, XRAY_LABELS)}


@dataclass(frozen=True)
class CaseOutcome:
    """One meeting case: the room's reads, the model's, and the truth where it is known.

    ``room_read`` is the majority of the reads (None without reads or on a tie); ``model_label``
    and the model's fields are those stored with the case's latest read that named a model;
    ``truth_source`` is "study", "patient" or None (unknown). ``agrees`` says whether the room
    and the model gave the same answer on ``compared_on`` (the X-ray class when both answers
    are X-ray classes, else COVID vs not COVID); None when either has no answer.
    """

    meeting_id: int
    case_id: int
    position: int
    pseudonym: str
    study_id: int | None
    days_since_admission: float | None
    reads: tuple[tuple[str, str], ...]
    room_read: str | None
    model_id: str | None
    model_version: str | None
    model_label: str | None
    model_probability: float | None
    model_threshold: float | None
    truth: str | None
    truth_source: str | None
    compared_on: str | None
    agrees: bool | None

    @property
    def disagrees(self) -> bool:
        return self.agrees is False

    def to_json(self) -> dict[str, Any]:
        return {
            "meeting_id": self.meeting_id,
            "case_id": self.case_id,
            "position": self.position,
            "pseudonym": self.pseudonym,
            "study_id": self.study_id,
            "days_since_admission": self.days_since_admission,
            "reads": [{"reader": r, "read": v} for r, v in self.reads],
            "room_read": self.room_read,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "model_label": self.model_label,
            "model_probability": self.model_probability,
            "model_threshold": self.model_threshold,
            "truth": self.truth,
            "truth_source": self.truth_source,
            "compared_on": self.compared_on,
            "agrees": self.agrees,
        }


@dataclass(frozen=True)
class ReaderFigures:
    """One reader's figures on one question (or every reader's, pooled: ``reader`` is
    :data:`ALL_READERS`).

    ``n_reads`` counts the reads that answer the question; ``vs_model`` is Cohen's kappa over
    those with a model label; ``accuracy`` and ``model_accuracy`` are over the reads whose
    case's truth is known (the model's over the same cases, where it gave a label);
    sensitivity and specificity (for COVID) exist on the binary question only.
    """

    reader: str
    n_reads: int
    vs_model: Agreement
    accuracy: Proportion
    model_accuracy: Proportion
    sensitivity: Proportion | None = None
    specificity: Proportion | None = None
    model_sensitivity: Proportion | None = None
    model_specificity: Proportion | None = None

    def to_json(self) -> dict[str, Any]:
        def maybe(p: Proportion | None) -> dict[str, Any] | None:
            return None if p is None else p.to_json()

        return {
            "reader": self.reader,
            "n_reads": self.n_reads,
            "vs_model": self.vs_model.to_json(),
            "accuracy": self.accuracy.to_json(),
            "model_accuracy": self.model_accuracy.to_json(),
            "sensitivity": maybe(self.sensitivity),
            "specificity": maybe(self.specificity),
            "model_sensitivity": maybe(self.model_sensitivity),
            "model_specificity": maybe(self.model_specificity),
        }


@dataclass(frozen=True)
class QuestionSummary:
    """The figures of one question: per reader, pooled, and between readers.

    ``note`` says how reads and labels were put on the question's scale (empty when nothing
    had to be mapped).
    """

    question: str
    labels: tuple[str, ...]
    note: str
    readers: tuple[ReaderFigures, ...]
    pooled: ReaderFigures
    between_readers: Agreement

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "labels": list(self.labels),
            "note": self.note,
            "readers": [r.to_json() for r in self.readers],
            "pooled": self.pooled.to_json(),
            "between_readers": self.between_readers.to_json(),
        }


@dataclass(frozen=True)
class MeetingSummary:
    """What one or several meetings concluded (see the module docstring).

    ``cases`` come with the cases where the room and the model disagreed first, then the rest,
    each group by meeting and position. ``questions`` has the binary question first, then the
    X-ray class where there are X-ray reads. ``truth_note`` and ``models_note`` say where the
    truth came from and which models the reads were compared with.
    """

    meeting_ids: tuple[int, ...]
    titles: tuple[str, ...]
    n_cases: int
    n_reads: int
    readers: tuple[str, ...]
    questions: tuple[QuestionSummary, ...]
    cases: tuple[CaseOutcome, ...]
    truth_note: str
    models_note: str

    @property
    def disagreements(self) -> tuple[CaseOutcome, ...]:
        """The cases where the room's read and the model's differ."""
        return tuple(c for c in self.cases if c.disagrees)

    def question(self, name: str) -> QuestionSummary | None:
        return next((q for q in self.questions if q.question == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "meeting_ids": list(self.meeting_ids),
            "titles": list(self.titles),
            "n_cases": self.n_cases,
            "n_reads": self.n_reads,
            "readers": list(self.readers),
            "n_disagreements": len(self.disagreements),
            "questions": [q.to_json() for q in self.questions],
            "cases": [c.to_json() for c in self.cases],
            "truth_note": self.truth_note,
            "models_note": self.models_note,
        }


@dataclass(frozen=True)
class _ReadRow:
    """A read with its case's facts, as the figures use it."""

    read: Read
    case: CaseOutcome


def _undefined_kappa(why: str) -> Agreement:
    return Agreement(_NAN, _NAN, _NAN, 0, _NAN, _NAN, "Cohen's kappa", reason=why)


def _undefined_proportion(why: str) -> Proportion:
    return replace(proportion(0, 0), reason=why)


def _kappa(a: Sequence[Hashable], b: Sequence[Hashable], labels: Sequence[str]) -> Agreement:
    if not a:
        return _undefined_kappa("No read has a model label to compare it with.")
    return cohen_kappa(a, b, labels)


def _accuracy(truth: Sequence[Hashable], called: Sequence[Hashable], who: str) -> Proportion:
    if not truth:
        return _undefined_proportion(f"No case with {who} has a known truth.")
    return accuracy(truth, called)


def _sens_spec(truth: Sequence[Hashable], called: Sequence[Hashable], who: str) -> tuple[Proportion, Proportion]:
    if not truth:
        none = _undefined_proportion(f"No case with {who} has a known truth.")
        return none, none
    return sensitivity_specificity(truth, called, COVID)


def _figures(reader: str, rows: Sequence[_ReadRow], question: str) -> ReaderFigures:
    """One reader's (or the pooled) figures on ``question`` from the rows that answer it."""
    to_scale, labels = _QUESTIONS[question]
    answered = [(to_scale(r.read.read), r) for r in rows]
    answered = [(v, r) for v, r in answered if v is not None]
    pairs = [(v, to_scale(r.read.model_label)) for v, r in answered]
    pairs = [(v, m) for v, m in pairs if m is not None]
    with_truth = [(v, to_scale(r.case.truth)) for v, r in answered]
    with_truth = [(v, t) for v, t in with_truth if t is not None]
    model_truth = [(to_scale(r.read.model_label), to_scale(r.case.truth)) for _, r in answered]
    model_truth = [(m, t) for m, t in model_truth if m is not None and t is not None]
    figures = ReaderFigures(
        reader=reader,
        n_reads=len(answered),
        vs_model=_kappa([v for v, _ in pairs], [m for _, m in pairs], labels),
        accuracy=_accuracy([t for _, t in with_truth], [v for v, _ in with_truth], "a read"),
        model_accuracy=_accuracy([t for _, t in model_truth], [m for m, _ in model_truth], "a model label"),
    )
    if question != COVID_QUESTION:
        return figures
    sens, spec = _sens_spec([t for _, t in with_truth], [v for v, _ in with_truth], "a read")
    m_sens, m_spec = _sens_spec([t for _, t in model_truth], [m for m, _ in model_truth], "a model label")
    return replace(figures, sensitivity=sens, specificity=spec, model_sensitivity=m_sens, model_specificity=m_spec)


def _between_readers(rows: Sequence[_ReadRow], question: str) -> Agreement:
    """Fleiss' kappa over the cases read by the most common number of readers (two or more)."""
    to_scale, labels = _QUESTIONS[question]
    per_case: dict[tuple[int, int], list[str]] = {}
    for r in rows:
        value = to_scale(r.read.read)
        if value is not None:
            per_case.setdefault((r.case.meeting_id, r.case.case_id), []).append(value)
    if not per_case:
        return Agreement(_NAN, _NAN, _NAN, 0, _NAN, _NAN, "Fleiss' kappa", n_raters=0, reason="No reads.")
    try:
        table = rating_counts(list(per_case.values()), labels, keep="most_common")
    except InvalidInputError as e:
        return Agreement(_NAN, _NAN, _NAN, 0, _NAN, _NAN, "Fleiss' kappa", n_raters=0, reason=str(e))
    result = fleiss_kappa(table.counts, n_boot=FLEISS_RESAMPLES)
    if table.dropped:
        note = (
            f"Over the {len(table.cases)} cases read by {table.n_raters} readers; {table.dropped} read by another "
            "number of readers are left out."
        )
        result = replace(result, reason=" ".join(x for x in (note, result.reason) if x))
    return result


def _question(rows: Sequence[_ReadRow], readers: Sequence[str], question: str, note: str) -> QuestionSummary:
    _, labels = _QUESTIONS[question]
    return QuestionSummary(
        question=question,
        labels=tuple(labels),
        note=note,
        readers=tuple(_figures(name, [r for r in rows if r.read.reader == name], question) for name in readers),
        pooled=_figures(ALL_READERS, rows, question),
        between_readers=_between_readers(rows, question),
    )


def _truth(patient: Patient, study: Study | None) -> tuple[str | None, str | None]:
    if study is not None and study.label:
        return study.label, "study"
    if patient.summary.label:
        return patient.summary.label, "patient"
    return None, None


def _majority(reads: Sequence[str]) -> str | None:
    top = Counter(reads).most_common(2)
    if not top or (len(top) == 2 and top[0][1] == top[1][1]):
        return None
    return top[0][0]


def _compare(room: str | None, model: str | None) -> tuple[str | None, bool | None]:
    """Where the room's read and the model's label meet, and whether they agree there."""
    if room is None or model is None:
        return None, None
    if xray_class(room) is not None and xray_class(model) is not None:
        return XRAY_QUESTION, room == model
    a, b = covid_or_not(room), covid_or_not(model)
    if a is None or b is None:
        return None, None
    return COVID_QUESTION, a == b


def _models_note(reads: Sequence[Read]) -> str:
    used = sorted({(r.model_id, r.model_version) for r in reads if r.model_id})
    if not used:
        return "No read was compared with a model."
    without = sum(1 for r in reads if r.model_label is None)
    text = "Reads compared with " + ", ".join(f"{m} (version {v})" for m, v in used) + "."
    if without:
        text += f" {without} of {len(reads)} reads have no model label (no model named, or the model gave none)."
    return text


def meeting_summary(library: CaseLibrary, meeting_ids: Sequence[int]) -> MeetingSummary:
    """The summary of one or several meetings' reads (see the module docstring).

    Raises
    ------
    InvalidInputError
        No meeting given, or a meeting that is not in the library.
    """
    ids = tuple(dict.fromkeys(int(m) for m in meeting_ids))
    if not ids:
        raise InvalidInputError("Name at least one meeting to summarise.")
    meetings = [library.meeting(m) for m in ids]
    patients: dict[str, Patient] = {}
    cases: list[CaseOutcome] = []
    rows: list[_ReadRow] = []
    all_reads: list[Read] = []
    sources: Counter[str | None] = Counter()
    for meeting in meetings:
        reads = library.reads(meeting.id)
        all_reads += reads
        for c in meeting.cases:
            patient = patients.get(c.pseudonym) or patients.setdefault(c.pseudonym, library.patient(c.pseudonym))
            study = next((s for s in patient.studies if s.id == c.study_id), None)
            truth, source = _truth(patient, study)
            sources[source] += 1
            mine = [r for r in reads if r.meeting_case_id == c.id]
            with_model = [r for r in mine if r.model_id]
            last = max(with_model, key=lambda r: (r.at, r.id)) if with_model else None
            room = _majority([r.read for r in mine])
            model_label = None if last is None else last.model_label
            compared_on, agrees = _compare(room, model_label)
            outcome = CaseOutcome(
                meeting_id=meeting.id,
                case_id=c.id,
                position=c.position,
                pseudonym=c.pseudonym,
                study_id=c.study_id,
                days_since_admission=None if study is None else study.offset_admission_days,
                reads=tuple((r.reader, r.read) for r in mine),
                room_read=room,
                model_id=None if last is None else last.model_id,
                model_version=None if last is None else last.model_version,
                model_label=model_label,
                model_probability=None if last is None else last.model_probability,
                model_threshold=None if last is None else last.model_threshold,
                truth=truth,
                truth_source=source,
                compared_on=compared_on,
                agrees=agrees,
            )
            cases.append(outcome)
            rows += [_ReadRow(r, outcome) for r in mine]
    readers = tuple(dict.fromkeys(r.read.reader for r in rows))
    xray_reads = [r for r in rows if xray_class(r.read.read) is not None]
    binary_note = (
        "X-ray reads, models' X-ray classes and truths are put on this scale: COVID-19 is COVID, every other "
        "class is not COVID."
        if xray_reads
        else ""
    )
    questions = [_question(rows, readers, COVID_QUESTION, binary_note)]
    if xray_reads:
        questions.append(
            _question(
                xray_reads,
                tuple(dict.fromkeys(r.read.reader for r in xray_reads)),
                XRAY_QUESTION,
                "X-ray reads only; a model label or truth outside Normal, Viral pneumonia and COVID-19 (e.g. "
                "'Pneumonia (non-COVID)', a pneumonia of any cause) is left out of this question.",
            )
        )
    truth_note = (
        "Truth: the study's label where the case is a study that has one, else the patient's diagnosis in the "
        f"library ({sources['study']} cases from the study, {sources['patient']} from the patient, "
        f"{sources[None]} unknown)."
    )
    ordered = sorted(cases, key=lambda c: (not c.disagrees, ids.index(c.meeting_id), c.position))
    return MeetingSummary(
        meeting_ids=ids,
        titles=tuple(m.title for m in meetings),
        n_cases=len(cases),
        n_reads=len(rows),
        readers=readers,
        questions=tuple(questions),
        cases=tuple(ordered),
        truth_note=truth_note,
        models_note=_models_note(all_reads),
    )


#: The columns of :func:`reads_csv`, one row per read.
EXPORT_COLUMNS: tuple[str, ...] = (
    "meeting",
    "position",
    "pseudonym",
    "study",
    "days_since_admission",
    "reader",
    "read",
    "confidence",
    "agrees_with_model",
    "comment",
    "model_id",
    "model_version",
    "model_label",
    "model_probability",
    "model_threshold",
    "truth",
    "truth_source",
    "recorded_at",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell_text(text: str) -> str:
    """Free text for a spreadsheet: a leading ``'`` where the text would start a formula."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def export_rows(library: CaseLibrary, meeting_id: int) -> list[dict[str, Any]]:
    """One row per read of a meeting (:data:`EXPORT_COLUMNS`), by case in presentation order.

    Nothing names or dates the patient: the case is known by its pseudonym, study id and days
    since admission; the only names are the readers'. The reader's comment is free text as they
    typed it (the page asks them not to type a patient's name). ``recorded_at`` is when the read
    was recorded (UTC), not a date of the patient.
    """
    summary = meeting_summary(library, [meeting_id])
    outcomes = {c.case_id: c for c in summary.cases}
    rows = []
    for r in library.reads(meeting_id):
        c = outcomes[r.meeting_case_id]
        rows.append(
            {
                "meeting": c.meeting_id,
                "position": c.position,
                "pseudonym": c.pseudonym,
                "study": c.study_id,
                "days_since_admission": c.days_since_admission,
                "reader": r.reader,
                "read": r.read,
                "confidence": r.confidence,
                "agrees_with_model": r.agrees_with_model,
                "comment": r.comment,
                "model_id": r.model_id,
                "model_version": r.model_version,
                "model_label": r.model_label,
                "model_probability": r.model_probability,
                "model_threshold": r.model_threshold,
                "truth": c.truth,
                "truth_source": c.truth_source,
                "recorded_at": r.at,
            }
        )
    return rows


def reads_csv(library: CaseLibrary, meeting_id: int) -> str:
    """A meeting's reads as CSV text (:func:`export_rows`): empty cells for what is not known,
    yes/no for whether the reader agreed with the model, free text kept from starting a
    spreadsheet formula."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in export_rows(library, meeting_id):
        agrees = row["agrees_with_model"]
        writer.writerow(
            row
            | {
                "agrees_with_model": "" if agrees is None else ("yes" if agrees else "no"),
                "reader": _cell_text(row["reader"]),
                "comment": _cell_text(row["comment"]),
            }
        )
    return out.getvalue()


def _interval(value: float, low: float, high: float, digits: str) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:{digits}} ({low:{digits}} to {high:{digits}})"


def kappa_text(a: Agreement) -> str:
    """A kappa as the CLI and the page write it: "0.40 (0.15 to 0.65) n=50", "-" when undefined."""
    return _interval(a.kappa, a.ci_low, a.ci_high, ".2f") + (f" n={a.n}" if a.n else "")


def share_text(p: Proportion | None) -> str:
    """A proportion with its interval: "8/10 80% (49% to 94%)", "-" when nothing was counted."""
    if p is None:
        return ""
    return "-" if not p.defined else f"{p.successes}/{p.n} " + _interval(p.estimate, p.ci_low, p.ci_high, ".0%")
