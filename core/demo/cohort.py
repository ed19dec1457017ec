"""A seeded simulator of a hospital cohort: patients, their disease course, scans and outcomes.

Nothing here draws an image: the simulator decides who the patients are, what their latent
severity is on every day, when they are imaged and how their stay ends. :mod:`core.demo.build`
turns the plan into phantoms, notes and files. The truth behind every patient is kept on the
returned objects so that tests can check that the analyses recover it.

The severity course follows seed 003's description of COVID3D's s(t): already high at
presentation, a peak about a week to ten days after the first scan (10-15 days after symptom
onset), then a taper to almost nothing around discharge. With ``tau`` the days since admission
(the first scan is taken on the day of admission), ``P`` the peak severity, ``tau_p`` the day
of the peak, ``r0`` the fraction of the peak present at admission and ``h`` the half-width of
the recovery:

- rising, ``0 <= tau <= tau_p``: ``P * (r0 + (1 - r0) * sin^2(pi/2 * tau / tau_p))``;
- recovering, ``tau > tau_p``: ``P * 0.5 ** ((tau - tau_p) / h) ** 2``;
- patients who die do not recover: severity climbs from ``P`` toward 1 until death.

Outcomes follow from the course, so prognosis models have something true to find:

- discharge when severity has fallen below :data:`DISCHARGE_SEVERITY` after the peak, plus
  0-2 days of administrative delay; the recovery half-width ``h`` grows a little with age,
  so age weakly lengthens the stay;
- death with probability ``sigmoid(-6.2 + 5.5 P + 0.05 (age - 60))`` for COVID-19 (a little
  lower for other viral pneumonia), a few days after the peak;
- ICU when the peak exceeds about 0.75, intubation for most ICU patients who die and some who
  do not;
- censoring: admissions are spread over :data:`ADMISSION_WINDOW_DAYS` calendar days and the
  data are frozen on :data:`DATA_FREEZE_DAY`; a patient still in hospital then is censored,
  and scans after it do not exist.

Normal patients (admitted for something else, clear lungs) stay 1-4 days with 1-2 X-rays.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

#: Share of each diagnosis in the cohort.
LABEL_SHARES: MappingProxyType[str, float] = MappingProxyType(
    {"COVID-19": 0.65, "Viral pneumonia": 0.22, "Normal": 0.13}
)
#: Severity below which a recovering patient is fit for discharge.
DISCHARGE_SEVERITY: float = 0.15
#: Admissions are spread uniformly over this many calendar days.
ADMISSION_WINDOW_DAYS: int = 90
#: Calendar day (from the first possible admission) on which the data were frozen.
DATA_FREEZE_DAY: int = 100
#: At most this many X-rays and CTs per patient.
MAX_XRAYS: int = 5
MAX_CTS: int = 3
#: Default number of patients of ``python -m core demo build``.
DEFAULT_PATIENTS: int = 200

OUTCOMES: tuple[str, ...] = ("discharged", "died", "in hospital")


@dataclass(frozen=True)
class Course:
    """Parameters of one patient's latent severity course (see the module docstring)."""

    peak: float
    peak_day: float
    presentation_fraction: float
    recovery_halfwidth_days: float
    dies: bool
    death_day: float | None

    def severity(self, day: float) -> float:
        """Latent severity in [0, 1] on ``day`` days since admission."""
        tau = max(float(day), 0.0)
        if tau <= self.peak_day:
            rise = math.sin(0.5 * math.pi * tau / self.peak_day) ** 2
            return self.peak * (self.presentation_fraction + (1.0 - self.presentation_fraction) * rise)
        if self.dies:
            assert self.death_day is not None
            frac = min((tau - self.peak_day) / max(self.death_day - self.peak_day, 1e-6), 1.0)
            return self.peak + (1.0 - self.peak) * 0.8 * frac
        return self.peak * 0.5 ** (((tau - self.peak_day) / self.recovery_halfwidth_days) ** 2)

    def recovery_day(self) -> float:
        """First day after the peak on which severity falls below :data:`DISCHARGE_SEVERITY`."""
        if self.peak <= DISCHARGE_SEVERITY:
            return self.peak_day
        return self.peak_day + self.recovery_halfwidth_days * math.sqrt(math.log2(self.peak / DISCHARGE_SEVERITY))


