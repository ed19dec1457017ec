"""COVID-19 chest imaging core library.

A plain Python library: readers, models, explanations, training and analyses. It never imports
streamlit; every page action is also reachable as ``python -m core ...``.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
