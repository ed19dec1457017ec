"""Retrieving one series into memory: :func:`retrieve_series` by DIMSE C-GET or by WADO-RS.

The instances arrive as DICOM Part 10 bytes (preamble, file meta, data set), named
``IM00001.dcm``, ``IM00002.dcm``... in the order they came, ready for :mod:`core.io`'s readers
exactly as an upload: nothing is written to disk. A retrieval is bounded by the settings'
``max_instances`` and ``max_bytes`` (refused before it starts when the archive's count is over,
stopped when what arrives goes over), and is all or nothing: a series that stops half way, or
of which the archive could not send every instance, raises :class:`PacsError` and returns none.

C-GET has the archive send the instances back over the association as C-STORE sub-operations,
so this application proposes the storage SOP classes it reads (CT, CR, DX, secondary capture)
in the SCP role (SCP/SCU role selection), uncompressed and in each compressed transfer syntax
pydicom can decode here, in separate presentation contexts so that the archive can send an
image as it stores it.
"""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable, Iterator

import requests
from pydicom import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import ALL_TRANSFER_SYNTAXES, build_role, evt
from pynetdicom.events import Event
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    StudyRootQueryRetrieveInformationModelGet,
)

from core.errors import PacsError
from core.pacs import _dicomweb, _dimse
from core.pacs.query import check_uid, find_one_series
from core.pacs.settings import PacsSettings

#: ``progress(done, total)`` after each instance; ``total`` is the count the archive announced,
#: or ``done`` itself when it announced none.
Progress = Callable[[int, int], None]

#: The storage SOP classes a C-GET accepts: the images the dashboard's readers take.
STORAGE_CLASSES: tuple[str, ...] = (
    CTImageStorage,
    EnhancedCTImageStorage,
    LegacyConvertedEnhancedCTImageStorage,
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    SecondaryCaptureImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
)
UNCOMPRESSED: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)

_GET = StudyRootQueryRetrieveInformationModelGet
#: The C-STORE status that refuses an instance: "out of resources".
_REFUSED = 0xA700


def retrieve_series(
    settings: PacsSettings,
    study_uid: str,
    series_uid: str,
    *,
    progress: Progress | None = None,
    expected: int | None = None,
) -> list[tuple[str, bytes]]:
    """The instances of one series, in memory, as ``(name, DICOM Part 10 bytes)``.

    Parameters
    ----------
    settings
        The archive and the bounds of one retrieval.
    study_uid, series_uid
        The series (from :func:`core.pacs.query.find_series`).
    progress
        Called with ``(done, total)`` after each instance, in the calling thread.
    expected
        The number of instances the search announced; when None it is asked for first.

    Raises
    ------
    PacsError
        No such series; more instances or bytes than the settings allow; the archive cannot be
        reached, refuses, times out, or sends fewer instances than it announced.
    InvalidInputError
        A UID that is not a DICOM UID.
    """
    check_uid(study_uid, "study")
    check_uid(series_uid, "series")
    if expected is None:
        expected = find_one_series(settings, series_uid, study_uid).n_instances
    if expected is not None and expected <= 0:
        raise PacsError(f"{settings.where} holds no instance of that series.")
    if expected is not None and expected > settings.max_instances:
        raise PacsError(_too_many(settings, expected))
    received = _Received(settings, expected, progress)
    if settings.protocol == "dimse":
        _get_dimse(settings, study_uid, series_uid, received)
    else:
        _get_dicomweb(settings, study_uid, series_uid, received)
    return received.complete()


class _Received:
    """The instances so far, checked against the bounds and the count announced."""

    def __init__(self, settings: PacsSettings, expected: int | None, progress: Progress | None) -> None:
        self.settings = settings
        self.expected = expected
        self.announced = expected
        self.progress = progress
        self.instances: list[bytes] = []
        self.n_bytes = 0
        self.reported = 0
        self.error: str | None = None

    @property
    def total(self) -> int:
        return max(self.announced or 0, len(self.instances))

    def add(self, data: bytes) -> bool:
        """Keep one instance; False (and :attr:`error` set) when it goes over a bound."""
        if self.error:
            return False
        limits = self.settings
        if len(self.instances) + 1 > limits.max_instances:
            self.error = (
                f"{limits.where} sent more than the {limits.max_instances} instances one retrieval may bring "
                "(the PACS setting max_instances): the transfer was stopped and nothing was kept."
            )
        elif self.expected is not None and len(self.instances) + 1 > self.expected:
            self.error = (
                f"{limits.where} sent more than the {self.expected} instances the series had when it was "
                "found (is it still being written?): the transfer was stopped and nothing was kept."
            )
        elif self.n_bytes + len(data) > limits.max_bytes:
            self.error = (
                f"The series is larger than the {_size(limits.max_bytes)} one retrieval may bring "
                "(the PACS setting max_bytes): the transfer was stopped and nothing was kept."
            )
        else:
            self.instances.append(data)
            self.n_bytes += len(data)
            return True
        return False

    def report(self) -> None:
        """Call ``progress`` once per instance not reported yet."""
        while self.progress is not None and self.reported < len(self.instances):
            self.reported += 1
            self.progress(self.reported, self.total)

    def stopped(self) -> str:
        """The words ``the transfer after n of m instances``, for messages."""
        return f"the transfer after {len(self.instances)} of {self.total or 'its'} instances"

    def complete(self) -> list[tuple[str, bytes]]:
        if self.error:
            raise PacsError(self.error)
        n = len(self.instances)
        if n == 0:
            raise PacsError(f"{self.settings.where} sent no instance of that series.")
        if self.announced is not None and n < self.announced:
            raise PacsError(
                f"{self.settings.where} stopped sending the series after {n} of {self.announced} "
                "instances: nothing was kept."
            )
        self.report()
        return [(f"IM{i:05d}.dcm", data) for i, data in enumerate(self.instances, start=1)]


