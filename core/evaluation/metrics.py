"""The numbers of the Model performance page, as plain functions of arrays.

Curves, confusion matrices and average precision come from scikit-learn (``roc_curve``,
``precision_recall_curve``, ``average_precision_score``, ``confusion_matrix``); written here is
only what it lacks: a rank-based ROC AUC fast enough to bootstrap, percentile bootstrap intervals
(optionally resampling whole patients), top-label calibration error, multi-class temperature
scaling, DeLong's test for two correlated AUCs (Sun & Xu 2014) and a paired bootstrap of an AUC
difference, and operating points.

Conventions: ``y_true`` holds 0/1 (binary), class indices 0..K-1 (multi-class, in ``labels``
order) or an (N, K) 0/1 matrix (multi-label); ``score`` is (N,) where larger means more likely
positive; ``probs`` is (N, K) class probabilities or (N,) P(positive); ``logits`` is (N, K).
A set lacking a class that a number needs raises :class:`~core.errors.InsufficientDataError`;
malformed arrays raise :class:`~core.errors.InvalidInputError`.

Examples
--------
>>> curve = roc(y, p)
>>> point, low, high = bootstrap_ci(roc_auc, y, p, groups=patient_ids)
>>> result = delong_test(y, p_resnet, p_densenet)
>>> result.p_value
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from scipy.stats import norm
from sklearn import metrics as skm

from core.errors import InsufficientDataError, InvalidInputError

logger = logging.getLogger(__name__)

#: A metric of (y_true, score-or-probs) returning one number, as :func:`bootstrap_ci` calls it.
Metric = Callable[[np.ndarray, np.ndarray], float]

#: Bounds of the temperature searched by :func:`fit_temperature_multiclass`.
TEMPERATURE_BOUNDS: tuple[float, float] = (0.05, 20.0)


# --------------------------------------------------------------------------------------------
# Typed results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RocCurve:
    """A ROC curve as scikit-learn's ``roc_curve`` gives it.

    ``fpr``, ``tpr`` and ``thresholds`` are float64 (M,), thresholds decreasing; the first
    threshold is ``inf`` (no case called positive). ``auc`` is the area under the curve.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float


@dataclass(frozen=True, eq=False)
class PrCurve:
    """A precision-recall curve as scikit-learn's ``precision_recall_curve`` gives it.

    ``precision`` and ``recall`` are float64 (M + 1,), recall decreasing to 0 (the last point,
    precision 1, has no threshold); ``thresholds`` is (M,) increasing. ``average_precision`` is
    scikit-learn's step-wise area (not the trapezoid, which is optimistic).
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float


@dataclass(frozen=True, eq=False)
class ConfusionMatrix:
    """Counts with rows the true class and columns the predicted class, both in ``labels`` order.

    ``counts`` is int64 (K, K); ``row_percent`` is float64 (K, K), each row's counts as a
    percentage of that row's total (NaN for a class with no cases).
    """

    labels: tuple[str, ...]
    counts: np.ndarray
    row_percent: np.ndarray


class ConfidenceInterval(NamedTuple):
    """A point estimate with the bounds of its percentile bootstrap interval."""

    point: float
    low: float
    high: float


class ReliabilityBin(NamedTuple):
    """One non-empty confidence bin of a reliability diagram: ``bin_low < confidence <= bin_high``."""

    bin_low: float
    bin_high: float
    mean_confidence: float
    accuracy: float
    count: int


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of AUC(a) - AUC(b) on the same cases.

    ``difference`` is ``auc_a - auc_b``; ``z`` its ratio to ``std_error``; ``p_value`` is
    two-sided; ``ci_low`` / ``ci_high`` bound the Wald interval of the difference.
    """

    auc_a: float
    auc_b: float
    difference: float
    z: float
    p_value: float
    ci_low: float
    ci_high: float
    std_error: float


class PairedBootstrapResult(NamedTuple):
    """AUC(a) - AUC(b) with its percentile bootstrap interval and a two-sided p-value."""

    difference: float
    low: float
    high: float
    p_value: float


# --------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------


