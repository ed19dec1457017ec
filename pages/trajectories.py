"""Trajectories: COVID3D's s(t) over a patient's follow-up CTs (or an X-ray model's P(COVID-19)
over their X-rays), the Grad-CAM of each time point scaled by s(t), curve features, and the
whole library's course with its median."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.ct.views import signed_overlay
from core.demo.images import demo_follow_up_cts, demo_follow_up_xrays
from core.errors import DashboardError
from core.io.ct_input import read_ct_upload
from core.io.images import read_xray
from core.labels import XRAY_LABELS
from core.library.records import PatientFilter
from core.text import describe_outcome, describe_study_time
from core.trajectory.changes import findings_changes, point_rows
from core.trajectory.curves import (
    cohort_curve,
    cohort_points,
    cohort_trajectories,
    features_csv,
    features_rows,
    patient_trajectory,
)
from core.trajectory.explain import UploadedScan, scaled_maps, upload_trajectory, upload_verdicts
from core.trajectory.figures import change_box_figure, cohort_figure, findings_heatmap, trajectory_figure
from core.trajectory.findings_change import (
    CATEGORIES,
    CHANGE_RULE,
    change_statistics,
    patient_findings,
    predict_worse_vs_improved,
    score_findings,
    xray_pairs,
)
from core.trajectory.scores import (
    CT_SCORE,
    decision_threshold,
    score_library,
    score_name,
    score_version,
    scored_refs,
)
from ui import frame, resources
from ui.library import library_or_stop, show_full_size
from ui.model_card import model_label
from ui.session import digest, memo, shared_xrays

CT_SERIES, XRAY_SERIES = "CT: COVID3D s(t)", "X-ray: P(COVID-19)"
LIBRARY_PATIENT, MY_UPLOADS = "A library patient", "My uploads (this session)"
#: Seconds a scan takes to score on a 2-core CPU (measured on the demo library), and the longest
#: scoring of the whole library that starts without a click.
SECONDS_PER_SCAN = {"CT": 0.15, "X-ray": 0.04}
AUTO_SCORE_SECONDS = 15.0

registry = frame.page("Trajectories")
library = library_or_stop()
ct_models = registry.ids("ct-volume")
xray_models = [c.id for c in registry.cards("xray") if "COVID-19" in c.labels]

with st.sidebar:
    st.header("Series")
    kinds = [k for k, ok in ((CT_SERIES, ct_models), (XRAY_SERIES, xray_models)) if ok]
    if not kinds:
        st.error("No COVID3D or X-ray model is registered, so there is nothing to score.")
        st.stop()
    kind = st.radio("Scores", kinds, key="traj_kind")
    options = ct_models if kind == CT_SERIES else xray_models
    default = "covid3d" if kind == CT_SERIES else "cxr-resnet18"
    model_id = st.selectbox(
        "Model",
        options,
        index=options.index(default) if default in options else 0,
        format_func=model_label,
        key="traj_model",
        help="The demo library was drawn as synthetic phantoms: the demo models are the ones trained on images like it.",
    )
    since_label = st.radio(
        "Days since",
        ("admission", "symptom onset"),
        horizontal=True,
        key="traj_since",
        help="Library patients: the x axis counts days from admission or from the first symptoms.",
    )
    since = "admission" if since_label == "admission" else "onset"
    st.header("Cohort view")
    colour_by = st.radio("Colour lines by", ("outcome", "length of stay"), horizontal=True, key="traj_colour")
    cohort_labels = st.multiselect(
        "Diagnosis",
        XRAY_LABELS,
        default=["COVID-19"],
        key="traj_cohort_labels",
        help="Patients shown in the cohort view.",
    )
    bin_days = st.slider("Median over bins of (days)", 1, 5, 2, key="traj_bin")

try:
    model = resources.model(model_id)
    score = score_name(model)
    threshold = decision_threshold(model)
except DashboardError as e:
    st.error(str(e))
    st.stop()
modality = "CT" if score == CT_SCORE else "X-ray"
y_title = "s(t), COVID3D score" if score == CT_SCORE else "P(COVID-19)"
threshold_label = (
    f"decision threshold (P = {model.card.thresholds.get('covid', 0.5):.2f})" if score == CT_SCORE else "threshold"
)


def upload_scans(modality: str) -> list[UploadedScan]:
    """The session's scans with the day each was taken: files uploaded here (and, for X-rays, the
    X-ray triage page's images), or the demo follow-up. Everything stays in memory."""
    if modality == "CT":
        files = st.file_uploader(
            "CT scans, one file per scan: a zip of the series' DICOM slices, a NIfTI file, or a multi-frame DICOM",
            accept_multiple_files=True,
            key="traj_upload_ct",
        )
    else:
        files = st.file_uploader(
            "Chest X-rays (PNG, JPEG, TIFF or DICOM); the X-ray triage page's images are included",
            accept_multiple_files=True,
            key="traj_upload_xray",
        )
    if st.button(f"Use the demo follow-up {modality}s (one synthetic patient, 5 scans)", key=f"traj_demo_{modality}"):
        st.session_state[f"traj_demo_{modality}_on"] = True
    scans: list[UploadedScan] = []
    given: list[tuple[str, bytes]] = [(f.name, f.getvalue()) for f in files or []]
    if modality == "X-ray":
        given += shared_xrays()
    for name, data in given:
        try:
            if modality == "CT":
                scans.append(
                    UploadedScan(name, 0.0, volume=memo(("ct-volume", digest(data)), read_ct_upload, [(name, data)]))
                )
            else:
                scans.append(UploadedScan(name, 0.0, image=memo(("image", digest(data)), read_xray, data, name)))
        except DashboardError as e:
            st.error(str(e))
    if st.session_state.get(f"traj_demo_{modality}_on"):
        if modality == "CT":
            scans += [UploadedScan(n, d, volume=v) for n, d, v in memo(("demo-follow-up-ct",), demo_follow_up_cts)]
        else:
            scans += [
                UploadedScan(n, d, image=read_xray(b, n))
                for n, d, b in memo(("demo-follow-up-xray",), demo_follow_up_xrays)
            ]
    if not scans:
        st.info(
            f"Upload two or more {modality} scans of one patient, or use the demo follow-up, then set the day of each."
        )
        return []
    st.caption("Set the day of each scan (days since admission); the table keeps your entries.")
    table = pd.DataFrame(
        {"scan": [sc.name for sc in scans], "day": [sc.day if sc.day else float(i) for i, sc in enumerate(scans)]}
    )
    edited = st.data_editor(
        table,
        key=f"traj_days_{modality}_{digest('|'.join(sc.name for sc in scans).encode())[:12]}",
        hide_index=True,
        disabled=["scan"],
        column_config={
            "day": st.column_config.NumberColumn("day since admission", min_value=-30, max_value=365, step=1)
        },
    )
    days = [float(d) if pd.notna(d) else float(i) for i, d in enumerate(edited["day"])]
    return [UploadedScan(sc.name, day, sc.image, sc.volume) for sc, day in zip(scans, days, strict=True)]


