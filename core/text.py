"""Wording shown on several pages and in case reports: the disclaimer, and one line about an
image, a stay, a study's date, a model's input grid, a Kaplan-Meier analysis or a probability."""

from __future__ import annotations

from core.library.records import PatientSummary, Study
from core.models.manifest import InputSpec
from core.survival.km_figure import format_p
from core.types import XrayImage

DISCLAIMER = (
    "Research use only. This dashboard is not a medical device and must not be used for diagnosis "
    "or treatment decisions. The demo models were trained on synthetic phantoms; the real-data models "
    "on small public sets of chest images from a few hospitals, and every model says when an image is "
    "unlike what it was trained on."
)


def describe_image(image: XrayImage) -> str:
    """One line about what was read: format, size, depth, modality, pixel spacing, window."""
    h, w = image.shape
    parts = [image.file_format.upper(), f"{w} x {h} px", f"{image.bits_stored}-bit"]
    if image.modality:
        parts.append(f"modality {image.modality}")
    if image.is_dicom:
        parts.append(image.photometric)
    if image.pixel_spacing_mm:
        parts.append(f"{image.pixel_spacing_mm[0]:.3g} mm pixels")
    parts.append(f"file window L {image.window_center:.0f} / W {image.window_width:.0f}")
    return " · ".join(parts)


def describe_outcome(patient: PatientSummary, *, short: bool = False) -> str:
    """How the stay ended, e.g. "discharged on day 15" or "still in hospital at day 40 (censored)"."""
    day = patient.length_of_stay_days
    at = "" if day is None else f" on day {day:g}"
    if patient.outcome == "discharged":
        return f"discharged{at}"
    if patient.outcome == "died":
        return f"died{at}"
    if patient.outcome == "in hospital":
        return "in hospital" + ("" if short or day is None else f" at day {day:g} when the data were frozen (censored)")
    if patient.survival is not None:
        return "survived" if patient.survival else "died"
    return "outcome unknown"


def describe_study_time(study: Study) -> str:
    """When a study was taken, in days since admission and since symptom onset where known."""
    parts = []
    if study.offset_admission_days is not None:
        parts.append(f"Day {study.offset_admission_days:g} since admission")
    if study.offset_onset_days is not None:
        parts.append(f"day {study.offset_onset_days:g} since symptom onset")
    if not parts:
        return "Date unknown"
    text = " · ".join(parts)
    return text[0].upper() + text[1:]


def describe_input_grid(spec: InputSpec) -> str:
    """A model input's grid in words: "224 x 224 px", or "32 x 96 x 96 voxels" for a volume model."""
    depth = getattr(spec, "depth", None)
    if depth:
        return f"{depth} x {spec.size} x {spec.size} voxels (z, y, x)"
    return f"{spec.size} x {spec.size} px"


def km_summary(km: dict) -> str:
    """One line from a stored Kaplan-Meier analysis (``KMAnalysis.to_dict()`` or ``{"message": ...}``)."""
    if "message" in km:
        return str(km["message"])
    parts = []
    for g in km.get("groups", []):
        median = "median not reached" if g.get("median_time") is None else f"median {g['median_time']:g} days"
        parts.append(f"{g['name']} n={g['n']}, {g['events']} events, {median}")
    p = km.get("logrank_p")
    parts.append("log-rank p " + ("-" if p is None else format_p(p)))
    hr, ci = km.get("hazard_ratio"), km.get("hazard_ratio_ci")
    if hr is not None and ci:
        parts.append(f"HR {hr:.2f} (95% CI {ci[0]:.2f}-{ci[1]:.2f})")
    return "; ".join(parts)


def percent(p: float) -> str:
    """A probability as a percentage with one decimal, never rounded up to a certainty:
    "> 99.9%" and "< 0.1%" at the ends."""
    if p > 0.999:
        return "> 99.9%"
    if p < 0.001:
        return "< 0.1%"
    return f"{p:.1%}"
