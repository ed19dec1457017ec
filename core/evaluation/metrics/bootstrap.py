"""Percentile bootstrap intervals of a metric, resampling cases or whole patients."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.metrics.checks import check_alpha

logger = logging.getLogger(__name__)


#: A metric of (y_true, score-or-probs) returning one number, as :func:`bootstrap_ci` calls it.
Metric = Callable[[np.ndarray, np.ndarray], float]


class ConfidenceInterval(NamedTuple):
    """A point estimate with the bounds of its percentile bootstrap interval."""

    point: float
    low: float
    high: float


def _resampler(n: int, groups: npt.ArrayLike | None, rng: np.random.Generator) -> Callable[[], np.ndarray]:
    """A function drawing one bootstrap resample as row indices: rows, or whole groups."""
    if groups is None:
        return lambda: rng.integers(0, n, size=n)
    g = np.asarray(groups)
    if g.shape != (n,):
        raise InvalidInputError(f"groups must give one patient id per case, shape ({n},); got {g.shape}.")
    _, codes = np.unique(g, return_inverse=True)
    codes = codes.reshape(-1)
    order = np.argsort(codes, kind="stable")  # rows sorted by group: each group is one slice
    sizes = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    n_groups = sizes.size

    def draw() -> np.ndarray:
        chosen = rng.integers(0, n_groups, size=n_groups)
        lengths = sizes[chosen]
        out_starts = np.cumsum(lengths) - lengths
        # Position j of the output, inside the copy of group chosen[i], reads order[starts + offset].
        offsets = np.arange(lengths.sum()) - np.repeat(out_starts, lengths)
        return order[np.repeat(starts[chosen], lengths) + offsets]

    return draw


def _class_check(y: np.ndarray) -> Callable[[np.ndarray], bool]:
    """A test of whether a resample (row indices) holds every class that ``y`` holds.

    1-D ``y``: every distinct value; 2-D (multi-label): both values in every column that has both.
    """
    if y.ndim == 1:
        _, codes = np.unique(y, return_inverse=True)
        codes = codes.reshape(-1)
        k = int(codes.max()) + 1 if codes.size else 0
        return lambda idx: bool(np.bincount(codes[idx], minlength=k).all())
    flat = y.reshape(y.shape[0], -1).astype(np.float64)
    full = flat.sum(axis=0)
    mixed = (full > 0) & (full < flat.shape[0])

    def check(idx: np.ndarray) -> bool:
        sums = flat[idx][:, mixed].sum(axis=0)
        return bool(((sums > 0) & (sums < idx.size)).all())

    return check


def bootstrap_values(
    statistic: Callable[[np.ndarray], float],
    y: np.ndarray,
    *,
    n_boot: int,
    seed: int,
    groups: npt.ArrayLike | None,
    require_all_classes: bool,
) -> np.ndarray:
    """``statistic`` (of row indices) on each of ``n_boot`` seeded resamples, float64 (n_used,)."""
    if n_boot < 2:
        raise InvalidInputError(f"n_boot must be at least 2; got {n_boot}.")
    rng = np.random.default_rng(seed)
    draw = _resampler(y.shape[0], groups, rng)
    complete = _class_check(y) if require_all_classes else None
    values = np.empty(n_boot, dtype=np.float64)
    used = 0
    for _ in range(n_boot):
        idx = draw()
        if complete is not None and not complete(idx):
            continue
        values[used] = statistic(idx)
        used += 1
    skipped = n_boot - used
    if skipped > n_boot / 2:
        unit = "patients" if groups is not None else "cases"
        raise InsufficientDataError(
            f"Too few {unit} of some class for a bootstrap interval: {skipped} of {n_boot} resamples "
            "lacked a class the metric needs. Evaluate on more data."
        )
    if skipped:
        logger.info("Bootstrap: skipped %d of %d resamples lacking a class.", skipped, n_boot)
    return values[:used]


def bootstrap_ci(
    metric: Metric,
    y: npt.ArrayLike,
    p: npt.ArrayLike,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: npt.ArrayLike | None = None,
    require_all_classes: bool = True,
) -> ConfidenceInterval:
    """A metric with its percentile bootstrap interval.

    Parameters
    ----------
    metric : callable
        ``metric(y, p) -> float`` on a subset of rows, e.g. :func:`roc_auc` (scikit-learn's
        ``roc_auc_score`` works too, at about ten times the cost).
    y : (N,) or (N, K)
        Labels as the metric takes them.
    p : (N,) or (N, K)
        Scores or probabilities as the metric takes them.
    n_boot : int
        Number of resamples.
    alpha : float
        One minus the coverage: 0.05 gives the 2.5th and 97.5th percentiles.
    seed : int
        Seed of the resampling; the same seed gives the same interval.
    groups : (N,), optional
        Patient id of each row. Given, whole patients are resampled (all of a patient's rows
        together), so that several images of one patient do not narrow the interval.
    require_all_classes : bool
        Skip resamples lacking a class that ``y`` holds (a one-class resample has no AUC). If
        more than half are skipped, :class:`~core.errors.InsufficientDataError` is raised.

    Returns
    -------
    ConfidenceInterval
        ``(point, low, high)``: the metric on all rows and the interval's bounds.
    """
    check_alpha(alpha)
    y_arr = np.asarray(y)
    p_arr = np.asarray(p)
    if y_arr.ndim == 0 or p_arr.ndim == 0 or y_arr.shape[0] != p_arr.shape[0]:
        raise InvalidInputError(f"y and p must have one row per case; got shapes {y_arr.shape} and {p_arr.shape}.")
    point = float(metric(y_arr, p_arr))
    values = bootstrap_values(
        lambda idx: float(metric(y_arr[idx], p_arr[idx])),
        y_arr,
        n_boot=n_boot,
        seed=seed,
        groups=groups,
        require_all_classes=require_all_classes,
    )
    low, high = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return ConfidenceInterval(point=point, low=float(low), high=float(high))
