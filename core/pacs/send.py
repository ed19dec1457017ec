"""Send DICOM objects (the dashboard's results, :mod:`core.pacs.results`) to the archive.

:func:`send_datasets` stores them by the protocol the settings name: C-STORE over one
association (pynetdicom, proposing each object's SOP class in Explicit and Implicit VR Little
Endian) or STOW-RS in one request (dicomweb-client). It returns a :class:`SendReport` of what the
archive stored; anything not stored (server down, association refused, a wrong AE title or
password, a timeout, an object refused) is one :class:`~core.errors.PacsError` in plain words that
names the server by :attr:`~core.pacs.settings.PacsSettings.where` and says which objects, if
any, were stored before it.

Nothing is written to disk. pynetdicom logs each message's attributes at DEBUG, so its records
are kept off the application's handlers (:func:`quiet_library_logs`) unless the root logger is at
DEBUG (``python -m core --debug``); the password is never part of a message or a log record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE

from core.errors import PacsError
from core.pacs.settings import PacsSettings

__all__ = ["SendReport", "quiet_library_logs", "send_datasets"]

logger = logging.getLogger(__name__)

#: C-STORE statuses that mean "stored, with a remark" (PS3.4 B.2.3): coerced, elements discarded,
#: data set does not match the SOP class.
_STORE_WARNINGS = {0xB000: "coerced", 0xB006: "elements discarded", 0xB007: "does not match its SOP class"}


@dataclass(frozen=True)
class SendReport:
    """What the archive stored: the SOP Instance UIDs, in the order sent, and its remarks."""

    where: str
    protocol: str
    stored: tuple[str, ...]
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {
            "where": self.where,
            "protocol": self.protocol,
            "stored": list(self.stored),
            "warnings": list(self.warnings),
        }


def send_datasets(settings: PacsSettings, datasets: Sequence[Dataset]) -> SendReport:
    """Store ``datasets`` in the archive of ``settings`` (C-STORE or STOW-RS).

    Raises
    ------
    PacsError
        Nothing to send, or not every object stored: the message says why and how many were.
    """
    if not datasets:
        raise PacsError("There is nothing to send.")
    for ds in datasets:
        if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
            raise PacsError("An object to send has no SOP Class or Instance UID: nothing was sent.")
    if settings.protocol == "dimse":
        return _send_dimse(settings, datasets)
    return _send_stow(settings, datasets)


def _name(ds: Dataset) -> str:
    """The object's kind in words: "Secondary Capture Image", "Comprehensive SR"."""
    return UID(str(ds.SOPClassUID)).name.removesuffix(" Storage")


def _stored_before(stored: Sequence[str], total: int) -> str:
    if not stored:
        return "Nothing was stored."
    return f"{len(stored)} of {total} objects were stored before it."


# --------------------------------------------------------------------------------------------
# DIMSE: C-STORE


def quiet_library_logs(*names: str) -> None:
    """Keep the records of the libraries ``names`` (and their child loggers) off the
    application's handlers, as :func:`core.console.configure_console` does for pydicom, unless
    the root logger is at DEBUG (``python -m core --debug``). Called before a library is used,
    not at import; calling it again is harmless.

    pynetdicom logs every attribute of the messages it sends at DEBUG, and its own account of a
    failure (which :func:`send_datasets` reports in plain words) at ERROR; highdicom logs the
    source instance's UID at INFO as it copies the patient and study modules.
    """
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        return
    for name in names:
        library = logging.getLogger(name)
        library.propagate = False
        if not any(isinstance(h, logging.NullHandler) for h in library.handlers):
            library.addHandler(logging.NullHandler())


