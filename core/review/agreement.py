"""Agreement statistics of a case-review meeting: reader against model (Cohen's kappa), several
readers on the same cases (Fleiss' kappa), and reader or model against the truth (proportions
with Wilson intervals: accuracy, sensitivity, specificity).

Every figure comes with its 95% interval (``confidence`` changes it) and the name of the method
that made it. Where a figure is undefined (every case given one label, no case to count) the
result holds ``nan`` and a ``reason`` in plain words, never an exception: a meeting of three
cases must still get a summary. Bad input (empty, unequal lengths, a label outside the given
vocabulary) raises :class:`~core.errors.InvalidInputError`.

Formulas
--------
Cohen's kappa (Cohen 1960), two raters on the same ``n`` cases, ``p_ij`` the share of cases
rater A called ``i`` and rater B called ``j``, ``p_i.`` and ``p_.j`` the margins::

    p_o = sum_i p_ii                   observed agreement
    p_e = sum_i p_i. p_.i              agreement expected by chance (each rater's own margins)
    kappa = (p_o - p_e) / (1 - p_e)

Its large-sample variance (Fleiss, Cohen & Everitt 1969), not assuming kappa = 0::

    var = [ sum_i p_ii ((1 - p_e) - (p_i. + p_.i)(1 - p_o))^2
            + (1 - p_o)^2 sum_{i != j} p_ij (p_.i + p_j.)^2
            - (p_o p_e - 2 p_e + p_o)^2 ] / (n (1 - p_e)^4)

and under the null hypothesis of chance agreement only (same paper), for the p-value::

    var_0 = [ p_e + p_e^2 - sum_i p_i. p_.i (p_i. + p_.i) ] / (n (1 - p_e)^2)

The interval ``kappa +- z se`` is a normal approximation: with few cases (as a rule of thumb,
fewer than about 30; not from a cited source) or kappa near 1 it is too narrow and can reach
past 1, so it is clipped to [-1, 1] and the result's ``reason`` says so. At perfect agreement
the variance is 0 and the interval collapses to [1, 1], which says nothing about how sure we
are. ``bootstrap=B`` gives instead a seeded percentile bootstrap over cases, which needs no
normality but is no cure for a handful of cases either.

Fleiss' kappa (Fleiss 1971), ``N`` cases each rated by the same number ``m`` of raters (not
necessarily the same people), ``n_ij`` the raters who put case ``i`` in category ``j``::

    P_i = (sum_j n_ij^2 - m) / (m (m - 1))     agreement among the raters of case i
    P   = mean_i P_i                            observed agreement
    p_j = sum_i n_ij / (N m)                    share of all ratings in category j
    P_e = sum_j p_j^2                           expected by chance (pooled margins)
    kappa = (P - P_e) / (1 - P_e)

Its large-sample standard error holds only under the null hypothesis of chance agreement
(Fleiss 1971, in the corrected form of Fleiss, Nee & Landis 1979), with ``q_j = 1 - p_j``::

    var_0 = 2 / (N m (m - 1)) * [ (sum_j p_j q_j)^2 - sum_j p_j q_j (q_j - p_j) ] / (sum_j p_j q_j)^2

It gives the p-value, not an interval (it is not the variance of kappa when kappa is not 0); the
interval is a seeded percentile bootstrap over cases.

Wilson score interval of a proportion ``p = k / n`` (Wilson 1927), ``z`` the normal quantile::

    centre = (p + z^2 / (2n)) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))

Unlike ``p +- z sqrt(p(1-p)/n)`` it stays inside [0, 1] and is not zero-width at 0/n or n/n.

References
----------
Cohen J (1960). A coefficient of agreement for nominal scales. Educational and Psychological
Measurement 20:37-46.
Fleiss JL, Cohen J, Everitt BS (1969). Large sample standard errors of kappa and weighted kappa.
Psychological Bulletin 72:323-327.
Fleiss JL (1971). Measuring nominal scale agreement among many raters. Psychological Bulletin
76:378-382.
Fleiss JL, Nee JCM, Landis JR (1979). Large sample variance of kappa in the case of different
sets of raters. Psychological Bulletin 86:974-977.
Wilson EB (1927). Probable inference, the law of succession, and statistical inference. Journal
of the American Statistical Association 22:209-212.

Examples
--------
>>> a = cohen_kappa(["COVID-19", "Normal", "COVID-19"], ["COVID-19", "Normal", "Normal"])
>>> round(a.kappa, 3), a.n
(0.4, 3)
>>> p = proportion(8, 10)
>>> round(p.ci_low, 3), round(p.ci_high, 3)
(0.49, 0.943)
"""

