"""Deterministic phantoms of chest CT volumes, in Hounsfield units, for the demo cohort.

A phantom is an int16 volume ``(z, y, x)`` of Hounsfield units (HU). Axis 0 runs from inferior
(index 0, the upper abdomen under the diaphragm) to superior (the lung apices near the top
index); axis 1 from anterior (row 0) to posterior; axis 2 from the patient's right (column 0)
to the patient's left: the usual axial radiological display (DICOM LPS with
ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``). The field of view is fixed in millimetres
(:data:`CT_FIELD_OF_VIEW_MM`), so another shape gives the same patient at another resolution.

Anatomy is drawn analytically in millimetres, x to the patient's left, y posterior and z up
from the lowest slice: a body cross-section with subcutaneous fat, a chest wall, a thoracic
cavity bounded by the diaphragm domes and the lung apices, a mediastinum of tubes (trachea and
main bronchi, aorta, pulmonary arteries, venae cavae, oesophagus) around an ellipsoidal heart,
the spine, ribs and sternum, and the upper abdomen (liver, stomach, spleen, kidneys). The lungs
fill the cavity around the mediastinum; pulmonary vessels are a branching tree from each hilum,
splatted with their partial volume so that thin ones fade into the parenchyma as on real CT.

Three independent random streams are spawned from the seed: anatomy, disease and noise. The
noise stream is split again by ``session`` (the index of a patient's scan), so scans of one
patient share anatomy and disease pattern and differ only by noise. Disease is planned on a
coarse grid as a lesion "level" field that only grows with severity: the lesions of a higher
severity are a superset of those of a lower one, as one disease evolving.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

import numpy as np

from core.labels import XRAY_LABELS

#: Default volume shape (z, y, x), in voxels.
CT_SHAPE: tuple[int, int, int] = (48, 128, 128)

#: Voxel spacing (z, y, x) of :data:`CT_SHAPE`, in millimetres.
CT_SPACING_MM: tuple[float, float, float] = (6.0, 2.8, 2.8)

#: Physical extent (z, y, x) of every phantom, in millimetres, whatever its shape.
CT_FIELD_OF_VIEW_MM: tuple[float, float, float] = (288.0, 358.4, 358.4)

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

#: Range of the stored Hounsfield units (12-bit CT with the usual -1024 offset).
HU_MIN: int = -1024
HU_MAX: int = 3071

_MIN_SHAPE = (16, 32, 32)
_MAX_SHAPE = (128, 512, 512)
_F32 = np.float32

# Hounsfield units of the tissues.
_HU_AIR = -1000.0
_HU_FAT = -100.0
_HU_MEDIASTINAL_FAT = -90.0
_HU_MUSCLE = 45.0
_HU_SOFT = 35.0
_HU_BLOOD = 40.0
_HU_LUNG = -865.0
_HU_LIVER = 60.0
_HU_SPLEEN = 48.0
_HU_KIDNEY = 32.0
_HU_FLUID = 12.0
_HU_CSF = 20.0
_HU_DISC = 90.0
_HU_CANCELLOUS = 230.0
_HU_CORTEX = 700.0
_HU_CARTILAGE = 120.0
_HU_TABLE = 250.0


@dataclass(frozen=True, eq=False)
class CtPhantom:
    """One synthetic chest CT volume with the ground truth of what was drawn.

    Attributes
    ----------
    hu : np.ndarray
        int16 (z, y, x) Hounsfield units in [-1024, 3071]; z from inferior to superior, y from
        anterior to posterior, x from the patient's right to the patient's left.
    spacing_mm : tuple of float
        Voxel spacing (z, y, x) in millimetres.
    label : str
        One of :data:`core.types.XRAY_LABELS`.
    severity : float
        Disease severity in [0, 1]; always 0 for ``"Normal"``.
    findings : dict[str, int]
        0 or 1 for each name of :data:`CT_FINDINGS`, following what was drawn.
    lesion_fraction : float
        ``lesion_mask.sum() / lung_mask.sum()``.
    lung_mask : np.ndarray
        bool (z, y, x): both lungs, intrapulmonary vessels and airways included. It depends on
        the seed only, not on the label, severity or session.
    lesion_mask : np.ndarray
        bool (z, y, x): voxels where disease was drawn (opacities and pleural fluid), a subset
        of ``lung_mask``.
    """

    hu: np.ndarray
    spacing_mm: tuple[float, float, float]
    label: str
    severity: float
    findings: dict[str, int]
    lesion_fraction: float
    lung_mask: np.ndarray
    lesion_mask: np.ndarray


# --------------------------------------------------------------------------- grid


Box = tuple[slice, slice, slice]


@dataclass(frozen=True, eq=False)
class _Grid:
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


def _make_grid(shape: tuple[int, int, int]) -> _Grid:
    spacing = tuple(round(fov / n, 9) for fov, n in zip(CT_FIELD_OF_VIEW_MM, shape, strict=True))
    z = ((np.arange(shape[0]) + 0.5) * spacing[0]).astype(np.float32)
    y = ((np.arange(shape[1]) + 0.5) * spacing[1] - 0.5 * CT_FIELD_OF_VIEW_MM[1]).astype(np.float32)
    x = ((np.arange(shape[2]) + 0.5) * spacing[2] - 0.5 * CT_FIELD_OF_VIEW_MM[2]).astype(np.float32)
    return _Grid(shape=shape, spacing=spacing, z=z, y=y, x=x)  # type: ignore[arg-type]


@dataclass(frozen=True, eq=False)
class _Coarse:
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


def _make_coarse(grid: _Grid) -> _Coarse:
    stride = (
        max(1, round(6.0 / grid.spacing[0])),
        max(1, round(5.6 / grid.spacing[1])),
        max(1, round(5.6 / grid.spacing[2])),
    )
    offset = tuple(s // 2 for s in stride)
    step = float(np.mean([sp * st for sp, st in zip(grid.spacing, stride, strict=True)]))
    return _Coarse(
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


def _upsample(coarse: np.ndarray, grid: _Grid, co: _Coarse, box: Box) -> np.ndarray:
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


def _blur3(field: np.ndarray, passes: int) -> np.ndarray:
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
            out = src * _F32(0.5)
            out[head] += _F32(0.25) * src[tail]
            out[tail] += _F32(0.25) * src[head]
            for i in (0, -1):
                edge = [slice(None)] * 3
                edge[axis] = slice(i, i + 1) if i == 0 else slice(-1, None)
                out[tuple(edge)] += _F32(0.25) * src[tuple(edge)]
    return out


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], passes: int) -> np.ndarray:
    """Smooth random field of the given shape with zero mean and unit standard deviation, float32.

    Uniform draws are cheaper than Gaussian ones and, once blurred, about as Gaussian.
    """
    field = rng.random(shape, dtype=np.float32)
    if passes:
        field = _blur3(field, passes)
    field -= _F32(field.mean())
    field *= _F32(1.0 / max(float(field.std()), 1e-6))
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


def _depth_mm(mask: np.ndarray, step_mm: float, max_mm: float) -> np.ndarray:
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
    depth -= _F32(0.5)
    depth *= _F32(step_mm)
    return np.maximum(depth, _F32(0.0), out=depth)


# --------------------------------------------------------------------------- anatomy parameters


@dataclass(frozen=True)
class _Anatomy:
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


def _draw_anatomy(rng: np.random.Generator) -> _Anatomy:
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

    return _Anatomy(
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


# --------------------------------------------------------------------------- shapes


@dataclass(frozen=True, eq=False)
class _Shape:
    """A structure within a bounding box: signed distance ``d`` in mm, negative inside."""

    box: Box
    d: np.ndarray


def _capsule(grid: _Grid, p0: np.ndarray, p1: np.ndarray, r0: float, r1: float, pad: float) -> _Shape | None:
    """Tube of radius r0 -> r1 along the segment p0 -> p1 (z, y, x mm), with ``pad`` mm of box."""
    reach = max(r0, r1) + pad
    box = grid.box(np.minimum(p0, p1) - reach, np.maximum(p0, p1) + reach)
    if box is None:
        return None
    Z, Y, X = grid.coords(box)
    v = (p1 - p0).astype(np.float32)
    inv = _F32(1.0 / max(float(v @ v), 1e-9))
    dz, dy, dx = Z - _F32(p0[0]), Y - _F32(p0[1]), X - _F32(p0[2])
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
    d -= _F32(r0) + _F32(r1 - r0) * t
    return _Shape(box, d)


def _vertical_tube(
    grid: _Grid, knots_z: tuple, knots_y: tuple, knots_x: tuple, knots_r: tuple, pad: float
) -> _Shape | None:
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
    return _Shape(box, d)


def _ellipsoid(
    grid: _Grid, centre: tuple[float, float, float], axes: tuple[float, float, float], angle: float, pad: float
) -> _Shape | None:
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
    dx, dy = X - _F32(centre[2]), Y - _F32(centre[1])
    u = (dx * _F32(c) - dy * _F32(s)) * _F32(1.0 / axes[1])
    v = (dx * _F32(s) + dy * _F32(c)) * _F32(1.0 / axes[2])
    w = (Z - _F32(centre[0])) * _F32(1.0 / axes[0])
    d = w * w + (u * u + v * v)
    np.sqrt(d, out=d)
    d -= _F32(1.0)
    d *= _F32(min(axes))
    return _Shape(box, d)


def _paint(vol: np.ndarray, shape: _Shape | None, hu: float | np.ndarray, edge: float, inset: float = 0.0) -> None:
    """Blend ``hu`` into ``vol`` inside a shape shrunk by ``inset`` mm, with a soft edge."""
    if shape is None:
        return
    region = vol[shape.box]
    frac = (shape.d + _F32(inset)) * _F32(-1.0 / edge)
    frac += _F32(0.5)
    np.clip(frac, 0.0, 1.0, out=frac)
    region += frac * (hu - region)


def _exclude(dmed: np.ndarray, shape: _Shape | None, margin: float) -> None:
    """Keep the lungs ``margin`` mm away from a mediastinal structure."""
    if shape is None:
        return
    region = dmed[shape.box]
    np.minimum(region, shape.d - _F32(margin), out=region)


def _superellipse_radius(x: np.ndarray, y: np.ndarray, a: float, b: tuple[float, float], p: float) -> np.ndarray:
    """Homogeneous radius (1 on the outline) of a superellipse with different front and back."""
    inv_b = np.where(y < 0, _F32(1.0 / b[0]), _F32(1.0 / b[1]))
    f = np.abs(x * _F32(1.0 / a)) ** _F32(p) + np.abs(y * inv_b) ** _F32(p)
    return np.maximum(f ** _F32(1.0 / p), _F32(1e-4))


# --------------------------------------------------------------------------- vessels


#: Directions of the pulmonary trunks from each hilum as (lateral, posterior, up), and lengths.
_TRUNKS = np.array(
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
class _Tree:
    """Vessel segments of both lungs; arrays of length n_segments, points in (z, y, x) mm."""

    start: np.ndarray  # (n, 3)
    end: np.ndarray  # (n, 3)
    radius: np.ndarray
    generation: np.ndarray
    side: np.ndarray  # 0 right, 1 left
    trunk: np.ndarray
    alive: np.ndarray  # False for branches grown outside the lung or from such a branch


def _grow_tree(
    rng: np.random.Generator, anat: _Anatomy, roots: tuple[np.ndarray, np.ndarray], lung: np.ndarray, grid: _Grid
) -> _Tree:
    """Grow a branching tree from each hilum, steering the branches to stay inside the lung.

    Each child tries a few random directions (and then half its length) and keeps the first
    whose end lies in the lung; a branch that finds none ends there, with its descendants.
    """
    tries = 4
    parts: list[tuple[np.ndarray, ...]] = []
    n0 = len(_TRUNKS)
    for side, sign in ((0, -1.0), (1, 1.0)):
        dirs = _TRUNKS + rng.uniform(-0.18, 0.18, (n0, 3))
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
    return _Tree(
        start=np.concatenate(cols[0]),
        end=np.concatenate(cols[1]),
        radius=np.concatenate(cols[2]),
        generation=np.concatenate(cols[3]),
        side=np.concatenate(cols[4]),
        trunk=np.concatenate(cols[5]),
        alive=np.concatenate(cols[6]),
    )


def _sample_segments(start: np.ndarray, end: np.ndarray, step_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points every ~step_mm along segments: (points (m, 3), segment index (m,), length per point (m,))."""
    length = np.linalg.norm(end - start, axis=1)
    counts = np.maximum(np.ceil(length / step_mm).astype(np.intp), 1)
    seg = np.repeat(np.arange(len(start)), counts)
    first = np.cumsum(counts) - counts
    t = (np.arange(seg.size) - first[seg] + 0.5) / counts[seg]
    pts = start[seg] + (end[seg] - start[seg]) * t[:, None]
    return pts, seg, (length / counts)[seg]


