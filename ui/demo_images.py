"""Demo radiographs made on the fly (in memory), for a presentation without patient data."""

from __future__ import annotations

import io

import numpy as np

from core.demo.xray_phantom import generate_xray
from core.types import XRAY_LABELS


def demo_xrays(size: int = 512) -> list[tuple[str, bytes]]:
    """One phantom per class as (file name, PNG bytes), from fixed seeds."""
    from PIL import Image

    files = []
    for i, label in enumerate(XRAY_LABELS):
        phantom = generate_xray(label, 0.0 if label == "Normal" else 0.7, seed=1000 + i, size=size)
        buf = io.BytesIO()
        Image.fromarray(np.round(phantom.pixels * 255).astype(np.uint8)).save(buf, format="PNG")
        files.append((f"demo-{label.lower().replace(' ', '-')}.png", buf.getvalue()))
    return files
