"""Slices of a CT volume as a radiologist reads them, with overlays.

A volume is (z, y, x) with z increasing from inferior to superior (see
:class:`core.types.CtVolume`). The three planes, as displayed (rows top to bottom, columns
left to right):

- axial: ``hu[k]``, rows y (anterior at the top), columns x;
- coronal: ``hu[:, j, :]`` with z flipped, so the head is at the top; columns x;
- sagittal: ``hu[:, :, i]`` with z flipped; columns y (anterior on the left).

Pixel sizes follow the volume's spacing, so a figure that keeps physical aspect shows a
coronal slice of 6 mm sections stretched as the body is, not squashed.
"""

from __future__ import annotations

import numpy as np

from core.ct.preprocess import CT_WINDOWS
from core.explain.gradcam3d import max_intensity_projection

PLANES: tuple[str, ...] = ("Axial", "Coronal", "Sagittal")

#: Window presets as (center, width) in HU; "File" means the series' own window.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    f"{name.capitalize()} (W{width:g} / L{center:g})": (center, width) for name, (center, width) in CT_WINDOWS.items()
}


def n_slices(shape: tuple[int, int, int], plane: str) -> int:
    """How many slices the volume has in ``plane``."""
    return int(shape[{"Axial": 0, "Coronal": 1, "Sagittal": 2}[_check(plane)]])


def _check(plane: str) -> str:
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}")
    return plane


def take_slice(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """The 2D slice ``index`` of a (z, y, x) array in ``plane``, oriented for display."""
    index = int(np.clip(index, 0, n_slices(volume.shape, plane) - 1))
    if plane == "Axial":
        return volume[index]
    if plane == "Coronal":
        return volume[::-1, index, :]
    return volume[::-1, :, index]


def pixel_size_mm(spacing_mm: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """(row height, column width) in mm of a displayed slice in ``plane``."""
    dz, dy, dx = spacing_mm
    return {"Axial": (dy, dx), "Coronal": (dz, dx), "Sagittal": (dz, dy)}[_check(plane)]


def signed_overlay(gray_unit: np.ndarray, signed: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """Blend a signed map in [-1, 1] over a grayscale slice: red where H > 0, blue where H < 0,
    stronger with |H| (seed 003's Figure 4). Returns RGB uint8."""
    if gray_unit.shape != signed.shape:
        raise ValueError(f"map shape {signed.shape} differs from image shape {gray_unit.shape}")
    gray = np.clip(gray_unit, 0.0, 1.0).astype(np.float32)[..., None] * np.float32(255.0)
    h = np.clip(signed, -1.0, 1.0).astype(np.float32)
    colour = np.where((h >= 0)[..., None], np.float32([230, 30, 30]), np.float32([30, 80, 230]))
    alpha = (np.float32(min(max(opacity, 0.0), 1.0)) * np.sqrt(np.abs(h)))[..., None]
    out = np.repeat(gray, 3, axis=2) * (1.0 - alpha) + colour * alpha
    return np.clip(out.round(), 0, 255).astype(np.uint8)


def _axis(plane: str) -> int:
    return {"Axial": 0, "Coronal": 1, "Sagittal": 2}[_check(plane)]


def _display(projected: np.ndarray, plane: str) -> np.ndarray:
    """A projection of (z, y, x) along ``plane``'s axis, oriented as :func:`take_slice` shows it."""
    return projected if plane == "Axial" else projected[::-1]


def map_projection(cam: np.ndarray, plane: str, signed: bool = False) -> np.ndarray:
    """The maximum-intensity projection of a map through the volume along ``plane``'s axis,
    oriented for display. For a signed map, the value of largest magnitude along each ray, so
    strong negative evidence is not hidden behind weak positive evidence."""
    axis = _axis(plane)
    if not signed:
        return _display(cam.max(axis=axis), plane)
    return _display(max_intensity_projection(cam, axis), plane)


def mean_projection(unit: np.ndarray, plane: str) -> np.ndarray:
    """The mean of a windowed volume along ``plane``'s axis (a radiograph-like backdrop for a
    projection), oriented for display."""
    return _display(unit.mean(axis=_axis(plane)), plane)
