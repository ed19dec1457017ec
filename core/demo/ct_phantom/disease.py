"""Disease in a CT phantom: planned on the coarse grid as a lesion level that only rises with
severity, then drawn as ground glass, consolidation, crazy paving, tree-in-bud nodules and
pleural fluid, with the findings of what was drawn."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from core.demo.ct_phantom.anatomy import HU_FLUID, Anatomy
from core.demo.ct_phantom.body import Body, costal_depth
from core.demo.ct_phantom.grid import F32, Coarse, Grid, blur3, depth_mm, smooth_field, splat, upsample
from core.demo.ct_phantom.vessels import TRUNKS

#: Finding names of :attr:`CtPhantom.findings`, each 1 when the pattern was drawn:
#:
#: - ``"Ground-glass opacity"``: hazy parenchymal opacity (about -680 to -300 HU) through which
#:   vessels stay visible;
#: - ``"Consolidation"``: airspace opacity of soft-tissue density (about -70 to +30 HU);
#: - ``"Pleural Effusion"``: dependent pleural fluid (about +12 HU) at a lung base;
#: - ``"Bilateral"``: parenchymal opacities in both lungs;
#: - ``"Peripheral"``: at least :data:`PERIPHERAL_MIN_FRACTION` of the parenchymal opacity lies
#:   within :data:`PERIPHERAL_DISTANCE_MM` of the costal (or apical) pleura, i.e. subpleural
#:   along the chest wall rather than along the mediastinum;
#: - ``"Crazy paving"``: thickened interlobular septa drawn as a fine net over ground glass.
CT_FINDINGS: tuple[str, ...] = (
    "Ground-glass opacity",
    "Consolidation",
    "Pleural Effusion",
    "Bilateral",
    "Peripheral",
    "Crazy paving",
)

#: Severity above which consolidation appears in the cores of the opacities, per label.
CONSOLIDATION_SEVERITY: MappingProxyType[str, float] = MappingProxyType({"COVID-19": 0.5, "Viral pneumonia": 0.6})

#: Severity from which crazy paving is drawn over COVID-19 ground glass, in patients who have it.
CRAZY_PAVING_SEVERITY: float = 0.35
#: Fraction of COVID-19 patients whose ground glass turns into crazy paving.
CRAZY_PAVING_PROBABILITY: float = 0.5

#: Severity from which a pleural effusion may be drawn, and its probability there, per label.
EFFUSION_SEVERITY: MappingProxyType[str, float] = MappingProxyType({"COVID-19": 0.85, "Viral pneumonia": 0.7})
EFFUSION_PROBABILITY: MappingProxyType[str, float] = MappingProxyType({"COVID-19": 0.1, "Viral pneumonia": 0.4})

#: Distance to the pleura within which an opacity counts as peripheral (subpleural), in mm.
PERIPHERAL_DISTANCE_MM: float = 20.0

#: Fraction of the parenchymal opacity that must be peripheral for the "Peripheral" finding.
PERIPHERAL_MIN_FRACTION: float = 0.6


@dataclass(frozen=True, eq=False)
class _Plan:
    """Disease planned on the coarse grid, and what else is drawn at full resolution.

    ``level`` > 0 is an opacity, > ``consolidation_level`` consolidation; both thresholds are
    fixed while the level only rises with severity, so the drawn pattern only grows.
    """

    level: np.ndarray
    consolidation_level: float
    crazy_paving: bool
    nodules: tuple[np.ndarray, np.ndarray] | None  # points (n, 3) mm, volumes mm3
    effusion: tuple[tuple[bool, bool], float] | None  # (right, left), fluid depth in mm


@dataclass(frozen=True, eq=False)
class _LungMaps:
    """Coarse maps of the lungs used to place disease: depth under the pleura and zones."""

    lung: np.ndarray  # bool coarse
    depth: np.ndarray  # mm to the lung boundary
    costal: np.ndarray  # mm to the chest wall (costal and apical pleura)
    posterior: np.ndarray  # 0 at the front of the lungs, 1 at the back, broadcastable
    lower: np.ndarray  # 0 at the apices, 1 at the lowest recess, broadcastable
    right: np.ndarray  # bool, broadcastable: the right lung's columns


def draw_disease(
    rng: np.random.Generator,
    label: str,
    severity: float,
    anat: Anatomy,
    body: Body,
    grid: Grid,
    co: Coarse,
    lesion: np.ndarray,
) -> dict[str, int]:
    """Plan the disease of ``label`` at ``severity`` and draw it into ``body.hu``.

    ``rng`` is the disease stream. Marks the lesion voxels in ``lesion`` (bool, z, y, x) and
    returns 0 or 1 for each name of :data:`CT_FINDINGS`, following what was drawn.
    """
    maps = _lung_maps(body, co, anat)
    if label == "COVID-19":
        plan = _plan_covid(rng, maps, co, severity)
    else:
        plan = _plan_viral(rng, maps, co, body, anat, severity)
    return _draw_plan(rng, plan, body, grid, co, maps, severity, lesion)


def _lung_maps(body: Body, co: Coarse, anat: Anatomy) -> _LungMaps:
    lung = co.pick(body.lung)
    depth = depth_mm(lung, co.step_mm, 80.0)
    zs = co.z[lung.any(axis=(1, 2))]
    ys = co.y[lung.any(axis=(0, 2))]
    posterior = np.clip((co.y - ys[0]) / max(float(ys[-1] - ys[0]), 1.0), 0.0, 1.0).astype(np.float32)
    lower = np.clip((zs[-1] - co.z) / max(float(zs[-1] - zs[0]), 1.0), 0.0, 1.0).astype(np.float32)
    return _LungMaps(
        lung=lung,
        depth=depth,
        costal=np.maximum(costal_depth(anat, co.z, co.y, co.x), F32(0.0)),
        posterior=posterior[None, :, None],
        lower=lower[:, None, None],
        right=(co.x < anat.cx)[None, None, :],
    )


def _pick_weighted(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Indices drawn with probability proportional to ``weights``, one per uniform in ``u``."""
    cdf = np.cumsum(weights, dtype=np.float64)
    if cdf.size == 0 or cdf[-1] <= 0:
        return np.zeros(u.shape, np.intp)
    return np.minimum(np.searchsorted(cdf, u * cdf[-1], "right"), cdf.size - 1)


