"""Home: what is loaded, on which device, how far the library's preparation is, and what the
app is (not) for."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.deployment import read_only
from core.errors import DashboardError
from core.evaluation.reports import kfold_table
from core.models.card_metrics import RecordedSplit
from core.text import describe_input_grid, km_summary
from core.training.figures import learning_curves_figure
from ui import frame, resources, warmup
from ui.library import library, library_path
from ui.model_card import domain_badge, ood_detector, provenance, shortcut_checks

registry = frame.page("COVID-19 chest imaging dashboard", disclaimer_as_warning=True)
cards = registry.cards()
device = registry.device
c1, c2, c3 = st.columns(3)
c1.metric("Device", "CUDA GPU" if device.type == "cuda" else "CPU", help=f"PyTorch device: {device}")
c2.metric("Models registered", len(cards))
warm: warmup.WarmUp | None = None
try:
    case_library = library()
    counts = case_library.counts()
except DashboardError as e:
    c3.error(f"The case library is not available: {e}")
else:
    c3.metric(
        "Case library",
        f"{counts.patients} patients",
        help=f"{counts.studies} studies ("
        + ", ".join(f"{n} {m}" for m, n in sorted(counts.by_modality.items()))
        + f") in {case_library.location}",
    )
    warm = warmup.start(library_path(), case_library)


def _show_warm_up(warm: warmup.WarmUp) -> None:
    """The warm-up's progress, redrawn every second while it runs; once it is done, the page is
    drawn again without the timer and says the library is ready."""
    if not warm.finished:
        st.progress(warm.fraction, text=warm.text)
        st.caption("Pages opened meanwhile work as usual; they compute what is not prepared yet.")
        st.session_state["home_warm_up_seen_running"] = True
        return
    if st.session_state.pop("home_warm_up_seen_running", False):
        st.rerun()  # the whole page again, this time without the timer
    for problem in warm.problems[:10]:
        st.warning(problem)
    if warm.steps_done:
        done = warm.steps_done
        st.success(
            "The case library is ready: "
            + (", ".join(done[:-1]) + " and " + done[-1] if len(done) > 1 else done[0])
            + " are prepared, so their pages open without computing first."
            + ("" if not warm.problems else " What is listed above is computed by its page when needed.")
        )


if warm is not None:
    st.fragment(_show_warm_up, run_every=None if warm.finished else 1.0)(warm)

st.page_link(
    "pages/xray.py",
    label="X-ray triage: upload chest X-rays, see predictions and Grad-CAM",
    icon=":material/radiology:",
)
st.page_link(
    "pages/ct.py",
    label="CT volume: upload a CT series, view it in three planes, COVID3D with 3D Grad-CAM, per-slice probabilities",
    icon=":material/view_in_ar:",
)
st.page_link(
    "pages/similar.py",
    label="Similar cases: the patients whose X-rays look most alike, with their series over time, side by side",
    icon=":material/compare:",
)
st.page_link(
    "pages/trajectories.py",
    label="Trajectories: COVID3D s(t) over a patient's follow-up scans, Grad-CAM per time point, the cohort's course",
    icon=":material/timeline:",
)
st.page_link(
    "pages/survival.py",
    label="Survival and prognosis: CNN-LSTM survival from an X-ray series, COVID3D prognosis, Kaplan-Meier risk groups",
    icon=":material/monitor_heart:",
)
st.page_link(
    "pages/performance.py",
    label="Model performance: each model on its held-out data, ROC, calibration, k-fold tables, models side by side",
    icon=":material/analytics:",
)
st.page_link(
    "pages/library.py",
    label="Case library: browse patients and their timelines"
    + ("" if read_only() else ", import datasets, add reviewed cases"),
    icon=":material/folder_shared:",
)

st.header("Models")
if not cards:
    st.error(f"No models are registered in {resources.weights_dir() / 'manifest.json'}.")
for card in cards:
    held = card.recorded_metrics.held_out or RecordedSplit()
    title = f"**{card.id}** · {domain_badge(card)} · {card.architecture} · version {card.version}"
    if held.accuracy is not None:
        title += f" · held-out accuracy {held.accuracy:.1%}"
    elif held.mean_auc is not None:
        title += f" · held-out mean AUC {held.mean_auc:.3f} over findings"
    with st.expander(title):
        st.markdown(f"**Intended use:** {card.intended_use}")
        provenance(card)
        spec = card.input
        st.markdown(
            f"**Input:** {card.input_kind}, {describe_input_grid(spec)}, {spec.channels} channel(s) "
            f"({spec.grayscale}). **Labels (output order):** {', '.join(card.labels)}. "
            f"**Grad-CAM layer:** `{card.gradcam_layer}`."
        )
        data = card.training.get("data", {})
        if data:
            counts = data.get("images") or data.get("counts") or {}
            split_text = "; ".join(
                f"{part}: {sum(c.values()) if isinstance(c, dict) else c}" for part, c in counts.items()
            )
            unit = data.get("unit", "image")
            sizes = f"{split_text} {unit}s; " if split_text else ""
            st.markdown(f"**Trained on:** {data.get('note') or data.get('source')} ({sizes}{data.get('split', '')}).")
        if held.confusion_matrix:
            left, right = st.columns(2)
            labels = list(held.labels)
            unit = held.unit or card.training.get("data", {}).get("unit", "image")
            left.markdown(f"Held-out confusion matrix ({held.n} {unit}s; rows true, columns predicted)")
            left.dataframe(pd.DataFrame([list(row) for row in held.confusion_matrix], index=labels, columns=labels))
            per_class = pd.DataFrame(
                [[r.precision, r.recall, r.specificity, r.f1, r.support] for r in held.per_class.values()],
                index=list(held.per_class),
                columns=["precision", "recall", "specificity", "f1", "support"],
            )
            right.markdown("Per class")
            three = st.column_config.NumberColumn(format="%.3f")
            right.dataframe(
                per_class,
                column_config={
                    "precision": three,
                    "recall": three,
                    "specificity": three,
                    "f1": three,
                    "support": st.column_config.NumberColumn(format="%d"),
                },
            )
            right.caption(
                f"Accuracy {held.accuracy:.1%} · ROC AUC "
                + ("-" if held.auc is None else f"{held.auc:.3f}")
                + ("" if held.brier is None else f" · Brier score {held.brier:.3f}")
            )
        for km, what in ((held.km, "the model's groups"), (held.km_clinical, "clinical factors (age, sex)")):
            if km:
                st.caption(f"Held-out Kaplan-Meier of {what}: {km_summary(km)}")
        per_finding = held.per_finding
        if per_finding:
            st.markdown(
                f"Held-out, per finding ({held.n_images} images; mean ROC AUC "
                + ("-" if held.mean_auc is None else f"{held.mean_auc:.3f}")
                + (
                    "; sensitivity and specificity at each finding's operating threshold, fitted on the dev split)"
                    if card.thresholds
                    else "; sensitivity and specificity at P = 0.5)"
                )
            )
            table = pd.DataFrame(
                [
                    [f.n_positive, f.prevalence, f.auc, f.threshold, f.sensitivity, f.specificity]
                    for f in per_finding.values()
                ],
                index=list(per_finding),
                columns=["n_positive", "prevalence", "auc", "threshold", "sensitivity", "specificity"],
            )
            if all(f.threshold is None for f in per_finding.values()):  # rates at P = 0.5
                table = table.drop(columns="threshold")
            st.dataframe(
                table.style.format(precision=3, na_rep="-").format("{:d}", subset=["n_positive"]),
                key=f"findings_{card.id}",
            )
        per_scan = card.recorded_metrics.held_out_per_scan
        if per_scan:
            st.caption(
                f"Per scan ({per_scan.n} held-out scans, the patient-level score over all slices): accuracy "
                f"{per_scan.accuracy:.1%} · ROC AUC {float('nan') if per_scan.auc is None else per_scan.auc:.3f}"
            )
        folds = card.training.get("folds")
        if folds:
            st.markdown(
                f"**{len(folds)}-fold cross-validation** (patient level; the kept model is fold "
                f"{card.training.get('kept_fold')}, {card.training.get('kept_because', '')})"
            )
            table = pd.DataFrame(kfold_table(folds)).set_index(["part", "fold"])
            st.dataframe(table.style.format("{:.3f}"), key=f"folds_{card.id}")
        shortcut_checks(card)
        ood_detector(card)
        curves = card.training.get("learning_curves")
        if curves:
            st.plotly_chart(learning_curves_figure(curves, card.training), key=f"curves_{card.id}")
