"""Patients as the survival and prognosis analyses see them: outcome, stay, age, sex, and
their X-rays and CTs in time order, each image read only when needed.

Two sources give the same records, so training, evaluation and the page share one path:

- :func:`demo_patients`: a simulated cohort (:mod:`core.demo.cohort`), phantoms drawn in
  memory. Training uses seed 1 by default, so the app's library (seed 0) stays unseen;
- :func:`library_patients`: a case library (anything ``python -m core library import`` or the
  demo build put there: the Cohen layout, class folders, a CSV manifest).

The endpoints, in days:

- survival (seed 000): time from admission to death; discharged alive is censored at
  discharge, still in hospital at the data freeze is censored then;
- prognosis (seed 003): time from a scan to discharge; a remaining stay of at least
  :data:`~core.models.prognosis.HIGH_RISK_DAYS` is high risk. A death ends the stay without
  a discharge (censored); a patient still in hospital is censored at the freeze, and is
  known to be high risk if the censored remaining stay already reaches the cut-off.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.demo.build import XRAY_SIZE
from core.demo.cohort import simulate_cohort
from core.demo.ct_phantom import generate_ct
from core.demo.xray_phantom import generate_xray
from core.errors import InvalidInputError
from core.library.store import is_database_url, library_exists, open_library
from core.models.prognosis import HIGH_RISK_DAYS
from core.search.embeddings import read_stored_xray
from core.trajectory.scores import read_stored_ct

#: The cohort seed of demo training data (the app's library is drawn with seed 0).
DEMO_TRAINING_SEED = 1

XrayLoader = Callable[[], np.ndarray]  # -> (H, W) float image in [0, 1], at the file's window
CtLoader = Callable[[], np.ndarray]  # -> (z, y, x) volume in HU


@dataclass(frozen=True)
class Scan:
    """One image of a patient: its day since admission, where it is, and how to read it."""

    day: float
    modality: str  # "X-ray" or "CT"
    load: Callable[[], np.ndarray]
    ref: str  # "demo-0001#2" or "image:123": for messages, never read as data
    image_id: int | None = None  # the library's image id
    study_id: int | None = None  # the library's study id (scores and predictions are stored by it)


@dataclass(frozen=True)
class OutcomePatient:
    """A patient with the facts the survival and prognosis analyses need."""

    patient_id: str
    label: str | None
    age: float | None
    sex: str | None
    outcome: str | None  # "discharged", "died", "in hospital" or None (unknown)
    length_of_stay_days: float | None
    scans: tuple[Scan, ...]  # in time order (day, then X-ray before CT on the same day)

    def xrays(self) -> list[Scan]:
        return [s for s in self.scans if s.modality == "X-ray"]

    def cts(self) -> list[Scan]:
        return [s for s in self.scans if s.modality == "CT"]

    # --- survival: time from admission to death

    @property
    def survival_known(self) -> bool:
        return self.outcome in ("discharged", "died")

    @property
    def survived(self) -> bool | None:
        return None if not self.survival_known else self.outcome == "discharged"

    def death_endpoint(self) -> tuple[float, bool] | None:
        """(days, died) or None when the stay's length is unknown."""
        if self.length_of_stay_days is None or self.outcome is None:
            return None
        return float(self.length_of_stay_days), self.outcome == "died"

    # --- prognosis: time from a scan to discharge

    def discharge_endpoint(self, day: float) -> tuple[float, bool] | None:
        """(days from ``day`` to the end of the stay, discharged) or None when unknown."""
        if self.length_of_stay_days is None or self.outcome is None:
            return None
        return max(float(self.length_of_stay_days) - float(day), 0.0), self.outcome == "discharged"

    def high_risk(self, day: float) -> bool | None:
        """Remaining stay from ``day`` >= 7 days; None when the stay's end does not tell."""
        end = self.discharge_endpoint(day)
        if end is None:
            return None
        remaining, discharged = end
        if discharged:
            return remaining >= HIGH_RISK_DAYS
        if self.outcome == "in hospital" and remaining >= HIGH_RISK_DAYS:
            return True  # censored, but already past the cut-off
        return None


def _ordered(scans: Iterable[Scan]) -> tuple[Scan, ...]:
    return tuple(sorted(scans, key=lambda s: (s.day, s.modality != "X-ray")))


