"""Sign-in: required on every page when an OpenID Connect provider is configured.

Streamlit's own ``st.login`` does the work (OIDC with the provider's discovery document, an
identity cookie signed with ``cookie_secret``); it is configured by an ``[auth]`` section in
``.streamlit/secrets.toml`` or the deployment's secrets, never in the repository (README,
"Deployment"). With such a section every page asks for sign-in before it shows anything, and
the signed-in user's name is what the case library's audit log records for their imports and
added cases. Without one the app works as before on localhost, and the log records the
account that runs the server.

One provider is configured by ``client_id``, ``client_secret`` and ``server_metadata_url`` in
``[auth]`` itself; several by one ``[auth.<name>]`` section each, and the sign-in screen then
shows one button per provider.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from core.library.audit import clean_user

__all__ = ["auth_configured", "current_user", "providers", "require_sign_in"]

_PROVIDER_KEYS = ("client_id", "server_metadata_url")


def secrets_section(name: str) -> Mapping[str, object] | None:
    """The ``[name]`` section of the deployment's secrets, or None (no such section, or no
    secrets file at all)."""
    try:
        section = st.secrets.get(name)
    except (FileNotFoundError, StreamlitSecretNotFoundError):  # no secrets file at all
        return None
    return section if isinstance(section, Mapping) else None


def _auth_section() -> Mapping[str, object] | None:
    return secrets_section("auth")


def auth_configured() -> bool:
    """Whether the deployment's secrets configure sign-in."""
    return _auth_section() is not None


def providers() -> list[str | None]:
    """The providers to offer: ``[None]`` for the one configured in ``[auth]`` itself, else the
    names of its ``[auth.<name>]`` sections."""
    section = _auth_section() or {}
    named = [str(k) for k, v in section.items() if isinstance(v, Mapping) and any(p in v for p in _PROVIDER_KEYS)]
    if named and not any(p in section for p in _PROVIDER_KEYS):
        return sorted(named)
    return [None]


def _signed_in() -> bool:
    return bool(st.user.get("is_logged_in", False))


def current_user() -> str:
    """Who the audit log records for this session: the signed-in user's name (else e-mail, else
    the provider's subject id), or ``local:`` and the server's account when sign-in is off."""
    if auth_configured():
        if not _signed_in():
            return clean_user("")
        claims = st.user
        return clean_user(claims.get("name") or claims.get("email") or claims.get("sub"))
    try:
        account = getpass.getuser()
    except (KeyError, OSError):
        account = ""
    return clean_user(f"local:{account}" if account else "")


def require_sign_in() -> None:
    """When sign-in is configured: the sign-in screen and the end of the page for a visitor who
    is not signed in; the user's name and a sign-out button in the sidebar for one who is."""
    if not auth_configured():
        return
    if _signed_in():
        with st.sidebar:
            st.caption(f"Signed in as {current_user()}")
            st.button("Sign out", key="auth_sign_out", on_click=st.logout)
        return
    st.title("COVID-19 chest imaging dashboard")
    st.info("This dashboard is shared: sign in to use it. Your name is recorded with the cases you add.")
    for provider in providers():
        label = "Sign in" if provider is None else f"Sign in with {provider}"
        key = "auth_sign_in" if provider is None else f"auth_sign_in_{provider}"
        args = () if provider is None else (provider,)
        st.button(label, key=key, type="primary", on_click=st.login, args=args)
    st.stop()
