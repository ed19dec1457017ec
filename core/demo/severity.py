"""What both phantom generators accept: one of the demo's three labels and a severity in [0, 1]."""

from __future__ import annotations

from core.labels import XRAY_LABELS


def check_label_severity(label: str, severity: float) -> float:
    """``severity`` as a float, after checking ``label`` is a demo label and the severity a
    number in [0, 1] (NaN refused); ValueError otherwise."""
    if label not in XRAY_LABELS:
        raise ValueError(f"Unknown label {label!r}; expected one of {list(XRAY_LABELS)}.")
    try:
        value = float(severity)
    except (TypeError, ValueError) as e:
        raise ValueError(f"Severity must be a number in [0, 1], got {severity!r}.") from e
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"Severity must be in [0, 1], got {severity!r}.")
    return value
