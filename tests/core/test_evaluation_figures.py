"""The Model performance figures: what a reader sees in each cell, legend and title.

The evaluations below are written by hand as the JSON that ``python -m core evaluate`` prints and
read with ``from_json`` (:mod:`core.evaluation.results`); ``test_evaluation_html`` reuses them.
"""

from __future__ import annotations

import plotly.graph_objects as go
import plotly.io as pio
import pytest

from core.evaluation.figures import (
    TEMPLATE,
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
from core.evaluation.results import Calibration, Comparison, Confusion, Evaluation, WindowRobustness

XRAY_LABELS = ["COVID-19", "Normal", "Viral pneumonia"]
MARKUP_LABEL = "<b>x</b>"


# --------------------------------------------------------------------------------------------
# Hand-written evaluations (also used by test_evaluation_html)


def _bins(*rows: tuple[float, float, float, float, int]) -> list[dict]:
    return [dict(lo=lo, hi=hi, confidence=c, accuracy=a, count=n) for lo, hi, c, a, n in rows]


def _calibration(calibrated: bool) -> dict:
    return {
        "temperature": 1.32 if calibrated else 1.0,
        "fitted_on": "dev" if calibrated else None,
        "uncalibrated": {
            "ece": 0.081,
            "bins": _bins(
                (0.4, 0.6, 0.55, 0.40, 5), (0.6, 0.8, 0.71, 0.62, 0), (0.8, 1.0, 0.93, 0.86, 55)
            ),  # the middle bin is empty
        },
        "calibrated": (
            {"ece": 0.032, "bins": _bins((0.4, 0.6, 0.52, 0.50, 8), (0.8, 1.0, 0.88, 0.87, 52))} if calibrated else None
        ),
    }


def _metrics(precision, recall, specificity, f1, support, auc, auc_ci, ap, prevalence) -> dict:
    return dict(
        precision=precision,
        recall=recall,
        specificity=specificity,
        f1=f1,
        support=support,
        auc=auc,
        auc_ci=auc_ci,
        average_precision=ap,
        prevalence=prevalence,
    )


def _model(model_id: str, labels: list[str], input_kind: str, intended_use: str = "") -> dict:
    return {
        "id": model_id,
        "version": "2024-05",
        "architecture": "resnet18",
        "input_kind": input_kind,
        "labels": labels,
        "temperature": 1.32,
        "temperature_fitted": True,
        "intended_use": intended_use,
    }


def xray_confusion() -> dict:
    return {
        "labels": list(XRAY_LABELS),
        "counts": [[19, 1, 0], [2, 17, 1], [0, 3, 17]],
        "row_percent": [[95.0, 5.0, 0.0], [10.0, 85.0, 5.0], [0.0, 15.0, 85.0]],
    }


def multiclass_evaluation() -> Evaluation:
    """The X-ray model on 60 held-out images, one level."""
    level = {
        "unit": "image",
        "n": 60,
        "n_patients": 52,
        "labels": list(XRAY_LABELS),
        "positive": None,
        "accuracy": 53 / 60,
        "confusion_matrix": xray_confusion(),
        "per_class": {
            "COVID-19": _metrics(0.9048, 0.95, 0.975, 0.9268, 20, 0.9731, [0.9412, 0.9948], 0.9412, 1 / 3),
            "Normal": _metrics(0.8095, 0.85, 0.9, 0.8293, 20, 0.9100, None, 0.8610, 1 / 3),
            "Viral pneumonia": _metrics(0.9444, 0.85, 0.975, 0.8947, 20, 0.9500, [0.9, 0.99], 0.9, 1 / 3),
        },
        "macro_auc": 0.9444,
        "roc": {
            "COVID-19": {"fpr": [0.0, 0.05, 1.0], "tpr": [0.0, 0.95, 1.0], "auc": 0.9731, "auc_ci": [0.9412, 0.9948]},
            "Normal": {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.85, 1.0], "auc": 0.91, "auc_ci": None},
            "Viral pneumonia": {"fpr": [0.0, 0.05, 1.0], "tpr": [0.0, 0.85, 1.0], "auc": 0.95, "auc_ci": [0.9, 0.99]},
        },
        "pr": {
            label: {
                "recall": [1.0, 0.9, 0.0],
                "precision": [1 / 3, 0.9, 1.0],
                "average_precision": ap,
                "prevalence": 1 / 3,
            }
            for label, ap in zip(XRAY_LABELS, (0.9412, 0.861, 0.9), strict=True)
        },
        "calibration": _calibration(calibrated=True),
        "operating_point": None,
        "skipped_labels": [],
    }
    return Evaluation.from_json(
        {
            "model": _model("cxr-resnet18", list(XRAY_LABELS), "chest radiograph", "Research demo; not for diagnosis."),
            "data": {
                "split": "held-out",
                "description": "Synthetic radiographs",
                "source": "phantoms",
                "n_cases": 60,
                "n_patients": 52,
            },
            "task": "multiclass",
            "levels": [level],
            "kfold": None,
            "robustness": None,
            "notes": ["Scored with the demo weights."],
        }
    )