# --------------------------------------------------------------------------------------------
# C-GET


@functools.cache
def _decodable_compressed() -> tuple[str, ...]:
    """The compressed transfer syntaxes pynetdicom can negotiate and pydicom can decode here."""
    found = []
    for uid in map(UID, ALL_TRANSFER_SYNTAXES):
        if not uid.is_compressed:
            continue
        try:
            if get_decoder(uid).is_available:
                found.append(str(uid))
        except NotImplementedError:
            continue
    return tuple(found)


def _storage_contexts() -> list[tuple[str, tuple[str, ...] | None]]:
    contexts: list[tuple[str, tuple[str, ...] | None]] = [(_GET, None)]
    compressed = _decodable_compressed()
    for sop_class in STORAGE_CLASSES:
        contexts.append((sop_class, UNCOMPRESSED))
        if compressed:
            contexts.append((sop_class, compressed))
    return contexts


def _get_dimse(settings: PacsSettings, study_uid: str, series_uid: str, received: _Received) -> None:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = "SERIES"
    identifier.StudyInstanceUID = study_uid
    identifier.SeriesInstanceUID = series_uid

    def on_store(event: Event) -> int:
        return 0x0000 if received.add(event.encoded_dataset()) else _REFUSED

    roles = [build_role(sop_class, scp_role=True) for sop_class in STORAGE_CLASSES]
    with _dimse.association(
        settings, _storage_contexts(), roles=roles, handlers=[(evt.EVT_C_STORE, on_store)]
    ) as assoc:
        last_answer = time.monotonic()
        for status, _ in assoc.send_c_get(identifier, _GET):
            code = _dimse.status_of(status)
            if code is None:
                silent_s = time.monotonic() - last_answer
                first = not received.instances
                cause = _dimse.broken_off(settings, assoc, received.stopped(), silent_s, first=first)
                raise PacsError(f"{cause} Nothing was kept.")
            last_answer = time.monotonic()
            _announce(received, status)
            if received.error:
                assoc.abort()
                raise PacsError(received.error)
            received.report()
            if code in _dimse.PENDING:
                continue
            _check_final(settings, status, code, received)
            return


def _announce(received: _Received, status: Dataset) -> None:
    """The archive's count of sub-operations (remaining + done), when the response has it."""
    parts = [
        status.get(keyword)
        for keyword in (
            "NumberOfRemainingSuboperations",
            "NumberOfCompletedSuboperations",
            "NumberOfFailedSuboperations",
            "NumberOfWarningSuboperations",
        )
    ]
    if any(p is not None for p in parts):
        counted = sum(int(p) for p in parts if p is not None)
        received.announced = max(received.announced or 0, counted)
        if counted > received.settings.max_instances and not received.error:
            received.error = _too_many(received.settings, counted)


def _check_final(settings: PacsSettings, status: Dataset, code: int, received: _Received) -> None:
    failed = int(status.get("NumberOfFailedSuboperations") or 0) + int(status.get("NumberOfWarningSuboperations") or 0)
    if code == 0x0000 and not failed:
        return
    if code == 0xFE00:
        raise PacsError(f"{settings.where} cancelled the transfer: nothing was kept.")
    if failed or code == 0xB000:
        raise PacsError(
            f"{settings.where} could not send {failed or 'some'} of the series' {received.total} instances "
            f"({_dimse.status_words(status)}): nothing was kept."
        )
    raise PacsError(f"{settings.where} refused the transfer ({_dimse.status_words(status)}): nothing was kept.")


# --------------------------------------------------------------------------------------------
# WADO-RS


def _get_dicomweb(settings: PacsSettings, study_uid: str, series_uid: str, received: _Received) -> None:
    client = _dicomweb.client_of(settings)
    with _dicomweb.requests_to(settings, "the transfer"):
        instances: Iterator[Dataset] = iter(())
        try:
            # The request is sent here; the instances are read from its answer as they come.
            instances = client.iter_series(study_uid, series_uid)
            for ds in instances:
                if not received.add(_part10(ds)):
                    raise PacsError(received.error)
                received.report()
        except requests.HTTPError as e:
            if e.response is not None and e.response.status_code == 404:
                raise PacsError(f"{settings.where} holds no series with that Series Instance UID.") from None
            raise PacsError(_dicomweb.http_failure(settings, e, "the transfer")) from None
        except requests.RequestException as e:
            cause = _dicomweb.http_failure(settings, e, received.stopped())
            raise PacsError(f"{cause} Nothing was kept.") from None
        finally:
            close = getattr(instances, "close", None)
            if close is not None:
                close()


def _part10(ds: Dataset) -> bytes:
    """``ds`` (as dicomweb-client decoded it from a Part 10 part) as Part 10 bytes again."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _too_many(settings: PacsSettings, n: int) -> str:
    return (
        f"The series has {n} instances, more than the {settings.max_instances} one retrieval may bring "
        "(the PACS setting max_instances): nothing was retrieved."
    )


def _size(n_bytes: int) -> str:
    if n_bytes >= 1024**3:
        return f"{n_bytes / 1024**3:.1f} GB"
    if n_bytes >= 1024**2:
        return f"{n_bytes / 1024**2:.0f} MB"
    return f"{n_bytes / 1024:.0f} kB"
