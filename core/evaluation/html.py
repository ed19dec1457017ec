"""A self-contained HTML report of model evaluations, built on :mod:`core.report`.

The report holds, for each evaluation (one model on one data set, an
:class:`~core.evaluation.results.Evaluation`) and each of its levels (image, slice, scan,
patient): a summary with the confusion matrix and a per-class table, ROC and precision-recall
curves, a reliability diagram with the calibration error before and after temperature scaling,
and the operating point; then the k-fold table and the robustness to the CT window where the
evaluation has them; and, when given, a comparison of models on the same cases. Like every
:class:`~core.report.CaseReport`, it opens offline, escapes every caller-given string and reads
no clock: ``created`` comes from the caller.

Examples
--------
>>> report = performance_report([evaluation], created="2024-05-02")
>>> data = performance_report_bytes([evaluation], comparison, created="2024-05-02")
>>> performance_report_filename(["cxr-resnet18", "cxr-densenet121"])
'model-performance-cxr-resnet18_cxr-densenet121.html'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from core.errors import InvalidInputError
from core.evaluation.figures import (
    comparison_figure,
    confusion_figure,
    format_auc,
    format_number,
    format_p_value,
    format_percent,
    pr_figure,
    reliability_figure,
    robustness_auc_figure,
    robustness_figure,
    roc_figure,
)
from core.evaluation.results import (
    Calibration,
    Comparison,
    Evaluation,
    KFold,
    Level,
    OperatingPoint,
    WindowRobustness,
)
from core.report import CaseReport, ReportSection, report_bytes

__all__ = [
    "comparison_pairs_table",
    "kfold_rows_table",
    "per_class_table",
    "performance_report",
    "performance_report_bytes",
    "performance_report_filename",
]

logger = logging.getLogger(__name__)

#: A table as :class:`~core.report.ReportSection` takes it: the header row, then the rows.
Table = tuple[tuple[str, ...], ...]

_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_FILENAME_STEM = 120
_SPLIT_TEXT = {
    "held-out": "held-out data, not used to train or select the model",
    "dev": "development data, used to select the weights: expect these numbers to be optimistic",
    "user": "data supplied by the user",
}
_TASK_TEXT = {
    "multiclass": "multi-class (one class per case)",
    "binary": "binary",
    "multilabel": "multi-label (each finding scored on its own)",
}


# --------------------------------------------------------------------------------------------
# The report


def performance_report(
    evaluations: Sequence[Evaluation], comparison: Comparison | None = None, created: str = ""
) -> CaseReport:
    """The performance report of one or more evaluations, and optionally a model comparison.

    Parameters
    ----------
    evaluations
        In the order to show.
    comparison
        Several models' ROC AUCs on the same cases, with DeLong and paired-bootstrap tests of
        each pair; its section comes last.
    created
        The report's date (ISO), given by the caller.

    Returns
    -------
    CaseReport
        Titled ``"Model performance: <ids>"``; its disclaimer is the first model's intended use
        when the evaluation states one.

    Raises
    ------
    InvalidInputError
        Neither an evaluation nor a comparison was given.
    """
    if not evaluations and comparison is None:
        raise InvalidInputError("There is nothing to report: no evaluation and no model comparison.")
    ids = _model_ids(evaluations, comparison)
    repeated = {i for i in ids if sum(e.model.id == i for e in evaluations) > 1}
    sections: list[ReportSection] = []
    for evaluation in evaluations:
        sections.extend(_evaluation_sections(evaluation, with_split=evaluation.model.id in repeated))
    if comparison is not None:
        sections.append(_comparison_section(comparison))
    intended_use = evaluations[0].model.intended_use if evaluations else None
    extra = {"disclaimer": intended_use} if intended_use else {}
    logger.debug("performance report: %d evaluations, %d sections", len(evaluations), len(sections))
    return CaseReport(
        title=f"Model performance: {', '.join(ids)}",
        pseudonym=", ".join(ids),
        created=created,
        sections=tuple(sections),
        **extra,
    )


def performance_report_bytes(
    evaluations: Sequence[Evaluation], comparison: Comparison | None = None, created: str = ""
) -> bytes:
    """:func:`performance_report` rendered as one UTF-8 HTML document, ready for a download."""
    return report_bytes(performance_report(evaluations, comparison, created))


def performance_report_filename(model_ids: list[str]) -> str:
    """``model-performance-<ids joined by _>.html`` with only ``[A-Za-z0-9._-]`` kept.

    In each id every other run of characters becomes one ``-`` and leading or trailing dots,
    dashes and underscores are dropped; ids left empty are skipped, repeated ones kept once; the
    stem is cut at 120 characters. ``model-performance.html`` when no id is left.
    """
    cleaned = [_UNSAFE_FILENAME_CHARS.sub("-", str(i)).strip("._-") for i in model_ids]
    stem = "_".join(dict.fromkeys(c for c in cleaned if c))[:_MAX_FILENAME_STEM].strip("._-")
    return f"model-performance-{stem}.html" if stem else "model-performance.html"


def _model_ids(evaluations: Sequence[Evaluation], comparison: Comparison | None) -> list[str]:
    ids = [e.model.id for e in evaluations]
    if comparison is not None:
        ids += [m.id for m in comparison.models]
    return list(dict.fromkeys(ids))


# --------------------------------------------------------------------------------------------
# One evaluation


def _evaluation_sections(evaluation: Evaluation, with_split: bool) -> list[ReportSection]:
    model = evaluation.model
    name = f"{model.id} ({evaluation.data.split})" if with_split else model.id
    sections = [ReportSection(f"{name}: model and data", text=_evaluation_text(evaluation))]
    for level in evaluation.levels:
        sections.extend(_level_sections(level, f"{name}, {level.unit} level", evaluation.task))
    if evaluation.kfold:
        sections.append(_kfold_section(evaluation.kfold, name))
    if evaluation.robustness:
        sections.extend(_robustness_sections(evaluation.robustness, name))
    return sections


def _evaluation_text(evaluation: Evaluation) -> str:
    model = evaluation.model
    data = evaluation.data
    split = _SPLIT_TEXT.get(data.split, f"{data.split} data")
    paragraphs = [
        f"Model {model.id}, version {model.version}: {model.architecture} on "
        f"{model.input_kind} input; task {_TASK_TEXT.get(evaluation.task, evaluation.task)}; "
        f"outputs {', '.join(model.labels)}.",
        f"Data: {data.description} ({split}). Source: {data.source}. "
        f"{_count(data.n_cases, 'case')} from {_count(data.n_patients, 'patient')}.",
        *evaluation.notes,
    ]
    return "\n\n".join(paragraphs)


def _level_sections(level: Level, name: str, task: str) -> list[ReportSection]:
    unit = level.unit
    cm = level.confusion_matrix
    sections = [
        ReportSection(
            f"{name}: summary",
            text=_level_summary(level, task),
            figure_json=confusion_figure(cm, unit).to_json() if cm else None,
            table=per_class_table(level, task),
        )
    ]
    if level.roc:
        sections.append(
            ReportSection(
                f"{name}: ROC curves",
                text=_skipped_text(level),
                figure_json=roc_figure(level.roc, f"ROC curves, {unit} level").to_json(),
            )
        )
    if level.pr:
        sections.append(
            ReportSection(
                f"{name}: precision-recall curves",
                text="A random ranking has precision equal to the prevalence, given in the legend.",
                figure_json=pr_figure(level.pr, f"Precision-recall curves, {unit} level").to_json(),
            )
        )
    if level.calibration:
        calibration = level.calibration
        sections.append(
            ReportSection(
                f"{name}: calibration",
                text=_calibration_text(calibration),
                figure_json=reliability_figure(calibration, f"Reliability diagram, {unit} level").to_json(),
            )
        )
    if level.operating_point:
        point = level.operating_point
        sections.append(
            ReportSection(
                f"{name}: operating point", text=_operating_point_text(point), table=_operating_point_table(point)
            )
        )
    return sections


def _level_summary(level: Level, task: str) -> str:
    lines = [f"{_count(level.n, level.unit)} from {_count(level.n_patients, 'patient')}."]
    if level.positive:
        lines.append(f"Positive class: {level.positive}.")
    if level.accuracy is not None:
        lines.append(f"Accuracy: {format_percent(level.accuracy)}.")
    elif task == "multilabel":
        lines.append("Multi-label: each finding is scored on its own, so there is no accuracy or confusion matrix.")
    lines.append(f"Macro-average ROC AUC: {format_number(level.macro_auc)}.")
    lines.append(_temperature_text(level.calibration))
    if level.note:
        lines.append(level.note)
    skipped = _skipped_text(level)
    return "\n".join(lines) + (f"\n\n{skipped}" if skipped else "")


def _temperature_text(calibration: Calibration | None) -> str:
    if calibration is None or calibration.calibrated is None:
        return "Temperature: none fitted; probabilities are the model's raw outputs."
    return f"Temperature: {_fitted_temperature(calibration)}."


def _fitted_temperature(calibration: Calibration) -> str:
    """E.g. ``"T = 1.32, fitted on dev"``."""
    where = f", fitted on {calibration.fitted_on}" if calibration.fitted_on else ""
    return f"T = {format_number(calibration.temperature, 2)}{where}"


def _skipped_text(level: Level) -> str:
    if not level.skipped_labels:
        return ""
    return (
        f"No ROC curve or AUC for {', '.join(level.skipped_labels)}: the set has no positive or no negative case of it."
    )


def _calibration_text(calibration: Calibration) -> str:
    before = format_number(calibration.uncalibrated.ece)
    text = f"Expected calibration error (ECE, top label): {before} before temperature scaling"
    if calibration.calibrated is None:
        return text + "; no temperature was fitted."
    after = format_number(calibration.calibrated.ece)
    return text + f", {after} after it ({_fitted_temperature(calibration)})."


def _operating_point_text(point: OperatingPoint) -> str:
    tp, fp, tn, fn = point.tp, point.fp, point.tn, point.fn
    parts = [
        f"sensitivity {format_percent(point.sensitivity)} ({tp} of {tp + fn})",
        f"specificity {format_percent(point.specificity)} ({tn} of {tn + fp})",
        f"PPV {format_percent(point.ppv)} ({tp} of {tp + fp})",
        f"NPV {format_percent(point.npv)} ({tn} of {tn + fn})",
    ]
    return f"{point.label} called positive at probability ≥ {format_number(point.threshold)}: {', '.join(parts)}."


def _operating_point_table(point: OperatingPoint) -> Table:
    label = point.label
    return (
        ("", f"Predicted {label}", f"Predicted not {label}"),
        (f"True {label}", f"TP {point.tp}", f"FN {point.fn}"),
        (f"True not {label}", f"FP {point.fp}", f"TN {point.tn}"),
    )


def per_class_table(level: Level, task: str = "multiclass") -> Table:
    """The per-class metrics of one level, in the level's label order, formatted for a report.

    Parameters
    ----------
    level
        One level of an evaluation; its ``per_class`` maps each label to precision, recall,
        specificity, F1, prevalence (proportions in 0..1), support, AUC with its interval and
        average precision.
    task
        ``"multilabel"`` heads the first column "Finding", otherwise "Class".

    Returns
    -------
    tuple of tuple of str
        The header, then one row per label: proportions as percentages (1 decimal), F1, AUC
        (with its 95% interval) and AP with 3 decimals, missing values as ``"n/a"``.
    """
    per_class = level.per_class
    labels = [label for label in level.labels if label in per_class]
    labels += [label for label in per_class if label not in labels]
    header = (
        "Finding" if task == "multilabel" else "Class",
        "Precision (PPV)",
        "Recall (sensitivity)",
        "Specificity",
        "F1",
        "Support",
        "Prevalence",
        "ROC AUC (95% CI)",
        "Average precision",
    )
    rows = [
        (
            str(label),
            format_percent(m.precision),
            format_percent(m.recall),
            format_percent(m.specificity),
            format_number(m.f1),
            str(m.support),
            format_percent(m.prevalence),
            format_auc(m.auc, m.auc_ci),
            format_number(m.average_precision),
        )
        for label, m in ((label, per_class[label]) for label in labels)
    ]
    return (header, *rows)


# --------------------------------------------------------------------------------------------
# k-fold and robustness


def kfold_rows_table(kfold: KFold) -> Table:
    """The k-fold cross-validation rows as a report table.

    Parameters
    ----------
    kfold
        Rows ``{"fold": "1".."k" | "mean", "part": "train" | "validation", "accuracy",
        "<class> precision", "<class> recall", "<class> specificity", "ROC AUC"}`` and the kept
        fold; proportions in 0..1.

    Returns
    -------
    tuple of tuple of str
        The header ("Fold", "Part", then the metrics in the order the rows first name them),
        then one row per input row. Accuracy, precision, recall and specificity as percentages
        (1 decimal), AUCs with 3 decimals, missing values as ``"n/a"``; the kept fold reads
        e.g. ``"3 (kept)"``.
    """
    rows = kfold.rows
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in ("fold", "part") and key not in columns]
    kept = kfold.kept_fold
    header = ("Fold", "Part", *(_column_title(c) for c in columns))
    body = [
        (
            _fold_text(row.get("fold"), kept),
            str(row.get("part", "")),
            *(_kfold_value(column, row.get(column)) for column in columns),
        )
        for row in rows
    ]
    return (header, *body)


def _fold_text(fold: Any, kept: int | None) -> str:
    text = str(fold) if fold is not None else ""
    return f"{text} (kept)" if kept is not None and text == str(kept) else text


def _column_title(column: str) -> str:
    return column[:1].upper() + column[1:]


def _kfold_value(column: str, value: Any) -> str:
    if value is None:
        return format_number(None)
    if isinstance(value, str):
        return value
    lowered = column.lower()
    if lowered == "accuracy" or lowered.endswith((" precision", " recall", " specificity")):
        return format_percent(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return format_number(value)


def _kfold_section(kfold: KFold, name: str) -> ReportSection:
    kept = kfold.kept_fold
    text = "Each fold's model scored on its own training and validation folds; 'mean' rows average the folds." + (
        f" The weights evaluated above are fold {kept}'s." if kept is not None else ""
    )
    return ReportSection(f"{name}: k-fold cross-validation", text=text, table=kfold_rows_table(kfold))


def _robustness_sections(robustness: WindowRobustness, name: str) -> list[ReportSection]:
    center, width = robustness.training_window
    text = (
        f"The {robustness.unit}-level ROC with the CT window drawn at random {robustness.n_windows} times "
        f"around the training window (center {center:g} HU, width {width:g} HU). "
        f"AUC {format_number(robustness.auc_mean)} ± {format_number(robustness.auc_sd)} "
        f"(range {format_number(robustness.auc_min)}-{format_number(robustness.auc_max)}); "
        f"{format_number(robustness.auc_training_window)} with the training window."
    )
    return [
        ReportSection(
            f"{name}: robustness to the CT window", text=text, figure_json=robustness_figure(robustness).to_json()
        ),
        ReportSection(f"{name}: AUC per CT window", figure_json=robustness_auc_figure(robustness).to_json()),
    ]


# --------------------------------------------------------------------------------------------
# Model comparison


def comparison_pairs_table(comparison: Comparison) -> Table:
    """Each pair of compared models: both AUCs, their difference with its paired-bootstrap 95%
    interval, DeLong's z and p, and the bootstrap p (p-values with 3 decimals or ``"<0.001"``)."""
    header = (
        "Model A",
        "Model B",
        "AUC A",
        "AUC B",
        "Difference (A - B)",
        "95% CI of the difference (bootstrap)",
        "DeLong z",
        "DeLong p",
        "Bootstrap p",
    )
    rows = [
        (
            pair.a,
            pair.b,
            format_number(pair.auc_a),
            format_number(pair.auc_b),
            _signed(pair.difference),
            _interval(pair.bootstrap_ci),
            format_number(pair.delong_z, 2),
            format_p_value(pair.delong_p),
            format_p_value(pair.bootstrap_p),
        )
        for pair in comparison.pairs
    ]
    return (header, *rows)