from __future__ import annotations

import math
import operator
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from core.errors import InvalidInputError

#: Below this many cases the asymptotic kappa interval is flagged as unreliable (rule of thumb).
FEW_CASES = 30

#: The fewest bootstrap resamples that give an interval worth showing.
MIN_BOOTSTRAP = 100

_NAN = float("nan")


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


@dataclass(frozen=True)
class Agreement:
    """A kappa with its interval, as :func:`cohen_kappa` and :func:`fleiss_kappa` return it.

    Attributes
    ----------
    kappa : float
        Agreement beyond chance, 1 perfect, 0 chance level, below 0 worse than chance; ``nan``
        when undefined (``reason`` says why).
    ci_low, ci_high : float
        The interval's bounds, in [-1, 1]; ``nan`` when kappa is undefined.
    n : int
        Cases.
    observed_agreement, expected_agreement : float
        ``p_o`` (share of cases, or of rater pairs, that agree) and ``p_e`` (expected by chance).
    method : str
        What was computed and how the interval was made, in words.
    se : float
        Large-sample standard error of kappa (Fleiss, Cohen & Everitt 1969) for Cohen's kappa;
        ``nan`` for Fleiss' kappa, which has no published one valid away from kappa = 0.
    se_null : float
        Standard error under the null hypothesis of chance agreement, used for ``p_value``.
    p_value : float
        Two-sided, of kappa = 0 (normal approximation).
    n_raters : int
        Raters per case (2 for Cohen's kappa).
    reason : str
        Why kappa is undefined or its interval unreliable, in plain words; ``""`` when neither.
    """

    kappa: float
    ci_low: float
    ci_high: float
    n: int
    observed_agreement: float
    expected_agreement: float
    method: str
    se: float = _NAN
    se_null: float = _NAN
    p_value: float = _NAN
    n_raters: int = 2
    reason: str = ""

    @property
    def defined(self) -> bool:
        """Whether kappa is a number (not ``nan``)."""
        return not math.isnan(self.kappa)

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values, ``None`` for ``nan``."""
        return {
            "kappa": _json_float(self.kappa),
            "ci_low": _json_float(self.ci_low),
            "ci_high": _json_float(self.ci_high),
            "n": self.n,
            "observed_agreement": _json_float(self.observed_agreement),
            "expected_agreement": _json_float(self.expected_agreement),
            "method": self.method,
            "se": _json_float(self.se),
            "se_null": _json_float(self.se_null),
            "p_value": _json_float(self.p_value),
            "n_raters": self.n_raters,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Proportion:
    """``successes`` of ``n`` with its Wilson score interval (Wilson 1927), all in 0..1.

    ``estimate``, ``ci_low`` and ``ci_high`` are ``nan`` when ``n`` is 0, and ``reason`` says so.
    """

    successes: int
    n: int
    estimate: float
    ci_low: float
    ci_high: float
    method: str = "Wilson score interval (Wilson 1927)"
    reason: str = ""

    @property
    def defined(self) -> bool:
        """Whether there was at least one case to count."""
        return self.n > 0

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values, ``None`` for ``nan``."""
        return {
            "successes": self.successes,
            "n": self.n,
            "estimate": _json_float(self.estimate),
            "ci_low": _json_float(self.ci_low),
            "ci_high": _json_float(self.ci_high),
            "method": self.method,
            "reason": self.reason,
        }