def robustness() -> WindowRobustness:
    return WindowRobustness.from_json(_robustness_json())


def _robustness_json() -> dict:
    fpr = [0.0, 0.25, 0.5, 0.75, 1.0]
    return {
        "unit": "scan",
        "training_window": [-600, 1500],
        "sd": [50, 150],
        "n_windows": 100,
        "windows": [[-600 + 10 * i, 1500 - 20 * i] for i in range(-2, 3)],
        "aucs": [0.88, 0.90, 0.92, 0.91, 0.93],
        "auc_training_window": 0.92,
        "auc_mean": 0.9123,
        "auc_sd": 0.0114,
        "auc_min": 0.88,
        "auc_max": 0.93,
        "roc_band": {
            "fpr": fpr,
            "tpr_low": [0.0, 0.6, 0.8, 0.9, 1.0],
            "tpr_high": [0.0, 0.8, 0.95, 0.98, 1.0],
            "tpr_median": [0.0, 0.7, 0.9, 0.95, 1.0],
        },
        "roc_training_window": {"fpr": [0.0, 0.2, 1.0], "tpr": [0.0, 0.8, 1.0]},
    }


def _binary_level(unit: str, n: int, n_patients: int, counts: list[list[int]], auc: float) -> dict:
    labels = ["non-COVID", "COVID-19"]
    row_percent = [[100.0 * c / sum(row) for c in row] for row in counts]
    (tn, fp), (fn, tp) = counts
    return {
        "unit": unit,
        "n": n,
        "n_patients": n_patients,
        "labels": labels,
        "positive": "COVID-19",
        "accuracy": (tn + tp) / n,
        "confusion_matrix": {"labels": labels, "counts": counts, "row_percent": row_percent},
        "per_class": {
            "non-COVID": _metrics(
                tn / (tn + fn), tn / (tn + fp), tp / (tp + fn), 0.85, tn + fp, auc, [0.8, 0.97], 0.9, 0.5
            ),
            "COVID-19": _metrics(
                tp / (tp + fp), tp / (tp + fn), tn / (tn + fp), 0.86, tp + fn, auc, [0.8, 0.97], 0.91, 0.5
            ),
        },
        "macro_auc": auc,
        "roc": {"COVID-19": {"fpr": [0.0, 0.15, 1.0], "tpr": [0.0, 0.9, 1.0], "auc": auc, "auc_ci": [0.8, 0.97]}},
        "pr": {
            "COVID-19": {
                "recall": [1.0, 0.9, 0.0],
                "precision": [0.5, 0.86, 1.0],
                "average_precision": 0.91,
                "prevalence": 0.5,
            }
        },
        "calibration": _calibration(calibrated=False),
        "operating_point": {
            "label": "COVID-19",
            "threshold": 0.5,
            "sensitivity": tp / (tp + fn),
            "specificity": tn / (tn + fp),
            "ppv": tp / (tp + fp),
            "npv": tn / (tn + fn),
            "tp": tp,
            "fp": fp,
            "tn": tn,
            "fn": fn,
        },
        "skipped_labels": [],
    }


