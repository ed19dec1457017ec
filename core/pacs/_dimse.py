"""DIMSE with pynetdicom: one association per request, and each way it can fail in plain words.

:func:`association` opens an association with the archive of a :class:`PacsSettings` and
releases it afterwards; a server that is down, a refused association (wrong called or calling
AE title), or one that does not answer within ``timeout_s`` raises one :class:`PacsError`.
:func:`broken_off` words a request that ended without its final status.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pydicom import Dataset
from pynetdicom import AE, Association, evt
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation

from core.errors import PacsError
from core.pacs._logging import quiet_network_logs
from core.pacs.settings import PacsSettings

#: The largest PDU this application accepts (pynetdicom's default is 16 kB: a 512 x 512 slice
#: would arrive in 32 PDUs; 1 MiB makes a CT series come noticeably faster).
MAX_PDU_BYTES = 1024**2

#: A-ASSOCIATE-RJ reasons (result source 1, the service user) that name an AE title.
_CALLING_AET_UNKNOWN = 3
_CALLED_AET_UNKNOWN = 7

#: Statuses of a DIMSE request still under way.
PENDING = (0xFF00, 0xFF01)

Handler = tuple[Any, Callable[..., Any]]


@contextmanager
def association(
    settings: PacsSettings,
    contexts: Sequence[tuple[str, Sequence[str] | None]],
    *,
    roles: Sequence[SCP_SCU_RoleSelectionNegotiation] = (),
    handlers: Sequence[Handler] = (),
) -> Iterator[Association]:
    """An association with the archive that proposes ``contexts`` (abstract syntax, transfer
    syntaxes or None for pynetdicom's default ones), released (or aborted) on the way out.

    Raises
    ------
    PacsError
        Nothing listens at the host and port, the archive refuses the association (an AE title
        it does not know), or it does not answer within ``settings.timeout_s``.
    """
    quiet_network_logs()
    ae = AE(ae_title=settings.calling_aet)
    ae.maximum_pdu_size = MAX_PDU_BYTES
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = settings.timeout_s
    ae.connection_timeout = settings.timeout_s
    for abstract_syntax, transfer_syntaxes in contexts:
        if transfer_syntaxes is None:
            ae.add_requested_context(abstract_syntax)
        else:
            ae.add_requested_context(abstract_syntax, list(transfer_syntaxes))
    connected: list[bool] = []
    started = time.monotonic()
    assoc = ae.associate(
        settings.host,
        settings.port,
        ae_title=settings.called_aet,
        ext_neg=list(roles) or None,
        evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True)), *handlers],
    )
    if not assoc.is_established:
        raise PacsError(_refusal(settings, assoc, bool(connected), time.monotonic() - started))
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        elif not assoc.is_aborted:
            assoc.abort()


def _refusal(settings: PacsSettings, assoc: Association, connected: bool, elapsed_s: float) -> str:
    where = settings.where
    if not connected:
        return (
            f"{where} cannot be reached: nothing answers at that host and port "
            "(is the server running, and are the host and port right?)."
        )
    if assoc.is_rejected:
        reply = assoc.acceptor.primitive
        reason = getattr(reply, "diagnostic", None)
        if getattr(reply, "result_source", None) == 1 and reason == _CALLED_AET_UNKNOWN:
            return f"{where} refused the association: it does not answer to the AE title {settings.called_aet}."
        if getattr(reply, "result_source", None) == 1 and reason == _CALLING_AET_UNKNOWN:
            return (
                f"{where} refused the association: it does not know this application's AE title {settings.calling_aet}."
            )
        return f"{where} refused the association ({getattr(reply, 'reason_str', 'no reason given')})."
    if elapsed_s >= 0.9 * settings.timeout_s:
        return f"{where} did not answer the association request within {settings.timeout_s:g} s."
    return f"{where} broke off the association before it began (it accepted none of the services asked for)."


def broken_off(settings: PacsSettings, assoc: Association, what: str, silent_s: float, *, first: bool = True) -> str:
    """The message for a request (``what``: "the search", "the transfer after 3 of 16
    instances") that ended without a final status, ``silent_s`` after the archive's last
    answer: it aborted or closed the connection, or stopped answering. ``first``: before any
    answer to the request, when an archive that refuses this application's AE title does so."""
    if assoc.is_aborted or silent_s < 0.9 * settings.timeout_s:
        if not first:
            return f"{settings.where} broke off {what}."
        return (
            f"{settings.where} broke off {what} (is this application's AE title {settings.calling_aet} "
            "allowed to query and retrieve there?)."
        )
    return f"{settings.where} stopped answering during {what} (no reply within {settings.timeout_s:g} s)."


def status_of(response: Dataset | None) -> int | None:
    """The Status of a DIMSE response, None when there was none (aborted or timed out)."""
    if response is None or "Status" not in response:
        return None
    return int(response.Status)


def status_words(response: Dataset) -> str:
    """``status 0xA700`` with the archive's error comment when it gave one."""
    words = f"status 0x{int(response.Status):04X}"
    comment = str(response.get("ErrorComment", "") or "").strip()
    return f"{words}: {comment}" if comment else words
