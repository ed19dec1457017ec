"""Demo radiographs made on the fly (in memory), for a presentation without patient data."""

from __future__ import annotations

import numpy as np

from core.demo.xray_phantom import generate_xray
from core.types import XRAY_LABELS, CtVolume


def demo_xrays(size: int = 512) -> list[tuple[str, bytes]]:
    """One phantom per class as (file name, PNG bytes), from fixed seeds."""
    return [
        (
            f"demo-{label.lower().replace(' ', '-')}.png",
            generate_xray(label, 0.0 if label == "Normal" else 0.7, seed=1000 + i, size=size).to_png(),
        )
        for i, label in enumerate(XRAY_LABELS)
    ]


#: The demo CT phantoms offered on the CT page: label -> (severity, seed).
DEMO_CTS: dict[str, tuple[float, int]] = {
    "COVID-19": (0.8, 2001),
    "Viral pneumonia": (0.7, 2002),
    "Normal": (0.0, 2003),
}


def demo_ct(label: str) -> CtVolume:
    """A demo CT phantom of ``label`` as a volume, as if read from its DICOM series."""
    from core.demo.ct_phantom import generate_ct

    severity, seed = DEMO_CTS[label]
    ct = generate_ct(label, severity, seed)
    return CtVolume(
        hu=ct.hu.astype(np.float32),
        spacing_mm=tuple(float(v) for v in ct.spacing_mm),
        series_uid=f"demo-{label.lower().replace(' ', '-')}",
        description=f"Demo CT phantom ({label}, synthetic)",
        window=(-600.0, 1500.0),
        n_files=0,
    )