def binary_ct_evaluation() -> Evaluation:
    """The CT slice model on 40 held-out scans: slice and scan levels, k-fold and robustness."""
    labels = ["non-COVID", "COVID-19"]
    kfold_rows = [
        {
            "fold": fold,
            "part": part,
            "accuracy": acc,
            "COVID-19 precision": 0.8,
            "COVID-19 recall": 0.9,
            "COVID-19 specificity": 0.75,
            "ROC AUC": auc,
        }
        for fold, part, acc, auc in (
            ("1", "train", 0.95, 0.981),
            ("1", "validation", 0.85, 0.902),
            ("2", "train", 0.96, 0.985),
            ("2", "validation", 0.875, 0.9134),
            ("mean", "validation", 0.8625, 0.9077),
        )
    ]
    return Evaluation.from_json(
        {
            "model": _model("covid3d-slices", labels, "CT series"),
            "data": {
                "split": "held-out",
                "description": "Synthetic CT scans",
                "source": "phantoms",
                "n_cases": 40,
                "n_patients": 38,
            },
            "task": "binary",
            "levels": [
                _binary_level("slice", 800, 38, [[340, 60], [40, 360]], 0.9012),
                _binary_level("scan", 40, 38, [[17, 3], [2, 18]], 0.9351),
            ],
            "kfold": {"rows": kfold_rows, "kept_fold": 2},
            "robustness": _robustness_json(),
            "notes": [],
        }
    )


def multilabel_evaluation() -> Evaluation:
    """A findings model: one finding with a markup-like name, one without positives."""
    labels = ["Consolidation", MARKUP_LABEL, "Pneumothorax"]
    level = {
        "unit": "image",
        "n": 30,
        "n_patients": 30,
        "labels": labels,
        "positive": None,
        "accuracy": None,
        "confusion_matrix": None,
        "per_class": {
            "Consolidation": _metrics(0.7, 0.8, 0.9, 0.7467, 10, 0.88, [0.75, 0.96], 0.8, 1 / 3),
            MARKUP_LABEL: _metrics(0.6, 0.5, 0.95, 0.5455, 6, 0.8123, [0.6, 0.95], 0.7, 0.2),
            "Pneumothorax": _metrics(None, None, 1.0, None, 0, None, None, None, 0.0),
        },
        "macro_auc": 0.8462,
        "roc": {
            "Consolidation": {"fpr": [0.0, 0.1, 1.0], "tpr": [0.0, 0.8, 1.0], "auc": 0.88, "auc_ci": [0.75, 0.96]},
            MARKUP_LABEL: {"fpr": [0.0, 0.05, 1.0], "tpr": [0.0, 0.5, 1.0], "auc": 0.8123, "auc_ci": [0.6, 0.95]},
        },
        "pr": {
            "Consolidation": {
                "recall": [1.0, 0.8, 0.0],
                "precision": [1 / 3, 0.7, 1.0],
                "average_precision": 0.8,
                "prevalence": 1 / 3,
            },
            MARKUP_LABEL: {
                "recall": [1.0, 0.5, 0.0],
                "precision": [0.2, 0.6, 1.0],
                "average_precision": 0.7,
                "prevalence": 0.2,
            },
        },
        "calibration": _calibration(calibrated=False),
        "operating_point": None,
        "skipped_labels": ["Pneumothorax"],
    }
    return Evaluation.from_json(
        {
            "model": _model("cxr-findings", labels, "chest radiograph"),
            "data": {
                "split": "dev",
                "description": "Synthetic radiographs with findings",
                "source": "phantoms",
                "n_cases": 30,
                "n_patients": 30,
            },
            "task": "multilabel",
            "levels": [level],
            "kfold": None,
            "robustness": None,
            "notes": [],
        }
    )


def comparison() -> Comparison:
    return Comparison.from_json(
        {
            "unit": "scan",
            "positive": "COVID-19",
            "n": 40,
            "n_patients": 38,
            "data": "held-out CT scans",
            "models": [
                {"id": "covid3d-slices", "version": "2024-05", "auc": 0.9351, "auc_ci": [0.85, 0.99]},
                {"id": "covid3d", "version": "2024-02", "auc": 0.8712, "auc_ci": [0.76, 0.95]},
            ],
            "roc": {
                "covid3d": {"fpr": [0.0, 0.3, 1.0], "tpr": [0.0, 0.8, 1.0], "auc": 0.8712},
                "covid3d-slices": {"fpr": [0.0, 0.15, 1.0], "tpr": [0.0, 0.9, 1.0], "auc": 0.9351},
            },
            "pairs": [
                {
                    "a": "covid3d-slices",
                    "b": "covid3d",
                    "auc_a": 0.9351,
                    "auc_b": 0.8712,
                    "difference": 0.0639,
                    "delong_z": 2.154,
                    "delong_p": 0.0312,
                    "bootstrap_ci": [0.004, 0.121],
                    "bootstrap_p": 0.0004,
                },
            ],
        }
    )


