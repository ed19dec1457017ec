"""X-ray triage: upload chest X-rays; per image the 3-class probabilities of each chosen model
and of their average, and an attribution overlay with its colour bar and a PNG download."""

from __future__ import annotations

import functools

import pandas as pd
import streamlit as st

from core.case_reports.common import upload_pseudonym
from core.case_reports.xray import xray_case_report
from core.demo.images import demo_xrays
from core.errors import DashboardError
from core.explain.attributions import GRAD_CAM, METHODS
from core.explain.figures import IMAGE_CONFIG, image_figure
from core.explain.overlay import COLORMAPS, display_shape, downsample_for_display, render_overlay
from core.findings import predict_findings
from core.inference import Reading, predict_xray, summarise, xray_analysis, xray_ood
from core.io.images import read_xray
from core.pacs.results import xray_results
from core.report import report_filename_for
from core.text import describe_image
from ui import frame, pacs, resources
from ui.model_card import model_label
from ui.readings import headline, ood_warnings, probability_table
from ui.report import IDENTIFIERS_LABEL, report_download
from ui.session import digest, memo, share_xrays

PREDICTED = "Predicted class"
LEADING = "the leading model"
#: The reference models (seed 000's ResNet-18), real first: explained by default when they accept the image.
REFERENCES = ("cxr-real-resnet18", "cxr-resnet18")

registry = frame.page("X-ray triage")
available = registry.classifier_ids("xray")
if not available:
    st.error("No X-ray models are registered, so nothing can be predicted.")
    st.stop()
cards = {mid: registry.card(mid) for mid in available}
real_ids = [m for m in available if cards[m].domain == "real"]
demo_ids = [m for m in available if cards[m].domain == "demo"]

_named = functools.partial(model_label, short=True)


with st.sidebar:
    st.header("Models")
    chosen_upload = st.multiselect(
        "For your uploads",
        available,
        default=real_ids or available,
        format_func=_named,
        key="xray_models",
        help="Real: trained on real chest X-rays. Demo: trained on synthetic phantoms; on a real film they "
        "answer with confident nonsense, so they are meant for the demo X-rays.",
    )
    chosen_demo = st.multiselect(
        "For the demo X-rays", available, default=demo_ids or available, format_func=_named, key="xray_demo_models"
    )
    st.header("Overlay")
    cam_choice = st.selectbox(
        "Explain model",
        (LEADING, *available),
        key="xray_cam_model",
        help="The leading model: the first chosen model that accepts the image as like its training data.",
    )
    method = st.selectbox(
        "Method",
        METHODS,
        index=METHODS.index(GRAD_CAM),
        key="xray_method",
        help="Captum attribution. Occlusion and Integrated Gradients take several seconds.",
    )
    all_labels = list(dict.fromkeys(label for mid in available for label in cards[mid].labels))
    target = st.selectbox("Target class", (PREDICTED, *all_labels), key="xray_target")
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="xray_opacity")
    colormap = st.selectbox("Colour map", COLORMAPS, key="xray_colormap")

uploads = st.file_uploader(
    "Chest X-rays: PNG, JPEG, BMP, TIFF (8 or 16 bit) or DICOM (CR/DX, also compressed)",
    accept_multiple_files=True,
    key="xray_upload",
)
if st.button("Load demo X-rays (synthetic phantoms)", key="xray_demo"):
    st.session_state["xray_demo_files"] = demo_xrays()
demo_files = st.session_state.get("xray_demo_files", [])
retrieved = pacs.from_pacs("xray", "DX")  # nothing shown unless the deployment configures a PACS
from_pacs = (
    [
        (retrieved.name if len(retrieved.files) == 1 else f"{retrieved.name}, image {i}", d, False)
        for i, (_, d) in enumerate(retrieved.files, 1)
    ]
    if retrieved
    else []
)
files = [(f.name, f.getvalue(), False) for f in uploads or []] + from_pacs + [(n, d, True) for n, d in demo_files]
share_xrays([(n, d) for n, d, _ in files])  # the Similar cases page searches with these
if not files:
    st.info(
        "Upload one or more chest X-rays, or load the demo X-rays, to see predictions and where the models look. "
        "Uploads are read by the real-data models, the demo X-rays by the demo models (sidebar)."
    )
    st.stop()

findings_ids = registry.multi_label_ids("xray")

