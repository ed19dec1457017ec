"""X-ray triage: upload chest X-rays; per image the 3-class probabilities of each chosen model
and of their average, and an attribution overlay with its colour bar and a PNG download."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from core.errors import DashboardError
from core.explain.attributions import GRAD_CAM, METHODS
from core.explain.overlay import COLORMAPS, png_bytes, render_overlay
from core.findings import predict_findings
from core.inference import analyse_xray, average_predictions, predict_xray
from core.io.images import read_xray
from core.report import report_filename_for
from core.types import XRAY_LABELS
from ui import resources
from ui.demo_images import demo_xrays
from ui.figures import IMAGE_CONFIG, image_figure
from ui.navigation import use_app_navigation
from ui.report import IDENTIFIERS_LABEL, report_download, upload_pseudonym, xray_case_report
from ui.session import digest, memo, share_xrays
from ui.text import DISCLAIMER, describe_image

PREDICTED = "Predicted class"
REFERENCE = "cxr-resnet18"

use_app_navigation()
st.title("X-ray triage")
st.caption(DISCLAIMER)

try:
    registry = resources.registry()
    available = registry.classifier_ids("xray")
except DashboardError as e:
    st.error(str(e))
    st.stop()
if not available:
    st.error("No X-ray models are registered, so nothing can be predicted.")
    st.stop()

with st.sidebar:
    st.header("Models")
    chosen = st.multiselect("3-class models", available, default=available, key="xray_models")
    st.header("Overlay")
    cam_options = chosen or available
    cam_model_id = st.selectbox(
        "Explain model",
        cam_options,
        index=cam_options.index(REFERENCE) if REFERENCE in cam_options else 0,
        key="xray_cam_model",
    )
    method = st.selectbox(
        "Method",
        METHODS,
        index=METHODS.index(GRAD_CAM),
        key="xray_method",
        help="Captum attribution. Occlusion and Integrated Gradients take several seconds.",
    )
    target = st.selectbox("Target class", (PREDICTED, *XRAY_LABELS), key="xray_target")
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="xray_opacity")
    colormap = st.selectbox("Colour map", COLORMAPS, key="xray_colormap")

if not chosen:
    st.info("Choose at least one model in the sidebar.")
    st.stop()

uploads = st.file_uploader(
    "Chest X-rays: PNG, JPEG, BMP, TIFF (8 or 16 bit) or DICOM (CR/DX, also compressed)",
    accept_multiple_files=True,
    key="xray_upload",
)
if st.button("Load demo X-rays (synthetic phantoms)", key="xray_demo"):
    st.session_state["xray_demo_files"] = demo_xrays()
files = [(f.name, f.getvalue()) for f in uploads or []] + st.session_state.get("xray_demo_files", [])
share_xrays(files)  # the Similar cases page searches with these
if not files:
    st.info("Upload one or more chest X-rays, or load the demo X-rays, to see predictions and where the models look.")
    st.stop()

models = {mid: resources.model(mid) for mid in chosen}
findings_ids = registry.multi_label_ids("xray")

for name, data in files:
    key = digest(data)
    with st.container(border=True):
        st.subheader(name)
        try:
            image = memo(("image", key), read_xray, data, name)
        except DashboardError as e:
            st.error(str(e))
            continue
        for warning in image.warnings:
            st.warning(warning)

        cam_model = models.get(cam_model_id) or next(iter(models.values()))
        target_label = None if target == PREDICTED else target
        with st.spinner(f"Predicting, and {method} for {cam_model.id}..."):
            # The explained model's prediction comes from the same forward pass as its map.
            cam_pred, cam = memo(
                ("analysis", key, cam_model.id, cam_model.card.version, method, target_label),
                analyse_xray,
                cam_model,
                image,
                target_label,
                method,
            )
            predictions = [
                cam_pred if m is cam_model else memo(("pred", key, m.id, m.card.version), predict_xray, m, image)
                for m in models.values()
            ]
        average = average_predictions(predictions) if len(predictions) > 1 else None
        shown = predictions + ([average] if average else [])

        left, right = st.columns([5, 4])
        with right:
            headline = average or predictions[0]
            st.metric(
                f"Predicted ({'average of models' if average else headline.model_id})",
                headline.predicted_label,
                help="The class with the highest probability.",
            )
            table = pd.DataFrame(
                [[p.probability_of(label) for label in XRAY_LABELS] for p in shown],
                index=[("Average" if p is average else p.model_id) for p in shown],
                columns=list(XRAY_LABELS),
            )
            st.dataframe(
                table.style.format("{:.1%}").highlight_max(axis=1, props="font-weight: bold"),
                key=f"probs_{key[:12]}",
            )
            st.caption("Rows: models (and their average); bold: each row's predicted class.")
            st.caption(describe_image(image))
            findings = []
            for fid in findings_ids:
                try:
                    found = memo(("findings", key, fid), predict_findings, resources.model(fid), image)
                except DashboardError as e:
                    st.error(str(e))
                    continue
                findings.append(found)
                calibrated_note = "temperature-calibrated" if found.calibrated else "not calibrated"
                st.markdown(f"Findings ({fid}: one probability per finding, independent, {calibrated_note})")
                st.dataframe(
                    pd.DataFrame({"P(present)": found.probabilities}, index=list(found.labels)).style.format("{:.1%}"),
                    key=f"findings_{fid}_{key[:12]}",
                )
            calibrated = all(p.calibrated for p in predictions)
            st.caption(
                "Probabilities are "
                + ("temperature-calibrated." if calibrated else "the models' softmax outputs, not calibrated.")
            )

        with left:
            center, width = image.window_center, image.window_width
            if image.is_dicom or image.bits_stored > 8:
                low, high = image.value_range
                span = max(high - low, 1.0)
                c1, c2 = st.columns(2)
                center = c1.slider(
                    "Window level", float(low), float(high), float(min(max(center, low), high)), key=f"level_{key[:12]}"
                )
                width = c2.slider(
                    "Window width", 1.0, float(span * 2), float(min(max(width, 1.0), span * 2)), key=f"width_{key[:12]}"
                )
            overlay = render_overlay(image.windowed(center, width), cam.values, colormap, opacity)
            st.plotly_chart(image_figure(overlay, colormap, f"{method}"), config=IMAGE_CONFIG, key=f"fig_{key[:12]}")
            st.caption(
                f"{method} of {cam.model_id} for target class **{cam.target_label}**. "
                "Scroll to zoom, drag to pan, double-click to reset."
            )
            st.download_button(
                "Download overlay (PNG)",
                png_bytes(overlay),
                file_name=f"{name.rsplit('.', 1)[0]}.{cam.model_id}.{method.lower().replace(' ', '-')}.png",
                mime="image/png",
                key=f"dl_{key[:12]}",
            )
            include_ids = image.is_dicom and st.checkbox(
                IDENTIFIERS_LABEL,
                value=False,
                key=f"xray_report_ids_{key[:12]}",
                help="Off: the report names the case by a pseudonym only. On: the file's patient, study and "
                "instance identifiers are added in a marked box.",
            )
            # Built only when clicked (on Streamlit's download thread), from what this run computed.
            report_download(
                functools.partial(
                    xray_case_report,
                    data=data,
                    image=image,
                    window=(center, width),
                    explanation=cam,
                    method=method,
                    colormap=colormap,
                    opacity=opacity,
                    predictions=tuple(predictions),
                    average=average,
                    findings=tuple(findings),
                    include_identifiers=include_ids,
                ),
                key=f"xray_report_{key[:12]}",
                file_name=report_filename_for(upload_pseudonym(data)),
            )