@dataclass(frozen=True, eq=False)
class RatingCounts:
    """The (N cases, K categories) table that :func:`fleiss_kappa` takes, built by
    :func:`rating_counts` from each case's list of reads.

    ``cases`` are the positions, in the input, of the cases the table holds (all of them unless
    ``keep="most_common"`` left some out); ``dropped`` counts the ones left out.
    """

    counts: np.ndarray = field(repr=False)
    labels: tuple[Hashable, ...]
    cases: tuple[int, ...]
    n_raters: int
    dropped: int


# ---------------------------------------------------------------------------------------------
# Checks


def _z(confidence: float) -> float:
    """The two-sided normal quantile of ``confidence`` (1.96 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"The confidence level must be between 0 and 1, e.g. 0.95; got {confidence}.")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _percent(confidence: float) -> str:
    return f"{100.0 * confidence:g}%"


def _labels_list(values: Sequence[Hashable], name: str) -> list[Hashable]:
    """``values`` as a list of labels, refusing a bare string, an empty list and missing reads."""
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(f"{name} must be a list of labels, one per case, not a single string.")
    out = list(np.asarray(values, dtype=object).reshape(-1)) if isinstance(values, np.ndarray) else list(values)
    if not out:
        raise InvalidInputError(f"{name} holds no case: there is nothing to compare.")
    for i, value in enumerate(out):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise InvalidInputError(f"{name} has no label for case {i + 1}: leave out the cases it did not read.")
    return out


def _paired(a: Sequence[Hashable], b: Sequence[Hashable], names: tuple[str, str]) -> tuple[list, list]:
    first, second = _labels_list(a, names[0]), _labels_list(b, names[1])
    if len(first) != len(second):
        raise InvalidInputError(
            f"{names[0]} and {names[1]} must label the same cases: {len(first)} labels against {len(second)}."
        )
    return first, second


def _vocabulary(values: Sequence[Hashable], labels: Sequence[Hashable] | None) -> tuple[Hashable, ...]:
    """The categories in a fixed order: ``labels`` as given (each value must be one), or the
    values seen, sorted (by their text where they do not sort among themselves)."""
    try:
        seen = set(values)
    except TypeError as e:
        raise InvalidInputError("Labels must be names or numbers (a list or table is not a label).") from e
    if labels is None:
        try:
            return tuple(sorted(seen))  # type: ignore[type-var]
        except TypeError:
            return tuple(sorted(seen, key=repr))
    if isinstance(labels, (str, bytes)):
        raise InvalidInputError("labels must be a list of labels, not a single string.")
    vocabulary = tuple(labels)
    if not vocabulary:
        raise InvalidInputError("labels is empty: give the categories the readers could choose from.")
    if len(set(vocabulary)) != len(vocabulary):
        raise InvalidInputError(f"labels names a category twice: {list(vocabulary)}.")
    unknown = [v for v in seen if v not in set(vocabulary)]
    if unknown:
        raise InvalidInputError(
            f"{', '.join(sorted(map(repr, unknown)))} is not one of the labels given ({', '.join(map(repr, vocabulary))})."
        )
    return vocabulary


def _check_bootstrap(n_boot: int, name: str) -> int:
    n_boot = operator.index(n_boot)
    if n_boot < MIN_BOOTSTRAP:
        raise InvalidInputError(f"{name} must be at least {MIN_BOOTSTRAP} resamples for an interval; got {n_boot}.")
    return n_boot


def _p_value(kappa: float, se_null: float) -> float:
    if math.isnan(kappa) or not se_null > 0.0:
        return _NAN
    return math.erfc(abs(kappa) / se_null / math.sqrt(2.0))  # 2 (1 - Phi(|z|)), exact in the far tail


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float, int]:
    """(low, high, undefined resamples) of the defined values' percentile interval."""
    finite = values[~np.isnan(values)]
    undefined = int(values.size - finite.size)
    if finite.size == 0:
        return _NAN, _NAN, undefined
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high), undefined


