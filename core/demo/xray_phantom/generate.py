"""The X-ray phantom generator (random streams, drawing resolution, exposure and noise) and the
class-folder dataset written from it."""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
from PIL import Image

from core.demo.severity import check_label_severity
from core.demo.xray_phantom.anatomy import Anatomy, draw_anatomy, make_frame
from core.demo.xray_phantom.chest import chest_attenuation
from core.demo.xray_phantom.disease import draw_disease
from core.demo.xray_phantom.fields import F32, resample, smooth_noise
from core.demo.xray_phantom.vessels import draw_vessels
from core.labels import XRAY_LABELS
from core.types import Progress

logger = logging.getLogger(__name__)

#: Finding names in the output order of the cxr-findings model (CheXpert names).
FINDINGS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Atelectasis",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
)

#: Class folder of each label in the Kaggle COVID-19 Radiography Database layout.
DATASET_FOLDERS: MappingProxyType[str, str] = MappingProxyType(
    {"Normal": "NORMAL", "Viral pneumonia": "Viral Pneumonia", "COVID-19": "COVID"}
)

#: Width and height of the square field of view, in millimetres.
FIELD_OF_VIEW_MM: float = 380.0

#: Severity range drawn for diseased cases by :func:`write_xray_dataset`.
DATASET_SEVERITY_RANGE: tuple[float, float] = (0.25, 1.0)

_MIN_SIZE = 64
_MAX_SIZE = 4096
#: Largest size drawn at full resolution; larger phantoms are drawn at about half size.
_MAX_FULL_DRAW = 320


@dataclass(frozen=True, eq=False)
class XrayPhantom:
    """One synthetic PA chest radiograph with the ground truth of what was drawn.

    Attributes
    ----------
    pixels : np.ndarray
        float32 (H, W) in [0, 1], brighter = denser (MONOCHROME2 sense).
    label : str
        One of :data:`core.types.XRAY_LABELS`.
    severity : float
        Disease severity in [0, 1]; always 0 for ``"Normal"``.
    findings : dict[str, int]
        0 or 1 for each name of :data:`FINDINGS`, following what was drawn.
    pixel_spacing_mm : float
        Size of one (square) pixel, in millimetres.
    """

    pixels: np.ndarray
    label: str
    severity: float
    findings: dict[str, int]
    pixel_spacing_mm: float

    def to_uint8(self) -> np.ndarray:
        """The radiograph as 8-bit grayscale (H, W), as the PNGs of the demo datasets store it."""
        return np.rint(self.pixels * 255.0).astype(np.uint8)

    def to_png(self) -> bytes:
        """The radiograph as 8-bit grayscale PNG bytes, in memory."""
        buf = io.BytesIO()
        Image.fromarray(self.to_uint8()).save(buf, format="PNG")
        return buf.getvalue()


def _render(att: np.ndarray, anat: Anatomy, noise: np.ndarray) -> np.ndarray:
    """Attenuation -> displayed brightness in [0, 1] with the patient's exposure and noise."""
    img = np.exp(att * F32(-anat.atten_k))
    np.subtract(F32(1.0), img, out=img)
    img -= F32(anat.window_lo)
    img *= F32(1.0 / (anat.window_hi - anat.window_lo))
    np.clip(img, 0.0, 1.0, out=img)
    if abs(anat.gamma - 1.0) > 1e-3:
        np.power(img, F32(anat.gamma), out=img)
    # Quantum noise: stronger where fewer photons reach the detector (the brighter areas).
    noise *= F32(anat.noise_std) * (F32(0.5) + img)
    img += noise
    return np.clip(img, 0.0, 1.0, out=img)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, got {seed!r}.")
    return int(seed)


def _check_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ValueError(f"Size must be an integer number of pixels, got {size!r}.")
    if not _MIN_SIZE <= size <= _MAX_SIZE:
        raise ValueError(f"Size must be between {_MIN_SIZE} and {_MAX_SIZE} pixels, got {size}.")
    return int(size)


