"""Typed data that flows between layers (readers -> models -> explanations -> pages).

Small frozen dataclasses. Arrays are NumPy, shapes and units stated on each field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: A progress callback: ``progress(done, total)``, called as work advances (a page's bar, the CLI's).
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class XrayImage:
    """One 2D radiograph as read from a file, before any model preprocessing.

    ``pixels`` is float32 (H, W) in the file's own units after the modality LUT (raw values for
    PNG/JPEG/TIFF), oriented so that larger values are denser / brighter on screen: MONOCHROME1
    DICOM is inverted at read time. ``window_center`` / ``window_width`` are the file's own
    display window in the same units (from the DICOM VOI tags, else the full value range).
    """

    pixels: np.ndarray
    window_center: float
    window_width: float
    source_name: str
    file_format: str  # "png", "jpeg", "bmp", "tiff", "dicom"
    bits_stored: int = 8
    photometric: str = "MONOCHROME2"
    modality: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None
    warnings: tuple[str, ...] = ()

    @property
    def is_dicom(self) -> bool:
        return self.file_format == "dicom"

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))

    @property
    def value_range(self) -> tuple[float, float]:
        return (float(self.pixels.min()), float(self.pixels.max()))

    def windowed(self, center: float | None = None, width: float | None = None) -> np.ndarray:
        """Return float32 (H, W) in [0, 1] after a linear window (default: the file's own)."""
        c = self.window_center if center is None else float(center)
        w = self.window_width if width is None else float(width)
        w = max(w, 1e-6)
        low = c - w / 2.0
        out = (self.pixels - np.float32(low)) / np.float32(w)
        return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


@dataclass(frozen=True)
class Prediction:
    """Class probabilities of one model for one input, with the label order they follow."""

    model_id: str
    model_version: str
    labels: tuple[str, ...]
    probabilities: tuple[float, ...]
    calibrated: bool = False

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.probabilities):
            raise ValueError("labels and probabilities differ in length")

    @property
    def predicted_index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def predicted_label(self) -> str:
        return self.labels[self.predicted_index]

    def probability_of(self, label: str) -> float:
        return float(self.probabilities[self.labels.index(label)])

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "model_version": self.model_version,
            "labels": list(self.labels),
            "probabilities": {k: round(float(p), 6) for k, p in zip(self.labels, self.probabilities, strict=True)},
            "predicted": self.predicted_label,
            "calibrated": self.calibrated,
        }


@dataclass(frozen=True)
class ExplanationMap:
    """An attribution map over the model input, resized to the image: float32 (H, W) in [0, 1]."""

    values: np.ndarray
    method: str
    target_label: str
    model_id: str
    notes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.values.ndim != 2:
            raise ValueError(f"explanation map must be 2D, got shape {self.values.shape}")


@dataclass(frozen=True, eq=False)
class CtVolume:
    """A CT series as one volume in Hounsfield units.

    ``hu`` is float32 (z, y, x) in HU, axis 0 ordered along the slice normal (increasing
    position); ``spacing_mm`` is (z, y, x) in mm, z being the median distance between
    consecutive slice positions; ``window`` is (center, width) in HU from the first slice's
    Window Center / Width, when present.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    series_uid: str
    description: str
    window: tuple[float, float] | None
    n_files: int
    warnings: tuple[str, ...] = ()
