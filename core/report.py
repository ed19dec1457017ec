"""A self-contained HTML case report for a case-review meeting.

One file that opens offline: images travel as base64 ``data:`` URIs, plotly figures are drawn
by the installed plotly's own plotly.js bundle, inlined once in the document head (only when
the report has a figure), and nothing refers to an external URL. The builder reads no clock
and draws no random number, so the same :class:`CaseReport` always gives the same bytes.

Every caller-given string (titles, captions, notes, table cells, identifiers) is HTML-escaped.
Identifiers appear only when the caller passes them (the user asked for them explicitly), in a
box headed "Identifiers (included on request)"; :func:`dicom_identifiers` lists a DICOM file's
identifying values so that pages can offer them and tests can check a report holds none.

Examples
--------
>>> report = CaseReport(title="Case review: P-3f9a2c", pseudonym="P-3f9a2c", created="2024-05-02")
>>> render_report(report).startswith("<!DOCTYPE html>")
True
>>> report_filename(report)
'case-report-P-3f9a2c.html'
"""

from __future__ import annotations

import base64
import datetime
import html
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from io import BytesIO

__all__ = [
    "DICOM_IDENTIFIER_KEYWORDS",
    "REPORT_CSS",
    "CaseReport",
    "ReportImage",
    "ReportPrediction",
    "ReportSection",
    "dicom_identifier_items",
    "dicom_identifiers",
    "escape_html",
    "html_image",
    "html_paragraphs",
    "html_table",
    "render_report",
    "report_bytes",
    "report_filename",
    "report_filename_for",
]

logger = logging.getLogger(__name__)

#: DICOM keywords whose values identify a patient, a visit or an instance.
DICOM_IDENTIFIER_KEYWORDS: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "OtherPatientIDs",
    "AccessionNumber",
    "InstitutionName",
    "ReferringPhysicianName",
    "StudyDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "StudyID",
    "PatientAddress",
)

IDENTIFIERS_HEADING = "Identifiers (included on request)"
_DEFAULT_DISCLAIMER = "Demo weights trained on synthetic phantoms; not for clinical use."
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FILENAME_STEM = 80
_FIGURE_HEIGHT_PX = 420  # when the figure's layout sets none
_SPECIFIC_CHARACTER_SET = 0x00080005
_TEXT_DELIMITERS = {0x5C}  # "\\" between values; as pydicom decodes text
_PN_DELIMITERS = {0x5C, 0x3D, 0x5E}  # and "=", "^" between a person name's groups and parts


# --------------------------------------------------------------------------------------------
# What a report holds


@dataclass(frozen=True)
class ReportImage:
    """An image already rendered as PNG (e.g. a radiograph with its Grad-CAM overlay)."""

    caption: str
    png: bytes


@dataclass(frozen=True)
class ReportPrediction:
    """One model's output, in words, with the model's id and version.

    ``calibrated`` says whether the probability is temperature-calibrated; the report says so
    next to each row.
    """

    model_id: str
    model_version: str
    output: str  # e.g. "COVID-19 0.93 (Normal 0.02, Viral pneumonia 0.05)"
    calibrated: bool = False


@dataclass(frozen=True)
class ReportSection:
    """A titled part of the report: text, then images, then a figure, then a table.

    ``text`` is plain text: paragraphs are separated by blank lines. ``figure_json`` is a
    plotly figure as JSON (``fig.to_json()``), drawn interactive. ``table``'s first row is its
    header.
    """

    title: str
    text: str = ""
    images: tuple[ReportImage, ...] = ()
    figure_json: str | None = None
    table: tuple[tuple[str, ...], ...] = ()


@dataclass(frozen=True)
class CaseReport:
    """Everything one report shows. ``created`` is an ISO date given by the caller (the builder
    reads no clock). ``notes`` are ``(when, text)`` pairs. ``identifiers`` are ``(field,
    value)`` pairs, given only when the user asked for them."""

    title: str  # e.g. "Case review: P-3f9a2c"
    pseudonym: str  # what identifies the case in the meeting
    created: str
    predictions: tuple[ReportPrediction, ...] = ()
    sections: tuple[ReportSection, ...] = ()
    notes: tuple[tuple[str, str], ...] = ()
    identifiers: tuple[tuple[str, str], ...] = ()
    disclaimer: str = _DEFAULT_DISCLAIMER


# --------------------------------------------------------------------------------------------
# Rendering