def demo_patient_id(cohort_id: str, seed: int) -> str:
    """A simulated patient's id, unique across cohort seeds ("demo-0001" of seed 1 is
    "demo-0001@seed1"): a model card's held-out ids must not match another cohort's patients."""
    return f"{cohort_id}@seed{seed}"


def demo_patients(n_patients: int = 1000, seed: int = DEMO_TRAINING_SEED) -> list[OutcomePatient]:
    """The patients of a simulated cohort, with phantom loaders (nothing drawn yet)."""

    def xray(label: str, severity: float, anatomy: int, session: int) -> XrayLoader:
        return lambda: generate_xray(label, severity, anatomy, size=XRAY_SIZE, session=session).pixels

    def ct(label: str, severity: float, anatomy: int, session: int) -> CtLoader:
        return lambda: generate_ct(label, severity, anatomy, session=session).hu.astype(np.float32)

    patients = []
    for p in simulate_cohort(n_patients, seed):
        scans = [
            Scan(
                float(s.day),
                s.modality,
                (xray if s.modality == "X-ray" else ct)(p.label, s.severity, p.seed, s.index),
                f"{p.patient_id}#{s.index}",
            )
            for s in p.scans
        ]
        patients.append(
            OutcomePatient(
                demo_patient_id(p.patient_id, seed),
                p.label,
                float(p.age),
                p.sex,
                p.outcome,
                float(p.length_of_stay_days),
                _ordered(scans),
            )
        )
    return patients


def library_patients(library, pseudonyms: Iterable[str] | None = None) -> list[OutcomePatient]:  # noqa: ANN001 - CaseLibrary
    """The library's patients (or the named ones) with loaders of their stored images.

    Studies without a day (no offset) cannot be placed in a series and are left out.
    """

    def xray(image_id: int) -> XrayLoader:
        return lambda: read_stored_xray(library, image_id).windowed()

    def ct(image_id: int) -> CtLoader:
        return lambda: np.asarray(read_stored_ct(library, image_id).hu, dtype=np.float32)

    names = [s.pseudonym for s in library.patients()] if pseudonyms is None else list(pseudonyms)
    out = []
    for name in names:
        patient = library.patient(name)
        scans = []
        for study in patient.studies:
            if study.day is None:
                continue
            for image in study.images:
                if image.kind == "xray":
                    scans.append(
                        Scan(float(study.day), "X-ray", xray(image.id), f"image:{image.id}", image.id, study.id)
                    )
                elif image.kind == "ct-series":
                    scans.append(Scan(float(study.day), "CT", ct(image.id), f"image:{image.id}", image.id, study.id))
        s = patient.summary
        out.append(
            OutcomePatient(s.pseudonym, s.label, s.age_years, s.sex, s.outcome, s.length_of_stay_days, _ordered(scans))
        )
    return out


def load_outcome_source(src: str) -> tuple[list[OutcomePatient], str]:
    """Patients of ``--data``: ``demo`` / ``demo:N`` (a simulated cohort of N patients, seed
    :data:`DEMO_TRAINING_SEED`) or the folder of a case library. Returns them and a description."""
    if src == "demo" or src.startswith("demo:"):
        n = 1000
        if src.startswith("demo:"):
            try:
                n = int(src.split(":", 1)[1])
            except ValueError:
                raise InvalidInputError(f"--data {src}: the number after 'demo:' must be an integer.") from None
        try:
            return demo_patients(n), f"demo cohort: {n} simulated patients, seed {DEMO_TRAINING_SEED}"
        except ValueError as e:
            raise InvalidInputError(f"--data {src}: {e}") from None
    if not library_exists(src):
        raise InvalidInputError(
            f"{src} is not a case library. Import a dataset first with "
            "'python -m core library import', or use --data demo."
        )
    library = open_library(src, create=False)
    name = library.location if is_database_url(src) else Path(src).resolve().name
    return library_patients(library), f"case library {name}"


def clinical_design(patients: list[OutcomePatient]) -> np.ndarray:
    """Age (years / 10, median-imputed) and sex (1 = male, 0.5 when unknown) per patient."""
    ages = np.array([np.nan if p.age is None else p.age for p in patients], dtype=float)
    fill = float(np.nanmedian(ages)) if np.isfinite(ages).any() else 60.0
    ages = np.where(np.isfinite(ages), ages, fill) / 10.0
    sex = np.array([1.0 if p.sex == "M" else 0.0 if p.sex == "F" else 0.5 for p in patients])
    return np.column_stack([ages, sex])
