"""Kaplan-Meier analysis of patient groups: one curve per group, a log-rank test, a Cox hazard ratio.

Every statistical number comes from lifelines (``KaplanMeierFitter``, ``logrank_test``,
``multivariate_logrank_test``, ``CoxPHFitter``, ``median_survival_times``); only the numbers at
risk under the plot are counted here. Times are days. A number lifelines cannot give (a median
the curve never reaches, a hazard ratio for a group without events, a Cox fit that does not
converge) is ``None``, and :attr:`KMAnalysis.messages` says why in plain words.

Examples
--------
>>> analysis = km_analysis(days, died, risk_group, endpoint="death", group_order=["Low risk", "High risk"])
>>> analysis.hazard_ratio  # "High risk" against "Low risk"
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import InsufficientDataError, InvalidInputError

logger = logging.getLogger(__name__)

#: A group with fewer patients gets no curve.
MIN_PATIENTS_PER_GROUP: int = 5

# Steps (days) between the at-risk counts: whole days, a week, a fortnight, then round numbers.
_NICE_STEPS_DAYS: tuple[float, ...] = (0.25, 0.5, 1, 2, 5, 7, 10, 14, 20, 30, 50) + tuple(
    m * 10**k for k in range(2, 6) for m in (1, 2, 3, 5)
)
_MAX_AT_RISK_TICKS = 8
_MAX_AT_RISK_TIMES = 1000  # an ``at_risk_every`` giving more is a mistake, not a table


class NotEnoughDataError(InsufficientDataError):
    """Too few patients, or too few events, for a Kaplan-Meier analysis."""


class InvalidSurvivalDataError(InvalidInputError, ValueError):
    """Durations, events and groups that do not describe patients (lengths differ, negative times).

    Also a ``ValueError``, so callers that validate with ``except ValueError`` catch it.
    """


@dataclass(frozen=True)
class KMGroup:
    """One group's Kaplan-Meier curve (lifelines' ``KaplanMeierFitter``), times in days."""

    name: str
    n: int  # patients in the group
    events: int  # observed events
    censored: int
    median_time: float | None  # None when the curve never reaches 0.5
    median_ci: tuple[float | None, float | None]  # None where a band never reaches 0.5
    timeline: tuple[float, ...]  # step times, 0 first
    survival: tuple[float, ...]  # S(t) at ``timeline``
    ci_lower: tuple[float, ...]  # confidence band at ``timeline`` (exponential Greenwood)
    ci_upper: tuple[float, ...]
    censor_times: tuple[float, ...]  # one per censored patient, ascending
    censor_survival: tuple[float, ...]  # S(t) at ``censor_times``
    at_risk: tuple[int, ...]  # patients with duration >= t, at each of KMAnalysis.at_risk_times
    table_at_risk: tuple[int, ...]  # lifelines' event table at ``timeline``: at risk just before t
    table_events: tuple[int, ...]  # events at t
    table_censored: tuple[int, ...]  # censored at t

    def table(self) -> list[dict[str, float | int | None]]:
        """The KM table: one row per ``timeline`` time with ``time``, ``at_risk``, ``events``,
        ``censored``, ``survival``, ``ci_lower`` and ``ci_upper``. Events plus censored over all
        rows is ``n``."""
        return [
            {
                "time": t,
                "at_risk": r,
                "events": e,
                "censored": c,
                "survival": _finite_or_none(s),
                "ci_lower": _finite_or_none(lo),
                "ci_upper": _finite_or_none(hi),
            }
            for t, r, e, c, s, lo, hi in zip(
                self.timeline,
                self.table_at_risk,
                self.table_events,
                self.table_censored,
                self.survival,
                self.ci_lower,
                self.ci_upper,
                strict=True,
            )
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: floats, ints and None only."""
        return {
            "name": self.name,
            "n": self.n,
            "events": self.events,
            "censored": self.censored,
            "median_time": _finite_or_none(self.median_time),
            "median_ci": [_finite_or_none(x) for x in self.median_ci],
            "timeline": _floats(self.timeline),
            "survival": _floats(self.survival),
            "ci_lower": _floats(self.ci_lower),
            "ci_upper": _floats(self.ci_upper),
            "censor_times": _floats(self.censor_times),
            "censor_survival": _floats(self.censor_survival),
            "at_risk": [int(x) for x in self.at_risk],
        }


