"""Tests of core.io.numbers: header and table values as finite floats, or None."""

from __future__ import annotations

import math

import pytest
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, DSfloat

from core.io.numbers import dicom_number, finite_float


@pytest.mark.parametrize(
    ("value", "expected"),
    [("12.5", 12.5), (" -3 ", -3.0), (7, 7.0), (None, None), ("", None), ("abc", None), ("nan", None), ("inf", None)],
)
def test_finite_float(value: object, expected: float | None) -> None:
    assert finite_float(value) == expected


def test_finite_float_refuses_infinity_and_nan_numbers() -> None:
    assert finite_float(math.inf) is None
    assert finite_float(float("nan")) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DSfloat("-1024"), -1024.0),
        (IS("3"), 3.0),
        (MultiValue(DSfloat, ["40", "400"]), 40.0),  # a multi-valued WindowCenter: the first one
        ([], None),
        (("x", "1"), None),  # the first item decides; a malformed one is no number
        (None, None),
    ],
)
def test_dicom_number(value: object, expected: float | None) -> None:
    assert dicom_number(value) == expected
