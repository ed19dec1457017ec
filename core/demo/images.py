"""Demo radiographs and CT volumes made on the fly (in memory), for a presentation without
patient data: one image per class, and one phantom patient's follow-up scans."""

from __future__ import annotations

import numpy as np

from core.demo.ct_phantom import generate_ct
from core.demo.xray_phantom import generate_xray
from core.labels import XRAY_LABELS
from core.types import CtVolume


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


#: A demo follow-up: (day since admission, severity) of each scan of one COVID-19 phantom
#: patient, shaped like seed 003's course (high at presentation, a peak near day 8, recovery).
DEMO_FOLLOW_UP: tuple[tuple[int, float], ...] = ((0, 0.3), (4, 0.5), (8, 0.65), (12, 0.3), (16, 0.1))
_FOLLOW_UP_SEED = 2102


def demo_follow_up_cts() -> list[tuple[str, float, CtVolume]]:
    """(name, day, volume) of a demo patient's follow-up CTs (one anatomy, sessions over time)."""
    out = []
    for session, (day, severity) in enumerate(DEMO_FOLLOW_UP):
        ct = generate_ct("COVID-19", severity, _FOLLOW_UP_SEED, session=session)
        volume = CtVolume(
            hu=ct.hu.astype(np.float32),
            spacing_mm=tuple(float(v) for v in ct.spacing_mm),
            series_uid=f"demo-follow-up-{day}",
            description=f"Demo follow-up CT, day {day} (synthetic)",
            window=(-600.0, 1500.0),
            n_files=0,
        )
        out.append((f"demo-ct-day{day}", float(day), volume))
    return out


def demo_follow_up_xrays(size: int = 512) -> list[tuple[str, float, bytes]]:
    """(name, day, PNG bytes) of the same demo patient's follow-up X-rays."""
    return [
        (
            f"demo-xray-day{day}.png",
            float(day),
            generate_xray("COVID-19", severity, seed=_FOLLOW_UP_SEED, size=size, session=session).to_png(),
        )
        for session, (day, severity) in enumerate(DEMO_FOLLOW_UP)
    ]
