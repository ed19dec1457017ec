"""One patient's anatomy and exposure, drawn from the anatomy stream, and the frame it is drawn in:
the pixel grid turned into the patient's coordinates, with the outline of the lungs."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.demo.xray_phantom.fields import F32, ramp, side_map, uniform, unit_clip

#: Probability that a patient (of any class) has cardiomegaly (cardiothoracic ratio > 0.5).
CARDIOMEGALY_PROBABILITY: float = 0.12


@dataclass(frozen=True)
class Anatomy:
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


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy and exposure; the order of draws is part of determinism."""
    rotation = math.radians(uniform(rng, -4.0, 4.0))
    scale = uniform(rng, 0.9, 1.04)
    shift_x = uniform(rng, -0.04, 0.04)
    shift_y = uniform(rng, -0.05, 0.04)
    body_halfwidth = uniform(rng, 0.86, 0.96)

    apex_y0 = uniform(rng, -0.76, -0.68)
    apex_y = (apex_y0 + uniform(rng, -0.02, 0.02), apex_y0 + uniform(rng, -0.02, 0.02))
    apex_l = (uniform(rng, 0.27, 0.33), uniform(rng, 0.27, 0.33))
    halfwidth0 = uniform(rng, 0.72, 0.82)
    lung_halfwidth = (halfwidth0 + uniform(rng, -0.015, 0.015), halfwidth0 + uniform(rng, -0.015, 0.015))
    widest_y = (uniform(rng, 0.1, 0.22), uniform(rng, 0.1, 0.22))
    medial_l = (uniform(rng, 0.06, 0.08), uniform(rng, 0.07, 0.09))
    dome_right = uniform(rng, 0.3, 0.44)
    # The right hemidiaphragm sits higher than the left (the liver lies under it).
    dome_y = (dome_right, dome_right + uniform(rng, 0.03, 0.09))
    dome_c0 = uniform(rng, 1.05, 1.45)
    dome_c = (dome_c0, dome_c0 * uniform(rng, 0.9, 1.1))

    cardiomegaly = rng.random() < CARDIOMEGALY_PROBABILITY
    ctr = uniform(rng, 0.53, 0.62) if cardiomegaly else uniform(rng, 0.38, 0.47)
    angle = math.radians(uniform(rng, 25.0, 40.0))
    aspect = uniform(rng, 0.62, 0.72)
    half_width = 0.5 * ctr * (lung_halfwidth[0] + lung_halfwidth[1])
    heart_a = half_width / math.sqrt(math.cos(angle) ** 2 + (aspect * math.sin(angle)) ** 2)
    heart_b = aspect * heart_a
    # The heart leans to the patient's left: about a third of it lies right of the midline.
    heart_x = half_width * uniform(rng, 0.28, 0.42)
    heart_y = 0.5 * (dome_y[0] + dome_y[1]) - uniform(rng, 0.08, 0.12)

    hilum_right_y = uniform(rng, -0.14, -0.06)
    hilum_l = (uniform(rng, 0.15, 0.19), uniform(rng, 0.16, 0.2))
    # The left hilum is higher: the left pulmonary artery arches over the left main bronchus.
    hilum_y = (hilum_right_y, hilum_right_y - uniform(rng, 0.03, 0.08))

    rib_z1 = uniform(rng, -0.84, -0.78)
    rib_spacing = uniform(rng, 0.12, 0.14)
    rib_curvature = uniform(rng, 0.45, 0.65)
    anterior_rib_z1 = uniform(rng, -0.62, -0.52)
    clavicle_y = uniform(rng, -0.58, -0.5)
    vertebra_period = uniform(rng, 0.13, 0.15)
    vertebra_phase = uniform(rng, 0.0, 1.0)
    gastric_bubble = uniform(rng, 0.0, 1.0) if rng.random() < 0.7 else 0.0

    return Anatomy(
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
        atten_k=uniform(rng, 1.15, 1.5),
        window_lo=uniform(rng, 0.0, 0.1),
        window_hi=uniform(rng, 0.9, 1.0),
        gamma=uniform(rng, 0.8, 1.3),
        noise_std=uniform(rng, 0.008, 0.022),
    )


@dataclass
class Frame:
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


def make_frame(anat: Anatomy, size: int) -> Frame:
    """Rotate, scale and shift the pixel grid into the patient's frame and outline the lungs."""
    c = (np.arange(size, dtype=np.float32) + F32(0.5)) * F32(2.0 / size) - F32(1.0)
    xs = (c - F32(anat.shift_x))[None, :]
    ys = (c - F32(anat.shift_y))[:, None]
    cos = math.cos(anat.rotation_rad) / anat.scale
    sin = math.sin(anat.rotation_rad) / anat.scale
    X = F32(cos) * xs + F32(sin) * ys
    Y = F32(-sin) * xs + F32(cos) * ys
    ell = np.abs(X)
    right = X < 0
    edge = 3.0 / size

    apex_y = side_map(right, anat.apex_y)
    apex_l = side_map(right, anat.apex_l)
    halfwidth = side_map(right, anat.lung_halfwidth)
    inv_height = side_map(right, tuple(1.0 / (w - a) for w, a in zip(anat.widest_y, anat.apex_y, strict=True)))
    ty = Y - apex_y
    # Square-root profiles round the apex; the lateral wall is widest at widest_y, while the
    # medial border reaches the mediastinum higher up.
    lateral = apex_l + (halfwidth - apex_l) * np.sqrt(np.clip(ty * inv_height, 0.0, 1.0))
    medial_l = side_map(right, anat.medial_l)
    medial = apex_l - (apex_l - medial_l) * np.sqrt(unit_clip(ty, 1.0 / 0.4))
    dl = ell - F32(0.4)
    dome = side_map(right, anat.dome_y) + side_map(right, anat.dome_c) * dl * dl

    d_lat = lateral - ell
    d_med = ell - medial
    d_bot = dome - Y
    lung = ramp(d_lat, edge) * ramp(d_med, edge) * ramp(d_bot, edge) * ramp(ty, edge)
    depth = unit_clip(d_lat, 5.0) * unit_clip(d_med, 8.0) * unit_clip(d_bot, 5.0)
    depth *= unit_clip(ty, 4.0)
    np.sqrt(depth, out=depth)
    span = np.maximum(lateral - medial, F32(1e-3))
    lateral_frac = np.clip(d_med / span, 0.0, 1.0)
    vertical_frac = np.clip(ty / np.maximum(d_bot + ty, F32(1e-3)), 0.0, 1.0)
    return Frame(
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


def to_image_coords(anat: Anatomy, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Map patient-frame points back to normalised image coordinates (inverse of the grid)."""
    cos = math.cos(anat.rotation_rad) * anat.scale
    sin = math.sin(anat.rotation_rad) * anat.scale
    return anat.shift_x + cos * x - sin * y, anat.shift_y + sin * x + cos * y