def _bootstrap_note(undefined: int, n_boot: int) -> str:
    if not undefined:
        return ""
    return (
        f"{undefined} of {n_boot} bootstrap resamples gave every case one label (kappa undefined) "
        "and were left out of the interval."
    )


# ---------------------------------------------------------------------------------------------
# Cohen's kappa


def _cohen_from_tables(tables: np.ndarray) -> np.ndarray:
    """Kappa of each (..., K, K) count table, ``nan`` where chance agreement is 1."""
    n = tables.sum(axis=(-2, -1))
    p = tables / n[..., None, None]
    p_o = np.trace(p, axis1=-2, axis2=-1)
    p_e = (p.sum(axis=-1) * p.sum(axis=-2)).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (p_o - p_e) / (1.0 - p_e)
    return np.where(np.isclose(p_e, 1.0, rtol=0.0, atol=1e-12), np.nan, kappa)


def _cohen_se(table: np.ndarray) -> tuple[float, float]:
    """(se, se_null) of kappa from one (K, K) count table (Fleiss, Cohen & Everitt 1969)."""
    n = float(table.sum())
    p = table / n
    rows, cols = p.sum(axis=1), p.sum(axis=0)
    p_o = float(np.trace(p))
    p_e = float(rows @ cols)
    diagonal = np.diag(p)
    a = float((diagonal * ((1.0 - p_e) - (rows + cols) * (1.0 - p_o)) ** 2).sum())
    # Cell (i, j) is weighed by column margin i plus row margin j.
    weight = (cols[:, None] + rows[None, :]) ** 2
    off = p * weight
    b = (1.0 - p_o) ** 2 * float(off.sum() - np.trace(off))
    c = (p_o * p_e - 2.0 * p_e + p_o) ** 2
    # Both numerators are differences of terms of order 1 that cancel exactly at perfect
    # agreement or when a rater used one label: what rounding leaves there is 0.
    numerator = a + b - c if a + b - c > 1e-12 else 0.0
    numerator_null = p_e + p_e**2 - float((rows * cols * (rows + cols)).sum())
    numerator_null = numerator_null if numerator_null > 1e-12 else 0.0
    return math.sqrt(numerator / (n * (1.0 - p_e) ** 4)), math.sqrt(numerator_null / (n * (1.0 - p_e) ** 2))


def _asymptotic_note(kappa: float, se: float, z: float, n: int) -> str:
    """Why the large-sample interval ``kappa +- z se`` of ``n`` cases is unreliable; ``""`` if not."""
    if se == 0.0:
        return (
            "Perfect agreement leaves the large-sample standard error at 0, so the interval "
            "is only the point: it does not show how sure the figure is."
        )
    if n < FEW_CASES:
        return f"Only {n} cases: the large-sample interval is unreliable below about {FEW_CASES}."
    if kappa - z * se < -1.0 or kappa + z * se > 1.0:
        return "The large-sample interval reached past [-1, 1] and was clipped: it is unreliable here."
    return ""


