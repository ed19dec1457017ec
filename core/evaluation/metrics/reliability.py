"""Calibration numbers: reliability bins, the top-label expected calibration error, and applying a
temperature (fitted by :mod:`core.evaluation.calibration`)."""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import softmax

from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.metrics.checks import binary_labels, class_indices, finite_matrix

#: Bounds of the temperature searched for a softmax output by :func:`core.evaluation.calibration.fit_temperature`.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


class ReliabilityBin(NamedTuple):
    """One non-empty confidence bin of a reliability diagram: ``bin_low < confidence <= bin_high``."""

    bin_low: float
    bin_high: float
    mean_confidence: float
    accuracy: float
    count: int


def _top_label(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and correctness, float64 (N,) each. (N,) probs are P(positive)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        y = binary_labels(y_true)
        p = np.stack([1.0 - p, p], axis=1)
    elif p.ndim == 2:
        y = class_indices(y_true, p.shape[1])
    else:
        raise InvalidInputError(f"probs must be (cases,) or (cases, classes); got shape {p.shape}.")
    p = finite_matrix(p, y.size, p.shape[1], "probs")
    if y.size == 0:
        raise InsufficientDataError("A calibration error needs at least one case.")
    if p.min() < 0.0 or p.max() > 1.0 or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise InvalidInputError("probs must be probabilities in [0, 1], each row summing to 1 (not logits).")
    return p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)


def reliability_bins(y_true: npt.ArrayLike, probs: npt.ArrayLike, n_bins: int = 15) -> list[ReliabilityBin]:
    """The reliability diagram: per equal-width confidence bin, mean confidence against accuracy.

    Confidence is the top-label probability (the predicted class's); accuracy the fraction of
    those predictions that are right. Bins are ``(b / n_bins, (b + 1) / n_bins]`` (the first
    also holds 0), as scikit-learn's ``calibration_curve`` cuts them.

    Parameters
    ----------
    y_true : (N,) 0/1 when ``probs`` is (N,) P(positive); else (N,) class indices
    probs : (N,) P(positive), taken as the two classes (1 - p, p), or (N, K) probabilities
    n_bins : int

    Returns
    -------
    list of ReliabilityBin
        The non-empty bins in increasing confidence.
    """
    if n_bins < 1:
        raise InvalidInputError(f"n_bins must be at least 1; got {n_bins}.")
    confidence, correct = _top_label(y_true, probs)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.searchsorted(edges[1:-1], confidence, side="left")
    counts = np.bincount(which, minlength=n_bins)
    conf_sum = np.bincount(which, weights=confidence, minlength=n_bins)
    correct_sum = np.bincount(which, weights=correct, minlength=n_bins)
    return [
        ReliabilityBin(
            bin_low=float(edges[b]),
            bin_high=float(edges[b + 1]),
            mean_confidence=float(conf_sum[b] / counts[b]),
            accuracy=float(correct_sum[b] / counts[b]),
            count=int(counts[b]),
        )
        for b in np.flatnonzero(counts)
    ]


def expected_calibration_error(y_true: npt.ArrayLike, probs: npt.ArrayLike, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017), in [0, 1].

    The bins of :func:`reliability_bins`, each's gap between accuracy and mean confidence
    weighted by its share of the cases.

    Parameters
    ----------
    y_true : (N,) 0/1 when ``probs`` is (N,) P(positive); else (N,) class indices
    probs : (N,) P(positive), taken as two classes, or (N, K) probabilities
    n_bins : int
    """
    bins = reliability_bins(y_true, probs, n_bins)
    n = sum(b.count for b in bins)
    return float(sum(b.count / n * abs(b.accuracy - b.mean_confidence) for b in bins))


def apply_temperature(logits: npt.ArrayLike, temperature: float) -> np.ndarray:
    """softmax(logits / T) along the last axis: (..., K) probabilities, each row summing to 1."""
    if not (math.isfinite(temperature) and temperature > 0.0):
        raise InvalidInputError(f"The temperature must be a positive number; got {temperature}.")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0:
        raise InvalidInputError("logits must have a class axis.")
    return softmax(z / temperature, axis=-1)
