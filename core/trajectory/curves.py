"""s(t) curves: one patient's scores in time order, their features, and the cohort's course.

Time is days since admission where the library knows it, else days since symptom onset
(:attr:`Point.day`); both are kept. Features follow seed 003 ("values, slope, 1st-derivative,
2nd-derivative") on irregular time steps: slopes between consecutive scans, and derivatives
at each scan by numpy's second-order finite differences for uneven spacing (``np.gradient``
with the scan days as coordinates), which are exact for quadratics.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.library.records import Patient, PatientSummary
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.trajectory.scores import probability, score_name, score_scan, score_version, scored_refs


@dataclass(frozen=True)
class Point:
    """One scan on a trajectory."""

    study_id: int
    image_id: int
    day: float  # days since admission, else since onset
    onset_day: float | None
    admission_day: float | None
    value: float  # the model's score (COVID3D's s, or an X-ray model's P(COVID-19))
    probability: float  # P(COVID+)
    note: str | None = None


@dataclass(frozen=True)
class CurveFeatures:
    n: int
    first: float | None
    last: float | None
    peak: float | None
    peak_day: float | None
    slopes: tuple[float, ...]  # between consecutive scans, per day
    first_derivative: tuple[float, ...]  # at each scan, per day
    second_derivative: tuple[float, ...]  # at each scan, per day squared (needs >= 3 scans)
    auc: float | None  # trapezoidal area under s(t), in score x days

    def as_dict(self) -> dict[str, Any]:
        return {
            "n_scans": self.n,
            "first": self.first,
            "last": self.last,
            "peak": self.peak,
            "peak_day": self.peak_day,
            "slopes": list(self.slopes),
            "first_derivative": list(self.first_derivative),
            "second_derivative": list(self.second_derivative),
            "auc": self.auc,
        }


def curve_features(days: np.ndarray | list[float], values: np.ndarray | list[float]) -> CurveFeatures:
    """Features of a curve sampled at (possibly irregular, unsorted) ``days``. Several values on
    one day are averaged first (a derivative needs distinct times)."""
    d = np.asarray(days, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if d.size != v.size:
        raise ValueError("days and values differ in length")
    if d.size == 0:
        return CurveFeatures(0, None, None, None, None, (), (), (), None)
    if not (np.isfinite(d).all() and np.isfinite(v).all()):
        raise ValueError("days and values must be finite")
    uniq, inverse = np.unique(d, return_inverse=True)
    mean = np.bincount(inverse, weights=v) / np.bincount(inverse)
    n = uniq.size
    peak_at = int(np.argmax(mean))
    slopes = np.diff(mean) / np.diff(uniq) if n >= 2 else np.zeros(0)
    if n >= 3:
        d1 = np.gradient(mean, uniq, edge_order=2)
        d2 = np.gradient(d1, uniq, edge_order=2)
    elif n == 2:
        d1, d2 = np.repeat(slopes, 2), np.zeros(0)
    else:
        d1, d2 = np.zeros(0), np.zeros(0)
    return CurveFeatures(
        n=n,
        first=float(mean[0]),
        last=float(mean[-1]),
        peak=float(mean[peak_at]),
        peak_day=float(uniq[peak_at]),
        slopes=tuple(float(x) for x in slopes),
        first_derivative=tuple(float(x) for x in d1),
        second_derivative=tuple(float(x) for x in d2),
        auc=float(np.trapezoid(mean, uniq)) if n >= 2 else None,
    )


@dataclass(frozen=True)
class Trajectory:
    patient: PatientSummary
    model_id: str
    model_version: str
    score: str  # "s" or "p_covid"
    axis: str  # "admission" or "onset": what Point.day counts from
    points: tuple[Point, ...]
    features: CurveFeatures

    def as_dict(self) -> dict[str, Any]:
        s = self.patient
        return {
            "patient_id": s.pseudonym,
            "label": s.label,
            "outcome": s.outcome,
            "length_of_stay_days": s.length_of_stay_days,
            "model_id": self.model_id,
            "model_version": self.model_version,
            "score": self.score,
            "days_since": self.axis,
            "points": [
                {
                    "study_id": p.study_id,
                    "image_id": p.image_id,
                    "day": p.day,
                    "offset_admission_days": p.admission_day,
                    "offset_onset_days": p.onset_day,
                    "value": p.value,
                    "probability": p.probability,
                }
                for p in self.points
            ],
            "features": self.features.as_dict(),
        }


#: What a trajectory's days count from.
AXES: tuple[str, ...] = ("admission", "onset")


def _trajectory(
    patient: Patient, model: LoadedModel, scores: dict[int, float], images: dict[int, int], since: str | None = None
) -> Trajectory:
    """``since`` "admission" or "onset"; None: admission where the patient's studies know it."""
    if since is not None and since not in AXES:
        raise ValueError(f"days count from admission or onset, not {since!r}")
    points = []
    studies = [s for s in patient.studies if s.id in scores and s.day is not None]
    axis = since or ("admission" if any(s.offset_admission_days is not None for s in studies) else "onset")
    for s in studies:
        day = s.offset_admission_days if axis == "admission" else s.offset_onset_days
        if day is None:
            continue  # a study not dated from this axis's origin cannot sit on it
        value = scores[s.id]
        points.append(
            Point(
                study_id=s.id,
                image_id=images[s.id],
                day=float(day),
                onset_day=s.offset_onset_days,
                admission_day=s.offset_admission_days,
                value=value,
                probability=probability(model, value),
                note=s.note,
            )
        )
    points.sort(key=lambda p: (p.day, p.study_id))
    return Trajectory(
        patient=patient.summary,
        model_id=model.id,
        model_version=score_version(model),
        score=score_name(model),
        axis=axis,
        points=tuple(points),
        features=curve_features([p.day for p in points], [p.value for p in points]),
    )