@dataclass(frozen=True)
class KMAnalysis:
    """Kaplan-Meier curves of groups, compared by a log-rank test and a Cox model.

    The hazard ratio is of each group against the first (the reference). With two groups it is
    also in ``hazard_ratio`` / ``hazard_ratio_ci`` / ``cox_p``; with more, those are None and
    ``hazard_ratios`` holds one (HR, CI low, CI high) per non-reference group.
    """

    endpoint: str  # e.g. "discharge" or "death"; carried for titles and messages
    time_unit: str  # "days"
    groups: tuple[KMGroup, ...]  # in ``group_order``, else sorted by name
    at_risk_times: tuple[float, ...]
    logrank_p: float | None
    logrank_statistic: float | None
    hazard_ratio: float | None
    hazard_ratio_ci: tuple[float, float] | None
    cox_p: float | None
    hazard_ratios: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    messages: tuple[str, ...] = ()  # why a number is missing, or a group left out
    alpha: float = 0.05  # the bands and hazard-ratio intervals are (1 - alpha) intervals

    @property
    def reference(self) -> str:
        """The group the hazard ratios are relative to."""
        return self.groups[0].name

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``json.dumps(..., allow_nan=False)`` works): no numpy types, None for
        anything not finite."""
        ci = self.hazard_ratio_ci
        return {
            "endpoint": self.endpoint,
            "time_unit": self.time_unit,
            "alpha": float(self.alpha),
            "reference": self.reference,
            "at_risk_times": _floats(self.at_risk_times),
            "groups": [g.to_dict() for g in self.groups],
            "logrank_p": _finite_or_none(self.logrank_p),
            "logrank_statistic": _finite_or_none(self.logrank_statistic),
            "hazard_ratio": _finite_or_none(self.hazard_ratio),
            "hazard_ratio_ci": None if ci is None else [_finite_or_none(x) for x in ci],
            "cox_p": _finite_or_none(self.cox_p),
            "hazard_ratios": {
                name: {
                    "hazard_ratio": _finite_or_none(hr),
                    "ci_lower": _finite_or_none(lo),
                    "ci_upper": _finite_or_none(hi),
                }
                for name, (hr, lo, hi) in self.hazard_ratios.items()
            },
            "messages": list(self.messages),
        }


def km_analysis(
    durations: Sequence[float] | np.ndarray,
    events: Sequence[bool] | np.ndarray,
    groups: Sequence[str] | np.ndarray,
    *,
    endpoint: str = "event",
    group_order: Sequence[str] | None = None,
    at_risk_every: float | None = None,
    min_per_group: int = MIN_PATIENTS_PER_GROUP,
    alpha: float = 0.05,
) -> KMAnalysis:
    """Kaplan-Meier curves per group, a log-rank test between them, and Cox hazard ratios.

    Parameters
    ----------
    durations
        (N,) days to the event or to censoring; finite and non-negative.
    events
        (N,) True (or 1) where the event was observed, False (0) where the time is censored.
    groups
        (N,) each patient's group name.
    endpoint
        What the event is ("death", "discharge"); used in messages only.
    group_order
        The groups in display order, the first being the hazard ratio's reference; it must
        list every group in ``groups``. Default: sorted by name.
    at_risk_every
        Days between the at-risk counts; default a round step giving 5 to 8 counts.
    min_per_group
        Groups with fewer patients are left out, with a message.
    alpha
        1 - the confidence level of the bands, the median's interval and the hazard ratio's.

    Returns
    -------
    KMAnalysis
        With one group left, its curve and no comparison (a message says so).

    Raises
    ------
    InvalidSurvivalDataError
        (a ``ValueError``) lengths differ, a duration is negative or not finite, an event is
        not 0/1, a group is missing, or ``group_order`` does not match the groups.
    NotEnoughDataError
        Too few patients, no group large enough, or no events at all.
    """
    if min_per_group < 1:
        raise ValueError(f"min_per_group must be at least 1, not {min_per_group}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be between 0 and 1, not {alpha}")
    d, e, g = _validated(durations, events, groups)
    order = _ordered_names(g, group_order)
    present = [name for name in order if np.any(g == name)]
    needed = min_per_group * min(2, max(len(present), 1))
    if d.size < needed:
        who = "No patients have" if d.size == 0 else f"Only {_count(d.size, 'patient')} {_has(d.size)}"
        raise NotEnoughDataError(f"{who} a known time to {endpoint}; a Kaplan-Meier analysis needs at least {needed}.")
    kept, messages = _large_enough(g, order, min_per_group)
    if not kept:
        sizes = ", ".join(f"{name}: {int(np.sum(g == name))}" for name in present)
        raise NotEnoughDataError(
            f"No group has at least {min_per_group} patients ({sizes}); a Kaplan-Meier curve needs "
            f"{min_per_group} patients in a group."
        )
    keep = np.isin(g, kept)
    d, e, g = d[keep], e[keep], g[keep]
    if not e.any():
        what = "the event" if endpoint == "event" else f"the event ({endpoint})"
        raise NotEnoughDataError(
            f"None of the {d.size} patients had {what}: every curve stays at 1 and there is nothing to estimate."
        )
    times = _at_risk_times(float(d.max()), at_risk_every)
    with _recorded_warnings():
        curves = tuple(_fit_group(name, d[g == name], e[g == name], times, alpha) for name in kept)
    if len(kept) == 1:
        if len(present) == 1:
            messages.append(f"There is only one group ('{kept[0]}'): nothing to compare.")
        else:
            messages.append(f"Only one group ('{kept[0]}') has enough patients: nothing to compare.")
        return KMAnalysis(
            endpoint=endpoint,
            time_unit="days",
            groups=curves,
            at_risk_times=times,
            logrank_p=None,
            logrank_statistic=None,
            hazard_ratio=None,
            hazard_ratio_ci=None,
            cox_p=None,
            messages=tuple(messages),
            alpha=alpha,
        )
    logrank_p, logrank_statistic = _logrank(d, e, g, kept)
    hazard_ratios, cox_p, cox_messages = _cox(d, e, g, kept, alpha)
    messages.extend(cox_messages)
    two = len(kept) == 2 and kept[1] in hazard_ratios
    if len(kept) > 2 and hazard_ratios:
        messages.append(
            f"With {len(kept)} groups there is no single hazard ratio: each group's is given against '{kept[0]}'."
        )
    return KMAnalysis(
        endpoint=endpoint,
        time_unit="days",
        groups=curves,
        at_risk_times=times,
        logrank_p=logrank_p,
        logrank_statistic=logrank_statistic,
        hazard_ratio=hazard_ratios[kept[1]][0] if two else None,
        hazard_ratio_ci=hazard_ratios[kept[1]][1:] if two else None,
        cox_p=cox_p if two else None,
        hazard_ratios=hazard_ratios,
        messages=tuple(messages),
        alpha=alpha,
    )


def _at_risk_times(max_days: float, every_days: float | None = None) -> tuple[float, ...]:
    """0, ``every_days``, 2 ``every_days``, ... up to ``max_days``; by default a round step (1, 2, 5,
    7, 10, 14, 20, 30, 50, 100 ... days) giving 5 to 8 times (fewer for stays under 4 days)."""
    if every_days is None:
        every_days = _nice_step(max_days)
    elif not (math.isfinite(every_days) and every_days > 0):
        raise ValueError(f"at_risk_every must be a positive number of days, not {every_days}")
    count = math.floor(max_days / every_days + 1e-9) + 1
    if count > _MAX_AT_RISK_TIMES:
        raise ValueError(
            f"at_risk_every={every_days} gives {count} at-risk times up to day {max_days:g}; "
            f"at most {_MAX_AT_RISK_TIMES} are allowed."
        )
    return tuple(float(i * every_days) for i in range(count))


def _nice_step(max_days: float) -> float:
    for step in _NICE_STEPS_DAYS:
        if math.floor(max_days / step + 1e-9) + 1 <= _MAX_AT_RISK_TICKS:
            return float(step)
    return float(_NICE_STEPS_DAYS[-1])


def _validated(durations: Any, events: Any, groups: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N,) float64 days, (N,) bool events, (N,) object array of str group names."""
    d = np.asarray(durations, dtype=np.float64).ravel()
    e_raw = np.asarray(events).ravel()
    g_raw = list(np.asarray(groups, dtype=object).ravel())
    if not d.size == e_raw.size == len(g_raw):
        raise InvalidSurvivalDataError(
            f"durations, events and groups must describe the same patients; got {d.size} durations, "
            f"{e_raw.size} events and {len(g_raw)} groups."
        )
    bad = int(np.sum(~np.isfinite(d) | (d < 0)))
    if bad:
        raise InvalidSurvivalDataError(
            f"{_count(bad, 'duration')} {'is' if bad == 1 else 'are'} negative or not a number; "
            "times must be finite days, 0 or more."
        )
    try:
        e_num = e_raw.astype(np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidSurvivalDataError("events must be True/False or 1/0.") from err
    bad = int(np.sum(~np.isin(e_num, (0.0, 1.0))))
    if bad:
        raise InvalidSurvivalDataError(f"{_count(bad, 'event')} {'is' if bad == 1 else 'are'} not True/False or 1/0.")
    missing = sum(1 for x in g_raw if x is None or (isinstance(x, float) and math.isnan(x)))
    if missing:
        raise InvalidSurvivalDataError(f"{_count(missing, 'patient')} {_has(missing)} no group.")
    g = np.array([str(x) for x in g_raw], dtype=object)
    return d, e_num.astype(bool), g


def _ordered_names(g: np.ndarray, group_order: Sequence[str] | None) -> list[str]:
    names = sorted(set(g.tolist()))
    if group_order is None:
        return names
    order = [str(x) for x in group_order]
    if len(set(order)) != len(order):
        raise InvalidSurvivalDataError(f"group_order names a group twice: {order}.")
    unlisted = [name for name in names if name not in order]
    if unlisted:
        listed = ", ".join(f"'{name}'" for name in unlisted)
        raise InvalidSurvivalDataError(f"group_order does not list {listed}.")
    return order


def _large_enough(g: np.ndarray, order: list[str], min_per_group: int) -> tuple[list[str], list[str]]:
    """The groups with at least ``min_per_group`` patients, and a message for each left out."""
    kept, messages = [], []
    for name in order:
        n = int(np.sum(g == name))
        if n >= min_per_group:
            kept.append(name)
        elif n == 0:
            messages.append(f"Group '{name}' has no patients; it is left out.")
        else:
            messages.append(
                f"Group '{name}' has only {_count(n, 'patient')} (at least {min_per_group} are needed for "
                "a curve); it is left out."
            )
    return kept, messages


def _fit_group(name: str, d: np.ndarray, e: np.ndarray, times: tuple[float, ...], alpha: float) -> KMGroup:
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times

    kmf = KaplanMeierFitter(alpha=alpha).fit(d, event_observed=e, label=name)
    sf = kmf.survival_function_.iloc[:, 0]
    ci = kmf.confidence_interval_
    table = kmf.event_table.reindex(sf.index)  # same times; reindex pins the row order to sf's
    median_ci = median_survival_times(ci)  # one row (q = 0.5): the lower band's, the upper's
    censor_times = np.sort(d[~e])
    censor_survival = (
        kmf.survival_function_at_times(censor_times).to_numpy(dtype=np.float64) if censor_times.size else ()
    )
    return KMGroup(
        name=name,
        n=int(d.size),
        events=int(e.sum()),
        censored=int((~e).sum()),
        median_time=_finite_or_none(kmf.median_survival_time_),
        median_ci=(_finite_or_none(median_ci.iloc[0, 0]), _finite_or_none(median_ci.iloc[0, 1])),
        timeline=_floats_tuple(sf.index),
        survival=_floats_tuple(sf),
        ci_lower=_floats_tuple(ci.iloc[:, 0]),
        ci_upper=_floats_tuple(ci.iloc[:, 1]),
        censor_times=_floats_tuple(censor_times),
        censor_survival=_floats_tuple(censor_survival),
        at_risk=tuple(int(np.sum(d >= t)) for t in times),
        table_at_risk=tuple(int(x) for x in table["at_risk"]),
        table_events=tuple(int(x) for x in table["observed"]),
        table_censored=tuple(int(x) for x in table["censored"]),
    )


def _logrank(d: np.ndarray, e: np.ndarray, g: np.ndarray, names: list[str]) -> tuple[float, float]:
    """(p, statistic): ``logrank_test`` for two groups, ``multivariate_logrank_test`` for more."""
    from lifelines.statistics import logrank_test, multivariate_logrank_test

    with _recorded_warnings():
        if len(names) == 2:
            a, b = g == names[0], g == names[1]
            result = logrank_test(d[a], d[b], event_observed_A=e[a], event_observed_B=e[b])
        else:
            result = multivariate_logrank_test(d, g, e)
    return float(result.p_value), float(result.test_statistic)


def _cox(
    d: np.ndarray, e: np.ndarray, g: np.ndarray, names: list[str], alpha: float
) -> tuple[dict[str, tuple[float, float, float]], float | None, list[str]]:
    """Each non-reference group's (HR, CI low, CI high) against ``names[0]`` from one Cox model
    with a 0/1 column per non-reference group; its p-value (meaningful with two groups); and the
    messages when it cannot be estimated."""
    import pandas as pd
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    no_events = [name for name in names if not e[g == name].any()]
    if no_events:
        return {}, None, [f"Group '{name}' has no events: the hazard ratio cannot be estimated." for name in no_events]
    columns = {f"group_{i}": name for i, name in enumerate(names[1:], start=1)}
    frame = pd.DataFrame({"duration": d, "event": e.astype(int)})
    for column, name in columns.items():
        frame[column] = (g == name).astype(int)
    failed = (
        "The Cox model did not converge (one group's events may all come before the other's): "
        "the hazard ratio cannot be estimated."
    )
    with _recorded_warnings() as caught:
        try:
            cph = CoxPHFitter(alpha=alpha).fit(frame, duration_col="duration", event_col="event")
        except (ConvergenceError, np.linalg.LinAlgError, ValueError, ZeroDivisionError) as err:
            logger.info("Cox fit failed: %s", err)
            return {}, None, [failed]
    # lifelines warns (and still returns absurd numbers, HR 1e8 with p 0.99) on complete separation.
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        return {}, None, [failed]
    log_ci = cph.confidence_intervals_
    hazard_ratios = {
        name: (
            float(cph.hazard_ratios_[column]),
            float(np.exp(log_ci.loc[column].iloc[0])),
            float(np.exp(log_ci.loc[column].iloc[1])),
        )
        for column, name in columns.items()
    }
    if not all(math.isfinite(x) for hr in hazard_ratios.values() for x in hr):
        return {}, None, [failed]
    return hazard_ratios, float(cph.summary.loc[next(iter(columns)), "p"]), []


@contextmanager
def _recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """lifelines' and pandas' warnings stay here (logged, handed to the caller to judge) rather
    than reaching the page. Not thread-safe, like ``warnings.catch_warnings`` itself."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    for w in caught:
        logger.debug("%s: %s", w.category.__name__, str(w.message).strip())


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _floats(values: Sequence[float]) -> list[float | None]:
    return [_finite_or_none(x) for x in values]


def _floats_tuple(values: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in np.asarray(values, dtype=np.float64))


def _count(n: int, noun: str) -> str:
    """'1 patient', '3 patients'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _has(n: int) -> str:
    return "has" if n == 1 else "have"
