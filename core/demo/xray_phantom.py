"""Deterministic phantoms of posteroanterior (PA) chest radiographs for the demo cohort.

A phantom is built as a map of X-ray attenuation (the sum of soft tissue, bone and fluid
thicknesses minus the air of the lungs along each ray), which is then turned into a displayed
brightness: ``1 - exp(-k * attenuation)``, a per-patient window and gamma, and quantum noise.
Brighter means denser (MONOCHROME2): bone, heart and opacities are white, aerated lung is dark.

Geometry is described in normalised coordinates: ``X`` runs from -1 (image left, the patient's
right in a PA view) to +1, ``Y`` from -1 (top) to +1 (bottom); one unit is half the field of
view (:data:`FIELD_OF_VIEW_MM`). Rotation, scale and shift of the patient are applied to the
coordinate grid, so every structure is drawn analytically in the patient's own frame.

Three independent random streams are spawned from the seed: anatomy (and exposure), disease,
and noise. The same seed therefore gives the same patient and the same noise whatever the label
and severity, so a Normal and a COVID-19 phantom of one seed differ only by the disease drawn,
and the density added by disease grows monotonically with severity.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image

from core.labels import XRAY_LABELS

logger = logging.getLogger(__name__)

#: Finding names in the output order of the cxr-findings model (CheXpert names).
FINDINGS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
)

#: Class folder of each label in the Kaggle COVID-19 Radiography Database layout.
DATASET_FOLDERS: MappingProxyType[str, str] = MappingProxyType(
    {"Normal": "NORMAL", "Viral pneumonia": "Viral Pneumonia", "COVID-19": "COVID"}
)

#: Width and height of the square field of view, in millimetres.
FIELD_OF_VIEW_MM: float = 380.0

#: Severity range drawn for diseased cases by :func:`write_xray_dataset`.
DATASET_SEVERITY_RANGE: tuple[float, float] = (0.25, 1.0)

#: Severity above which airspace consolidation is drawn, per diseased label.
CONSOLIDATION_SEVERITY: MappingProxyType[str, float] = MappingProxyType({"COVID-19": 0.5, "Viral pneumonia": 0.75})

#: Severity from which a pleural effusion may be drawn, and its probability there.
EFFUSION_MIN_SEVERITY: float = 0.6
EFFUSION_PROBABILITY: float = 0.2

#: Probability that a patient (of any class) has cardiomegaly (cardiothoracic ratio > 0.5).
CARDIOMEGALY_PROBABILITY: float = 0.12

_MIN_SIZE = 64
_MAX_SIZE = 4096
#: Largest size drawn at full resolution; larger phantoms are drawn at about half size.
_MAX_FULL_DRAW = 320
_F32 = np.float32


@dataclass(frozen=True, eq=False)
class XrayPhantom:
    """One synthetic PA chest radiograph with the ground truth of what was drawn.

    Attributes
    ----------
    pixels : np.ndarray
        float32 (H, W) in [0, 1], brighter = denser (MONOCHROME2 sense).
    label : str
        One of :data:`core.types.XRAY_LABELS`.
    severity : float
        Disease severity in [0, 1]; always 0 for ``"Normal"``.
    findings : dict[str, int]
        0 or 1 for each name of :data:`FINDINGS`, following what was drawn.
    pixel_spacing_mm : float
        Size of one (square) pixel, in millimetres.
    """

    pixels: np.ndarray
    label: str
    severity: float
    findings: dict[str, int]
    pixel_spacing_mm: float

    def to_uint8(self) -> np.ndarray:
        """The radiograph as 8-bit grayscale (H, W), as the PNGs of the demo datasets store it."""
        return np.rint(self.pixels * 255.0).astype(np.uint8)

    def to_png(self) -> bytes:
        """The radiograph as 8-bit grayscale PNG bytes, in memory."""
        buf = io.BytesIO()
        Image.fromarray(self.to_uint8()).save(buf, format="PNG")
        return buf.getvalue()


# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class _Anatomy:
    """Per-patient anatomy and exposure, in normalised units. Pairs are (right, left) lung."""

    rotation_rad: float
    scale: float
    shift_x: float
    shift_y: float
    body_halfwidth: float
    apex_y: tuple[float, float]
    apex_l: tuple[float, float]
    lung_halfwidth: tuple[float, float]
    widest_y: tuple[float, float]
    medial_l: tuple[float, float]
    dome_y: tuple[float, float]
    dome_c: tuple[float, float]
    heart_x: float
    heart_y: float
    heart_a: float
    heart_b: float
    heart_angle_rad: float
    cardiothoracic_ratio: float
    hilum_l: tuple[float, float]
    hilum_y: tuple[float, float]
    rib_z1: float
    rib_spacing: float
    rib_curvature: float
    anterior_rib_z1: float
    clavicle_y: float
    vertebra_period: float
    vertebra_phase: float
    gastric_bubble: float
    atten_k: float
    window_lo: float
    window_hi: float
    gamma: float
    noise_std: float


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
    """Draw one patient's anatomy and exposure; the order of draws is part of determinism."""
    rotation = math.radians(_u(rng, -4.0, 4.0))
    scale = _u(rng, 0.9, 1.04)
    shift_x = _u(rng, -0.04, 0.04)
    shift_y = _u(rng, -0.05, 0.04)
    body_halfwidth = _u(rng, 0.86, 0.96)

    apex_y0 = _u(rng, -0.76, -0.68)
    apex_y = (apex_y0 + _u(rng, -0.02, 0.02), apex_y0 + _u(rng, -0.02, 0.02))
    apex_l = (_u(rng, 0.27, 0.33), _u(rng, 0.27, 0.33))
    halfwidth0 = _u(rng, 0.72, 0.82)
    lung_halfwidth = (halfwidth0 + _u(rng, -0.015, 0.015), halfwidth0 + _u(rng, -0.015, 0.015))
    widest_y = (_u(rng, 0.1, 0.22), _u(rng, 0.1, 0.22))
    medial_l = (_u(rng, 0.06, 0.08), _u(rng, 0.07, 0.09))
    dome_right = _u(rng, 0.3, 0.44)
    # The right hemidiaphragm sits higher than the left (the liver lies under it).
    dome_y = (dome_right, dome_right + _u(rng, 0.03, 0.09))
    dome_c0 = _u(rng, 1.05, 1.45)
    dome_c = (dome_c0, dome_c0 * _u(rng, 0.9, 1.1))

    cardiomegaly = rng.random() < CARDIOMEGALY_PROBABILITY
    ctr = _u(rng, 0.53, 0.62) if cardiomegaly else _u(rng, 0.38, 0.47)
    angle = math.radians(_u(rng, 25.0, 40.0))
    aspect = _u(rng, 0.62, 0.72)
    half_width = 0.5 * ctr * (lung_halfwidth[0] + lung_halfwidth[1])
    heart_a = half_width / math.sqrt(math.cos(angle) ** 2 + (aspect * math.sin(angle)) ** 2)
    heart_b = aspect * heart_a
    # The heart leans to the patient's left: about a third of it lies right of the midline.
    heart_x = half_width * _u(rng, 0.28, 0.42)
    heart_y = 0.5 * (dome_y[0] + dome_y[1]) - _u(rng, 0.08, 0.12)

    hilum_right_y = _u(rng, -0.14, -0.06)
    hilum_l = (_u(rng, 0.15, 0.19), _u(rng, 0.16, 0.2))
    # The left hilum is higher: the left pulmonary artery arches over the left main bronchus.
    hilum_y = (hilum_right_y, hilum_right_y - _u(rng, 0.03, 0.08))

    rib_z1 = _u(rng, -0.84, -0.78)
    rib_spacing = _u(rng, 0.12, 0.14)
    rib_curvature = _u(rng, 0.45, 0.65)
    anterior_rib_z1 = _u(rng, -0.62, -0.52)
    clavicle_y = _u(rng, -0.58, -0.5)
    vertebra_period = _u(rng, 0.13, 0.15)
    vertebra_phase = _u(rng, 0.0, 1.0)
    gastric_bubble = _u(rng, 0.0, 1.0) if rng.random() < 0.7 else 0.0

    return _Anatomy(
        rotation_rad=rotation,
        scale=scale,
        shift_x=shift_x,
        shift_y=shift_y,
        body_halfwidth=body_halfwidth,
        apex_y=apex_y,
        apex_l=apex_l,
        lung_halfwidth=lung_halfwidth,
        widest_y=widest_y,
        medial_l=medial_l,
        dome_y=dome_y,
        dome_c=dome_c,
        heart_x=heart_x,
        heart_y=heart_y,
        heart_a=heart_a,
        heart_b=heart_b,
        heart_angle_rad=angle,
        cardiothoracic_ratio=ctr,
        hilum_l=hilum_l,
        hilum_y=hilum_y,
        rib_z1=rib_z1,
        rib_spacing=rib_spacing,
        rib_curvature=rib_curvature,
        anterior_rib_z1=anterior_rib_z1,
        clavicle_y=clavicle_y,
        vertebra_period=vertebra_period,
        vertebra_phase=vertebra_phase,
        gastric_bubble=gastric_bubble,
        atten_k=_u(rng, 1.15, 1.5),
        window_lo=_u(rng, 0.0, 0.1),
        window_hi=_u(rng, 0.9, 1.0),
        gamma=_u(rng, 0.8, 1.3),
        noise_std=_u(rng, 0.008, 0.022),
    )


