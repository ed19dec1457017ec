"""Send DICOM objects (the dashboard's results, :mod:`core.pacs.results`) to the archive.

:func:`send_datasets` stores them by the protocol the settings name: C-STORE over one
association (pynetdicom, proposing each object's SOP class in Explicit and Implicit VR Little
Endian) or STOW-RS in one request (dicomweb-client), through the same connection helpers as
finding and retrieving (:mod:`core.pacs._dimse`, :mod:`core.pacs._dicomweb`). It returns a
:class:`SendReport` of what the archive stored; anything not stored (server down, association
refused, a wrong AE title or password, a timeout, an object refused) is one
:class:`~core.errors.PacsError` in plain words that names the server by
:attr:`~core.pacs.settings.PacsSettings.where` and says which objects, if any, were stored before
it. Nothing is written to disk; the libraries' logging of identifiers is silenced
(:mod:`core.pacs._logging`) and the password is never part of a message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from core.errors import PacsError
from core.pacs import _dicomweb, _dimse
from core.pacs.settings import PacsSettings

__all__ = ["SendReport", "send_datasets"]

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


def _send_dimse(settings: PacsSettings, datasets: Sequence[Dataset]) -> SendReport:
    contexts = [
        (c, (ExplicitVRLittleEndian, ImplicitVRLittleEndian))
        for c in dict.fromkeys(str(ds.SOPClassUID) for ds in datasets)
    ]
    stored: list[str] = []
    warnings: list[str] = []
    with _dimse.association(settings, contexts) as assoc:
        for ds in datasets:
            try:
                status = assoc.send_c_store(ds)
            except ValueError as e:  # the archive accepted no presentation context for this SOP class
                raise PacsError(
                    f"{settings.where} does not accept {_name(ds)} objects. {_stored_before(stored, len(datasets))}"
                ) from e
            code = _dimse.status_of(status)
            if code is None:  # aborted, closed, or no answer in time
                raise PacsError(
                    f"{settings.where} did not store the {_name(ds)}: it broke off or gave no reply within "
                    f"{settings.timeout_s:g} s (may this application's AE title, {settings.calling_aet}, store "
                    f"there?). {_stored_before(stored, len(datasets))}"
                )
            if code in _STORE_WARNINGS:
                warnings.append(f"{_name(ds)}: stored, {_STORE_WARNINGS[code]} (status 0x{code:04X})")
            elif code != 0x0000:
                raise PacsError(
                    f"{settings.where} refused to store the {_name(ds)} ({_dimse.status_words(status)}). "
                    f"{_stored_before(stored, len(datasets))}"
                )
            stored.append(str(ds.SOPInstanceUID))
    logger.info("stored %d objects by C-STORE", len(stored))
    return SendReport(settings.where, "dimse", tuple(stored), tuple(warnings))


# --------------------------------------------------------------------------------------------
# DICOMweb: STOW-RS


def _send_stow(settings: PacsSettings, datasets: Sequence[Dataset]) -> SendReport:
    client = _dicomweb.client_of(settings)  # without dicomweb-client's retries
    # To /studies, not /studies/{uid}: dicomweb-client logs the study's UID when it is named.
    with _dicomweb.requests_to(settings, "the request to store the results"):
        answer = client.store_instances(list(datasets))
    return _stow_report(settings.where, datasets, answer)


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