def cohen_kappa(
    a: Sequence[Hashable],
    b: Sequence[Hashable],
    labels: Sequence[Hashable] | None = None,
    *,
    bootstrap: int = 0,
    seed: int = 0,
    confidence: float = 0.95,
) -> Agreement:
    """Cohen's kappa of two raters on the same cases, with its interval.

    Parameters
    ----------
    a, b : sequence of labels
        One label per case from each rater (a reader and the model, or two readers), in the
        same case order. Labels are any hashable values (class names, ``"COVID"``/``"not COVID"``).
    labels : sequence, optional
        The categories the raters chose from. Given, a label outside it is refused (a typo
        would otherwise count as a category of its own). A category nobody used changes
        nothing.
    bootstrap : int
        0 (the default): the interval is ``kappa +- z se`` with the large-sample standard error
        of Fleiss, Cohen & Everitt (1969), clipped to [-1, 1]; unreliable with few cases (fewer
        than about 30) or kappa near 1, which ``reason`` then says. At least 100: a percentile
        bootstrap over cases with that many resamples, seeded by ``seed``; resamples where
        kappa is undefined are left out and counted in ``reason``.
    seed : int
        Seed of the bootstrap; the same seed gives the same interval.
    confidence : float
        Coverage of the interval.

    Returns
    -------
    Agreement
        Kappa (from scikit-learn's ``cohen_kappa_score``), its interval, ``p_o``, ``p_e``, the
        standard errors and the p-value of kappa = 0. When both raters gave every case the same
        single label, kappa is undefined: ``nan`` with a ``reason``.

    Raises
    ------
    InvalidInputError
        Empty input, unequal lengths, a missing label (``None``), a label outside ``labels``,
        or a bootstrap of fewer than 100 resamples.
    """
    # sklearn.metrics costs about 1 s of the CLI's start-up (measured): imported where used.
    from sklearn.metrics import cohen_kappa_score

    z = _z(confidence)
    first, second = _paired(a, b, ("The first rater's labels", "The second rater's labels"))
    vocabulary = _vocabulary(first + second, labels)
    if bootstrap:
        bootstrap = _check_bootstrap(bootstrap, "bootstrap")
    index = {label: i for i, label in enumerate(vocabulary)}
    k = len(vocabulary)
    codes_a = np.array([index[v] for v in first], dtype=np.int64)
    codes_b = np.array([index[v] for v in second], dtype=np.int64)
    n = int(codes_a.size)
    table = np.bincount(codes_a * k + codes_b, minlength=k * k).reshape(k, k).astype(np.float64)
    p_o = float(np.trace(table)) / n
    p_e = float(table.sum(axis=1) @ table.sum(axis=0)) / n**2

    interval = f"{_percent(confidence)} interval"
    if bootstrap:
        method = f"Cohen's kappa; {interval}: percentile bootstrap over cases ({bootstrap} resamples, seed {seed})"
    else:
        method = f"Cohen's kappa; {interval}: large-sample standard error (Fleiss, Cohen & Everitt 1969)"

    if math.isclose(p_e, 1.0, rel_tol=0.0, abs_tol=1e-12):
        return Agreement(
            kappa=_NAN,
            ci_low=_NAN,
            ci_high=_NAN,
            n=n,
            observed_agreement=p_o,
            expected_agreement=p_e,
            method=method,
            reason=(
                f"Both raters gave all {n} cases the same label ({vocabulary[int(codes_a[0])]!r}): agreement "
                "expected by chance is 100%, so kappa is undefined."
            ),
        )

    kappa = float(cohen_kappa_score(codes_a, codes_b, labels=list(range(k))))
    se, se_null = _cohen_se(table)
    notes = []
    for name, margin in (("first", table.sum(axis=1)), ("second", table.sum(axis=0))):
        if margin.max() == n:
            notes.append(
                f"The {name} rater gave every case the same label ({vocabulary[int(margin.argmax())]!r}): kappa is 0 "
                "whatever the other rater did, and the interval is only that point."
            )
    if bootstrap:
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(bootstrap, n))
        cells = (codes_a * k + codes_b)[idx] + (np.arange(bootstrap) * k * k)[:, None]
        tables = np.bincount(cells.reshape(-1), minlength=bootstrap * k * k).reshape(bootstrap, k, k)
        low, high, undefined = _percentile_interval(_cohen_from_tables(tables.astype(np.float64)), confidence)
        notes.append(_bootstrap_note(undefined, bootstrap))
        if n < FEW_CASES:
            notes.append(f"Only {n} cases: the interval is wide and itself uncertain.")
    else:
        low, high = max(kappa - z * se, -1.0), min(kappa + z * se, 1.0)
        if not notes:  # a rater's single label, said above, is already why the error is 0
            notes.append(_asymptotic_note(kappa, se, z, n))
    return Agreement(
        kappa=kappa,
        ci_low=low,
        ci_high=high,
        n=n,
        observed_agreement=p_o,
        expected_agreement=p_e,
        method=method,
        se=se,
        se_null=se_null,
        p_value=_p_value(kappa, se_null),
        n_raters=2,
        reason=" ".join(note for note in notes if note),
    )