# --------------------------------------------------------------------------------------------
# Helpers


def _curves(fig: go.Figure) -> list[go.Scatter]:
    """The traces other than the chance or perfect-calibration diagonal."""
    return [t for t in fig.data if t.name not in ("chance", "perfect calibration")]


def _cell_texts(fig: go.Figure) -> dict[tuple[str, str], str]:
    """``(true, predicted) -> annotation text``."""
    return {(a.y, a.x): a.text for a in fig.layout.annotations}


# --------------------------------------------------------------------------------------------
# Numbers as text


def test_numbers_are_written_plainly_and_missing_ones_as_n_a() -> None:
    assert format_number(0.97314) == "0.973"
    assert format_percent(0.95) == "95.0%"
    assert format_auc(0.9731, [0.9412, 0.9948]) == "0.973 (0.941-0.995)"
    assert format_auc(0.91, None) == "0.910"
    assert format_p_value(0.0312) == "0.031"
    assert format_p_value(0.0004) == "<0.001"
    assert {format_number(None), format_percent(None), format_auc(None, [0.1, 0.2]), format_p_value(None)} == {"n/a"}


# --------------------------------------------------------------------------------------------
# Confusion matrix


def test_confusion_cells_show_count_and_row_percent_with_true_classes_as_rows() -> None:
    fig = confusion_figure(Confusion.from_json(xray_confusion()), "image")

    cells = _cell_texts(fig)
    assert len(cells) == 9
    assert cells[("COVID-19", "COVID-19")] == "19<br>95.0%"
    assert cells[("COVID-19", "Normal")] == "1<br>5.0%"  # true COVID-19 called Normal
    assert cells[("Normal", "COVID-19")] == "2<br>10.0%"  # true Normal called COVID-19
    assert cells[("Viral pneumonia", "Normal")] == "3<br>15.0%"
    heatmap = fig.data[0]
    assert list(heatmap.y) == XRAY_LABELS and fig.layout.yaxis.autorange == "reversed"  # first label on top
    assert fig.layout.yaxis.title.text == "True" and fig.layout.xaxis.title.text == "Predicted"
    assert "n = 60" in fig.layout.title.text


def test_confusion_text_is_white_on_dark_cells_and_an_empty_row_reads_n_a() -> None:
    cm = Confusion.from_json(
        {"labels": ["A", "B"], "counts": [[9, 1], [0, 0]], "row_percent": [[90.0, 10.0], [None, None]]}
    )

    fig = confusion_figure(cm, "scan")

    colours = {(a.y, a.x): a.font.color for a in fig.layout.annotations}
    assert colours[("A", "A")] == "white" and colours[("A", "B")] == "black"
    assert _cell_texts(fig)[("B", "A")] == "0<br>n/a"


def test_confusion_figure_rejects_counts_that_do_not_match_its_labels() -> None:
    with pytest.raises(ValueError):
        confusion_figure(
            Confusion.from_json({"labels": ["A", "B"], "counts": [[1, 2]], "row_percent": [[33.3, 66.7]]}), "image"
        )


# --------------------------------------------------------------------------------------------
# Curves


def test_roc_legend_gives_each_auc_with_its_interval_when_known() -> None:
    roc = multiclass_evaluation().levels[0].roc

    fig = roc_figure(roc, "ROC curves, image level")

    names = [t.name for t in _curves(fig)]
    assert names == [
        "COVID-19 · AUC 0.973 (0.941-0.995)",
        "Normal · AUC 0.910",
        "Viral pneumonia · AUC 0.950 (0.900-0.990)",
    ]
    chance = next(t for t in fig.data if t.name == "chance")
    assert chance.line.dash == "dash" and list(chance.x) == [0.0, 1.0]
    assert fig.layout.yaxis.scaleanchor == "x" and list(fig.layout.xaxis.range) == list(fig.layout.yaxis.range)
    assert fig.layout.title.text == "ROC curves, image level"


