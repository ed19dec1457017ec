"""Attenuation of the normal chest: body and shoulders, lungs, heart, abdomen, humeral heads,
mediastinum and hila, airways, spine, ribs, clavicles and pulmonary vessels."""

from __future__ import annotations

import math

import numpy as np

from core.demo.xray_phantom.anatomy import Anatomy, Frame, to_image_coords
from core.demo.xray_phantom.fields import F32, ramp, smoothstep, unit_clip
from core.demo.xray_phantom.vessels import Vessels


def chest_attenuation(frame: Frame, anat: Anatomy, vessels: Vessels, texture: np.ndarray, size: int) -> np.ndarray:
    """Attenuation (S, S) of the normal chest: soft tissue, bone, heart, air and vessels."""
    X, Y, ell, e = frame.X, frame.Y, frame.ell, frame.edge
    soft = 4.0 * e

    # Body: the torso, widest at the lower chest; above the axillae the shoulders and upper
    # arms reach the image edges, and the neck rises out of the top edge.
    bw = anat.body_halfwidth
    dy_chest = Y - F32(0.35)
    torso = F32(bw) - F32(0.06) * dy_chest * dy_chest
    axilla = smoothstep(unit_clip(F32(-0.2) - Y, 1.0 / 0.55))
    wall = ramp(torso + (F32(1.2) - torso) * axilla - ell, soft)
    shoulder = unit_clip(ell - F32(0.22), 1.0 / 0.75)
    shoulder_top = F32(-0.96) + F32(0.18) * shoulder * shoulder
    trunk = ramp(Y - shoulder_top, soft)
    body = np.maximum(trunk, ramp(F32(0.2) - ell, soft))
    body *= wall
    profile = F32(1.0) - np.minimum(ell / torso, F32(1.0)) ** 2
    att = body * (F32(0.35) + F32(0.65) * np.sqrt(profile))
    # The neck is much thinner than the chest; a faint texture breaks the uniformity.
    att *= (F32(0.65) + F32(0.35) * trunk) * (F32(1.0) + F32(0.04) * texture)

    below = ramp(Y - frame.dome, soft)
    below *= body
    air = frame.lung * (F32(0.3) + F32(0.7) * frame.lung_depth)

    # Heart: a tilted ellipsoid leaning to the patient's left; its thickness is the chord.
    # It displaces the lung in front of it and merges with the abdomen below the diaphragm.
    r = max(anat.heart_a, anat.heart_b)
    w = _window(anat, size, (anat.heart_x - r, anat.heart_x + r), (anat.heart_y - r, anat.heart_y + r))
    ca, sa = math.cos(anat.heart_angle_rad), math.sin(anat.heart_angle_rad)
    u = X[w] - F32(anat.heart_x)
    v = Y[w] - F32(anat.heart_y)
    hu = (F32(ca) * u + F32(sa) * v) * F32(1.0 / anat.heart_a)
    hv = (F32(-sa) * u + F32(ca) * v) * F32(1.0 / anat.heart_b)
    heart = np.sqrt(np.clip(F32(1.0) - hu * hu - hv * hv, 0.0, 1.0))
    heart *= F32(1.0) - below[w]
    air[w] *= F32(1.0) - F32(0.6) * heart
    att -= F32(0.78) * air
    att[w] += F32(0.32) * heart

    # Abdomen below the hemidiaphragms (liver on the right), gastric air under the left dome.
    att += F32(0.18) * below
    if anat.gastric_bubble > 0:
        gx, gy = 0.4, anat.dome_y[1] + 0.07 + 0.04 * anat.gastric_bubble
        rx, ry = 0.07 + 0.05 * anat.gastric_bubble, 0.045
        w = _window(anat, size, (gx - rx, gx + rx), (gy - ry, gy + ry))
        bubble = _ellipsoid(X[w], Y[w], gx, gy, rx, ry)
        att[w] -= F32(0.25) * bubble * bubble

    # Humeral heads in the upper corners, under the soft tissue of the shoulders.
    for sign in (-1.0, 1.0):
        cx, cy, rh = sign * (bw + 0.2), -0.58, 0.17
        w = _window(anat, size, (cx - rh, cx + rh), (cy - rh, cy + rh))
        att[w] += F32(0.25) * _ellipsoid(X[w], Y[w], cx, cy, rh, rh)

    # Mediastinum: the vascular pedicle above the heart and the aortic knob on the left.
    w = _window(anat, size, (-0.16, 0.14), (-1.5, 1.5))
    pedicle = ramp(F32(0.12) - np.abs(X[w] + F32(0.01)), soft)
    pedicle *= ramp(frame.dome[w] - Y[w], soft)
    att[w] += F32(0.16) * pedicle
    knob = (0.12, anat.hilum_y[1] - 0.2, 0.07)
    w = _window(anat, size, (knob[0] - knob[2], knob[0] + knob[2]), (knob[1] - knob[2], knob[1] + knob[2]))
    att[w] += F32(0.22) * _ellipsoid(X[w], Y[w], knob[0], knob[1], knob[2], knob[2])

    # Hila: the pulmonary arteries, the left one higher.
    for side, sign in ((0, -1.0), (1, 1.0)):
        cx, cy = sign * (anat.hilum_l[side] + 0.02), anat.hilum_y[side]
        w = _window(anat, size, (cx - 0.06, cx + 0.06), (cy - 0.1, cy + 0.1))
        att[w] += F32(0.1) * _ellipsoid(X[w], Y[w], cx, cy, 0.05, 0.09)

    # Airways: the trachea down to the carina, then the two main bronchi to the hila.
    carina = (0.0, min(anat.hilum_y) - 0.1)
    w = _window(anat, size, (-0.06, 0.06), (-1.5, carina[1] + 0.02))
    trachea = ramp(F32(0.045) - np.abs(X[w]), soft)
    trachea *= ramp(F32(carina[1]) - Y[w], soft)
    att[w] -= F32(0.25) * trachea
    for side, sign in ((0, -1.0), (1, 1.0)):
        hilum = (sign * anat.hilum_l[side] * 0.75, anat.hilum_y[side] + 0.02)
        xs, ys = sorted((carina[0], hilum[0])), sorted((carina[1], hilum[1]))
        w = _window(anat, size, (xs[0] - 0.03, xs[1] + 0.03), (ys[0] - 0.03, ys[1] + 0.03))
        dist = _segment_distance(X[w], Y[w], carina, hilum)
        att[w] -= F32(0.1) * ramp(F32(0.022) - dist, soft)

    # Spine: vertebral bodies with darker disc spaces and paired pedicles.
    w = _window(anat, size, (-0.12, 0.12), (-1.5, 1.5))
    ell_w = ell[w]
    phase = Y[w] * F32(1.0 / anat.vertebra_period) + F32(anat.vertebra_phase)
    phase -= np.floor(phase + F32(0.5))
    disc = unit_clip(F32(0.12) - np.abs(phase), 1.0 / 0.12)
    ped_x = (ell_w - F32(0.07)) * F32(1.0 / 0.022)
    ped_y = phase * F32(1.0 / 0.2)
    pedicles = np.clip(F32(1.0) - ped_x * ped_x - ped_y * ped_y, 0.0, 1.0)
    spine = F32(0.12) - F32(0.05) * disc + F32(0.06) * pedicles
    att[w] += ramp(F32(0.1) - ell_w, soft) * spine

    # Posterior ribs: one curved family, indexed by a phase that grows down the chest. From the
    # spine they run out and slightly up, then curve down along the lateral chest wall.
    curve = ell * (F32(anat.rib_curvature) * ell - F32(0.22))
    z = (Y - curve - F32(anat.rib_z1)) * F32(1.0 / anat.rib_spacing)
    z -= F32(0.025) * z * z  # intercostal spaces widen toward the bases
    extent = ramp(z + F32(0.5), 0.3) * ramp(F32(10.4) - z, 0.3)
    extent *= ramp(ell - F32(0.05), soft) * ramp(frame.lung_halfwidth + F32(0.07) - ell, soft)
    extent *= body * (F32(1.0) - F32(0.7) * below)
    z -= np.floor(z + F32(0.5))
    att += F32(0.13) * _rib_profile(z, 0.26) * extent

    # Anterior ribs: fainter, broader, sloping down toward the sternum.
    za = (Y + F32(0.55) * ell - F32(anat.anterior_rib_z1)) * F32(1.0 / 0.2)
    extent = ramp(za + F32(0.3), 0.3) * ramp(F32(5.6) - za, 0.3)
    extent *= ramp(ell - F32(0.3), 0.1) * ramp(frame.lung_halfwidth - ell, soft)
    za -= np.floor(za + F32(0.5))
    att += F32(0.06) * _rib_profile(za, 0.22) * extent

    # Clavicles: a gentle S (a cubic with roots at the ends and the middle of the bone),
    # rising from the sternal end to the acromion, thicker medially.
    cy = anat.clavicle_y
    w = _window(anat, size, (-0.9, 0.9), (cy - 0.17, cy + 0.06))
    ell_w = ell[w]
    clav_y = F32(cy) - F32(0.12) * ell_w
    clav_y += F32(0.5) * ell_w * (ell_w - F32(0.45)) * (ell_w - F32(0.85))
    dc = (Y[w] - clav_y) / (F32(0.038) - F32(0.014) * ell_w)
    clav = np.sqrt(np.clip(F32(1.0) - dc * dc, 0.0, 1.0))
    clav *= ramp(ell_w - F32(0.09), soft) * ramp(F32(0.84) - ell_w, 0.04)
    att[w] += F32(0.24) * clav

    # Pulmonary vessels: trunks and branches from the hila, fading toward the lung periphery.
    vessel_map = vessels.blurred(size, 0.011, "trunks")
    vessel_map += vessels.blurred(size, 0.0055, "branches")
    vessel_map *= frame.lung * (F32(1.0) - F32(0.55) * frame.lateral_frac)
    att += F32(0.3) * vessel_map
    return att


