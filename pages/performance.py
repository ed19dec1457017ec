"""Model performance: how good each registered model is, on data it never trained on.

Per model, on the held-out split recorded at training time (or a dataset on this computer):
the confusion matrix, per-class precision / recall / specificity / F1, ROC and PR curves with
AUC and bootstrap 95% CIs, the reliability diagram before and after temperature scaling, the
operating threshold with its sensitivity and specificity, seed 002's k-fold table, and for CT
models the AUC across perturbed windows (seed 003). Two or more models side by side on the
same cases with DeLong's test. A self-contained HTML report of all of it.

The Readers tab: clinicians' reads from the case-review meetings against the model and the
truth (issue 20), from the reads stored in the case library; it works without any model, and
says so plainly where the case library is not ready or cannot be opened.

A dataset path must lie inside the data roots (core.deployment).
"""

from __future__ import annotations

import re

import streamlit as st

from core.deployment import confine, roots_hint
from core.errors import DashboardError
from core.evaluation.compare import comparable
from core.evaluation.data import model_kind
from core.evaluation.evaluate import operating_point_at
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
from core.evaluation.html import performance_report, performance_report_filename
from core.evaluation.results import Calibration, Comparison, Evaluation, Level
from core.report import today
from ui import frame, resources
from ui.model_card import ood_detector, provenance, shortcut_checks
from ui.performance import comparison, evaluation, kfold_frame, per_class_frame, readers
from ui.report import report_download


def _is_demo_source(text: str) -> bool:
    """``demo`` or ``demo:N``: the CT demo cohort's phantoms (core.datasets.ct_sources), not a path.
    Only digits may follow, so ``demo:../..`` is confined like any other path."""
    return re.fullmatch(r"demo(:\d+)?", text) is not None


HELD_OUT, DATASET = "Held-out split (recorded at training)", "A dataset on this computer"
DEFAULT_MODEL = "cxr-resnet18"


def _level_view(ev: Evaluation, level: Level, key: str) -> None:
    task = ev.task
    unit = level.unit
    cols = st.columns(5)
    cols[0].metric(f"{unit.capitalize()}s", level.n)
    cols[1].metric("Patients", level.n_patients if level.n_patients is not None else "not recorded")
    cols[2].metric("Accuracy", format_percent(level.accuracy))
    cols[3].metric("Mean AUC" if task != "binary" else "AUC", format_number(level.macro_auc))
    calibration = level.calibration
    cols[4].metric(
        "Temperature",
        format_number(ev.model.temperature, 2) if ev.model.temperature_fitted else "not fitted",
    )
    st.dataframe(per_class_frame(level, task == "multilabel"), hide_index=True)
    if level.skipped_labels:
        st.caption(
            f"No ROC curve or AUC for {', '.join(level.skipped_labels)}: these {unit}s hold no positive "
            "(or no negative) case of it."
        )
    left, right = st.columns(2)
    if level.confusion_matrix is not None:
        left.plotly_chart(confusion_figure(level.confusion_matrix, unit), key=f"cm_{key}")
    if calibration is not None:
        right.plotly_chart(reliability_figure(calibration, f"Reliability per {unit}"), key=f"rel_{key}")
        right.markdown(
            f"**{unit.capitalize()} score, not a probability.** {level.note}"
            if level.note
            else _calibration_text(calibration)
        )
    if level.roc:
        roc_col, pr_col = st.columns(2)
        roc_col.plotly_chart(roc_figure(level.roc, f"ROC per {unit}"), key=f"roc_{key}")
        pr_col.plotly_chart(pr_figure(level.pr, f"Precision-recall per {unit}"), key=f"pr_{key}")
    _threshold_view(level, key)


def _calibration_text(calibration: Calibration) -> str:
    before = calibration.uncalibrated.ece
    after = calibration.calibrated
    if after is None:
        return (
            "**Uncalibrated probabilities.** No temperature was fitted for this model, so its probabilities "
            f"are raw outputs; expected calibration error {before:.3f}."
        )
    return (
        f"**Calibrated probabilities.** The model's outputs are divided by T = {calibration.temperature:.2f}, "
        f"fitted on the {calibration.fitted_on}; every page shows these calibrated probabilities. Expected "
        f"calibration error {before:.3f} before, {after.ece:.3f} after."
    )


def _threshold_view(level: Level, key: str) -> None:
    scores, op = level.scores, level.operating_point
    if not scores or len(set(scores.y)) < 2:
        return
    label = scores.label
    st.markdown(f"**Operating threshold on P({label})**")
    default = op.threshold if op else 0.5
    threshold = st.slider(
        f"Call {label} when P({label}) is at least",
        0.0,
        1.0,
        round(default, 2),
        0.01,
        key=f"threshold_{key}",
        help="The model card's threshold is the default; move it to see the trade-off on these cases.",
    )
    point = operating_point_at(scores, threshold)
    cols = st.columns(4)
    cols[0].metric("Sensitivity", format_percent(point.sensitivity))
    cols[1].metric("Specificity", format_percent(point.specificity))
    cols[2].metric("PPV", format_percent(point.ppv))
    cols[3].metric("NPV", format_percent(point.npv))
    st.caption(
        f"At {threshold:.2f}: {point.tp} true positives, {point.fn} missed, {point.fp} false alarm"
        + ("" if point.fp == 1 else "s")
        + ", "
        f"{point.tn} true negatives"
        + (
            f"; the card's operating threshold is {op.threshold:.2f}."
            if op
            else "; decisions on this page use the arg-max."
        )
    )


def _model_view(model_id: str) -> Evaluation | None:
    card = registry.card(model_id)
    kind = model_kind(card)
    windows = 0
    if kind in ("ct-volume", "ct-slice"):
        windows = int(
            st.number_input(
                "Perturbed windows for the robustness band (0: none)",
                min_value=0,
                max_value=100,
                value=0,
                step=10,
                key=f"windows_{model_id}",
                help="Seed 003 scored COVID3D at 100 windows within one SD of the training window "
                "(about 5 s per window for COVID3D on a 2-core CPU, 45 s for the slice model).",
            )
        )
    try:
        ev = evaluation(model_id, data_path, windows)
    except DashboardError as e:
        st.error(f"{model_id}: {e}")
        return None
    patients = ev.data.n_patients
    st.caption(
        f"{card.id} {card.version} on {ev.data.description}: {ev.data.n_cases} cases"
        + (f" of {patients} patients." if patients is not None else ".")
    )
    for note in ev.notes:
        st.caption(note)
    levels = ev.levels
    if len(levels) > 1:
        units = [lv.unit for lv in levels]
        unit = st.radio(
            "Per", units, horizontal=True, key=f"level_{model_id}", index=units.index("scan") if "scan" in units else 0
        )
        level = levels[units.index(unit)]
    else:
        level = levels[0]
    _level_view(ev, level, f"{model_id}_{level.unit}")
    if ev.kfold:
        with st.expander(f"k-fold cross-validation ({card.id}, patient-level folds)"):
            st.dataframe(kfold_frame(ev.kfold), hide_index=True)
            st.caption(
                "Per fold, on its training and validation patients (seed 002's tables); the kept fold's model is the one evaluated above."
            )
    rob = ev.robustness
    if rob:
        band_col, dots_col = st.columns(2)
        band_col.plotly_chart(robustness_figure(rob), key=f"rob_{model_id}")
        dots_col.plotly_chart(robustness_auc_figure(rob), key=f"robdots_{model_id}")
    with st.expander(f"What {card.id} was trained on, shortcut checks, and 'unlike my training data'", expanded=True):
        provenance(card)
        shortcut_checks(card)
        ood_detector(card)
    return ev


frame.heading("Model performance")
models_tab, readers_tab = st.tabs(["Models", "Readers"])
with readers_tab:  # first: it needs no model, and the Models tab ends the page where it has nothing to show
    readers()
with models_tab:
    with frame.plain_errors():
        registry = resources.registry()
    cards = registry.cards()
    if not cards:
        st.info("No models are registered in the weights folder.")
        st.stop()

    ids = [c.id for c in cards]
    left, right = st.columns([3, 2])
    chosen = left.multiselect(
        "Models",
        ids,
        default=[DEFAULT_MODEL] if DEFAULT_MODEL in ids else ids[:1],
        help="Choose two or more X-ray classifiers (or CT models) to compare them on the same cases.",
    )
    source_kind = right.radio("Evaluate on", [HELD_OUT, DATASET], horizontal=True)
    data_path: str | None = None
    if source_kind == DATASET:
        data_path = (
            right.text_input(
                "Dataset path",
                placeholder="/data/covid-xray (class folders), manifest.csv, or a CT metadata.csv folder",
                help="X-ray models: class folders (COVID/, NORMAL/, Viral Pneumonia/) or a CSV manifest path,label"
                "[,patient_id]; the findings model: a CheXpert-style CSV; CT models: a folder with metadata.csv "
                "or a CSV manifest of series (or demo:N, N demo patients' CT phantoms drawn in memory). Every case in it "
                f"is used. {roots_hint()}",
            ).strip()
            or None
        )
        if data_path is None:
            st.info("Enter the path of a dataset to evaluate on.")
            st.stop()
        if not _is_demo_source(data_path):  # the demo phantoms are drawn in memory, not read from disk
            with frame.plain_errors():
                data_path = str(confine(data_path))
    if not chosen:
        st.info("Choose at least one model.")
        st.stop()

    evaluations: list[Evaluation] = []
    tabs = st.tabs(chosen)
    for tab, model_id in zip(tabs, chosen, strict=True):
        with tab:
            ev = _model_view(model_id)
            if ev is not None:
                evaluations.append(ev)

    result: Comparison | None = None
    chosen_cards = [registry.card(i) for i in chosen]
    if len(chosen) >= 2:
        st.subheader("Side by side on the same cases")
        if comparable(chosen_cards):
            positive = "COVID-19"
            if all(model_kind(c) == "xray" for c in chosen_cards):
                classes = list(chosen_cards[0].labels)
                positive = st.selectbox(
                    "Compare on P(class) against the other classes",
                    classes,
                    index=classes.index("COVID-19") if "COVID-19" in classes else 0,
                    key="compare_positive",
                )
            try:
                result = comparison(chosen, data_path, positive)
            except DashboardError as e:
                st.error(str(e))
            if result is not None:
                st.caption(
                    f"P({result.positive}) of each model on {result.n} {result.unit}s of "
                    f"{result.n_patients} patients: {result.data}."
                )
                fig_col, table_col = st.columns([3, 2])
                fig_col.plotly_chart(comparison_figure(result), key="comparison")
                table_col.dataframe(
                    [
                        {
                            "models": f"{p.a} - {p.b}",
                            "AUC difference": f"{p.difference:+.3f}",
                            "DeLong p": format_p_value(p.delong_p),
                            "bootstrap 95% CI": f"{p.bootstrap_ci[0]:+.3f} to {p.bootstrap_ci[1]:+.3f}",
                        }
                        for p in result.pairs
                    ],
                    hide_index=True,
                )
                table_col.caption("AUCs: " + "; ".join(f"{m.id} {format_auc(m.auc, m.auc_ci)}" for m in result.models))
        else:
            st.info(
                "Side by side compares 3-class X-ray models with each other, or CT models with each other "
                "(the findings and series models score other things)."
            )

    if evaluations:
        report_download(
            lambda: performance_report(evaluations, result, created=today()),
            key="performance_report",
            file_name=performance_report_filename([e.model.id for e in evaluations]),
            label="Download performance report (HTML)",
        )
