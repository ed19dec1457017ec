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

Import from this package; its modules are its parts, by anatomy:

- ``grid``: the voxel and coarse grids, resampling, smoothing, erosion, splatting;
- ``shapes``: tubes and ellipsoids as signed distances, and how they are painted;
- ``anatomy``: one patient's anatomy as numbers, and the tissues' HU;
- ``mediastinum``, ``bones``, ``vessels`` (and bronchi): the structures;
- ``body``: the normal chest volume, painted from all of the above;
- ``disease``: lesions planned and drawn, and the findings;
- ``generate``: :func:`generate_ct`, the random streams and the quantum noise.
"""

from __future__ import annotations

from core.demo.ct_phantom.disease import (
    CONSOLIDATION_SEVERITY,
    CRAZY_PAVING_PROBABILITY,
    CRAZY_PAVING_SEVERITY,
    CT_FINDINGS,
    EFFUSION_PROBABILITY,
    EFFUSION_SEVERITY,
    PERIPHERAL_DISTANCE_MM,
    PERIPHERAL_MIN_FRACTION,
)
from core.demo.ct_phantom.generate import HU_MAX, HU_MIN, CtPhantom, generate_ct
from core.demo.ct_phantom.grid import CT_FIELD_OF_VIEW_MM, CT_SHAPE, CT_SPACING_MM

__all__ = [
    "CONSOLIDATION_SEVERITY",
    "CRAZY_PAVING_PROBABILITY",
    "CRAZY_PAVING_SEVERITY",
    "CT_FIELD_OF_VIEW_MM",
    "CT_FINDINGS",
    "CT_SHAPE",
    "CT_SPACING_MM",
    "EFFUSION_PROBABILITY",
    "EFFUSION_SEVERITY",
    "HU_MAX",
    "HU_MIN",
    "PERIPHERAL_DISTANCE_MM",
    "PERIPHERAL_MIN_FRACTION",
    "CtPhantom",
    "generate_ct",
]