# -- one patient, or this session's uploads ------------------------------------------------------
source = st.radio("Series of", (LIBRARY_PATIENT, MY_UPLOADS), horizontal=True, key="traj_source")
uploaded = None
if source == LIBRARY_PATIENT:
    candidates = library.patients(PatientFilter(modality=modality))
    if not candidates:
        st.info(f"No patient in the library has a {modality} study.")
        st.stop()
    count = (lambda p: p.n_ct) if modality == "CT" else (lambda p: p.n_xray)
    # COVID-19 patients with the most scans first: their course is the one seed 003 describes.
    ordered = sorted(candidates, key=lambda p: (p.label != "COVID-19", -count(p), p.pseudonym))
    pick = st.selectbox(
        "Patient",
        [p.pseudonym for p in ordered],
        key="traj_patient",
        help=f"Patients with a {modality} study: COVID-19 patients with the most scans first.",
    )
    try:
        with st.spinner(f"Scoring {pick}'s scans with {model.id}..."):
            trajectory = patient_trajectory(library, pick, model, since)
    except DashboardError as e:
        st.error(str(e))
        st.stop()
else:
    pick = "Your uploads"
    scans = upload_scans(modality)
    if not scans:
        st.stop()
    try:
        with st.spinner(f"Scoring {len(scans)} scans with {model.id}..."):
            uploaded = memo(
                ("traj-upload", model.id, score_version(model), tuple((sc.name, sc.day) for sc in scans)),
                upload_trajectory,
                model,
                scans,
            )
        verdicts = memo(
            ("traj-upload-ood", model.id, score_version(model), tuple((sc.name, sc.day) for sc in scans)),
            upload_verdicts,
            model,
            scans,
        )
    except DashboardError as e:
        st.error(str(e))
        st.stop()
    trajectory = uploaded.trajectory
    for sc, verdict in zip(scans, verdicts, strict=True):
        if verdict is not None and not verdict.in_distribution:
            st.warning(
                f"{sc.name} (day {sc.day:g}) is unlike the images {model.id} ({model.card.domain_words}) was "
                "trained on: its point on the curve is not a result.",
                icon="⚠️",
            )

