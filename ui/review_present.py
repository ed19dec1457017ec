"""The presenter view's images and model views (the Case review page's ``present``): a study
with the Grad-CAM on it (the X-ray model's 2D map, COVID3D's 3D map on the CT slice shown), the
prior next to the current in one figure with linked zoom, the patient's s(t) curve when they
have CTs, and a strip of the most similar past patients.

Everything a case change needs is read from the library or memoised per session (images,
volumes, maps, the curve, the search), so going back to a case costs no model run; the search
embeddings and the trajectories' scores come from the library's warm-up (:mod:`ui.warmup`), and
a presenter's screen never waits for them: the strip says in one line when they are missing.

What the room must not see before the reveal stays hidden: the s(t) curve is a model output,
the similar patients' diagnoses give the case's away, and the end of the stay on the curve is
the outcome.
"""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from core.ct.preprocess import LUNG_WINDOW, prepare_volume, window_hu
from core.ct.views import pixel_size_mm, take_slice
from core.errors import DashboardError
from core.explain.figures import IMAGE_CONFIG, image_figure, side_by_side_figure
from core.explain.gradcam3d import covid3d_with_cam, resize_cam
from core.explain.overlay import display_shape, downsample_for_display, render_overlay, resize_unit
from core.inference import xray_analysis
from core.library.records import Patient, Study
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel, ModelRegistry
from core.review.meetings import MeetingCase
from core.search.embeddings import REFERENCE_MODEL, embedding_version, read_stored_xray
from core.search.similar import UNLABELLED, SearchResults, find_similar
from core.text import describe_outcome
from core.trajectory.curves import Trajectory, patient_trajectory
from core.trajectory.figures import trajectory_figure
from core.trajectory.scores import CT_SCORE, decision_threshold, read_stored_ct, score_name, score_version
from core.types import CtVolume
from ui import resources
from ui.review import HIDDEN, compared_model_id, study_label
from ui.search import library_index
from ui.session import memo

#: How strongly a Grad-CAM is blended over the image (as on the X-ray page's default).
CAM_OPACITY = 0.45
#: Patients in the similar-patients strip.
STRIP_SIZE = 5
#: Type on the presenter's charts, large enough for the back of a room, in the page's text colour.
CHART_FONT = 18
TEXT_COLOUR = "#31333F"


# -- images -------------------------------------------------------------------------------------


def _xray_unit(library: CaseLibrary, image_id: int) -> np.ndarray:
    """A stored radiograph at its own window, downsampled for display ((H, W) in [0, 1])."""
    image = memo(("review-xray", image_id), read_stored_xray, library, image_id)
    return downsample_for_display(image.windowed())


def _xray_cam(library: CaseLibrary, image_id: int, model: LoadedModel) -> np.ndarray:
    """The Grad-CAM of ``model`` for the class it predicts, at the display size ((H, W) in [0, 1])."""
    image = memo(("review-xray", image_id), read_stored_xray, library, image_id)
    analysis = memo(("review-cam", image_id, model.id, model.card.version), xray_analysis, model, image, None)
    return analysis.explanation(display_shape(image.shape)).values


def _volume(library: CaseLibrary, image_id: int) -> CtVolume:
    return memo(("review-ct", image_id), read_stored_ct, library, image_id)


def _covid3d_map(volume: CtVolume, model: LoadedModel) -> np.ndarray:
    """COVID3D's 3D Grad-CAM (for COVID-19, in [0, 1]) over the volume's own (z, y, x) grid."""
    _, grid = covid3d_with_cam(model, prepare_volume(volume, model.card.input))
    return resize_cam(grid, volume.hu.shape)


def ct_map(library: CaseLibrary, image_id: int, model: LoadedModel) -> np.ndarray:
    """COVID3D's 3D Grad-CAM of a stored CT series, once per session, series and model version:
    moving the slice slider draws from the stored map. The map alone: the OOD check of the CT
    page's analysis would double a case change's wait, and the model's read at the reveal (its
    probability, threshold and OOD verdict) says whether the CT is like its training data."""
    return memo(
        ("review-ct-cam", image_id, model.id, model.card.version),
        _covid3d_map,
        _volume(library, image_id),
        model,
    )


def _cam_model(registry: ModelRegistry, study: Study, cam_model: str | None) -> LoadedModel | None:
    """The model whose Grad-CAM is drawn on ``study``: ``cam_model`` when it draws one there
    (:func:`cam_available`), else None."""
    if cam_model is None or not cam_available(registry, study, cam_model):
        return None
    return resources.model(cam_model)


