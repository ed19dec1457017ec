"""Bones and cartilage of the chest: the spine, the ribs and costal cartilages, the sternum."""

from __future__ import annotations

import numpy as np

from core.demo.ct_phantom.anatomy import HU_CANCELLOUS, HU_CARTILAGE, HU_CORTEX, HU_CSF, HU_DISC, Anatomy
from core.demo.ct_phantom.grid import F32, Grid
from core.demo.ct_phantom.shapes import Shape, paint, vertical_tube


def draw_spine(vol: np.ndarray, dmed: np.ndarray, grid: Grid, anat: Anatomy, edge: float) -> None:
    """Vertebral bodies with discs, spinal canal, posterior arch, transverse and spinous processes."""
    rx, ry = anat.vb_r
    box = grid.box((-1.0, anat.vb_y - ry - 30.0, anat.cx - 45.0), (1e4, anat.canal_y + 45.0, anat.cx + 45.0))
    assert box is not None
    Z, Y, X = grid.coords(box)
    # Thoracic kyphosis: the mid-thoracic spine lies further back.
    bow = F32(anat.kyphosis) * (F32(1.0) - ((Z - F32(150.0)) * F32(1.0 / 150.0)) ** 2)
    Yr = Y - bow
    dx = X - F32(anat.cx)
    ex = dx * F32(1.0 / rx)
    ey = (Yr - F32(anat.vb_y)) * F32(1.0 / ry)
    rho = np.sqrt(ex * ex + ey * ey)
    phase = np.mod(Z - F32(anat.disc_phase), F32(anat.disc_period))
    disc = phase < F32(7.0)
    body_hu = np.where(disc, F32(HU_DISC), F32(HU_CANCELLOUS) + F32(HU_CORTEX - HU_CANCELLOUS) * (rho > 0.8))
    region = vol[box]
    frac = np.clip((F32(1.0) - rho) * F32(min(rx, ry) / edge) + F32(0.5), 0.0, 1.0)
    region += frac * (body_hu - region)
    # Posterior arch: a bony ring around the canal, processes behind and beside it.
    cy = Yr - F32(anat.canal_y)
    rc = np.sqrt(dx * dx * F32(1.0 / 1.2) + cy * cy)
    arch = (rc < F32(15.0)) & (cy > F32(-6.0))
    spinous = (np.abs(dx) < F32(4.0)) & (cy > F32(0.0)) & (cy < F32(24.0))
    level = (phase > F32(9.0)) & (phase < F32(22.0))
    transverse = level & (np.abs(cy + F32(2.0)) < F32(5.0)) & (np.abs(dx) < F32(34.0))
    bone = arch | spinous | transverse
    np.copyto(region, F32(450.0), where=bone)
    np.copyto(region, F32(HU_CSF), where=rc < F32(8.0))
    # The lungs stay clear of everything behind the front of the vertebral bodies near the midline.
    front = np.maximum(np.abs(dx) - F32(rx + 4.0), F32(anat.vb_y - ry - 4.0) - Yr)
    np.minimum(dmed[box], front, out=dmed[box])


def draw_ribs(
    vol: np.ndarray,
    grid: Grid,
    anat: Anatomy,
    cray: np.ndarray,
    r2: np.ndarray,
    s_cav: np.ndarray,
) -> None:
    """Ribs: bony bands just outside the cavity, sloping down from the spine to the sternum."""
    hz, hr = anat.rib_half
    centre = hr + 1.5
    # Pixels of the chest-wall band that a rib may occupy at some height.
    smin, smax = float(s_cav.min()), float(s_cav.max())
    band = (cray * F32(smin) - r2 < F32(centre + hr + 1.0)) & (r2 - cray * F32(smax) < F32(centre + hr + 1.0))
    band &= r2 - cray * F32(smin) > F32(centre - hr - 1.0)
    yy, xx = np.nonzero(band)
    if yy.size == 0:
        return
    y = grid.y[yy] - F32(anat.cy)
    x = grid.x[xx] - F32(anat.cx)
    # 0 at the back, 1 at the front: ribs descend toward the sternum.
    front = (F32(1.0) - y / np.maximum(np.sqrt(x * x + y * y), F32(1e-3))) * F32(0.5)
    behind_spine = (np.abs(x) < F32(anat.vb_r[0] + 10.0)) & (y > F32(0.0))
    cartilage = (np.abs(x) < F32(32.0)) & (y < F32(0.0))
    radial = r2[yy, xx][None, :] - cray[yy, xx][None, :] * s_cav[:, None] - F32(centre)
    u = (grid.z[:, None] - F32(anat.rib_top) + F32(anat.rib_drop) * front[None, :]) * F32(1.0 / anat.rib_period)
    k = np.rint(u)
    dz = (u - k) * F32(anat.rib_period)
    rho2 = (dz * F32(1.0 / hz)) ** 2 + (radial * F32(1.0 / hr)) ** 2
    exists = (k <= 0) & (k > -12) & ~behind_spine[None, :]
    inside = (rho2 < 1.0) & exists
    hu = np.where(cartilage[None, :], F32(HU_CARTILAGE), F32(250.0) + F32(450.0) * rho2)
    frac = np.clip((F32(1.0) - rho2) * F32(2.0), 0.0, 1.0) * inside
    cur = vol[:, yy, xx]
    cur += frac * (hu - cur)
    vol[:, yy, xx] = cur


def draw_sternum(vol: np.ndarray, grid: Grid, anat: Anatomy, s_cav: np.ndarray, edge: float) -> None:
    """The sternum, from the xiphoid to the manubrium, in front of the cavity."""
    lo = anat.heart[0] - 0.6 * anat.heart_axes[0]
    hi = anat.carina_z + 45.0
    zs = grid.z[(grid.z >= lo) & (grid.z <= hi)]
    if zs.size == 0:
        return
    s = np.interp(zs, grid.z, s_cav)
    ys = anat.cy - anat.cav_b[0] * s - 7.0
    knots_y = tuple(float(v) for v in ys)
    knots_x = (anat.cx,) * len(zs)
    tube = vertical_tube(grid, tuple(float(v) for v in zs), knots_y, knots_x, (6.0,) * len(zs), 14.0)
    if tube is None:
        return
    # Flatten the tube into a plate: 14 mm half-width, 6 mm half-thickness.
    _, Y, X = grid.coords(tube.box)
    yc = np.interp(grid.z[tube.box[0]], zs, ys).astype(np.float32)[:, None, None]
    ex = (X - F32(anat.cx)) * F32(1.0 / 14.0)
    ey = (Y - yc) * F32(1.0 / 6.0)
    rho = np.sqrt(ex * ex + ey * ey)
    hu = F32(300.0) + F32(350.0) * (rho > 0.7)
    paint(vol, Shape(tube.box, (rho - F32(1.0)) * F32(6.0)), hu, edge)