summary = trajectory.patient
if uploaded is None:
    st.markdown(
        f"**{summary.pseudonym}** · {summary.label or 'unlabelled'} · {describe_outcome(summary)} · "
        f"{len(trajectory.points)} {modality} scans"
    )
points = trajectory.points
if not points:
    st.info(f"{pick} has no dated {modality} scan to score.")
    st.stop()

x_title = f"days since {'admission' if trajectory.axis == 'admission' else 'symptom onset'}"
labels = [f"day {p.day:g} · " + (f"study {p.study_id}" if uploaded is None else str(p.note)) for p in points]
ids = [p.study_id for p in points]
# The scan shown below: the "Scan" box's choice, or the point last clicked on the chart (read
# from the chart's state before drawing it, so its ring follows the click at once).
chart_state = st.session_state.get("traj_chart") or {}
clicked = [pt.get("customdata") for pt in (chart_state.get("selection") or {}).get("points", [])]
if clicked and clicked[0] in ids and clicked != st.session_state.get("traj_last_click"):
    st.session_state["traj_last_click"] = clicked
    st.session_state["traj_scan"] = labels[ids.index(clicked[0])]
if st.session_state.get("traj_scan") not in labels:
    st.session_state["traj_scan"] = labels[0]
selected_id = ids[labels.index(st.session_state["traj_scan"])]
hover = [
    f"day {p.day:g}"
    + (f" (day {p.onset_day:g} since onset)" if p.onset_day is not None and trajectory.axis == "admission" else "")
    + f"<br>{y_title.split(',')[0]} = {p.value:.2f}, P(COVID+) = {p.probability:.2f}"
    + (f"<br>{(p.note or '')[:90]}" if p.note else "")
    for p in points
]
fig = trajectory_figure(
    [p.day for p in points],
    [p.value for p in points],
    [p.study_id for p in points],
    hover,
    y_title=y_title,
    threshold=threshold,
    threshold_label=threshold_label,
    end_day=summary.length_of_stay_days if trajectory.axis == "admission" and uploaded is None else None,
    end_label=describe_outcome(summary, short=True),
    x_title=x_title,
    selected=selected_id,
)
st.plotly_chart(fig, key="traj_chart", on_select="rerun", selection_mode="points")
st.caption(
    f"Each point is a scan (hover for its note; click to open it below). Dashed: the model's decision "
    f"threshold{' (s = 0 is P = 0.5)' if score == CT_SCORE else ''}. Dotted: end of the stay."
)

f = trajectory.features
m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("First", f"{f.first:.2f}")
m2.metric("Peak", f"{f.peak:.2f}", help="The highest score of the series.")
m3.metric("Day of peak", f"{f.peak_day:g}")
m4.metric("Last", f"{f.last:.2f}")
m5.metric("Area under s(t)" if score == CT_SCORE else "Area under P(t)", "-" if f.auc is None else f"{f.auc:.1f}")
table = pd.DataFrame(point_rows(trajectory))
st.dataframe(table.style.format(precision=3, na_rep="-"), hide_index=True, key="traj_points")
st.caption(
    "Slopes between consecutive scans; derivatives at each scan by second-order finite differences on the "
    "uneven days (the 2nd derivative needs three scans). "
    + (
        f"P(COVID+) is calibrated: the model's output divided by T = {model.card.temperature:.2f}, fitted on its "
        "dev split."
        if model.card.temperature != 1.0
        else "P(COVID+) is the model's raw output (no temperature fitted), not a calibrated probability."
    )
)

# -- the chosen scan, and every time point's Grad-CAM scaled by s(t) ---------------------------
chosen = st.selectbox("Scan", labels, key="traj_scan")
chosen_point = points[labels.index(chosen)]
if uploaded is None:
    study = next(s for s in library.patient(pick).studies if s.id == chosen_point.study_id)
    with st.expander(f"{describe_study_time(study)} · {study.modality}: image and note", expanded=False):
        show_full_size(library, study)
        st.write(study.note or "No note.")

