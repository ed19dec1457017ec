"""How probabilities are written on the pages: never a certainty the model did not give."""

from __future__ import annotations

from core.text import percent


def test_percent_never_rounds_to_certainty() -> None:
    assert percent(0.9996) == "> 99.9%"
    assert percent(0.0004) == "< 0.1%"
    assert percent(0.5) == "50.0%"
    assert percent(0.999) == "99.9%"
