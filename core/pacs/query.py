"""Finding series in an archive: :func:`find_series` (studies that match a :class:`PacsQuery`,
then their series) by DIMSE C-FIND or by QIDO-RS, with the same results either way.

C-FIND uses the Study Root information model: one request at STUDY level with the query's keys
(patient id, patient name, accession number, study date range, modalities in study), then one
at SERIES level per study found, on one association. QIDO-RS does the same with
``search_for_studies`` and ``search_for_series``. Wildcards (``*``, ``?``) are passed on as the
user typed them; how they match (case, accents) is the archive's rule.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

from dicomweb_client.api import DICOMwebClient
from pydicom import Dataset
from pynetdicom import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from core.errors import InvalidInputError, PacsError
from core.pacs import _dicomweb, _dimse
from core.pacs.settings import PacsSettings

#: Most studies one search may match: more is a search to narrow, not a table to read.
MAX_STUDIES = 500
#: Longest value of a search key (the longest of their DICOM value representations, LO and PN).
MAX_KEY_CHARS = 64

_FIND = StudyRootQueryRetrieveInformationModelFind

#: The study-level attributes asked for (returned empty when the archive has no value).
_STUDY_KEYS = (
    "StudyInstanceUID",
    "StudyDate",
    "StudyDescription",
    "AccessionNumber",
    "PatientID",
    "PatientName",
    "ModalitiesInStudy",
)
_SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesDescription", "SeriesNumber", "NumberOfSeriesRelatedInstances")


@dataclass(frozen=True)
class PacsQuery:
    """What to look for; an empty key matches everything. ``patient_name`` in DICOM form
    (``DOE^JANE``), wildcards ``*`` and ``?`` allowed in the text keys; ``modality`` a DICOM
    modality (``CT``, ``DX``, ``CR``); the study date between ``date_from`` and ``date_to``,
    both included, either may be None."""

    patient_id: str = ""
    patient_name: str = ""
    accession: str = ""
    modality: str = ""
    date_from: datetime.date | None = None
    date_to: datetime.date | None = None

    def __post_init__(self) -> None:
        for label, value in (
            ("patient id", self.patient_id),
            ("patient name", self.patient_name),
            ("accession number", self.accession),
            ("modality", self.modality),
        ):
            if len(value) > MAX_KEY_CHARS:
                raise InvalidInputError(f"The {label} to search for is longer than {MAX_KEY_CHARS} characters.")
            if "\\" in value or any(ord(c) < 32 for c in value):
                raise InvalidInputError(f"The {label} to search for may not hold a backslash or a control character.")
        if self.modality and not self.modality.replace("*", "").replace("?", "").isalnum():
            raise InvalidInputError("A modality is a DICOM code of letters such as CT, DX or CR.")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidInputError("The search's first date is after its last date.")

    @property
    def study_date(self) -> str:
        """The DICOM date range: ``20200301-20200331``, ``20200301-``, ``-20200331`` or empty."""
        if self.date_from is None and self.date_to is None:
            return ""
        if self.date_from == self.date_to:
            return _dicom_date(self.date_from)
        return f"{_dicom_date(self.date_from)}-{_dicom_date(self.date_to)}"

    def study_filters(self) -> dict[str, str]:
        """The study-level keys that narrow the search (empty ones left out)."""
        filters = {
            "PatientID": self.patient_id.strip(),
            "PatientName": self.patient_name.strip(),
            "AccessionNumber": self.accession.strip(),
            "StudyDate": self.study_date,
            "ModalitiesInStudy": self.modality.strip().upper(),
        }
        return {k: v for k, v in filters.items() if v}


@dataclass(frozen=True)
class SeriesMatch:
    """One series found: its study's and patient's attributes as the archive holds them.
    ``n_instances`` is None when the archive did not say; ``study_date`` is ``YYYYMMDD``."""

    study_instance_uid: str
    series_instance_uid: str
    modality: str
    description: str
    n_instances: int | None
    series_number: str
    study_date: str
    study_description: str
    patient_id: str
    patient_name: str
    accession: str

    def to_json(self) -> dict:
        """Every field, by name (what ``pacs find --json`` prints per series)."""
        return asdict(self)


def find_series(settings: PacsSettings, query: PacsQuery) -> list[SeriesMatch]:
    """The series of the studies that match ``query``, ordered by study date, study, series
    number; only those of ``query.modality`` when one is given.

    Raises
    ------
    PacsError
        The archive cannot be reached, refuses, times out, or more than :data:`MAX_STUDIES`
        studies match.
    """
    if settings.protocol == "dimse":
        matches = _find_dimse(settings, query)
    else:
        matches = _find_dicomweb(settings, query)
    return sorted(matches, key=_order)


def find_one_series(settings: PacsSettings, series_uid: str, study_uid: str = "") -> SeriesMatch:
    """The series ``series_uid`` (in study ``study_uid`` when given): its study, modality and
    number of instances. Only the series' own attributes are filled in (the patient's and the
    study's are empty): a SERIES-level search returns no more.

    Raises
    ------
    PacsError
        The archive holds no such series, or any failure of :func:`find_series`.
    """
    check_uid(series_uid, "series")
    if study_uid:
        check_uid(study_uid, "study")
    if settings.protocol == "dimse":
        with _dimse.association(settings, [(_FIND, None)]) as assoc:
            found = _series_dimse(settings, assoc, study_uid, series_uid=series_uid)
    else:
        with _dicomweb.requests_to(settings, "the search for the series"):
            client = _dicomweb.client_of(settings)
            found = _series_dicomweb(client, study_uid or None, "", series_uid=series_uid)
    matches = [_match(Dataset(), series) for series in found]
    matches = [m for m in matches if m.series_instance_uid == series_uid]
    if not matches:
        in_study = " in that study" if study_uid else ""
        raise PacsError(f"{settings.where} holds no series with that Series Instance UID{in_study}.")
    return matches[0]


def check_uid(uid: str, what: str) -> None:
    """A DICOM UID (digits and dots, at most 64 characters), else a plain error."""
    if not uid or len(uid) > 64 or not all(c.isdigit() or c == "." for c in uid) or ".." in uid:
        raise InvalidInputError(f"That {what} UID is not a DICOM UID (digits and dots, at most 64 characters).")


# --------------------------------------------------------------------------------------------
# DIMSE


def _find_dimse(settings: PacsSettings, query: PacsQuery) -> list[SeriesMatch]:
    identifier = _identifier("STUDY", _STUDY_KEYS, query.study_filters())
    matches: list[SeriesMatch] = []
    with _dimse.association(settings, [(_FIND, None)]) as assoc:
        studies = _c_find(settings, assoc, identifier, "the search for studies", limit=MAX_STUDIES)
        for study in studies:
            uid = str(study.get("StudyInstanceUID", ""))
            if uid:
                series = _series_dimse(settings, assoc, uid, modality=query.modality.strip().upper())
                matches.extend(_match(study, s) for s in series)
    return matches


def _series_dimse(
    settings: PacsSettings, assoc: Association, study_uid: str, *, modality: str = "", series_uid: str = ""
) -> list[Dataset]:
    filters = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid, "Modality": modality}
    identifier = _identifier("SERIES", ("StudyInstanceUID", *_SERIES_KEYS), {k: v for k, v in filters.items() if v})
    return _c_find(settings, assoc, identifier, "the search for series")


def _identifier(level: str, keys: Iterable[str], filters: dict[str, str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for key in keys:
        setattr(ds, key, filters.get(key, ""))
    return ds


def _c_find(
    settings: PacsSettings, assoc: Association, identifier: Dataset, what: str, limit: int | None = None
) -> list[Dataset]:
    found: list[Dataset] = []
    last_answer = time.monotonic()
    for status, answer in assoc.send_c_find(identifier, _FIND):
        code = _dimse.status_of(status)
        if code is None:
            raise PacsError(_dimse.broken_off(settings, assoc, what, time.monotonic() - last_answer))
        last_answer = time.monotonic()
        if code in _dimse.PENDING:
            if answer is not None:
                found.append(answer)
            if limit is not None and len(found) > limit:
                assoc.abort()
                raise PacsError(_too_many(settings))
        elif code == 0x0000:
            break
        elif code == 0xFE00:
            raise PacsError(f"{settings.where} cancelled {what}.")
        else:
            raise PacsError(f"{settings.where} refused {what} ({_dimse.status_words(status)}).")
    return found


# --------------------------------------------------------------------------------------------
# QIDO-RS


def _find_dicomweb(settings: PacsSettings, query: PacsQuery) -> list[SeriesMatch]:
    matches: list[SeriesMatch] = []
    with _dicomweb.requests_to(settings, "the search"):
        client = _dicomweb.client_of(settings)
        filters = query.study_filters()
        if "PatientName" in filters:
            # Orthanc 1.10's QIDO-RS matches no name with a ``^`` in its query (C-FIND does);
            # the one-character wildcard matches the ``^`` there, and any server takes it.
            filters["PatientName"] = filters["PatientName"].replace("^", "?")
        studies = client.search_for_studies(search_filters=filters, fields=list(_STUDY_KEYS), limit=MAX_STUDIES + 1)
        if len(studies) > MAX_STUDIES:
            raise PacsError(_too_many(settings))
        for study in (Dataset.from_json(s) for s in studies):
            uid = str(study.get("StudyInstanceUID", ""))
            if uid:
                series = _series_dicomweb(client, uid, query.modality.strip().upper())
                matches.extend(_match(study, s) for s in series)
    return matches


def _series_dicomweb(
    client: DICOMwebClient, study_uid: str | None, modality: str, series_uid: str = ""
) -> list[Dataset]:
    filters = {"Modality": modality, "SeriesInstanceUID": series_uid}
    found = client.search_for_series(
        study_instance_uid=study_uid,
        search_filters={k: v for k, v in filters.items() if v},
        fields=["StudyInstanceUID", *_SERIES_KEYS],
    )
    return [Dataset.from_json(s) for s in found]


# --------------------------------------------------------------------------------------------
# Both


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    if value is None:
        return ""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _count(ds: Dataset, keyword: str) -> int | None:
    try:
        return int(ds.get(keyword)) if ds.get(keyword) not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _match(study: Dataset, series: Dataset) -> SeriesMatch:
    return SeriesMatch(
        study_instance_uid=_text(series, "StudyInstanceUID") or _text(study, "StudyInstanceUID"),
        series_instance_uid=_text(series, "SeriesInstanceUID"),
        modality=_text(series, "Modality"),
        description=_text(series, "SeriesDescription"),
        n_instances=_count(series, "NumberOfSeriesRelatedInstances"),
        series_number=_text(series, "SeriesNumber"),
        study_date=_text(study, "StudyDate"),
        study_description=_text(study, "StudyDescription"),
        patient_id=_text(study, "PatientID"),
        patient_name=_text(study, "PatientName"),
        accession=_text(study, "AccessionNumber"),
    )


def _order(match: SeriesMatch) -> tuple:
    number = int(match.series_number) if match.series_number.lstrip("-").isdigit() else 0
    return (match.study_date, match.study_instance_uid, number, match.series_instance_uid)


def _too_many(settings: PacsSettings) -> str:
    return f"More than {MAX_STUDIES} studies at {settings.where} match: narrow the search."


def _dicom_date(day: datetime.date | None) -> str:
    return day.strftime("%Y%m%d") if day else ""