st.subheader("Grad-CAM of each time point, scaled by its score")
fraction = 0.5
if score == CT_SCORE:
    fraction = st.slider(
        "Axial slice (fraction of the way from the first slice to the last)", 0.0, 1.0, 0.5, 0.05, key="traj_slice"
    )
try:
    with st.spinner("Grad-CAM of every time point..."):
        if uploaded is not None:
            maps = uploaded.maps(fraction)
        else:
            maps = memo(
                ("traj-maps", library.location, pick, model.id, trajectory.model_version, round(fraction, 3)),
                scaled_maps,
                library,
                model,
                trajectory,
                fraction,
            )
except DashboardError as e:
    st.error(str(e))
    maps = []
per_row = min(max(len(maps), 1), 5)
for start in range(0, len(maps), per_row):
    cols = st.columns(per_row)
    for col, item in zip(cols, maps[start : start + per_row], strict=False):
        p = item.point
        col.image(signed_overlay(item.gray, item.heat, 0.7), width="stretch")
        col.caption(f"day {p.day:g} · {'s' if score == CT_SCORE else 'P'} = {p.value:.2f}")
st.caption(
    (
        "COVID3D's signed Grad-CAM H times s(t) / max |s|: red H > 0, blue H < 0 (seed 003, Figure 4); "
        if score == CT_SCORE
        else f"{model.id}'s Grad-CAM for COVID-19 times P(t) / max P; "
    )
    + "a scan the model finds less COVID-like glows less."
)

# -- sequential X-ray findings (seed 004) ------------------------------------------------------
findings_ids = registry.multi_label_ids("xray")
if modality == "X-ray" and uploaded is None and findings_ids:
    st.subheader("Findings between sequential X-rays")
    try:
        findings_model = resources.model(findings_ids[0])
        per_xray = patient_findings(library, findings_model, pick)
    except DashboardError as e:
        st.error(str(e))
        st.stop()
    if per_xray:
        labels_f = list(per_xray[0][2])
        st.plotly_chart(
            findings_heatmap(
                labels_f, [f"day {day:g}" for _, day, _ in per_xray], [[p[f] for _, _, p in per_xray] for f in labels_f]
            ),
            key="traj_findings",
        )
        notes = {s.id: s.note for s in library.patient(pick).studies}
        rows = [
            {"pair": c.pair, "category": c.category, "from": c.category_from, **c.change}
            for c in findings_changes(per_xray, notes)
        ]
        if rows:
            st.markdown("Change of each finding's probability between sequential X-rays (second minus first):")
            st.dataframe(
                pd.DataFrame(rows).set_index("pair").style.format(precision=2),
                key="traj_findings_change",
            )
            st.caption(
                f"Category from the note's comparison with the prior where there is one; otherwise {CHANGE_RULE}."
            )

    st.subheader("Worse / Stable / Improved across the library (seed 004)")
    if st.button("Analyse every pair of sequential X-rays", key="traj_change_run") or st.session_state.get(
        "traj_change_done"
    ):
        st.session_state["traj_change_done"] = True
        bar = st.progress(0.0, text=f"Scoring every X-ray with {findings_model.id}")
        try:
            score_findings(
                library,
                findings_model,
                progress=lambda d, t: bar.progress(d / max(t, 1), text=f"Scoring with {findings_model.id}: {d} of {t}"),
            )
        except DashboardError as e:
            st.error(str(e))
            st.stop()
        bar.empty()
        pairs = xray_pairs(library, findings_model)
        counts = {c: sum(p.category == c for p in pairs) for c in CATEGORIES}
        st.markdown(
            f"**{len(pairs)} pairs** of sequential X-rays: "
            + ", ".join(f"{c} {n}" for c, n in counts.items())
            + f" ({sum(p.category_from == 'note' for p in pairs)} categorised from the notes)."
        )
        stats = pd.DataFrame(change_statistics(pairs, findings_model.card.labels))
        st.dataframe(
            stats.style.format(
                {"median_first": "{:.3f}", "median_second": "{:.3f}", "mann_whitney_p": "{:.2g}", "cohens_d": "{:.2f}"},
                na_rep="-",
            ),
            hide_index=True,
            key="traj_table2",
        )
        st.caption("Mann-Whitney U (two-sided) and Cohen's d of the change of each finding between categories.")
        finding = st.selectbox("Box plot of the change of", findings_model.card.labels, index=2, key="traj_box_finding")
        st.plotly_chart(
            change_box_figure({c: [p.change[finding] for p in pairs if p.category == c] for c in CATEGORIES}, finding),
            key="traj_box",
        )
        rows = []
        for reverse in (False, True):
            try:
                res = predict_worse_vs_improved(library, findings_model, pairs, reversed_order=reverse)
            except DashboardError as e:
                st.info(str(e))
                break
            rows.append(
                {
                    "predicted from": res.order,
                    "pairs": res.n_pairs,
                    "patients": res.n_patients,
                    **{
                        name: "-"
                        if m["value"] is None
                        else (f"{m['value']:.2f}" + ("" if m["low"] is None else f" ({m['low']:.2f}-{m['high']:.2f})"))
                        for name, m in res.metrics.items()
                    },
                }
            )
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="traj_predictor")
            st.caption(
                "Worse vs Improved from the first X-ray of each pair: its last convolutional layer's features, "
                "chi-square selection of 5, standardised, logistic regression, leave-one-patient-out; 95% intervals (Wilson; "
                "likelihood ratios on the log scale). The reversed-order control predicts from the second X-ray."
            )