def render_report(report: CaseReport) -> str:
    """The whole report as one HTML document (``<!DOCTYPE html>``, UTF-8).

    Parameters
    ----------
    report
        What to show; every string in it is escaped.

    Returns
    -------
    str
        A self-contained document: inline CSS, images as ``data:image/png;base64`` URIs, and,
        when a section has a figure, the installed plotly.js inlined once in the head.

    Raises
    ------
    ValueError
        A section's ``figure_json`` is not a valid plotly figure.
    """
    figure_sections = [s for s in report.sections if s.figure_json is not None]
    head_script = f"<script>{_plotly_bundle()}</script>\n" if figure_sections else ""
    body = [_header(report)]
    if report.identifiers:
        body.append(_identifiers(report.identifiers))
    if report.predictions:
        body.append(_predictions(report.predictions))
    figure_number = 0
    for section in report.sections:
        if section.figure_json is not None:
            figure_number += 1
        body.append(_section(section, figure_number))
    if report.notes:
        body.append(_notes(report.notes))
    body.append(f"<footer><p>{_esc(report.disclaimer)}</p></footer>")
    document = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(report.title)}</title>\n<style>{_CSS}</style>\n{head_script}</head>\n"
        "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )
    logger.debug(
        "case report: %d sections, %d figures, %d characters", len(report.sections), figure_number, len(document)
    )
    return document


def report_bytes(report: CaseReport) -> bytes:
    """:func:`render_report` encoded as UTF-8, ready for a download."""
    return render_report(report).encode("utf-8")


def report_filename(report: CaseReport) -> str:
    """The report's file name from its pseudonym, e.g. ``case-report-P-3f9a2c.html``."""
    return report_filename_for(report.pseudonym)


def report_filename_for(pseudonym: str) -> str:
    """``case-report-<pseudonym>.html`` with only ``[A-Za-z0-9._-]`` kept: every other run of
    characters becomes one ``-``; leading and trailing dots, dashes and underscores are dropped
    and the stem is cut at 80 characters, so the name is safe on any file system."""
    stem = _UNSAFE_FILENAME_CHARS.sub("-", pseudonym).strip("._-")[:_MAX_FILENAME_STEM].strip("._-")
    return f"case-report-{stem}.html" if stem else "case-report.html"


def today() -> str:
    """Today's date in ISO form, for :attr:`CaseReport.created` (the caller reads the clock, so
    :func:`render_report` never does)."""
    return datetime.date.today().isoformat()


def _esc(text: str) -> str:
    return html.escape(str(text), quote=True)


def _paragraphs(text: str) -> str:
    """Plain text as ``<p>`` elements: blank lines separate paragraphs, single newlines break."""
    parts = [p.strip() for p in re.split(r"\n\s*\n", text.replace("\r\n", "\n")) if p.strip()]
    return "".join(f"<p>{'<br>'.join(_esc(line) for line in p.splitlines())}</p>" for p in parts)


