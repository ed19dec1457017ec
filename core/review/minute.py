"""A case-review meeting's minute: one self-contained HTML file of what the meeting saw and read.

:func:`meeting_minute` writes, in the case report's look and with its writer
(:mod:`core.report`): the meeting's title, its own date and its counts; the summary figures of
:func:`core.review.summary.meeting_summary` (each reader and the room against the model, the
truth and each other, with their intervals); then every case, the ones where the room and the
model disagreed first, each with

- its images: of a single-study case, that study; of a whole patient, the latest study of each
  modality. An X-ray carries the Grad-CAM of the model the reads were compared with (else the
  model the pages show first) for the class it predicts; a CT series a lung-window axial slice
  with COVID3D's 3D Grad-CAM, the slice through the lungs where the map is strongest (or a slice
  model's map of its most COVID-like slice). Images are sized as in the case reports
  (:data:`~core.case_reports.common.REPORT_IMAGE_MAX_SIDE`);
- what it hid until the reveal, now stated: the diagnosis, the outcome, the notes;
- the model's outputs, each probability with the threshold it was held against (an X-ray
  class, the most probable of the model's classes, says it has none): what the reads were
  compared with, as stored with them, and what the model reads in each study shown now;
- its reads: reader, read, confidence, agreement with the model, comment, the model and its
  version, the time of day it was recorded.

The same rule as the case reports holds: a patient is named by pseudonym and each study by its
days since admission; no name, original id or calendar date of a patient is written (the
library keeps none). The only calendar date is the meeting's own. Nothing refers to an external
URL: images are inline ``data:`` PNGs and there is no script, so the file opens offline and
prints as it shows.

Examples
--------
>>> from core.models.registry import ModelRegistry  # doctest: +SKIP
>>> html = meeting_minute(library, meeting_id, ModelRegistry())  # doctest: +SKIP
>>> Path(minute_filename(library.meeting(meeting_id))).write_text(html, encoding="utf-8")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from core.case_reports.common import REPORT_IMAGE_MAX_SIDE
from core.ct.analysis import analyse_ct, slice_cam
from core.ct.preprocess import LUNG_WINDOW, lung_slices, window_hu
from core.ct.views import pixel_size_mm
from core.errors import DashboardError, MissingModelError
from core.explain.overlay import display_shape, downsample_for_display, png_bytes, render_overlay, resize_unit
from core.inference import xray_analysis, xray_reading
from core.library.demo import DEMO_SOURCE
from core.library.meeting_records import CT_READS, HIDEABLE, Meeting, MeetingCase, Read
from core.library.records import Patient, Study
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel, ModelRegistry
from core.ood import OodVerdict
from core.report import REPORT_CSS, ReportImage, escape_html, html_image, html_paragraphs, html_table
from core.review.meetings import reads_by_case, study_day
from core.review.model_read import READS_MODALITY, ModelRead, default_model_id
from core.review.summary import (
    CaseOutcome,
    MeetingSummary,
    QuestionSummary,
    kappa_text,
    meeting_summary,
    share_text,
)
from core.search.embeddings import read_stored_xray
from core.text import describe_outcome
from core.trajectory.scores import read_stored_ct

logger = logging.getLogger(__name__)

#: The overlay's colour map and opacity, as the presenter view draws it.
OVERLAY_COLORMAP = "Jet"
OVERLAY_OPACITY = 0.45
UNLABELLED = "not labelled"
_DISCLAIMER = (
    "Model outputs are research results, not for clinical use. Patients appear by pseudonym and days since "
    "admission only; the only calendar date is the meeting's."
)
_MINUTE_CSS = """
.case { border-top: 2px solid var(--rule); padding-top: 14px; }
.case h2 .flag { display: inline-block; margin-left: 10px; padding: 1px 8px; border-radius: 3px; font-size: .85rem;
  color: #fff; background: var(--warn); vertical-align: middle; }
.case h3, .summary h3 { font-size: 1rem; margin: 12px 0 6px; }
.model-output { margin: 0 0 4px; }
.case .image-grid { grid-template-columns: repeat(auto-fill, minmax(280px, 460px)); }
@media print { .case { break-before: page; } }
"""


@dataclass(frozen=True)
class _Shown:
    """One study of a case as the minute shows it: its image (None when it has none or it could
    not be read, ``problem`` saying why) and the model's read of it (None, ``model_problem``
    saying why, when no model read it)."""

    study: Study
    image: ReportImage | None
    problem: str
    read: ModelRead | None
    model_problem: str


def minute_filename(meeting: Meeting) -> str:
    """The minute's file name: ``meeting-<id>-minute.html`` (no title: it may hold anything)."""
    return f"meeting-{meeting.id}-minute.html"


