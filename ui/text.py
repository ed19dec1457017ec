"""Wording shown on several pages."""

from __future__ import annotations

from core.types import XrayImage

DISCLAIMER = (
    "Research use only. This dashboard is not a medical device and must not be used for diagnosis "
    "or treatment decisions. The shipped demo models were trained on synthetic phantoms, not on "
    "patients' images."
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
