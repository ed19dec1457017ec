"""Survival and prognosis: the CNN-LSTM's survival probability from a patient's X-ray series
(seed 000) with a Grad-CAM per time point, COVID3D's prognosis from one or two CTs (seed 003),
and Kaplan-Meier curves of the library's patients grouped by those models or by clinical
factors, with log-rank p-values and hazard ratios; a case report to download."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.case_reports.survival import PatientView
from core.demo.images import DEMO_FOLLOW_UP, demo_follow_up_xrays
from core.errors import DashboardError, InsufficientDataError
from core.explain.overlay import render_overlay
from core.io.images import read_xray
from core.survival.analysis import GROUPINGS, HIGH, model_role_ids, role_of
from core.survival.cohort import OutcomePatient, library_patients
from core.survival.km_figure import GROUPING_LABELS, km_figure, y_title
from core.survival.predict import (
    PrognosisPrediction,
    SurvivalPrediction,
    in_time_order,
    predict_prognosis,
    predict_survival,
    prognosis_threshold,
    survival_threshold,
)
from core.survival.risk_check import calibration_figure, model_check_rows
from core.text import describe_outcome, percent
from ui import frame, resources
from ui.library import library_or_stop
from ui.session import digest, memo, shared_xrays
from ui.survival import ENDPOINT_LABELS, case_report, grouped_cohort, patient_choices

ROLE_NAMES = {
    "prognosis-2": "2-scan prognosis model",
    "prognosis-1": "1-scan prognosis model",
    "survival": "survival model (CNN-LSTM)",
    "s": "COVID3D model",
}
LIBRARY_PATIENT, MY_UPLOADS = "A library patient", "My uploads (this session)"

registry = frame.page("Survival and prognosis")
library = library_or_stop()
roles = model_role_ids(registry)


def _model(role: str):  # noqa: ANN202 - LoadedModel or None
    model_id = roles.get(role)
    if model_id is None:
        return None
    try:
        return resources.model(model_id)
    except DashboardError as e:
        st.error(str(e))
        return None


survival_model, prognosis_2, prognosis_1, s_model = (_model(r) for r in ("survival", "prognosis-2", "prognosis-1", "s"))
models = {
    k: v
    for k, v in {
        "survival": survival_model,
        "prognosis-2": prognosis_2,
        "prognosis-1": prognosis_1,
        "s": s_model,
    }.items()
    if v
}
if survival_model is None and prognosis_2 is None and prognosis_1 is None:
    st.info(
        "No survival or prognosis model is registered: the Kaplan-Meier tab groups patients by age, sex and s(t) only."
    )

with st.sidebar:
    st.header("Patient")
    source = st.radio("Series", (LIBRARY_PATIENT, MY_UPLOADS), key="surv_source")
    st.header("Grad-CAM")
    opacity = st.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="surv_opacity")

patient_tab, km_tab = st.tabs(["Patient", "Kaplan-Meier risk groups"])


def _survival_block(pred: SurvivalPrediction, grays: list, days: list[float]) -> None:
    threshold = survival_threshold(survival_model)
    group = HIGH if pred.death_probability >= threshold else "Low risk"
    c1, c2 = st.columns(2)
    c1.metric("P(survival), CNN-LSTM", percent(pred.probability))
    c2.metric(
        "Risk of death group", group, help=f"High risk when P(death) >= {threshold:.2f}, the dev split's Youden point."
    )
    # The threshold in sight wherever a group stands next to a probability.
    c2.caption(
        f"High risk when P(death) ≥ {percent(threshold)}; this patient's P(death) is {percent(pred.death_probability)}."
    )
    st.caption(
        f"{survival_model.id} {survival_model.card.version}: the X-rays below, in time order, read by one DenseNet-121 "
        f"each and an LSTM. Probabilities calibrated by temperature scaling on the dev split (T = "
        f"{survival_model.card.temperature:.2f})."
    )
    st.markdown("**Grad-CAM of the risk of death, per time point**")
    if pred.maps and all(float(m.max()) == 0.0 for m in pred.maps):
        st.caption("The Grad-CAM is zero on every X-ray: no region raised the model's risk of death.")
    cols = st.columns(min(len(grays), 5))
    for i, (gray, heat, day) in enumerate(zip(grays, pred.maps, days, strict=False)):
        cols[i % len(cols)].image(render_overlay(gray, heat, "Jet", opacity), caption=f"day {day:g}", width="stretch")


def _prognosis_block(preds: dict[str, PrognosisPrediction], day: float | None) -> None:
    if not preds:
        return
    st.markdown(
        "**Prognosis: remaining hospital stay of 7 days or more (high risk)**"
        + ("" if day is None else f", from the CT of day {day:g}")
    )
    cols = st.columns(len(preds))
    for col, (label, pred) in zip(cols, preds.items(), strict=False):
        model = prognosis_2 if pred.scans == 2 else prognosis_1
        group = HIGH if pred.high_risk(prognosis_threshold(model)) else "Low risk"
        col.metric(
            label,
            f"{percent(pred.probability)} · {group.lower()}",
            help=f"{pred.model_id} {pred.model_version}: P(high risk), temperature-calibrated on the dev split "
            f"(T = {model.card.temperature:.2f}); high risk from {prognosis_threshold(model):.2f} (the dev split's "
            "Youden point).",
        )
        col.caption(f"High risk from {percent(prognosis_threshold(model))}")


with km_tab:
    endpoint_label = st.radio("Endpoint", list(ENDPOINT_LABELS), horizontal=True, key="surv_endpoint")
    endpoint = ENDPOINT_LABELS[endpoint_label]
    patients_all = memo(("surv_cohort_patients", library.counts().studies), library_patients, library)
    compare = ("model", "model-1scan", "clinical") if endpoint == "discharge" else ("model", "clinical")
    titles = {
        "model": "2 scans (COVID3D prognosis)" if endpoint == "discharge" else "CNN-LSTM over the X-rays",
        "model-1scan": "1 scan (COVID3D prognosis)",
        "clinical": "Clinical factors (age, sex)",
    }
    st.caption(
        "Patients of the library the models did not train on. "
        + (
            "Time from the second CT to discharge: COVID-19 patients with at least two CTs; a death or the data freeze "
            "censors. Seed 003 compared the same three stratifications (its log-rank p: 5.3e-5, 0.0033, 0.77)."
            if endpoint == "discharge"
            else "Time from admission to death: COVID-19 patients with X-rays; discharge or the data freeze censors."
        )
    )
    cols = st.columns(len(compare))
    analyses = {}
    for col, grouping in zip(cols, compare, strict=False):
        with col:
            st.markdown(f"**{titles[grouping]}**")
            role = role_of(endpoint, grouping)
            if role is not None and role not in models:
                st.info(f"No {ROLE_NAMES[role]} is registered.")
                continue
            try:
                cohort = grouped_cohort(library, patients_all, endpoint, grouping, models)
                analysis = cohort.analyse()
            except InsufficientDataError as e:
                st.info(str(e))
                continue
            except DashboardError as e:
                st.error(str(e))
                continue
            analyses[grouping] = (cohort, analysis)
            st.plotly_chart(
                km_figure(analysis, height=430, x_title="Days", y_title=y_title(endpoint)),
                key=f"km_{endpoint}_{grouping}",
            )
            for message in analysis.messages:
                st.caption(message)
            st.caption(cohort.description)

    st.divider()
    st.markdown("**Your own grouping**")
    g1, g2, g3 = st.columns(3)
    available = [
        g
        for g in GROUPINGS
        if (role_of(endpoint, g) in models or role_of(endpoint, g) is None)
        and not (g == "model-1scan" and endpoint != "discharge")
    ]
    grouping = g1.selectbox("Group by", [GROUPING_LABELS[g] for g in available], key="surv_group_by")
    grouping = {v: k for k, v in GROUPING_LABELS.items()}[grouping]
    kwargs = {}
    if grouping == "age":
        kwargs["age_cut"] = g2.number_input("Age cut (years)", 20.0, 90.0, 60.0, 5.0, key="surv_age_cut")
    if grouping == "s":
        if endpoint == "discharge":
            kwargs["s_feature"] = {"s at the second CT": "last", "change of s since the first CT": "change"}[
                g2.selectbox(
                    "s(t) feature", ["s at the second CT", "change of s since the first CT"], key="surv_s_feature"
                )
            ]
        kwargs["s_threshold"] = g3.number_input("Threshold on s", -10.0, 10.0, 0.0, 0.5, key="surv_s_threshold")
    try:
        cohort = grouped_cohort(library, patients_all, endpoint, grouping, models, **kwargs)
        analysis = cohort.analyse()
        st.plotly_chart(km_figure(analysis, height=480, x_title="Days", y_title=y_title(endpoint)), key="km_custom")
        for message in analysis.messages:
            st.caption(message)
        st.caption(cohort.description)
        rows = [
            {
                "group": g.name,
                "patients": g.n,
                "events": g.events,
                "censored": g.censored,
                "median days": "not reached" if g.median_time is None else f"{g.median_time:g}",
            }
            for g in analysis.groups
        ]
        st.dataframe(pd.DataFrame(rows), hide_index=True)
    except InsufficientDataError as e:
        st.info(str(e))
    except DashboardError as e:
        st.error(str(e))

    st.divider()
    st.markdown("**How good are the risk models on these patients**")
    checks = model_check_rows(analyses, endpoint)
    if checks:
        st.dataframe(pd.DataFrame(checks), hide_index=True)
        calib = calibration_figure(analyses)
        if calib is not None:
            st.plotly_chart(calib, key=f"calibration_{endpoint}")
        st.caption(
            "Confusion counts at each model's threshold (rows: true high/low risk); AUC from scikit-learn; "
            "calibration: observed share of high-risk patients per bin of predicted probability."
        )
    else:
        st.caption("No model grouping on this endpoint, so nothing to check.")

with patient_tab:
    if source == LIBRARY_PATIENT:
        patients = library.patients()
        choices = patient_choices(patients)
        if not choices:
            st.info("The library has no patient with X-rays or CTs and a day for each.")
        else:
            label = st.selectbox(
                "Patient",
                list(choices),
                key="surv_patient",
                help="COVID-19 patients first, those with most scans first.",
            )
            pseudonym = choices[label]
            record = library.patient(pseudonym)
            patient: OutcomePatient = library_patients(library, [pseudonym])[0]
            s = record.summary
            st.subheader(pseudonym)
            st.write(
                f"{s.label or 'diagnosis unknown'} · {s.sex or 'sex unknown'}"
                f"{'' if s.age_years is None else f', {s.age_years:g} years'} · {describe_outcome(s)} · "
                f"{len(patient.xrays())} X-ray(s), {len(patient.cts())} CT(s)"
            )
            xrays = patient.xrays()
            grays, days, pred = [], [], None
            if survival_model is not None and xrays:
                max_x = int(survival_model.card.training.get("config", {}).get("max_xrays", 8))
                used = xrays[:max_x]
                grays = memo(("surv_grays", pseudonym), lambda: [x.load() for x in used])
                days = [x.day for x in used]
                try:
                    pred = memo(
                        ("surv_pred", survival_model.card.version, pseudonym), predict_survival, survival_model, grays
                    )
                    _survival_block(pred, grays, days)
                except DashboardError as e:
                    st.error(str(e))
            elif survival_model is not None:
                st.info("This patient has no X-rays with a day: the CNN-LSTM has nothing to read.")
            cts = patient.cts()
            prog: dict[str, PrognosisPrediction] = {}
            follow_day = None
            if (prognosis_1 or prognosis_2) and cts:
                options = [f"CT of day {c.day:g}" for c in cts]
                default = 1 if len(cts) > 1 else 0
                at = (
                    options.index(st.selectbox("Prognosis from", options, index=default, key="surv_ct"))
                    if len(cts) > 1
                    else 0
                )
                follow_day = cts[at].day
                try:
                    volumes = memo(("surv_ct", pseudonym, at), lambda: [c.load() for c in cts[max(at - 1, 0) : at + 1]])
                    if prognosis_1 is not None:
                        prog["1 scan"] = memo(
                            ("surv_p1", prognosis_1.card.version, pseudonym, at),
                            predict_prognosis,
                            prognosis_1,
                            volumes[-1:],
                        )
                    if prognosis_2 is not None and at >= 1:
                        prog["2 scans (prior + this)"] = memo(
                            ("surv_p2", prognosis_2.card.version, pseudonym, at),
                            predict_prognosis,
                            prognosis_2,
                            volumes,
                        )
                    _prognosis_block(prog, follow_day)
                    if prognosis_2 is not None and at == 0:
                        st.caption("The 2-scan model needs a prior CT: pick a later CT.")
                except DashboardError as e:
                    st.error(str(e))
            notes = [
                (f"day {st_.day:g}" if st_.day is not None else "day ?", st_.note) for st_ in record.studies if st_.note
            ]
            with st.expander(f"Radiologist's notes ({len(notes)})"):
                for when, note in notes:
                    st.markdown(f"**{when}**: {note}")
            view = PatientView(record, patient, pred, grays, days, prog, follow_day)
            case_report(library, view, analyses, models, opacity=opacity, key="surv_report")
    else:
        st.write(
            "Upload a patient's chest X-rays with the day of each (days since admission): the CNN-LSTM reads them "
            "in the order of those days, not in the order of the files. Nothing is stored."
        )
        files = st.file_uploader("Chest X-rays", type=None, accept_multiple_files=True, key="surv_upload")
        given = [(f.name, f.getvalue()) for f in files or []]
        shared = shared_xrays()
        if shared and st.checkbox(f"Add the X-ray triage page's {len(shared)} image(s)", key="surv_shared"):
            given += shared
        if st.button(f"Use a demo follow-up series ({len(DEMO_FOLLOW_UP)} X-rays)", key="surv_demo"):
            st.session_state["surv_demo_series"] = True
        if st.session_state.get("surv_demo_series"):
            demo = demo_follow_up_xrays()
            given += [(name, data) for name, _, data in demo]
            demo_days = {name: day for name, day, _ in demo}
        else:
            demo_days = {}
        if not given:
            st.info("No X-rays yet.")
        elif survival_model is None:
            st.error("No survival model is registered, so the series cannot be read.")
        else:
            items = []
            day_columns = st.columns(min(len(given), 4))
            for i, (name, data) in enumerate(given):
                try:
                    image = memo(("surv_read", digest(data)), read_xray, data)
                except DashboardError as e:
                    st.error(f"{name}: {e}")
                    continue
                day = day_columns[i % len(day_columns)].number_input(
                    f"Day of {name}",
                    min_value=0.0,
                    max_value=365.0,
                    value=float(demo_days.get(name, i * 3)),
                    step=1.0,
                    key=f"surv_day_{i}_{digest(data)[:12]}",
                )
                items.append((day, image))
            if items:
                order = in_time_order([(d, im) for d, im in items])
                grays = [items[i][1].windowed() for i in order]
                days = [items[i][0] for i in order]
                try:
                    pred = memo(
                        ("surv_up", survival_model.card.version, tuple(digest(g.tobytes()) for g in grays)),
                        predict_survival,
                        survival_model,
                        grays,
                    )
                    _survival_block(pred, grays, days)
                except DashboardError as e:
                    st.error(str(e))