def _send_dimse(settings: PacsSettings, datasets: Sequence[Dataset]) -> SendReport:
    where = settings.where
    ae = AE(ae_title=settings.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_s
    ae.connection_timeout = settings.timeout_s
    for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets):
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    stored: list[str] = []
    warnings: list[str] = []
    quiet_library_logs("pynetdicom")
    assoc = ae.associate(settings.host, settings.port, ae_title=settings.called_aet)
    if assoc.is_rejected:
        raise PacsError(
            f"{where} refused the association: check its AE title ({settings.called_aet}) and that it knows "
            f"this application's AE title ({settings.calling_aet}). Nothing was sent."
        )
    if not assoc.is_established:
        raise PacsError(
            f"{where} could not be reached or did not answer within {settings.timeout_s:g} s. Nothing was sent."
        )
    try:
        for ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except ValueError as e:  # no accepted presentation context for this SOP class
                raise PacsError(
                    f"{where} does not accept {_name(ds)} objects. {_stored_before(stored, len(datasets))}"
                ) from e
            if not status or "Status" not in status:  # aborted, closed, or no answer in time
                raise PacsError(
                    f"{where} did not store the {_name(ds)}: it closed the connection or gave no reply within "
                    f"{settings.timeout_s:g} s (does it accept objects from this application's AE title, "
                    f"{settings.calling_aet}?). {_stored_before(stored, len(datasets))}"
                )
            code = int(status.Status)
            if code in _STORE_WARNINGS:
                warnings.append(f"{_name(ds)}: stored, {_STORE_WARNINGS[code]} (status 0x{code:04X})")
            elif code != 0x0000:
                raise PacsError(
                    f"{where} refused to store the {_name(ds)} (status 0x{code:04X}). "
                    f"{_stored_before(stored, len(datasets))}"
                )
            stored.append(str(ds.SOPInstanceUID))
    finally:
        if assoc.is_established:
            assoc.release()
    logger.info("stored %d objects by C-STORE", len(stored))
    return SendReport(where, "dimse", tuple(stored), tuple(warnings))


# --------------------------------------------------------------------------------------------
# DICOMweb: STOW-RS


def _send_stow(settings: PacsSettings, datasets: Sequence[Dataset]) -> SendReport:
    where = settings.where
    session = requests.Session()
    if settings.username or settings.password:
        # On the session, not in the client's headers: dicomweb-client logs its headers at DEBUG.
        session.auth = (settings.username, settings.password)
    client = DICOMwebClient(url=settings.url, session=session, timeout=settings.timeout_s)
    # dicomweb-client retries a failed request 5 times, waiting up to 16 s between tries: a
    # server that is down would take half a minute to say so, past the settings' timeout.
    client.set_http_retry_params(retry=False)
    try:
        # To /studies, not /studies/{uid}: dicomweb-client logs the study's UID when it is named.
        answer = client.store_instances(list(datasets))
    except requests.exceptions.Timeout as e:
        raise PacsError(f"{where} did not answer within {settings.timeout_s:g} s. Nothing may have been stored.") from e
    except requests.exceptions.ConnectionError as e:
        raise PacsError(f"{where} could not be reached. Nothing was sent.") from e
    except requests.exceptions.HTTPError as e:
        code = e.response.status_code if e.response is not None else 0
        raise PacsError(_http_refusal(where, code)) from e
    except requests.exceptions.RequestException as e:
        raise PacsError(f"{where} could not be asked to store the results ({type(e).__name__}).") from e
    finally:
        session.close()
    return _stow_report(where, datasets, answer)


def _http_refusal(where: str, code: int) -> str:
    if code == 401:
        return f"{where} refused the user name and password (HTTP 401). Nothing was stored."
    if code == 403:
        return f"{where} does not let this user store objects (HTTP 403). Nothing was stored."
    if code == 409:
        return f"{where} refused to store the results (HTTP 409: it refused every object)."
    if code == 404:
        return f"{where} has no STOW-RS service at this URL (HTTP 404). Nothing was stored."
    return f"{where} refused to store the results (HTTP {code}). Nothing may have been stored."


def _stow_report(where: str, datasets: Sequence[Dataset], answer: Dataset | None) -> SendReport:
    """The STOW-RS response's stored and failed instances, against what was sent."""
    sent = [str(ds.SOPInstanceUID) for ds in datasets]
    answer = answer if answer is not None else Dataset()
    said_stored = {str(item.get("ReferencedSOPInstanceUID", "")) for item in answer.get("ReferencedSOPSequence", [])}
    failed = [item for item in answer.get("FailedSOPSequence", [])]
    stored = [uid for uid in sent if uid in said_stored]
    if failed or len(stored) != len(sent):
        by_uid = {str(ds.SOPInstanceUID): ds for ds in datasets}
        names = [_name(by_uid[uid]) for uid in sent if uid not in said_stored]
        reasons = sorted({f"0x{int(item.FailureReason):04X}" for item in failed if "FailureReason" in item})
        raise PacsError(
            f"{where} did not store the {', '.join(names) or 'objects'}"
            + (f" (failure reason {', '.join(reasons)})" if reasons else "")
            + f". {_stored_before(stored, len(sent))}"
        )
    warnings = [
        f"{UID(str(item.get('ReferencedSOPClassUID', ''))).name}: stored with warning 0x{int(item.WarningReason):04X}"
        for item in answer.get("ReferencedSOPSequence", [])
        if "WarningReason" in item
    ]
    logger.info("stored %d objects by STOW-RS", len(stored))
    return SendReport(where, "dicomweb", tuple(stored), tuple(warnings))
