"""The frame every page runs in: navigation, title, disclaimer, registry and models, and errors
in plain words.

A page starts with ``registry = frame.page("Title")`` (or :func:`heading` when it needs no
model) and loads models with :func:`model`. Whatever ``core`` raises on purpose is a
:class:`~core.errors.DashboardError`, whose message is written for a clinician: the frame shows
it with ``st.error`` and ends the page there. ``app.py`` runs the chosen page through
:func:`run`, so an error a page body lets escape ends the same way instead of as a traceback,
and an error nobody expected (a bug) is shown as a plain sentence with a reference, while the
server's log gets its type and stack, not its message: a third-party message can quote a file
name or a value, which may be patient data.

``st.stop()`` and ``st.rerun()`` are Streamlit's own exceptions (``ScriptControlException``
derives from ``BaseException``, not ``Exception``), so they pass through the frame untouched.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from core.console import configure_console
from core.errors import DashboardError
from core.models.registry import LoadedModel, ModelRegistry
from core.text import DISCLAIMER
from ui import resources
from ui.auth import require_sign_in
from ui.navigation import use_app_navigation

logger = logging.getLogger(__name__)


def unexpected_message(reference: str) -> str:
    """What a clinician reads when a page fails in a way the dashboard did not foresee."""
    return (
        "Something went wrong on this page that the dashboard did not expect, so it stopped here. "
        "Nothing was saved from this step. If it happens again, tell the team that runs the dashboard "
        f"and quote reference {reference}: the technical detail is in the server's log under it."
    )


@contextmanager
def plain_errors() -> Iterator[None]:
    """Show a :class:`DashboardError` raised in the block as ``st.error`` and end the page."""
    try:
        yield
    except DashboardError as e:
        st.error(str(e))
        st.stop()


def heading(title: str, *, disclaimer_as_warning: bool = False) -> None:
    """The app's navigation, sign-in where it is configured (nothing else is shown to a visitor
    who is not signed in), the page's title and the research-use disclaimer (a caption, or a
    warning box on the home page)."""
    use_app_navigation()
    require_sign_in()
    st.title(title)
    if disclaimer_as_warning:
        st.warning(DISCLAIMER, icon=":material/warning:")
    else:
        st.caption(DISCLAIMER)


def page(title: str, *, disclaimer_as_warning: bool = False) -> ModelRegistry:
    """:func:`heading`, then the model registry (a plain error and the end of the page when its
    manifest cannot be read)."""
    heading(title, disclaimer_as_warning=disclaimer_as_warning)
    with plain_errors():
        return resources.registry()


def model(model_id: str) -> LoadedModel:
    """A loaded model, or a plain error and the end of the page when it is missing, fails its
    sha256 check or does not load."""
    with plain_errors():
        return resources.model(model_id)


def _redacted_traceback(error: BaseException) -> str:
    """Where ``error`` (and each error it was raised from or while handling) happened and its
    type, without its message."""
    parts = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = f"{type(current).__module__}.{type(current).__qualname__}"
        parts.append("".join(traceback.format_tb(current.__traceback__)) + f"{kind} (message not logged)\n")
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    return "\nwhich led to:\n".join(reversed(parts))


def run(chosen: StreamlitPage) -> None:
    """Run the page ``st.navigation`` chose; what escapes it ends as a plain ``st.error``."""
    configure_console(debug=st.get_option("logger.level") == "debug")  # no DICOM library traceback in the server's log
    try:
        chosen.run()
    except DashboardError as e:
        st.error(str(e))
    except Exception as e:  # the last line of defence: no traceback reaches a clinician
        reference = uuid.uuid4().hex[:8]
        logger.error(
            "Unexpected %s on page %r (reference %s); the stack, oldest error first:\n%s",
            type(e).__qualname__,
            chosen.title,
            reference,
            _redacted_traceback(e),
        )
        st.error(unexpected_message(reference))