def patient_trajectory(
    library: CaseLibrary, pseudonym: str, model: LoadedModel, since: str | None = None
) -> Trajectory:
    """One patient's s(t) (or X-ray P(COVID-19)(t)); scans not scored yet are scored now."""
    patient = library.patient(pseudonym)
    name, version = score_name(model), score_version(model)
    refs = {r.study_id: r for r in scored_refs(library, model) if r.patient_pseudonym == pseudonym}
    scores = library.scores(model.id, version, name)
    missing = {sid: score_scan(model, library, ref) for sid, ref in refs.items() if sid not in scores}
    if missing:
        library.put_scores(model.id, version, name, missing)
        scores.update(missing)
    return _trajectory(patient, model, scores, {sid: r.image_id for sid, r in refs.items()}, since)


def cohort_trajectories(library: CaseLibrary, model: LoadedModel, since: str | None = None) -> list[Trajectory]:
    """Every patient's trajectory from the stored scores (run ``score_library`` first)."""
    name, version = score_name(model), score_version(model)
    scores = library.scores(model.id, version, name)
    refs = scored_refs(library, model)
    images = {r.study_id: r.image_id for r in refs}
    who = sorted({r.patient_pseudonym for r in refs if r.study_id in scores})
    out = []
    for pseudonym in who:
        t = _trajectory(library.patient(pseudonym), model, scores, images, since)
        if t.points:
            out.append(t)
    return out


@dataclass(frozen=True)
class CohortCurve:
    """The cohort's median course: per bin of days, the median and quartiles of the scores."""

    bin_days: float
    centres: tuple[float, ...]
    median: tuple[float, ...]
    q25: tuple[float, ...]
    q75: tuple[float, ...]
    counts: tuple[int, ...]
    peak_day: float | None  # centre of the bin with the highest median

    def as_dict(self) -> dict[str, Any]:
        return {
            "bin_days": self.bin_days,
            "centres": list(self.centres),
            "median": list(self.median),
            "q25": list(self.q25),
            "q75": list(self.q75),
            "counts": list(self.counts),
            "peak_day": self.peak_day,
        }


def cohort_curve(
    days: np.ndarray | list[float], values: np.ndarray | list[float], *, bin_days: float = 2.0, min_scans: int = 5
) -> CohortCurve:
    """Median and interquartile band of ``values`` in bins of ``bin_days`` (from day 0; earlier
    days fall in the first bin); bins with fewer than ``min_scans`` scans are left out."""
    d = np.asarray(days, dtype=np.float64).ravel()
    v = np.asarray(values, dtype=np.float64).ravel()
    if bin_days <= 0:
        raise ValueError("bin_days must be positive")
    bins = np.maximum(np.floor(d / bin_days), 0).astype(int) if d.size else np.zeros(0, int)
    centres, med, lo, hi, counts = [], [], [], [], []
    for b in np.unique(bins):
        sel = v[bins == b]
        if sel.size < min_scans:
            continue
        centres.append(float((b + 0.5) * bin_days))
        q = np.quantile(sel, [0.25, 0.5, 0.75])
        lo.append(float(q[0]))
        med.append(float(q[1]))
        hi.append(float(q[2]))
        counts.append(int(sel.size))
    peak = centres[int(np.argmax(med))] if med else None
    return CohortCurve(bin_days, tuple(centres), tuple(med), tuple(lo), tuple(hi), tuple(counts), peak)


def cohort_points(
    trajectories: list[Trajectory], labels: tuple[str, ...] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """All (day, value) points of the trajectories (of patients with these labels), as arrays."""
    pts = [
        (p.day, p.value)
        for t in trajectories
        if labels is None or t.patient.label in labels
        for p in t.points
        if math.isfinite(p.value)
    ]
    if not pts:
        return np.zeros(0), np.zeros(0)
    arr = np.asarray(pts, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


#: Columns of :func:`features_rows`, in order.
FEATURE_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "label",
    "outcome",
    "length_of_stay_days",
    "n_scans",
    "first_day",
    "last_day",
    "first",
    "last",
    "peak",
    "peak_day",
    "mean_slope",
    "max_rise",
    "max_fall",
    "mean_second_derivative",
    "auc",
)


def features_rows(trajectories: list[Trajectory]) -> list[dict[str, Any]]:
    """One row per patient of scalar curve features (for a table or a CSV)."""
    rows = []
    for t in trajectories:
        f, s = t.features, t.patient
        days = [p.day for p in t.points]
        rows.append(
            {
                "patient_id": s.pseudonym,
                "label": s.label,
                "outcome": s.outcome,
                "length_of_stay_days": s.length_of_stay_days,
                "n_scans": f.n,
                "first_day": min(days) if days else None,
                "last_day": max(days) if days else None,
                "first": f.first,
                "last": f.last,
                "peak": f.peak,
                "peak_day": f.peak_day,
                "mean_slope": float(np.mean(f.slopes)) if f.slopes else None,
                "max_rise": max(f.slopes) if f.slopes else None,
                "max_fall": min(f.slopes) if f.slopes else None,
                "mean_second_derivative": float(np.mean(f.second_derivative)) if f.second_derivative else None,
                "auc": f.auc,
            }
        )
    return rows


def features_csv(trajectories: list[Trajectory]) -> str:
    """:func:`features_rows` as CSV text (numbers with 6 significant digits)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FEATURE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in features_rows(trajectories):
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else ("" if v is None else v)) for k, v in row.items()})
    return buf.getvalue()
