"""The CT phantom generator: checks, random streams, anatomy, disease, then quantum noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.demo.ct_phantom.anatomy import draw_anatomy
from core.demo.ct_phantom.body import build_body
from core.demo.ct_phantom.disease import CT_FINDINGS, draw_disease
from core.demo.ct_phantom.grid import CT_SHAPE, F32, make_coarse, make_grid
from core.demo.severity import check_label_severity

#: Range of the stored Hounsfield units (12-bit CT with the usual -1024 offset).
HU_MIN: int = -1024
HU_MAX: int = 3071

_MIN_SHAPE = (16, 32, 32)
_MAX_SHAPE = (128, 512, 512)


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
    severity = check_label_severity(label, severity)
    if label == "Normal":
        severity = 0.0
    seed = _check_count("Seed", seed)
    session = _check_count("Session", session)
    shape = _check_shape(shape)

    anatomy_seq, disease_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    session_seq = np.random.SeedSequence(noise_seq.entropy, spawn_key=(*noise_seq.spawn_key, session))
    grid = make_grid(shape)
    co = make_coarse(grid)
    anatomy_rng = np.random.default_rng(anatomy_seq)
    anat = draw_anatomy(anatomy_rng)
    body = build_body(anatomy_rng, anat, grid, co)
    vol = body.hu

    lesion = np.zeros(shape, bool)
    findings = dict.fromkeys(CT_FINDINGS, 0)
    if label != "Normal" and severity > 0.0:
        findings = draw_disease(np.random.default_rng(disease_seq), label, severity, anat, body, grid, co, lesion)

    # Quantum noise, slightly smoothed in-plane: int8 draws are cheap and, summed over the
    # 3 x 3 kernel, close enough to Gaussian.
    nrng = np.random.default_rng(session_seq)
    sigma = nrng.uniform(10.0, 18.0)
    white = np.frombuffer(nrng.bytes(int(np.prod(shape))), np.int8).reshape(shape).astype(np.float32)
    noise = F32(2.0) * white
    noise[:, 1:] += white[:, :-1]
    noise[:, :-1] += white[:, 1:]
    white = noise
    noise = F32(2.0) * white
    noise[:, :, 1:] += white[:, :, :-1]
    noise[:, :, :-1] += white[:, :, 1:]
    # int8 uniform std is 73.9; the [1, 2, 1] x [1, 2, 1] kernel multiplies it by 6.
    noise *= F32(sigma / (73.9 * 6.0))
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
