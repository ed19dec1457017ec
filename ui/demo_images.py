"""Demo radiographs made on the fly (in memory), for a presentation without patient data."""

from __future__ import annotations

from core.demo.xray_phantom import generate_xray
from core.types import XRAY_LABELS


def demo_xrays(size: int = 512) -> list[tuple[str, bytes]]:
    """One phantom per class as (file name, PNG bytes), from fixed seeds."""
    return [
        (
            f"demo-{label.lower().replace(' ', '-')}.png",
            generate_xray(label, 0.0 if label == "Normal" else 0.7, seed=1000 + i, size=size).to_png(),
        )
        for i, label in enumerate(XRAY_LABELS)
    ]
