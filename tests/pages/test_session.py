from __future__ import annotations

from streamlit.testing.v1 import AppTest


def test_memo_computes_once_and_forgets_oldest_beyond_its_byte_budget() -> None:
    script = """
import numpy as np
import streamlit as st
import ui.session as session

session.MAX_BYTES = 3 * 8 * 1000  # three arrays of 1000 float64
calls = st.session_state.setdefault("calls", [])

def make(i):
    calls.append(i)
    return np.zeros(1000)

for i in range(5):
    session.memo(("a", i), make, i)
session.memo(("a", 4), make, 4)   # still there: not recomputed
session.memo(("a", 0), make, 0)   # forgotten: recomputed
st.text(f"{len(st.session_state['_memo'])} {calls}")
"""
    at = AppTest.from_string(script).run()
    assert not at.exception
    assert at.text[0].value == "3 [0, 1, 2, 3, 4, 0]"
