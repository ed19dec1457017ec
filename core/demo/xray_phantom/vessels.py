"""The pulmonary vessel trees grown from both hila, splatted on a coarse grid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.demo.xray_phantom.anatomy import Anatomy, to_image_coords
from core.demo.xray_phantom.fields import resample


def _vessel_tree(rng: np.random.Generator, anat: Anatomy) -> tuple[np.ndarray, ...]:
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
class Vessels:
    """Splatted vessel trees on a coarse grid, with the grid's size and pixels per unit."""

    trunks: np.ndarray  # (n, n) generations 0-1
    branches: np.ndarray  # (n, n) generations 2-3
    n: int

    def blurred(self, size: int, sigma: float, which: str = "all") -> np.ndarray:
        """(size, size) vessel map blurred by ``sigma`` normalised units."""
        grid = {"trunks": self.trunks, "branches": self.branches}.get(which)
        if grid is None:
            grid = self.trunks + self.branches
        return resample(grid, size, sigma * 0.5 * self.n)


def draw_vessels(rng: np.random.Generator, anat: Anatomy, size: int) -> Vessels:
    x, y, w, level = _vessel_tree(rng, anat)
    xi, yi = to_image_coords(anat, x, y)
    n = max(size // 2, 32)
    # Weights are calibre x length; dividing by the pixel area makes the blurred map a density
    # per unit area, the same at every resolution (scaled to about 0.3 per calibre at the peak).
    w = w * ((0.5 * n) ** 2 / 128.0)
    trunk = level < 2
    return Vessels(
        trunks=_splat(xi[trunk], yi[trunk], w[trunk], n),
        branches=_splat(xi[~trunk], yi[~trunk], w[~trunk], n),
        n=n,
    )
