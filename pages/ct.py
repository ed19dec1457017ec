"""CT volume: upload a CT series, read it in three planes with window presets, see COVID3D's
prediction with its 3D Grad-CAM on every slice (and the map's maximum-intensity projection),
and the slice model's probability for each axial slice."""

from __future__ import annotations

import functools

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from core.case_reports.ct import ct_case_report, ct_identifier_rows, ct_pseudonym, is_dicom_series
from core.ct.analysis import analyse_ct, slice_cam
from core.ct.preprocess import LUNG_WINDOW, window_hu
from core.ct.views import (
    PLANES,
    WINDOW_PRESETS,
    map_projection,
    mean_projection,
    n_slices,
    pixel_size_mm,
    signed_overlay,
    take_slice,
)
from core.demo.images import DEMO_CTS, demo_ct
from core.errors import DashboardError
from core.explain.figures import IMAGE_CONFIG, image_figure
from core.explain.overlay import render_overlay
from core.io.ct_input import list_ct_upload_series, read_ct_upload
from core.pacs.results import ct_results
from core.report import report_filename_for
from ui import frame, pacs
from ui.model_card import model_label
from ui.report import IDENTIFIERS_LABEL, report_download
from ui.session import digest, memo, share_ct

CAM_OFF = "Off"
CAM_UNSIGNED = "COVID3D Grad-CAM (where COVID3D looked)"
CAM_SIGNED = "COVID3D signed Grad-CAM (red H > 0, blue H < 0)"
CAM_SLICE = "Slice model Grad-CAM (on the axial slice shown)"
FILE_WINDOW = "The file's own window"
NONE = "(none)"

registry = frame.page("CT volume")
volume_ids = registry.ids("ct-volume")
slice_ids = registry.ids("ct-slice")

how = st.radio("Upload", ("Files or a zip", "A folder"), horizontal=True, key="ct_upload_mode")
uploads = st.file_uploader(
    "A CT series: its DICOM slices, a zip of them, a NIfTI volume (.nii, .nii.gz) or 16-bit TIFF slices",
    accept_multiple_files=True if how == "Files or a zip" else "directory",
    key="ct_upload" if how == "Files or a zip" else "ct_upload_folder",
)
demo_cols = st.columns(len(DEMO_CTS))
for col, label in zip(demo_cols, DEMO_CTS, strict=True):
    if col.button(f"Demo CT: {label}", key=f"ct_demo_{label}"):
        st.session_state["ct_demo"] = label
retrieved = pacs.from_pacs("ct", "CT")  # nothing shown unless the deployment configures a PACS
files = [(f.name, f.getvalue()) for f in uploads or []] or (list(retrieved.files) if retrieved else [])
share_ct(files)  # the Case review page can add it to a meeting
demo_label = st.session_state.get("ct_demo") if not files else None
if not files and demo_label is None:
    st.info(
        "Upload a CT series, or load a demo CT phantom, to view it and see the models' predictions. Uploads are "
        "read by the models trained on real CT where there is one, the demo phantoms by the demo models."
    )
    st.stop()


def _ordered(ids: list[str], domain: str) -> list[str]:
    """Models of ``domain`` first: real-data models for an upload, demo models for a phantom."""
    return sorted(ids, key=lambda m: registry.card(m).domain != domain)


wanted = "real" if files else "demo"
with st.sidebar:
    st.header("Models")
    st.caption("For " + ("your upload" if files else "the demo phantom") + ":")
    covid3d_id = st.selectbox(
        "COVID3D (whole volume)",
        (*_ordered(volume_ids, wanted), NONE),
        format_func=model_label,
        key=f"ct_model_{wanted}",
    )
    slice_id = st.selectbox(
        "Slice model (per axial slice)",
        (*_ordered(slice_ids, wanted), NONE),
        format_func=model_label,
        key=f"ct_slice_model_{wanted}",
    )
    st.header("Overlay")
    # An upload is read by the real slice model (COVID3D is demo only): its map first.
    cam_mode = st.radio(
        "Map on the slice",
        (CAM_UNSIGNED, CAM_SIGNED, CAM_SLICE, CAM_OFF),
        index=2 if wanted == "real" and slice_id != NONE else 0,
        key=f"ct_map_{wanted}",
        help="Grad-CAM: where a model looked for COVID-19. COVID3D's map covers the whole volume (every plane); "
        "the slice model's covers the axial slice shown, inside the region it reads.",
    )
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05, key="ct_opacity")


