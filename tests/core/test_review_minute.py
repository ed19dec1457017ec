"""The meeting's minute: one HTML file that opens offline with the summary figures, every case
(the room's disagreements with the model first) with its images, what it hid, the model's
outputs beside their thresholds, and its reads and comments; written by ``meeting export --html``."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from PIL import Image

from core.case_reports.common import REPORT_IMAGE_MAX_SIDE
from core.library.store import open_library
from core.models.registry import ModelRegistry
from core.review.minute import meeting_minute, minute_filename, model_output_text, shown_studies
from core.review.model_read import model_read
from core.review.summary import kappa_text, meeting_summary
from tests.cli_helpers import assert_one_line_error, run
from tests.ct_helpers import register_tiny_ct_model
from tests.helpers import register_tiny_model

MEETING_DATE = "2026-03-06"
#: A comment with characters HTML must escape.
COMMENT = 'bilateral <lower> zones & "GGO"'


@dataclass(frozen=True)
class Built:
    root: Path
    weights: Path
    meeting_id: int
    xray: str  # the pseudonym of the X-ray study case (position 1: the room agreed with the model)
    ct: str  # of the CT study case (position 2: the room disagreed)
    whole: str  # of the whole-patient case (position 3: no reads)
    html: str


@pytest.fixture(scope="module")
def built(demo_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A copy of the test demo library with a meeting of three cases, two of them read by two
    readers against stored model outputs, and its minute, made with tiny untrained models."""
    weights = tmp_path_factory.mktemp("minute-weights")
    register_tiny_model(weights, "cxr-resnet18")
    register_tiny_ct_model(weights, "covid3d-tiny", thresholds={"covid": 0.5})
    root = tmp_path_factory.mktemp("minute") / "library"
    shutil.copytree(demo_library, root)
    lib = open_library(root)
    patients = [lib.patient(p.pseudonym) for p in lib.patients()]
    with_ct = [p for p in patients if any(s.modality == "CT" and s.images for s in p.studies)]
    ct_patient = with_ct[0]
    whole = next(p for p in with_ct[1:] if any(s.modality == "X-ray" for s in p.studies))
    xray_patient = next(p for p in patients if p not in (ct_patient, whole))
    xray_study = next(s for s in xray_patient.studies if s.modality == "X-ray")
    ct_study = next(s for s in ct_patient.studies if s.modality == "CT")

    mid = lib.create_meeting("Friday <review>", MEETING_DATE)
    a = lib.add_to_meeting(mid, xray_patient.pseudonym, xray_study.id, ["diagnosis", "outcome"]).id
    b = lib.add_to_meeting(mid, ct_patient.pseudonym, ct_study.id, ["diagnosis", "notes", "model outputs"]).id
    lib.add_to_meeting(mid, whole.pseudonym, None, [])
    cxr = ("cxr-resnet18", "test-1", "COVID-19", 0.62, None)
    lib.add_read(a, "Dr Ann", "COVID-19", 4, True, COMMENT, *cxr)
    lib.add_read(a, "Dr Bob", "COVID-19", 3, True, "", *cxr)
    ct3d = ("covid3d-tiny", "test-1", "not COVID", 0.31, 0.5)
    lib.add_read(b, "Dr Ann", "COVID", 5, False, "peripheral ground glass", *ct3d)
    lib.add_read(b, "Dr Bob", "COVID", 2, False, "", *ct3d)
    text = meeting_minute(lib, mid, ModelRegistry(weights, device=torch.device("cpu")))
    return Built(root, weights, mid, xray_patient.pseudonym, ct_patient.pseudonym, whole.pseudonym, text)


def visible_text(document: str) -> str:
    """What a reader of the file sees: the body's text, tags dropped and entities decoded."""
    body = document.split("<body>", 1)[-1]
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body)))


def case_sections(document: str) -> dict[int, str]:
    """Each case's section of the document by its position in the meeting, in document order."""
    found = re.findall(r'<section class="case" id="case-(\d+)">(.*?)</section>', document, flags=re.S)
    return {int(position): section for position, section in found}


def test_the_minute_is_one_file_that_needs_nothing_else(built: Built) -> None:
    doc = built.html
    assert doc.startswith("<!DOCTYPE html>")
    # Nothing is fetched: no external address, no script, no style sheet or font to load.
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:|//)""", doc, flags=re.I)
    assert "<script" not in doc.lower() and "<link" not in doc.lower()
    assert "@import" not in doc and "url(" not in doc
    sources = re.findall(r'<img src="([^"]*)"', doc)
    # The X-ray case, the CT case, and the whole patient's latest X-ray and CT.
    assert len(sources) == 4
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.removeprefix("data:image/png;base64,"))))
        assert image.format == "PNG" and max(image.size) <= REPORT_IMAGE_MAX_SIDE
    assert minute_filename(open_library(built.root).meeting(built.meeting_id)) == (
        f"meeting-{built.meeting_id}-minute.html"
    )