# -- the cohort --------------------------------------------------------------------------------
st.header("The cohort")
total = len(scored_refs(library, model))
have = len(library.scores(model.id, trajectory.model_version, score))
missing = total - have
estimate = SECONDS_PER_SCAN[modality] * missing
if missing and (estimate <= AUTO_SCORE_SECONDS or st.button(f"Score the library's other {missing} {modality} scans")):
    bar = st.progress(0.0, text=f"Scoring {missing} scans with {model.id}")
    report = score_library(
        library, model, progress=lambda d, t: bar.progress(d / max(t, 1), text=f"Scoring with {model.id}: {d} of {t}")
    )
    bar.empty()
    missing = total - (report.already + report.added)
if missing:
    st.info(
        f"{missing} of the library's {total} {modality} scans have no {model.id} score yet "
        f"(about {max(estimate / 60, 1):.0f} min on a CPU); the cohort view shows the scored ones."
    )
everyone = memo(
    ("traj-cohort", library.location, model.id, trajectory.model_version, have, missing, trajectory.axis),
    cohort_trajectories,
    library,
    model,
    trajectory.axis,  # uploads are dated from admission: the cohort then is too
)
wanted = tuple(cohort_labels) or None
cohort = [t for t in everyone if wanted is None or t.patient.label in wanted]
if not cohort:
    st.info("No scored patient matches the diagnosis filter.")
    st.stop()
days, values = cohort_points(cohort)
curve = cohort_curve(days, values, bin_days=bin_days)
lines = [
    (
        t.patient.pseudonym,
        [p.day for p in t.points],
        [p.value for p in t.points],
        t.patient.outcome,
        t.patient.length_of_stay_days,
    )
    for t in cohort
]
st.plotly_chart(
    cohort_figure(
        lines,
        list(curve.centres),
        list(curve.median),
        list(curve.q25),
        list(curve.q75),
        colour_by="outcome" if colour_by == "outcome" else "stay",
        highlight=pick,
        y_title=y_title,
        x_title=x_title,
        threshold=threshold,
    ),
    key="traj_cohort",
)
peak_text = (
    "no bin has enough scans"
    if curve.peak_day is None
    else f"day {curve.peak_day - bin_days / 2:g}-{curve.peak_day + bin_days / 2:g}"
)
st.markdown(
    f"**{len(cohort)} patients, {days.size} scans.** The median peaks at {peak_text}. "
    f"Thick black: median per {bin_days}-day bin with at least 5 scans; grey band: interquartile range; red: {pick}."
)
peak_days = [t.features.peak_day for t in cohort if t.features.n >= 2 and t.features.peak_day is not None]
if peak_days:
    s = pd.Series(peak_days)
    st.caption(
        f"Day of each patient's highest score (patients with 2 or more scans, n = {s.size}): "
        f"median {s.median():g}, interquartile range {s.quantile(0.25):g}-{s.quantile(0.75):g}."
    )
rows = pd.DataFrame(features_rows(cohort))
st.dataframe(rows.style.format(precision=2, na_rep="-"), hide_index=True, height=300, key="traj_features")
st.download_button(
    "Download curve features (CSV)",
    features_csv(cohort),
    file_name=f"trajectory-features-{model.id}.csv",
    mime="text/csv",
    key="traj_csv",
)
