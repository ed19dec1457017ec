"""Numbers read from headers and tables: a value as a finite float, or None when it is not one.

The DICOM readers (:mod:`core.io.images`, :mod:`core.io.ct_series`) and the library's CSV
importers share these, so an empty, malformed, infinite or NaN value means the same everywhere.
"""

from __future__ import annotations

import math
from typing import Any

from pydicom.multival import MultiValue


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float; None for None, text that is not a number, NaN or infinity."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def dicom_number(value: Any) -> float | None:
    """A DS/IS value (possibly multi-valued, empty or malformed) as a finite float, or None;
    of a multi-value, its first item."""
    if isinstance(value, (list, tuple, MultiValue)):
        if len(value) == 0:
            return None
        value = value[0]
    return finite_float(value)