def _binary_labels(y_true: npt.ArrayLike, name: str = "y_true") -> np.ndarray:
    """``y_true`` as int64 (N,) of 0/1, or InvalidInputError."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise InvalidInputError(f"{name} must be one label per case (1-D); got shape {y.shape}.")
    if y.size and not np.isin(y, (0, 1)).all():
        raise InvalidInputError(f"{name} must hold 0 (negative) and 1 (positive) only.")
    return y.astype(np.int64)


def _scores(score: npt.ArrayLike, n: int, name: str = "score") -> np.ndarray:
    """``score`` as finite float64 (n,), or InvalidInputError."""
    s = np.asarray(score, dtype=np.float64)
    if s.shape != (n,):
        raise InvalidInputError(f"{name} must have one value per case, shape ({n},); got {s.shape}.")
    if not np.isfinite(s).all():
        raise InvalidInputError(f"{name} holds missing or infinite values.")
    return s


def _class_indices(y_true: npt.ArrayLike, k: int) -> np.ndarray:
    """``y_true`` as int64 (N,) class indices in [0, k), or InvalidInputError."""
    y = np.asarray(y_true)
    if y.ndim != 1:
        raise InvalidInputError(f"y_true must be one class index per case (1-D); got shape {y.shape}.")
    if y.size and (not np.all(np.equal(np.mod(y, 1), 0)) or y.min() < 0 or y.max() >= k):
        raise InvalidInputError(f"y_true must hold class indices 0..{k - 1}.")
    return y.astype(np.int64)


def _matrix(values: npt.ArrayLike, n: int, k: int, name: str) -> np.ndarray:
    """``values`` as finite float64 (n, k), or InvalidInputError."""
    m = np.asarray(values, dtype=np.float64)
    if m.shape != (n, k):
        raise InvalidInputError(f"{name} must have shape ({n}, {k}) (cases, classes); got {m.shape}.")
    if not np.isfinite(m).all():
        raise InvalidInputError(f"{name} holds missing or infinite values.")
    return m


def _require_both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        raise InsufficientDataError(
            f"{what} needs at least one positive and one negative case; "
            f"this set has {n_pos} positive(s) among {y.size} case(s)."
        )


# --------------------------------------------------------------------------------------------
# Curves and counts
# --------------------------------------------------------------------------------------------


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` (N,), ties sharing the mean of the positions they occupy."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    n = xs.size
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = xs[1:] != xs[:-1]
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], n)  # exclusive: the run occupies 0-based positions starts..ends-1
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def _auc_from_ranks(ranks: np.ndarray, positive: np.ndarray, n_pos: int, n_neg: int) -> float:
    # Mann-Whitney: the positives' rank sum less its minimum, over the number of pairs.
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def roc_auc(y_true: npt.ArrayLike, score: npt.ArrayLike) -> float:
    """Area under the ROC curve of one binary task, from midranks (ties count one half).

    Equal to scikit-learn's ``roc_auc_score`` and about ten times faster on small sets, which is
    what :func:`bootstrap_ci` needs.

    Parameters
    ----------
    y_true : (N,) 0/1
    score : (N,) float, larger meaning more likely positive
    """
    y = _binary_labels(y_true)
    s = _scores(score, y.size)
    _require_both_classes(y, "An ROC AUC")
    positive = y == 1
    n_pos = int(positive.sum())
    return _auc_from_ranks(_midranks(s), positive, n_pos, y.size - n_pos)


def roc(y_true: npt.ArrayLike, score: npt.ArrayLike) -> RocCurve:
    """The ROC curve and its AUC for one binary task.

    Parameters
    ----------
    y_true : (N,) 0/1
    score : (N,) float, larger meaning more likely positive

    Returns
    -------
    RocCurve
        scikit-learn's ``roc_curve`` (intermediate collinear points dropped) and ``roc_auc_score``.
    """
    y = _binary_labels(y_true)
    s = _scores(score, y.size)
    _require_both_classes(y, "A ROC curve")
    fpr, tpr, thresholds = skm.roc_curve(y, s)
    return RocCurve(fpr=fpr, tpr=tpr, thresholds=thresholds, auc=float(skm.roc_auc_score(y, s)))


def pr(y_true: npt.ArrayLike, score: npt.ArrayLike) -> PrCurve:
    """The precision-recall curve and average precision for one binary task.

    Parameters
    ----------
    y_true : (N,) 0/1, with at least one positive
    score : (N,) float, larger meaning more likely positive
    """
    y = _binary_labels(y_true)
    s = _scores(score, y.size)
    if not y.any():
        raise InsufficientDataError("A precision-recall curve needs at least one positive case; this set has none.")
    precision, recall, thresholds = skm.precision_recall_curve(y, s)
    return PrCurve(
        precision=precision,
        recall=recall,
        thresholds=thresholds,
        average_precision=float(skm.average_precision_score(y, s)),
    )


def _per_column(
    targets: np.ndarray,
    probs: np.ndarray,
    labels: Sequence[str],
    curve: Callable[[np.ndarray, np.ndarray], Any],
    *,
    needs_negatives: bool,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for j, name in enumerate(labels):
        n_pos = int(targets[:, j].sum())
        if n_pos == 0 or (needs_negatives and n_pos == targets.shape[0]):
            # A label the set cannot score is left out rather than failing the others; the
            # caller sees it missing from the keys.
            logger.info("No curve for %r: %d positive(s) among %d case(s).", name, n_pos, targets.shape[0])
            continue
        out[str(name)] = curve(targets[:, j], probs[:, j])
    return out


def _one_hot(y_true: npt.ArrayLike, probs: npt.ArrayLike, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    k = len(labels)
    y = _class_indices(y_true, k)
    p = _matrix(probs, y.size, k, "probs")
    return np.eye(k, dtype=np.int64)[y], p


def _multilabel(targets: npt.ArrayLike, probs: npt.ArrayLike, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(targets)
    k = len(labels)
    if t.ndim != 2 or t.shape[1] != k:
        raise InvalidInputError(f"targets must have shape (cases, {k}); got {t.shape}.")
    if t.size and not np.isin(t, (0, 1)).all():
        raise InvalidInputError("targets must hold 0 (absent) and 1 (present) only.")
    return t.astype(np.int64), _matrix(probs, t.shape[0], k, "probs")


def one_vs_rest_roc(y_true: npt.ArrayLike, probs: npt.ArrayLike, labels: Sequence[str]) -> dict[str, RocCurve]:
    """One ROC curve per class of a multi-class model, that class against all others.

    Parameters
    ----------
    y_true : (N,) int class indices in ``labels`` order
    probs : (N, K) class probabilities
    labels : K class names

    Returns
    -------
    dict
        Class name -> :class:`RocCurve`, in ``labels`` order; a class absent from ``y_true``
        (or the only class present) has no curve and is left out.
    """
    t, p = _one_hot(y_true, probs, labels)
    return _per_column(t, p, labels, roc, needs_negatives=True)


def one_vs_rest_pr(y_true: npt.ArrayLike, probs: npt.ArrayLike, labels: Sequence[str]) -> dict[str, PrCurve]:
    """One precision-recall curve per class of a multi-class model; see :func:`one_vs_rest_roc`.

    A class absent from ``y_true`` is left out.
    """
    t, p = _one_hot(y_true, probs, labels)
    return _per_column(t, p, labels, pr, needs_negatives=False)


def per_label_roc(targets: npt.ArrayLike, probs: npt.ArrayLike, labels: Sequence[str]) -> dict[str, RocCurve]:
    """One ROC curve per finding of a multi-label model.

    Parameters
    ----------
    targets : (N, K) 0/1, finding present
    probs : (N, K) P(finding present), each column on its own
    labels : K finding names

    Returns
    -------
    dict
        Finding name -> :class:`RocCurve`; a finding present in all or none of the cases is left out.
    """
    t, p = _multilabel(targets, probs, labels)
    return _per_column(t, p, labels, roc, needs_negatives=True)


def per_label_pr(targets: npt.ArrayLike, probs: npt.ArrayLike, labels: Sequence[str]) -> dict[str, PrCurve]:
    """One precision-recall curve per finding of a multi-label model; see :func:`per_label_roc`.

    A finding present in none of the cases is left out.
    """
    t, p = _multilabel(targets, probs, labels)
    return _per_column(t, p, labels, pr, needs_negatives=False)


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, labels: Sequence[str]) -> ConfusionMatrix:
    """Counts of (true class, predicted class), rows true and columns predicted.

    Parameters
    ----------
    y_true, y_pred : (N,) int class indices in ``labels`` order
    labels : K class names
    """
    k = len(labels)
    y = _class_indices(y_true, k)
    pred = _class_indices(y_pred, k)
    if pred.shape != y.shape:
        raise InvalidInputError(f"y_pred must have one class per case, shape {y.shape}; got {pred.shape}.")
    counts = skm.confusion_matrix(y, pred, labels=list(range(k))).astype(np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        row_percent = np.where(totals > 0, 100.0 * counts / totals, np.nan)
    return ConfusionMatrix(labels=tuple(str(name) for name in labels), counts=counts, row_percent=row_percent)


def per_class_rates(counts: npt.ArrayLike, labels: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per class of a confusion matrix (rows true, columns predicted), one class against the rest:
    ``precision``, ``recall`` (sensitivity), ``specificity``, ``f1`` (``None`` where the
    denominator is 0) and ``support`` (the row's count)."""
    c = np.asarray(counts, dtype=np.int64)
    k = len(labels)
    if c.shape != (k, k):
        raise InvalidInputError(f"counts must be {k} x {k} for {k} labels; got {c.shape}.")
    total = int(c.sum())
    out: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(labels):
        tp = int(c[i, i])
        fn = int(c[i].sum()) - tp
        fp = int(c[:, i].sum()) - tp
        tn = total - tp - fn - fp
        out[str(name)] = {
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "specificity": _ratio(tn, tn + fp),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
            "support": tp + fn,
        }
    return out