# ---------------------------------------------------------------------------------------------
# Fleiss' kappa


def rating_counts(
    reads: Sequence[Sequence[Hashable]],
    labels: Sequence[Hashable] | None = None,
    *,
    keep: Literal["all", "most_common"] = "all",
) -> RatingCounts:
    """The table of counts :func:`fleiss_kappa` takes, from each case's list of reads.

    Fleiss' kappa needs the same number of raters on every case. When a meeting's cases were
    read by different numbers of readers, ``keep="all"`` (the default) refuses in plain words;
    ``keep="most_common"`` keeps the cases read by the most common number of readers (at least
    2; on a tie the larger number, which gives each case more pairs), and says in ``cases``
    and ``dropped`` which were kept. Which readers read a case does not matter, only how many.

    Parameters
    ----------
    reads : sequence of sequences of labels
        One list per case: the label each of its readers gave.
    labels : sequence, optional
        The categories, in the table's column order; a read outside it is refused.
    keep : {"all", "most_common"}
        What to do with unequal numbers of readers, as above.

    Raises
    ------
    InvalidInputError
        No case, a missing read, a label outside ``labels``, unequal reader counts with
        ``keep="all"``, or no case read by at least two readers.
    """
    if keep not in ("all", "most_common"):
        raise InvalidInputError(f'keep must be "all" or "most_common"; got {keep!r}.')
    if isinstance(reads, (str, bytes)) or not len(reads):
        raise InvalidInputError("There is no case with reads: give one list of reads per case.")
    per_case = [_labels_list(case, f"Case {i + 1}'s reads") for i, case in enumerate(reads)]
    sizes = Counter(len(case) for case in per_case)
    usable = {size: count for size, count in sizes.items() if size >= 2}
    if not usable:
        raise InvalidInputError(
            "No case was read by at least two readers: there is no agreement between readers to measure."
        )
    if len(sizes) > 1 and keep == "all":
        found = ", ".join(f"{count} by {size}" for size, count in sorted(sizes.items()))
        raise InvalidInputError(
            f"Fleiss' kappa needs the same number of readers on every case; these cases were read {found}. "
            "Compare the cases read by the same number of readers."
        )
    n_raters = max(usable, key=lambda size: (usable[size], size))
    kept = tuple(i for i, case in enumerate(per_case) if len(case) == n_raters)
    vocabulary = _vocabulary([label for i in kept for label in per_case[i]], labels)
    index = {label: j for j, label in enumerate(vocabulary)}
    counts = np.zeros((len(kept), len(vocabulary)), dtype=np.int64)
    for row, i in enumerate(kept):
        for label in per_case[i]:
            counts[row, index[label]] += 1
    return RatingCounts(
        counts=counts, labels=vocabulary, cases=kept, n_raters=n_raters, dropped=len(per_case) - len(kept)
    )


