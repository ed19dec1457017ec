"""Where the archive is and how to talk to it: :class:`PacsSettings`.

One protocol is chosen per deployment: ``dimse`` (C-FIND, C-GET, C-STORE with pynetdicom: the
archive's host, port and AE title, and this application's own AE title) or ``dicomweb``
(QIDO-RS, WADO-RS, STOW-RS with dicomweb-client: a base URL, and a user name and password for
HTTP basic authentication where the server asks for one). Retrieval is bounded: at most
``max_instances`` instances and ``max_bytes`` bytes per request.

Settings come from the environment (:func:`settings_from_env`, ``DASHBOARD_PACS_*``) or from a
mapping such as the ``[pacs]`` section of Streamlit's secrets (:func:`settings_from_mapping`),
never from the repository. The password is never part of ``repr`` or of any message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from core.errors import InvalidInputError

Protocol = Literal["dimse", "dicomweb"]
PROTOCOLS: tuple[Protocol, ...] = ("dimse", "dicomweb")
#: This application's AE title when the settings name none.
DEFAULT_CALLING_AET = "DASHBOARD"
#: Bounds of one retrieval: a chest CT series has a few hundred slices of about 0.5 MB.
DEFAULT_MAX_INSTANCES = 2000
DEFAULT_MAX_BYTES = 2 * 1024**3
#: Seconds to wait for a connection, an association, or a reply.
DEFAULT_TIMEOUT_S = 30.0
ENV_PREFIX = "DASHBOARD_PACS_"


@dataclass(frozen=True)
class PacsSettings:
    """How to reach one archive. ``protocol`` picks which of the two groups of fields is used."""

    protocol: Protocol
    # DIMSE
    host: str = ""
    port: int = 0
    called_aet: str = ""
    calling_aet: str = DEFAULT_CALLING_AET
    # DICOMweb
    url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)
    # Both
    max_instances: int = DEFAULT_MAX_INSTANCES
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise InvalidInputError(f"Unknown PACS protocol {self.protocol!r}: use dimse or dicomweb.")
        if self.protocol == "dimse":
            if not self.host or not 0 < self.port < 65536:
                raise InvalidInputError("A DIMSE PACS needs a host and a port (1-65535).")
            for name, aet in (("called", self.called_aet), ("calling", self.calling_aet)):
                if not aet or len(aet) > 16 or not aet.isascii() or "\\" in aet:
                    raise InvalidInputError(f"The {name} AE title must be 1-16 ASCII characters without a backslash.")
        else:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InvalidInputError("A DICOMweb PACS needs an http:// or https:// URL.")
            if parts.username or parts.password:
                raise InvalidInputError(
                    "Put the DICOMweb user name and password in their own settings, not in the URL."
                )
        if self.max_instances < 1 or self.max_bytes < 1 or self.timeout_s <= 0:
            raise InvalidInputError("The PACS limits (instances, bytes, timeout) must be positive.")

    @property
    def where(self) -> str:
        """The server in words for messages: ``"PACS ORTHANC at 10.0.0.5:4242"`` or the URL's
        scheme, host and path (never a credential)."""
        if self.protocol == "dimse":
            return f"PACS {self.called_aet} at {self.host}:{self.port}"
        parts = urlsplit(self.url)
        return f"DICOMweb server {parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}{parts.path}"


def _number(value: object, name: str, kind: type) -> int | float:
    try:
        return kind(value)  # type: ignore[no-any-return]
    except (TypeError, ValueError):
        raise InvalidInputError(f"The PACS setting {name} must be a number, not {value!r}.") from None


def settings_from_mapping(values: Mapping[str, object]) -> PacsSettings:
    """Settings from a mapping of lower-case names: ``protocol``, ``host``, ``port``,
    ``called_aet``, ``calling_aet``, ``url``, ``username``, ``password``, ``max_instances``,
    ``max_bytes``, ``timeout_s`` (the ``[pacs]`` section of Streamlit's secrets)."""
    protocol = str(values.get("protocol", "dicomweb" if values.get("url") else "dimse")).strip().lower()
    return PacsSettings(
        protocol=protocol,  # type: ignore[arg-type]  # checked in __post_init__
        host=str(values.get("host", "")).strip(),
        port=int(_number(values.get("port", 0), "port", int)),
        called_aet=str(values.get("called_aet", "")).strip(),
        calling_aet=str(values.get("calling_aet", DEFAULT_CALLING_AET)).strip(),
        url=str(values.get("url", "")).strip().rstrip("/"),
        username=str(values.get("username", "")),
        password=str(values.get("password", "")),
        max_instances=int(_number(values.get("max_instances", DEFAULT_MAX_INSTANCES), "max_instances", int)),
        max_bytes=int(_number(values.get("max_bytes", DEFAULT_MAX_BYTES), "max_bytes", int)),
        timeout_s=float(_number(values.get("timeout_s", DEFAULT_TIMEOUT_S), "timeout_s", float)),
    )


def settings_from_env(environ: Mapping[str, str] | None = None) -> PacsSettings | None:
    """Settings from ``DASHBOARD_PACS_PROTOCOL``, ``..._HOST``, ``..._PORT``, ``..._CALLED_AET``,
    ``..._CALLING_AET``, ``..._URL``, ``..._USERNAME``, ``..._PASSWORD``, ``..._MAX_INSTANCES``,
    ``..._MAX_BYTES``, ``..._TIMEOUT_S``; None when neither a host nor a URL is set."""
    env = os.environ if environ is None else environ
    values = {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}
    if not values.get("host") and not values.get("url"):
        return None
    return settings_from_mapping(values)