def _splat(grid: _Grid, points: np.ndarray, volume_mm3: np.ndarray, box: Box) -> np.ndarray:
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


# --------------------------------------------------------------------------- anatomy volume


@dataclass(frozen=True, eq=False)
class _Body:
    """The anatomy volume and what disease drawing needs of it."""

    hu: np.ndarray  # float32 (z, y, x)
    lung: np.ndarray  # bool (z, y, x)
    lung_box: Box
    airway: np.ndarray  # bool (z, y, x) air in the trachea and bronchi
    texture: np.ndarray  # float32 smooth unit field over lung_box
    split_col: int  # first column of the left lung
    tree: _Tree
    tree_points: np.ndarray
    tree_segment: np.ndarray


def _build_body(rng: np.random.Generator, anat: _Anatomy, grid: _Grid, co: _Coarse) -> _Body:
    edge = float(grid.spacing[2])
    z, y, x = grid.z, grid.y, grid.x
    X2 = (x - _F32(anat.cx))[None, :]
    Y2 = (y - _F32(anat.cy))[:, None]
    r2 = np.sqrt(X2 * X2 + Y2 * Y2)

    # Body: z-invariant cross-section, subcutaneous fat over muscle, soft outline.
    fb = _superellipse_radius(X2, Y2, anat.body_a, anat.body_b, anat.body_p)
    ray = r2 / fb
    skin = np.clip((ray - r2) * _F32(1.0 / edge) + _F32(0.5), 0.0, 1.0)
    inner = np.clip((ray * _F32(1.0 - anat.fat_frac) - r2) * _F32(1.0 / edge) + _F32(0.5), 0.0, 1.0)
    body2d = _F32(_HU_AIR) + skin * _F32(_HU_FAT - _HU_AIR) + inner * _F32(_HU_MUSCLE - _HU_FAT)
    # The table under the patient: a thin curved plate.
    table_y = anat.cy + anat.body_b[1] + 6.0 + 0.0008 * (x - anat.cx) ** 2
    table = (np.abs(y[:, None] - table_y[None, :]) < 3.0) & (np.abs(x - anat.cx) < 170.0)[None, :]
    body2d[table] = _HU_TABLE
    vol = np.empty(grid.shape, np.float32)
    vol[...] = body2d[None]

    # Thoracic cavity: a rounder superellipse that narrows toward the apices.
    cray, s_cav, apex_cap = _cavity_frame(anat, z, y, x)

    # Diaphragm domes, per side; the posterior and lateral recesses reach lowest.
    right = (x < anat.cx)[None, :]
    ax = np.abs(x - _F32(anat.cx))[None, :]
    dome_z = np.where(right, _F32(anat.dome_z[0]), _F32(anat.dome_z[1]))
    dome_dx = np.where(right, _F32(anat.dome_dx[0]), _F32(anat.dome_dx[1]))
    qx = ax - dome_dx
    qy = (y - _F32(anat.dome_y))[:, None]
    q = anat.dome_k * (qx * qx + _F32(0.5) * qy * qy)
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
    tex_c = _smooth_field(rng, tuple(len(a) for a in (co.z, co.y, co.x)), 1)
    abd_top = max(anat.dome_z) + 4.0
    zab = slice(0, int(np.searchsorted(z[zb], abd_top, "right")))
    gate = np.minimum(d_cav[zab], -d_dia[zab] - _F32(4.0))  # > 0 inside the abdomen
    abox = (slice(zb.start + zab.start, zb.start + zab.stop), yb, xb)
    fatty = _upsample(tex_c, grid, co, abox)
    abd_hu = np.where(fatty > _F32(0.6), _F32(25.0), _F32(-95.0))
    _blend(tvol[zab], gate, abd_hu, edge)
    _, Ya, Xa = grid.coords(abox)
    front, back = anat.cy - anat.cav_b[0], anat.cy + anat.cav_b[1]
    liver_edge = anat.cx + 50.0 - 80.0 * np.clip((Ya - front) / (back - front), 0.0, 1.0)
    liver_gate = np.minimum(gate, (liver_edge - Xa).astype(np.float32))
    _blend(tvol[zab], liver_gate, _F32(_HU_LIVER) + _F32(6.0) * fatty, edge)
    organs = [
        (_ellipsoid(grid, anat.spleen, (45.0, 25.0, 45.0), math.radians(-55.0), 2.0), _HU_SPLEEN),
        (
            _ellipsoid(grid, (anat.kidney_z - 10.0, anat.vb_y + 8.0, anat.cx - 62.0), (48.0, 27.0, 23.0), 1.2, 2.0),
            _HU_KIDNEY,
        ),
        (_ellipsoid(grid, (anat.kidney_z, anat.vb_y + 8.0, anat.cx + 62.0), (48.0, 27.0, 23.0), -1.2, 2.0), _HU_KIDNEY),
    ]
    gate_full = np.full(grid.shape, -1e3, np.float32)
    gate_full[abox] = gate
    for shape, hu in organs:
        _paint_gated(vol, shape, hu, edge, gate_full)
    stomach = _ellipsoid(grid, anat.stomach, (38.0, 42.0, 34.0), math.radians(30.0), 2.0)
    if stomach is not None:
        _paint_gated(vol, stomach, _HU_SOFT, edge, gate_full)
        _, Ys, _ = grid.coords(stomach.box)
        gas_level = anat.stomach[1] - 34.0 * (1.0 - 2.0 * anat.stomach_gas)
        content = np.where(Ys < gas_level, _F32(_HU_AIR), _F32(_HU_FLUID))
        _paint_gated(vol, _Shape(stomach.box, stomach.d + _F32(4.0)), content, edge, gate_full)

    # Mediastinum: fat margins first, then the structures, in order.
    dmed = np.full(grid.shape, 1e3, np.float32)
    tubes = _mediastinal_tubes(grid, anat)
    for shape, _hu, margin, _lumen in tubes:
        _paint(vol, shape, _HU_MEDIASTINAL_FAT, edge, inset=-margin)
    for shape, hu, margin, lumen in tubes:
        _paint(vol, shape, hu, edge)
        if lumen is not None:
            _paint(vol, shape, _HU_AIR, edge, inset=lumen)
        _exclude(dmed, shape, margin)
    # A thin band along the midline keeps the lungs apart in front of and behind the heart.
    _, _, Xt = grid.coords(tbox)
    np.minimum(dmed[tbox], np.abs(Xt - _F32(anat.cx)) - _F32(2.0), out=dmed[tbox])

    # Spine (and everything behind the front of the vertebral bodies, near the midline).
    _draw_spine(vol, dmed, grid, anat, edge)

    # Lungs.
    d_api = apex_cap[yb, xb][None] - Zt
    d_lung = np.minimum(d_cav, d_dia - _F32(4.0))
    np.minimum(d_lung, d_api, out=d_lung)
    np.minimum(d_lung, dmed[tbox], out=d_lung)
    lung_t = d_lung > 0
    lung = np.zeros(grid.shape, bool)
    lung[tbox] = lung_t
    lbox = _mask_box(lung)
    rel = tuple(slice(lb.start - tb.start, lb.stop - tb.start) for lb, tb in zip(lbox, tbox, strict=True))
    frac = np.clip(d_lung[rel] * _F32(1.0 / edge) + _F32(0.5), 0.0, 1.0)
    texture = _upsample(tex_c, grid, co, lbox)
    _, Yl, _ = grid.coords(lbox)
    dependent = np.clip((Yl - _F32(anat.cy)) * _F32(1.0 / max(anat.cav_b)), -1.0, 1.0)
    lung_hu = _F32(_HU_LUNG) + _F32(20.0) * texture + _F32(22.0) * dependent
    lvol = vol[lbox]
    lvol += frac * (lung_hu - lvol)

    # Pulmonary vessels: a tree from each hilum, splatted with their partial volume.
    roots = (
        np.array(anat.hilum[0]) + np.array([2.0, -10.0, -6.0]),
        np.array(anat.hilum[1]) + np.array([10.0, -6.0, 6.0]),
    )
    tree = _grow_tree(rng, anat, roots, lung, grid)
    pts, seg, seg_len = _sample_segments(tree.start, tree.end, 1.6)
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
    density = _splat(grid, np.concatenate(extra), np.concatenate(weights), lbox)
    np.minimum(density, _F32(1.0), out=density)
    density *= frac
    lvol += density * (_F32(_HU_BLOOD) - lvol)

    # Bronchi along the first two generations of the tree, lumen air with a thin wall.
    airway = np.zeros(grid.shape, bool)
    for shape, _hu, _margin, lumen in tubes:
        if lumen is not None:
            airway[shape.box] |= shape.d < -_F32(lumen)
    _draw_bronchi(vol, airway, grid, anat, tree, edge)

    # Bones and cartilage of the chest wall.
    _draw_ribs(vol, grid, anat, cray, r2, s_cav)
    _draw_sternum(vol, grid, anat, s_cav, edge)

    split = int(np.searchsorted(x, anat.cx))
    return _Body(
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


def _cavity_frame(anat: _Anatomy, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """The thoracic cavity and lung apices on the grid of 1-D coordinates z, y, x (mm).

    Returns ``ray`` (y, x): the distance from the centre to the cavity wall along each ray at
    full width; ``scale`` (z,): the cavity narrows toward the apices; ``apex_cap`` (y, x): the
    height of each lung's paraboloid apical cap over each point.
    """
    X2 = (x - _F32(anat.cx))[None, :]
    Y2 = (y - _F32(anat.cy))[:, None]
    ray = np.sqrt(X2 * X2 + Y2 * Y2) / _superellipse_radius(X2, Y2, anat.cav_a, anat.cav_b, anat.cav_p)
    base = max(anat.dome_z) + 20.0
    t = np.clip((z - base) / (max(anat.apex_z) + 15.0 - base), 0.0, 1.0)
    scale = (1.0 - anat.cav_taper * t**1.5).astype(np.float32)
    right = X2 < 0
    apex_z = np.where(right, _F32(anat.apex_z[0]), _F32(anat.apex_z[1]))
    apex_dx = np.where(right, _F32(anat.apex_dx[0]), _F32(anat.apex_dx[1]))
    pa = (np.abs(X2) - apex_dx) * _F32(1.0 / (0.5 * anat.cav_a))
    pb = (y - _F32(anat.apex_y))[:, None] * _F32(1.0 / max(anat.cav_b))
    apex_cap = apex_z - _F32(anat.apex_h) * (pa * pa + pb * pb)
    return ray.astype(np.float32), scale, apex_cap.astype(np.float32)


def _costal_depth(anat: _Anatomy, z: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Distance (mm, z, y, x) to the costal and apical pleura: the chest wall, not the mediastinum."""
    ray, scale, apex_cap = _cavity_frame(anat, z, y, x)
    X2 = (x - _F32(anat.cx))[None, :]
    Y2 = (y - _F32(anat.cy))[:, None]
    r2 = np.sqrt(X2 * X2 + Y2 * Y2)
    wall = ray[None] * scale[:, None, None] - r2[None]
    return np.minimum(wall, apex_cap[None] - z[:, None, None])


def _blend(region: np.ndarray, d_inside: np.ndarray, hu: float | np.ndarray, edge: float) -> None:
    """Blend ``hu`` into ``region`` where ``d_inside`` (mm, positive inside) is positive."""
    frac = np.clip(d_inside * _F32(1.0 / edge) + _F32(0.5), 0.0, 1.0)
    region += frac * (hu - region)


def _paint_gated(vol: np.ndarray, shape: _Shape | None, hu: float | np.ndarray, edge: float, gate: np.ndarray) -> None:
    """Paint a shape only where ``gate`` (mm, positive inside the allowed region) is positive."""
    if shape is None:
        return
    _blend(vol[shape.box], np.minimum(-shape.d, gate[shape.box]), hu, edge)


def _mask_box(mask: np.ndarray) -> Box:
    """Bounding box of a non-empty boolean mask."""
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out[0], out[1], out[2]


def _mediastinal_tubes(grid: _Grid, anat: _Anatomy) -> list[tuple[_Shape | None, float, float, float | None]]:
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
    out: list[tuple[_Shape | None, float, float, float | None]] = []
    out.append((_ellipsoid(grid, anat.heart, anat.heart_axes, anat.heart_angle, 8.0), _HU_BLOOD, 5.0, None))
    # Aorta: ascending, arch (a quadratic curve left of the trachea), descending to the abdomen.
    out.append(
        (
            _vertical_tube(
                grid, (hz + 0.3 * cz, anat.arch_z), (asc_y, asc_y), (asc_x, asc_x), (ar * 1.15, ar * 1.15), 6.0
            ),
            _HU_BLOOD,
            4.0,
            None,
        )
    )
    low = anat.dome_z[1] - 10.0
    out.append(
        (
            _vertical_tube(
                grid,
                (-10.0, low, anat.arch_z),
                (anat.vb_y - anat.vb_r[1] - ar - 2.0, desc_y, desc_y),
                (anat.cx + 4.0, desc_x, desc_x),
                (ar * 0.9, ar, ar),
                6.0,
            ),
            _HU_BLOOD,
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
        out.append((_capsule(grid, a, b, ar * 1.05, ar * 1.05, 6.0), _HU_BLOOD, 4.0, None))
    # Great arteries from the arch, and the veins.
    for gx, gy, gr, drift in ((-8.0, -18.0, 6.5, -14.0), (6.0, -14.0, 4.5, 4.0), (18.0, -4.0, 5.5, 14.0)):
        out.append(
            (
                _vertical_tube(
                    grid, (anat.arch_z, top), (ty + gy, ty + gy), (anat.cx + gx, anat.cx + gx + drift), (gr, gr), 6.0
                ),
                _HU_BLOOD,
                3.0,
                None,
            )
        )
    sx, sy = anat.svc_xy
    out.append(
        (_vertical_tube(grid, (hz + 0.2 * cz, top), (sy, sy), (sx, sx - 4.0), (9.5, 9.0), 6.0), _HU_BLOOD, 3.0, None)
    )
    bcv_z = anat.arch_z + 26.0
    out.append(
        (
            _capsule(
                grid, np.array([bcv_z, ty - 30.0, anat.cx + 50.0]), np.array([bcv_z - 6.0, sy, sx]), 6.0, 7.0, 6.0
            ),
            _HU_BLOOD,
            2.0,
            None,
        )
    )
    out.append(
        (
            _vertical_tube(
                grid, (-10.0, anat.dome_z[0] + 5.0), (anat.vb_y - 30.0,) * 2, (anat.cx - 22.0,) * 2, (11.0, 11.0), 6.0
            ),
            _HU_BLOOD,
            2.0,
            None,
        )
    )
    # Pulmonary arteries: trunk from the right ventricle to the bifurcation, then to the hila.
    bif = np.array(anat.pa_bif)
    pa0 = np.array([hz + 0.6 * cz, hy - 0.5 * anat.heart_axes[2], anat.cx + 15.0])
    out.append((_capsule(grid, pa0, bif, 13.0, 12.0, 6.0), _HU_BLOOD, 3.0, None))
    for side, off in ((0, (-2.0, -10.0, -4.0)), (1, (10.0, -6.0, 4.0))):
        end = np.array(anat.hilum[side]) + np.array(off)
        out.append((_capsule(grid, bif, end, 10.0, 8.0, 6.0), _HU_BLOOD, 2.0, None))
    # Oesophagus, from the neck to the stomach, with a little air in some patients.
    st_z, st_y, st_x = anat.stomach
    ey = anat.vb_y - anat.vb_r[1] - 9.0
    out.append(
        (
            _vertical_tube(
                grid,
                (st_z + 10.0, anat.dome_z[1] + 10.0, top),
                (st_y + 10.0, ey - 4.0, ey),
                (st_x - 20.0, anat.cx + 8.0, anat.cx + 3.0),
                (8.0, 7.0, 7.0),
                6.0,
            ),
            _HU_SOFT,
            3.0,
            5.0 if anat.esophagus_air else None,
        )
    )
    # Trachea and main bronchi: air lumen, thin wall.
    out.append(
        (
            _vertical_tube(grid, (anat.carina_z, top), (ty, ty), (anat.cx, anat.cx), (tr + 2.0, tr + 2.0), 6.0),
            _HU_SOFT,
            2.0,
            2.0,
        )
    )
    for side, lumen in ((0, 6.5), (1, 5.5)):
        out.append((_capsule(grid, carina, np.array(anat.hilum[side]), tr + 1.0, lumen + 1.5, 6.0), _HU_SOFT, 2.0, 1.5))
    return out


def _draw_spine(vol: np.ndarray, dmed: np.ndarray, grid: _Grid, anat: _Anatomy, edge: float) -> None:
    """Vertebral bodies with discs, spinal canal, posterior arch, transverse and spinous processes."""
    rx, ry = anat.vb_r
    box = grid.box((-1.0, anat.vb_y - ry - 30.0, anat.cx - 45.0), (1e4, anat.canal_y + 45.0, anat.cx + 45.0))
    assert box is not None
    Z, Y, X = grid.coords(box)
    # Thoracic kyphosis: the mid-thoracic spine lies further back.
    bow = _F32(anat.kyphosis) * (_F32(1.0) - ((Z - _F32(150.0)) * _F32(1.0 / 150.0)) ** 2)
    Yr = Y - bow
    dx = X - _F32(anat.cx)
    ex = dx * _F32(1.0 / rx)
    ey = (Yr - _F32(anat.vb_y)) * _F32(1.0 / ry)
    rho = np.sqrt(ex * ex + ey * ey)
    phase = np.mod(Z - _F32(anat.disc_phase), _F32(anat.disc_period))
    disc = phase < _F32(7.0)
    body_hu = np.where(disc, _F32(_HU_DISC), _F32(_HU_CANCELLOUS) + _F32(_HU_CORTEX - _HU_CANCELLOUS) * (rho > 0.8))
    region = vol[box]
    frac = np.clip((_F32(1.0) - rho) * _F32(min(rx, ry) / edge) + _F32(0.5), 0.0, 1.0)
    region += frac * (body_hu - region)
    # Posterior arch: a bony ring around the canal, processes behind and beside it.
    cy = Yr - _F32(anat.canal_y)
    rc = np.sqrt(dx * dx * _F32(1.0 / 1.2) + cy * cy)
    arch = (rc < _F32(15.0)) & (cy > _F32(-6.0))
    spinous = (np.abs(dx) < _F32(4.0)) & (cy > _F32(0.0)) & (cy < _F32(24.0))
    level = (phase > _F32(9.0)) & (phase < _F32(22.0))
    transverse = level & (np.abs(cy + _F32(2.0)) < _F32(5.0)) & (np.abs(dx) < _F32(34.0))
    bone = arch | spinous | transverse
    np.copyto(region, _F32(450.0), where=bone)
    np.copyto(region, _F32(_HU_CSF), where=rc < _F32(8.0))
    # The lungs stay clear of everything behind the front of the vertebral bodies near the midline.
    front = np.maximum(np.abs(dx) - _F32(rx + 4.0), _F32(anat.vb_y - ry - 4.0) - Yr)
    np.minimum(dmed[box], front, out=dmed[box])


def _draw_bronchi(vol: np.ndarray, airway: np.ndarray, grid: _Grid, anat: _Anatomy, tree: _Tree, edge: float) -> None:
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
        shape = _capsule(grid, start, end, lumen + wall, lumen + wall, 2.0 * edge)
        if shape is None:
            continue
        _paint(vol, shape, _BRONCHUS_WALL_HU, edge)
        _paint(vol, shape, _HU_AIR, edge, inset=wall)
        airway[shape.box] |= shape.d < -_F32(wall)


def _draw_ribs(
    vol: np.ndarray,
    grid: _Grid,
    anat: _Anatomy,
    cray: np.ndarray,
    r2: np.ndarray,
    s_cav: np.ndarray,
) -> None:
    """Ribs: bony bands just outside the cavity, sloping down from the spine to the sternum."""
    hz, hr = anat.rib_half
    centre = hr + 1.5
    # Pixels of the chest-wall band that a rib may occupy at some height.
    smin, smax = float(s_cav.min()), float(s_cav.max())
    band = (cray * _F32(smin) - r2 < _F32(centre + hr + 1.0)) & (r2 - cray * _F32(smax) < _F32(centre + hr + 1.0))
    band &= r2 - cray * _F32(smin) > _F32(centre - hr - 1.0)
    yy, xx = np.nonzero(band)
    if yy.size == 0:
        return
    y = grid.y[yy] - _F32(anat.cy)
    x = grid.x[xx] - _F32(anat.cx)
    # 0 at the back, 1 at the front: ribs descend toward the sternum.
    front = (_F32(1.0) - y / np.maximum(np.sqrt(x * x + y * y), _F32(1e-3))) * _F32(0.5)
    behind_spine = (np.abs(x) < _F32(anat.vb_r[0] + 10.0)) & (y > _F32(0.0))
    cartilage = (np.abs(x) < _F32(32.0)) & (y < _F32(0.0))
    radial = r2[yy, xx][None, :] - cray[yy, xx][None, :] * s_cav[:, None] - _F32(centre)
    u = (grid.z[:, None] - _F32(anat.rib_top) + _F32(anat.rib_drop) * front[None, :]) * _F32(1.0 / anat.rib_period)
    k = np.rint(u)
    dz = (u - k) * _F32(anat.rib_period)
    rho2 = (dz * _F32(1.0 / hz)) ** 2 + (radial * _F32(1.0 / hr)) ** 2
    exists = (k <= 0) & (k > -12) & ~behind_spine[None, :]
    inside = (rho2 < 1.0) & exists
    hu = np.where(cartilage[None, :], _F32(_HU_CARTILAGE), _F32(250.0) + _F32(450.0) * rho2)
    frac = np.clip((_F32(1.0) - rho2) * _F32(2.0), 0.0, 1.0) * inside
    cur = vol[:, yy, xx]
    cur += frac * (hu - cur)
    vol[:, yy, xx] = cur


def _draw_sternum(vol: np.ndarray, grid: _Grid, anat: _Anatomy, s_cav: np.ndarray, edge: float) -> None:
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
    tube = _vertical_tube(grid, tuple(float(v) for v in zs), knots_y, knots_x, (6.0,) * len(zs), 14.0)
    if tube is None:
        return
    # Flatten the tube into a plate: 14 mm half-width, 6 mm half-thickness.
    _, Y, X = grid.coords(tube.box)
    yc = np.interp(grid.z[tube.box[0]], zs, ys).astype(np.float32)[:, None, None]
    ex = (X - _F32(anat.cx)) * _F32(1.0 / 14.0)
    ey = (Y - yc) * _F32(1.0 / 6.0)
    rho = np.sqrt(ex * ex + ey * ey)
    hu = _F32(300.0) + _F32(350.0) * (rho > 0.7)
    _paint(vol, _Shape(tube.box, (rho - _F32(1.0)) * _F32(6.0)), hu, edge)


# --------------------------------------------------------------------------- disease


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


def _lung_maps(body: _Body, co: _Coarse, anat: _Anatomy) -> _LungMaps:
    lung = co.pick(body.lung)
    depth = _depth_mm(lung, co.step_mm, 80.0)
    zs = co.z[lung.any(axis=(1, 2))]
    ys = co.y[lung.any(axis=(0, 2))]
    posterior = np.clip((co.y - ys[0]) / max(float(ys[-1] - ys[0]), 1.0), 0.0, 1.0).astype(np.float32)
    lower = np.clip((zs[-1] - co.z) / max(float(zs[-1] - zs[0]), 1.0), 0.0, 1.0).astype(np.float32)
    return _LungMaps(
        lung=lung,
        depth=depth,
        costal=np.maximum(_costal_depth(anat, co.z, co.y, co.x), _F32(0.0)),
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
    level: np.ndarray, co: _Coarse, centres: np.ndarray, radii: np.ndarray, activation: np.ndarray, severity: float
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
        dz = (co.z[sl[0]] - _F32(cz))[:, None, None]
        dy = (co.y[sl[1]] - _F32(cy))[None, :, None]
        dx = (co.x[sl[2]] - _F32(cx))[None, None, :]
        value = _F32(1.0) - np.sqrt(dz * dz + dy * dy + dx * dx) * _F32(1.0 / r)
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


def _plan_covid(rng: np.random.Generator, maps: _LungMaps, co: _Coarse, severity: float) -> _Plan:
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
    margin = _smooth_field(rng, maps.lung.shape, 1)

    # Lesions sit under the pleura, preferably at the back and at the bases.
    weight = np.exp(-maps.costal * _F32(1.0 / 10.0)) * (_F32(0.2) + maps.posterior) ** 2 * (_F32(0.2) + maps.lower) ** 2
    level = np.full(maps.lung.shape, -2.0, np.float32)
    for side in (0, 1):
        voxels = np.flatnonzero(maps.lung & (maps.right == (side == 0)))
        iz, iy, ix = np.unravel_index(voxels[_pick_weighted(weight.ravel()[voxels], u[side])], maps.lung.shape)
        centres = np.stack([co.z[iz], co.y[iy], co.x[ix]], axis=1)
        _add_lesions(level, co, centres, radii[side], activation[side], severity)
    # Severe disease becomes confluent over the dependent, peripheral lower lungs.
    if severity > 0.5:
        reach = _F32(2.0 * (severity - 0.5) / 0.5)
        cost = (
            maps.costal * _F32(1.0 / 18.0)
            + _F32(1.4) * (_F32(1.0) - maps.posterior)
            + _F32(0.9) * (_F32(1.0) - maps.lower)
        )
        np.maximum(level, reach - cost, out=level)
    level += _F32(0.22) * margin
    cons = 1.0 - 0.45 * (severity - 0.5) / 0.5 if severity > CONSOLIDATION_SEVERITY["COVID-19"] else math.inf
    return _Plan(level=level, consolidation_level=cons, crazy_paving=crazy, nodules=None, effusion=effusion)


def _plan_viral(
    rng: np.random.Generator, maps: _LungMaps, co: _Coarse, body: _Body, anat: _Anatomy, severity: float
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
    margin = _smooth_field(rng, maps.lung.shape, 1)

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
        trunks = np.arange(1, 4) if upper else np.arange(1, len(_TRUNKS))
        trunk = int(trunks[min(int(trunk_u * len(trunks)), len(trunks) - 1)])
        seg = body.tree_segment
        on = (tree.side[seg] == dominant) & (tree.trunk[seg] == trunk) & (tree.generation[seg] <= 3)
        occupancy = np.zeros(maps.lung.shape, np.float32)
        np.add.at(occupancy, tuple(_coarse_index(co, body.tree_points[on], maps.lung.shape).T), 1.0)
        territory = _blur3(occupancy, 4)
        territory *= _F32(1.0 / max(float(territory.max()), 1e-6))
        grow = (severity - 0.6) / 0.4
        np.maximum(level, (territory - _F32(1.0 - 0.85 * math.sqrt(grow))) * _F32(12.0), out=level)
    level += _F32(0.2) * margin
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


def _effusion_region(
    effusion: tuple[tuple[bool, bool], float], lung: np.ndarray, body: _Body, grid: _Grid
) -> np.ndarray:
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
    dist *= _F32(step)
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
        dependent = np.clip((Y - _F32(back - 2.5 * depth)) * _F32(1.0 / (2.5 * depth)), 0.0, 1.0)
        height = np.clip((_F32(top) - Z) * _F32(1.0 / 40.0), 0.0, 1.0)
        fluid |= in_side & (dist <= _F32(depth) * dependent * height)
    return fluid


def _coarse_index(co: _Coarse, points: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest coarse voxel (n, 3) of points (n, 3) in (z, y, x) mm."""
    first = np.array([co.z[0], co.y[0], co.x[0]])
    step = np.array([co.z[1] - co.z[0], co.y[1] - co.y[0], co.x[1] - co.x[0]])
    idx = np.rint((points - first) / step).astype(np.intp)
    return np.clip(idx, 0, np.array(shape) - 1)


# --------------------------------------------------------------------------- validation


def _check_label_severity(label: str, severity: float) -> float:
    if label not in XRAY_LABELS:
        raise ValueError(f"Unknown label {label!r}; expected one of {list(XRAY_LABELS)}.")
    try:
        value = float(severity)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Severity must be a number in [0, 1], got {severity!r}.") from e
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"Severity must be in [0, 1], got {severity!r}.")
    return value


def _check_count(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
    return int(value)


def _check_shape(shape: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        dims = tuple(shape)
    except TypeError as e:
        raise ValueError(f"Shape must be three integers (z, y, x), got {shape!r}.") from e
    if len(dims) != 3 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) for n in dims):
        raise ValueError(f"Shape must be three integers (z, y, x), got {shape!r}.")
    if not all(lo <= n <= hi for n, lo, hi in zip(dims, _MIN_SHAPE, _MAX_SHAPE, strict=True)):
        raise ValueError(f"Shape must lie between {_MIN_SHAPE} and {_MAX_SHAPE} voxels, got {dims}.")
    return int(dims[0]), int(dims[1]), int(dims[2])


# --------------------------------------------------------------------------- generator


def generate_ct(
    label: str, severity: float, seed: int, shape: tuple[int, int, int] = CT_SHAPE, session: int = 0
) -> CtPhantom:
    """Generate one deterministic chest CT phantom in Hounsfield units.

    Parameters
    ----------
    label : str
        One of :data:`core.types.XRAY_LABELS`: ``"Normal"`` (clear lungs), ``"COVID-19"``
        (bilateral, peripheral, posterior and lower-zone multifocal ground glass, with
        consolidation in the cores above severity 0.5 and crazy paving in some patients from
        severity 0.35) or ``"Viral pneumonia"`` (COVID-negative: central peribronchovascular
        opacities and tree-in-bud nodules, often unilateral or asymmetric, upper or mixed
        zones, lobar consolidation above severity 0.6, sometimes an effusion from 0.7).
    severity : float
        Disease severity in [0, 1]; the extent grows with it and the lesions of one seed at a
        higher severity contain those at a lower one. Stored as 0 for ``"Normal"``.
    seed : int
        Non-negative seed of the patient: anatomy, disease pattern and noise.
    shape : tuple of int, default :data:`CT_SHAPE`
        Voxels (z, y, x), between (16, 32, 32) and (128, 512, 512). The field of view stays
        :data:`CT_FIELD_OF_VIEW_MM`, so the spacing is ``CT_FIELD_OF_VIEW_MM / shape``.
    session : int, default 0
        Index of the patient's scan: changes the noise only, so follow-up scans of one
        patient share anatomy and lung mask.

    Returns
    -------
    CtPhantom
        ``hu`` int16 (z, y, x) with the masks and findings of what was drawn.

    Raises
    ------
    ValueError
        For an unknown label, a severity outside [0, 1] or NaN, a negative seed or session, or
        a shape out of range.
    """
    severity = _check_label_severity(label, severity)
    if label == "Normal":
        severity = 0.0
    seed = _check_count("Seed", seed)
    session = _check_count("Session", session)
    shape = _check_shape(shape)

    anatomy_seq, disease_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    session_seq = np.random.SeedSequence(noise_seq.entropy, spawn_key=(*noise_seq.spawn_key, session))
    grid = _make_grid(shape)
    co = _make_coarse(grid)
    anatomy_rng = np.random.default_rng(anatomy_seq)
    anat = _draw_anatomy(anatomy_rng)
    body = _build_body(anatomy_rng, anat, grid, co)
    vol = body.hu

    lesion = np.zeros(shape, bool)
    findings = dict.fromkeys(CT_FINDINGS, 0)
    if label != "Normal" and severity > 0.0:
        rng = np.random.default_rng(disease_seq)
        maps = _lung_maps(body, co, anat)
        if label == "COVID-19":
            plan = _plan_covid(rng, maps, co, severity)
        else:
            plan = _plan_viral(rng, maps, co, body, anat, severity)
        findings = _draw_disease(rng, plan, body, grid, co, maps, severity, lesion)

    # Quantum noise, slightly smoothed in-plane: int8 draws are cheap and, summed over the
    # 3 x 3 kernel, close enough to Gaussian.
    nrng = np.random.default_rng(session_seq)
    sigma = nrng.uniform(10.0, 18.0)
    white = np.frombuffer(nrng.bytes(int(np.prod(shape))), np.int8).reshape(shape).astype(np.float32)
    noise = _F32(2.0) * white
    noise[:, 1:] += white[:, :-1]
    noise[:, :-1] += white[:, 1:]
    white = noise
    noise = _F32(2.0) * white
    noise[:, :, 1:] += white[:, :, :-1]
    noise[:, :, :-1] += white[:, :, 1:]
    # int8 uniform std is 73.9; the [1, 2, 1] x [1, 2, 1] kernel multiplies it by 6.
    noise *= _F32(sigma / (73.9 * 6.0))
    vol += noise
    np.rint(vol, out=vol)
    np.clip(vol, HU_MIN, HU_MAX, out=vol)
    hu = vol.astype(np.int16)

    lung_count = int(body.lung.sum())
    return CtPhantom(
        hu=hu,
        spacing_mm=grid.spacing,
        label=label,
        severity=severity,
        findings=findings,
        lesion_fraction=float(lesion.sum()) / max(lung_count, 1),
        lung_mask=body.lung,
        lesion_mask=lesion,
    )


def _draw_disease(
    rng: np.random.Generator,
    plan: _Plan,
    body: _Body,
    grid: _Grid,
    co: _Coarse,
    maps: _LungMaps,
    severity: float,
    lesion: np.ndarray,
) -> dict[str, int]:
    """Draw the planned disease into ``body.hu``, mark ``lesion`` and return the findings."""
    lbox = body.lung_box
    region = body.hu[lbox]
    lung = body.lung[lbox]
    tex = body.texture
    level = _upsample(plan.level, grid, co, lbox)
    level += _F32(0.12) * tex
    opacity = (level > 0) & lung & ~body.airway[lbox]
    cons = opacity & (level > _F32(plan.consolidation_level))
    ggo_hu = _F32(-680.0) + _F32(300.0 + 60.0 * severity) * np.clip(level * _F32(1.0 / 0.8), 0.0, 1.0)
    ggo_hu += _F32(15.0) * tex
    np.minimum(ggo_hu, _F32(-300.0), out=ggo_hu)
    crazy = np.zeros_like(opacity)
    if plan.crazy_paving:
        # Thickened septa: the zero set of a band-limited field is a net of thin walls.
        net = _upsample(_smooth_field(rng, plan.level.shape, 0), grid, co, lbox)
        crazy = (np.abs(net) < _F32(0.14)) & opacity & ~cons
        ggo_hu = np.where(crazy, np.minimum(ggo_hu + _F32(110.0), _F32(-270.0)), ggo_hu)
    cons_hu = _F32(-70.0) + _F32(80.0) * np.clip((level - _F32(plan.consolidation_level)) * _F32(2.0), 0.0, 1.0)
    cons_hu += _F32(12.0) * tex
    lesion_hu = np.where(cons, cons_hu, ggo_hu)
    np.copyto(region, np.maximum(region, lesion_hu), where=opacity)

    parenchymal = opacity
    if plan.nodules is not None:
        points, volume = plan.nodules
        density = _splat(grid, points, volume, lbox)
        np.minimum(density, _F32(1.0), out=density)
        nodule = (density > _F32(0.2)) & lung & ~body.airway[lbox] & (region < _F32(-40.0))
        region += (density * nodule) * (_F32(-40.0) - region)
        parenchymal = parenchymal | nodule

    fluid = np.zeros_like(opacity)
    if plan.effusion is not None:
        fluid = _effusion_region(plan.effusion, lung, body, grid)
        np.copyto(region, _F32(_HU_FLUID) + _F32(6.0) * tex, where=fluid)

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