def _add_lesions(
    level: np.ndarray, co: Coarse, centres: np.ndarray, radii: np.ndarray, activation: np.ndarray, severity: float
) -> None:
    """Raise ``level`` to ``1 - distance / radius`` around each lesion active at this severity.

    A lesion activates at its threshold with a third of its full radius and grows to the full
    radius at severity 1, so the level is non-decreasing in severity everywhere.
    """
    for (cz, cy, cx), full, t in zip(centres, radii, activation, strict=True):
        if not severity > t:
            continue
        grow = min((severity - t) / max(1.0 - t, 1e-6), 1.0)
        r = full * (0.35 + 0.65 * grow**0.7)
        reach = 1.4 * r
        sl = []
        for coords, c in ((co.z, cz), (co.y, cy), (co.x, cx)):
            sl.append(slice(int(np.searchsorted(coords, c - reach)), int(np.searchsorted(coords, c + reach, "right"))))
        if any(s.stop <= s.start for s in sl):
            continue
        dz = (co.z[sl[0]] - F32(cz))[:, None, None]
        dy = (co.y[sl[1]] - F32(cy))[None, :, None]
        dx = (co.x[sl[2]] - F32(cx))[None, None, :]
        value = F32(1.0) - np.sqrt(dz * dz + dy * dy + dx * dx) * F32(1.0 / r)
        region = level[tuple(sl)]
        np.maximum(region, value, out=region)


def _effusion_draw(
    rng: np.random.Generator, label: str, severity: float, dominant: int
) -> tuple[tuple[bool, bool], float] | None:
    """Pleural fluid: whether, where and how deep (mm); the draws happen whatever the severity."""
    draw = float(rng.random())
    both = bool(rng.random() < 0.3)
    start = EFFUSION_SEVERITY[label]
    if severity < start or draw >= EFFUSION_PROBABILITY[label]:
        return None
    sides = (True, True) if both else (dominant == 0, dominant == 1)
    depth = 8.0 + 20.0 * min((severity - start) / (1.0 - start), 1.0)
    return sides, depth


