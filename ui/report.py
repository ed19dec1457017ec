"""Case reports from the X-ray and CT pages: what each page's report holds, and the download
button that builds it.

A report is rendered only when the user clicks the button: the button gets a callable, and
Streamlit runs it then, on its own thread, outside the script (so the builders here use no
Streamlit command and no session state). The callable holds references to what the page has
already computed (images, maps, predictions); nothing is copied or written to disk.

Reports name a case by a pseudonym made from a hash of the uploaded bytes, never by the file
name (file names can contain patient names). DICOM identifiers go in only when the caller
passes ``include_identifiers=True`` (the user ticked the box).
"""

from __future__ import annotations

import datetime
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import streamlit as st

from core.explain.overlay import downsample_for_display, png_bytes, render_overlay
from core.inference import Reading
from core.ood import OodVerdict
from core.report import (
    CaseReport,
    ReportImage,
    ReportPrediction,
    ReportSection,
    dicom_identifier_items,
    report_bytes,
    report_filename,
)
from core.types import CtVolume, ExplanationMap, Prediction, XrayImage
from ui.session import digest
from ui.text import describe_image

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from core.ct.analysis import CtAnalysis
    from core.findings import FindingProbabilities

DOWNLOAD_LABEL = "Download case report (HTML)"
IDENTIFIERS_LABEL = "Include DICOM identifiers in the report"
#: Longest side, in pixels, of an image in a report: enough to read a chest film on a screen in
#: a meeting, and it keeps a report of one radiograph near 1 MB.
REPORT_IMAGE_MAX_SIDE = 1024

ReportSource = CaseReport | Callable[[], CaseReport]


def report_download(
    report: ReportSource, key: str, *, file_name: str | None = None, label: str = DOWNLOAD_LABEL
) -> None:
    """A "Download case report (HTML)" button.

    Parameters
    ----------
    report
        The report, or a callable without arguments that builds it; either way the HTML is
        rendered only when the user clicks.
    key
        The button's widget key.
    file_name
        Needed with a callable (see :func:`core.report.report_filename_for`); by default the
        report's own :func:`~core.report.report_filename`.
    label
        The button's text (default "Download case report (HTML)").
    """
    if callable(report):
        if file_name is None:
            raise ValueError("file_name is needed when the report is built on click")
        build = report
    else:
        file_name = file_name or report_filename(report)
        build = functools.partial(_identity, report)
    st.download_button(
        label,
        data=functools.partial(_render, build),
        file_name=file_name,
        mime="text/html",
        key=key,
        on_click="ignore",  # the file is made on its own thread; the page need not rerun
        help="One HTML file that opens offline, for a case-review meeting. "
        "Names the case by a pseudonym, not by the file name.",
    )


def _identity(report: CaseReport) -> CaseReport:
    return report


def _render(build: Callable[[], CaseReport]) -> bytes:
    return report_bytes(build())


def upload_pseudonym(data: bytes) -> str:
    """``upload-`` and the first 8 hex digits of the SHA-256 of the uploaded bytes."""
    return f"upload-{digest(data)[:8]}"


def today() -> str:
    """Today's date in ISO form, for :attr:`CaseReport.created`."""
    return datetime.date.today().isoformat()


