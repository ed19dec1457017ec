"""Radiologist-style notes for the demo cohort's sessions.

A note describes what was drawn (the phantom's findings and severity, never more) and compares
with the patient's prior study of the same modality, in the words seed 004 used to sort pairs
of sequential radiographs: new or increased opacities (Worse), no significant change (Stable),
decreased or resolved opacities (Improved). :data:`CHANGE_PHRASES` lists the phrases of each
category, so an analysis can read the category back from the note.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

#: Severity change between two studies below which the radiologist calls them unchanged.
STABLE_BAND: float = 0.08
#: Severity below which nothing is visible enough to mention.
VISIBLE_SEVERITY: float = 0.03

#: The comparison phrase of each change category, as written in the notes.
CHANGE_PHRASES: MappingProxyType[str, tuple[str, ...]] = MappingProxyType(
    {
        "Worse": ("new opacities", "increased opacities"),
        "Stable": ("no significant change",),
        "Improved": ("decreased opacities", "resolved opacities"),
    }
)


@dataclass(frozen=True)
class Prior:
    """What the note compares with: the previous study of the same modality."""

    day: int  # days since admission
    severity: float
    findings: MappingProxyType[str, int] | dict[str, int]


def _extent(severity: float) -> str:
    if severity < 0.15:
        return "Minimal"
    if severity < 0.35:
        return "Mild"
    if severity < 0.65:
        return "Moderate"
    return "Extensive"


def change_category(severity: float, prior: Prior) -> str:
    """Worse / Stable / Improved between ``prior`` and now, by the change in severity."""
    delta = severity - prior.severity
    if delta > STABLE_BAND:
        return "Worse"
    if delta < -STABLE_BAND:
        return "Improved"
    return "Stable"


def _comparison(severity: float, prior: Prior | None, what: str) -> str:
    if prior is None:
        return "No prior for comparison."
    category = change_category(severity, prior)
    if category == "Worse":
        phrase = "new opacities" if prior.severity < VISIBLE_SEVERITY else "increased opacities"
    elif category == "Improved":
        phrase = "resolved opacities" if severity < VISIBLE_SEVERITY else "decreased opacities"
    else:
        phrase = "no significant change"
    return f"Compared with the prior {what} of day {prior.day}: {phrase}."


def xray_note(label: str, view: str, severity: float, findings: dict[str, int], prior: Prior | None) -> str:
    """Note for one chest radiograph (findings named as in :data:`core.demo.xray_phantom.FINDINGS`)."""
    parts = [f"{view} chest radiograph."]
    if findings.get("Lung Opacity") and severity >= VISIBLE_SEVERITY:
        if label == "COVID-19":
            pattern = "bilateral peripheral lower-zone ground-glass opacities"
        else:
            pattern = "bilateral perihilar interstitial opacities with peribronchial cuffing"
        text = f"{_extent(severity)} {pattern}"
        if findings.get("Consolidation"):
            text += ", with areas of consolidation"
        parts.append(text + ".")
    else:
        parts.append("Lungs are clear; no focal airspace opacity.")
    parts.append("Pleural effusion." if findings.get("Pleural Effusion") else "No pleural effusion.")
    parts.append("The heart is enlarged." if findings.get("Cardiomegaly") else "Heart size is normal.")
    parts.append(_comparison(severity, prior, "radiograph"))
    return " ".join(parts)


def ct_note(label: str, severity: float, findings: dict[str, int], lesion_fraction: float, prior: Prior | None) -> str:
    """Note for one chest CT (findings named as in :data:`core.demo.ct_phantom.CT_FINDINGS`)."""
    parts = ["Chest CT without contrast."]
    if lesion_fraction > 0.0 and severity >= VISIBLE_SEVERITY:
        side = "bilateral" if findings.get("Bilateral") else "unilateral"
        where = "peripheral, posterior lower-lobe predominant" if findings.get("Peripheral") else "peribronchovascular"
        kind = "ground-glass opacities" if label == "COVID-19" else "ground-glass and nodular opacities"
        text = f"{_extent(severity)} multifocal {side} {where} {kind}"
        extras = []
        if findings.get("Crazy paving"):
            extras.append("crazy paving")
        if findings.get("Consolidation"):
            extras.append("consolidation")
        if extras:
            text += " with " + " and ".join(extras)
        parts.append(text + f"; about {max(1, round(100 * lesion_fraction))}% of the lung volume involved.")
    else:
        parts.append("Lungs are clear.")
    parts.append("Pleural effusion." if findings.get("Pleural Effusion") else "No pleural effusion.")
    parts.append(_comparison(severity, prior, "CT"))
    return " ".join(parts)