@dataclass(frozen=True)
class PlannedScan:
    """One imaging session of a patient, before anything is drawn."""

    index: int  # 0, 1, ... in time order within the patient
    modality: str  # "X-ray" or "CT"
    day: int  # days since admission
    onset_day: int  # days since symptom onset
    severity: float  # latent severity on that day (0 for Normal patients)
    view: str  # "PA", "AP", "AP Supine" for X-rays; "Axial" for CT
    as_dicom: bool  # X-rays: written as DICOM DX instead of PNG
    monochrome1: bool  # DICOM X-rays stored inverted (MONOCHROME1)


@dataclass(frozen=True)
class DemoPatient:
    """One simulated patient and the truth behind them."""

    patient_id: str
    seed: int  # anatomy seed shared by all of the patient's phantoms
    label: str  # diagnosis, one of core.types.XRAY_LABELS
    age: int
    sex: str  # "M" or "F"
    admission_calendar_day: int  # days from the start of the admission window
    onset_to_admission_days: int
    course: Course | None  # None for Normal patients
    outcome: str  # one of OUTCOMES
    length_of_stay_days: int  # admission to discharge or death, or to the data freeze if censored
    went_icu: bool
    intubated: bool
    scans: tuple[PlannedScan, ...]

    @property
    def censored(self) -> bool:
        return self.outcome == "in hospital"

    @property
    def survived(self) -> bool | None:
        """True if discharged alive, False if died, None if still in hospital."""
        return None if self.censored else self.outcome == "discharged"

    @property
    def peak_day(self) -> float | None:
        """Day of the latent severity peak, in days since admission (None for Normal patients)."""
        return None if self.course is None else self.course.peak_day

    def severity(self, day: float) -> float:
        return 0.0 if self.course is None else self.course.severity(day)

    def remaining_stay_days(self, day: float) -> int:
        """Days from ``day`` (since admission) to the end of the stay (or to the data freeze)."""
        return max(self.length_of_stay_days - int(day), 0)


@dataclass(frozen=True)
class DemoCohort:
    seed: int
    patients: tuple[DemoPatient, ...]

    def __iter__(self) -> Iterator[DemoPatient]:
        return iter(self.patients)

    def __len__(self) -> int:
        return len(self.patients)

    def by_id(self, patient_id: str) -> DemoPatient:
        for p in self.patients:
            if p.patient_id == patient_id:
                return p
        raise KeyError(patient_id)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _draw_course(rng: np.random.Generator, label: str, age: int) -> Course:
    if label == "COVID-19":
        peak = float(np.clip(rng.beta(4.0, 2.2) + 0.004 * (age - 60), 0.3, 1.0))
        peak_day = float(rng.uniform(6.0, 11.0))
        p_death = _sigmoid(-6.2 + 5.5 * peak + 0.05 * (age - 60))
    else:  # other viral pneumonia: an earlier, usually milder peak
        peak = float(np.clip(rng.beta(3.0, 2.8) + 0.003 * (age - 60), 0.25, 0.95))
        peak_day = float(rng.uniform(3.0, 7.0))
        p_death = _sigmoid(-7.0 + 5.0 * peak + 0.05 * (age - 60))
    presentation = float(rng.uniform(0.45, 0.75))
    halfwidth = float(rng.uniform(2.5, 4.5)) * (1.0 + 0.006 * (age - 60))
    dies = bool(rng.random() < p_death)
    death_day = peak_day + float(rng.uniform(2.0, 9.0)) if dies else None
    return Course(peak, peak_day, presentation, max(halfwidth, 1.5), dies, death_day)


