"""Each way talking to an archive fails gives one plain PacsError naming the server, never a
credential or a patient's identifier, and leaves nothing half retrieved."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import socket
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid
from core.errors import PacsError
from core.pacs.query import PacsQuery, find_series
from core.pacs.retrieve import retrieve_series
from core.pacs.settings import PacsSettings
from tests.browser import free_port
from tests.pacs.conftest import Archive
from tests.pacs.orthanc import PASSWORD, Orthanc

PROTOCOLS = ("dimse", "dicomweb")
#: Identifiers of the archive's patients that no message or log record may quote.
IDENTIFIERS = ("DOE", "JANE", "ROE", "RICHARD", "PACS-0001", "PACS-0002", "ACC-0001", "ACC-0002")


def _settings(archive: Archive, protocol: str, **changes) -> PacsSettings:
    base = archive.orthanc.dimse if protocol == "dimse" else archive.orthanc.dicomweb
    return dataclasses.replace(base, **changes)


def _elsewhere(protocol: str, port: int, **changes) -> PacsSettings:
    if protocol == "dimse":
        return PacsSettings("dimse", host="127.0.0.1", port=port, called_aet="ORTHANC", **changes)
    return PacsSettings(
        "dicomweb", url=f"http://127.0.0.1:{port}/dicom-web", username="u", password=PASSWORD, **changes
    )


def _one_error(call: Callable[[], object], *words: str) -> str:
    """The message of the PacsError ``call`` raises: one line, with ``words``, no secret."""
    with pytest.raises(PacsError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert PASSWORD not in message
    assert not any(i in message for i in IDENTIFIERS), message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose socket accepts connections (the kernel completes them from the backlog)
    and never answers a byte."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_is_down(protocol: str, archive: Archive) -> None:
    settings = _elsewhere(protocol, free_port())
    _one_error(lambda: find_series(settings, PacsQuery(patient_id="PACS-0001")), "cannot be reached", settings.where)
    _one_error(lambda: retrieve_series(settings, archive.ct.study_uid, archive.ct.series_uid), "cannot be reached")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_server_that_accepts_and_never_answers(protocol: str, silent_port: int, archive: Archive) -> None:
    settings = _elsewhere(protocol, silent_port, timeout_s=1.0)
    _one_error(lambda: find_series(settings, PacsQuery()), "did not answer", "within 1 s")
    _one_error(
        lambda: retrieve_series(settings, archive.ct.study_uid, archive.ct.series_uid, expected=16), "did not answer"
    )


def test_a_wrong_called_ae_title(archive: Archive) -> None:
    settings = _settings(archive, "dimse", called_aet="NOTORTHANC")
    _one_error(lambda: find_series(settings, PacsQuery()), "refused the association", "AE title NOTORTHANC")
    _one_error(
        lambda: retrieve_series(settings, archive.ct.study_uid, archive.ct.series_uid, expected=16), "NOTORTHANC"
    )


def test_a_calling_ae_title_the_archive_does_not_know(archive: Archive) -> None:
    settings = _settings(archive, "dimse", calling_aet="STRANGER")
    _one_error(lambda: find_series(settings, PacsQuery()), "broke off the search", "STRANGER")
    _one_error(
        lambda: retrieve_series(settings, archive.ct.study_uid, archive.ct.series_uid, expected=16),
        "broke off",
        "STRANGER",
    )


def test_a_wrong_dicomweb_password_or_none(archive: Archive) -> None:
    for changes in ({"password": "not-the-password"}, {"username": "", "password": ""}):
        settings = _settings(archive, "dicomweb", **changes)
        _one_error(lambda s=settings: find_series(s, PacsQuery()), "refused the user name or password", "401")
        _one_error(
            lambda s=settings: retrieve_series(s, archive.ct.study_uid, archive.ct.series_uid, expected=16),
            "refused the user name or password",
        )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_series_over_the_instance_bound_is_refused_before_it_starts(protocol: str, archive: Archive) -> None:
    settings = _settings(archive, protocol, max_instances=10)
    calls: list[tuple[int, int]] = []
    _one_error(
        lambda: retrieve_series(
            settings, archive.ct.study_uid, archive.ct.series_uid, progress=lambda *a: calls.append(a)
        ),
        "16 instances",
        "more than the 10",
        "max_instances",
    )
    assert calls == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_series_over_the_byte_bound_is_stopped_during_the_transfer(protocol: str, archive: Archive) -> None:
    one_slice = len(archive.ct.files[0][1])
    settings = _settings(archive, protocol, max_bytes=int(3.5 * one_slice))
    calls: list[tuple[int, int]] = []
    _one_error(
        lambda: retrieve_series(
            settings, archive.ct.study_uid, archive.ct.series_uid, progress=lambda *a: calls.append(a)
        ),
        "larger than",
        "max_bytes",
        "nothing was kept",
    )
    assert calls == [(1, 16), (2, 16), (3, 16)]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fewer_instances_than_announced_returns_nothing(protocol: str, archive: Archive) -> None:
    settings = _settings(archive, protocol)
    _one_error(
        lambda: retrieve_series(settings, archive.ct.study_uid, archive.ct.series_uid, expected=17),
        "after 16 of 17 instances",
        "nothing was kept",
    )


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_archive_that_stops_half_way(protocol: str, fresh_orthanc: Orthanc) -> None:
    # Slices of 512 x 512: a WADO-RS answer larger than the socket buffers, still being sent
    # when the archive dies after the fourth instance has arrived.
    hu = np.random.default_rng(0).integers(-1000, 1000, size=(24, 512, 512)).astype(np.int16)
    patient = DicomPatient("ROE^RICHARD", "PACS-0002", "19490102", "M", 71)
    study = DicomStudy(new_uid("stops-study"), "ACC-0002", dt.date(2020, 4, 2), "CT CHEST")
    series_uid = new_uid("stops-series")
    fresh_orthanc.store(data for _, data in ct_series_files(hu, (2.0, 0.7, 0.7), patient, study, series_uid=series_uid))
    settings = fresh_orthanc.dimse if protocol == "dimse" else fresh_orthanc.dicomweb

    def die_at_the_fourth(done: int, total: int) -> None:
        if done == 4:
            fresh_orthanc._proc.kill()  # a crash, not a shutdown that first finishes the transfer

    message = _one_error(
        lambda: retrieve_series(settings, study.study_uid, series_uid, progress=die_at_the_fourth, expected=24),
        "of 24 instances",
    )
    assert "nothing was kept" in message.lower()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_such_series(protocol: str, archive: Archive) -> None:
    settings = _settings(archive, protocol)
    unknown = "1.2.826.0.1.3680043.8.498.1"
    _one_error(lambda: retrieve_series(settings, archive.ct.study_uid, unknown), "holds no series")
    _one_error(lambda: retrieve_series(settings, unknown, unknown), "holds no series")
    # Even when the caller gives the count, nothing arrives and nothing is returned.
    _one_error(lambda: retrieve_series(settings, archive.ct.study_uid, unknown, expected=3))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_no_identifier_or_password_in_any_log_record(
    protocol: str, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _settings(archive, protocol)
    assert find_series(settings, PacsQuery(patient_name="DOE^JANE", accession="ACC-0001"))
    assert find_series(settings, PacsQuery(patient_id="PACS-0002"))
    assert retrieve_series(settings, archive.xray.study_uid, archive.xray.series_uid)
    if protocol == "dicomweb":
        with pytest.raises(PacsError):
            find_series(dataclasses.replace(settings, password="wrong-" + PASSWORD), PacsQuery(patient_id="PACS-0001"))
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert PASSWORD not in logged
    assert not any(i in logged for i in IDENTIFIERS), logged