def test_every_case_its_reads_and_comments_are_in_it(built: Built) -> None:
    doc = built.html
    text = visible_text(doc)
    assert "Meeting minute: Friday <review>" in text and "Meeting date 2026-03-06" in text
    sections = case_sections(doc)
    assert set(sections) == {1, 2, 3}
    for position, pseudonym, what in (
        (1, built.xray, "one study"),
        (2, built.ct, "one study"),
        (3, built.whole, "whole patient"),
    ):
        assert f"Case {position} of 3: {pseudonym} ({what})" in visible_text(sections[position])
    first = visible_text(sections[1])
    # The comment is shown as typed, escaped in the file (no tag from a reader's text).
    assert COMMENT in first and "<lower>" not in sections[1]
    assert "Dr Ann COVID-19 4 of 5 yes" in first and "Dr Bob COVID-19 3 of 5 yes -" in first
    assert "cxr-resnet18 test-1" in first
    second = visible_text(sections[2])
    assert "Dr Ann COVID 5 of 5 no peripheral ground glass covid3d-tiny test-1" in second
    assert "No reads recorded." in visible_text(sections[3])
    # What each case hid, now stated: the truth of the X-ray study, the patient's outcome, its notes.
    lib = open_library(built.root)
    xray = lib.patient(built.xray)
    case = lib.meeting(built.meeting_id).cases[0]
    study = next(s for s in xray.studies if s.id == case.study_id)
    assert "Hidden: diagnosis, outcome (not revealed in the meeting)." in first
    assert f"Diagnosis {study.label} (the study's label)" in first
    if study.note:
        assert study.note in first
    # Days since admission name each study shown; nothing else dates it.
    assert f"X-ray, day {study.offset_admission_days:g} since admission" in first


def test_the_cases_where_the_room_and_the_model_disagreed_come_first(built: Built) -> None:
    sections = case_sections(built.html)
    assert list(sections) == [2, 1, 3]
    assert "room and model disagreed" in sections[2]
    assert "room and model disagreed" not in sections[1] + sections[3]
    text = visible_text(built.html)
    assert "Cases: the 1 where the room and the model disagreed first" in text
    assert "Room and model disagreed 1 of 3 cases" in text


def test_every_model_probability_stands_beside_its_threshold(built: Built) -> None:
    text = visible_text(built.html)
    outputs = list(re.finditer(r"(COVID-19|Normal|Viral pneumonia|not COVID|COVID) (\d+(?:\.\d+)?%)", text))
    assert len(outputs) >= 6  # the stored outputs in the table, the cases and the reads, and the live reads
    for m in outputs:
        after = text[m.end() : m.end() + 16]
        assert after.startswith((" (threshold ", " (no threshold")), text[m.start() - 60 : m.end() + 60]
    assert "not COVID 31.0% (threshold 50%)" in text
    assert "COVID-19 62.0% (no threshold: the most probable of its 3 classes)" in text


def test_the_model_read_now_is_the_model_read_of_the_study(built: Built) -> None:
    """The whole patient had no read: the minute reads each study shown with the model the pages
    show first, and says what :func:`model_read` says of it."""
    lib = open_library(built.root)
    registry = ModelRegistry(built.weights, device=torch.device("cpu"))
    case = next(c for c in lib.meeting(built.meeting_id).cases if c.position == 3)
    section = visible_text(case_sections(built.html)[3])
    studies = shown_studies(lib.patient(case.pseudonym), case)
    assert sorted(s.modality for s in studies) == ["CT", "X-ray"]
    for study in studies:
        read = model_read(lib, dataclasses.replace(case, study_id=study.id), registry)
        n = len(registry.card(read.model_id).labels)
        said = model_output_text(read.label, read.probability, read.threshold, n)
        assert f"read now: {read.model_id} test-1, {said}" in section


def test_the_summary_figures_are_in_it(built: Built) -> None:
    text = visible_text(built.html)
    summary = meeting_summary(open_library(built.root), [built.meeting_id])
    assert summary.questions
    for q in summary.questions:
        assert f"{q.question} ({', '.join(q.labels)})" in text
        for f in (*q.readers, q.pooled):
            assert f"{f.reader} {f.n_reads} {kappa_text(f.vs_model)}" in text
        assert f"Between readers (Fleiss' kappa, 95% CI): {kappa_text(q.between_readers)}" in text
    assert summary.truth_note in text and summary.models_note in text


def test_the_only_calendar_date_is_the_meetings(built: Built) -> None:
    text = visible_text(built.html)
    assert set(re.findall(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{8}\b", text)) == {MEETING_DATE}
    assert re.search(r"\d\d:\d\d UTC", text)  # each read's time of day


def test_meeting_export_writes_the_minute_and_refuses_no_format(built: Built, tmp_path: Path, capsys) -> None:
    lib = ("--library", str(built.root))
    mid = str(built.meeting_id)
    path, csv_path = tmp_path / "minute.html", tmp_path / "reads.csv"
    status, out, err = run(
        capsys,
        "meeting",
        "export",
        mid,
        "--html",
        str(path),
        "--csv",
        str(csv_path),
        "--weights",
        str(built.weights),
        *lib,
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == f"4 reads of meeting {mid} written to {csv_path}"
    assert lines[1].startswith(f"minute of meeting {mid} (3 cases, ") and f"written to {path}" in lines[1]
    written = path.read_text(encoding="utf-8")
    assert written.startswith("<!DOCTYPE html>") and list(case_sections(written)) == [2, 1, 3]
    assert csv_path.read_text(encoding="utf-8").count("\n") == 5

    assert_one_line_error(*run(capsys, "meeting", "export", mid, *lib), "--csv", "--html")
    missing = tmp_path / "no-such-folder" / "minute.html"
    assert_one_line_error(*run(capsys, "meeting", "export", mid, "--html", str(missing), *lib), "could not write")
    assert not missing.parent.exists()


def test_a_library_without_the_meeting_is_refused(built: Built, capsys) -> None:
    lib = ("--library", str(built.root))
    assert_one_line_error(*run(capsys, "meeting", "export", "999", "--html", "x.html", *lib), "no meeting 999")