def _schedule(rng: np.random.Generator, label: str, course: Course | None, stay_end: int) -> list[tuple[str, int]]:
    """(modality, day since admission) of every scan up to ``stay_end`` inclusive, in time order."""
    if course is None:
        days = [0] + ([int(rng.integers(1, stay_end + 1))] if stay_end >= 1 and rng.random() < 0.5 else [])
        scans = [("X-ray", d) for d in days]
        if rng.random() < 0.3:
            scans.append(("CT", 0))
        return sorted(scans, key=lambda s: (s[1], s[0] != "CT"))
    # X-rays: on admission, then every 2-5 days while in hospital.
    xray_days = [0]
    while len(xray_days) < MAX_XRAYS:
        nxt = xray_days[-1] + int(rng.integers(2, 6))
        if nxt > stay_end:
            break
        xray_days.append(nxt)
    # CT: on admission (usually), near the expected peak, and sometimes shortly before discharge.
    ct_days: list[int] = []
    if rng.random() < 0.9:
        ct_days.append(int(rng.integers(0, 2)))
    if rng.random() < 0.85:
        ct_days.append(int(round(course.peak_day + rng.uniform(-2.5, 2.5))))
    if rng.random() < 0.6:
        ct_days.append(stay_end - int(rng.integers(0, 3)))
    ct_days = sorted({d for d in ct_days if 0 <= d <= stay_end})
    # Keep scans at least two days apart so each CT is its own follow-up.
    spaced: list[int] = []
    for d in ct_days:
        if not spaced or d - spaced[-1] >= 2:
            spaced.append(d)
    scans = [("X-ray", d) for d in xray_days] + [("CT", d) for d in spaced[:MAX_CTS]]
    return sorted(scans, key=lambda s: (s[1], s[0] != "CT"))


def _draw_patient(index: int, seq: np.random.SeedSequence) -> DemoPatient:
    rng = np.random.default_rng(seq)
    label = str(rng.choice(list(LABEL_SHARES), p=list(LABEL_SHARES.values())))
    age = int(np.clip(rng.normal(60.0 if label != "Normal" else 50.0, 15.0), 20, 95))
    sex = "M" if rng.random() < 0.58 else "F"
    seed = int(rng.integers(0, 2**31 - 1))
    admission = int(rng.integers(0, ADMISSION_WINDOW_DAYS))
    onset = int(rng.integers(3, 10)) if label != "Normal" else int(rng.integers(0, 3))
    course = None if label == "Normal" else _draw_course(rng, label, age)
    if course is None:
        end_day, outcome = int(rng.integers(1, 5)), "discharged"
        went_icu = intubated = False
    elif course.dies:
        assert course.death_day is not None
        end_day, outcome = int(math.ceil(course.death_day)), "died"
        went_icu = course.peak > 0.6 or rng.random() < 0.5
        intubated = went_icu and rng.random() < 0.7
    else:
        end_day, outcome = int(math.ceil(course.recovery_day() + rng.uniform(0.0, 2.0))), "discharged"
        went_icu = course.peak > 0.75 + 0.1 * rng.standard_normal()
        intubated = went_icu and rng.random() < 0.3
    freeze = DATA_FREEZE_DAY - admission
    if end_day > freeze:
        end_day, outcome = freeze, "in hospital"
    scans = []
    for i, (modality, day) in enumerate(_schedule(rng, label, course, end_day)):
        severity = 0.0 if course is None else round(course.severity(day), 4)
        if modality == "CT":
            view, as_dicom, mono1 = "Axial", True, False
        else:
            view = "AP Supine" if severity > 0.75 else ("AP" if severity > 0.5 or rng.random() < 0.2 else "PA")
            as_dicom = bool(rng.random() < 0.3)
            mono1 = as_dicom and bool(rng.random() < 0.4)
        scans.append(PlannedScan(i, modality, day, day + onset, severity, view, as_dicom, mono1))
    return DemoPatient(
        patient_id=f"demo-{index + 1:04d}",
        seed=seed,
        label=label,
        age=age,
        sex=sex,
        admission_calendar_day=admission,
        onset_to_admission_days=onset,
        course=course,
        outcome=outcome,
        length_of_stay_days=end_day,
        went_icu=bool(went_icu),
        intubated=bool(intubated),
        scans=tuple(scans),
    )


def simulate_cohort(n_patients: int = DEFAULT_PATIENTS, seed: int = 0) -> DemoCohort:
    """Draw a deterministic cohort of ``n_patients`` (same arguments, same cohort).

    Each patient draws from their own child of the seed, so the first ``k`` patients of a
    larger cohort are the patients of a cohort of ``k``.

    Raises
    ------
    ValueError
        For fewer than 1 or more than 100,000 patients, or a negative seed.
    """
    if isinstance(n_patients, bool) or not isinstance(n_patients, (int, np.integer)) or not 1 <= n_patients <= 100_000:
        raise ValueError(f"The number of patients must be between 1 and 100000, got {n_patients!r}.")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"Seed must be a non-negative integer, got {seed!r}.")
    children = np.random.SeedSequence(int(seed)).spawn(int(n_patients))
    return DemoCohort(int(seed), tuple(_draw_patient(i, s) for i, s in enumerate(children)))
