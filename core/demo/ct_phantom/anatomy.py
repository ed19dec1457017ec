"""One patient's anatomy as numbers (mm), drawn from the anatomy stream, and the tissues' HU."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Hounsfield units of the tissues.
HU_AIR = -1000.0
HU_FAT = -100.0
HU_MEDIASTINAL_FAT = -90.0
HU_MUSCLE = 45.0
HU_SOFT = 35.0
HU_BLOOD = 40.0
HU_LUNG = -865.0
HU_LIVER = 60.0
HU_SPLEEN = 48.0
HU_KIDNEY = 32.0
HU_FLUID = 12.0
HU_CSF = 20.0
HU_DISC = 90.0
HU_CANCELLOUS = 230.0
HU_CORTEX = 700.0
HU_CARTILAGE = 120.0
HU_TABLE = 250.0


@dataclass(frozen=True)
class Anatomy:
    """One patient's anatomy in mm (x to the left, y posterior, z up). Pairs are (right, left)."""

    cx: float
    cy: float
    body_a: float
    body_b: tuple[float, float]  # anterior, posterior half-depth
    body_p: float
    fat_frac: float
    cav_a: float
    cav_b: tuple[float, float]
    cav_p: float
    cav_taper: float
    dome_z: tuple[float, float]
    dome_dx: tuple[float, float]
    dome_y: float
    dome_k: float
    dome_drop: float
    apex_z: tuple[float, float]
    apex_dx: tuple[float, float]
    apex_y: float
    apex_h: float
    heart: tuple[float, float, float]  # centre z, y, x
    heart_axes: tuple[float, float, float]  # vertical, long in-plane, short in-plane
    heart_angle: float
    carina_z: float
    arch_z: float
    trachea_y: float
    trachea_r: float
    vb_y: float
    vb_r: tuple[float, float]  # lateral, AP half-axes of the vertebral bodies
    canal_y: float
    kyphosis: float
    disc_period: float
    disc_phase: float
    aorta_r: float
    asc_xy: tuple[float, float]
    arch_ctrl: tuple[float, float]
    svc_xy: tuple[float, float]
    pa_bif: tuple[float, float, float]
    hilum: tuple[tuple[float, float, float], tuple[float, float, float]]
    rib_period: float
    rib_top: float
    rib_drop: float
    rib_half: tuple[float, float]  # vertical, radial
    stomach: tuple[float, float, float]
    stomach_gas: float
    spleen: tuple[float, float, float]
    kidney_z: float
    esophagus_air: bool
    lung_scale: float


