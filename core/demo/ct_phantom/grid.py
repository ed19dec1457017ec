"""The voxel grid of a CT phantom, the coarse grid disease is planned on, and array helpers.

Coordinates are millimetres: z up from the lowest slice, y posterior, x to the patient's left,
centred in-plane. The field of view is fixed (:data:`CT_FIELD_OF_VIEW_MM`) whatever the shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: Default volume shape (z, y, x), in voxels.
CT_SHAPE: tuple[int, int, int] = (48, 128, 128)

#: Voxel spacing (z, y, x) of :data:`CT_SHAPE`, in millimetres.
CT_SPACING_MM: tuple[float, float, float] = (6.0, 2.8, 2.8)

#: Physical extent (z, y, x) of every phantom, in millimetres, whatever its shape.
CT_FIELD_OF_VIEW_MM: tuple[float, float, float] = (288.0, 358.4, 358.4)

#: Every field is float32; constants are cast so that numpy keeps it so.
F32 = np.float32

#: Index slices (z, y, x) of a box of voxels.
Box = tuple[slice, slice, slice]


@dataclass(frozen=True, eq=False)
class Grid:
    """Voxel-centre coordinates in mm: z up from the lowest slice, y posterior, x to the left."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray

    def box(self, lo: np.ndarray | tuple, hi: np.ndarray | tuple) -> Box | None:
        """Index slices of the voxels whose centres lie in [lo, hi] (z, y, x mm); None if empty."""
        out = []
        for axis, coords in enumerate((self.z, self.y, self.x)):
            i0 = int(np.searchsorted(coords, lo[axis], "left"))
            i1 = int(np.searchsorted(coords, hi[axis], "right"))
            if i1 <= i0:
                return None
            out.append(slice(i0, i1))
        return out[0], out[1], out[2]

    def coords(self, box: Box) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Broadcastable coordinates (Z[:, None, None], Y[None, :, None], X[None, None, :])."""
        return self.z[box[0], None, None], self.y[None, box[1], None], self.x[None, None, box[2]]

    def index(self, points: np.ndarray) -> np.ndarray:
        """Nearest voxel index (n, 3) of points (n, 3) in (z, y, x) mm, clipped to the volume."""
        first = np.array([self.z[0], self.y[0], self.x[0]])
        idx = np.rint((points - first) / np.array(self.spacing)).astype(np.intp)
        return np.clip(idx, 0, np.array(self.shape) - 1)


def make_grid(shape: tuple[int, int, int]) -> Grid:
    spacing = tuple(round(fov / n, 9) for fov, n in zip(CT_FIELD_OF_VIEW_MM, shape, strict=True))
    z = ((np.arange(shape[0]) + 0.5) * spacing[0]).astype(np.float32)
    y = ((np.arange(shape[1]) + 0.5) * spacing[1] - 0.5 * CT_FIELD_OF_VIEW_MM[1]).astype(np.float32)
    x = ((np.arange(shape[2]) + 0.5) * spacing[2] - 0.5 * CT_FIELD_OF_VIEW_MM[2]).astype(np.float32)
    return Grid(shape=shape, spacing=spacing, z=z, y=y, x=x)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class Coarse:
    """A strided subgrid (about 6 mm voxels) on which disease is planned.

    Coarse voxel ``k`` along an axis is full voxel ``offset + k * stride``; ``taps`` resample
    a coarse field linearly back to every full voxel.
    """

    stride: tuple[int, int, int]
    offset: tuple[int, int, int]
    z: np.ndarray
    y: np.ndarray
    x: np.ndarray
    step_mm: float

    def pick(self, full: np.ndarray) -> np.ndarray:
        """The coarse samples of a full-resolution array."""
        (sz, sy, sx), (oz, oy, ox) = self.stride, self.offset
        return np.ascontiguousarray(full[oz::sz, oy::sy, ox::sx])


def make_coarse(grid: Grid) -> Coarse:
    stride = (
        max(1, round(6.0 / grid.spacing[0])),
        max(1, round(5.6 / grid.spacing[1])),
        max(1, round(5.6 / grid.spacing[2])),
    )
    offset = tuple(s // 2 for s in stride)
    step = float(np.mean([sp * st for sp, st in zip(grid.spacing, stride, strict=True)]))
    return Coarse(
        stride=stride,  # type: ignore[arg-type]
        offset=offset,  # type: ignore[arg-type]
        z=grid.z[offset[0] :: stride[0]],
        y=grid.y[offset[1] :: stride[1]],
        x=grid.x[offset[2] :: stride[2]],
        step_mm=step,
    )


@lru_cache(maxsize=64)
def _taps(n_full: int, n_coarse: int, stride: int, offset: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices i0, i1 and weight of i1 to resample a strided coarse axis at every full voxel."""
    pos = np.clip((np.arange(n_full) - offset) / stride, 0.0, n_coarse - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.intp), max(n_coarse - 2, 0))
    i1 = np.minimum(i0 + 1, n_coarse - 1)
    frac = (pos - i0).astype(np.float32)
    for a in (i0, i1, frac):
        a.setflags(write=False)
    return i0, i1, frac


