"""The results a model's card recorded at training time, typed.

A trainer writes them as JSON under the manifest entry's ``metrics`` (``held_out``, ``dev``,
``held_out_per_scan``, ``shortcuts``); :class:`~core.models.manifest.ModelCard` keeps that JSON
as written, so an entry reads and writes back unchanged, and :class:`CardMetrics` is the view
that pages and the evaluation read (``card.recorded_metrics``). A key a card does not record is
``None`` (or empty) here; proportions are in 0..1.

Examples
--------
>>> recorded = CardMetrics.from_json({"held_out": {"n": 60, "accuracy": 0.9, "roc_auc_ovr": 0.95}})
>>> recorded.held_out.accuracy, recorded.held_out.auc, recorded.dev
(0.9, 0.95, None)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class ClassRates:
    """One class against the rest at the model's decisions on a split; ``support`` is the
    number of cases of the class."""

    precision: float | None
    recall: float | None
    specificity: float | None
    f1: float | None
    support: int

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ClassRates:
        return cls(
            precision=_float(d.get("precision")),
            recall=_float(d.get("recall")),
            specificity=_float(d.get("specificity")),
            f1=_float(d.get("f1")),
            support=int(d.get("support", 0)),
        )


@dataclass(frozen=True)
class FindingResult:
    """One finding of the multi-label model on a split: its positives, ROC AUC (``None`` when
    the split has no positive or no negative case) and the rates at ``threshold`` (the
    finding's operating threshold; a dev record has none, its rates are at 0.5)."""

    n_positive: int
    prevalence: float | None
    auc: float | None
    threshold: float | None
    sensitivity: float | None
    specificity: float | None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FindingResult:
        return cls(
            n_positive=int(d.get("n_positive", 0)),
            prevalence=_float(d.get("prevalence")),
            auc=_float(d.get("auc")),
            threshold=_float(d.get("threshold")),
            sensitivity=_float(d.get("sensitivity")),
            specificity=_float(d.get("specificity")),
        )


@dataclass(frozen=True)
class RecordedSplit:
    """What a trainer measured on one split.

    A classifier records ``n``, ``accuracy``, ``auc``, the confusion matrix (``labels``, and
    ``confusion_matrix`` with rows true and columns predicted) and ``per_class``; a series model
    adds its ``threshold``, ``sensitivity``, ``specificity``, ``brier`` and the Kaplan-Meier
    analyses of its risk groups (``km``) and of clinical factors (``km_clinical``), as
    :meth:`core.survival.km.KMAnalysis.to_dict` writes them; the findings model records
    ``per_finding``, ``mean_auc`` and ``n_images`` instead. ``unit`` is what was counted
    ("image", "scan", "slice", "patient") where the card says.
    """

    n: int | None = None
    unit: str | None = None
    accuracy: float | None = None
    #: ROC AUC: one-vs-rest macro average for a multi-class model (``roc_auc_ovr`` in the JSON),
    #: of the positive class for a binary one (``roc_auc``).
    auc: float | None = None
    threshold: float | None = None
    sensitivity: float | None = None
    specificity: float | None = None
    brier: float | None = None
    labels: tuple[str, ...] = ()
    confusion_matrix: tuple[tuple[int, ...], ...] | None = None
    per_class: Mapping[str, ClassRates] = field(default_factory=dict)
    per_finding: Mapping[str, FindingResult] = field(default_factory=dict)
    mean_auc: float | None = None
    n_images: int | None = None
    km: Mapping[str, Any] | None = None
    km_clinical: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RecordedSplit:
        cm = _mapping(d.get("confusion_matrix"))
        counts = cm.get("rows_true_columns_predicted")
        auc = d.get("roc_auc_ovr", d.get("roc_auc"))
        return cls(
            n=_int(d.get("n")),
            unit=None if d.get("unit") is None else str(d["unit"]),
            accuracy=_float(d.get("accuracy")),
            auc=_float(auc),
            threshold=_float(d.get("threshold")),
            sensitivity=_float(d.get("sensitivity")),
            specificity=_float(d.get("specificity")),
            brier=_float(d.get("brier")),
            labels=tuple(str(v) for v in cm.get("labels", ())),
            confusion_matrix=None if counts is None else tuple(tuple(int(v) for v in row) for row in counts),
            per_class={str(k): ClassRates.from_json(v) for k, v in _mapping(d.get("per_class")).items()},
            per_finding={str(k): FindingResult.from_json(v) for k, v in _mapping(d.get("per_finding")).items()},
            mean_auc=_float(d.get("mean_auc")),
            n_images=_int(d.get("n_images")),
            km=d.get("km") or None,
            km_clinical=d.get("km_clinical") or None,
        )


@dataclass(frozen=True)
class ShortcutChecks:
    """:mod:`core.evaluation.shortcuts` on the held-out split (``n`` images): each one-vs-rest
    AUC as is (``aucs``) and with the outer ``border`` of each side blanked
    (``aucs_border_blanked``, ``None`` where it could not be measured), and each class's share
    of Grad-CAM (of ``cam_target``) inside the central region, which covers ``central_area`` of
    the image."""

    n: int
    border: float
    central_area: float
    aucs: Mapping[str, float]
    aucs_border_blanked: Mapping[str, float | None]
    cam_central_share: Mapping[str, float]
    cam_target: str | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ShortcutChecks:
        return cls(
            n=int(d["n"]),
            border=float(d["border"]),
            central_area=float(d["central_area"]),
            aucs={str(k): float(v) for k, v in _mapping(d.get("aucs")).items()},
            aucs_border_blanked={str(k): _float(v) for k, v in _mapping(d.get("aucs_border_blanked")).items()},
            cam_central_share={str(k): float(v) for k, v in _mapping(d.get("cam_central_share")).items()},
            cam_target=d.get("cam_target"),
        )


@dataclass(frozen=True)
class CardMetrics:
    """Everything a card recorded: the held-out and dev splits, the slice model's per-scan
    held-out results, and the shortcut checks (each ``None`` when the card has none)."""

    held_out: RecordedSplit | None = None
    dev: RecordedSplit | None = None
    held_out_per_scan: RecordedSplit | None = None
    shortcuts: ShortcutChecks | None = None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CardMetrics:
        """The view of a card's ``metrics`` JSON, as a trainer writes it."""

        def split(key: str) -> RecordedSplit | None:
            value = d.get(key)
            return RecordedSplit.from_json(value) if isinstance(value, Mapping) and value else None

        shortcuts = d.get("shortcuts")
        return cls(
            held_out=split("held_out"),
            dev=split("dev"),
            held_out_per_scan=split("held_out_per_scan"),
            shortcuts=ShortcutChecks.from_json(shortcuts) if isinstance(shortcuts, Mapping) and shortcuts else None,
        )