def _u(rng: np.random.Generator, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def draw_anatomy(rng: np.random.Generator) -> Anatomy:
    """Draw one patient's anatomy; the order of draws is part of determinism."""
    cx = _u(rng, -5.0, 5.0)
    cy = _u(rng, -10.0, 4.0)
    body_a = _u(rng, 150.0, 168.0)
    body_b_ant = _u(rng, 106.0, 124.0)
    body_b = (body_b_ant, body_b_ant * _u(rng, 1.0, 1.05))
    fat_frac = _u(rng, 0.03, 0.1)
    shrink = 1.0 - fat_frac
    cav_a = body_a * shrink - _u(rng, 9.0, 14.0)
    cav_b = (body_b[0] * shrink - _u(rng, 13.0, 19.0), body_b[1] * shrink - _u(rng, 24.0, 30.0))

    dome_r = _u(rng, 85.0, 102.0)
    dome_z = (dome_r, dome_r - _u(rng, 6.0, 16.0))
    dome_dx = (cav_a * _u(rng, 0.42, 0.5), cav_a * _u(rng, 0.42, 0.5))
    apex0 = _u(rng, 262.0, 274.0)
    apex_z = (apex0 + _u(rng, -3.0, 3.0), apex0 + _u(rng, -3.0, 3.0))

    heart_axes = (_u(rng, 38.0, 46.0), _u(rng, 58.0, 70.0), _u(rng, 40.0, 48.0))
    heart_z = 0.5 * (dome_z[0] + dome_z[1]) + _u(rng, 18.0, 28.0)
    heart = (heart_z, cy - cav_b[0] * _u(rng, 0.18, 0.3), cx + _u(rng, 12.0, 26.0))
    carina_z = heart_z + heart_axes[0] + _u(rng, 15.0, 28.0)

    vb_r = (_u(rng, 17.0, 21.0), _u(rng, 14.0, 17.0))
    canal_y = cy + cav_b[1] - _u(rng, 8.0, 14.0)
    vb_y = canal_y - 8.0 - vb_r[1] - 1.0
    trachea_r = _u(rng, 8.0, 10.5)
    trachea_y = vb_y - vb_r[1] - 16.0 - trachea_r
    aorta_r = _u(rng, 11.0, 14.0)
    asc_xy = (cx - _u(rng, 5.0, 12.0), trachea_y - _u(rng, 30.0, 40.0))

    hilum_r = (carina_z - _u(rng, 14.0, 22.0), trachea_y + _u(rng, 4.0, 12.0), cx - _u(rng, 40.0, 48.0))
    hilum_l = (carina_z - _u(rng, 22.0, 32.0), trachea_y + _u(rng, 8.0, 16.0), cx + _u(rng, 44.0, 52.0))
    stomach = (dome_z[1] - _u(rng, 25.0, 35.0), cy - cav_b[0] * _u(rng, 0.1, 0.35), cx + cav_a * _u(rng, 0.3, 0.45))
    spleen = (dome_z[1] - _u(rng, 35.0, 50.0), cy + cav_b[1] * _u(rng, 0.35, 0.55), cx + cav_a * _u(rng, 0.66, 0.78))

    return Anatomy(
        cx=cx,
        cy=cy,
        body_a=body_a,
        body_b=body_b,
        body_p=_u(rng, 2.3, 2.8),
        fat_frac=fat_frac,
        cav_a=cav_a,
        cav_b=cav_b,
        cav_p=_u(rng, 2.0, 2.3),
        cav_taper=_u(rng, 0.2, 0.28),
        dome_z=dome_z,
        dome_dx=dome_dx,
        dome_y=cy - _u(rng, 0.0, 15.0),
        dome_k=_u(rng, 0.011, 0.016),
        dome_drop=_u(rng, 45.0, 58.0),
        apex_z=apex_z,
        apex_dx=(cav_a * _u(rng, 0.33, 0.42), cav_a * _u(rng, 0.33, 0.42)),
        apex_y=cy + _u(rng, 0.0, 15.0),
        apex_h=_u(rng, 80.0, 100.0),
        heart=heart,
        heart_axes=heart_axes,
        heart_angle=math.radians(_u(rng, 28.0, 45.0)),
        carina_z=carina_z,
        arch_z=carina_z + _u(rng, 12.0, 22.0),
        trachea_y=trachea_y,
        trachea_r=trachea_r,
        vb_y=vb_y,
        vb_r=vb_r,
        canal_y=canal_y,
        kyphosis=_u(rng, 4.0, 12.0),
        disc_period=_u(rng, 26.0, 30.0),
        disc_phase=_u(rng, 0.0, 30.0),
        aorta_r=aorta_r,
        asc_xy=asc_xy,
        arch_ctrl=(cx + _u(rng, 38.0, 46.0), trachea_y - _u(rng, 0.0, 10.0)),
        svc_xy=(cx - _u(rng, 25.0, 32.0), asc_xy[1] + _u(rng, 0.0, 8.0)),
        pa_bif=(carina_z - _u(rng, 8.0, 15.0), trachea_y - _u(rng, 14.0, 22.0), cx + _u(rng, 5.0, 12.0)),
        hilum=(hilum_r, hilum_l),
        rib_period=_u(rng, 26.0, 30.0),
        rib_top=apex0 + _u(rng, 0.0, 8.0),
        rib_drop=_u(rng, 45.0, 70.0),
        rib_half=(_u(rng, 4.0, 5.0), _u(rng, 3.5, 4.5)),
        stomach=stomach,
        stomach_gas=_u(rng, 0.0, 0.6),
        spleen=spleen,
        kidney_z=0.5 * (dome_z[0] + dome_z[1]) - _u(rng, 85.0, 100.0),
        esophagus_air=bool(rng.random() < 0.5),
        lung_scale=_u(rng, 0.92, 1.08),
    )