def _patient_score_help(model, read: np.ndarray) -> str:
    text = "Patient-level score: the mean P(COVID-19) of the top 10% of the slices read (see the chart)."
    if not read.all():
        text += (
            f" The model was trained on images of slices through the lungs: it reads the {int(read.sum())} of "
            f"{read.size} slices that show the lungs (at least half their largest cross-section)."
        )
    per_scan = model.card.recorded_metrics.held_out_per_scan if model is not None else None
    if per_scan and per_scan.auc is not None:
        text += (
            f" On the model's {per_scan.n} held-out scans it ranks COVID-19 above Normal with ROC AUC "
            f"{per_scan.auc:.2f}; it is a ranking score, not a calibrated probability."
        )
    threshold = model.card.thresholds.get("scan") if model is not None else None
    if threshold is not None:
        text += f" Its operating threshold, fitted on the dev patients' scans, is {threshold:.0%}."
    return text


def _read(files: list[tuple[str, bytes]], series_uid: str | None):
    return read_ct_upload(files, series_uid)


try:
    if files:
        key = digest(
            b"".join(name.encode("utf-8", "replace") + b"\0" + digest(data).encode() for name, data in sorted(files))
        )
        series = memo(("ct-series", key), list_ct_upload_series, files)
        uid = None
        if len(series) > 1:
            by_label = {
                f"{s.description or 'Series'} · {s.n_slices} slices · …{s.series_uid[-8:]}": s.series_uid
                for s in series
            }
            chosen = st.selectbox("These files hold several series: choose one", list(by_label), key="ct_series")
            uid = by_label[chosen]
        key = f"{key}-{uid}"  # one volume per chosen series
        volume = memo(("ct-volume", key), _read, files, uid)
    else:
        key = f"demo-{demo_label}"
        volume = memo(("ct-volume", key), demo_ct, demo_label)
except DashboardError as e:
    st.error(str(e))
    st.stop()

for warning in volume.warnings:
    st.warning(warning)
z, y, x = volume.hu.shape
dz, dy, dx = volume.spacing_mm
st.caption(
    f"{volume.description or 'CT series'}: {z} x {y} x {x} voxels (z, y, x) at {dz:.2f} x {dy:.2f} x {dx:.2f} mm"
    + (f", from {volume.n_files} files" if volume.n_files else "")
)

covid3d = frame.model(covid3d_id) if covid3d_id != NONE else None
slice_model = frame.model(slice_id) if slice_id != NONE else None
want_cam = covid3d is not None and cam_mode in (CAM_UNSIGNED, CAM_SIGNED)
signed = cam_mode == CAM_SIGNED
if covid3d is None and slice_model is None:
    st.info("No CT model chosen: the viewer only.")
    analysis = None
else:
    with st.spinner("COVID3D, its 3D Grad-CAM and the slice model..."):
        try:
            analysis = memo(
                (
                    "ct-analysis",
                    key,
                    covid3d.card.version if covid3d else None,
                    slice_model.card.version if slice_model else None,
                    tuple((m.card.ood or {}).get("sha256") for m in (covid3d, slice_model) if m is not None),
                    want_cam,
                    signed,
                ),
                analyse_ct,
                volume,
                covid3d,
                slice_model,
                cam=want_cam,
                signed=signed,
            )
        except DashboardError as e:
            st.error(str(e))
            st.stop()

