"""The HTML case report: escaped, self-contained, plotly.js inlined once, deterministic; and the
identifiers read from DICOM bytes."""

from __future__ import annotations

import base64
import datetime
import html
import io
import re

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from core.demo.dicom_writer import DicomPatient, DicomStudy, new_uid, xray_dicom_bytes
from core.explain.overlay import png_bytes
from core.report import (
    DICOM_IDENTIFIER_KEYWORDS,
    IDENTIFIERS_HEADING,
    CaseReport,
    ReportImage,
    ReportPrediction,
    ReportSection,
    dicom_identifier_items,
    dicom_identifiers,
    render_report,
    report_bytes,
    report_filename,
    report_filename_for,
)

ATTACK = "<script>alert(1)</script>"
EXTERNAL = re.compile(r'(?:src|href)\s*=\s*["\']https?://')


def _png(seed: int, shape: tuple[int, ...] = (24, 32, 3)) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _figure(title: str) -> str:
    fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[0.2, 0.9, 0.4], name=ATTACK))
    fig.update_layout(title=title, height=300)
    return fig.to_json()


def _report(**changes) -> CaseReport:
    base = CaseReport(
        title="Case review: P-3f9a2c",
        pseudonym="P-3f9a2c",
        created="2024-05-02",
        predictions=(
            ReportPrediction("cxr-resnet18", "2024-01", "COVID-19 93.0% (Normal 2.0%, Viral pneumonia 5.0%)"),
            ReportPrediction("covid3d", "2024-02", "COVID+ 88.0%", calibrated=True),
        ),
        sections=(
            ReportSection(
                "Radiograph",
                text="First paragraph.\nSame paragraph.\n\nSecond paragraph.",
                images=(ReportImage("Radiograph", _png(0)), ReportImage("Grad-CAM overlay", _png(1))),
                table=(("Finding", "P(present)"), ("Consolidation", "91%")),
            ),
            ReportSection("Over time", figure_json=_figure("Score s(t)")),
            ReportSection("Survival", figure_json=_figure("Kaplan-Meier")),
        ),
        notes=(("day 3", "Bilateral GGO, lower zones."), ("day 7", "Improving.")),
    )
    return CaseReport(**{**base.__dict__, **changes})


def _without_bundle(document: str) -> str:
    return document.replace(get_plotlyjs(), "")


def test_every_caller_string_is_escaped() -> None:
    report = _report(
        title=f"Case {ATTACK}",
        pseudonym=f"P-{ATTACK}",
        created=ATTACK,
        predictions=(ReportPrediction(ATTACK, ATTACK, ATTACK),),
        sections=(
            ReportSection(
                ATTACK,
                text=ATTACK,
                images=(ReportImage(ATTACK + '" onerror="alert(2)', _png(0)),),
                table=((ATTACK, "h"), (ATTACK, "<b>bold</b>")),
            ),
        ),
        notes=((ATTACK, ATTACK),),
        identifiers=(("PatientName", ATTACK),),
        disclaimer=ATTACK,
    )
    document = render_report(report)
    assert "<script" not in document  # no figure: no script at all
    assert "alert(1)" in document and html.escape(ATTACK) in document
    assert "<b>bold</b>" not in document and "&lt;b&gt;bold&lt;/b&gt;" in document
    assert 'onerror="alert(2)"' not in document  # the quote in the caption cannot end the alt attribute


def test_only_plotly_scripts_run_and_figure_text_cannot_close_them() -> None:
    report = _report(sections=(ReportSection("Figure", figure_json=_figure(f"</script>{ATTACK}")),))
    document = render_report(report)
    scripts = re.findall(r"<script\b[^>]*>", document)
    assert scripts == ["<script>", "<script>"]  # the bundle, the figure's Plotly.newPlot
    assert ATTACK not in _without_bundle(document)
    assert "</script>" + ATTACK not in document