def _plan_covid(rng: np.random.Generator, maps: _LungMaps, co: Coarse, severity: float) -> _Plan:
    """Bilateral, peripheral, posterior and lower-zone multifocal ground glass."""
    n = 20
    dominant = int(rng.integers(0, 2))
    effusion = _effusion_draw(rng, "COVID-19", severity, dominant)
    crazy = bool(rng.random() < CRAZY_PAVING_PROBABILITY) and severity >= CRAZY_PAVING_SEVERITY
    u = rng.random((2, n))
    activation = np.sort(rng.uniform(0.0, 0.9, (2, n)), axis=1)
    activation[dominant, 0] = 0.0
    activation[1 - dominant, 0] = rng.uniform(0.0, 0.15)
    radii = rng.uniform(20.0, 38.0, (2, n))
    margin = smooth_field(rng, maps.lung.shape, 1)

    # Lesions sit under the pleura, preferably at the back and at the bases.
    weight = np.exp(-maps.costal * F32(1.0 / 10.0)) * (F32(0.2) + maps.posterior) ** 2 * (F32(0.2) + maps.lower) ** 2
    level = np.full(maps.lung.shape, -2.0, np.float32)
    for side in (0, 1):
        voxels = np.flatnonzero(maps.lung & (maps.right == (side == 0)))
        iz, iy, ix = np.unravel_index(voxels[_pick_weighted(weight.ravel()[voxels], u[side])], maps.lung.shape)
        centres = np.stack([co.z[iz], co.y[iy], co.x[ix]], axis=1)
        _add_lesions(level, co, centres, radii[side], activation[side], severity)
    # Severe disease becomes confluent over the dependent, peripheral lower lungs.
    if severity > 0.5:
        reach = F32(2.0 * (severity - 0.5) / 0.5)
        cost = (
            maps.costal * F32(1.0 / 18.0) + F32(1.4) * (F32(1.0) - maps.posterior) + F32(0.9) * (F32(1.0) - maps.lower)
        )
        np.maximum(level, reach - cost, out=level)
    level += F32(0.22) * margin
    cons = 1.0 - 0.45 * (severity - 0.5) / 0.5 if severity > CONSOLIDATION_SEVERITY["COVID-19"] else math.inf
    return _Plan(level=level, consolidation_level=cons, crazy_paving=crazy, nodules=None, effusion=effusion)


