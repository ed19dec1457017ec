"""Deterministic phantoms of posteroanterior (PA) chest radiographs for the demo cohort.

A phantom is built as a map of X-ray attenuation (the sum of soft tissue, bone and fluid
thicknesses minus the air of the lungs along each ray), which is then turned into a displayed
brightness: ``1 - exp(-k * attenuation)``, a per-patient window and gamma, and quantum noise.
Brighter means denser (MONOCHROME2): bone, heart and opacities are white, aerated lung is dark.

Geometry is described in normalised coordinates: ``X`` runs from -1 (image left, the patient's
right in a PA view) to +1, ``Y`` from -1 (top) to +1 (bottom); one unit is half the field of
view (:data:`FIELD_OF_VIEW_MM`). Rotation, scale and shift of the patient are applied to the
coordinate grid, so every structure is drawn analytically in the patient's own frame.

Three independent random streams are spawned from the seed: anatomy (and exposure), disease,
and noise. The same seed therefore gives the same patient and the same noise whatever the label
and severity, so a Normal and a COVID-19 phantom of one seed differ only by the disease drawn,
and the density added by disease grows monotonically with severity.

Import from this package; its modules are its parts:

- ``fields``: float32 image helpers (soft steps, blur, resampling, smooth noise);
- ``anatomy``: one patient's anatomy and exposure, and the frame with the lungs' outline;
- ``vessels``: the pulmonary vessel trees;
- ``chest``: the attenuation of the normal chest, structure by structure;
- ``disease``: the opacities and effusions of each label;
- ``generate``: :func:`generate_xray` and :func:`write_xray_dataset`.
"""

from __future__ import annotations

from core.demo.xray_phantom.anatomy import CARDIOMEGALY_PROBABILITY
from core.demo.xray_phantom.disease import CONSOLIDATION_SEVERITY, EFFUSION_MIN_SEVERITY, EFFUSION_PROBABILITY
from core.demo.xray_phantom.generate import (
    DATASET_FOLDERS,
    DATASET_SEVERITY_RANGE,
    FIELD_OF_VIEW_MM,
    FINDINGS,
    XrayPhantom,
    generate_xray,
    write_xray_dataset,
)

__all__ = [
    "CARDIOMEGALY_PROBABILITY",
    "CONSOLIDATION_SEVERITY",
    "DATASET_FOLDERS",
    "DATASET_SEVERITY_RANGE",
    "EFFUSION_MIN_SEVERITY",
    "EFFUSION_PROBABILITY",
    "FIELD_OF_VIEW_MM",
    "FINDINGS",
    "XrayPhantom",
    "generate_xray",
    "write_xray_dataset",
]