def test_the_report_is_self_contained() -> None:
    document = render_report(_report())
    assert EXTERNAL.findall(_without_bundle(document)) == []
    assert not re.search(r"<script[^>]+src\s*=", document)
    assert "<link" not in document and "@import" not in document and "url(" not in _without_bundle(document)
    assert "cdn.plot.ly" not in _without_bundle(document)


def test_the_installed_plotly_js_is_inlined_once_for_two_figures() -> None:
    document = render_report(_report())
    bundle = get_plotlyjs()
    assert document.count(bundle) == 1
    assert document.index(bundle) < document.index("</head>")
    assert document.count("Plotly.newPlot(") == 2
    assert 'id="report-figure-1"' in document and 'id="report-figure-2"' in document


def test_without_a_figure_no_plotly_js_is_inlined() -> None:
    report = _report(sections=(ReportSection("Radiograph", images=(ReportImage("x", _png(0)),)),))
    document = render_report(report)
    assert "<script" not in document
    assert len(document) < 20_000


def test_images_are_png_data_uris_that_decode_to_the_same_bytes() -> None:
    pngs = [_png(0), _png(1)]
    document = render_report(_report())
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">', document)
    assert [base64.b64decode(data) for data, _ in found] == pngs
    assert [alt for _, alt in found] == ["Radiograph", "Grad-CAM overlay"]
    assert "<figcaption>Grad-CAM overlay</figcaption>" in document


def test_header_predictions_sections_and_notes_are_shown_in_order() -> None:
    document = render_report(_report())
    assert document.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in document and "@media print" in document
    order = [
        "Case review: P-3f9a2c",
        "2024-05-02",
        "Demo weights trained on synthetic phantoms",
        "Model predictions",
        "Radiograph",
        "Over time",
        "Survival",
        "Notes",
    ]
    positions = [_without_bundle(document).index(text) for text in order]
    assert positions == sorted(positions)
    assert "<td>uncalibrated</td>" in document and "<td>calibrated</td>" in document
    assert "<p>First paragraph.<br>Same paragraph.</p><p>Second paragraph.</p>" in document
    assert '<li><span class="when">day 3</span>Bilateral GGO, lower zones.</li>' in document
    assert '<th scope="col">Finding</th>' in document and "<td>Consolidation</td>" in document


def test_the_identifiers_box_appears_only_when_identifiers_are_given() -> None:
    assert IDENTIFIERS_HEADING not in render_report(_report())
    assert "MRN12345" not in render_report(_report())
    document = render_report(_report(identifiers=(("PatientID", "MRN12345"), ("PatientName", "Doe^Jane"))))
    assert IDENTIFIERS_HEADING == "Identifiers (included on request)"
    box = re.search(r'<section class="identifiers".*?</section>', document)
    assert box and "<td>MRN12345</td>" in box.group(0) and "<td>Doe^Jane</td>" in box.group(0)


@pytest.mark.parametrize(
    "pseudonym,expected",
    [
        ("P-3f9a2c", "case-report-P-3f9a2c.html"),
        ("upload-0123abcd", "case-report-upload-0123abcd.html"),
        ("Doe, Jane / MRN 12", "case-report-Doe-Jane-MRN-12.html"),
        ("../../etc/passwd", "case-report-etc-passwd.html"),
        ("Zoë <x>", "case-report-Zo-x.html"),
        ("...", "case-report.html"),
        ("", "case-report.html"),
        ("a" * 200, "case-report-" + "a" * 80 + ".html"),
    ],
)
def test_file_names_are_sanitised(pseudonym: str, expected: str) -> None:
    name = report_filename(_report(pseudonym=pseudonym))
    assert name == expected == report_filename_for(pseudonym)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)


def test_the_same_report_gives_the_same_bytes() -> None:
    first = report_bytes(_report())
    assert first == report_bytes(_report())
    assert first == render_report(_report()).encode("utf-8")
    assert first.decode("utf-8")  # UTF-8 throughout


def test_a_broken_figure_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="plotly figure"):
        render_report(_report(sections=(ReportSection("x", figure_json="{not json"),)))


# --------------------------------------------------------------------------------------------
# Identifiers in DICOM bytes

