"""The case report of one CT series as the CT page shows it: the shown slice with its map, the
map's projection, COVID3D's and the slice model's outputs (each with its verdict on the series),
and the per-slice chart."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
from PIL import Image

from core.case_reports.common import REPORT_IMAGE_MAX_SIDE, identifier_rows, upload_pseudonym
from core.ct.analysis import CtAnalysis
from core.errors import DashboardError
from core.explain.overlay import png_bytes
from core.io.ct_input import _collect_upload  # the one safe way to open the upload's zips
from core.ood import OodVerdict
from core.report import CaseReport, ReportImage, ReportPrediction, ReportSection, dicom_identifier_items, today
from core.types import CtVolume


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
    return upload_pseudonym(series_key.encode("utf-8"))


def is_dicom_series(volume: CtVolume) -> bool:
    """Whether the volume was read from DICOM files (NIfTI and TIFF volumes get made-up series
    UIDs starting "nifti-" / "tiff-", see :mod:`core.io.ct_input`)."""
    return bool(volume.n_files) and not volume.series_uid.startswith(("nifti-", "tiff-"))


def ct_identifier_rows(files: Sequence[tuple[str, bytes]], series_uid: str) -> tuple[tuple[str, str], ...]:
    """The identifiers of the uploaded DICOM files of one series (zips opened, within the
    limits of :mod:`core.io.ct_input`), one row per field."""
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
    h, w = rgb.shape[:2]
    row_mm, col_mm = (float(v) for v in pixel_mm)
    unit = min(row_mm, col_mm)
    out_h, out_w = h * row_mm / unit, w * col_mm / unit
    scale = min(1.0, REPORT_IMAGE_MAX_SIDE / max(out_h, out_w))
    size = (max(1, round(out_w * scale)), max(1, round(out_h * scale)))
    if size == (w, h):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