def _fleiss_parts(counts: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """(P_i per case, p_j per category) of a (..., N, K) table with ``m`` raters per case."""
    agreement = ((counts**2).sum(axis=-1) - m) / (m * (m - 1))
    shares = counts.sum(axis=-2) / (counts.shape[-2] * m)
    return agreement, shares


def fleiss_kappa(
    counts: npt.ArrayLike,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Agreement:
    """Fleiss' kappa of several raters per case, with a bootstrap interval.

    Parameters
    ----------
    counts : (N, K) array of non-negative integers
        Row ``i``: how many raters put case ``i`` in each of the ``K`` categories. Every row
        must add up to the same number of raters (at least 2); build it from lists of reads
        with :func:`rating_counts`, which can keep the cases with the most common number.
    n_boot : int
        Resamples of the percentile bootstrap over cases (at least 100).
    seed : int
        Seed of the bootstrap; the same seed gives the same interval.
    confidence : float
        Coverage of the interval.

    Returns
    -------
    Agreement
        Kappa, the bootstrap interval, ``P`` and ``P_e`` as observed and expected agreement,
        the standard error under the null (Fleiss 1971, corrected by Fleiss, Nee & Landis 1979)
        and the p-value of kappa = 0; ``se`` is ``nan`` (no large-sample error valid away from
        kappa = 0). When every rating is in one category, kappa is ``nan`` with a ``reason``.

    Raises
    ------
    InvalidInputError
        Not a 2-D table of non-negative integers, no case, unequal row sums, fewer than two
        raters per case, or fewer than 100 resamples.
    """
    _z(confidence)  # refuses a bad confidence level before the work
    n_boot = _check_bootstrap(n_boot, "n_boot")
    table = np.asarray(counts)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise InvalidInputError(
            f"Fleiss' kappa takes a table with one row per case and one column per category; got shape {table.shape}."
        )
    if table.dtype.kind not in "iuf" or not np.all(np.isfinite(table)) or not np.array_equal(table, np.round(table)):
        raise InvalidInputError("The table must hold whole numbers of raters.")
    if (table < 0).any():
        raise InvalidInputError("The table holds a negative number of raters.")
    table = table.astype(np.int64)
    row_sums = table.sum(axis=1)
    if not (row_sums == row_sums[0]).all():
        found = ", ".join(f"{count} with {int(size)}" for size, count in sorted(Counter(row_sums.tolist()).items()))
        raise InvalidInputError(
            f"Fleiss' kappa needs the same number of raters on every case; the rows add up differently ({found}). "
            "rating_counts(..., keep='most_common') keeps the cases with the most common number."
        )
    m = int(row_sums[0])
    if m < 2:
        raise InvalidInputError(f"Each case needs at least two raters for agreement between them; got {m}.")
    n = int(table.shape[0])
    agreement, shares = _fleiss_parts(table.astype(np.float64), m)
    p_obs = float(agreement.mean())
    p_exp = float((shares**2).sum())
    method = (
        f"Fleiss' kappa; {_percent(confidence)} interval: percentile bootstrap over cases "
        f"({n_boot} resamples, seed {seed})"
    )
    if math.isclose(p_exp, 1.0, rel_tol=0.0, abs_tol=1e-12):
        only = int(np.argmax(shares))
        return Agreement(
            kappa=_NAN,
            ci_low=_NAN,
            ci_high=_NAN,
            n=n,
            observed_agreement=p_obs,
            expected_agreement=p_exp,
            method=method,
            n_raters=m,
            reason=(
                f"Every rating of all {n} cases is in one category (column {only + 1}): agreement expected "
                "by chance is 100%, so kappa is undefined."
            ),
        )
    kappa = (p_obs - p_exp) / (1.0 - p_exp)
    pq = shares * (1.0 - shares)
    spread = float(pq.sum())
    var_null = 2.0 / (n * m * (m - 1)) * (spread**2 - float((pq * (1.0 - 2.0 * shares)).sum())) / spread**2
    se_null = math.sqrt(max(var_null, 0.0))

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    # How often each case is drawn in each resample, (n_boot, N): sums over a resample are products.
    drawn = np.bincount((idx + (np.arange(n_boot) * n)[:, None]).reshape(-1), minlength=n_boot * n)
    drawn = drawn.reshape(n_boot, n).astype(np.float64)
    boot_obs = drawn @ agreement / n
    boot_shares = drawn @ table.astype(np.float64) / (n * m)  # (n_boot, K)
    boot_exp = (boot_shares**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = (boot_obs - boot_exp) / (1.0 - boot_exp)
    boot = np.where(np.isclose(boot_exp, 1.0, rtol=0.0, atol=1e-12), np.nan, boot)
    low, high, undefined = _percentile_interval(boot, confidence)
    notes = [_bootstrap_note(undefined, n_boot)]
    if n < FEW_CASES:
        notes.append(f"Only {n} cases: the interval is wide and itself uncertain.")
    return Agreement(
        kappa=float(kappa),
        ci_low=low,
        ci_high=high,
        n=n,
        observed_agreement=p_obs,
        expected_agreement=p_exp,
        method=method,
        se=_NAN,
        se_null=se_null,
        p_value=_p_value(float(kappa), se_null),
        n_raters=m,
        reason=" ".join(note for note in notes if note),
    )


# ---------------------------------------------------------------------------------------------
# Proportions


def proportion(successes: int, n: int, *, confidence: float = 0.95) -> Proportion:
    """``successes`` of ``n`` with its Wilson score interval (Wilson 1927).

    ``n`` = 0 is not an error (a meeting with no COVID-19 case has no sensitivity): the figures
    are ``nan`` and ``reason`` says there was no case.

    Raises
    ------
    InvalidInputError
        A count that is not a whole number, negative, or ``successes`` above ``n``.
    """
    z = _z(confidence)
    try:
        k, total = operator.index(successes), operator.index(n)
    except TypeError as e:
        raise InvalidInputError(f"Counts must be whole numbers; got {successes!r} of {n!r}.") from e
    if total < 0 or k < 0:
        raise InvalidInputError(f"Counts cannot be negative; got {k} of {total}.")
    if k > total:
        raise InvalidInputError(f"{k} successes of {total} cases is more than there are cases.")
    method = f"Wilson score {_percent(confidence)} interval (Wilson 1927)"
    if total == 0:
        return Proportion(k, total, _NAN, _NAN, _NAN, method, "No case to count: the proportion is undefined.")
    p = k / total
    scale = 1.0 + z**2 / total
    centre = (p + z**2 / (2.0 * total)) / scale
    half = z / scale * math.sqrt(p * (1.0 - p) / total + z**2 / (4.0 * total**2))
    return Proportion(k, total, p, max(centre - half, 0.0), min(centre + half, 1.0), method)


def accuracy(truth: Sequence[Hashable], predicted: Sequence[Hashable], *, confidence: float = 0.95) -> Proportion:
    """The share of cases where ``predicted`` equals ``truth``, with its Wilson interval.

    Raises
    ------
    InvalidInputError
        Empty input, unequal lengths or a missing label.
    """
    first, second = _paired(truth, predicted, ("The true labels", "The predicted labels"))
    return proportion(sum(t == p for t, p in zip(first, second, strict=True)), len(first), confidence=confidence)


def sensitivity_specificity(
    truth: Sequence[Hashable],
    predicted: Sequence[Hashable],
    positive: Hashable,
    *,
    confidence: float = 0.95,
) -> tuple[Proportion, Proportion]:
    """Sensitivity and specificity of ``predicted`` for the class ``positive``, with Wilson
    intervals.

    Every other label counts as negative (for three classes: ``positive`` against the rest).
    Sensitivity is the share of the cases truly ``positive`` that were called ``positive``;
    specificity the share of the others that were not. A side with no case (no true positive
    case in the meeting) is undefined: ``nan`` with a ``reason``.

    Raises
    ------
    InvalidInputError
        Empty input, unequal lengths or a missing label.
    """
    first, second = _paired(truth, predicted, ("The true labels", "The predicted labels"))
    is_pos = np.array([t == positive for t in first], dtype=bool)
    called = np.array([p == positive for p in second], dtype=bool)
    sens = proportion(int((is_pos & called).sum()), int(is_pos.sum()), confidence=confidence)
    spec = proportion(int((~is_pos & ~called).sum()), int((~is_pos).sum()), confidence=confidence)
    if not sens.defined:
        sens = replace(sens, reason=f"No case is truly {positive!r}: sensitivity is undefined.")
    if not spec.defined:
        spec = replace(spec, reason=f"Every case is truly {positive!r}: specificity is undefined.")
    return sens, spec
