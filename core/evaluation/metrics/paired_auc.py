"""Two models' ROC AUCs on the same cases: DeLong's test (Sun & Xu 2014) and a paired bootstrap
of the difference."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from core.errors import InsufficientDataError
from core.evaluation.metrics.bootstrap import bootstrap_values
from core.evaluation.metrics.checks import binary_labels, check_alpha, finite_scores
from core.evaluation.metrics.curves import auc_from_ranks, midranks, roc_auc


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


def _paired_inputs(
    y_true: npt.ArrayLike, score_a: npt.ArrayLike, score_b: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = binary_labels(y_true)
    return y, finite_scores(score_a, y.size, "score_a"), finite_scores(score_b, y.size, "score_b")


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
    check_alpha(alpha)
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
        ranks_all = midranks(s)
        ranks_pos = midranks(s[positive])
        ranks_neg = midranks(s[~positive])
        aucs.append(auc_from_ranks(ranks_all, positive, m, n))
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
    check_alpha(alpha)
    y, a, b = _paired_inputs(y_true, score_a, score_b)
    difference = roc_auc(y, a) - roc_auc(y, b)

    def statistic(idx: np.ndarray) -> float:
        yi = y[idx]
        positive = yi == 1
        n_pos = int(positive.sum())
        n_neg = yi.size - n_pos
        return auc_from_ranks(midranks(a[idx]), positive, n_pos, n_neg) - auc_from_ranks(
            midranks(b[idx]), positive, n_pos, n_neg
        )

    values = bootstrap_values(statistic, y, n_boot=n_boot, seed=seed, groups=groups, require_all_classes=True)
    low, high = np.percentile(values, [100.0 * alpha / 2.0, 100.0 * (1.0 - alpha / 2.0)])
    sd = float(np.std(values, ddof=1)) if values.size > 1 else 0.0
    if sd > 0.0:
        p_value = float(2.0 * norm.sf(abs(difference) / sd))
    else:
        p_value = 1.0 if difference == 0.0 else 0.0
    return PairedBootstrapResult(difference=float(difference), low=float(low), high=float(high), p_value=p_value)