def _window(
    anat: Anatomy, size: int, x_range: tuple[float, float], y_range: tuple[float, float]
) -> tuple[slice, slice]:
    """Pixel (row, column) slices covering a box of the patient's frame, with a margin.

    Local structures are drawn only inside their window, which keeps a 512 px phantom fast.
    """
    x = np.array([x_range[0], x_range[1], x_range[0], x_range[1]])
    y = np.array([y_range[0], y_range[0], y_range[1], y_range[1]])
    xi, yi = to_image_coords(anat, x, y)
    half = 0.5 * size

    def bounds(v: np.ndarray) -> slice:
        lo = int(np.floor((v.min() + 1.0) * half)) - 2
        hi = int(np.ceil((v.max() + 1.0) * half)) + 2
        return slice(min(max(lo, 0), size), min(max(hi, 0), size))

    return bounds(yi), bounds(xi)


def _ellipsoid(X: np.ndarray, Y: np.ndarray, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """Chord length (in [0, 1]) through an axis-aligned ellipsoid, for (H, W) coordinates."""
    u = (X - F32(cx)) * F32(1.0 / rx)
    v = (Y - F32(cy)) * F32(1.0 / ry)
    return np.sqrt(np.clip(F32(1.0) - u * u - v * v, 0.0, 1.0))


def _segment_distance(X: np.ndarray, Y: np.ndarray, p0: tuple[float, float], p1: tuple[float, float]) -> np.ndarray:
    """Distance (S, S) from each point to the segment p0-p1, normalised units."""
    vx, vy = p1[0] - p0[0], p1[1] - p0[1]
    inv_len2 = 1.0 / max(vx * vx + vy * vy, 1e-9)
    dx = X - F32(p0[0])
    dy = Y - F32(p0[1])
    t = np.clip((dx * F32(vx) + dy * F32(vy)) * F32(inv_len2), 0.0, 1.0)
    dx -= t * F32(vx)
    dy -= t * F32(vy)
    return np.sqrt(dx * dx + dy * dy)


def _rib_profile(nearest: np.ndarray, half: float) -> np.ndarray:
    """Cross-section of a rib: the chord of a tube plus a brighter cortical rim.

    ``nearest`` is the signed distance (in rib periods) to the closest rib centre line and
    ``half`` the rib half-height in the same unit.
    """
    r = np.abs(nearest) * F32(1.0 / half)
    chord = np.sqrt(np.clip(F32(1.0) - r * r, 0.0, 1.0))
    rim = np.clip(F32(1.0) - np.abs(r - F32(0.85)) * F32(1.0 / 0.15), 0.0, 1.0)
    return F32(0.7) * chord + F32(0.45) * rim
