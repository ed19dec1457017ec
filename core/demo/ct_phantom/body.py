"""The normal chest volume: body wall, thoracic cavity and diaphragm, upper abdomen, mediastinum,
spine, lungs with their vessels and bronchi, ribs and sternum, painted in that order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from core.demo.ct_phantom.anatomy import (
    HU_AIR,
    HU_BLOOD,
    HU_FAT,
    HU_FLUID,
    HU_KIDNEY,
    HU_LIVER,
    HU_LUNG,
    HU_MEDIASTINAL_FAT,
    HU_MUSCLE,
    HU_SOFT,
    HU_SPLEEN,
    HU_TABLE,
    Anatomy,
)
from core.demo.ct_phantom.bones import draw_ribs, draw_spine, draw_sternum
from core.demo.ct_phantom.grid import (
    CT_FIELD_OF_VIEW_MM,
    F32,
    Box,
    Coarse,
    Grid,
    mask_box,
    smooth_field,
    splat,
    upsample,
)
from core.demo.ct_phantom.mediastinum import mediastinal_tubes
from core.demo.ct_phantom.shapes import Shape, blend, ellipsoid, exclude, paint, paint_gated, superellipse_radius
from core.demo.ct_phantom.vessels import Tree, draw_bronchi, grow_tree, sample_segments


@dataclass(frozen=True, eq=False)
class Body:
    """The anatomy volume and what disease drawing needs of it."""

    hu: np.ndarray  # float32 (z, y, x)
    lung: np.ndarray  # bool (z, y, x)
    lung_box: Box
    airway: np.ndarray  # bool (z, y, x) air in the trachea and bronchi
    texture: np.ndarray  # float32 smooth unit field over lung_box
    split_col: int  # first column of the left lung
    tree: Tree
    tree_points: np.ndarray
    tree_segment: np.ndarray


def build_body(rng: np.random.Generator, anat: Anatomy, grid: Grid, co: Coarse) -> Body:
    edge = float(grid.spacing[2])
    z, y, x = grid.z, grid.y, grid.x
    X2 = (x - F32(anat.cx))[None, :]
    Y2 = (y - F32(anat.cy))[:, None]
    r2 = np.sqrt(X2 * X2 + Y2 * Y2)

    # Body: z-invariant cross-section, subcutaneous fat over muscle, soft outline.
    fb = superellipse_radius(X2, Y2, anat.body_a, anat.body_b, anat.body_p)
    ray = r2 / fb
    skin = np.clip((ray - r2) * F32(1.0 / edge) + F32(0.5), 0.0, 1.0)
    inner = np.clip((ray * F32(1.0 - anat.fat_frac) - r2) * F32(1.0 / edge) + F32(0.5), 0.0, 1.0)
    body2d = F32(HU_AIR) + skin * F32(HU_FAT - HU_AIR) + inner * F32(HU_MUSCLE - HU_FAT)
    # The table under the patient: a thin curved plate.
    table_y = anat.cy + anat.body_b[1] + 6.0 + 0.0008 * (x - anat.cx) ** 2
    table = (np.abs(y[:, None] - table_y[None, :]) < 3.0) & (np.abs(x - anat.cx) < 170.0)[None, :]
    body2d[table] = HU_TABLE
    vol = np.empty(grid.shape, np.float32)
    vol[...] = body2d[None]

    # Thoracic cavity: a rounder superellipse that narrows toward the apices.
    cray, s_cav, apex_cap = _cavity_frame(anat, z, y, x)

    # Diaphragm domes, per side; the posterior and lateral recesses reach lowest.
    right = (x < anat.cx)[None, :]
    ax = np.abs(x - F32(anat.cx))[None, :]
    dome_z = np.where(right, F32(anat.dome_z[0]), F32(anat.dome_z[1]))
    dome_dx = np.where(right, F32(anat.dome_dx[0]), F32(anat.dome_dx[1]))
    qx = ax - dome_dx
    qy = (y - F32(anat.dome_y))[:, None]
    q = anat.dome_k * (qx * qx + F32(0.5) * qy * qy)
    sat = np.exp(-q / anat.dome_drop)
    zd = dome_z - anat.dome_drop * (1.0 - sat)
    grad = anat.dome_k * sat * np.sqrt(4.0 * qx * qx + qy * qy)
    inv_g = (1.0 / np.sqrt(1.0 + grad * grad)).astype(np.float32)
    zd = zd.astype(np.float32)

    # Working box of the thorax and upper abdomen.
    tbox = grid.box(
        (0.0, anat.cy - anat.cav_b[0] - 5.0, anat.cx - anat.cav_a - 5.0),
        (CT_FIELD_OF_VIEW_MM[0], anat.cy + anat.cav_b[1] + 5.0, anat.cx + anat.cav_a + 5.0),
    )
    assert tbox is not None
    zb, yb, xb = tbox
    tvol = vol[tbox]
    Zt = z[zb, None, None]
    d_cav = cray[yb, xb][None] * s_cav[zb, None, None] - r2[yb, xb][None]
    d_dia = (Zt - zd[yb, xb][None]) * inv_g[yb, xb][None]

    # Upper abdomen under the diaphragm: fat, liver, stomach, spleen, kidneys.
    tex_c = smooth_field(rng, tuple(len(a) for a in (co.z, co.y, co.x)), 1)
    abd_top = max(anat.dome_z) + 4.0
    zab = slice(0, int(np.searchsorted(z[zb], abd_top, "right")))
    gate = np.minimum(d_cav[zab], -d_dia[zab] - F32(4.0))  # > 0 inside the abdomen
    abox = (slice(zb.start + zab.start, zb.start + zab.stop), yb, xb)
    fatty = upsample(tex_c, grid, co, abox)
    abd_hu = np.where(fatty > F32(0.6), F32(25.0), F32(-95.0))
    blend(tvol[zab], gate, abd_hu, edge)
    _, Ya, Xa = grid.coords(abox)
    front, back = anat.cy - anat.cav_b[0], anat.cy + anat.cav_b[1]
    liver_edge = anat.cx + 50.0 - 80.0 * np.clip((Ya - front) / (back - front), 0.0, 1.0)
    liver_gate = np.minimum(gate, (liver_edge - Xa).astype(np.float32))
    blend(tvol[zab], liver_gate, F32(HU_LIVER) + F32(6.0) * fatty, edge)
    organs = [
        (ellipsoid(grid, anat.spleen, (45.0, 25.0, 45.0), math.radians(-55.0), 2.0), HU_SPLEEN),
        (
            ellipsoid(grid, (anat.kidney_z - 10.0, anat.vb_y + 8.0, anat.cx - 62.0), (48.0, 27.0, 23.0), 1.2, 2.0),
            HU_KIDNEY,
        ),
        (ellipsoid(grid, (anat.kidney_z, anat.vb_y + 8.0, anat.cx + 62.0), (48.0, 27.0, 23.0), -1.2, 2.0), HU_KIDNEY),
    ]
    gate_full = np.full(grid.shape, -1e3, np.float32)
    gate_full[abox] = gate
    for shape, hu in organs:
        paint_gated(vol, shape, hu, edge, gate_full)
    stomach = ellipsoid(grid, anat.stomach, (38.0, 42.0, 34.0), math.radians(30.0), 2.0)
    if stomach is not None:
        paint_gated(vol, stomach, HU_SOFT, edge, gate_full)
        _, Ys, _ = grid.coords(stomach.box)
        gas_level = anat.stomach[1] - 34.0 * (1.0 - 2.0 * anat.stomach_gas)
        content = np.where(Ys < gas_level, F32(HU_AIR), F32(HU_FLUID))
        paint_gated(vol, Shape(stomach.box, stomach.d + F32(4.0)), content, edge, gate_full)

    # Mediastinum: fat margins first, then the structures, in order.
    dmed = np.full(grid.shape, 1e3, np.float32)
    tubes = mediastinal_tubes(grid, anat)
    for shape, _hu, margin, _lumen in tubes:
        paint(vol, shape, HU_MEDIASTINAL_FAT, edge, inset=-margin)
    for shape, hu, margin, lumen in tubes:
        paint(vol, shape, hu, edge)
        if lumen is not None:
            paint(vol, shape, HU_AIR, edge, inset=lumen)
        exclude(dmed, shape, margin)
    # A thin band along the midline keeps the lungs apart in front of and behind the heart.
    _, _, Xt = grid.coords(tbox)
    np.minimum(dmed[tbox], np.abs(Xt - F32(anat.cx)) - F32(2.0), out=dmed[tbox])

    # Spine (and everything behind the front of the vertebral bodies, near the midline).
    draw_spine(vol, dmed, grid, anat, edge)

    # Lungs.
    d_api = apex_cap[yb, xb][None] - Zt
    d_lung = np.minimum(d_cav, d_dia - F32(4.0))
    np.minimum(d_lung, d_api, out=d_lung)
    np.minimum(d_lung, dmed[tbox], out=d_lung)
    lung_t = d_lung > 0
    lung = np.zeros(grid.shape, bool)
    lung[tbox] = lung_t
    lbox = mask_box(lung)
    rel = tuple(slice(lb.start - tb.start, lb.stop - tb.start) for lb, tb in zip(lbox, tbox, strict=True))
    frac = np.clip(d_lung[rel] * F32(1.0 / edge) + F32(0.5), 0.0, 1.0)
    texture = upsample(tex_c, grid, co, lbox)
    _, Yl, _ = grid.coords(lbox)
    dependent = np.clip((Yl - F32(anat.cy)) * F32(1.0 / max(anat.cav_b)), -1.0, 1.0)
    lung_hu = F32(HU_LUNG) + F32(20.0) * texture + F32(22.0) * dependent
    lvol = vol[lbox]
    lvol += frac * (lung_hu - lvol)

    # Pulmonary vessels: a tree from each hilum, splatted with their partial volume.
    roots = (
        np.array(anat.hilum[0]) + np.array([2.0, -10.0, -6.0]),
        np.array(anat.hilum[1]) + np.array([10.0, -6.0, 6.0]),
    )
    tree = grow_tree(rng, anat, roots, lung, grid)
    pts, seg, seg_len = sample_segments(tree.start, tree.end, 1.6)
    keep = tree.alive[seg] & lung[tuple(grid.index(pts).T)]
    pts, seg, seg_len = pts[keep], seg[keep], seg_len[keep]
    r = tree.radius[seg]
    vol_mm3 = np.pi * r * r * seg_len
    # Thick vessels are spread over a ring of points so that they keep their calibre.
    thick = r > 0.8 * grid.spacing[2]
    extra = [pts]
    weights = [np.where(thick, 0.2, 1.0) * vol_mm3]
    for oy, ox in ((0.5, 0.0), (-0.5, 0.0), (0.0, 0.5), (0.0, -0.5)):
        off = np.stack([np.zeros(thick.sum()), oy * r[thick], ox * r[thick]], axis=1)
        extra.append(pts[thick] + off)
        weights.append(0.2 * vol_mm3[thick])
    density = splat(grid, np.concatenate(extra), np.concatenate(weights), lbox)
    np.minimum(density, F32(1.0), out=density)
    density *= frac
    lvol += density * (F32(HU_BLOOD) - lvol)

    # Bronchi along the first two generations of the tree, lumen air with a thin wall.
    airway = np.zeros(grid.shape, bool)
    for shape, _hu, _margin, lumen in tubes:
        if lumen is not None:
            airway[shape.box] |= shape.d < -F32(lumen)
    draw_bronchi(vol, airway, grid, anat, tree, edge)

    # Bones and cartilage of the chest wall.
    draw_ribs(vol, grid, anat, cray, r2, s_cav)
    draw_sternum(vol, grid, anat, s_cav, edge)

    split = int(np.searchsorted(x, anat.cx))
    return Body(
        hu=vol,
        lung=lung,
        lung_box=lbox,
        airway=airway,
        texture=texture,
        split_col=split,
        tree=tree,
        tree_points=pts,
        tree_segment=seg,
    )


def _cavity_frame(anat: Anatomy, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """The thoracic cavity and lung apices on the grid of 1-D coordinates z, y, x (mm).

    Returns ``ray`` (y, x): the distance from the centre to the cavity wall along each ray at
    full width; ``scale`` (z,): the cavity narrows toward the apices; ``apex_cap`` (y, x): the
    height of each lung's paraboloid apical cap over each point.
    """
    X2 = (x - F32(anat.cx))[None, :]
    Y2 = (y - F32(anat.cy))[:, None]
    ray = np.sqrt(X2 * X2 + Y2 * Y2) / superellipse_radius(X2, Y2, anat.cav_a, anat.cav_b, anat.cav_p)
    base = max(anat.dome_z) + 20.0
    t = np.clip((z - base) / (max(anat.apex_z) + 15.0 - base), 0.0, 1.0)
    scale = (1.0 - anat.cav_taper * t**1.5).astype(np.float32)
    right = X2 < 0
    apex_z = np.where(right, F32(anat.apex_z[0]), F32(anat.apex_z[1]))
    apex_dx = np.where(right, F32(anat.apex_dx[0]), F32(anat.apex_dx[1]))
    pa = (np.abs(X2) - apex_dx) * F32(1.0 / (0.5 * anat.cav_a))
    pb = (y - F32(anat.apex_y))[:, None] * F32(1.0 / max(anat.cav_b))
    apex_cap = apex_z - F32(anat.apex_h) * (pa * pa + pb * pb)
    return ray.astype(np.float32), scale, apex_cap.astype(np.float32)


def costal_depth(anat: Anatomy, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Distance (mm, z, y, x) to the costal and apical pleura: the chest wall, not the mediastinum."""
    ray, scale, apex_cap = _cavity_frame(anat, z, y, x)
    X2 = (x - F32(anat.cx))[None, :]
    Y2 = (y - F32(anat.cy))[:, None]
    r2 = np.sqrt(X2 * X2 + Y2 * Y2)
    wall = ray[None] * scale[:, None, None] - r2[None]
    return np.minimum(wall, apex_cap[None] - z[:, None, None])
