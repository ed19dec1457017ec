"""Put an image uploaded in this session into a meeting, as a reviewed case of the library.

The upload is added to the library the way the Case library page adds one
(:func:`core.library.importers.add_upload`: de-identified, names, ids, dates and institutions
removed before anything is stored), then put last in the meeting as that one study. An upload
the library holds already (recognised by its keyed fingerprint) is not stored twice: the
study it became is put in the meeting instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from core.library.importers import add_upload
from core.library.meeting_records import HIDEABLE, MeetingCase
from core.library.store import CaseLibrary


@dataclass(frozen=True)
class UploadedCase:
    """The meeting case an upload became, whether the library held the upload already, and the
    burned-in text warning of a newly stored upload (None when there is nothing to check)."""

    case: MeetingCase
    already_in_library: bool
    warning: str | None


def add_upload_to_meeting(
    library: CaseLibrary,
    meeting_id: int,
    files: Sequence[tuple[str, bytes]],
    *,
    modality: str,
    label: str | None,
    note: str | None = None,
    offset_admission_days: float | None = None,
    patient: str | None = None,
    hidden: Iterable[str] = HIDEABLE,
) -> UploadedCase:
    """Store an upload (one X-ray, or the DICOM slices of one CT series) as a reviewed case with
    ``label`` as its diagnosis, unless the library holds it already, and put its study last in
    the meeting, hiding ``hidden`` until revealed.

    Raises
    ------
    InvalidInputError
        An unknown meeting or patient (checked before anything is stored), an unreadable upload,
        or a study that is in the meeting already.
    """
    library.meeting(meeting_id)
    if patient is not None:
        library.patient(patient)
    known = library.study_of_source_key(library.content_key(data for _, data in files)) if files else None
    if known is not None:
        pseudonym, study_id = known
        warning = None
    else:
        added = add_upload(
            library,
            files,
            modality=modality,
            label=label,
            note=note,
            offset_admission_days=offset_admission_days,
            patient=patient,
        )
        pseudonym, study_id, warning = added.pseudonym, added.study_id, added.warning
    case = library.add_to_meeting(meeting_id, pseudonym, study_id, hidden)
    return UploadedCase(case, known is not None, warning)