def cam_available(registry: ModelRegistry, study: Study, model_id: str | None) -> bool:
    """Whether the presenter can draw a Grad-CAM on ``study``: an X-ray model for an X-ray, a
    whole-volume model (COVID3D, its 3D map) for a CT series."""
    if model_id is None or not study.images:
        return False
    kind = registry.card(model_id).input_kind
    return (study.modality == "X-ray" and kind == "xray") or (
        study.images[0].kind == "ct-series" and kind == "ct-volume"
    )


def _xray_rgb(
    library: CaseLibrary, image_id: int, model: LoadedModel | None, shape: tuple[int, int] | None
) -> np.ndarray:
    """A radiograph (with ``model``'s Grad-CAM unless None) as RGB, resized to ``shape`` if given."""
    unit = _xray_unit(library, image_id)
    heat = _xray_cam(library, image_id, model) if model is not None else None
    if shape is not None:
        unit = resize_unit(unit, shape)
        heat = resize_unit(heat, shape) if heat is not None else None
    return render_overlay(unit, heat, "Jet", CAM_OPACITY)


def _ct_rgb(
    library: CaseLibrary, image_id: int, index: int, model: LoadedModel | None, shape: tuple[int, int] | None
) -> np.ndarray:
    """Axial slice ``index`` of a stored series in the lung window (with COVID3D's 3D Grad-CAM
    on it unless ``model`` is None), resized to ``shape`` if given."""
    volume = _volume(library, image_id)
    gray = np.asarray(window_hu(take_slice(volume.hu, "Axial", index), *LUNG_WINDOW), dtype=np.float32)
    heat = take_slice(ct_map(library, image_id, model), "Axial", index) if model is not None else None
    if shape is not None:
        gray = resize_unit(gray, shape)
        heat = resize_unit(np.asarray(heat, dtype=np.float32), shape) if heat is not None else None
    return render_overlay(gray, heat, "Jet", CAM_OPACITY)


def _cam_words(model: LoadedModel, modality: str) -> str:
    if modality == "X-ray":
        return f"Grad-CAM of {model.id} for the class it predicts (in Model outputs); red: where it looked most."
    return f"3D Grad-CAM of {model.id} for COVID-19 on the slice shown; red: where it looked most."


