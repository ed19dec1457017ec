"""The pulmonary vessel trees grown from each hilum, and the lobar bronchi that run beside them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.demo.ct_phantom.anatomy import HU_AIR, Anatomy
from core.demo.ct_phantom.grid import F32, Grid
from core.demo.ct_phantom.shapes import capsule, paint

#: Directions of the pulmonary trunks from each hilum as (lateral, posterior, up), and lengths.
TRUNKS = np.array(
    [
        (0.25, 0.15, 1.0),  # apical
        (0.6, -0.7, 0.55),  # anterior upper
        (0.55, 0.75, 0.6),  # posterior upper
        (1.0, -0.05, 0.15),  # lateral
        (0.7, -0.75, -0.35),  # middle lobe / lingula
        (0.45, 0.95, -0.15),  # superior segment of the lower lobe
        (0.45, -0.45, -1.0),  # anterior basal
        (0.8, 0.1, -1.0),  # lateral basal
        (0.25, 0.75, -1.0),  # posterior basal
    ]
)
_TRUNK_LENGTH_MM = np.array([26.0, 30.0, 30.0, 34.0, 36.0, 32.0, 44.0, 46.0, 46.0])
_GENERATIONS = 7
_VESSEL_ROOT_RADIUS_MM = 5.5
_BRONCHUS_LUMEN_MM = 3.2
_BRONCHUS_WALL_MM = 1.0
#: A bronchial wall thinner than a voxel shows as a partial volume of soft tissue and air.
_BRONCHUS_WALL_HU = -250.0


@dataclass(frozen=True, eq=False)
class Tree:
    """Vessel segments of both lungs; arrays of length n_segments, points in (z, y, x) mm."""

    start: np.ndarray  # (n, 3)
    end: np.ndarray  # (n, 3)
    radius: np.ndarray
    generation: np.ndarray
    side: np.ndarray  # 0 right, 1 left
    trunk: np.ndarray
    alive: np.ndarray  # False for branches grown outside the lung or from such a branch


def grow_tree(
    rng: np.random.Generator, anat: Anatomy, roots: tuple[np.ndarray, np.ndarray], lung: np.ndarray, grid: Grid
) -> Tree:
    """Grow a branching tree from each hilum, steering the branches to stay inside the lung.

    Each child tries a few random directions (and then half its length) and keeps the first
    whose end lies in the lung; a branch that finds none ends there, with its descendants.
    """
    tries = 4
    parts: list[tuple[np.ndarray, ...]] = []
    n0 = len(TRUNKS)
    for side, sign in ((0, -1.0), (1, 1.0)):
        dirs = TRUNKS + rng.uniform(-0.18, 0.18, (n0, 3))
        # (lateral, posterior, up) -> (z, y, x)
        d = np.stack([dirs[:, 2], dirs[:, 1], sign * dirs[:, 0]], axis=1)
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        start = roots[side] + rng.uniform(-6.0, 6.0, (n0, 3))
        length = _TRUNK_LENGTH_MM * anat.lung_scale * rng.uniform(0.85, 1.15, n0)
        radius = np.full(n0, _VESSEL_ROOT_RADIUS_MM)
        trunk = np.arange(n0)
        alive = np.ones(n0, bool)
        end = start + d * length[:, None]
        for gen in range(_GENERATIONS):
            n = len(start)
            parts.append((start, end, radius, np.full(n, gen), np.full(n, side), trunk, alive.copy()))
            if gen == _GENERATIONS - 1:
                break
            # Two children per branch, spread on either side of the parent in a random plane.
            r = rng.standard_normal((tries, n, 3))
            r -= (r * d).sum(axis=2, keepdims=True) * d
            r /= np.maximum(np.linalg.norm(r, axis=2, keepdims=True), 1e-9)
            spread = rng.uniform(0.3, 0.65, (tries, 2 * n, 1))
            r2 = np.concatenate([r, -r], axis=1)
            d2 = np.concatenate([d, d])
            cand = d2 * np.cos(spread) + r2 * np.sin(spread)
            kid_len = np.concatenate([length, length]) * rng.uniform(0.72, 0.86, 2 * n)
            kid_start = np.concatenate([end, end])
            lengths = np.stack([kid_len] * tries + [0.5 * kid_len] * tries)[:, :, None]
            cand = np.concatenate([cand, cand])
            ends = kid_start + cand * lengths
            inside = lung[tuple(grid.index(ends.reshape(-1, 3)).T)].reshape(2 * tries, 2 * n)
            pick = np.where(inside.any(axis=0), inside.argmax(axis=0), 0)
            cols = np.arange(2 * n)
            d = cand[pick, cols]
            end = ends[pick, cols]
            length = lengths[pick, cols, 0]
            start = kid_start
            radius = np.concatenate([radius, radius]) * 0.8
            trunk = np.concatenate([trunk, trunk])
            alive = np.concatenate([alive, alive]) & inside[pick, cols]
    cols = list(zip(*parts, strict=True))
    return Tree(
        start=np.concatenate(cols[0]),
        end=np.concatenate(cols[1]),
        radius=np.concatenate(cols[2]),
        generation=np.concatenate(cols[3]),
        side=np.concatenate(cols[4]),
        trunk=np.concatenate(cols[5]),
        alive=np.concatenate(cols[6]),
    )


def sample_segments(start: np.ndarray, end: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ~step_mm along segments: (points (m, 3), segment index (m,), length per point (m,))."""
    length = np.linalg.norm(end - start, axis=1)
    counts = np.maximum(np.ceil(length / step_mm).astype(np.intp), 1)
    seg = np.repeat(np.arange(len(start)), counts)
    first = np.cumsum(counts) - counts
    t = (np.arange(seg.size) - first[seg] + 0.5) / counts[seg]
    pts = start[seg] + (end[seg] - start[seg]) * t[:, None]
    return pts, seg, (length / counts)[seg]


def draw_bronchi(vol: np.ndarray, airway: np.ndarray, grid: Grid, anat: Anatomy, tree: Tree, edge: float) -> None:
    """Lobar bronchi from each hilum alongside the arterial trunks: air lumen, thin wall.

    Smaller bronchi are left out: at a few millimetres per voxel their lumen and wall average
    out into the parenchyma.
    """
    lumen, wall = _BRONCHUS_LUMEN_MM, _BRONCHUS_WALL_MM
    for i in np.flatnonzero((tree.generation == 0) & tree.alive):
        start = np.array(anat.hilum[int(tree.side[i])], dtype=float)
        axis = tree.end[i] - start
        axis /= max(float(np.linalg.norm(axis)), 1e-9)
        # The bronchus runs beside its artery, offset roughly posteriorly.
        off = np.array([0.0, 1.0, 0.0]) - axis * axis[1]
        off /= max(float(np.linalg.norm(off)), 1e-9)
        end = tree.end[i] + off * (tree.radius[i] + lumen + 1.0)
        shape = capsule(grid, start, end, lumen + wall, lumen + wall, 2.0 * edge)
        if shape is None:
            continue
        paint(vol, shape, _BRONCHUS_WALL_HU, edge)
        paint(vol, shape, HU_AIR, edge, inset=wall)
        airway[shape.box] |= shape.d < -F32(wall)
