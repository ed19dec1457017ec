"""COVID-19 chest imaging dashboard: page navigation, and the frame each page runs in
(``streamlit run app.py``; see ui/frame.py)."""

import os

# Before anything imports torch (ui.frame does): an OpenMP thread waiting for work sleeps instead
# of spinning, so one clinician's analysis does not burn the core other sessions need
# (benchmarks/bench_load.py, one session: server CPU per analysis 2.0 and 1.7 s -> 1.3 and 1.2 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st  # noqa: E402

from ui import frame  # noqa: E402

st.set_page_config(page_title="COVID-19 chest imaging", page_icon=":material/radiology:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/xray.py", title="X-ray triage", icon=":material/radiology:"),
        st.Page("pages/ct.py", title="CT volume", icon=":material/view_in_ar:"),
        st.Page("pages/similar.py", title="Similar cases", icon=":material/compare:"),
        st.Page("pages/trajectories.py", title="Trajectories", icon=":material/timeline:"),
        st.Page("pages/survival.py", title="Survival and prognosis", icon=":material/monitor_heart:"),
        st.Page("pages/performance.py", title="Model performance", icon=":material/analytics:"),
        st.Page("pages/library.py", title="Case library", icon=":material/folder_shared:"),
        st.Page("pages/review.py", title="Case review", icon=":material/groups:"),
    ]
)
frame.run(navigation)
