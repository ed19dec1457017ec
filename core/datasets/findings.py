"""The findings model's data (seed 004): a CheXpert-style CSV, or the demo cohort's X-rays.

- :func:`csv_samples`: a ``Path`` (or ``path``) column and one column per finding with 1
  (present), 0 (absent), -1 (uncertain) or blank (not mentioned); uncertain and blank become 0
  ("U-zeros", :func:`u_zeros`). Patients: a ``patient_id`` column, else the ``patientNNNNN``
  part of the path (CheXpert's layout), else each file is its own patient;
- :func:`demo_xrays` / :func:`draw_demo_xray`: the X-rays of a simulated cohort (seed
  :data:`DEMO_COHORT_SEED`, not the app library's) plus normal-control phantoms, with the
  finding labels that follow from what each phantom shows.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.datasets.sources import Sample
from core.demo.build import XRAY_SIZE
from core.demo.cohort import simulate_cohort
from core.demo.xray_phantom import FINDINGS, generate_xray
from core.errors import InsufficientDataError, InvalidInputError

DEMO_COHORT_SEED = 1  # the app's library is drawn with seed 0


#: The admitted cohort holds few normal chests (about 5% of its X-rays); the demo data add one
#: normal-control phantom per this many patients, so the model also sees clear lungs.
PATIENTS_PER_NORMAL_CONTROL = 2


_PATIENT_IN_PATH = re.compile(r"(patient\d+)", re.IGNORECASE)


def u_zeros(raw: str | None) -> int:
    """A CheXpert label cell as 0 / 1: 1 only for a positive mention (1, 1.0); uncertain (-1),
    negative and blank are 0. Anything else is refused."""
    text = (raw or "").strip()
    if text == "":
        return 0
    try:
        value = float(text)
    except ValueError as e:
        raise InvalidInputError(f"'{text}' is not a finding label (1, 0, -1 or blank).") from e
    if value not in (1.0, 0.0, -1.0):
        raise InvalidInputError(f"'{text}' is not a finding label (1, 0, -1 or blank).")
    return int(value == 1.0)


def _resolve(csv_path: Path, rel: str) -> Path:
    for base in (csv_path.parent, csv_path.parent.parent):
        candidate = (base / rel).resolve()
        if candidate.is_file():
            return candidate
    return (csv_path.parent / rel).resolve()


def csv_samples(path: str | Path) -> tuple[list[Sample], np.ndarray, list[str]]:
    """Images, their (n, findings) 0/1 targets and plain-words lines about skipped rows."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in reader.fieldnames or []]
            rows = [{(k or "").strip(): (v or "") for k, v in r.items()} for r in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InvalidInputError(f"Could not read {path.name} as a CSV file: {e}.") from e
    path_col = next((c for c in ("Path", "path") if c in fields), None)
    if path_col is None:
        raise InvalidInputError(f"{path.name} has no Path column.")
    present = [f for f in FINDINGS if f in fields]
    if not present:
        raise InvalidInputError(f"{path.name} has none of the finding columns ({', '.join(FINDINGS)}).")
    samples, targets, problems = [], [], []
    for n, r in enumerate(rows, start=2):
        rel = r[path_col].strip()
        file = _resolve(path, rel)
        if not rel or not file.is_file():
            problems.append(f"row {n}: no image at {rel!r}")
            continue
        try:
            target = [u_zeros(r.get(f)) if f in present else 0 for f in FINDINGS]
        except InvalidInputError as e:
            problems.append(f"row {n}: {e}")
            continue
        pid = r.get("patient_id", "").strip()
        if not pid:
            m = _PATIENT_IN_PATH.search(rel)
            pid = m.group(1) if m else file.stem
        samples.append(Sample(file, "finding" if any(target) else "no finding", pid))
        targets.append(target)
    if not samples:
        raise InsufficientDataError(f"None of the rows of {path.name} names a readable image.")
    return samples, np.asarray(targets, dtype=np.float32), problems


@dataclass(frozen=True)
class DemoXray:
    """One X-ray of the findings trainer's demo data, not yet drawn."""

    sample: Sample
    severity: float
    anatomy: int  # the phantom's anatomy seed
    session: int


def demo_xrays(n_patients: int, seed: int) -> list[DemoXray]:
    """The X-rays of a simulated cohort and its normal controls, in training order, undrawn."""
    cohort = simulate_cohort(n_patients, seed)
    scans = [
        (p.patient_id, p.label, s.severity, p.seed, s.index)
        for p in cohort.patients
        for s in p.scans
        if s.modality == "X-ray"
    ]
    # Normal controls: their own patients, anatomy seeds apart from the cohort's.
    scans += [
        (f"control-{i + 1:04d}", "Normal", 0.0, 900_000 + 1000 * seed + i, 0)
        for i in range(n_patients // PATIENTS_PER_NORMAL_CONTROL)
    ]
    return [
        DemoXray(Sample(Path(f"demo/{pid}/scan{session}.png"), label, pid), severity, anatomy, session)
        for pid, label, severity, anatomy, session in scans
    ]


def draw_demo_xray(xray: DemoXray) -> tuple[np.ndarray, list[int]]:
    """The phantom's pixels in [0, 1] and its 0/1 finding labels in :data:`FINDINGS` order."""
    phantom = generate_xray(xray.sample.label, xray.severity, xray.anatomy, size=XRAY_SIZE, session=xray.session)
    return phantom.pixels, [int(phantom.findings[f]) for f in FINDINGS]