def _table(rows: Sequence[Sequence[str]], css_class: str = "") -> str:
    if not rows:
        return ""
    head = "".join(f'<th scope="col">{_esc(cell)}</th>' for cell in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{_esc(cell)}</td>" for cell in row) + "</tr>" for row in rows[1:])
    attr = f' class="{css_class}"' if css_class else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _header(report: CaseReport) -> str:
    return (
        '<header class="report-header">'
        f"<h1>{_esc(report.title)}</h1>"
        '<dl class="meta">'
        f"<div><dt>Case</dt><dd>{_esc(report.pseudonym)}</dd></div>"
        f"<div><dt>Created</dt><dd>{_esc(report.created)}</dd></div>"
        "</dl>"
        f'<p class="disclaimer" role="note">{_esc(report.disclaimer)}</p>'
        "</header>"
    )


def _identifiers(identifiers: Sequence[tuple[str, str]]) -> str:
    return (
        '<section class="identifiers" aria-labelledby="identifiers-heading">'
        f'<h2 id="identifiers-heading">{IDENTIFIERS_HEADING}</h2>'
        "<p>These values identify the patient. They were added at the user's request: share "
        "this file only where identifiable patient data may go.</p>"
        + _table([("Field", "Value"), *identifiers], "identifier-table")
        + "</section>"
    )


def _predictions(predictions: Sequence[ReportPrediction]) -> str:
    rows = [("Model", "Version", "Output", "Calibration")]
    rows += [
        (p.model_id, p.model_version, p.output, "calibrated" if p.calibrated else "uncalibrated") for p in predictions
    ]
    if all(p.calibrated for p in predictions):
        note = "Probabilities are temperature-calibrated."
    elif any(p.calibrated for p in predictions):
        note = "Rows marked uncalibrated are the models' raw outputs, not calibrated probabilities."
    else:
        note = "Probabilities are the models' raw outputs, not calibrated: read them as scores, not as frequencies."
    return (
        '<section class="predictions"><h2>Model predictions</h2>'
        + _table(rows, "prediction-table")
        + f'<p class="note">{_esc(note)}</p></section>'
    )


def _section(section: ReportSection, figure_number: int) -> str:
    parts = [f'<section class="report-section"><h2>{_esc(section.title)}</h2>']
    if section.text:
        parts.append(_paragraphs(section.text))
    if section.images:
        parts.append('<div class="image-grid">' + "".join(_image(image) for image in section.images) + "</div>")
    if section.figure_json is not None:
        parts.append(_figure(section.figure_json, f"report-figure-{figure_number}"))
    if section.table:
        parts.append(_table(section.table))
    parts.append("</section>")
    return "".join(parts)


def _image(image: ReportImage) -> str:
    uri = "data:image/png;base64," + base64.b64encode(image.png).decode("ascii")
    caption = _esc(image.caption)
    return f'<figure><img src="{uri}" alt="{caption}"><figcaption>{caption}</figcaption></figure>'


def _notes(notes: Sequence[tuple[str, str]]) -> str:
    items = "".join(f'<li><span class="when">{_esc(when)}</span>{_esc(text)}</li>' for when, text in notes)
    return f'<section class="notes"><h2>Notes</h2><ul>{items}</ul></section>'


def _figure(figure_json: str, div_id: str) -> str:
    """A plotly figure as a div and its ``Plotly.newPlot`` call (plotly escapes ``<`` in the
    JSON, so no text in the figure can close the script). The ``div_id`` is fixed, not
    plotly's random one, so the output is deterministic."""
    import plotly.io as pio

    try:
        fig = pio.from_json(figure_json)
    except Exception as e:  # plotly raises ValueError / JSONDecodeError / PlotlyError
        raise ValueError("figure_json is not a plotly figure") from e
    # Outside Streamlit (whose theme turns it on) axes keep plotly's fixed margins, and figures
    # drawn with narrow margins for the page would clip their tick labels in the report.
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    height = fig.layout.height or _FIGURE_HEIGHT_PX
    div = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        include_mathjax=False,
        div_id=div_id,
        default_width="100%",
        default_height=f"{int(height)}px",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="plotly-figure">{div}</div>'


@lru_cache(maxsize=1)
def _plotly_bundle() -> str:
    """The installed plotly's plotly.js (minified, about 4.8 MB), read once from the package."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


# --------------------------------------------------------------------------------------------
# Identifiers in DICOM files


def dicom_identifier_items(raw: bytes) -> list[tuple[str, str]]:
    """The identifying ``(keyword, value)`` pairs of a DICOM file, in the order of
    :data:`DICOM_IDENTIFIER_KEYWORDS`; a multi-valued element gives one pair per value.

    Only the header is read (``stop_before_pixels``); empty values are left out. Bytes that are
    not DICOM, or that cannot be parsed, give ``[]``: this never raises.

    Values are decoded from the elements' raw bytes with the file's character set, not through
    pydicom's value classes: those validate each value and log an invalid one verbatim (e.g.
    ``Invalid value for VR UI: '...'``), which would put an identifier in the logs.
    """
    import pydicom
    from pydicom.charset import convert_encodings, decode_bytes
    from pydicom.datadict import tag_for_keyword

    try:
        ds = pydicom.dcmread(BytesIO(bytes(raw)), stop_before_pixels=True, force=True)
        charset = ds.get_item(_SPECIFIC_CHARACTER_SET)
        charset_value = charset.value if charset is not None else None
        if isinstance(charset_value, bytes):
            charset_value = [v.strip(" \0") for v in charset_value.decode("ascii", "replace").split("\\")]
        encodings = convert_encodings(charset_value or None)
        items: list[tuple[str, str]] = []
        for keyword in DICOM_IDENTIFIER_KEYWORDS:
            element = ds.get_item(tag_for_keyword(keyword))
            if element is None or element.value is None:
                continue
            value = element.value  # the raw bytes: the dataset was just read, nothing converted
            if isinstance(value, bytes):
                delimiters = _PN_DELIMITERS if element.VR == "PN" else _TEXT_DELIMITERS
                text = decode_bytes(value, encodings, delimiters)
            else:
                text = str(value)
            values = text.split("\\")
            items.extend((keyword, v.strip(" \0")) for v in values if v.strip(" \0"))
        return items
    except Exception:  # a damaged or foreign file: no identifiers can be read, by contract
        return []


def dicom_identifiers(raw: bytes) -> list[str]:
    """The non-empty string values of :data:`DICOM_IDENTIFIER_KEYWORDS` in a DICOM file's
    bytes (see :func:`dicom_identifier_items`); ``[]`` for non-DICOM or unreadable bytes."""
    return [value for _, value in dicom_identifier_items(raw)]


# --------------------------------------------------------------------------------------------
# Style

_CSS = """
:root { --ink: #1d2430; --muted: #5b6472; --rule: #d5d9e0; --accent: #1f4e8c; --warn: #9c1c1c; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin: 0; color: var(--ink); background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px 28px 40px; }
h1 { font-size: 1.6rem; margin: 0 0 6px; }
h2 { font-size: 1.15rem; margin: 0 0 10px; color: var(--accent); }
p { margin: 0 0 8px; }
.report-header { border-bottom: 2px solid var(--accent); padding-bottom: 10px; margin-bottom: 18px; }
.meta { display: flex; flex-wrap: wrap; gap: 4px 28px; margin: 0 0 8px; }
.meta div { display: flex; gap: 6px; }
.meta dt { color: var(--muted); }
.meta dt::after { content: ":"; }
.meta dd { margin: 0; font-weight: 600; }
.disclaimer { background: #fff6e0; border-left: 4px solid #d99a00; padding: 6px 10px; margin: 0; font-size: .92rem; }
section { margin: 0 0 22px; }
table { border-collapse: collapse; width: 100%; margin: 4px 0 8px; font-size: .93rem; }
th, td { border: 1px solid var(--rule); padding: 5px 8px; text-align: left; vertical-align: top; }
thead th { background: #eef2f7; }
tbody tr:nth-child(even) td { background: #fafbfc; }
.prediction-table td:nth-child(-n+2) { white-space: nowrap; }
.note { color: var(--muted); font-size: .9rem; }
.image-grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(280px, 1fr)); gap: 14px; margin: 8px 0 12px; }
figure { margin: 0; border: 1px solid var(--rule); border-radius: 4px; padding: 6px; background: #fff; }
figure img { display: block; width: 100%; height: auto; max-height: 640px; object-fit: contain; background: #000; }
figcaption { font-size: .88rem; color: var(--muted); margin-top: 5px; }
.plotly-figure { border: 1px solid var(--rule); border-radius: 4px; margin: 8px 0 12px; }
.identifiers { border: 3px solid var(--warn); border-radius: 4px; background: #fdf1f1; padding: 12px 14px; }
.identifiers h2 { color: var(--warn); }
.identifier-table td:last-child { word-break: break-all; font-family: ui-monospace, Menlo, Consolas, monospace; }
.notes ul { margin: 0; padding-left: 20px; }
.notes .when { font-weight: 600; margin-right: 6px; }
footer { border-top: 1px solid var(--rule); padding-top: 8px; color: var(--muted); font-size: .85rem; }
@page { size: A4; margin: 14mm; }
@media print {
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  figure, tr, .identifiers, .plotly-figure, .predictions { break-inside: avoid; }
  .image-grid { grid-template-columns: repeat(2, 1fr); }
  figure img { max-height: 110mm; }
  .modebar-container { display: none !important; }
}
"""


# --------------------------------------------------------------------------------------------
# The writer's parts under public names, for a document with another layout in the same look
# (the case-review meeting's minute, core.review.minute): one writer, one escaping rule.

#: The report's style sheet.
REPORT_CSS = _CSS
#: Caller-given text, HTML-escaped (quotes included).
escape_html = _esc
#: Plain text as ``<p>`` elements (blank lines separate paragraphs).
html_paragraphs = _paragraphs
#: Rows of strings as a table, the first row its header, every cell escaped.
html_table = _table
#: A :class:`ReportImage` as a ``<figure>`` with its PNG inlined as a ``data:`` URI.
html_image = _image
