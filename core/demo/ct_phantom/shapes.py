"""Structures as signed distances (mm, negative inside) within a box, and how they are painted.

Painting blends a tissue's Hounsfield units into the volume with a soft edge about one voxel wide,
so that a structure's partial volume shows as on a real scan.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.demo.ct_phantom.grid import F32, Box, Grid


@dataclass(frozen=True, eq=False)
class Shape:
    """A structure within a bounding box: signed distance ``d`` in mm, negative inside."""

    box: Box
    d: np.ndarray


def capsule(grid: Grid, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, pad: float) -> Shape | None:
    """Tube of radius r0 -> r1 along the segment p0 -> p1 (z, y, x mm), with ``pad`` mm of box."""
    reach = max(r0, r1) + pad
    box = grid.box(np.minimum(p0, p1) - reach, np.maximum(p0, p1) + reach)
    if box is None:
        return None
    Z, Y, X = grid.coords(box)
    v = (p1 - p0).astype(np.float32)
    inv = F32(1.0 / max(float(v @ v), 1e-9))
    dz, dy, dx = Z - F32(p0[0]), Y - F32(p0[1]), X - F32(p0[2])
    t = (dz * v[0] + dy * v[1]) + dx * v[2]
    t *= inv
    np.clip(t, 0.0, 1.0, out=t)
    ez = dz - t * v[0]
    ey = dy - t * v[1]
    ex = dx - t * v[2]
    d = ez * ez
    d += ey * ey
    d += ex * ex
    np.sqrt(d, out=d)
    d -= F32(r0) + F32(r1 - r0) * t
    return Shape(box, d)


def vertical_tube(
    grid: Grid, knots_z: tuple, knots_y: tuple, knots_x: tuple, knots_r: tuple, pad: float
) -> Shape | None:
    """Tube along a centreline given as (x, y, radius) at increasing heights, open at its ends."""
    zsl = grid.box((knots_z[0], -1e4, -1e4), (knots_z[-1], 1e4, 1e4))
    if zsl is None:
        return None
    zs = grid.z[zsl[0]]
    yc = np.interp(zs, knots_z, knots_y).astype(np.float32)
    xc = np.interp(zs, knots_z, knots_x).astype(np.float32)
    r = np.interp(zs, knots_z, knots_r).astype(np.float32)
    reach = float(r.max()) + pad
    box = grid.box(
        (knots_z[0], float(yc.min()) - reach, float(xc.min()) - reach),
        (knots_z[-1], float(yc.max()) + reach, float(xc.max()) + reach),
    )
    if box is None:
        return None
    _, Y, X = grid.coords(box)
    dy = Y - yc[:, None, None]
    dx = X - xc[:, None, None]
    d = dy * dy + dx * dx
    np.sqrt(d, out=d)
    d -= r[:, None, None]
    return Shape(box, d)


def ellipsoid(
    grid: Grid, centre: tuple[float, float, float], axes: tuple[float, float, float], angle: float, pad: float
) -> Shape | None:
    """Ellipsoid with half-axes (vertical, first in-plane, second in-plane) rotated by ``angle``.

    The first in-plane axis points to the patient's left and ``angle`` turns it anteriorly.
    The distance is approximate: (normalised radius - 1) times the smallest half-axis.
    """
    reach = max(axes) + pad
    lo = (centre[0] - axes[0] - pad, centre[1] - reach, centre[2] - reach)
    hi = (centre[0] + axes[0] + pad, centre[1] + reach, centre[2] + reach)
    box = grid.box(lo, hi)
    if box is None:
        return None
    Z, Y, X = grid.coords(box)
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = X - F32(centre[2]), Y - F32(centre[1])
    u = (dx * F32(c) - dy * F32(s)) * F32(1.0 / axes[1])
    v = (dx * F32(s) + dy * F32(c)) * F32(1.0 / axes[2])
    w = (Z - F32(centre[0])) * F32(1.0 / axes[0])
    d = w * w + (u * u + v * v)
    np.sqrt(d, out=d)
    d -= F32(1.0)
    d *= F32(min(axes))
    return Shape(box, d)


def paint(vol: np.ndarray, shape: Shape | None, hu: float | np.ndarray, edge: float, inset: float = 0.0) -> None:
    """Blend ``hu`` into ``vol`` inside a shape shrunk by ``inset`` mm, with a soft edge."""
    if shape is None:
        return
    region = vol[shape.box]
    frac = (shape.d + F32(inset)) * F32(-1.0 / edge)
    frac += F32(0.5)
    np.clip(frac, 0.0, 1.0, out=frac)
    region += frac * (hu - region)


def blend(region: np.ndarray, d_inside: np.ndarray, hu: float | np.ndarray, edge: float) -> None:
    """Blend ``hu`` into ``region`` where ``d_inside`` (mm, positive inside) is positive."""
    frac = np.clip(d_inside * F32(1.0 / edge) + F32(0.5), 0.0, 1.0)
    region += frac * (hu - region)


def paint_gated(vol: np.ndarray, shape: Shape | None, hu: float | np.ndarray, edge: float, gate: np.ndarray) -> None:
    """Paint a shape only where ``gate`` (mm, positive inside the allowed region) is positive."""
    if shape is None:
        return
    blend(vol[shape.box], np.minimum(-shape.d, gate[shape.box]), hu, edge)


def exclude(dmed: np.ndarray, shape: Shape | None, margin: float) -> None:
    """Keep the lungs ``margin`` mm away from a mediastinal structure."""
    if shape is None:
        return
    region = dmed[shape.box]
    np.minimum(region, shape.d - F32(margin), out=region)


def superellipse_radius(x: np.ndarray, y: np.ndarray, a: float, b: tuple[float, float], p: float) -> np.ndarray:
    """Homogeneous radius (1 on the outline) of a superellipse with different front and back."""
    inv_b = np.where(y < 0, F32(1.0 / b[0]), F32(1.0 / b[1]))
    f = np.abs(x * F32(1.0 / a)) ** F32(p) + np.abs(y * inv_b) ** F32(p)
    return np.maximum(f ** F32(1.0 / p), F32(1e-4))