def meeting_minute(
    library: CaseLibrary,
    meeting_id: int,
    registry: ModelRegistry,
    *,
    load: Callable[[str], LoadedModel] | None = None,
) -> str:
    """The meeting's minute as one HTML document (see the module docstring).

    Parameters
    ----------
    library
        The case library holding the meeting, its reads and its cases' images.
    meeting_id
        The meeting.
    registry
        The registered models: they draw the Grad-CAM maps and read each study shown.
    load
        How to get a loaded model (a page passes its shared cache); default ``registry.load``.
        Each model is loaded once per minute.

    Returns
    -------
    str
        ``<!DOCTYPE html>`` text, UTF-8, with inline CSS and images as ``data:`` PNGs.

    Raises
    ------
    InvalidInputError
        No such meeting.

    A study whose image cannot be read, or that no registered model reads, is shown with a line
    saying so; it does not stop the minute.
    """
    start = time.perf_counter()
    meeting = library.meeting(meeting_id)
    summary = meeting_summary(library, [meeting.id])
    loaded: dict[str, LoadedModel] = {}

    def loader(model_id: str) -> LoadedModel:
        if model_id not in loaded:
            loaded[model_id] = (load or registry.load)(model_id)
        return loaded[model_id]

    cases = {c.id: c for c in meeting.cases}
    reads = reads_by_case(library.reads(meeting.id))
    patients: dict[str, Patient] = {}
    body = [_header(meeting, summary), _summary(summary), _overview(summary, registry)]
    for outcome in summary.cases:
        case = cases[outcome.case_id]
        patient = patients.get(case.pseudonym) or patients.setdefault(case.pseudonym, library.patient(case.pseudonym))
        shown = [_show(library, registry, loader, s, patient, outcome.model_id) for s in shown_studies(patient, case)]
        body.append(_case(meeting, case, patient, outcome, shown, reads.get(case.id, []), registry))
    body.append(f"<footer><p>{escape_html(_DISCLAIMER)}</p></footer>")
    document = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape_html(_title(meeting))}</title>\n<style>{REPORT_CSS}{_MINUTE_CSS}</style>\n</head>\n"
        "<body>\n<main>\n" + "\n".join(body) + "\n</main>\n</body>\n</html>\n"
    )
    logger.debug(
        "meeting minute: %d cases, %d characters, %.1f s",
        len(summary.cases),
        len(document),
        time.perf_counter() - start,
    )
    return document


def shown_studies(patient: Patient, case: MeetingCase) -> list[Study]:
    """The studies the minute shows of a case, in time order: its own study, or of a whole
    patient the latest study of each modality that has an image."""
    if case.study_id is not None:
        return [s for s in patient.studies if s.id == case.study_id]
    latest: dict[str, Study] = {}
    for s in patient.studies:  # in time order: the last one of a modality wins
        if s.images:
            latest[s.modality] = s
    chosen = {s.id for s in latest.values()}
    return [s for s in patient.studies if s.id in chosen]


def _study_name(study: Study) -> str:
    return f"{study.modality}, {study_day(study)}"


def _title(meeting: Meeting) -> str:
    return f"Meeting minute: {meeting.title}"


# --------------------------------------------------------------------------------------------
# How probabilities are written: each with the threshold it was held against


def threshold_text(threshold: float | None, n_classes: int | None = None) -> str:
    """What a probability was held against: "threshold 50%", or for an argmax label "no
    threshold: the most probable of its 3 classes"."""
    if threshold is not None:
        return f"threshold {threshold:.0%}"
    return "no threshold: the most probable of its " + (f"{n_classes} classes" if n_classes else "classes")


