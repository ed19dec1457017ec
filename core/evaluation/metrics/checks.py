"""Checks of the arrays every metric takes: malformed input raises
:class:`~core.errors.InvalidInputError`, a set lacking a class a number needs
:class:`~core.errors.InsufficientDataError`."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from core.errors import InsufficientDataError, InvalidInputError


def binary_labels(y_true: npt.ArrayLike, name: str = "y_true") -> np.ndarray:
    """``y_true`` as int64 (N,) of 0/1, or InvalidInputError."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise InvalidInputError(f"{name} must be one label per case (1-D); got shape {y.shape}.")
    if y.size and not np.isin(y, (0, 1)).all():
        raise InvalidInputError(f"{name} must hold 0 (negative) and 1 (positive) only.")
    return y.astype(np.int64)


def finite_scores(score: npt.ArrayLike, n: int, name: str = "score") -> np.ndarray:
    """``score`` as finite float64 (n,), or InvalidInputError."""
    s = np.asarray(score, dtype=np.float64)
    if s.shape != (n,):
        raise InvalidInputError(f"{name} must have one value per case, shape ({n},); got {s.shape}.")
    if not np.isfinite(s).all():
        raise InvalidInputError(f"{name} holds missing or infinite values.")
    return s


def class_indices(y_true: npt.ArrayLike, k: int) -> np.ndarray:
    """``y_true`` as int64 (N,) class indices in [0, k), or InvalidInputError."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise InvalidInputError(f"y_true must be one class index per case (1-D); got shape {y.shape}.")
    if y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= k):
        raise InvalidInputError(f"y_true must hold class indices 0..{k - 1}.")
    return y.astype(np.int64)


def finite_matrix(values: npt.ArrayLike, n: int, k: int, name: str) -> np.ndarray:
    """``values`` as finite float64 (n, k), or InvalidInputError."""
    m = np.asarray(values, dtype=np.float64)
    if m.shape != (n, k):
        raise InvalidInputError(f"{name} must have shape ({n}, {k}) (cases, classes); got {m.shape}.")
    if not np.isfinite(m).all():
        raise InvalidInputError(f"{name} holds missing or infinite values.")
    return m


def require_both_classes(y: np.ndarray, what: str) -> None:
    """InsufficientDataError, naming ``what``, unless 0/1 ``y`` holds both classes."""
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise InsufficientDataError(
            f"{what} needs at least one positive and one negative case; "
            f"this set has {n_pos} positive(s) among {y.size} case(s)."
        )


def check_alpha(alpha: float) -> None:
    """InvalidInputError unless ``alpha`` (one minus an interval's coverage) lies in (0, 1)."""
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must lie strictly between 0 and 1; got {alpha}.")