def generate_xray(label: str, severity: float, seed: int, size: int = 512, session: int = 0) -> XrayPhantom:
    """Generate one deterministic PA chest radiograph phantom.

    Parameters
    ----------
    label : str
        One of :data:`core.types.XRAY_LABELS`: ``"Normal"`` (clear lungs), ``"Viral pneumonia"``
        (bilateral perihilar interstitial pattern) or ``"COVID-19"`` (bilateral, peripheral,
        lower-zone ground-glass opacities, with consolidation above severity 0.5).
    severity : float
        Disease severity in [0, 1]; scales the extent and density of the opacities. Ignored
        (stored as 0) for ``"Normal"``.
    seed : int
        Non-negative seed. The patient's anatomy, exposure and noise depend only on the seed,
        so phantoms of one seed with different labels or severities differ only by disease.
    size : int, default 512
        Width and height in pixels.
    session : int, default 0
        Index of the patient's imaging session. It changes only the quantum noise, so the
        follow-up radiographs of one patient (one seed) share anatomy and exposure and differ
        by the disease drawn at their severity and by noise.

    Returns
    -------
    XrayPhantom
        ``pixels`` float32 (size, size) in [0, 1], brighter = denser; findings per
        :data:`FINDINGS`; pixel spacing ``FIELD_OF_VIEW_MM / size`` mm.

    Raises
    ------
    ValueError
        For an unknown label, a severity outside [0, 1], a negative seed or session, or a size
        outside [64, 4096].
    """
    severity = check_label_severity(label, severity)
    if label == "Normal":
        severity = 0.0
    seed = _check_seed(seed)
    size = _check_size(size)
    if isinstance(session, bool) or not isinstance(session, (int, np.integer)) or session < 0:
        raise ValueError(f"Session must be a non-negative integer, got {session!r}.")

    anatomy_seq, disease_seq, noise_seq = np.random.SeedSequence(seed).spawn(3)
    rng = np.random.default_rng(anatomy_seq)
    anat = draw_anatomy(rng)
    # Anatomy and disease are smooth at the scale of a pixel: large images are drawn at a
    # lower resolution and upsampled; quantum noise is always added at full resolution.
    draw = size if size <= _MAX_FULL_DRAW else max(_MAX_FULL_DRAW, size // 2)
    vessels = draw_vessels(rng, anat, draw)
    texture = smooth_noise(rng, 8, 1.0, draw)
    frame = make_frame(anat, draw)
    att = chest_attenuation(frame, anat, vessels, texture, draw)

    disease = draw_disease(np.random.default_rng(disease_seq), frame, anat, vessels, label, severity, draw)
    if disease.attenuation is not None:
        att += disease.attenuation
    if draw != size:
        att = resample(att, size, 0.0)

    if session:
        # A sibling of the session-0 noise stream, so session 0 keeps its historical noise.
        noise_seq = np.random.SeedSequence(seed, spawn_key=(2, int(session)))
    noise = np.random.default_rng(noise_seq).standard_normal((size, size), dtype=np.float32)
    pixels = _render(att, anat, noise)

    findings = dict.fromkeys(FINDINGS, 0)
    diseased = label != "Normal" and severity > 0.0
    findings["Lung Opacity"] = int(diseased)
    findings["Pneumonia"] = int(diseased)
    findings["Consolidation"] = int(disease.consolidation)
    findings["Pleural Effusion"] = int(disease.effusion)
    findings["Cardiomegaly"] = int(anat.cardiothoracic_ratio > 0.5)
    # CheXpert's label hierarchy: an enlarged heart is an enlarged cardiomediastinal silhouette.
    findings["Enlarged Cardiomediastinum"] = findings["Cardiomegaly"]
    return XrayPhantom(
        pixels=pixels,
        label=label,
        severity=severity,
        findings=findings,
        pixel_spacing_mm=FIELD_OF_VIEW_MM / size,
    )


def write_xray_dataset(
    out_dir: str | Path,
    n_per_class: int,
    seed: int = 0,
    size: int = 256,
    *,
    progress: Progress | None = None,
) -> Path:
    """Write a class-folder dataset of phantoms (Kaggle COVID-19 Radiography Database layout).

    Writes ``COVID/``, ``NORMAL/`` and ``Viral Pneumonia/`` folders of 8-bit grayscale PNGs
    named like ``COVID-0001.png``, and ``manifest.csv`` with the columns
    ``path,label,patient_id,severity`` (path relative to ``out_dir``, one image per patient,
    patient ids ``demo-xr-0001``, ...). Diseased severities are drawn uniformly from
    :data:`DATASET_SEVERITY_RANGE`.

    Parameters
    ----------
    out_dir : str or Path
        Folder to write into; created if missing. Existing files of the same names are replaced.
    n_per_class : int
        Number of images per class (>= 1).
    seed : int, default 0
        Seed of the whole dataset; the same arguments give bit-identical files.
    size : int, default 256
        Width and height of each image, in pixels.
    progress : callable, optional
        Called as ``progress(done, total)`` after each image, e.g. to drive a progress bar.

    Returns
    -------
    Path
        ``out_dir``.

    Raises
    ------
    ValueError
        For a count below 1, a negative seed or a size outside [64, 4096]; nothing is written.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)):
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}.")
    if n_per_class < 1:
        raise ValueError(f"n_per_class must be a positive integer, got {n_per_class!r}.")
    seed = _check_seed(seed)
    size = _check_size(size)
    out = Path(out_dir)
    total = n_per_class * len(XRAY_LABELS)
    rng = np.random.default_rng(seed)
    low, high = DATASET_SEVERITY_RANGE
    rows: list[tuple[str, str, str, str]] = []
    patient = 0
    for label in XRAY_LABELS:
        folder = DATASET_FOLDERS[label]
        (out / folder).mkdir(parents=True, exist_ok=True)
        image_seeds = rng.integers(0, 2**31 - 1, size=n_per_class)
        severities = rng.uniform(low, high, size=n_per_class)
        for i in range(n_per_class):
            severity = 0.0 if label == "Normal" else round(float(severities[i]), 3)
            phantom = generate_xray(label, severity, int(image_seeds[i]), size=size)
            name = f"{folder}-{i + 1:04d}.png"
            Image.fromarray(phantom.to_uint8()).save(out / folder / name)
            patient += 1
            rows.append((f"{folder}/{name}", label, f"demo-xr-{patient:04d}", f"{severity:.3f}"))
            if progress is not None:
                progress(patient, total)
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("path", "label", "patient_id", "severity"))
        writer.writerows(rows)
    # What the trainers read to call a model trained on these "demo" (core.training.xray.data_domain).
    marker = {"synthetic": True, "generator": "core.demo.xray_phantom", "seed": int(seed), "size": int(size)}
    (out / "dataset.json").write_text(json.dumps(marker) + "\n", encoding="utf-8")
    logger.info("Wrote %d X-ray phantoms to %s", len(rows), out)
    return out
