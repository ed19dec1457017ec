"""Keep every session on the app's own navigation (``app.py``'s ``st.navigation``).

Streamlit decides when the server starts whether the app "uses a pages directory" (it does:
``pages/`` is fixed by the design card) and, until ``app.py`` has called ``st.navigation`` once
in this process, serves the legacy navigation built from the folder. So the first visitor to a
deep link such as ``/xray`` after a restart would get the bare page script: no page config, a
sidebar listing raw file names. Every page's frame (:func:`ui.frame.heading`) calls
:func:`use_app_navigation` first; in that one case it switches the process to
``st.navigation`` and reruns through ``app.py``.
"""

from __future__ import annotations

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager


def use_app_navigation() -> None:
    """Rerun through ``app.py`` when this process still serves the legacy folder navigation."""
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
