"""Typed records of the case library: what the store returns and what importers hand it.

Nothing here identifies a person: a patient is known by a pseudonym, files by paths the
library made up, and dates only as offsets in days.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODALITIES: tuple[str, ...] = ("X-ray", "CT")
#: Kinds of stored image: one radiograph, one CT slice, or a folder of CT slices.
IMAGE_KINDS: tuple[str, ...] = ("xray", "ct-slice", "ct-series")
OUTCOMES: tuple[str, ...] = ("discharged", "died", "in hospital")


@dataclass(frozen=True)
class NewPatient:
    """A patient as an importer describes it (already pseudonymised)."""

    pseudonym: str
    source: str  # the dataset kind it came from: "cohen", "folders", "csv", "upload"
    label: str | None = None  # diagnosis, one of core.types.XRAY_LABELS
    sex: str | None = None  # "M", "F" or None
    age_years: float | None = None
    outcome: str | None = None  # one of OUTCOMES
    survival: bool | None = None  # True survived, False died, None unknown
    length_of_stay_days: float | None = None
    went_icu: bool | None = None
    intubated: bool | None = None


@dataclass(frozen=True)
class NewStudy:
    """One imaging session as an importer describes it."""

    modality: str  # one of MODALITIES
    view: str | None = None  # "PA", "AP", "AP Supine", "L", "Axial"
    offset_onset_days: float | None = None
    offset_admission_days: float | None = None
    label: str | None = None
    note: str | None = None
    findings: dict[str, int] | None = None
    #: Why the original files may carry burned-in text (core.library.burned_in), or None.
    burned_in: str | None = None


@dataclass(frozen=True)
class ImageRecord:
    id: int
    study_id: int
    kind: str  # one of IMAGE_KINDS
    path: str  # relative to the library's files folder: a file, or a folder for "ct-series"
    n_files: int
    width: int | None
    height: int | None
    depth: int | None


@dataclass(frozen=True)
class ImageRef:
    """Where an image sits: its study and patient (for search results and indexing)."""

    image_id: int
    study_id: int
    patient_pseudonym: str
    kind: str  # one of IMAGE_KINDS
    modality: str  # one of MODALITIES


@dataclass(frozen=True)
class Study:
    id: int
    patient_pseudonym: str
    modality: str
    view: str | None
    offset_onset_days: float | None
    offset_admission_days: float | None
    label: str | None
    note: str | None
    findings: dict[str, int] | None
    images: tuple[ImageRecord, ...]
    #: Why the original files may carry burned-in text, which de-identification does not remove
    #: (the DICOM header said so, or text-like marks along a border); None when nothing was seen.
    burned_in: str | None = None

    @property
    def day(self) -> float | None:
        """The study's time for ordering and plotting: days since admission, else since onset."""
        return self.offset_admission_days if self.offset_admission_days is not None else self.offset_onset_days


@dataclass(frozen=True)
class PatientSummary:
    """One row of the patient list."""

    pseudonym: str
    source: str
    label: str | None
    sex: str | None
    age_years: float | None
    outcome: str | None
    survival: bool | None
    length_of_stay_days: float | None
    went_icu: bool | None
    intubated: bool | None
    n_studies: int
    n_xray: int
    n_ct: int


@dataclass(frozen=True)
class Patient:
    """A patient with every study, in time order (offset days, never import order)."""

    summary: PatientSummary
    studies: tuple[Study, ...]

    @property
    def pseudonym(self) -> str:
        return self.summary.pseudonym


@dataclass(frozen=True)
class PatientFilter:
    """Which patients to list; ``None`` means any."""

    labels: tuple[str, ...] | None = None
    outcomes: tuple[str, ...] | None = None
    modality: str | None = None  # only patients with at least one study of this modality
    min_studies: int = 0
    max_studies: int | None = None


@dataclass(frozen=True)
class LibraryCounts:
    patients: int
    studies: int
    images: int
    by_modality: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, int] = field(default_factory=dict)


@dataclass
class ImportReport:
    """What an import did. ``problems`` are plain-words lines, one per skipped row or file;
    ``warnings`` one line per imported study whose pixels may carry identifiers (burned-in
    text), naming its row, pseudonym and study id."""

    added_patients: int = 0
    added_studies: int = 0
    added_images: int = 0
    duplicates: int = 0
    skipped_by_option: int = 0
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "added_patients": self.added_patients,
            "added_studies": self.added_studies,
            "added_images": self.added_images,
            "duplicates": self.duplicates,
            "skipped_by_option": self.skipped_by_option,
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }
