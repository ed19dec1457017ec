"""The HTML performance report: self-contained, escaped, with every table and section a reader
expects (and none that has no data)."""

from __future__ import annotations

import dataclasses
import html
import re

import pytest

from core.errors import InvalidInputError
from core.evaluation.html import (
    comparison_pairs_table,
    kfold_rows_table,
    per_class_table,
    performance_report,
    performance_report_bytes,
    performance_report_filename,
)
from core.evaluation.results import Comparison, Evaluation
from core.report import render_report
from tests.core.test_evaluation_figures import (
    MARKUP_LABEL,
    binary_ct_evaluation,
    comparison,
    multiclass_evaluation,
    multilabel_evaluation,
)

EXTERNAL = re.compile(r'(?:src|href)\s*=\s*["\']?https?://', re.IGNORECASE)
CREATED = "2024-05-02"


@pytest.fixture(scope="module")
def full_html() -> str:
    """All three evaluations and the comparison, rendered once (the page inlines plotly.js)."""
    evaluations = [multiclass_evaluation(), binary_ct_evaluation(), multilabel_evaluation()]
    return performance_report_bytes(evaluations, comparison(), created=CREATED).decode("utf-8")


def _titles(evaluations: list[Evaluation], comparison_: Comparison | None = None) -> list[str]:
    return [s.title for s in performance_report(evaluations, comparison_, created=CREATED).sections]


# --------------------------------------------------------------------------------------------
# The document


def test_report_is_self_contained(full_html: str) -> None:
    assert full_html.startswith("<!DOCTYPE html>")
    assert "<script src" not in full_html.lower()
    assert "<link" not in full_html.lower()
    # plotly.js itself holds such strings (in its own link-making code); the report's markup none
    head, body = full_html.split("</head>", 1)
    assert EXTERNAL.search(head.split("<script>", 1)[0]) is None
    assert EXTERNAL.search(body) is None
    assert full_html.count("Plotly.newPlot") >= 10  # the figures are drawn by the inlined bundle


def test_report_names_every_model_and_its_creation_date(full_html: str) -> None:
    for model_id in ("cxr-resnet18", "covid3d-slices", "cxr-findings", "covid3d"):
        assert model_id in full_html
    assert CREATED in full_html


def test_report_title_pseudonym_and_disclaimer_come_from_the_evaluations() -> None:
    report = performance_report([multiclass_evaluation(), binary_ct_evaluation()], created=CREATED)

    assert report.title == "Model performance: cxr-resnet18, covid3d-slices"
    assert report.pseudonym == "cxr-resnet18, covid3d-slices"
    assert report.created == CREATED
    assert report.disclaimer == "Research demo; not for diagnosis."


def test_report_without_an_intended_use_keeps_the_default_disclaimer() -> None:
    report = performance_report([binary_ct_evaluation()], created=CREATED)

    assert report.disclaimer and "intended" not in report.disclaimer


def test_report_escapes_a_markup_like_label(full_html: str) -> None:
    assert MARKUP_LABEL not in full_html
    assert html.escape(MARKUP_LABEL) in full_html  # in the per-class table


def test_the_same_evaluations_give_the_same_bytes() -> None:
    evaluations = [multilabel_evaluation()]

    assert performance_report_bytes(evaluations, created=CREATED) == performance_report_bytes(
        evaluations, created=CREATED
    )


def test_nothing_to_report_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        performance_report([], None, created=CREATED)


# --------------------------------------------------------------------------------------------
# Sections and tables


def test_each_level_has_its_summary_curves_and_calibration() -> None:
    titles = _titles([binary_ct_evaluation()])

    for unit in ("slice", "scan"):
        prefix = f"covid3d-slices, {unit} level: "
        for part in ("summary", "ROC curves", "precision-recall curves", "calibration", "operating point"):
            assert prefix + part in titles


def test_summary_gives_counts_accuracy_macro_auc_and_temperature() -> None:
    report = performance_report([multiclass_evaluation()], created=CREATED)

    summary = next(s for s in report.sections if s.title == "cxr-resnet18, image level: summary")
    assert "60 images from 52 patients" in summary.text
    assert "Accuracy: 88.3%" in summary.text
    assert "Macro-average ROC AUC: 0.944" in summary.text
    assert "T = 1.32, fitted on dev" in summary.text
    assert summary.figure_json is not None  # the confusion matrix


def test_per_class_table_gives_each_metric_formatted(full_html: str) -> None:
    table = per_class_table(multiclass_evaluation().levels[0])

    assert table[0] == (
        "Class",
        "Precision (PPV)",
        "Recall (sensitivity)",
        "Specificity",
        "F1",
        "Support",
        "Prevalence",
        "ROC AUC (95% CI)",
        "Average precision",
    )
    assert table[1] == ("COVID-19", "90.5%", "95.0%", "97.5%", "0.927", "20", "33.3%", "0.973 (0.941-0.995)", "0.941")
    assert table[2][7] == "0.910"  # no interval
    for cell in table[1]:
        assert f"<td>{cell}</td>" in full_html


