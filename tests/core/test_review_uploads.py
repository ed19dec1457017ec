"""An upload of this session goes into a meeting as a reviewed, de-identified case of the library:
a new patient (or an existing one), its study last in the meeting with the chosen items hidden;
the same upload again is recognised, not stored twice; nothing is stored for an unknown meeting."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from core.demo.ct_phantom import generate_ct
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid
from core.demo.xray_phantom import generate_xray
from core.errors import InvalidInputError
from core.library.store import open_library
from core.review.uploads import add_upload_to_meeting

NAME, MRN = "DOE^JANE", "MRN-0423"


@pytest.fixture
def library(library_copy: Path):  # noqa: ANN201
    return open_library(library_copy)


def xray_png(seed: int = 5) -> list[tuple[str, bytes]]:
    return [("Jane Doe chest.png", generate_xray("COVID-19", 0.6, seed, size=256).to_png())]


def test_an_xray_upload_becomes_the_last_case_of_the_meeting_as_a_new_patient(library) -> None:  # noqa: ANN001
    meeting = library.meeting(library.create_meeting("Tuesday", "2026-12-08"))
    patients = library.counts().patients
    got = add_upload_to_meeting(
        library,
        meeting.id,
        xray_png(),
        modality="X-ray",
        label="COVID-19",
        offset_admission_days=2,
        hidden=("diagnosis",),
    )
    assert not got.already_in_library and got.case.position == 1
    assert library.counts().patients == patients + 1
    patient = library.patient(got.case.pseudonym)
    (study,) = patient.studies
    assert got.case.study_id == study.id and study.label == "COVID-19" and study.offset_admission_days == 2
    assert patient.summary.source == "upload"
    assert library.meeting(meeting.id).cases[0].hidden == frozenset({"diagnosis"})
    second = add_upload_to_meeting(library, meeting.id, xray_png(6), modality="X-ray", label=None)
    assert second.case.position == 2  # put last


def test_the_same_upload_again_is_the_same_study_not_a_second_copy(library) -> None:  # noqa: ANN001
    first = library.meeting(library.create_meeting("First", "2026-12-08"))
    second = library.meeting(library.create_meeting("Second", "2026-12-09"))
    a = add_upload_to_meeting(library, first.id, xray_png(), modality="X-ray", label="Normal")
    patients = library.counts().patients
    b = add_upload_to_meeting(library, second.id, xray_png(), modality="X-ray", label="Normal")
    assert b.already_in_library and b.case.study_id == a.case.study_id and b.case.pseudonym == a.case.pseudonym
    assert library.counts().patients == patients
    with pytest.raises(InvalidInputError):  # already a case of that meeting
        add_upload_to_meeting(library, first.id, xray_png(), modality="X-ray", label="Normal")


def test_a_ct_series_joins_an_existing_patient_without_its_identifiers(library) -> None:  # noqa: ANN001
    meeting = library.meeting(library.create_meeting("CT review", "2026-12-08"))
    existing = library.patients()[0].pseudonym
    ct = generate_ct("COVID-19", 0.5, 31, shape=(16, 48, 48))
    files = ct_series_files(
        ct.hu,
        ct.spacing_mm,
        DicomPatient(NAME, MRN, "19580412", "F", 61),
        DicomStudy(new_uid("review-upload"), "ACC-77", dt.date(2020, 3, 15)),
    )
    got = add_upload_to_meeting(
        library, meeting.id, files, modality="CT", label="COVID-19", offset_admission_days=5, patient=existing
    )
    assert got.case.pseudonym == existing
    study = next(s for s in library.patient(existing).studies if s.id == got.case.study_id)
    assert study.modality == "CT" and study.images[0].kind == "ct-series"
    stored = b"".join(data for _, data in library.image_files(study.images[0]))
    assert NAME.encode() not in stored and MRN.encode() not in stored


def test_nothing_is_stored_for_an_unknown_meeting_or_patient(library) -> None:  # noqa: ANN001
    before = library.counts()
    with pytest.raises(InvalidInputError):
        add_upload_to_meeting(library, 9999, xray_png(), modality="X-ray", label="Normal")
    meeting = library.create_meeting("Friday", "2026-12-11")
    with pytest.raises(InvalidInputError):
        add_upload_to_meeting(library, meeting, xray_png(), modality="X-ray", label="Normal", patient="P-nobody")
    assert library.counts() == before


def test_an_unreadable_upload_is_one_plain_sentence(library) -> None:  # noqa: ANN001
    meeting = library.create_meeting("Monday", "2026-12-07")
    with pytest.raises(InvalidInputError) as e:
        add_upload_to_meeting(library, meeting, [("scan.png", b"%PDF-1.4 not an image")], modality="X-ray", label=None)
    assert str(e.value).startswith("The image is a PDF document, not an image.")
    assert library.meeting(meeting).cases == ()