for name, data, is_demo in files:
    key = digest(data)
    chosen = chosen_demo if is_demo else chosen_upload
    with st.container(border=True):
        st.subheader(name)
        if not chosen:
            st.info(
                "Choose at least one model for "
                + ("the demo X-rays" if is_demo else "your uploads")
                + " in the sidebar."
            )
            continue
        try:
            image = memo(("image", key), read_xray, data, name)
        except DashboardError as e:
            st.error(str(e))
            continue
        models = {}
        for mid in chosen:  # a model whose weights fail says so; the others still answer
            try:
                models[mid] = resources.model(mid)
            except DashboardError as e:
                st.error(str(e))
        if not models:
            continue
        chosen = list(models)
        for warning in image.warnings:
            st.warning(warning)

        with st.spinner("Checking the image against each model's training data..."):
            verdicts = {
                m.id: memo(("ood", key, m.id, m.card.version, (m.card.ood or {}).get("sha256")), xray_ood, m, image)
                for m in models.values()
            }
        accepting = [mid for mid in chosen if verdicts[mid] is None or verdicts[mid].in_distribution]
        if cam_choice != LEADING and cam_choice in models:
            cam_model = models[cam_choice]
        else:
            pool = accepting or chosen
            cam_model = models[next((m for m in REFERENCES if m in pool), pool[0])]
        target_label = None if target == PREDICTED or target not in cam_model.card.labels else target
        with st.spinner(f"Predicting, and {method} for {cam_model.id}..."):
            # The explained model's prediction comes from the same forward pass as its map.
            analysis = memo(
                ("analysis", key, cam_model.id, cam_model.card.version, method, target_label),
                xray_analysis,
                cam_model,
                image,
                target_label,
                method,
            )
            cam_pred = analysis.prediction
            # The map at the size the page shows the image; the download draws it full size.
            cam = analysis.explanation(display_shape(image.shape))
            predictions = [
                cam_pred if m is cam_model else memo(("pred", key, m.id, m.card.version), predict_xray, m, image)
                for m in models.values()
            ]
        readings = [Reading(p, verdicts[p.model_id], cards[p.model_id].domain_words) for p in predictions]
        summary = summarise(readings, prefer=cam_model.id)
        average = summary.average

        ood_warnings(readings)
        left, right = st.columns([5, 4])
        with right:
            headline(summary, readings)
            shown_rows = [r for r in readings if r.accepted]
            if shown_rows:
                probability_table(shown_rows, average, key=f"probs_{key[:12]}")
                st.caption("Rows: models (and their average); bold: each row's predicted class.")
            if summary.rejected:
                with st.expander(
                    f"Probabilities of the models this image is unlike the training data of ({len(summary.rejected)})",
                    expanded=False,
                ):
                    st.caption("Not results: these models were not trained on images like this one.")
                    probability_table(list(summary.rejected), key=f"probs_ood_{key[:12]}")
            st.caption(describe_image(image))
            findings = []
            for fid in findings_ids:
                try:
                    fmodel = resources.model(fid)
                    found = memo(("findings", key, fid), predict_findings, fmodel, image)
                    fverdict = memo(
                        ("ood", key, fid, fmodel.card.version, (fmodel.card.ood or {}).get("sha256")),
                        xray_ood,
                        fmodel,
                        image,
                    )
                except DashboardError as e:
                    st.error(str(e))
                    continue
                findings.append(found)
                calibrated_note = "temperature-calibrated" if found.calibrated else "not calibrated"
                title = (
                    f"Findings ({fid}, {fmodel.card.domain_words}: one probability per finding, independent, "
                    f"{calibrated_note})"
                )
                table = pd.DataFrame({"P(present)": found.probabilities}, index=list(found.labels)).style.format(
                    "{:.1%}"
                )
                if fverdict is not None and not fverdict.in_distribution:
                    with st.expander(f"{title}: not a result, this image is unlike its training data", expanded=False):
                        st.caption(fverdict.headline())
                        st.dataframe(table, key=f"findings_{fid}_{key[:12]}")
                else:
                    st.markdown(title)
                    st.dataframe(table, key=f"findings_{fid}_{key[:12]}")
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
            shown = downsample_for_display(image.windowed(center, width))
            overlay = render_overlay(shown, cam.values, colormap, opacity)
            st.plotly_chart(image_figure(overlay, colormap, f"{method}"), config=IMAGE_CONFIG, key=f"fig_{key[:12]}")
            cam_verdict = verdicts.get(cam.model_id)
            st.caption(
                f"{method} of {cam.model_id} ({cards[cam.model_id].domain_words}) for target class "
                f"**{cam.target_label}**. Scroll to zoom, drag to pan, double-click to reset."
                + (
                    " This image is unlike the model's training data: the map shows where it looked, not a finding."
                    if cam_verdict is not None and not cam_verdict.in_distribution
                    else ""
                )
            )
            st.download_button(
                "Download overlay (PNG)",
                functools.partial(analysis.overlay_png, image, (center, width), colormap, opacity),
                # Named like the report, not after the upload: clinicians name files after patients.
                file_name=f"{upload_pseudonym(data)}.{cam.model_id}.{method.lower().replace(' ', '-')}.png",
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
                    readings=tuple(readings),
                    findings=tuple(findings),
                    include_identifiers=include_ids,
                ),
                key=f"xray_report_{key[:12]}",
                file_name=report_filename_for(upload_pseudonym(data)),
            )
            if not is_demo and pacs.is_dicom(data) and not cam_model.card.multi_label:
                pacs.send_results(
                    f"xray_{key[:12]}", functools.partial(xray_results, [(name, data)], cam_model, opacity=opacity)
                )