def test_a_markup_like_label_is_shown_literally() -> None:
    roc = multilabel_evaluation().levels[0].roc

    names = [t.name for t in _curves(roc_figure(roc, "ROC"))]

    assert "&lt;b&gt;x&lt;/b&gt; · AUC 0.812 (0.600-0.950)" in names
    assert not any(MARKUP_LABEL in name for name in names)


def test_pr_legend_gives_average_precision_and_prevalence() -> None:
    pr = multiclass_evaluation().levels[0].pr

    fig = pr_figure(pr, "Precision-recall")

    assert [t.name for t in fig.data][0] == "COVID-19 · AP 0.941, prevalence 33.3%"
    assert list(fig.data[0].x) == [1.0, 0.9, 0.0] and list(fig.data[0].y) == pytest.approx([1 / 3, 0.9, 1.0])
    assert fig.layout.xaxis.title.text.startswith("Recall") and fig.layout.yaxis.title.text.startswith("Precision")


def test_reliability_shows_both_calibrations_with_their_ece_and_skips_empty_bins() -> None:
    fig = reliability_figure(Calibration.from_json(_calibration(calibrated=True)), "Reliability")

    before, after = _curves(fig)
    assert before.name == "uncalibrated (T = 1) · ECE 0.081"
    assert after.name == "calibrated (T = 1.32) · ECE 0.032"
    assert list(before.x) == [0.55, 0.93] and list(before.y) == [0.40, 0.86]  # the empty bin is left out
    assert [c[0] for c in before.customdata] == [5, 55]  # the count, in the hover
    assert before.marker.size[0] < before.marker.size[1]


def test_reliability_without_a_fitted_temperature_has_one_trace() -> None:
    fig = reliability_figure(Calibration.from_json(_calibration(calibrated=False)), "Reliability")

    assert [t.name for t in _curves(fig)] == ["uncalibrated (T = 1) · ECE 0.081"]


# --------------------------------------------------------------------------------------------
# Robustness and comparison


def test_robustness_figure_has_the_band_the_median_and_the_training_window() -> None:
    data = robustness()

    fig = robustness_figure(data)

    band = next(t for t in fig.data if t.fill == "toself")
    assert max(band.y) == 1.0 and list(band.x) == list(data.fpr) + list(data.fpr)[::-1]
    training = next(t for t in fig.data if t.name.startswith("training window"))
    assert list(training.x) == [0.0, 0.2, 1.0] and list(training.y) == [0.0, 0.8, 1.0]
    assert any(t.name == "median over windows" for t in fig.data)
    assert "AUC 0.912 ± 0.011 over 100 windows (range 0.880-0.930); training window 0.920" in fig.layout.title.text


def test_robustness_auc_figure_colours_windows_by_auc_and_stars_the_training_window() -> None:
    data = robustness()

    fig = robustness_auc_figure(data)

    windows, star = fig.data
    assert list(windows.marker.color) == list(data.aucs) and list(windows.x) == [w[0] for w in data.windows]
    assert star.marker.symbol == "star" and (star.x[0], star.y[0]) == (-600, 1500)
    assert star.name == "training window · AUC 0.920"


def test_comparison_figure_overlays_each_model_with_auc_and_interval() -> None:
    fig = comparison_figure(comparison())

    assert [t.name for t in _curves(fig)] == [
        "covid3d-slices · AUC 0.935 (0.850-0.990)",
        "covid3d · AUC 0.871 (0.760-0.950)",
    ]
    assert "40 cases from 38 patients" in fig.layout.title.text


def test_all_figures_of_an_evaluation_serialise_and_read_back() -> None:
    level = binary_ct_evaluation().levels[1]
    assert level.confusion_matrix is not None and level.calibration is not None
    figures = [
        confusion_figure(level.confusion_matrix, level.unit),
        roc_figure(level.roc, "ROC"),
        pr_figure(level.pr, "PR"),
        reliability_figure(level.calibration, "Reliability"),
        robustness_figure(robustness()),
        robustness_auc_figure(robustness()),
        comparison_figure(comparison()),
    ]

    for fig in figures:
        again = pio.from_json(fig.to_json())
        assert again.layout.template == pio.templates[TEMPLATE]
        assert 380 <= again.layout.height <= 700  # the plot, and the legend under it
        assert again.layout.title.text