# --------------------------------------------------------------------------------------------
# Bootstrap
# --------------------------------------------------------------------------------------------


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


def _bootstrap(
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


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise InvalidInputError(f"alpha must lie strictly between 0 and 1; got {alpha}.")


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
    _check_alpha(alpha)
    y_arr = np.asarray(y)
    p_arr = np.asarray(p)
    if y_arr.ndim == 0 or p_arr.ndim == 0 or y_arr.shape[0] != p_arr.shape[0]:
        raise InvalidInputError(f"y and p must have one row per case; got shapes {y_arr.shape} and {p_arr.shape}.")
    point = float(metric(y_arr, p_arr))
    values = _bootstrap(
        lambda idx: float(metric(y_arr[idx], p_arr[idx])),
        y_arr,
        n_boot=n_boot,
        seed=seed,
        groups=groups,
        require_all_classes=require_all_classes,
    )
    low, high = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    return ConfidenceInterval(point=point, low=float(low), high=float(high))


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------


def _top_label(y_true: npt.ArrayLike, probs: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Top-label confidence and correctness, float64 (N,) each. (N,) probs are P(positive)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim == 1:
        y = _binary_labels(y_true)
        p = np.stack([1.0 - p, p], axis=1)
    elif p.ndim == 2:
        y = _class_indices(y_true, p.shape[1])
    else:
        raise InvalidInputError(f"probs must be (cases,) or (cases, classes); got shape {p.shape}.")
    p = _matrix(p, y.size, p.shape[1], "probs")
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


def fit_temperature_multiclass(logits: npt.ArrayLike, y_true: npt.ArrayLike) -> float:
    """The temperature T minimising the mean negative log-likelihood of softmax(logits / T).

    Guo et al. 2017's temperature scaling, fitted on a dev split: T > 1 softens an over-confident
    model, T < 1 sharpens an under-confident one; the predicted class never changes. Searched on
    log T within :data:`TEMPERATURE_BOUNDS`.

    Parameters
    ----------
    logits : (N, K) pre-softmax outputs
    y_true : (N,) int class indices

    Returns
    -------
    float
        T; 1.0 when the split holds fewer than two classes (nothing to calibrate against).
    """
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise InvalidInputError(f"logits must have shape (cases, classes); got {z.shape}.")
    y = _class_indices(y_true, z.shape[1])
    z = _matrix(z, y.size, z.shape[1], "logits")
    if np.unique(y).size < 2:
        logger.info("Temperature left at 1.0: the split holds fewer than two classes.")
        return 1.0
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-log_softmax(z / math.exp(log_t), axis=1)[rows, y].mean())

    low, high = TEMPERATURE_BOUNDS
    res = minimize_scalar(nll, bounds=(math.log(low), math.log(high)), method="bounded")
    return float(math.exp(res.x))


def apply_temperature(logits: npt.ArrayLike, temperature: float) -> np.ndarray:
    """softmax(logits / T) along the last axis: (..., K) probabilities, each row summing to 1."""
    if not (math.isfinite(temperature) and temperature > 0.0):
        raise InvalidInputError(f"The temperature must be a positive number; got {temperature}.")
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 0:
        raise InvalidInputError("logits must have a class axis.")
    return softmax(z / temperature, axis=-1)


# --------------------------------------------------------------------------------------------
# Comparing two models on the same cases
# --------------------------------------------------------------------------------------------


def _paired_inputs(
    y_true: npt.ArrayLike, score_a: npt.ArrayLike, score_b: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = _binary_labels(y_true)
    return y, _scores(score_a, y.size, "score_a"), _scores(score_b, y.size, "score_b")


def delong_test(
    y_true: npt.ArrayLike, score_a: npt.ArrayLike, score_b: npt.ArrayLike, *, alpha: float = 0.05
) -> DeLongResult:
    """DeLong's test of the difference between two correlated ROC AUCs (same cases, two models).

    The variance of AUC(a) - AUC(b) comes from the structural components of DeLong, DeLong &
    Clarke-Pearson (1988), computed from midranks as in Sun & Xu (2014): for m positives and n
    negatives, a positive's component is (its rank among all cases - its rank among positives)
    / n, and a negative's is 1 - (its rank among all - its rank among negatives) / m.

    Parameters
    ----------
    y_true : (N,) 0/1, with at least two positives and two negatives
    score_a, score_b : (N,) float scores of the two models on the same cases
    alpha : float
        One minus the coverage of the interval of the difference.

    Returns
    -------
    DeLongResult
        Identical scores give a difference of 0, z 0 and p 1.
    """
    _check_alpha(alpha)
    y, a, b = _paired_inputs(y_true, score_a, score_b)
    positive = y == 1
    m = int(positive.sum())
    n = y.size - m
    if m < 2 or n < 2:
        raise InsufficientDataError(
            f"DeLong's test needs at least two positive and two negative cases; this set has {m} and {n}."
        )
    aucs = []
    v10 = []  # per positive case, its share of the AUC
    v01 = []  # per negative case
    for s in (a, b):
        ranks_all = _midranks(s)
        ranks_pos = _midranks(s[positive])
        ranks_neg = _midranks(s[~positive])
        aucs.append(_auc_from_ranks(ranks_all, positive, m, n))
        v10.append((ranks_all[positive] - ranks_pos) / n)
        v01.append(1.0 - (ranks_all[~positive] - ranks_neg) / m)
    # The variance of the difference is L S L' with L = (1, -1); taking the variance of the
    # differenced components gives it exactly 0 for identical scores rather than rounding noise.
    variance = float(np.var(v10[0] - v10[1], ddof=1) / m + np.var(v01[0] - v01[1], ddof=1) / n)
    difference = aucs[0] - aucs[1]
    se = math.sqrt(max(variance, 0.0))
    if se > 0.0:
        z = difference / se
        p_value = float(2.0 * norm.sf(abs(z)))
    else:
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
        p_value = 1.0 if difference == 0.0 else 0.0
    half_width = float(norm.ppf(1.0 - alpha / 2.0)) * se
    return DeLongResult(
        auc_a=aucs[0],
        auc_b=aucs[1],
        difference=difference,
        z=float(z),
        p_value=p_value,
        ci_low=difference - half_width,
        ci_high=difference + half_width,
        std_error=se,
    )


def paired_bootstrap_auc(
    y_true: npt.ArrayLike,
    score_a: npt.ArrayLike,
    score_b: npt.ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    groups: npt.ArrayLike | None = None,
    *,
    alpha: float = 0.05,
) -> PairedBootstrapResult:
    """AUC(a) - AUC(b) on the same cases, with a paired bootstrap interval and p-value.

    Each resample scores both models on the same rows (whole patients when ``groups`` is given);
    resamples with one class are skipped as in :func:`bootstrap_ci`. The p-value is two-sided,
    from the observed difference over the bootstrap standard deviation on a normal scale (as
    pROC's bootstrap test), so it does not need more resamples than the interval.

    Parameters
    ----------
    y_true : (N,) 0/1
    score_a, score_b : (N,) float
    n_boot, seed, groups, alpha
        As in :func:`bootstrap_ci`.
    """
    _check_alpha(alpha)
    y, a, b = _paired_inputs(y_true, score_a, score_b)
    difference = roc_auc(y, a) - roc_auc(y, b)

    def statistic(idx: np.ndarray) -> float:
        yi = y[idx]
        positive = yi == 1
        n_pos = int(positive.sum())
        n_neg = yi.size - n_pos
        return _auc_from_ranks(_midranks(a[idx]), positive, n_pos, n_neg) - _auc_from_ranks(
            _midranks(b[idx]), positive, n_pos, n_neg
        )

    values = _bootstrap(statistic, y, n_boot=n_boot, seed=seed, groups=groups, require_all_classes=True)
    low, high = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    sd = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    if sd > 0.0:
        p_value = float(2.0 * norm.sf(abs(difference) / sd))
    else:
        p_value = 1.0 if difference == 0.0 else 0.0
    return PairedBootstrapResult(difference=float(difference), low=float(low), high=float(high), p_value=p_value)


# --------------------------------------------------------------------------------------------
# Operating points
# --------------------------------------------------------------------------------------------


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def operating_point(y_true: npt.ArrayLike, p: npt.ArrayLike, threshold: float) -> dict[str, Any]:
    """Counts and rates of a binary model called positive when ``p >= threshold``.

    Parameters
    ----------
    y_true : (N,) 0/1
    p : (N,) P(positive) or any score
    threshold : float

    Returns
    -------
    dict
        ``threshold``; ``tp``, ``fp``, ``tn``, ``fn`` (int); ``sensitivity``, ``specificity``,
        ``ppv``, ``npv`` (float, ``None`` where the denominator is 0).
    """
    y = _binary_labels(y_true)
    s = _scores(p, y.size, "p")
    predicted = (s >= threshold).astype(np.int64)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, predicted, labels=[0, 1]).ravel())
    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
    }


def threshold_for_sensitivity(y_true: npt.ArrayLike, p: npt.ArrayLike, target: float) -> float:
    """The highest threshold whose sensitivity (``p >= threshold``) reaches ``target``.

    The highest such threshold calls the fewest cases positive, so it has the best specificity
    among the thresholds meeting the target on these cases.

    Parameters
    ----------
    y_true : (N,) 0/1, with at least one positive
    p : (N,) P(positive) or any score
    target : float in (0, 1]

    Returns
    -------
    float
        One of the positives' scores.
    """
    if not 0.0 < target <= 1.0:
        raise InvalidInputError(f"The target sensitivity must lie in (0, 1]; got {target}.")
    y = _binary_labels(y_true)
    s = _scores(p, y.size, "p")
    positive_scores = np.sort(s[y == 1])[::-1]
    if positive_scores.size == 0:
        raise InsufficientDataError("A sensitivity target needs at least one positive case; this set has none.")
    # Calling the k highest-scoring positives positive gives sensitivity k / n_pos (ties only add).
    sensitivity = np.arange(1, positive_scores.size + 1) / positive_scores.size
    k = int(np.argmax(sensitivity >= target))
    return float(positive_scores[k])
