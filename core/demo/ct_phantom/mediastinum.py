"""The mediastinum: heart, aorta and great vessels, venae cavae, pulmonary arteries, oesophagus,
trachea and main bronchi, as tubes and an ellipsoid in paint order."""

from __future__ import annotations

import numpy as np

from core.demo.ct_phantom.anatomy import HU_BLOOD, HU_SOFT, Anatomy
from core.demo.ct_phantom.grid import CT_FIELD_OF_VIEW_MM, Grid
from core.demo.ct_phantom.shapes import Shape, capsule, ellipsoid, vertical_tube


def mediastinal_tubes(grid: Grid, anat: Anatomy) -> list[tuple[Shape | None, float, float, float | None]]:
    """Mediastinal structures as (shape, HU, fat margin mm, lumen inset mm or None), in paint order."""
    top = CT_FIELD_OF_VIEW_MM[0] + 10.0
    hz, hy, hx = anat.heart
    cz = anat.heart_axes[0]
    ty, tr = anat.trachea_y, anat.trachea_r
    carina = np.array([anat.carina_z, ty, anat.cx])
    ar = anat.aorta_r
    desc_x = anat.cx + anat.vb_r[0] + ar + 4.0
    desc_y = anat.vb_y - 0.3 * anat.vb_r[1]
    asc_x, asc_y = anat.asc_xy
    out: list[tuple[Shape | None, float, float, float | None]] = []
    out.append((ellipsoid(grid, anat.heart, anat.heart_axes, anat.heart_angle, 8.0), HU_BLOOD, 5.0, None))
    # Aorta: ascending, arch (a quadratic curve left of the trachea), descending to the abdomen.
    out.append(
        (
            vertical_tube(
                grid, (hz + 0.3 * cz, anat.arch_z), (asc_y, asc_y), (asc_x, asc_x), (ar * 1.15, ar * 1.15), 6.0
            ),
            HU_BLOOD,
            4.0,
            None,
        )
    )
    low = anat.dome_z[1] - 10.0
    out.append(
        (
            vertical_tube(
                grid,
                (-10.0, low, anat.arch_z),
                (anat.vb_y - anat.vb_r[1] - ar - 2.0, desc_y, desc_y),
                (anat.cx + 4.0, desc_x, desc_x),
                (ar * 0.9, ar, ar),
                6.0,
            ),
            HU_BLOOD,
            3.0,
            None,
        )
    )
    p0 = np.array([anat.arch_z, asc_y, asc_x])
    p2 = np.array([anat.arch_z, desc_y, desc_x])
    p1 = np.array([anat.arch_z + 14.0, anat.arch_ctrl[1], anat.arch_ctrl[0]])
    t = np.linspace(0.0, 1.0, 7)[:, None]
    arch = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t * t * p2
    for a, b in zip(arch[:-1], arch[1:], strict=True):
        out.append((capsule(grid, a, b, ar * 1.05, ar * 1.05, 6.0), HU_BLOOD, 4.0, None))
    # Great arteries from the arch, and the veins.
    for gx, gy, gr, drift in ((-8.0, -18.0, 6.5, -14.0), (6.0, -14.0, 4.5, 4.0), (18.0, -4.0, 5.5, 14.0)):
        out.append(
            (
                vertical_tube(
                    grid, (anat.arch_z, top), (ty + gy, ty + gy), (anat.cx + gx, anat.cx + gx + drift), (gr, gr), 6.0
                ),
                HU_BLOOD,
                3.0,
                None,
            )
        )
    sx, sy = anat.svc_xy
    out.append(
        (vertical_tube(grid, (hz + 0.2 * cz, top), (sy, sy), (sx, sx - 4.0), (9.5, 9.0), 6.0), HU_BLOOD, 3.0, None)
    )
    bcv_z = anat.arch_z + 26.0
    out.append(
        (
            capsule(grid, np.array([bcv_z, ty - 30.0, anat.cx + 50.0]), np.array([bcv_z - 6.0, sy, sx]), 6.0, 7.0, 6.0),
            HU_BLOOD,
            2.0,
            None,
        )
    )
    out.append(
        (
            vertical_tube(
                grid, (-10.0, anat.dome_z[0] + 5.0), (anat.vb_y - 30.0,) * 2, (anat.cx - 22.0,) * 2, (11.0, 11.0), 6.0
            ),
            HU_BLOOD,
            2.0,
            None,
        )
    )
    # Pulmonary arteries: trunk from the right ventricle to the bifurcation, then to the hila.
    bif = np.array(anat.pa_bif)
    pa0 = np.array([hz + 0.6 * cz, hy - 0.5 * anat.heart_axes[2], anat.cx + 15.0])
    out.append((capsule(grid, pa0, bif, 13.0, 12.0, 6.0), HU_BLOOD, 3.0, None))
    for side, off in ((0, (-2.0, -10.0, -4.0)), (1, (10.0, -6.0, 4.0))):
        end = np.array(anat.hilum[side]) + np.array(off)
        out.append((capsule(grid, bif, end, 10.0, 8.0, 6.0), HU_BLOOD, 2.0, None))
    # Oesophagus, from the neck to the stomach, with a little air in some patients.
    st_z, st_y, st_x = anat.stomach
    ey = anat.vb_y - anat.vb_r[1] - 9.0
    out.append(
        (
            vertical_tube(
                grid,
                (st_z + 10.0, anat.dome_z[1] + 10.0, top),
                (st_y + 10.0, ey - 4.0, ey),
                (st_x - 20.0, anat.cx + 8.0, anat.cx + 3.0),
                (8.0, 7.0, 7.0),
                6.0,
            ),
            HU_SOFT,
            3.0,
            5.0 if anat.esophagus_air else None,
        )
    )
    # Trachea and main bronchi: air lumen, thin wall.
    out.append(
        (
            vertical_tube(grid, (anat.carina_z, top), (ty, ty), (anat.cx, anat.cx), (tr + 2.0, tr + 2.0), 6.0),
            HU_SOFT,
            2.0,
            2.0,
        )
    )
    for side, lumen in ((0, 6.5), (1, 5.5)):
        out.append((capsule(grid, carina, np.array(anat.hilum[side]), tr + 1.0, lumen + 1.5, 6.0), HU_SOFT, 2.0, 1.5))
    return out
