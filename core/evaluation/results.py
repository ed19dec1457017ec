"""What an evaluation and a model comparison report, as small frozen dataclasses.

:func:`core.evaluation.evaluate.evaluate` returns an :class:`Evaluation` (one model on one data
set, per level: image; CT slice, scan and patient), :func:`core.evaluation.compare.compare` a
:class:`Comparison` (several models on the same cases). Pages, figures and the HTML report read
their attributes; ``to_json()`` gives the JSON that ``python -m core evaluate --json`` prints
(keys in the order written there, lists for tuples, ``None`` for a missing value) and
``from_json()`` reads it back, so ``X.from_json(x.to_json()) == x``.

Proportions (accuracy, precision, recall, prevalence, ...) are in 0..1, row percents of a
confusion matrix in 0..100, CT windows ``(center, width)`` in HU. A rate whose denominator is 0
is ``None``. Curves are tuples of floats of equal length.

This module imports no numeric library, so the command line can name these types without
paying for scikit-learn at start-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: One JSON object as :mod:`json` reads it.
Json = dict[str, Any]


def _floats(values: Sequence[Any]) -> tuple[float, ...]:
    return tuple(float(v) for v in values)


def _optional_floats(values: Sequence[Any]) -> tuple[float | None, ...]:
    return tuple(None if v is None else float(v) for v in values)


def _pair(values: Sequence[Any]) -> tuple[float, float]:
    low, high = values
    return float(low), float(high)


def _optional_pair(values: Sequence[Any] | None) -> tuple[float, float] | None:
    return None if values is None else _pair(values)


def _list(pair: tuple[float, ...] | None) -> list[float] | None:
    return None if pair is None else list(pair)


# --------------------------------------------------------------------------------------------
# Pieces of one level


@dataclass(frozen=True)
class Confusion:
    """Counts with rows the true class and columns the predicted one, both in ``labels`` order;
    ``row_percent`` is each row's counts in 0..100 (``None`` for a class with no case)."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]
    row_percent: tuple[tuple[float | None, ...], ...]

    @property
    def total(self) -> int:
        """Cases counted."""
        return sum(sum(row) for row in self.counts)

    def to_json(self) -> Json:
        return {
            "labels": list(self.labels),
            "counts": [list(row) for row in self.counts],
            "row_percent": [list(row) for row in self.row_percent],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Confusion:
        return cls(
            labels=tuple(str(v) for v in d["labels"]),
            counts=tuple(tuple(int(v) for v in row) for row in d["counts"]),
            row_percent=tuple(_optional_floats(row) for row in d["row_percent"]),
        )


@dataclass(frozen=True)
class ClassMetrics:
    """One class (or finding) against the rest: rates at the level's decisions, and the ranking
    quality of its score. ``threshold`` is a finding's own operating threshold (multi-label
    levels only; ``None`` elsewhere, and then absent from the JSON)."""

    precision: float | None
    recall: float | None
    specificity: float | None
    f1: float | None
    support: int
    prevalence: float
    auc: float | None = None
    auc_ci: tuple[float, float] | None = None
    average_precision: float | None = None
    threshold: float | None = None

    def to_json(self) -> Json:
        out: Json = {
            "precision": self.precision,
            "recall": self.recall,
            "specificity": self.specificity,
            "f1": self.f1,
            "support": self.support,
            "prevalence": self.prevalence,
            "auc": self.auc,
            "auc_ci": _list(self.auc_ci),
            "average_precision": self.average_precision,
        }
        if self.threshold is not None:
            out["threshold"] = self.threshold
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ClassMetrics:
        return cls(
            precision=d.get("precision"),
            recall=d.get("recall"),
            specificity=d.get("specificity"),
            f1=d.get("f1"),
            support=int(d["support"]),
            prevalence=float(d["prevalence"]),
            auc=d.get("auc"),
            auc_ci=_optional_pair(d.get("auc_ci")),
            average_precision=d.get("average_precision"),
            threshold=d.get("threshold"),
        )


@dataclass(frozen=True)
class Roc:
    """One ROC curve (thinned for display; the AUC is computed on every point) with its
    patient-level bootstrap 95% interval (``None`` when no resample held both classes)."""

    fpr: tuple[float, ...]
    tpr: tuple[float, ...]
    auc: float
    auc_ci: tuple[float, float] | None

    def to_json(self) -> Json:
        return {"fpr": list(self.fpr), "tpr": list(self.tpr), "auc": self.auc, "auc_ci": _list(self.auc_ci)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Roc:
        return cls(_floats(d["fpr"]), _floats(d["tpr"]), float(d["auc"]), _optional_pair(d.get("auc_ci")))


@dataclass(frozen=True)
class PrecisionRecall:
    """One precision-recall curve; ``prevalence`` is the precision of a random ranking."""

    recall: tuple[float, ...]
    precision: tuple[float, ...]
    average_precision: float
    prevalence: float

    def to_json(self) -> Json:
        return {
            "recall": list(self.recall),
            "precision": list(self.precision),
            "average_precision": self.average_precision,
            "prevalence": self.prevalence,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PrecisionRecall:
        return cls(_floats(d["recall"]), _floats(d["precision"]), float(d["average_precision"]), float(d["prevalence"]))


@dataclass(frozen=True)
class ReliabilityBin:
    """One confidence bin ``lo < confidence <= hi`` of a reliability diagram: the mean top-label
    confidence of its cases and the share of them that the top label got right."""

    lo: float
    hi: float
    confidence: float | None
    accuracy: float | None
    count: int

    def to_json(self) -> Json:
        return {
            "lo": self.lo,
            "hi": self.hi,
            "confidence": self.confidence,
            "accuracy": self.accuracy,
            "count": self.count,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ReliabilityBin:
        return cls(float(d["lo"]), float(d["hi"]), d.get("confidence"), d.get("accuracy"), int(d["count"]))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram and its expected calibration error (top label)."""

    ece: float
    bins: tuple[ReliabilityBin, ...]

    def to_json(self) -> Json:
        return {"ece": self.ece, "bins": [b.to_json() for b in self.bins]}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Reliability:
        return cls(float(d["ece"]), tuple(ReliabilityBin.from_json(b) for b in d["bins"]))


@dataclass(frozen=True)
class Calibration:
    """Calibration before (T = 1) and after the card's temperature; ``calibrated`` and
    ``fitted_on`` are ``None`` when no temperature was fitted."""

    temperature: float
    fitted_on: str | None
    uncalibrated: Reliability
    calibrated: Reliability | None

    def to_json(self) -> Json:
        return {
            "temperature": self.temperature,
            "fitted_on": self.fitted_on,
            "uncalibrated": self.uncalibrated.to_json(),
            "calibrated": None if self.calibrated is None else self.calibrated.to_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Calibration:
        calibrated = d.get("calibrated")
        return cls(
            temperature=float(d["temperature"]),
            fitted_on=d.get("fitted_on"),
            uncalibrated=Reliability.from_json(d["uncalibrated"]),
            calibrated=None if calibrated is None else Reliability.from_json(calibrated),
        )


@dataclass(frozen=True)
class OperatingPoint:
    """A binary decision ``P(label) >= threshold``: its counts and rates (``None`` where the
    denominator is 0)."""

    label: str
    threshold: float
    tp: int
    fp: int
    tn: int
    fn: int
    sensitivity: float | None
    specificity: float | None
    ppv: float | None
    npv: float | None

    def to_json(self) -> Json:
        return {
            "label": self.label,
            "threshold": self.threshold,
            "tp": self.tp,
            "fp": self.fp,
            "tn": self.tn,
            "fn": self.fn,
            "sensitivity": self.sensitivity,
            "specificity": self.specificity,
            "ppv": self.ppv,
            "npv": self.npv,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> OperatingPoint:
        return cls(
            label=str(d["label"]),
            threshold=float(d["threshold"]),
            tp=int(d["tp"]),
            fp=int(d["fp"]),
            tn=int(d["tn"]),
            fn=int(d["fn"]),
            sensitivity=d.get("sensitivity"),
            specificity=d.get("specificity"),
            ppv=d.get("ppv"),
            npv=d.get("npv"),
        )


@dataclass(frozen=True)
class Scores:
    """Each case's truth (0/1) and P(``label``), for a threshold the user moves."""

    label: str
    y: tuple[int, ...]
    p: tuple[float, ...]

    def to_json(self) -> Json:
        return {"label": self.label, "y": list(self.y), "p": list(self.p)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Scores:
        return cls(str(d["label"]), tuple(int(v) for v in d["y"]), _floats(d["p"]))


# --------------------------------------------------------------------------------------------
# One level, one evaluation


@dataclass(frozen=True)
class Level:
    """Every number of one level of a model (an image; a CT slice, scan or patient).

    ``per_class`` follows ``labels`` (a multi-label level: one entry per finding); ``roc`` and
    ``pr`` hold the labels whose cases have both classes, the others are in ``skipped_labels``.
    A multi-label level has no accuracy nor confusion matrix; a level recorded on a card (series
    models) has no curves, calibration nor scores, and ``n_patients`` only when its unit is the
    patient. ``note`` says what the score is where it is not the model's own probability.
    """

    unit: str
    n: int
    n_patients: int | None
    labels: tuple[str, ...]
    positive: str | None
    accuracy: float | None
    confusion_matrix: Confusion | None
    per_class: Mapping[str, ClassMetrics]
    macro_auc: float | None
    roc: Mapping[str, Roc] = field(default_factory=dict)
    pr: Mapping[str, PrecisionRecall] = field(default_factory=dict)
    calibration: Calibration | None = None
    operating_point: OperatingPoint | None = None
    skipped_labels: tuple[str, ...] = ()
    note: str | None = None
    scores: Scores | None = None

    def to_json(self) -> Json:
        return {
            "unit": self.unit,
            "n": self.n,
            "n_patients": self.n_patients,
            "labels": list(self.labels),
            "positive": self.positive,
            "accuracy": self.accuracy,
            "confusion_matrix": None if self.confusion_matrix is None else self.confusion_matrix.to_json(),
            "per_class": {name: stats.to_json() for name, stats in self.per_class.items()},
            "macro_auc": self.macro_auc,
            "roc": {name: curve.to_json() for name, curve in self.roc.items()},
            "pr": {name: curve.to_json() for name, curve in self.pr.items()},
            "calibration": None if self.calibration is None else self.calibration.to_json(),
            "operating_point": None if self.operating_point is None else self.operating_point.to_json(),
            "skipped_labels": list(self.skipped_labels),
            "note": self.note,
            "scores": None if self.scores is None else self.scores.to_json(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Level:
        cm, calibration, point, scores = (
            d.get(k) for k in ("confusion_matrix", "calibration", "operating_point", "scores")
        )
        return cls(
            unit=str(d["unit"]),
            n=int(d["n"]),
            n_patients=d.get("n_patients"),
            labels=tuple(str(v) for v in d.get("labels", ())),
            positive=d.get("positive"),
            accuracy=d.get("accuracy"),
            confusion_matrix=None if cm is None else Confusion.from_json(cm),
            per_class={str(k): ClassMetrics.from_json(v) for k, v in d.get("per_class", {}).items()},
            macro_auc=d.get("macro_auc"),
            roc={str(k): Roc.from_json(v) for k, v in (d.get("roc") or {}).items()},
            pr={str(k): PrecisionRecall.from_json(v) for k, v in (d.get("pr") or {}).items()},
            calibration=None if calibration is None else Calibration.from_json(calibration),
            operating_point=None if point is None else OperatingPoint.from_json(point),
            skipped_labels=tuple(str(v) for v in d.get("skipped_labels", ())),
            note=d.get("note"),
            scores=None if scores is None else Scores.from_json(scores),
        )


@dataclass(frozen=True)
class ModelSummary:
    """The evaluated model as its card describes it; ``temperature_fitted`` is False when its
    probabilities are raw outputs (T = 1)."""

    id: str
    version: str
    architecture: str
    input_kind: str
    labels: tuple[str, ...]
    temperature: float
    temperature_fitted: bool
    intended_use: str

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "version": self.version,
            "architecture": self.architecture,
            "input_kind": self.input_kind,
            "labels": list(self.labels),
            "temperature": self.temperature,
            "temperature_fitted": self.temperature_fitted,
            "intended_use": self.intended_use,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ModelSummary:
        return cls(
            id=str(d["id"]),
            version=str(d.get("version", "")),
            architecture=str(d.get("architecture", "")),
            input_kind=str(d.get("input_kind", "")),
            labels=tuple(str(v) for v in d.get("labels", ())),
            temperature=float(d.get("temperature", 1.0)),
            temperature_fitted=bool(d.get("temperature_fitted", False)),
            intended_use=str(d.get("intended_use") or ""),
        )


@dataclass(frozen=True)
class DataSummary:
    """What the model was evaluated on: ``split`` is "held-out", "dev" or "user" (a user's
    data set); ``n_patients`` is ``None`` where only cases were recorded."""

    split: str
    description: str
    source: str
    n_cases: int
    n_patients: int | None

    def to_json(self) -> Json:
        return {
            "split": self.split,
            "description": self.description,
            "source": self.source,
            "n_cases": self.n_cases,
            "n_patients": self.n_patients,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> DataSummary:
        return cls(
            split=str(d["split"]),
            description=str(d.get("description", "")),
            source=str(d.get("source", "")),
            n_cases=int(d["n_cases"]),
            n_patients=d.get("n_patients"),
        )


@dataclass(frozen=True)
class KFold:
    """Seed 002's k-fold table: one row per fold (``"1"``..``"k"`` or ``"mean"``) and part
    (``"train"`` or ``"validation"``), each row mapping a metric name (``"accuracy"``,
    ``"<class> precision"``, ``"ROC AUC"``, ...) to its value; ``kept_fold`` is the fold whose
    weights were shipped."""

    rows: tuple[Mapping[str, Any], ...]
    kept_fold: int | None

    def to_json(self) -> Json:
        return {"rows": [dict(row) for row in self.rows], "kept_fold": self.kept_fold}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> KFold:
        return cls(tuple(dict(row) for row in d.get("rows", ())), d.get("kept_fold"))


@dataclass(frozen=True)
class WindowRobustness:
    """A CT model's AUC at ``n_windows`` windows drawn within one SD (``sd``, center and width
    in HU) of its training window: each window and its AUC, their summary, and the ROC band they
    span on the false-positive-rate grid ``fpr`` (2.5th, 50th and 97.5th percentile of the true
    positive rate) and the training window's ROC curve."""

    unit: str
    training_window: tuple[float, float]
    sd: tuple[float, float]
    n_windows: int
    windows: tuple[tuple[float, float], ...]
    aucs: tuple[float, ...]
    auc_training_window: float
    auc_mean: float
    auc_sd: float
    auc_min: float
    auc_max: float
    fpr: tuple[float, ...]
    tpr_low: tuple[float, ...]
    tpr_high: tuple[float, ...]
    tpr_median: tuple[float, ...]
    fpr_training_window: tuple[float, ...]
    tpr_training_window: tuple[float, ...]

    def to_json(self) -> Json:
        return {
            "unit": self.unit,
            "training_window": list(self.training_window),
            "sd": list(self.sd),
            "n_windows": self.n_windows,
            "windows": [list(w) for w in self.windows],
            "aucs": list(self.aucs),
            "auc_training_window": self.auc_training_window,
            "auc_mean": self.auc_mean,
            "auc_sd": self.auc_sd,
            "auc_min": self.auc_min,
            "auc_max": self.auc_max,
            "roc_band": {
                "fpr": list(self.fpr),
                "tpr_low": list(self.tpr_low),
                "tpr_high": list(self.tpr_high),
                "tpr_median": list(self.tpr_median),
            },
            "roc_training_window": {"fpr": list(self.fpr_training_window), "tpr": list(self.tpr_training_window)},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WindowRobustness:
        band, training = d["roc_band"], d["roc_training_window"]
        center, width = d["training_window"]
        sd_center, sd_width = d["sd"]
        return cls(
            unit=str(d["unit"]),
            training_window=(float(center), float(width)),
            sd=(float(sd_center), float(sd_width)),
            n_windows=int(d["n_windows"]),
            windows=tuple((float(c), float(w)) for c, w in d["windows"]),
            aucs=_floats(d["aucs"]),
            auc_training_window=float(d["auc_training_window"]),
            auc_mean=float(d["auc_mean"]),
            auc_sd=float(d["auc_sd"]),
            auc_min=float(d["auc_min"]),
            auc_max=float(d["auc_max"]),
            fpr=_floats(band["fpr"]),
            tpr_low=_floats(band["tpr_low"]),
            tpr_high=_floats(band["tpr_high"]),
            tpr_median=_floats(band["tpr_median"]),
            fpr_training_window=_floats(training["fpr"]),
            tpr_training_window=_floats(training["tpr"]),
        )


@dataclass(frozen=True)
class Evaluation:
    """One model on one data set: its levels (the first is the model's own unit), seed 002's
    k-fold table when it was trained with folds, its robustness to the CT window when asked
    for, and notes on cases left out and on how the probabilities were calibrated.

    ``task`` is "multiclass", "binary" or "multilabel".
    """

    model: ModelSummary
    data: DataSummary
    task: str
    levels: tuple[Level, ...]
    kfold: KFold | None = None
    robustness: WindowRobustness | None = None
    notes: tuple[str, ...] = ()

    def to_json(self) -> Json:
        return {
            "model": self.model.to_json(),
            "data": self.data.to_json(),
            "task": self.task,
            "levels": [level.to_json() for level in self.levels],
            "kfold": None if self.kfold is None else self.kfold.to_json(),
            "robustness": None if self.robustness is None else self.robustness.to_json(),
            "notes": list(self.notes),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Evaluation:
        kfold, robustness = d.get("kfold"), d.get("robustness")
        return cls(
            model=ModelSummary.from_json(d["model"]),
            data=DataSummary.from_json(d["data"]),
            task=str(d["task"]),
            levels=tuple(Level.from_json(level) for level in d["levels"]),
            kfold=None if kfold is None else KFold.from_json(kfold),
            robustness=None if robustness is None else WindowRobustness.from_json(robustness),
            notes=tuple(str(v) for v in d.get("notes", ())),
        )


# --------------------------------------------------------------------------------------------
# Models side by side


@dataclass(frozen=True)
class ComparedModel:
    """One model of a comparison: its AUC on the shared cases with a patient-level bootstrap
    95% interval, and its full ROC curve."""

    id: str
    version: str
    auc: float
    auc_ci: tuple[float, float]
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


@dataclass(frozen=True)
class PairedTest:
    """AUC(a) - AUC(b) on the same cases: DeLong's test and a paired bootstrap (its 95%
    interval of the difference and two-sided p)."""

    a: str
    b: str
    auc_a: float
    auc_b: float
    difference: float
    delong_z: float
    delong_p: float
    bootstrap_ci: tuple[float, float]
    bootstrap_p: float

    def to_json(self) -> Json:
        return {
            "a": self.a,
            "b": self.b,
            "auc_a": self.auc_a,
            "auc_b": self.auc_b,
            "difference": self.difference,
            "delong_z": self.delong_z,
            "delong_p": self.delong_p,
            "bootstrap_ci": list(self.bootstrap_ci),
            "bootstrap_p": self.bootstrap_p,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> PairedTest:
        return cls(
            a=str(d["a"]),
            b=str(d["b"]),
            auc_a=float(d["auc_a"]),
            auc_b=float(d["auc_b"]),
            difference=float(d["difference"]),
            delong_z=float(d["delong_z"]),
            delong_p=float(d["delong_p"]),
            bootstrap_ci=_pair(d["bootstrap_ci"]),
            bootstrap_p=float(d["bootstrap_p"]),
        )


@dataclass(frozen=True)
class Comparison:
    """Models scored on the same ``n`` cases (``unit``: "image" or "scan") by P(``positive``),
    each with its AUC, and every pair tested; ``data`` describes the cases."""

    unit: str
    positive: str
    n: int
    n_patients: int
    data: str
    models: tuple[ComparedModel, ...]
    pairs: tuple[PairedTest, ...]

    def to_json(self) -> Json:
        return {
            "unit": self.unit,
            "positive": self.positive,
            "n": self.n,
            "n_patients": self.n_patients,
            "data": self.data,
            "models": [{"id": m.id, "version": m.version, "auc": m.auc, "auc_ci": list(m.auc_ci)} for m in self.models],
            "roc": {m.id: {"fpr": list(m.fpr), "tpr": list(m.tpr), "auc": m.auc} for m in self.models},
            "pairs": [pair.to_json() for pair in self.pairs],
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Comparison:
        roc = d["roc"]
        models = tuple(
            ComparedModel(
                id=str(m["id"]),
                version=str(m.get("version", "")),
                auc=float(m["auc"]),
                auc_ci=_pair(m["auc_ci"]),
                fpr=_floats(roc[m["id"]]["fpr"]),
                tpr=_floats(roc[m["id"]]["tpr"]),
            )
            for m in d["models"]
        )
        return cls(
            unit=str(d["unit"]),
            positive=str(d["positive"]),
            n=int(d["n"]),
            n_patients=int(d["n_patients"]),
            data=str(d["data"]),
            models=models,
            pairs=tuple(PairedTest.from_json(p) for p in d["pairs"]),
        )