def _plan_viral(
    rng: np.random.Generator, maps: _LungMaps, co: Coarse, body: Body, anat: Anatomy, severity: float
) -> _Plan:
    """Central, peribronchovascular, asymmetric pneumonia with tree-in-bud nodules and lobar consolidation."""
    n = 16
    dominant = int(rng.integers(0, 2))
    effusion = _effusion_draw(rng, "Viral pneumonia", severity, dominant)
    bilateral = bool(rng.random() < 0.4)
    upper = bool(rng.random() < 0.5)
    u = rng.random((2, n))
    activation = np.sort(rng.uniform(0.0, 0.85, (2, n)), axis=1)
    activation[dominant, 0] = 0.0
    activation[1 - dominant] = np.sort(rng.uniform(0.25, 0.95, n)) if bilateral else math.inf
    radii = rng.uniform(14.0, 28.0, (2, n))
    trunk_u = float(rng.random())
    tree = body.tree
    keys = rng.random(tree.start.shape[0])
    margin = smooth_field(rng, maps.lung.shape, 1)

    # Lesions sit deep in the lung around the central bronchovascular bundles, near the hila.
    mid = 0.5 * (tree.start + tree.end)
    inside = maps.lung[tuple(_coarse_index(co, mid, maps.lung.shape).T)] & tree.alive
    hilum_z = 0.5 * (anat.hilum[0][0] + anat.hilum[1][0])
    level = np.full(maps.lung.shape, -2.0, np.float32)
    centres_all, active_all = [], []
    for side in (0, 1):
        voxels = np.flatnonzero(maps.lung & (maps.right == (side == 0)))
        iz, iy, ix = np.unravel_index(voxels, maps.lung.shape)
        points = np.stack([co.z[iz], co.y[iy], co.x[ix]], axis=1)
        gap = np.linalg.norm(points - np.array(anat.hilum[side]), axis=1)
        weight = (maps.depth.ravel()[voxels] / 20.0) ** 3 * np.exp(-gap / 60.0)
        if upper:
            weight *= np.where(points[:, 0] > hilum_z - 15.0, 1.0, 0.12)
        centres = points[_pick_weighted(weight, u[side])]
        _add_lesions(level, co, centres, radii[side], activation[side], severity)
        centres_all.append(centres)
        active_all.append(severity > activation[side])
    # Lobar-ish consolidation filling the territory of one arterial trunk from the hilum outward.
    if severity > CONSOLIDATION_SEVERITY["Viral pneumonia"]:
        # Not the apical trunk: its territory is a thin cap under the pleura.
        trunks = np.arange(1, 4) if upper else np.arange(1, len(TRUNKS))
        trunk = int(trunks[min(int(trunk_u * len(trunks)), len(trunks) - 1)])
        seg = body.tree_segment
        on = (tree.side[seg] == dominant) & (tree.trunk[seg] == trunk) & (tree.generation[seg] <= 3)
        occupancy = np.zeros(maps.lung.shape, np.float32)
        np.add.at(occupancy, tuple(_coarse_index(co, body.tree_points[on], maps.lung.shape).T), 1.0)
        territory = blur3(occupancy, 4)
        territory *= F32(1.0 / max(float(territory.max()), 1e-6))
        grow = (severity - 0.6) / 0.4
        np.maximum(level, (territory - F32(1.0 - 0.85 * math.sqrt(grow))) * F32(12.0), out=level)
    level += F32(0.2) * margin
    # Tree-in-bud: small nodules at the tips of small branches near the active lesions.
    candidates = np.flatnonzero(inside & (tree.generation >= 3) & (keys < 0.1 + 0.3 * severity))
    buds = []
    for side in (0, 1):
        centres = centres_all[side][active_all[side]]
        tips = candidates[tree.side[candidates] == side]
        if centres.size == 0 or tips.size == 0:
            continue
        gap = np.linalg.norm(tree.end[tips][:, None, :] - centres[None, :, :], axis=2).min(axis=1)
        buds.append(tips[gap < 25.0])
    tips = np.concatenate(buds) if buds else np.zeros(0, np.intp)
    nodules = (tree.end[tips], np.full(tips.size, 4.0 / 3.0 * np.pi * 2.6**3)) if tips.size else None
    cons = 0.95 - 0.65 * (severity - 0.6) / 0.4 if severity > CONSOLIDATION_SEVERITY["Viral pneumonia"] else math.inf
    return _Plan(level=level, consolidation_level=cons, crazy_paving=False, nodules=nodules, effusion=effusion)


def _effusion_region(effusion: tuple[tuple[bool, bool], float], lung: np.ndarray, body: Body, grid: Grid) -> np.ndarray:
    """Dependent pleural fluid in the lung box: a posterior crescent along the chest wall.

    The patient lies supine, so the fluid is thickest at the back of the lower chest and thins
    out anteriorly and upward; the lung it displaces is part of the lung mask.
    """
    sides, depth = effusion
    lbox = body.lung_box
    # In-plane distance to the lung boundary, by erosions (alternating 4- and 8-neighbourhoods).
    step = float(grid.spacing[1])
    dist = np.zeros(lung.shape, np.float32)
    cur = lung
    for k in range(math.ceil(depth / step) + 1):
        dist += cur
        nxt = cur.copy()
        src = cur
        for axis in (1, 2):
            n = cur.shape[axis]
            head = [slice(None)] * 3
            tail = [slice(None)] * 3
            head[axis], tail[axis] = slice(1, None), slice(0, n - 1)
            if k % 2:
                src = nxt.copy()
            nxt[tuple(head)] &= src[tuple(tail)]
            nxt[tuple(tail)] &= src[tuple(head)]
        cur = nxt
    dist *= F32(step)
    Z, Y, _ = grid.coords(lbox)
    cols = np.arange(lbox[2].start, lbox[2].stop) < body.split_col
    zs = grid.z[lbox[0]][lung.any(axis=(1, 2))]
    top = zs[0] + 0.55 * (zs[-1] - zs[0])
    fluid = np.zeros(lung.shape, bool)
    for side, on in enumerate(sides):
        if not on:
            continue
        in_side = lung & (cols if side == 0 else ~cols)[None, None, :]
        rows = np.flatnonzero(in_side.any(axis=(0, 2)))
        if rows.size == 0:
            continue
        back = float(grid.y[lbox[1]][rows[-1]])
        dependent = np.clip((Y - F32(back - 2.5 * depth)) * F32(1.0 / (2.5 * depth)), 0.0, 1.0)
        height = np.clip((F32(top) - Z) * F32(1.0 / 40.0), 0.0, 1.0)
        fluid |= in_side & (dist <= F32(depth) * dependent * height)
    return fluid


