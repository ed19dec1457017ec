"""DICOMweb with dicomweb-client: the client of a :class:`PacsSettings`, and each way a request
can fail in plain words.

requests' own errors quote the URL, query string included (a patient's id or name), so they are
never chained into a :class:`PacsError`: the message says what the cause was instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.errors import InvalidDicomError

from core.errors import PacsError
from core.pacs._logging import dicomweb_requests
from core.pacs.settings import PacsSettings


class _WildcardSession(requests.Session):
    """Sends QIDO-RS's wildcards ``*`` and ``?`` as they are in the query string.

    dicomweb-client percent-encodes every character of a search value that is not a letter
    or digit, and some archives (Orthanc 1.10 among them) take ``%2A`` for a star to match,
    not for the wildcard; PS3.18's examples write the wildcards unencoded, which is legal in a
    query string. A value's own ``%`` arrives as ``%25``, so no other text is changed.
    """

    def send(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        url = request.url or ""
        if "?" in url:
            base, query = url.split("?", 1)
            request.url = base + "?" + query.replace("%2A", "*").replace("%3F", "?")
        return super().send(request, **kwargs)


def client_of(settings: PacsSettings) -> DICOMwebClient:
    """A client of the server at ``settings.url``, with HTTP basic authentication when the
    settings name a user, ``settings.timeout_s`` on every connection and read, and no retry."""
    session = _WildcardSession()
    if settings.username or settings.password:
        session.auth = (settings.username, settings.password)
    client = DICOMwebClient(settings.url, session=session, timeout=settings.timeout_s)
    # Its default retries each failed request 5 times with exponential waits, connection
    # errors included: a server that is down would take minutes, not one timeout, to report.
    client.set_http_retry_params(retry=False)
    return client


def http_failure(settings: PacsSettings, error: Exception, what: str) -> str:
    """The message for ``error`` raised by a request (``what``: "the search", "the series' 3rd
    instance") to the server of ``settings``."""
    where = settings.where
    if isinstance(error, requests.Timeout):
        return f"{where} did not answer {what} within {settings.timeout_s:g} s."
    if isinstance(error, requests.HTTPError) and error.response is not None:
        code = error.response.status_code
        if code in (401, 403):
            return f"{where} refused the user name or password (HTTP {code})."
        reason = (error.response.reason or "").strip()
        return f"{where} answered {what} with HTTP {code}{f' {reason}' if reason else ''}."
    if isinstance(error, requests.exceptions.ChunkedEncodingError | requests.exceptions.ContentDecodingError):
        return f"{where} broke off {what}."
    if isinstance(error, requests.ConnectionError):
        return (
            f"{where} cannot be reached during {what} (is the server running, and are the URL's host and port right?)."
        )
    if isinstance(error, requests.RequestException):
        return f"{where} could not be asked for {what} ({type(error).__name__})."
    # dicomweb-client raises ValueError (and pydicom its own errors) on an answer it cannot decode.
    return f"{where} sent an answer to {what} that is not DICOM ({type(error).__name__})."


@contextmanager
def requests_to(settings: PacsSettings, what: str) -> Iterator[None]:
    """Requests made inside it log no URL, and any failure becomes one :class:`PacsError`."""
    with dicomweb_requests():
        try:
            yield
        except PacsError:
            raise
        except (requests.RequestException, ValueError, InvalidDicomError) as e:
            raise PacsError(http_failure(settings, e, what)) from None