# --------------------------------------------------------------------------- array helpers


def _ramp(d: np.ndarray, width: float) -> np.ndarray:
    """Soft step from 0 (d <= -width/2) to 1 (d >= width/2), linear in between."""
    out = d * _F32(1.0 / width)
    out += _F32(0.5)
    return np.clip(out, 0.0, 1.0, out=out)


def _unit_clip(d: np.ndarray, scale: float) -> np.ndarray:
    """``clip(d * scale, 0, 1)`` as float32."""
    out = d * _F32(scale)
    return np.clip(out, 0.0, 1.0, out=out)


def _smoothstep(t: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of values already in [0, 1]."""
    return t * t * (_F32(3.0) - _F32(2.0) * t)


def _side_map(right: np.ndarray, pair: tuple[float, float]) -> np.ndarray:
    """Per-pixel value of a (right lung, left lung) parameter pair."""
    return np.where(right, _F32(pair[0]), _F32(pair[1]))


@lru_cache(maxsize=32)
def _gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1D Gaussian kernel truncated at 3 sigma, float32."""
    radius = max(int(math.ceil(3.0 * sigma)), 1)
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    out = (taps / taps.sum()).astype(np.float32)
    out.setflags(write=False)
    return out


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur (sigma in pixels, mirrored borders) of a float32 image.

    Shifted adds rather than BLAS products: on a shared 2-core machine a multithreaded matrix
    product stalls whenever the other core is busy.
    """
    if sigma <= 0:
        return image
    kernel = _gaussian_kernel(float(sigma))
    radius = kernel.size // 2
    h, w = image.shape
    padded = np.pad(image, ((radius, radius), (0, 0)), mode="reflect")
    rows = kernel[0] * padded[:h]
    for i in range(1, kernel.size):
        rows += kernel[i] * padded[i : i + h]
    padded = np.pad(rows, ((0, 0), (radius, radius)), mode="reflect")
    out = kernel[0] * padded[:, :w]
    for i in range(1, kernel.size):
        out += kernel[i] * padded[:, i : i + w]
    return out


@lru_cache(maxsize=32)
def _linear_taps(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices i0, i0 + 1 and weight of i0 + 1 for linear resampling from n_in to n_out."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(src).astype(np.intp), max(n_in - 2, 0))
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float32)
    for a in (i0, i1, frac):
        a.setflags(write=False)
    return i0, i1, frac


def _resample(image: np.ndarray, n_out: int, sigma_in: float) -> np.ndarray:
    """Blur a square float32 image (sigma in its own pixels), then resize it linearly.

    Returns float32 (n_out, n_out).
    """
    image = _blur(image, sigma_in)
    i0, i1, frac = _linear_taps(n_out, image.shape[0])
    top = image[i0]
    rows = top + (image[i1] - top) * frac[:, None]
    left = rows[:, i0]
    return left + (rows[:, i1] - left) * frac[None, :]


def _smooth_noise(rng: np.random.Generator, n_coarse: int, sigma: float, size: int) -> np.ndarray:
    """Smooth Gaussian random field (size, size) with unit standard deviation, float32.

    ``n_coarse`` sets the grid the white noise is drawn on and ``sigma`` (in coarse pixels) its
    correlation length, so the feature size is about ``sigma * size / n_coarse`` pixels.
    """
    white = rng.standard_normal((n_coarse, n_coarse), dtype=np.float32)
    coarse = _blur(white, sigma)
    coarse *= _F32(1.0 / max(float(coarse.std()), 1e-6))
    return _resample(coarse, size, 0.0)


# --------------------------------------------------------------------------- geometry


@dataclass
class _Frame:
    """Coordinate maps and lung geometry at the drawing resolution, shared by anatomy and disease.

    Every array is (S, S) float32 unless stated; coordinates are in the patient's frame.
    """

    X: np.ndarray  # lateral coordinate, negative on the patient's right (image left)
    Y: np.ndarray  # craniocaudal coordinate, down positive
    ell: np.ndarray  # |X|, distance from the midline
    right: np.ndarray  # bool, the patient's right half
    lung: np.ndarray  # soft lung mask in [0, 1]
    lung_depth: np.ndarray  # relative air thickness in [0, 1]: thin at the borders
    lateral_frac: np.ndarray  # 0 at the medial lung border, 1 at the lateral one
    vertical_frac: np.ndarray  # 0 at the apex, 1 at the hemidiaphragm
    dome: np.ndarray  # Y of the hemidiaphragm under each point
    lung_halfwidth: np.ndarray  # lateral extent of the lung of each side
    edge: float  # width of a sharp edge (about 1.5 pixels), normalised units


def _make_frame(anat: _Anatomy, size: int) -> _Frame:
    """Rotate, scale and shift the pixel grid into the patient's frame and outline the lungs."""
    c = (np.arange(size, dtype=np.float32) + _F32(0.5)) * _F32(2.0 / size) - _F32(1.0)
    xs = (c - _F32(anat.shift_x))[None, :]
    ys = (c - _F32(anat.shift_y))[:, None]
    cos = math.cos(anat.rotation_rad) / anat.scale
    sin = math.sin(anat.rotation_rad) / anat.scale
    X = _F32(cos) * xs + _F32(sin) * ys
    Y = _F32(-sin) * xs + _F32(cos) * ys
    ell = np.abs(X)
    right = X < 0
    edge = 3.0 / size

    apex_y = _side_map(right, anat.apex_y)
    apex_l = _side_map(right, anat.apex_l)
    halfwidth = _side_map(right, anat.lung_halfwidth)
    inv_height = _side_map(right, tuple(1.0 / (w - a) for w, a in zip(anat.widest_y, anat.apex_y, strict=True)))
    ty = Y - apex_y
    # Square-root profiles round the apex; the lateral wall is widest at widest_y, while the
    # medial border reaches the mediastinum higher up.
    lateral = apex_l + (halfwidth - apex_l) * np.sqrt(np.clip(ty * inv_height, 0.0, 1.0))
    medial_l = _side_map(right, anat.medial_l)
    medial = apex_l - (apex_l - medial_l) * np.sqrt(_unit_clip(ty, 1.0 / 0.4))
    dl = ell - _F32(0.4)
    dome = _side_map(right, anat.dome_y) + _side_map(right, anat.dome_c) * dl * dl

    d_lat = lateral - ell
    d_med = ell - medial
    d_bot = dome - Y
    lung = _ramp(d_lat, edge) * _ramp(d_med, edge) * _ramp(d_bot, edge) * _ramp(ty, edge)
    depth = _unit_clip(d_lat, 5.0) * _unit_clip(d_med, 8.0) * _unit_clip(d_bot, 5.0)
    depth *= _unit_clip(ty, 4.0)
    np.sqrt(depth, out=depth)
    span = np.maximum(lateral - medial, _F32(1e-3))
    lateral_frac = np.clip(d_med / span, 0.0, 1.0)
    vertical_frac = np.clip(ty / np.maximum(d_bot + ty, _F32(1e-3)), 0.0, 1.0)
    return _Frame(
        X=X,
        Y=Y,
        ell=ell,
        right=right,
        lung=lung,
        lung_depth=depth,
        lateral_frac=lateral_frac,
        vertical_frac=vertical_frac,
        dome=dome,
        lung_halfwidth=halfwidth,
        edge=edge,
    )


def _to_image_coords(anat: _Anatomy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Map patient-frame points back to normalised image coordinates (inverse of the grid)."""
    cos = math.cos(anat.rotation_rad) * anat.scale
    sin = math.sin(anat.rotation_rad) * anat.scale
    return anat.shift_x + cos * x - sin * y, anat.shift_y + sin * x + cos * y


def _segment_distance(X: np.ndarray, Y: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    """Distance (S, S) from each point to the segment p0-p1, normalised units."""
    vx, vy = p1[0] - p0[0], p1[1] - p0[1]
    inv_len2 = 1.0 / max(vx * vx + vy * vy, 1e-9)
    dx = X - _F32(p0[0])
    dy = Y - _F32(p0[1])
    t = np.clip((dx * _F32(vx) + dy * _F32(vy)) * _F32(inv_len2), 0.0, 1.0)
    dx -= t * _F32(vx)
    dy -= t * _F32(vy)
    return np.sqrt(dx * dx + dy * dy)


# --------------------------------------------------------------------------- vessels


def _vessel_tree(rng: np.random.Generator, anat: _Anatomy) -> tuple[np.ndarray, ...]:
    """Sample points along branching pulmonary vessel trees grown from both hila.

    Returns (x, y, weight, level), 1D float arrays in the patient's frame; ``weight`` is the
    vessel calibre (1 for a trunk) and ``level`` the branching generation (0 = trunk).
    """
    points_per_segment = 20
    t = np.linspace(0.0, 1.0, points_per_segment)
    xs, ys, ws, levels = [], [], [], []
    # Trunk directions, radians from the lateral direction, positive downward.
    base = np.radians([-80.0, -45.0, -15.0, 15.0, 45.0, 75.0, 105.0])
    for side, sign in ((0, -1.0), (1, 1.0)):
        n = base.size
        angle = base + rng.uniform(-0.18, 0.18, n)
        length = rng.uniform(0.12, 0.18, n)
        width = np.ones(n)
        # Trunks leave the hilum from slightly different points, not from one pixel.
        start_x = sign * (anat.hilum_l[side] + rng.uniform(-0.02, 0.03, n))
        start_y = anat.hilum_y[side] + rng.uniform(-0.05, 0.05, n)
        for level in range(4):
            dx = sign * np.cos(angle) * length
            dy = np.sin(angle) * length
            xs.append((start_x[:, None] + dx[:, None] * t).ravel())
            ys.append((start_y[:, None] + dy[:, None] * t).ravel())
            # Calibre tapers along each segment; weight per point keeps line density fixed.
            taper = 1.0 - 0.25 * t
            ws.append((width[:, None] * length[:, None] * taper).ravel() / points_per_segment)
            levels.append(np.full(n * points_per_segment, level))
            end_x, end_y = start_x + dx, start_y + dy
            spread = rng.uniform(0.22, 0.55, (n, 2)) * np.array([-1.0, 1.0])
            angle = np.repeat(angle, 2) + spread.ravel()
            length = np.repeat(length, 2) * rng.uniform(0.6, 0.85, 2 * n)
            width = np.repeat(width, 2) * 0.7
            start_x, start_y = np.repeat(end_x, 2), np.repeat(end_y, 2)
            n *= 2
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), np.concatenate(levels)


def _splat(x_img: np.ndarray, y_img: np.ndarray, weight: np.ndarray, n: int) -> np.ndarray:
    """Bilinear splat of weighted points (normalised image coordinates) on an (n, n) grid."""
    px = (x_img + 1.0) * (0.5 * n) - 0.5
    py = (y_img + 1.0) * (0.5 * n) - 0.5
    i0 = np.floor(px).astype(np.int64)
    j0 = np.floor(py).astype(np.int64)
    fx = px - i0
    fy = py - j0
    keep = (i0 >= 0) & (i0 < n - 1) & (j0 >= 0) & (j0 < n - 1)
    i0, j0, fx, fy, w = i0[keep], j0[keep], fx[keep], fy[keep], weight[keep]
    flat = j0 * n + i0
    index = np.concatenate([flat, flat + 1, flat + n, flat + n + 1])
    value = np.concatenate([w * (1 - fx) * (1 - fy), w * fx * (1 - fy), w * (1 - fx) * fy, w * fx * fy])
    grid = np.bincount(index, weights=value, minlength=n * n)
    return grid.reshape(n, n).astype(np.float32)


@dataclass
class _Vessels:
    """Splatted vessel trees on a coarse grid, with the grid's size and pixels per unit."""

    trunks: np.ndarray  # (n, n) generations 0-1
    branches: np.ndarray  # (n, n) generations 2-3
    n: int

    def blurred(self, size: int, sigma: float, which: str = "all") -> np.ndarray:
        """(size, size) vessel map blurred by ``sigma`` normalised units."""
        grid = {"trunks": self.trunks, "branches": self.branches}.get(which)
        if grid is None:
            grid = self.trunks + self.branches
        return _resample(grid, size, sigma * 0.5 * self.n)


def _draw_vessels(rng: np.random.Generator, anat: _Anatomy, size: int) -> _Vessels:
    x, y, w, level = _vessel_tree(rng, anat)
    xi, yi = _to_image_coords(anat, x, y)
    n = max(size // 2, 32)
    # Weights are calibre x length; dividing by the pixel area makes the blurred map a density
    # per unit area, the same at every resolution (scaled to about 0.3 per calibre at the peak).
    w = w * ((0.5 * n) ** 2 / 128.0)
    trunk = level < 2
    return _Vessels(
        trunks=_splat(xi[trunk], yi[trunk], w[trunk], n),
        branches=_splat(xi[~trunk], yi[~trunk], w[~trunk], n),
        n=n,
    )


# --------------------------------------------------------------------------- anatomy


def _window(
    anat: _Anatomy, size: int, x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[slice, slice]:
    """Pixel (row, column) slices covering a box of the patient's frame, with a margin.

    Local structures are drawn only inside their window, which keeps a 512 px phantom fast.
    """
    x = np.array([x_range[0], x_range[1], x_range[0], x_range[1]])
    y = np.array([y_range[0], y_range[0], y_range[1], y_range[1]])
    xi, yi = _to_image_coords(anat, x, y)
    half = 0.5 * size

    def bounds(v: np.ndarray) -> slice:
        lo = int(np.floor((v.min() + 1.0) * half)) - 2
        hi = int(np.ceil((v.max() + 1.0) * half)) + 2
        return slice(min(max(lo, 0), size), min(max(hi, 0), size))

    return bounds(yi), bounds(xi)


def _ellipsoid(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Chord length (in [0, 1]) through an axis-aligned ellipsoid, for (H, W) coordinates."""
    u = (X - _F32(cx)) * _F32(1.0 / rx)
    v = (Y - _F32(cy)) * _F32(1.0 / ry)
    return np.sqrt(np.clip(_F32(1.0) - u * u - v * v, 0.0, 1.0))


def _anatomy_attenuation(
    frame: _Frame, anat: _Anatomy, vessels: _Vessels, texture: np.ndarray, size: int
) -> np.ndarray:
    """Attenuation (S, S) of the normal chest: soft tissue, bone, heart, air and vessels."""
    X, Y, ell, e = frame.X, frame.Y, frame.ell, frame.edge
    soft = 4.0 * e

    # Body: the torso, widest at the lower chest; above the axillae the shoulders and upper
    # arms reach the image edges, and the neck rises out of the top edge.
    bw = anat.body_halfwidth
    dy_chest = Y - _F32(0.35)
    torso = _F32(bw) - _F32(0.06) * dy_chest * dy_chest
    axilla = _smoothstep(_unit_clip(_F32(-0.2) - Y, 1.0 / 0.55))
    wall = _ramp(torso + (_F32(1.2) - torso) * axilla - ell, soft)
    shoulder = _unit_clip(ell - _F32(0.22), 1.0 / 0.75)
    shoulder_top = _F32(-0.96) + _F32(0.18) * shoulder * shoulder
    trunk = _ramp(Y - shoulder_top, soft)
    body = np.maximum(trunk, _ramp(_F32(0.2) - ell, soft))
    body *= wall
    profile = _F32(1.0) - np.minimum(ell / torso, _F32(1.0)) ** 2
    att = body * (_F32(0.35) + _F32(0.65) * np.sqrt(profile))
    # The neck is much thinner than the chest; a faint texture breaks the uniformity.
    att *= (_F32(0.65) + _F32(0.35) * trunk) * (_F32(1.0) + _F32(0.04) * texture)

    below = _ramp(Y - frame.dome, soft)
    below *= body
    air = frame.lung * (_F32(0.3) + _F32(0.7) * frame.lung_depth)

    # Heart: a tilted ellipsoid leaning to the patient's left; its thickness is the chord.
    # It displaces the lung in front of it and merges with the abdomen below the diaphragm.
    r = max(anat.heart_a, anat.heart_b)
    w = _window(anat, size, (anat.heart_x - r, anat.heart_x + r), (anat.heart_y - r, anat.heart_y + r))
    ca, sa = math.cos(anat.heart_angle_rad), math.sin(anat.heart_angle_rad)
    u = X[w] - _F32(anat.heart_x)
    v = Y[w] - _F32(anat.heart_y)
    hu = (_F32(ca) * u + _F32(sa) * v) * _F32(1.0 / anat.heart_a)
    hv = (_F32(-sa) * u + _F32(ca) * v) * _F32(1.0 / anat.heart_b)
    heart = np.sqrt(np.clip(_F32(1.0) - hu * hu - hv * hv, 0.0, 1.0))
    heart *= _F32(1.0) - below[w]
    air[w] *= _F32(1.0) - _F32(0.6) * heart
    att -= _F32(0.78) * air
    att[w] += _F32(0.32) * heart

    # Abdomen below the hemidiaphragms (liver on the right), gastric air under the left dome.
    att += _F32(0.18) * below
    if anat.gastric_bubble > 0:
        gx, gy = 0.4, anat.dome_y[1] + 0.07 + 0.04 * anat.gastric_bubble
        rx, ry = 0.07 + 0.05 * anat.gastric_bubble, 0.045
        w = _window(anat, size, (gx - rx, gx + rx), (gy - ry, gy + ry))
        bubble = _ellipsoid(X[w], Y[w], gx, gy, rx, ry)
        att[w] -= _F32(0.25) * bubble * bubble

    # Humeral heads in the upper corners, under the soft tissue of the shoulders.
    for sign in (-1.0, 1.0):
        cx, cy, rh = sign * (bw + 0.2), -0.58, 0.17
        w = _window(anat, size, (cx - rh, cx + rh), (cy - rh, cy + rh))
        att[w] += _F32(0.25) * _ellipsoid(X[w], Y[w], cx, cy, rh, rh)

    # Mediastinum: the vascular pedicle above the heart and the aortic knob on the left.
    w = _window(anat, size, (-0.16, 0.14), (-1.5, 1.5))
    pedicle = _ramp(_F32(0.12) - np.abs(X[w] + _F32(0.01)), soft)
    pedicle *= _ramp(frame.dome[w] - Y[w], soft)
    att[w] += _F32(0.16) * pedicle
    knob = (0.12, anat.hilum_y[1] - 0.2, 0.07)
    w = _window(anat, size, (knob[0] - knob[2], knob[0] + knob[2]), (knob[1] - knob[2], knob[1] + knob[2]))
    att[w] += _F32(0.22) * _ellipsoid(X[w], Y[w], knob[0], knob[1], knob[2], knob[2])

    # Hila: the pulmonary arteries, the left one higher.
    for side, sign in ((0, -1.0), (1, 1.0)):
        cx, cy = sign * (anat.hilum_l[side] + 0.02), anat.hilum_y[side]
        w = _window(anat, size, (cx - 0.06, cx + 0.06), (cy - 0.1, cy + 0.1))
        att[w] += _F32(0.1) * _ellipsoid(X[w], Y[w], cx, cy, 0.05, 0.09)

    # Airways: the trachea down to the carina, then the two main bronchi to the hila.
    carina = (0.0, min(anat.hilum_y) - 0.1)
    w = _window(anat, size, (-0.06, 0.06), (-1.5, carina[1] + 0.02))
    trachea = _ramp(_F32(0.045) - np.abs(X[w]), soft)
    trachea *= _ramp(_F32(carina[1]) - Y[w], soft)
    att[w] -= _F32(0.25) * trachea
    for side, sign in ((0, -1.0), (1, 1.0)):
        hilum = (sign * anat.hilum_l[side] * 0.75, anat.hilum_y[side] + 0.02)
        xs, ys = sorted((carina[0], hilum[0])), sorted((carina[1], hilum[1]))
        w = _window(anat, size, (xs[0] - 0.03, xs[1] + 0.03), (ys[0] - 0.03, ys[1] + 0.03))
        dist = _segment_distance(X[w], Y[w], carina, hilum)
        att[w] -= _F32(0.1) * _ramp(_F32(0.022) - dist, soft)

    # Spine: vertebral bodies with darker disc spaces and paired pedicles.
    w = _window(anat, size, (-0.12, 0.12), (-1.5, 1.5))
    ell_w = ell[w]
    phase = Y[w] * _F32(1.0 / anat.vertebra_period) + _F32(anat.vertebra_phase)
    phase -= np.floor(phase + _F32(0.5))
    disc = _unit_clip(_F32(0.12) - np.abs(phase), 1.0 / 0.12)
    ped_x = (ell_w - _F32(0.07)) * _F32(1.0 / 0.022)
    ped_y = phase * _F32(1.0 / 0.2)
    pedicles = np.clip(_F32(1.0) - ped_x * ped_x - ped_y * ped_y, 0.0, 1.0)
    spine = _F32(0.12) - _F32(0.05) * disc + _F32(0.06) * pedicles
    att[w] += _ramp(_F32(0.1) - ell_w, soft) * spine

    # Posterior ribs: one curved family, indexed by a phase that grows down the chest. From the
    # spine they run out and slightly up, then curve down along the lateral chest wall.
    curve = ell * (_F32(anat.rib_curvature) * ell - _F32(0.22))
    z = (Y - curve - _F32(anat.rib_z1)) * _F32(1.0 / anat.rib_spacing)
    z -= _F32(0.025) * z * z  # intercostal spaces widen toward the bases
    extent = _ramp(z + _F32(0.5), 0.3) * _ramp(_F32(10.4) - z, 0.3)
    extent *= _ramp(ell - _F32(0.05), soft) * _ramp(frame.lung_halfwidth + _F32(0.07) - ell, soft)
    extent *= body * (_F32(1.0) - _F32(0.7) * below)
    z -= np.floor(z + _F32(0.5))
    att += _F32(0.13) * _rib_profile(z, 0.26) * extent

    # Anterior ribs: fainter, broader, sloping down toward the sternum.
    za = (Y + _F32(0.55) * ell - _F32(anat.anterior_rib_z1)) * _F32(1.0 / 0.2)
    extent = _ramp(za + _F32(0.3), 0.3) * _ramp(_F32(5.6) - za, 0.3)
    extent *= _ramp(ell - _F32(0.3), 0.1) * _ramp(frame.lung_halfwidth - ell, soft)
    za -= np.floor(za + _F32(0.5))
    att += _F32(0.06) * _rib_profile(za, 0.22) * extent

    # Clavicles: a gentle S (a cubic with roots at the ends and the middle of the bone),
    # rising from the sternal end to the acromion, thicker medially.
    cy = anat.clavicle_y
    w = _window(anat, size, (-0.9, 0.9), (cy - 0.17, cy + 0.06))
    ell_w = ell[w]
    clav_y = _F32(cy) - _F32(0.12) * ell_w
    clav_y += _F32(0.5) * ell_w * (ell_w - _F32(0.45)) * (ell_w - _F32(0.85))
    dc = (Y[w] - clav_y) / (_F32(0.038) - _F32(0.014) * ell_w)
    clav = np.sqrt(np.clip(_F32(1.0) - dc * dc, 0.0, 1.0))
    clav *= _ramp(ell_w - _F32(0.09), soft) * _ramp(_F32(0.84) - ell_w, 0.04)
    att[w] += _F32(0.24) * clav

    # Pulmonary vessels: trunks and branches from the hila, fading toward the lung periphery.
    vessel_map = vessels.blurred(size, 0.011, "trunks")
    vessel_map += vessels.blurred(size, 0.0055, "branches")
    vessel_map *= frame.lung * (_F32(1.0) - _F32(0.55) * frame.lateral_frac)
    att += _F32(0.3) * vessel_map
    return att


def _rib_profile(nearest: np.ndarray, half: float) -> np.ndarray:
    """Cross-section of a rib: the chord of a tube plus a brighter cortical rim.

    ``nearest`` is the signed distance (in rib periods) to the closest rib centre line and
    ``half`` the rib half-height in the same unit.
    """
    r = np.abs(nearest) * _F32(1.0 / half)
    chord = np.sqrt(np.clip(_F32(1.0) - r * r, 0.0, 1.0))
    rim = np.clip(_F32(1.0) - np.abs(r - _F32(0.85)) * _F32(1.0 / 0.15), 0.0, 1.0)
    return _F32(0.7) * chord + _F32(0.45) * rim


# --------------------------------------------------------------------------- disease


@dataclass
class _Disease:
    """Attenuation added by disease and what was drawn."""

    attenuation: np.ndarray | None
    consolidation: bool
    effusion: bool


def _covid_opacity(rng: np.random.Generator, frame: _Frame, severity: float, size: int) -> tuple[np.ndarray, bool]:
    """Bilateral, peripheral, lower-zone ground glass, with consolidation at higher severity."""
    asym = (_u(rng, 0.7, 1.0), _u(rng, 0.7, 1.0))
    patches = _smooth_noise(rng, 24, 1.3, size)
    mottle = _smooth_noise(rng, 72, 1.0, size)
    # Zones widen from the lateral lower lung toward the hila and apices as severity rises.
    periph = _smoothstep(_unit_clip(frame.lateral_frac - _F32(0.45 - 0.35 * severity), 1 / 0.5))
    lower = _smoothstep(_unit_clip(frame.vertical_frac - _F32(0.35 - 0.35 * severity), 1 / 0.6))
    zone = periph * lower * _side_map(frame.right, asym)
    # Multifocal patches where the random field, raised within the zone, crosses a threshold
    # that falls with severity; they grow and merge as severity rises.
    # Centre the field on the lateral lower lung so that mild disease is never drawn away.
    reference = frame.lateral_frac * frame.vertical_frac * frame.lung
    patches -= _F32(float(np.vdot(patches, reference)) / max(float(reference.sum()), 1e-6))
    level = _F32(0.8) * patches + _F32(3.0) * zone
    ground_glass = _smoothstep(_unit_clip(level - _F32(2.2 - 1.2 * severity), 1.0))
    # A faint haze over the whole zone keeps even the mildest case visible.
    ground_glass = np.maximum(ground_glass, _F32(0.5) * zone, out=ground_glass)
    ground_glass *= frame.lung
    # The fine mottling keeps vessels visible through the haze.
    mottled = np.clip(_F32(0.85) + _F32(0.15) * mottle, 0.0, None)
    opacity = _F32(0.14 + 0.16 * severity) * ground_glass * mottled
    consolidation = severity > CONSOLIDATION_SEVERITY["COVID-19"]
    if consolidation:
        excess = min((severity - CONSOLIDATION_SEVERITY["COVID-19"]) / 0.3, 1.0)
        core = _smoothstep(_unit_clip(level - _F32(3.5 - 1.4 * severity), 1.0))
        opacity += _F32(0.2 + 0.2 * excess) * core * mottled * frame.lung
    return opacity, consolidation


def _viral_opacity(
    rng: np.random.Generator,
    frame: _Frame,
    anat: _Anatomy,
    vessels: _Vessels,
    severity: float,
    size: int,
) -> tuple[np.ndarray, bool]:
    """Bilateral perihilar interstitial pattern: peribronchial cuffing and reticulation."""
    asym = (_u(rng, 0.75, 1.0), _u(rng, 0.75, 1.0))
    net = _smooth_noise(rng, 96, 1.0, size)
    patches = _smooth_noise(rng, 16, 1.2, size)
    hl = _side_map(frame.right, anat.hilum_l)
    hy = _side_map(frame.right, anat.hilum_y)
    dx = frame.ell - hl
    dy = (frame.Y - hy) * _F32(0.8)  # the pattern spreads a little further up and down
    radius = 0.4 + 0.25 * severity
    central = _unit_clip(_F32(1.0) - (dx * dx + dy * dy) * _F32(1.0 / radius**2), 1.0)
    central *= central
    zone = central * frame.lung * _side_map(frame.right, asym)
    # Reticulation: the zero set of a band-limited field draws a net of thin lines.
    reticular = _unit_clip(_F32(0.45) - np.abs(net), 1 / 0.45)
    cuffing = vessels.blurred(size, 0.017)
    cuffing *= _F32(2.5)
    haze = _unit_clip(_F32(0.5) + _F32(0.35) * patches, 1.0)
    texture = _F32(0.35) * reticular + _F32(1.2) * np.minimum(cuffing, _F32(1.0)) + _F32(0.25) * haze
    opacity = _F32(0.1 + 0.14 * severity) * zone * texture
    consolidation = severity > CONSOLIDATION_SEVERITY["Viral pneumonia"]
    if consolidation:
        patchy = _unit_clip(patches + _F32(1.5) * central - _F32(2.0), 1 / 0.5)
        opacity += _F32(0.2) * _smoothstep(patchy) * frame.lung
    return opacity, consolidation


def _effusion(frame: _Frame, anat: _Anatomy, side: int, amount: float) -> np.ndarray:
    """Fluid in the costophrenic recess(es): a meniscus rising along the lateral chest wall.

    ``side`` is 0 (right), 1 (left) or 2 (both); ``amount`` in [0, 1] sets the fluid height.
    """
    halfwidth = frame.lung_halfwidth
    dome_y = _side_map(frame.right, anat.dome_y)
    dome_c = _side_map(frame.right, anat.dome_c)
    lateral_dome = dome_y + dome_c * (halfwidth - _F32(0.4)) ** 2
    top = lateral_dome - _F32(0.12 + 0.16 * amount)
    # The meniscus climbs steeply along the chest wall and flattens medially.
    reach = np.sqrt(_unit_clip(halfwidth - frame.ell, 1.0 / 0.45))
    surface = top + _F32(0.2) * reach
    fluid = _ramp(frame.Y - surface, 6.0 * frame.edge)
    fluid *= _ramp(halfwidth + _F32(0.03) - frame.ell, 3.0 * frame.edge)
    # Fluid lies on the hemidiaphragm; below it the abdomen is as dense already.
    fluid *= _ramp(frame.dome + _F32(0.01) - frame.Y, 3.0 * frame.edge)
    if side == 0:
        fluid *= frame.right
    elif side == 1:
        fluid *= ~frame.right
    return _F32(0.6) * fluid


def _draw_disease(
    rng: np.random.Generator,
    frame: _Frame,
    anat: _Anatomy,
    vessels: _Vessels,
    label: str,
    severity: float,
    size: int,
) -> _Disease:
    # Effusion draws come first and always, so they do not depend on the rest of the stream.
    effusion_draw = float(rng.random())
    effusion_side = int(rng.integers(0, 3))
    effusion_amount = _u(rng, 0.3, 1.0)
    if label == "Normal" or severity <= 0.0:
        return _Disease(attenuation=None, consolidation=False, effusion=False)
    if label == "COVID-19":
        att, consolidation = _covid_opacity(rng, frame, severity, size)
    else:
        att, consolidation = _viral_opacity(rng, frame, anat, vessels, severity, size)
    effusion = severity >= EFFUSION_MIN_SEVERITY and effusion_draw < EFFUSION_PROBABILITY
    if effusion:
        att += _effusion(frame, anat, effusion_side, effusion_amount)
    return _Disease(attenuation=att, consolidation=consolidation, effusion=effusion)


# --------------------------------------------------------------------------- rendering


def _render(att: np.ndarray, anat: _Anatomy, noise: np.ndarray) -> np.ndarray:
    """Attenuation -> displayed brightness in [0, 1] with the patient's exposure and noise."""
    img = np.exp(att * _F32(-anat.atten_k))
    np.subtract(_F32(1.0), img, out=img)
    img -= _F32(anat.window_lo)
    img *= _F32(1.0 / (anat.window_hi - anat.window_lo))
    np.clip(img, 0.0, 1.0, out=img)
    if abs(anat.gamma - 1.0) > 1e-3:
        np.power(img, _F32(anat.gamma), out=img)
    # Quantum noise: stronger where fewer photons reach the detector (the brighter areas).
    noise *= _F32(anat.noise_std) * (_F32(0.5) + img)
    img += noise
    return np.clip(img, 0.0, 1.0, out=img)


def _check_label_severity(label: str, severity: float) -> float:
    if label not in XRAY_LABELS:
        raise ValueError(f"Unknown X-ray label {label!r}; expected one of {list(XRAY_LABELS)}.")
    try:
        value = float(severity)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Severity must be a number in [0, 1], got {severity!r}.") from e
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"Severity must be in [0, 1], got {severity!r}.")
    return value


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"Size must be an integer number of pixels, got {size!r}.")
    if not _MIN_SIZE <= size <= _MAX_SIZE:
        raise ValueError(f"Size must be between {_MIN_SIZE} and {_MAX_SIZE} pixels, got {size}.")
    return int(size)


def generate_xray(label: str, severity: float, seed: int, size: int = 512, session: int = 0) -> XrayPhantom:
    """Generate one deterministic PA chest radiograph phantom.

    Parameters
    ----------
    label : str
        One of :data:`core.types.XRAY_LABELS`: ``"Normal"`` (clear lungs), ``"Viral pneumonia"``
        (bilateral perihilar interstitial pattern) or ``"COVID-19"`` (bilateral, peripheral,
        lower-zone ground-glass opacities, with consolidation above severity 0.5).
    severity : float
        Disease severity in [0, 1]; scales the extent and density of the opacities. Ignored
        (stored as 0) for ``"Normal"``.
    seed : int
        Non-negative seed. The patient's anatomy, exposure and noise depend only on the seed,
        so phantoms of one seed with different labels or severities differ only by disease.
    size : int, default 512
        Width and height in pixels.
    session : int, default 0
        Index of the patient's imaging session. It changes only the quantum noise, so the
        follow-up radiographs of one patient (one seed) share anatomy and exposure and differ
        by the disease drawn at their severity and by noise.

    Returns
    -------
    XrayPhantom
        ``pixels`` float32 (size, size) in [0, 1], brighter = denser; findings per
        :data:`FINDINGS`; pixel spacing ``FIELD_OF_VIEW_MM / size`` mm.

    Raises
    ------
    ValueError
        For an unknown label, a severity outside [0, 1], a negative seed or session, or a size
        outside [64, 4096].
    """
    severity = _check_label_severity(label, severity)
    if label == "Normal":
        severity = 0.0
    seed = _check_seed(seed)
    size = _check_size(size)
    if isinstance(session, bool) or not isinstance(session, (int, np.integer)) or session < 0:
        raise ValueError(f"Session must be a non-negative integer, got {session!r}.")

    anatomy_seq, disease_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(anatomy_seq)
    anat = _draw_anatomy(rng)
    # Anatomy and disease are smooth at the scale of a pixel: large images are drawn at a
    # lower resolution and upsampled; quantum noise is always added at full resolution.
    draw = size if size <= _MAX_FULL_DRAW else max(_MAX_FULL_DRAW, size // 2)
    vessels = _draw_vessels(rng, anat, draw)
    texture = _smooth_noise(rng, 8, 1.0, draw)
    frame = _make_frame(anat, draw)
    att = _anatomy_attenuation(frame, anat, vessels, texture, draw)

    disease = _draw_disease(np.random.default_rng(disease_seq), frame, anat, vessels, label, severity, draw)
    if disease.attenuation is not None:
        att += disease.attenuation
    if draw != size:
        att = _resample(att, size, 0.0)

    if session:
        # A sibling of the session-0 noise stream, so session 0 keeps its historical noise.
        noise_seq = np.random.SeedSequence(seed, spawn_key=(2, int(session)))
    noise = np.random.default_rng(noise_seq).standard_normal((size, size), dtype=np.float32)
    pixels = _render(att, anat, noise)

    findings = dict.fromkeys(FINDINGS, 0)
    diseased = label != "Normal" and severity > 0.0
    findings["Lung Opacity"] = int(diseased)
    findings["Pneumonia"] = int(diseased)
    findings["Consolidation"] = int(disease.consolidation)
    findings["Pleural Effusion"] = int(disease.effusion)
    findings["Cardiomegaly"] = int(anat.cardiothoracic_ratio > 0.5)
    # CheXpert's label hierarchy: an enlarged heart is an enlarged cardiomediastinal silhouette.
    findings["Enlarged Cardiomediastinum"] = findings["Cardiomegaly"]
    return XrayPhantom(
        pixels=pixels,
        label=label,
        severity=severity,
        findings=findings,
        pixel_spacing_mm=FIELD_OF_VIEW_MM / size,
    )


# --------------------------------------------------------------------------- dataset


def write_xray_dataset(
    out_dir: str | Path,
    n_per_class: int,
    seed: int = 0,
    size: int = 256,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write a class-folder dataset of phantoms (Kaggle COVID-19 Radiography Database layout).

    Writes ``COVID/``, ``NORMAL/`` and ``Viral Pneumonia/`` folders of 8-bit grayscale PNGs
    named like ``COVID-0001.png``, and ``manifest.csv`` with the columns
    ``path,label,patient_id,severity`` (path relative to ``out_dir``, one image per patient,
    patient ids ``demo-xr-0001``, ...). Diseased severities are drawn uniformly from
    :data:`DATASET_SEVERITY_RANGE`.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into; created if missing. Existing files of the same names are replaced.
    n_per_class : int
        Number of images per class (>= 1).
    seed : int, default 0
        Seed of the whole dataset; the same arguments give bit-identical files.
    size : int, default 256
        Width and height of each image, in pixels.
    progress : callable, optional
        Called as ``progress(done, total)`` after each image, e.g. to drive a progress bar.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        For a count below 1, a negative seed or a size outside [64, 4096]; nothing is written.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)):
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}.")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}.")
    seed = _check_seed(seed)
    size = _check_size(size)
    out = Path(out_dir)
    total = n_per_class * len(XRAY_LABELS)
    rng = np.random.default_rng(seed)
    low, high = DATASET_SEVERITY_RANGE
    rows: list[tuple[str, str, str, str]] = []
    patient = 0
    for label in XRAY_LABELS:
        folder = DATASET_FOLDERS[label]
        (out / folder).mkdir(parents=True, exist_ok=True)
        image_seeds = rng.integers(0, 2**31 - 1, size=n_per_class)
        severities = rng.uniform(low, high, size=n_per_class)
        for i in range(n_per_class):
            severity = 0.0 if label == "Normal" else round(float(severities[i]), 3)
            phantom = generate_xray(label, severity, int(image_seeds[i]), size=size)
            name = f"{folder}-{i + 1:04d}.png"
            Image.fromarray(phantom.to_uint8()).save(out / folder / name)
            patient += 1
            rows.append((f"{folder}/{name}", label, f"demo-xr-{patient:04d}", f"{severity:.3f}"))
            if progress is not None:
                progress(patient, total)
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("path", "label", "patient_id", "severity"))
        writer.writerows(rows)
    # What the trainers read to call a model trained on these "demo" (core.training.xray.data_domain).
    marker = {"synthetic": True, "generator": "core.demo.xray_phantom", "seed": int(seed), "size": int(size)}
    (out / "dataset.json").write_text(json.dumps(marker) + "\n", encoding="utf-8")
    logger.info("Wrote %d X-ray phantoms to %s", len(rows), out)
    return out