if analysis is not None:
    covid3d_ok = analysis.covid3d_ood is None or analysis.covid3d_ood.in_distribution
    slice_ok = analysis.slice_ood is None or analysis.slice_ood.in_distribution
    for verdict, model in ((analysis.covid3d_ood, covid3d), (analysis.slice_ood, slice_model)):
        if verdict is not None and not verdict.in_distribution:
            extra = (
                f" {verdict.flagged_share:.0%} of its slices are unlike the training slices."
                if verdict.flagged_share is not None
                else ""
            )
            st.warning(
                f"This CT is unlike the images {model.id} ({model.card.domain_words}) was trained on: its "
                f"prediction is not shown as a result. (OOD {verdict.comparison()}.){extra}",
                icon="⚠️",
            )
    m1, m2, m3 = st.columns(3)
    if analysis.covid3d_id and covid3d_ok:
        decision = "COVID+" if analysis.probability >= analysis.threshold else "COVID-"
        m1.metric(
            f"COVID3D ({analysis.covid3d_id})",
            decision,
            help=f"P(COVID+) {analysis.probability:.1%} against the threshold {analysis.threshold:.0%}. "
            f"{covid3d.card.domain_words if covid3d else ''}.",
        )
        m2.metric(
            "P(COVID+) · score s",
            f"{analysis.probability:.1%} · {analysis.score:+.2f}",
            help="s is COVID3D's logit: higher means more COVID-like (seed 003's s(t)). P(COVID+) = "
            "sigmoid(s / T) with "
            + (
                f"T = {covid3d.card.temperature:.2f}, fitted on the model's dev split: a calibrated probability."
                if covid3d is not None and covid3d.card.temperature != 1.0
                else "T = 1: the model's raw output, not calibrated."
            ),
        )
    elif analysis.covid3d_id:
        m1.metric(f"COVID3D ({analysis.covid3d_id})", "No result", help="The CT is unlike its training data.")
    if analysis.slice_model_id and slice_ok:
        m3.metric(
            f"Slice model ({analysis.slice_model_id})",
            f"{analysis.patient_score:.1%}",
            help=_patient_score_help(slice_model, analysis.slices_read),
        )
    elif analysis.slice_model_id:
        m3.metric(f"Slice model ({analysis.slice_model_id})", "No result", help="The CT is unlike its training data.")
    notes = []
    for verdict, model in ((analysis.covid3d_ood, covid3d), (analysis.slice_ood, slice_model)):
        if model is not None:
            like = "not checked" if verdict is None else ("yes" if verdict.in_distribution else "NO")
            notes.append(f"{model.id}: {model.card.domain_words}; like its training data: {like}")
    st.caption(" · ".join(notes))
    if not (covid3d_ok and slice_ok):
        with st.expander("Outputs of the models this CT is unlike the training data of (not results)"):
            if not covid3d_ok:
                st.write(
                    f"{analysis.covid3d_id}: P(COVID+) {analysis.probability:.1%}, score s {analysis.score:+.2f} "
                    f"({analysis.covid3d_ood.headline()})"
                )
            if not slice_ok:
                st.write(
                    f"{analysis.slice_model_id}: patient score {analysis.patient_score:.1%} "
                    f"({analysis.slice_ood.headline()})"
                )