def upsample(coarse: np.ndarray, grid: Grid, co: Coarse, box: Box) -> np.ndarray:
    """Linear resampling of a coarse float32 field at the full voxels of ``box``."""
    out = coarse
    for axis in range(3):
        i0, i1, frac = _taps(grid.shape[axis], coarse.shape[axis], co.stride[axis], co.offset[axis])
        sl = box[axis]
        i0, i1, frac = i0[sl], i1[sl], frac[sl]
        shape = [1, 1, 1]
        shape[axis] = -1
        lo = np.take(out, i0, axis=axis)
        hi = np.take(out, i1, axis=axis)
        hi -= lo
        hi *= frac.reshape(shape)
        hi += lo
        out = hi
    return out


def blur3(field: np.ndarray, passes: int) -> np.ndarray:
    """``passes`` rounds of a [1, 2, 1] / 4 filter along every axis (edges repeated), float32."""
    out = field.astype(np.float32, copy=True)
    for _ in range(passes):
        for axis in range(3):
            if out.shape[axis] < 2:
                continue
            head = [slice(None)] * 3
            tail = [slice(None)] * 3
            head[axis], tail[axis] = slice(1, None), slice(0, -1)
            head, tail = tuple(head), tuple(tail)
            src = out
            out = src * F32(0.5)
            out[head] += F32(0.25) * src[tail]
            out[tail] += F32(0.25) * src[head]
            for i in (0, -1):
                edge = [slice(None)] * 3
                edge[axis] = slice(i, i + 1) if i == 0 else slice(-1, None)
                out[tuple(edge)] += F32(0.25) * src[tuple(edge)]
    return out


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], passes: int) -> np.ndarray:
    """Smooth random field of the given shape with zero mean and unit standard deviation, float32.

    Uniform draws are cheaper than Gaussian ones and, once blurred, about as Gaussian.
    """
    field = rng.random(shape, dtype=np.float32)
    if passes:
        field = blur3(field, passes)
    field -= F32(field.mean())
    field *= F32(1.0 / max(float(field.std()), 1e-6))
    return field


def _erode(mask: np.ndarray, cube: bool) -> np.ndarray:
    """Binary erosion by the 6-neighbourhood (``cube=False``) or the 3x3x3 cube; outside is False."""
    out = mask.copy()
    src = mask
    for axis in range(3):
        n = mask.shape[axis]
        head = [slice(None)] * 3
        tail = [slice(None)] * 3
        head[axis], tail[axis] = slice(1, None), slice(0, n - 1)
        if cube:
            src = out.copy()
        out[tuple(head)] &= src[tuple(tail)]
        out[tuple(tail)] &= src[tuple(head)]
        edge = [slice(None)] * 3
        for i in (0, n - 1):
            edge[axis] = slice(i, i + 1)
            out[tuple(edge)] = False
    return out


def depth_mm(mask: np.ndarray, step_mm: float, max_mm: float) -> np.ndarray:
    """Approximate distance (mm) of each voxel of ``mask`` to its boundary; 0 outside.

    Counts the erosions each voxel survives, alternating the 6-neighbourhood and the cube (an
    octagonal metric, within about 10 % of the Euclidean distance).
    """
    depth = np.zeros(mask.shape, np.float32)
    cur = mask
    for k in range(max(1, math.ceil(max_mm / step_mm))):
        if not cur.any():
            break
        depth += cur
        cur = _erode(cur, cube=k % 2 == 1)
    depth -= F32(0.5)
    depth *= F32(step_mm)
    return np.maximum(depth, F32(0.0), out=depth)


def mask_box(mask: np.ndarray) -> Box:
    """Bounding box of a non-empty boolean mask."""
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out[0], out[1], out[2]


def splat(grid: Grid, points: np.ndarray, volume_mm3: np.ndarray, box: Box) -> np.ndarray:
    """Trilinear splat of point volumes (mm3) as a voxel volume fraction over ``box``, float32."""
    first = np.array([grid.z[box[0]][0], grid.y[box[1]][0], grid.x[box[2]][0]])
    pos = (points - first) / np.array(grid.spacing)
    i0 = np.floor(pos).astype(np.intp)
    f = pos - i0
    shape = np.array([b.stop - b.start for b in box])
    keep = np.all((i0 >= 0) & (i0 < shape - 1), axis=1)
    i0, f, w = i0[keep], f[keep], volume_mm3[keep] / float(np.prod(grid.spacing))
    flat = (i0[:, 0] * shape[1] + i0[:, 1]) * shape[2] + i0[:, 2]
    g = 1.0 - f
    index, value = [], []
    for oz in (0, 1):
        wz = w * (f[:, 0] if oz else g[:, 0])
        for oy in (0, 1):
            wzy = wz * (f[:, 1] if oy else g[:, 1])
            for ox in (0, 1):
                index.append(flat + (oz * shape[1] + oy) * shape[2] + ox)
                value.append(wzy * (f[:, 2] if ox else g[:, 2]))
    total = np.bincount(np.concatenate(index), weights=np.concatenate(value), minlength=int(np.prod(shape)))
    return total.astype(np.float32).reshape(tuple(shape))
