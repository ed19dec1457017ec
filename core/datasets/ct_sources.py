"""Training data for the CT models: which scans, of which patient, with which label.

``--data`` for ``train-ct3d`` and ``train-ct-slice`` is one of:

- ``demo`` or ``demo:N``: the demo cohort's CT phantoms, drawn in memory (N patients,
  default :data:`~core.demo.cohort.DEFAULT_PATIENTS`, seed 0), with the simulator's truth of
  which slices show lesions. The cohort is of admitted patients and holds few normal chests,
  so the demo source adds one normal-control scan for every third cohort patient
  (``control-NNN``, drawn by the same phantom generator with their own seeds): without them
  the slice model (COVID-19 vs Normal) would see a handful of normal patients;
- a folder with a ``metadata.csv`` in the covid-chestxray-dataset layout (what
  ``python -m core demo build`` writes): its CT rows, whose ``filename`` names a folder of
  DICOM slices;
- a CSV manifest ``path,label,patient_id`` where ``path`` (relative to the CSV) is a CT
  series: a folder of DICOM slices, a zip of them or a NIfTI file.

Labels are our three (``COVID-19``, ``Viral pneumonia``, ``Normal``) or spellings of them;
COVID3D learns COVID-19 against everything else (seed 003: COVID+ vs COVID- pneumonia),
the slice model COVID-19 against Normal (seed 002).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.demo.cohort import DEFAULT_PATIENTS, simulate_cohort
from core.demo.ct_phantom import generate_ct
from core.errors import DashboardError, InsufficientDataError, InvalidInputError
from core.io.ct_input import read_ct_path
from core.labels import canonical_label, cohen_label

#: Where the truth is known, a COVID-19 slice is a positive when lesions cover at least this
#: fraction of its lung: the infection is visible, as in seed 002's labelled slices.
VISIBLE_LESION_FRACTION = 0.05


@dataclass(frozen=True)
class CtScan:
    """One CT scan to train on. ``load()`` returns (hu (z, y, x), lesion_fraction (z,) or None):
    where the truth is known (the demo phantoms), the fraction of each slice's lung drawn as
    lesion, NaN for a slice without lung."""

    patient_id: str
    label: str
    name: str
    load: Callable[[], tuple[np.ndarray, np.ndarray | None]]


def _demo_scans(n_patients: int, seed: int) -> list[CtScan]:
    def loader(label: str, severity: float, patient_seed: int, session: int):
        def load() -> tuple[np.ndarray, np.ndarray | None]:
            ct = generate_ct(label, severity, patient_seed, session=session)
            lung = ct.lung_mask.sum(axis=(1, 2)).astype(np.float32)
            lesion = ct.lesion_mask.sum(axis=(1, 2)).astype(np.float32)
            with np.errstate(invalid="ignore", divide="ignore"):
                fraction = np.where(lung > 0, lesion / lung, np.nan)
            return ct.hu.astype(np.float32), fraction

        return load

    scans = []
    for i in range(max(4, n_patients // 3)):
        pid = f"control-{i + 1:03d}"
        scans.append(CtScan(pid, "Normal", f"{pid}-00", loader("Normal", 0.0, 1_000_000 + 7919 * seed + i, 0)))
    for p in simulate_cohort(n_patients, seed):
        for s in p.scans:
            if s.modality == "CT":
                scans.append(
                    CtScan(
                        p.patient_id,
                        p.label,
                        f"{p.patient_id}-{s.index:02d}",
                        loader(p.label, s.severity, p.seed, s.index),
                    )
                )
    return scans


def _series_loader(path: Path) -> Callable[[], tuple[np.ndarray, np.ndarray | None]]:
    def load() -> tuple[np.ndarray, np.ndarray | None]:
        return read_ct_path(path).hu, None

    return load


def _cohen_scans(root: Path) -> list[CtScan]:
    scans = []
    with (root / "metadata.csv").open(newline="", encoding="utf-8-sig") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            if (row.get("modality") or "").strip().upper() != "CT":
                continue
            label = cohen_label(row.get("finding") or "")
            pid = (row.get("patientid") or "").strip()
            if label is None or not pid:
                continue
            path = root / ((row.get("folder") or "images").strip() or "images") / (row.get("filename") or "").strip()
            if not path.exists():
                raise InvalidInputError(f"metadata.csv, line {line}: the CT series {path.name} is missing.")
            scans.append(CtScan(pid, label, path.name, _series_loader(path)))
    return scans


def _manifest_scans(path: Path) -> list[CtScan]:
    scans = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        missing = [c for c in ("path", "label", "patient_id") if c not in cols]
        if missing:
            raise InvalidInputError(f"{path.name} lacks the column(s) {', '.join(missing)}.")
        for line, row in enumerate(reader, start=2):
            rel = (row[cols["path"]] or "").strip()
            pid = (row[cols["patient_id"]] or "").strip()
            if not rel or not pid:
                raise InvalidInputError(f"{path.name}, line {line}: path and patient_id must not be empty.")
            file = (path.parent / rel).resolve()
            if not file.exists():
                raise InvalidInputError(f"{path.name}, line {line}: {rel} does not exist.")
            scans.append(CtScan(pid, canonical_label(row[cols["label"]]), rel, _series_loader(file)))
    return scans


def describe_ct_source(scans: list[CtScan], src: str | Path, seed: int = 0) -> str:
    """A one-line description of the training data, for the model card, when the user gave none."""
    patients = {s.patient_id for s in scans}
    controls = {p for p in patients if p.startswith("control-")}
    if str(src) == "demo" or str(src).startswith("demo:"):
        return (
            f"Synthetic CT phantoms drawn in memory by core.demo (seed {seed}): all {len(scans) - len(controls)} CT "
            f"scans of the {len(patients) - len(controls)} demo-cohort patients who have one, plus "
            f"{len(controls)} normal-control phantoms"
        )
    return f"{len(scans)} CT scans of {len(patients)} patients from {src}"


def load_ct_source(src: str | Path, seed: int = 0) -> list[CtScan]:
    """The CT scans of ``src`` (see the module docstring), not yet read."""
    text = str(src)
    if text == "demo" or text.startswith("demo:"):
        try:
            n = int(text.split(":", 1)[1]) if ":" in text else DEFAULT_PATIENTS
        except ValueError:
            raise InvalidInputError(f"'{text}': write demo or demo:N with N a number of patients.") from None
        if n < 4:
            raise InvalidInputError("The demo cohort for training needs at least 4 patients.")
        scans = _demo_scans(n, seed)
    else:
        path = Path(src)
        if path.is_dir() and (path / "metadata.csv").is_file():
            scans = _cohen_scans(path)
        elif path.is_file() and path.suffix.lower() == ".csv":
            scans = _manifest_scans(path)
        else:
            raise InvalidInputError(
                f"{src} is not 'demo', a folder with metadata.csv, or a CSV manifest (path,label,patient_id)."
            )
    if not scans:
        raise InsufficientDataError(f"No labelled CT scans were found in {src}.")
    return scans


def read_scans(scans: list[CtScan], progress: bool = True) -> Iterator[tuple[CtScan, np.ndarray, np.ndarray | None]]:
    """Read each scan, skipping (and counting in the log) those that cannot be read."""
    from tqdm import tqdm

    log = logging.getLogger(__name__)
    for scan in tqdm(scans, desc="reading CT scans", unit="scan", disable=not progress):
        try:
            hu, lesions = scan.load()
        except (DashboardError, OSError) as e:
            log.warning("skipping a CT scan that cannot be read: %s", e)
            continue
        yield scan, hu, lesions