def _ct_slider(key: str, count: int, controls: DeltaGenerator | None) -> int:
    """The axial slice chosen (0-based), middle first; the slider goes in ``controls`` (default:
    where the figure goes)."""
    return (controls or st).slider("Axial slice", 1, count, (count + 1) // 2, key=key) - 1


def show_single(
    library: CaseLibrary,
    registry: ModelRegistry,
    study: Study,
    *,
    cam_model: str | None,
    height: int,
    controls: DeltaGenerator | None = None,
) -> None:
    """One study as the presenter shows it: an X-ray or a CT slice viewer (its axial slider in
    ``controls``, default above the image), with the Grad-CAM of ``cam_model`` unless None; a
    plain line when it cannot be read."""
    st.markdown(f"**{study_label(study)}**")
    if not study.images:
        st.info("This study has no stored image.")
        return
    image = study.images[0]
    try:
        model = _cam_model(registry, study, cam_model)
        if image.kind == "ct-series":
            count = int(_volume(library, image.id).hu.shape[0])
            index = _ct_slider(f"review_slice_{image.id}", count, controls)
            rgb = _ct_rgb(library, image.id, index, model, None)
            pixel_mm = pixel_size_mm(_volume(library, image.id).spacing_mm, "Axial")
            caption = f"Axial slice {index + 1} of {count}, lung window."
        else:
            rgb = _xray_rgb(library, image.id, model if study.modality == "X-ray" else None, None)
            pixel_mm = (1.0, 1.0)
            caption = ""
    except DashboardError as e:
        st.error(str(e))
        return
    if model is not None:
        caption = _cam_words(model, study.modality) + " " + caption
    fig = image_figure(rgb, "Jet" if model is not None else None, "Grad-CAM", height=height, pixel_mm=pixel_mm)
    st.plotly_chart(fig, config=IMAGE_CONFIG, key=f"review_img_{image.id}")
    if caption.strip():
        st.caption(caption.strip())


def show_pair(
    library: CaseLibrary,
    registry: ModelRegistry,
    prior: Study,
    study: Study,
    *,
    cam_model: str | None,
    height: int,
    controls: DeltaGenerator | None = None,
) -> None:
    """The prior and the current study in one figure with linked zoom (zoom or pan one, the
    other follows), both with the Grad-CAM of ``cam_model`` unless None. The prior is resized to
    the current's grid; for CTs one slider moves both to the same position (the same fraction of
    the way through each series)."""
    if not (prior.images and study.images) or prior.images[0].kind != study.images[0].kind:
        show_single(library, registry, study, cam_model=cam_model, height=height, controls=controls)
        return
    before, now = prior.images[0], study.images[0]
    try:
        model = _cam_model(registry, study, cam_model)
        if now.kind == "ct-series":
            count = int(_volume(library, now.id).hu.shape[0])
            prior_count = int(_volume(library, before.id).hu.shape[0])
            index = _ct_slider(f"review_slice_pair_{now.id}", count, controls)
            prior_index = round(index / max(count - 1, 1) * (prior_count - 1))
            right = _ct_rgb(library, now.id, index, model, None)
            left = _ct_rgb(library, before.id, prior_index, model, right.shape[:2])
            pixel_mm = pixel_size_mm(_volume(library, now.id).spacing_mm, "Axial")
            caption = (
                f"Axial slice {prior_index + 1} of {prior_count} (prior) and {index + 1} of {count} (current): "
                "the same position in each series, lung window."
            )
        else:
            right = _xray_rgb(library, now.id, model, None)
            left = _xray_rgb(library, before.id, model, right.shape[:2])
            pixel_mm = (1.0, 1.0)
            caption = "The prior is resized to the current's grid."
    except DashboardError as e:
        st.error(str(e))
        return
    fig = side_by_side_figure(
        left, right, (f"Prior: {study_label(prior)}", f"Current: {study_label(study)}"), height, pixel_mm
    )
    fig.update_annotations(font=dict(size=CHART_FONT + 4, color=TEXT_COLOUR))
    fig.update_layout(margin=dict(l=0, r=0, t=44, b=0))
    st.plotly_chart(fig, config=IMAGE_CONFIG, key=f"review_pair_{before.id}_{now.id}")
    words = _cam_words(model, study.modality) + " " if model is not None else ""
    st.caption(f"{words}{caption} Scroll to zoom, drag to pan: both follow; double-click to reset.")


# -- s(t) ---------------------------------------------------------------------------------------


def _ct_volume_model(registry: ModelRegistry, patient: Patient) -> str | None:
    """The whole-volume CT model (COVID3D) whose s(t) the presenter draws, None if none."""
    ct = next((s for s in patient.studies if s.modality == "CT"), None)
    model_id = compared_model_id(registry, ct, patient.summary.source) if ct is not None else None
    if model_id is None or registry.card(model_id).input_kind != "ct-volume":
        return None
    return model_id


def has_ct_series(patient: Patient) -> bool:
    """Whether the patient has a CT series, so an s(t) curve to show."""
    return any(s.modality == "CT" and any(i.kind == "ct-series" for i in s.images) for s in patient.studies)


def trajectory_of(library: CaseLibrary, patient: Patient, model: LoadedModel) -> Trajectory:
    """The patient's s(t) from the library's stored scores (scans not scored yet are scored and
    stored), once per session and model version."""
    return memo(
        ("review-traj", library.location, patient.summary.pseudonym, model.id, score_version(model)),
        patient_trajectory,
        library,
        patient.summary.pseudonym,
        model,
    )


def st_curve(library: CaseLibrary, registry: ModelRegistry, patient: Patient, case: MeetingCase, study: Study) -> None:
    """The patient's s(t) when they have CT series: hidden while the case hides its model outputs
    and is not revealed; the end of the stay only once the outcome may be seen."""
    if not has_ct_series(patient):
        return
    if "model outputs" in case.hidden_now:
        st.markdown(f"**s(t) curve**: {HIDDEN}")
        return
    model_id = _ct_volume_model(registry, patient)
    if model_id is None:
        st.markdown("**s(t) curve**: no COVID3D model is registered to score the CTs.")
        return
    try:
        model = resources.model(model_id)
        if score_name(model) != CT_SCORE:
            return
        trajectory = trajectory_of(library, patient, model)
    except DashboardError as e:
        st.markdown(f"**s(t) curve**: none ({e})")
        return
    points = trajectory.points
    if not points:
        st.markdown("**s(t) curve**: no dated CT to score.")
        return
    summary = trajectory.patient
    show_end = "outcome" not in case.hidden_now and trajectory.axis == "admission"
    p_threshold = float(model.card.thresholds.get("covid", 0.5))
    fig = trajectory_figure(
        [p.day for p in points],
        [p.value for p in points],
        [p.study_id for p in points],
        [f"day {p.day:g}: s = {p.value:.2f}, P(COVID+) = {p.probability:.0%}" for p in points],
        y_title="s(t)",
        threshold=decision_threshold(model),
        threshold_label=f"threshold P = {p_threshold:.0%}",
        end_day=summary.length_of_stay_days if show_end else None,
        end_label=describe_outcome(summary, short=True),
        x_title=f"days since {'admission' if trajectory.axis == 'admission' else 'symptom onset'}",
        selected=study.id if study.modality == "CT" else None,
    )
    fig.update_layout(height=240, font=dict(size=CHART_FONT), margin=dict(l=10, r=10, t=10, b=10))
    # The page's chart theme sets its own small tick and label type: set it where it is read.
    fig.update_xaxes(tickfont_size=CHART_FONT - 2, title_font_size=CHART_FONT)
    fig.update_yaxes(tickfont_size=CHART_FONT - 2, title_font_size=CHART_FONT)
    fig.update_annotations(font_size=CHART_FONT - 2)
    st.markdown(f"**s(t) curve** ({model.id})")
    st.plotly_chart(fig, config={"displaylogo": False}, key=f"review_st_{case.id}")
    st.caption(
        "COVID3D's score of each CT (higher: more COVID-like); dashed: its decision threshold"
        + (f" (s = {decision_threshold(model):.2f})" if p_threshold != 0.5 else " (s = 0)")
        + ("; ringed: the CT shown" if study.modality == "CT" else "")
        + ("; dotted: the end of the stay." if show_end else ".")
    )


# -- similar past patients ----------------------------------------------------------------------


def _query_xray(patient: Patient, study: Study) -> tuple[Study, int] | None:
    """The X-ray the strip searches with: the study shown, else the patient's latest X-ray up to
    it (the latest at all when none came before); None when the patient has no X-ray."""

    def xray_id(s: Study) -> int | None:
        return next((i.id for i in s.images if i.kind == "xray"), None)

    if xray_id(study) is not None:
        return study, xray_id(study)  # type: ignore[return-value]
    xrays = [s for s in patient.studies if xray_id(s) is not None]
    if not xrays:
        return None
    upto = [s for s in xrays if s.day is not None and study.day is not None and s.day <= study.day]
    chosen = (upto or xrays)[-1]
    return chosen, xray_id(chosen)  # type: ignore[return-value]


def _search(library: CaseLibrary, model: LoadedModel, image_id: int, index) -> SearchResults:  # noqa: ANN001
    return find_similar(library, model, case_image_id=image_id, k=STRIP_SIZE, index=index)


def similar_strip(
    library: CaseLibrary, registry: ModelRegistry, patient: Patient, case: MeetingCase, study: Study
) -> None:
    """A row of the most similar past patients (the patient itself left out) by the search
    embedding of the X-ray shown, each with a thumbnail of the image that matched and its
    pseudonym; their diagnoses only when the case's diagnosis may be seen. When the library's
    search embeddings are not ready, one line says so (nothing is computed here)."""
    query = _query_xray(patient, study)
    if query is None:
        return
    query_study, image_id = query
    title = "Similar past patients"
    searched = "the X-ray shown" if query_study.id == study.id else f"the {study_label(query_study)}"
    if REFERENCE_MODEL not in registry.classifier_ids("xray"):
        st.markdown(f"**{title}**: no search model ({REFERENCE_MODEL}) is registered.")
        return
    try:
        model = resources.model(REFERENCE_MODEL)
        version = embedding_version(model)
        if library.count_embeddings(model.id, version) == 0:
            st.markdown(f"**{title}**: the library's search is not prepared yet (Home shows its preparation).")
            return
        index = library_index(library, model)
        if index.vector(image_id) is None:
            st.markdown(f"**{title}**: this X-ray is not in the search yet (Home shows the library's preparation).")
            return
        results = memo(
            ("review-similar", library.location, image_id, version, len(index)),
            _search,
            library,
            model,
            image_id,
            index,
        )
    except DashboardError as e:
        st.markdown(f"**{title}**: none ({e})")
        return
    if not results.results:
        st.markdown(f"**{title}**: no other patient in the search.")
        return
    hide_labels = "diagnosis" in case.hidden_now
    st.markdown(f"**{title}**" + (f": diagnoses {HIDDEN}" if hide_labels else ""))
    cols = st.container(key="review_strip").columns(STRIP_SIZE)  # the key sizes its type (ui.review)
    for col, result in zip(cols, results.results, strict=False):
        with col:
            thumb = library.thumbnail(result.matched_image_id)
            if thumb:
                st.image(thumb, width="stretch")
            label = "" if hide_labels else f"  \n{result.patient.summary.label or UNLABELLED}"
            st.markdown(f"**{result.pseudonym}**{label}")
    st.caption(f"By {model.id}'s embedding of {searched} (cosine similarity); the patient shown is left out.")