PATIENT = DicomPatient(
    "Doe^Jane", "MRN12345", "19600102", "F", 64, address="1 Main St", institution="St Elsewhere & Co"
)
STUDY = DicomStudy(new_uid("report-test"), "ACC998877", datetime.date(2020, 4, 2), referring_physician="Who^Doctor")


def _xray_dicom() -> bytes:
    return xray_dicom_bytes(np.linspace(0, 1, 32 * 32).reshape(32, 32), 0.2, PATIENT, STUDY)


def test_dicom_identifiers_lists_the_identifying_values() -> None:
    raw = _xray_dicom()
    items = dict(dicom_identifier_items(raw))
    assert items["PatientName"] == "Doe^Jane"
    assert items["PatientID"] == "MRN12345"
    assert items["PatientBirthDate"] == "19600102"
    assert items["AccessionNumber"] == "ACC998877"
    assert items["InstitutionName"] == "St Elsewhere & Co"
    assert items["ReferringPhysicianName"] == "Who^Doctor"
    assert items["StudyDate"] == "20200402"
    assert items["StudyInstanceUID"] == STUDY.study_uid
    assert items["PatientAddress"] == "1 Main St"
    assert set(items) <= set(DICOM_IDENTIFIER_KEYWORDS) and {"SeriesInstanceUID", "SOPInstanceUID"} <= set(items)
    assert dicom_identifiers(raw) == [value for _, value in dicom_identifier_items(raw)]
    assert [k for k, _ in dicom_identifier_items(raw)] == [k for k in DICOM_IDENTIFIER_KEYWORDS if k in items]


def test_multi_valued_and_empty_identifiers() -> None:
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_xray_dicom()))
    ds.OtherPatientIDs = ["OLD-1", "OLD-2"]
    ds.PatientBirthDate = ""
    buffer = io.BytesIO()
    ds.save_as(buffer)
    items = dicom_identifier_items(buffer.getvalue())
    assert ("OtherPatientIDs", "OLD-1") in items and ("OtherPatientIDs", "OLD-2") in items
    assert "PatientBirthDate" not in dict(items)


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x89PNG\r\n\x1a\n" + bytes(100), bytes(range(256)) * 8, b"DICM", bytes(128) + b"DICM" + b"\xff" * 50],
    ids=["empty", "png", "noise", "magic-only", "broken-header"],
)
def test_non_dicom_or_unreadable_bytes_give_no_identifiers(raw: bytes) -> None:
    assert dicom_identifiers(raw) == []


def test_a_truncated_dicom_never_raises() -> None:
    raw = _xray_dicom()
    for cut in (10, 132, 200, 400, len(raw) // 2):
        assert isinstance(dicom_identifiers(raw[:cut]), list)


def test_accented_names_are_decoded_with_the_files_character_set() -> None:
    patient = DicomPatient("Müller^Zoë", "MRN-ä1", "19600102", "F", 64)
    raw = xray_dicom_bytes(np.zeros((8, 8)), 0.2, patient, STUDY)
    items = dict(dicom_identifier_items(raw))
    assert items["PatientName"] == "Müller^Zoë" and items["PatientID"] == "MRN-ä1"


def test_invalid_identifier_values_are_read_without_reaching_logs_or_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging
    import warnings

    import pydicom

    ds = pydicom.dcmread(io.BytesIO(_xray_dicom()))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Values that pydicom's validation would report verbatim when converting them.
        ds["StudyInstanceUID"].value = "1.2.3.MRN12345abc"
        ds["PatientBirthDate"].value = "1960-01-02 Jane"
        ds["PatientName"].value = "Doe^Jane" + "x" * 70
        ds.save_as(buffer)
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        values = dicom_identifiers(buffer.getvalue())
    assert "1.2.3.MRN12345abc" in values and "1960-01-02 Jane" in values
    said = " ".join([r.getMessage() for r in caplog.records] + [str(w.message) for w in caught])
    assert "MRN12345" not in said and "Jane" not in said