def test_a_finding_without_positives_reads_n_a_and_has_no_roc() -> None:
    evaluation = multilabel_evaluation()
    report = performance_report([evaluation], created=CREATED)

    table = per_class_table(evaluation.levels[0], "multilabel")
    assert table[0][0] == "Finding"
    assert table[3] == ("Pneumothorax", "n/a", "n/a", "100.0%", "n/a", "0", "0.0%", "n/a", "n/a")
    roc = next(s for s in report.sections if s.title.endswith("ROC curves"))
    assert "No ROC curve or AUC for Pneumothorax" in roc.text
    assert "Pneumothorax" not in roc.figure_json
    summary = next(s for s in report.sections if s.title.endswith("summary"))
    assert summary.figure_json is None  # no confusion matrix for a multi-label task


def test_calibration_section_gives_ece_before_and_after() -> None:
    sections = performance_report([multiclass_evaluation()], created=CREATED).sections

    calibration = next(s for s in sections if s.title.endswith("calibration"))
    assert "0.081 before temperature scaling, 0.032 after it (T = 1.32, fitted on dev)" in calibration.text


def test_operating_point_gives_the_four_rates_with_their_counts() -> None:
    sections = performance_report([binary_ct_evaluation()], created=CREATED).sections

    point = next(s for s in sections if s.title == "covid3d-slices, scan level: operating point")
    assert "sensitivity 90.0% (18 of 20)" in point.text
    assert "specificity 85.0% (17 of 20)" in point.text
    assert "PPV 85.7% (18 of 21)" in point.text
    assert "NPV 89.5% (17 of 19)" in point.text
    assert point.table[1] == ("True COVID-19", "TP 18", "FN 2")


def test_kfold_table_is_formatted_and_marks_the_kept_fold() -> None:
    kfold = binary_ct_evaluation().kfold
    assert kfold is not None
    table = kfold_rows_table(kfold)

    assert table[0] == (
        "Fold",
        "Part",
        "Accuracy",
        "COVID-19 precision",
        "COVID-19 recall",
        "COVID-19 specificity",
        "ROC AUC",
    )
    assert table[4] == ("2 (kept)", "validation", "87.5%", "80.0%", "90.0%", "75.0%", "0.913")
    assert table[5][:2] == ("mean", "validation")


def test_kfold_section_only_when_the_evaluation_has_kfold(full_html: str) -> None:
    assert "covid3d-slices: k-fold cross-validation" in _titles([binary_ct_evaluation()])
    assert not any("k-fold" in t for t in _titles([multiclass_evaluation()]))
    assert "<td>2 (kept)</td>" in full_html


def test_robustness_sections_only_when_the_evaluation_has_robustness() -> None:
    with_robustness = _titles([binary_ct_evaluation()])
    assert "covid3d-slices: robustness to the CT window" in with_robustness
    assert "covid3d-slices: AUC per CT window" in with_robustness
    assert not any("CT window" in t for t in _titles([multiclass_evaluation()]))


def test_comparison_section_gives_the_pairs_with_delong_p(full_html: str) -> None:
    table = comparison_pairs_table(comparison())

    assert table[1] == (
        "covid3d-slices",
        "covid3d",
        "0.935",
        "0.871",
        "+0.064",
        "0.004 to 0.121",
        "2.15",
        "0.031",
        "<0.001",
    )
    assert _titles([], comparison())[-1] == "Model comparison: COVID-19, scan level"
    assert "<td>0.031</td>" in full_html and "<td>&lt;0.001</td>" in full_html


def test_an_evaluation_repeated_on_two_data_sets_keeps_its_sections_apart() -> None:
    held_out = multiclass_evaluation()
    user = dataclasses.replace(held_out, data=dataclasses.replace(held_out.data, split="user"))

    titles = _titles([multiclass_evaluation(), user])

    assert "cxr-resnet18 (held-out), image level: summary" in titles
    assert "cxr-resnet18 (user), image level: summary" in titles
    assert performance_report([multiclass_evaluation(), user]).title == "Model performance: cxr-resnet18"


def test_report_renders_with_core_report() -> None:
    document = render_report(performance_report([multilabel_evaluation()], created=CREATED))

    assert "<h1>Model performance: cxr-findings</h1>" in document


# --------------------------------------------------------------------------------------------
# File name


@pytest.mark.parametrize(
    ("ids", "expected"),
    [
        (["cxr-resnet18", "covid3d"], "model-performance-cxr-resnet18_covid3d.html"),
        (["../etc/passwd", "a b<c>"], "model-performance-etc-passwd_a-b-c.html"),
        (["cxr-resnet18", "cxr-resnet18"], "model-performance-cxr-resnet18.html"),
        (["", "///"], "model-performance.html"),
    ],
)
def test_file_name_keeps_only_safe_characters(ids: list[str], expected: str) -> None:
    name = performance_report_filename(ids)

    assert name == expected
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)