def _comparison_section(comparison: Comparison) -> ReportSection:
    unit = comparison.unit
    models = "\n".join(f"{m.id} (version {m.version}): AUC {format_auc(m.auc, m.auc_ci)}" for m in comparison.models)
    text = (
        f"ROC AUC of {comparison.positive} at the {unit} level, every model scored on the same "
        f"{_count(comparison.n, unit)} from {_count(comparison.n_patients, 'patient')} ({comparison.data})."
        f"\n\n{models}\n\n"
        "DeLong's test compares two AUCs measured on the same cases; the paired bootstrap resamples the cases "
        "once for both models and gives an interval for the difference."
    )
    return ReportSection(
        f"Model comparison: {comparison.positive}, {unit} level",
        text=text,
        figure_json=comparison_figure(comparison).to_json(),
        table=comparison_pairs_table(comparison),
    )


# --------------------------------------------------------------------------------------------
# Words


def _count(n: int | None, unit: str) -> str:
    if n is None:
        return f"{unit}s not recorded"
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def _signed(value: float | None) -> str:
    return format_number(None) if value is None else f"{value:+.3f}"


def _interval(ci: Sequence[float | None] | None) -> str:
    if ci is None or len(ci) != 2 or any(v is None for v in ci):
        return format_number(None)
    return f"{format_number(ci[0])} to {format_number(ci[1])}"
