"""Finding series in the real archive by each key, by C-FIND and by QIDO-RS, with the same
results either way."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from core.errors import InvalidInputError
from core.pacs.query import PacsQuery, SeriesMatch, find_one_series, find_series
from tests.pacs.conftest import Archive


def _both(archive: Archive, query: PacsQuery) -> list[SeriesMatch]:
    """The matches by C-FIND, after checking QIDO-RS finds exactly the same."""
    by_dimse = find_series(archive.orthanc.dimse, query)
    by_dicomweb = find_series(archive.orthanc.dicomweb, query)
    assert by_dimse == by_dicomweb
    return by_dimse


def _series(matches: list[SeriesMatch]) -> set[str]:
    return {m.series_instance_uid for m in matches}


def test_a_patient_id_finds_that_patients_series_with_their_study_and_counts(archive: Archive) -> None:
    ct = archive.ct
    [match] = _both(archive, PacsQuery(patient_id=ct.patient_id))
    assert match == SeriesMatch(
        study_instance_uid=ct.study_uid,
        series_instance_uid=ct.series_uid,
        modality="CT",
        description="CHEST CT",
        n_instances=16,
        series_number="1",
        study_date="20200402",
        study_description="CT CHEST",
        patient_id="PACS-0002",
        patient_name="ROE^RICHARD",
        accession="ACC-0002",
    )
    assert match.to_json() == dataclasses.asdict(match) and match.to_json()["n_instances"] == 16


@pytest.mark.parametrize("name", ["DOE^JANE", "DOE*", "doe*", "*JANE", "D?E^JANE"])
def test_a_name_as_typed_with_or_without_wildcards(archive: Archive, name: str) -> None:
    assert _series(_both(archive, PacsQuery(patient_name=name))) == {archive.xray.series_uid}


def test_an_accession_number(archive: Archive) -> None:
    [match] = _both(archive, PacsQuery(accession="ACC-0001"))
    assert (match.series_instance_uid, match.modality, match.n_instances) == (archive.xray.series_uid, "DX", 1)


@pytest.mark.parametrize(
    ("first", "last", "wanted"),
    [
        (dt.date(2020, 3, 1), dt.date(2020, 3, 31), {"xray"}),
        (dt.date(2020, 3, 15), dt.date(2020, 3, 15), {"xray"}),
        (dt.date(2020, 4, 1), None, {"ct"}),
        (None, dt.date(2020, 3, 31), {"xray", "sample"}),
        (dt.date(2021, 1, 1), None, set()),
    ],
)
def test_a_date_range_either_end_open(archive: Archive, first, last, wanted: set[str]) -> None:
    studies = {"xray": archive.xray, "ct": archive.ct, "sample": archive.sample}
    expected = {studies[k].series_uid for k in wanted if studies[k] is not None}
    assert _series(_both(archive, PacsQuery(date_from=first, date_to=last))) == expected


def test_a_modality_finds_only_series_of_it(archive: Archive) -> None:
    ct = _both(archive, PacsQuery(modality="ct"))
    expected = {archive.ct.series_uid} | ({archive.sample.series_uid} if archive.sample else set())
    assert _series(ct) == expected and {m.modality for m in ct} == {"CT"}
    assert _series(_both(archive, PacsQuery(modality="DX"))) == {archive.xray.series_uid}


def test_keys_together_narrow_and_an_unknown_patient_finds_nothing(archive: Archive) -> None:
    assert _both(archive, PacsQuery(patient_id="PACS-0001", modality="CT")) == []
    assert _both(archive, PacsQuery(patient_id="NOBODY")) == []
    everything = _both(archive, PacsQuery())
    assert len(everything) == (3 if archive.sample else 2)
    assert [m.study_date for m in everything] == sorted(m.study_date for m in everything)


def test_one_series_by_its_uid_with_or_without_its_study(archive: Archive) -> None:
    for settings in (archive.orthanc.dimse, archive.orthanc.dicomweb):
        for study in (archive.ct.study_uid, ""):
            found = find_one_series(settings, archive.ct.series_uid, study)
            assert (found.study_instance_uid, found.n_instances, found.modality) == (archive.ct.study_uid, 16, "CT")


@pytest.mark.parametrize(
    "query",
    [
        dict(patient_id="A\\B"),
        dict(patient_name="X" * 65),
        dict(modality="C T"),
        dict(accession="ACC\n1"),
        dict(date_from=dt.date(2020, 5, 1), date_to=dt.date(2020, 4, 1)),
    ],
)
def test_a_query_the_archive_could_misread_is_refused_in_words(query: dict) -> None:
    with pytest.raises(InvalidInputError) as caught:
        PacsQuery(**query)
    assert "\n" not in str(caught.value)


def test_the_study_date_range_in_dicom_form() -> None:
    assert PacsQuery().study_date == ""
    assert PacsQuery(date_from=dt.date(2020, 3, 1)).study_date == "20200301-"
    assert PacsQuery(date_to=dt.date(2020, 3, 31)).study_date == "-20200331"
    assert PacsQuery(date_from=dt.date(2020, 3, 1), date_to=dt.date(2020, 3, 31)).study_date == "20200301-20200331"