left, right = st.columns([3, 2])
with left:
    c1, c2 = st.columns(2)
    plane = c1.radio("Plane", PLANES, horizontal=True, key="ct_plane")
    presets = dict(WINDOW_PRESETS)
    if volume.window:
        presets[FILE_WINDOW] = volume.window
    preset = c2.selectbox("Window", list(presets), key="ct_window")
    count = n_slices(volume.hu.shape, plane)
    index = st.slider(f"{plane} slice", 1, count, (count + 1) // 2, key=f"ct_slice_{plane}") - 1
    center, width = presets[preset]
    gray = window_hu(take_slice(volume.hu, plane, index), center, width)
    cam = analysis.cam if analysis is not None else None
    slice_note = ""
    slice_map = None
    if cam_mode == CAM_SLICE and slice_model is not None and analysis is not None:
        if plane != "Axial":
            slice_note = "The slice model's map is drawn on axial slices only. "
        elif not analysis.slices_read[index]:
            slice_note = f"{slice_model.id} does not read this slice (too little lung): no map. "
        else:
            slice_map = memo(
                ("ct-slice-cam", key, slice_model.card.version, index), slice_cam, volume, slice_model, index
            )
            slice_note = f"Grad-CAM of {slice_model.id} for COVID-19 on this slice. " + (
                ""
                if slice_ok
                else "This CT is unlike its training data: the map shows where it looked, not a finding. "
            )
    if slice_map is not None:
        rgb = render_overlay(gray, slice_map, "Jet", opacity)
    elif cam is None:
        rgb = render_overlay(gray, None)
    elif signed:
        rgb = signed_overlay(gray, take_slice(cam, plane, index), opacity)
    else:
        rgb = render_overlay(gray, take_slice(cam, plane, index), "Jet", opacity)
    fig = image_figure(
        rgb,
        None if (cam is None and slice_map is None) or (signed and slice_map is None) else "Jet",
        "Grad-CAM",
        height=520,
        pixel_mm=pixel_size_mm(volume.spacing_mm, plane),
    )
    st.plotly_chart(fig, config=IMAGE_CONFIG, key="ct_viewer")
    st.caption(
        f"{plane} slice {index + 1} of {count}, window {preset}; physical aspect kept. "
        + slice_note
        + ("Red: evidence for COVID+ (H > 0); blue: against (H < 0). " if cam is not None and signed else "")
        + (
            f"This CT is unlike {analysis.covid3d_id}'s training data: the map shows where it looked, not a finding. "
            if cam is not None and not covid3d_ok
            else ""
        )
        + "Scroll to zoom, drag to pan."
    )

mip = chart = None
with right:
    if cam is not None:
        backdrop = mean_projection(window_hu(volume.hu, *LUNG_WINDOW), plane)
        projection = map_projection(cam, plane, signed)
        if signed:
            mip = signed_overlay(backdrop, projection, opacity)
        else:
            mip = render_overlay(backdrop, projection, "Jet", opacity)
        st.markdown(f"**Maximum-intensity projection of the map** ({plane.lower()})")
        st.plotly_chart(
            image_figure(mip, None, "", height=300, pixel_mm=pixel_size_mm(volume.spacing_mm, plane)),
            config=IMAGE_CONFIG,
            key="ct_mip",
        )
    if analysis is not None and analysis.slice_model_id:
        probs = analysis.slice_probabilities
        read = analysis.slices_read
        chart = go.Figure(
            go.Scatter(
                x=np.arange(1, len(probs) + 1),
                y=probs,
                mode="lines+markers",
                marker=dict(size=6, color=np.where(read, "#1f77b4", "#b0b0b0")),
                line=dict(color="#9ab8d6"),
                customdata=np.where(read, "read", "not read: too little lung"),
                hovertemplate="slice %{x}: %{y:.1%} (%{customdata})<extra></extra>",
                showlegend=False,
            )
        )
        if not read.all():
            first, last = int(np.argmax(read)), len(read) - int(np.argmax(read[::-1])) - 1
            chart.add_vrect(
                x0=first + 0.5,
                x1=last + 1.5,
                fillcolor="#1f77b4",
                opacity=0.06,
                line_width=0,
                annotation_text="slices read",
                annotation_position="inside top left",
            )
        chart.add_hline(y=0.5, line_dash="dot", annotation_text="0.5", annotation_position="top left")
        if plane == "Axial":
            chart.add_vline(x=index + 1, line_color="red", annotation_text="shown", annotation_position="top")
        chart.update_layout(
            height=260,
            margin=dict(l=10, r=10, t=30, b=40),
            title=f"P(COVID-19) per axial slice ({analysis.slice_model_id})"
            + ("" if slice_ok else ": not a result, the CT is unlike its training data"),
            xaxis_title="axial slice (1 = most inferior)",
            yaxis_title="P(COVID-19)",
            yaxis_range=[0, 1],
        )
        st.plotly_chart(chart, key="ct_slice_chart")

include_ids = (
    bool(files)
    and is_dicom_series(volume)
    and st.checkbox(
        IDENTIFIERS_LABEL,
        value=False,
        key="ct_report_ids",
        help="Off: the report names the case by a pseudonym only. On: the series' patient, study and instance "
        "identifiers are added in a marked box.",
    )
)
pseudonym = ct_pseudonym(key, demo_label if not files else None)
# Built only when clicked (on Streamlit's download thread), from what this run computed.
report_download(
    functools.partial(
        ct_case_report,
        pseudonym=pseudonym,
        volume=volume,
        slice_rgb=rgb,
        slice_caption=f"{plane} slice {index + 1} of {count}, window {preset}"
        + (f"; {cam_mode}" if cam is not None or slice_map is not None else ""),
        pixel_mm=pixel_size_mm(volume.spacing_mm, plane),
        mip_rgb=mip,
        mip_caption=f"Maximum-intensity projection of the map ({plane.lower()})",
        analysis=analysis,
        covid3d_calibrated=covid3d is not None and covid3d.card.temperature != 1.0,
        slice_chart=chart,
        identifiers=functools.partial(ct_identifier_rows, files, volume.series_uid) if include_ids else None,
    ),
    key="ct_report",
    file_name=report_filename_for(pseudonym),
)
if files and is_dicom_series(volume) and (covid3d is not None or slice_model is not None):
    pacs.send_results(
        f"ct_{key[:12]}",
        functools.partial(ct_results, files, covid3d, slice_model, series_uid=volume.series_uid, opacity=opacity),
    )
