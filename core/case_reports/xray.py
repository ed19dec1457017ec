"""The case report of one radiograph as the X-ray page shows it: the film, the attribution map
over it, every model's probabilities with its verdict on the image, and the findings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.case_reports.common import REPORT_IMAGE_MAX_SIDE, identifier_rows, upload_pseudonym
from core.explain.overlay import downsample_for_display, png_bytes, render_overlay
from core.findings import FindingProbabilities
from core.inference import Reading
from core.report import CaseReport, ReportImage, ReportPrediction, ReportSection, dicom_identifier_items, today
from core.text import describe_image
from core.types import ExplanationMap, Prediction, XrayImage


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