def identifier_rows(items: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """``(field, value)`` pairs, one row per field, its distinct values joined by ", " in order
    of first appearance (a CT series gives one SOP Instance UID per slice)."""
    values: dict[str, list[str]] = {}
    for field, value in items:
        seen = values.setdefault(field, [])
        if value not in seen:
            seen.append(value)
    return tuple((field, ", ".join(vs)) for field, vs in values.items())


# --------------------------------------------------------------------------------------------
# X-ray


def xray_case_report(
    *,
    data: bytes,
    image: XrayImage,
    window: tuple[float, float],
    explanation: ExplanationMap,
    method: str,
    colormap: str,
    opacity: float,
    predictions: Sequence[Prediction],
    average: Prediction | None = None,
    findings: Sequence[FindingProbabilities] = (),
    include_identifiers: bool = False,
    created: str | None = None,
    readings: Sequence[Reading] = (),
) -> CaseReport:
    """The report of one radiograph as the X-ray page shows it.

    Parameters
    ----------
    data
        The uploaded file's bytes: the pseudonym is made from them, and with
        ``include_identifiers`` its DICOM identifiers are read from them.
    image, window
        The radiograph and the (center, width) the page shows it with.
    explanation, method, colormap, opacity
        The attribution map drawn over it, as on the page.
    predictions, average
        Each model's 3-class prediction and, with several models, their average.
    findings
        Finding probabilities of the multi-label models, if any.
    readings
        The same predictions with each model's verdict on whether the image is like its training
        data (:class:`core.inference.Reading`): a model that rejects the image is reported as
        such, its probabilities marked "not a result".
    created
        ISO date; default today.
    """
    pseudonym = upload_pseudonym(data)
    center, width = window
    # Downsampled before blending: a quarter of the work for a 2048 px film, and the same look.
    gray = downsample_for_display(image.windowed(center, width), REPORT_IMAGE_MAX_SIDE)
    heat = downsample_for_display(explanation.values, REPORT_IMAGE_MAX_SIDE)
    plain = np.round(gray * np.float32(255.0)).astype(np.uint8)  # grey PNG: a third of RGB's bytes
    overlay = render_overlay(gray, heat, colormap, opacity)
    shown = [*predictions, *([average] if average is not None else [])]
    verdict_of = {r.prediction.model_id: r for r in readings}
    rejected = [r for r in readings if not r.accepted]
    labels = list(dict.fromkeys(label for p in shown for label in p.labels))

    def row(p: Prediction) -> tuple[str, ...]:
        probs = dict(zip(p.labels, p.probabilities, strict=True))
        r = verdict_of.get(p.model_id)
        like = "-" if r is None or r.ood is None else ("yes" if r.ood.in_distribution else "NO: not a result")
        domain = "average" if p is average else (r.domain if r is not None else "")
        return (
            "Average" if p is average else p.model_id,
            domain,
            *(f"{probs[label]:.1%}" if label in probs else "-" for label in labels),
            p.predicted_label if r is None or r.accepted else "(not shown)",
            like,
        )

    ood_text = "".join(f"{r.ood.headline()}\n" for r in rejected if r.ood is not None)
    sections = [
        ReportSection(
            title="Radiograph and where the model looked",
            text=(
                f"{describe_image(image)}.\nShown with window L {center:.0f} / W {width:.0f}.\n\n"
                f"{method} of {explanation.model_id} for the target class {explanation.target_label}, "
                f"colour map {colormap} (low to high), opacity {opacity:.0%}."
            ),
            images=(
                ReportImage(f"Radiograph, window L {center:.0f} / W {width:.0f}", png_bytes(plain)),
                ReportImage(
                    f"{method} of {explanation.model_id}, target {explanation.target_label}", png_bytes(overlay)
                ),
            ),
        ),
        ReportSection(
            title="Class probabilities",
            text=(
                ood_text
                + "Rows: models (and their average, over the models with the same classes that accept the image). "
                "Each row's predicted class is its highest probability; a model for which the image is unlike "
                "its training data gives no result."
            ),
            table=(
                ("Model", "Trained on", *labels, "Predicted", "Like its training data"),
                *(row(p) for p in shown),
            ),
        ),
    ]
    for found in findings:
        sections.append(
            ReportSection(
                title=f"Findings ({found.model_id})",
                text=f"Model version {found.model_version}: one probability per finding, each independent of the others.",
                table=(
                    ("Finding", "P(present)"),
                    *((label, f"{p:.1%}") for label, p in zip(found.labels, found.probabilities, strict=True)),
                ),
            )
        )
    return CaseReport(
        title=f"Case review: {pseudonym}",
        pseudonym=pseudonym,
        created=created or today(),
        predictions=tuple(_xray_prediction(p, average, verdict_of.get(p.model_id)) for p in shown),
        sections=tuple(sections),
        identifiers=identifier_rows(dicom_identifier_items(data)) if include_identifiers else (),
    )


def _xray_prediction(p: Prediction, average: Prediction | None, reading: Reading | None = None) -> ReportPrediction:
    ranked = sorted(zip(p.labels, p.probabilities, strict=True), key=lambda lp: -lp[1])
    rest = ", ".join(f"{label} {prob:.1%}" for label, prob in ranked[1:])
    output = f"{ranked[0][0]} {ranked[0][1]:.1%}" + (f" ({rest})" if rest else "")
    if reading is not None and not reading.accepted:
        output = "no result: the image is unlike this model's training data (" + output + ")"
    if p is average:  # its version lists every model's; the rows above show them
        return ReportPrediction("average of models", "mean of the rows above", output, p.calibrated)
    return ReportPrediction(p.model_id, p.model_version, output, p.calibrated)


# --------------------------------------------------------------------------------------------
# CT


def _unless_ood(output: str, verdict: OodVerdict | None) -> str:
    """A model's output as the report states it: "no result" first when the input is unlike its training data."""
    if verdict is None or verdict.in_distribution:
        return output + ("" if verdict is None else " (in distribution)")
    return f"No result: {verdict.headline()} Output, for reference only: {output}"


def ct_pseudonym(series_key: str, demo_label: str | None = None) -> str:
    """``upload-`` and 8 hex digits of the hash of the page's series key (itself made from the
    files' hashes and the chosen series), or ``demo-<label>`` for a demo phantom."""
    if demo_label is not None:
        return "demo-" + "-".join(demo_label.lower().split())
    return f"upload-{digest(series_key.encode('utf-8'))[:8]}"


def is_dicom_series(volume: CtVolume) -> bool:
    """Whether the volume was read from DICOM files (NIfTI and TIFF volumes get made-up series
    UIDs starting "nifti-" / "tiff-", see :mod:`core.io.ct_input`)."""
    return bool(volume.n_files) and not volume.series_uid.startswith(("nifti-", "tiff-"))


def ct_identifier_rows(files: Sequence[tuple[str, bytes]], series_uid: str) -> tuple[tuple[str, str], ...]:
    """The identifiers of the uploaded DICOM files of one series (zips opened, within the
    limits of :mod:`core.io.ct_input`), one row per field."""
    from core.errors import DashboardError
    from core.io.ct_input import _collect_upload  # the one safe way to open the upload's zips

    try:
        dicom = _collect_upload(files).dicom
    except DashboardError:
        dicom = [(name, data) for name, data in files]
    in_series = []
    for _, data in dicom:
        found = dicom_identifier_items(data)
        if dict(found).get("SeriesInstanceUID", "") == series_uid:
            in_series.extend(found)
    return identifier_rows(in_series)


def ct_case_report(
    *,
    pseudonym: str,
    volume: CtVolume,
    slice_rgb: np.ndarray,
    slice_caption: str,
    pixel_mm: tuple[float, float],
    mip_rgb: np.ndarray | None = None,
    mip_caption: str = "",
    analysis: CtAnalysis | None = None,
    covid3d_calibrated: bool = False,
    slice_chart: go.Figure | None = None,
    identifiers: Callable[[], tuple[tuple[str, str], ...]] | None = None,
    created: str | None = None,
) -> CaseReport:
    """The report of one CT series as the CT page shows it.

    Parameters
    ----------
    pseudonym
        See :func:`ct_pseudonym`.
    volume
        The series (its shape and spacing are stated; its description is not, as free text
        may carry identifiers).
    slice_rgb, slice_caption, pixel_mm
        The shown slice with its overlay, RGB uint8 (H, W, 3), and its pixel (row, column) size
        in mm: the report's image keeps the physical aspect.
    mip_rgb, mip_caption
        The map's maximum-intensity projection, same plane, if shown.
    analysis
        What the models said; ``covid3d_calibrated`` whether COVID3D's probability is
        temperature-calibrated (its card's temperature is not 1).
    slice_chart
        The per-slice probability chart, embedded interactive.
    identifiers
        Called to list the identifiers only when the user asked for them.
    """
    z, y, x = volume.hu.shape
    dz, dy, dx = volume.spacing_mm
    images = [ReportImage(slice_caption, png_bytes(_physical_aspect(slice_rgb, pixel_mm)))]
    if mip_rgb is not None:
        images.append(ReportImage(mip_caption, png_bytes(_physical_aspect(mip_rgb, pixel_mm))))
    sections = [
        ReportSection(
            title="CT series",
            text=(
                f"{z} x {y} x {x} voxels (z, y, x) at {dz:.2f} x {dy:.2f} x {dx:.2f} mm"
                + (f", from {volume.n_files} files." if volume.n_files else ".")
            ),
            images=tuple(images),
        )
    ]
    predictions: list[ReportPrediction] = []
    if analysis is not None and analysis.covid3d_id and analysis.probability is not None:
        decision = "COVID+" if analysis.covid_positive else "COVID-"
        output = (
            f"{decision}: P(COVID+) {analysis.probability:.1%} against the threshold "
            f"{analysis.threshold:.0%}; score s {analysis.score:+.2f} (COVID3D's logit)"
        )
        predictions.append(
            ReportPrediction(
                analysis.covid3d_id,
                analysis.covid3d_version or "",
                _unless_ood(output, analysis.covid3d_ood),
                covid3d_calibrated,
            )
        )
    if analysis is not None and analysis.slice_model_id and analysis.patient_score is not None:
        predictions.append(
            ReportPrediction(
                analysis.slice_model_id,
                analysis.slice_model_version or "",
                _unless_ood(
                    f"Patient score {analysis.patient_score:.1%}: the mean P(COVID-19) of the top 10% of "
                    + (
                        "slices"
                        if analysis.slices_read is None or analysis.slices_read.all()
                        else f"the {int(analysis.slices_read.sum())} of {analysis.slices_read.size} slices "
                        "through the lungs"
                    )
                    + " (a ranking score)",
                    analysis.slice_ood,
                ),
                False,
            )
        )
        if slice_chart is not None:
            sections.append(
                ReportSection(
                    title="P(COVID-19) per axial slice",
                    text="Slice 1 is the most inferior. Hover for values; drag to zoom, double-click to reset.",
                    figure_json=slice_chart.to_json(),
                )
            )
    return CaseReport(
        title=f"Case review: {pseudonym}",
        pseudonym=pseudonym,
        created=created or today(),
        predictions=tuple(predictions),
        sections=tuple(sections),
        identifiers=identifiers() if identifiers is not None else (),
    )


def _physical_aspect(rgb: np.ndarray, pixel_mm: tuple[float, float]) -> np.ndarray:
    """RGB uint8 (H, W, 3) resampled so that one pixel is square in mm (a coronal slice of 5 mm
    slices is stretched along z, as the page shows it), longest side at most
    :data:`REPORT_IMAGE_MAX_SIDE`."""
    from PIL import Image

    h, w = rgb.shape[:2]
    row_mm, col_mm = (float(v) for v in pixel_mm)
    unit = min(row_mm, col_mm)
    out_h, out_w = h * row_mm / unit, w * col_mm / unit
    scale = min(1.0, REPORT_IMAGE_MAX_SIDE / max(out_h, out_w))
    size = (max(1, round(out_w * scale)), max(1, round(out_h * scale)))
    if size == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
