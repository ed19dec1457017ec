"""Streamlit-aware helpers: cached resources, session state, rendering. Pages import these;
``core`` never does."""