def model_output_text(
    label: str | None, probability: float | None, threshold: float | None, n_classes: int | None = None
) -> str:
    """A model's read in words, its probability with its threshold beside it: "not COVID 30.0%
    (threshold 50%)", "Normal 85.2% (no threshold: the most probable of its 3 classes)"; "no
    label (unlike its training data)" when it gave none."""
    said = label if label is not None else "no label (unlike its training data)"
    if probability is None:
        return said
    return f"{said} {probability:.1%} ({threshold_text(threshold, n_classes)})"


def _n_classes(registry: ModelRegistry, model_id: str | None) -> int | None:
    if model_id is None:
        return None
    try:
        return len(registry.card(model_id).labels)
    except MissingModelError:  # a model since removed from the registry
        return None


# --------------------------------------------------------------------------------------------
# Images and the model's read of each study shown


def _model_for(registry: ModelRegistry, study: Study, compared: str | None, patient: Patient) -> str:
    """The model that draws a study's map and reads it: the one the reads were compared with
    when it reads this modality, else the one the pages show first."""
    kinds = READS_MODALITY.get(study.modality, ())
    if compared is not None:
        try:
            card = registry.card(compared)
        except MissingModelError:
            card = None
        if card is not None and card.input_kind in kinds and not card.multi_label:
            return compared
    domain = "demo" if patient.summary.source == DEMO_SOURCE else "real"
    return default_model_id(registry, study.modality, domain)


def _show(
    library: CaseLibrary,
    registry: ModelRegistry,
    loader: Callable[[str], LoadedModel],
    study: Study,
    patient: Patient,
    compared: str | None,
) -> _Shown:
    """A study's image with the model's map over it and the model's read of it, from one pass
    of the model (the read follows :func:`core.review.model_read.model_read`'s rules)."""
    model: LoadedModel | None = None
    model_problem = ""
    try:
        model = loader(_model_for(registry, study, compared, patient))
    except DashboardError as e:
        model_problem = str(e)
    if not study.images:
        return _Shown(study, None, "This study has no stored image.", None, model_problem or "no image to read")
    record = study.images[0]
    try:
        if record.kind == "ct-series":
            image, read = _ct_view(library, record.id, study, model)
        elif study.modality == "X-ray":
            image, read = _xray_view(library, record.id, study, model)
        else:  # a 2D image of a CT study: no model of this minute reads one
            image, read = _xray_view(library, record.id, study, None)
            model_problem = model_problem or f"no model here reads a {study.modality} image of this kind"
    except DashboardError as e:
        return _Shown(study, None, f"The image could not be shown: {e}", None, model_problem or str(e))
    return _Shown(study, image, "", read, model_problem)


def _unlike(read: ModelRead | None) -> str:
    if read is not None and read.in_distribution is False:
        return " The study is unlike the model's training data: the map shows where it looked, not a finding."
    return ""


def _xray_view(
    library: CaseLibrary, image_id: int, study: Study, model: LoadedModel | None
) -> tuple[ReportImage, ModelRead | None]:
    """A radiograph (a stored 2D image) at the report size, with ``model``'s Grad-CAM for the
    class it predicts and its read (none without a model)."""
    image = read_stored_xray(library, image_id)
    gray = downsample_for_display(image.windowed(), REPORT_IMAGE_MAX_SIDE)
    if model is None:
        plain = png_bytes(np.round(gray * np.float32(255.0)).astype(np.uint8))  # grey PNG: a third of RGB's bytes
        return ReportImage(_study_name(study), plain), None
    analysis = xray_analysis(model, image)
    reading = xray_reading(model, image, analysis.prediction)
    pred = reading.prediction
    probability = float(pred.probabilities[pred.predicted_index])
    label = pred.predicted_label if reading.accepted else None
    read = ModelRead(
        model_id=pred.model_id,
        model_version=pred.model_version,
        label=label,
        probability=probability,
        threshold=None,
        in_distribution=None if reading.ood is None else reading.ood.in_distribution,
        reason="" if reading.ood is None else reading.ood.headline(),
        study_id=study.id,
        modality=study.modality,
    )
    heat = analysis.explanation(display_shape(image.shape, REPORT_IMAGE_MAX_SIDE)).values
    rgb = render_overlay(gray, heat, OVERLAY_COLORMAP, OVERLAY_OPACITY)
    caption = (
        f"{_study_name(study)}: Grad-CAM of {model.card.id} {model.card.version} for the class it predicts "
        f"({pred.predicted_label}), colour map {OVERLAY_COLORMAP} (low to high)." + _unlike(read)
    )
    return ReportImage(caption, png_bytes(rgb)), read