def _coarse_index(co: Coarse, points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest coarse voxel (n, 3) of points (n, 3) in (z, y, x) mm."""
    first = np.array([co.z[0], co.y[0], co.x[0]])
    step = np.array([co.z[1] - co.z[0], co.y[1] - co.y[0], co.x[1] - co.x[0]])
    idx = np.rint((points - first) / step).astype(np.intp)
    return np.clip(idx, 0, np.array(shape) - 1)


def _draw_plan(
    rng: np.random.Generator,
    plan: _Plan,
    body: Body,
    grid: Grid,
    co: Coarse,
    maps: _LungMaps,
    severity: float,
    lesion: np.ndarray,
) -> dict[str, int]:
    """Draw the planned disease into ``body.hu``, mark ``lesion`` and return the findings."""
    lbox = body.lung_box
    region = body.hu[lbox]
    lung = body.lung[lbox]
    tex = body.texture
    level = upsample(plan.level, grid, co, lbox)
    level += F32(0.12) * tex
    opacity = (level > 0) & lung & ~body.airway[lbox]
    cons = opacity & (level > F32(plan.consolidation_level))
    ggo_hu = F32(-680.0) + F32(300.0 + 60.0 * severity) * np.clip(level * F32(1.0 / 0.8), 0.0, 1.0)
    ggo_hu += F32(15.0) * tex
    np.minimum(ggo_hu, F32(-300.0), out=ggo_hu)
    crazy = np.zeros_like(opacity)
    if plan.crazy_paving:
        # Thickened septa: the zero set of a band-limited field is a net of thin walls.
        net = upsample(smooth_field(rng, plan.level.shape, 0), grid, co, lbox)
        crazy = (np.abs(net) < F32(0.14)) & opacity & ~cons
        ggo_hu = np.where(crazy, np.minimum(ggo_hu + F32(110.0), F32(-270.0)), ggo_hu)
    cons_hu = F32(-70.0) + F32(80.0) * np.clip((level - F32(plan.consolidation_level)) * F32(2.0), 0.0, 1.0)
    cons_hu += F32(12.0) * tex
    lesion_hu = np.where(cons, cons_hu, ggo_hu)
    np.copyto(region, np.maximum(region, lesion_hu), where=opacity)

    parenchymal = opacity
    if plan.nodules is not None:
        points, volume = plan.nodules
        density = splat(grid, points, volume, lbox)
        np.minimum(density, F32(1.0), out=density)
        nodule = (density > F32(0.2)) & lung & ~body.airway[lbox] & (region < F32(-40.0))
        region += (density * nodule) * (F32(-40.0) - region)
        parenchymal = parenchymal | nodule

    fluid = np.zeros_like(opacity)
    if plan.effusion is not None:
        fluid = _effusion_region(plan.effusion, lung, body, grid)
        np.copyto(region, F32(HU_FLUID) + F32(6.0) * tex, where=fluid)

    lesion[lbox] = parenchymal | fluid
    findings = dict.fromkeys(CT_FINDINGS, 0)
    findings["Ground-glass opacity"] = int((parenchymal & ~cons).any())
    findings["Consolidation"] = int(cons.any())
    findings["Pleural Effusion"] = int(fluid.any())
    split = body.split_col - lbox[2].start
    findings["Bilateral"] = int(bool(parenchymal[:, :, :split].any() and parenchymal[:, :, split:].any()))
    findings["Crazy paving"] = int(crazy.any())
    if parenchymal.any():
        full = np.zeros(grid.shape, bool)
        full[lbox] = parenchymal
        idx = np.nonzero(full)
        ci = tuple(
            np.clip(np.rint((i - o) / s).astype(np.intp), 0, n - 1)
            for i, o, s, n in zip(idx, co.offset, co.stride, maps.depth.shape, strict=True)
        )
        near = maps.costal[ci] <= PERIPHERAL_DISTANCE_MM
        findings["Peripheral"] = int(float(near.mean()) >= PERIPHERAL_MIN_FRACTION)
    return findings