def _ct_view(
    library: CaseLibrary, image_id: int, study: Study, model: LoadedModel | None
) -> tuple[ReportImage, ModelRead | None]:
    """An axial slice of a stored CT series in the lung window, at square pixels and the report
    size, and the model's read of the series: with COVID3D, the slice through the lungs where
    its 3D Grad-CAM is strongest, the map over it; with a slice model, its most COVID-like slice
    with its map; without a CT model, the middle of the slices through the lungs."""
    volume = read_stored_ct(library, image_id)
    count = int(volume.hu.shape[0])
    lungs = np.flatnonzero(lung_slices(volume.hu))
    index = int(lungs[len(lungs) // 2]) if lungs.size else count // 2
    which, heat, mapped, read = " (the middle of the slices through the lungs)", None, "", None
    if model is not None and model.card.input_kind == "ct-volume":
        analysis = analyse_ct(volume, model, None, cam=True)
        assert analysis.probability is not None and analysis.threshold is not None  # COVID3D was run
        read = _ct_read(model, study, analysis.probability, analysis.threshold, analysis.covid3d_ood)
        if analysis.cam is not None:
            strength = analysis.cam.reshape(count, -1).mean(axis=1)
            if lungs.size:
                index = int(lungs[np.argmax(strength[lungs])])
                which = " (the slice through the lungs where the map is strongest)"
            else:
                index = int(np.argmax(strength))
                which = " (where the map is strongest)"
            heat, mapped = analysis.cam[index], f"3D Grad-CAM of {model.card.id} {model.card.version}"
    elif model is not None and model.card.input_kind == "ct-slice":
        analysis = analyse_ct(volume, None, model)
        assert analysis.patient_score is not None and analysis.slice_probabilities is not None  # it was run
        threshold = float(model.card.thresholds.get("scan", model.card.thresholds.get("covid", 0.5)))
        read = _ct_read(model, study, analysis.patient_score, threshold, analysis.slice_ood)
        index = int(np.argmax(np.where(analysis.slices_read, analysis.slice_probabilities, -1.0)))
        which = " (its most COVID-like slice)"
        heat = slice_cam(volume, model, index)
        mapped = f"Grad-CAM of {model.card.id} {model.card.version} for COVID-19"
    gray = window_hu(volume.hu[index], *LUNG_WINDOW)
    row_mm, col_mm = pixel_size_mm(volume.spacing_mm, "Axial")
    unit = min(row_mm, col_mm)
    h, w = gray.shape[0] * row_mm / unit, gray.shape[1] * col_mm / unit
    scale = min(1.0, REPORT_IMAGE_MAX_SIDE / max(h, w))
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    gray = resize_unit(gray, shape)
    rgb = render_overlay(gray, None if heat is None else resize_unit(heat, shape), OVERLAY_COLORMAP, OVERLAY_OPACITY)
    caption = f"{_study_name(study)}: axial slice {index + 1} of {count}{which}, lung window" + (
        f", {mapped}, colour map {OVERLAY_COLORMAP} (low to high).{_unlike(read)}" if heat is not None else "."
    )
    return ReportImage(caption, png_bytes(rgb)), read


def _ct_read(
    model: LoadedModel, study: Study, probability: float, threshold: float, ood: OodVerdict | None
) -> ModelRead:
    """A CT model's read: "COVID" at or above its threshold, else "not COVID"; no label when the
    series is unlike its training data (as :func:`core.review.model_read.model_read` reads it)."""
    accepted = ood is None or ood.in_distribution
    label = (CT_READS[0] if probability >= threshold else CT_READS[1]) if accepted else None
    return ModelRead(
        model_id=model.card.id,
        model_version=model.card.version,
        label=label,
        probability=float(probability),
        threshold=float(threshold),
        in_distribution=None if ood is None else ood.in_distribution,
        reason="" if ood is None else ood.headline(),
        study_id=study.id,
        modality=study.modality,
    )


# --------------------------------------------------------------------------------------------
# The document's parts


def _header(meeting: Meeting, s: MeetingSummary) -> str:
    meta = (
        ("Meeting date", meeting.date),
        ("Cases", str(s.n_cases)),
        ("Reads", str(s.n_reads)),
        ("Readers", ", ".join(s.readers) or "none"),
        ("Room and model disagreed", f"{len(s.disagreements)} of {s.n_cases} cases"),
    )
    items = "".join(f"<div><dt>{escape_html(k)}</dt><dd>{escape_html(v)}</dd></div>" for k, v in meta)
    return (
        '<header class="report-header">'
        f"<h1>{escape_html(_title(meeting))}</h1>"
        f'<dl class="meta">{items}</dl>'
        f'<p class="disclaimer" role="note">{escape_html(_DISCLAIMER)}</p>'
        "</header>"
    )


def _question(q: QuestionSummary) -> str:
    binary = q.pooled.sensitivity is not None
    head = ["Reader", "Reads", "Kappa with the model (95% CI)", "Reader accuracy", "Model accuracy"]
    if binary:
        head += ["Reader sensitivity", "Reader specificity", "Model sensitivity", "Model specificity"]
    rows: list[Sequence[str]] = [head]
    for f in (*q.readers, q.pooled):
        row = [f.reader, str(f.n_reads), kappa_text(f.vs_model), share_text(f.accuracy), share_text(f.model_accuracy)]
        if binary:
            row += [
                share_text(f.sensitivity),
                share_text(f.specificity),
                share_text(f.model_sensitivity),
                share_text(f.model_specificity),
            ]
        rows.append(row)
    b = q.between_readers
    notes = [f"Between readers (Fleiss' kappa, 95% CI): {kappa_text(b)}." + (f" {b.reason}" if b.reason else "")]
    if q.pooled.vs_model.reason:
        notes.append(f"Pooled kappa: {q.pooled.vs_model.reason}")
    if q.note:
        notes.append(q.note)
    return (
        f"<h3>{escape_html(q.question)} ({escape_html(', '.join(q.labels))})</h3>"
        + html_table(rows)
        + "".join(f'<p class="note">{escape_html(n)}</p>' for n in notes)
    )


def _summary(s: MeetingSummary) -> str:
    parts = ['<section class="summary"><h2>Summary</h2>']
    if not s.n_reads:
        parts.append("<p>No read was recorded in this meeting: there are no agreement figures.</p>")
    else:
        parts.append(
            html_paragraphs(
                "Each reader and all readers together against the model (Cohen's kappa), against the truth "
                "(accuracy, and sensitivity and specificity for COVID, with Wilson intervals), and between "
                "readers (Fleiss' kappa)."
            )
        )
        parts += [_question(q) for q in s.questions]
        parts.append(f'<p class="note">{escape_html(s.truth_note)} {escape_html(s.models_note)}</p>')
    parts.append("</section>")
    return "".join(parts)


def compared_text(c: CaseOutcome, n_classes: int | None = None) -> str:
    """The model's read a case's reads were compared with, its threshold beside its probability;
    "-" when no read named a model."""
    if c.model_id is None:
        return "-"
    return model_output_text(c.model_label, c.model_probability, c.model_threshold, n_classes)


def _overview(s: MeetingSummary, registry: ModelRegistry) -> str:
    rows: list[Sequence[str]] = [("", "Case", "Patient", "Day", "Room", "Model (compared with the reads)", "Truth")]
    for c in s.cases:
        rows.append(
            (
                "disagree" if c.disagrees else "",
                str(c.position),
                c.pseudonym,
                "whole patient" if c.days_since_admission is None else f"{c.days_since_admission:g}",
                c.room_read or ("no reads" if not c.reads else "no majority"),
                compared_text(c, _n_classes(registry, c.model_id)),
                UNLABELLED if c.truth is None else c.truth,
            )
        )
    return (
        f'<section class="overview"><h2>Cases: the {len(s.disagreements)} where the room and the model disagreed '
        "first</h2>" + html_table(rows) + "</section>"
    )


def _facts(case: MeetingCase, patient: Patient, outcome: CaseOutcome, shown: Sequence[_Shown]) -> str:
    where = {"study": "the study's label", "patient": "the patient's diagnosis"}.get(outcome.truth_source or "", "")
    diagnosis = UNLABELLED if outcome.truth is None else outcome.truth + (f" ({where})" if where else "")
    rows: list[Sequence[str]] = [("Item", "Stated"), ("Diagnosis", diagnosis)]
    rows.append(("Outcome", describe_outcome(patient.summary)))
    for item in shown:
        rows.append((f"Notes ({_study_name(item.study)})", item.study.note or "no note"))
    hidden = ", ".join(h for h in HIDEABLE if h in case.hidden) or "nothing"
    revealed = "revealed in the meeting" if case.revealed else "not revealed in the meeting"
    return (
        f"<h3>What was hidden until the reveal, now stated</h3><p>Hidden: {escape_html(hidden)} ({revealed}).</p>"
        + html_table(rows)
    )


def _model_outputs(outcome: CaseOutcome, shown: Sequence[_Shown], registry: ModelRegistry) -> str:
    lines = []
    if outcome.model_id is not None:
        lines.append(
            f"Compared with the reads (stored with them): {outcome.model_id} {outcome.model_version or ''}, "
            + compared_text(outcome, _n_classes(registry, outcome.model_id))
            + "."
        )
    else:
        lines.append("No read of this case was compared with a model.")
    for item in shown:
        r = item.read
        if r is None:
            lines.append(f"{_study_name(item.study)}: no model output ({item.model_problem})")
            continue
        like = {True: "like its training data", False: "UNLIKE its training data", None: "not checked"}[
            r.in_distribution
        ]
        lines.append(
            f"{_study_name(item.study)}, read now: {r.model_id} {r.model_version}, "
            + model_output_text(r.label, r.probability, r.threshold, _n_classes(registry, r.model_id))
            + f"; {like}."
        )
    return "<h3>Model outputs</h3>" + "".join(f'<p class="model-output">{escape_html(t)}</p>' for t in lines)


def _recorded(at: str) -> str:
    """The time of day a read was recorded ("14:05 UTC"): the day is the meeting's."""
    clock = at.partition("T")[2][:5]
    return f"{clock} UTC" if clock else "-"


def _reads(reads: Sequence[Read], registry: ModelRegistry) -> str:
    if not reads:
        return "<h3>Reads</h3><p>No reads recorded.</p>"
    rows: list[Sequence[str]] = [
        ("Reader", "Read", "Confidence", "Agrees with the model", "Comment", "Model", "Model's read", "Recorded")
    ]
    for r in reads:
        rows.append(
            (
                r.reader,
                r.read,
                f"{r.confidence} of 5",
                {True: "yes", False: "no", None: "-"}[r.agrees_with_model],
                r.comment or "-",
                f"{r.model_id} {r.model_version or ''}".strip() if r.model_id else "-",
                "-"
                if not r.model_id
                else model_output_text(
                    r.model_label, r.model_probability, r.model_threshold, _n_classes(registry, r.model_id)
                ),
                _recorded(r.at),
            )
        )
    return "<h3>Reads</h3>" + html_table(rows)


def _case(
    meeting: Meeting,
    case: MeetingCase,
    patient: Patient,
    outcome: CaseOutcome,
    shown: Sequence[_Shown],
    reads: Sequence[Read],
    registry: ModelRegistry,
) -> str:
    what = "whole patient" if case.study_id is None else "one study"
    flag = '<span class="flag">room and model disagreed</span>' if outcome.disagrees else ""
    days = "; ".join(_study_name(s.study) for s in shown) or "no study"
    room = outcome.room_read or ("no reads" if not outcome.reads else "no majority")
    parts = [
        f'<section class="case" id="case-{case.position}">',
        f"<h2>Case {case.position} of {len(meeting.cases)}: {escape_html(case.pseudonym)} ({what}){flag}</h2>",
        html_paragraphs(f"Shown: {days}.\nThe room read: {room}."),
    ]
    images = [s.image for s in shown if s.image is not None]
    if images:
        parts.append('<div class="image-grid">' + "".join(html_image(i) for i in images) + "</div>")
    parts += [f'<p class="note">{escape_html(s.problem)}</p>' for s in shown if s.problem]
    parts.append(_facts(case, patient, outcome, shown))
    parts.append(_model_outputs(outcome, shown, registry))
    parts.append(_reads(reads, registry))
    parts.append("</section>")
    return "".join(parts)
