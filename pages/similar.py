"""Similar cases: for an X-ray upload or a library case, the most similar patients by cosine
similarity of the reference model's embedding, each with the whole image series over time, the
note of each session, the outcome and the image that matched; a side-by-side compare with
linked zoom and both Grad-CAMs; and how well the search does on this library."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from core.demo.images import demo_xrays
from core.errors import DashboardError
from core.explain.figures import IMAGE_CONFIG, side_by_side_figure
from core.explain.overlay import render_overlay, resize_unit
from core.inference import analyse_xray, xray_ood
from core.io.images import read_xray
from core.labels import XRAY_LABELS
from core.library.records import OUTCOMES, PatientFilter, Study
from core.search.embeddings import REFERENCE_MODEL, check_embeddable, read_stored_xray
from core.search.similar import UNLABELLED, SearchFilter, SearchResults, find_similar
from core.text import describe_outcome, describe_study_time
from ui import frame, resources
from ui.library import library_or_stop, show_full_size
from ui.model_card import model_label
from ui.search import evaluation, index_missing, library_index, missing_embeddings
from ui.session import digest, memo, share_xrays, shared_xrays

UPLOAD, CASE = "An X-ray (upload)", "A library case"
ANY_MODALITY = "Any modality"
#: Beyond this many images without embeddings, indexing waits for a click instead of starting.
AUTO_INDEX_LIMIT = 5000
THUMBS_PER_ROW = 8

registry = frame.page("Similar cases")
library = library_or_stop()
candidates = registry.classifier_ids("xray")
if not candidates:
    st.error("No X-ray model is registered, so there is no embedding to search with.")
    st.stop()

with st.sidebar:
    st.header("Search")
    model_id = st.selectbox(
        "Embedding model",
        candidates,
        index=candidates.index(REFERENCE_MODEL) if REFERENCE_MODEL in candidates else 0,
        format_func=model_label,
        key="similar_model",
        help="Images are compared by the input of this model's last layer (L2-normalised, cosine similarity).",
    )
    k = st.slider("Patients to show", 1, 20, 5, key="similar_k")
    include_query_patient = st.checkbox(
        "Include the query patient's other studies",
        key="similar_include_query",
        help="When the query is a library case, its own patient is left out unless this is ticked. "
        "The query image itself is never returned.",
    )
    st.header("Filter results")
    labels = st.multiselect("Diagnosis", (*XRAY_LABELS, UNLABELLED), key="similar_labels")
    outcomes = st.multiselect("Outcome", OUTCOMES, key="similar_outcomes")
    modality = st.selectbox("Has a study of", (ANY_MODALITY, "X-ray", "CT"), key="similar_modality")

try:
    model = resources.model(model_id)
    check_embeddable(model)
    missing = missing_embeddings(library, model)
    if missing and (missing <= AUTO_INDEX_LIMIT or st.button(f"Compute the embeddings of {missing} images")):
        for problem in index_missing(library, model)[:20]:
            st.warning(f"Not searchable: {problem}")
    index = library_index(library, model)
except DashboardError as e:
    st.error(str(e))
    st.stop()
if not len(index):
    if not library.image_refs(("xray",)):  # an empty library (or CTs only): nothing went wrong
        st.info("The case library has no X-ray yet, so there is nothing to search: add cases on the Case library page.")
    else:
        st.error("The case library has no X-ray image with an embedding yet, so there is nothing to search.")
    st.stop()

# -- the query ------------------------------------------------------------------------------
source = st.radio("Search with", (UPLOAD, CASE), horizontal=True, key="similar_source")
query_image = None
case_image_id: int | None = None
query_title = ""
query_key: tuple[object, ...] = ()
if source == UPLOAD:
    upload = st.file_uploader(
        "Chest X-ray: PNG, JPEG, BMP, TIFF or DICOM (the X-ray triage page's images are offered too)",
        key="similar_upload",
    )
    if st.button("Use the demo X-rays (synthetic phantoms)", key="similar_demo"):
        share_xrays(demo_xrays())
    files = ([(upload.name, upload.getvalue())] if upload else []) + shared_xrays()
    if not files:
        st.info("Upload a chest X-ray, use the demo X-rays, or search with a library case.")
        st.stop()
    names = [name for name, _ in files]
    chosen = st.selectbox("Query image", names, key="similar_query_name") if len(files) > 1 else names[0]
    name, data = files[names.index(chosen) if chosen in names else 0]
    try:
        query_image = memo(("image", digest(data)), read_xray, data, name)
    except DashboardError as e:
        st.error(str(e))
        st.stop()
    query_title = name
    query_key = ("upload", digest(data))
else:
    with_xray = library.patients(PatientFilter(modality="X-ray"))
    if not with_xray:
        st.info("No patient in the library has an X-ray.")
        st.stop()
    c1, c2 = st.columns(2)
    pick = c1.selectbox("Patient", [p.pseudonym for p in with_xray], key="similar_case_patient")
    studies = [s for s in library.patient(pick).studies if any(im.kind == "xray" for im in s.images)]
    options = {f"{describe_study_time(s)} · X-ray {s.view or ''}".strip(): s for s in studies}
    study_label = c2.selectbox("Study", list(options), key="similar_case_study")
    study = options.get(study_label) or studies[0]
    case_image_id = next(im.id for im in study.images if im.kind == "xray")
    try:
        query_image = memo(("stored", library.location, case_image_id), read_stored_xray, library, case_image_id)
    except DashboardError as e:
        st.error(str(e))
        st.stop()
    query_title = f"{pick}, {describe_study_time(study).lower()}"
    query_key = ("case", library.location, case_image_id)

where = SearchFilter(
    labels=tuple(labels) or None,
    outcomes=tuple(outcomes) or None,
    modality=None if modality == ANY_MODALITY else modality,
)
try:
    results: SearchResults = find_similar(
        library,
        model,
        image=query_image if case_image_id is None else None,
        case_image_id=case_image_id,
        k=k,
        include_query_patient=include_query_patient,
        where=where,
        index=index,
    )
except DashboardError as e:
    st.error(str(e))
    st.stop()

left, right = st.columns([1, 3])
left.image(query_image.windowed(), caption=query_title, clamp=True, width=240)
with right:
    q = results.query
    if q.recognised and q.source == "upload":
        st.info(
            f"This image is in the library (same pixels): a study of patient **{q.patient_pseudonym}**. "
            "That image is never returned"
            + (
                "."
                if include_query_patient
                else ", and the patient's other studies only when asked for in the sidebar."
            )
        )
    elif q.source == "upload":
        st.caption("This image is not in the library.")
    if q.source == "upload" and not q.recognised:
        verdict = memo(("ood", *query_key, model.id, model.card.version), xray_ood, model, query_image)
        if verdict is not None and not verdict.in_distribution:
            st.warning(
                f"This image is unlike the images {model.id} ({model.card.domain_words}) was trained on, and its "
                "features are what the search compares: the patients below are not grounded similar cases.",
                icon="⚠️",
            )
    else:
        qs = library.patient(q.patient_pseudonym or "").summary
        st.caption(
            f"Query patient {qs.pseudonym}: {qs.label or UNLABELLED}, {describe_outcome(qs)}"
            + ("" if include_query_patient else " (left out of the results)")
        )
    st.markdown(
        f"**{len(results.results)}** most similar of {results.n_patients_searched} patients searched"
        + (" (filtered)" if where.active else "")
        + f" · {results.model_id} embedding, cosine similarity"
    )
    if not results.results:
        st.warning("No patient passes the filters. Clear some filters in the sidebar.")


@st.dialog("Stored image", width="large")
def open_study(study: Study, pseudonym: str) -> None:
    st.markdown(f"**{pseudonym}** · {describe_study_time(study)} · {study.modality} {study.view or ''}")
    show_full_size(library, study)
    st.write(study.note or "No note.")


# -- results --------------------------------------------------------------------------------
for rank, result in enumerate(results.results, 1):
    s = result.patient.summary
    with st.container(border=True):
        facts = [s.label or UNLABELLED, {"M": "male", "F": "female"}.get(s.sex or "", "sex unknown")]
        if s.age_years is not None:
            facts.append(f"{int(s.age_years)} years")
        facts.append(describe_outcome(s))
        st.markdown(f"#### {rank}. {s.pseudonym} · similarity {result.similarity:.3f}")
        matched = result.matched_study
        st.markdown(
            " · ".join(facts)
            + f"  \nMatched: **{describe_study_time(matched)}**, {matched.modality} {matched.view or ''}"
        )
        studies = result.patient.studies
        for start in range(0, len(studies), THUMBS_PER_ROW):
            cols = st.columns(THUMBS_PER_ROW)
            for col, study in zip(cols, studies[start : start + THUMBS_PER_ROW], strict=False):
                with col:
                    image_id = study.images[0].id if study.images else None
                    thumb = library.thumbnail(image_id) if image_id is not None else None
                    if thumb:
                        st.image(thumb, width="stretch")
                    if st.button("Open", key=f"open_{rank}_{study.id}", width="stretch"):
                        open_study(study, s.pseudonym)
                    sim = result.image_similarity.get(image_id) if image_id is not None else None
                    day = "day ?" if study.day is None else f"day {study.day:g}"
                    mark = "**matched** · " if study.id == result.matched_study_id else ""
                    st.caption(f"{mark}{day} · {study.modality}" + (f" · {sim:.3f}" if sim is not None else ""))
        with st.expander(f"Notes of the {len(studies)} sessions"):
            for study in studies:
                st.markdown(f"**{describe_study_time(study)}** · {study.modality}: {study.note or 'No note.'}")

# -- side-by-side compare -------------------------------------------------------------------
if results.results:
    st.header("Compare")
    choices: dict[str, tuple[int, str]] = {}  # label -> (image id, panel title)
    for rank, result in enumerate(results.results, 1):
        for study in result.patient.studies:
            for im in study.images:
                if im.kind == "xray":
                    tag = " (matched)" if im.id == result.matched_image_id else ""
                    day = "day ?" if study.day is None else f"day {study.day:g}"
                    label = f"{rank}. {result.pseudonym} · {day} · X-ray {study.view or ''}".strip()
                    choices[label + tag] = (im.id, f"{result.pseudonym} {day}")
    first = next(label for label in choices if label.endswith("(matched)"))
    pick = st.selectbox("Result image", list(choices), index=list(choices).index(first), key="similar_compare")
    c1, c2, c3, c4 = st.columns(4)
    level = c1.slider("Level", 0.0, 1.0, 0.5, 0.01, key="similar_level", help="Window centre on both images.")
    width = c2.slider("Width", 0.05, 1.0, 1.0, 0.01, key="similar_width", help="Window width on both images.")
    show_cam = c3.toggle("Grad-CAM", value=True, key="similar_cam")
    opacity = c4.slider("Opacity", 0.0, 1.0, 0.45, 0.05, key="similar_opacity", disabled=not show_cam)
    other_id, other_title = choices.get(pick, choices[first])
    try:
        other = memo(("stored", library.location, other_id), read_stored_xray, library, other_id)
        version = index.model_version
        q_pred, q_cam = memo(("similar-cam", *query_key, version), analyse_xray, model, query_image)
        o_pred, o_cam = memo(("similar-cam", "case", library.location, other_id, version), analyse_xray, model, other)
    except DashboardError as e:
        st.error(str(e))
        st.stop()

    def window(unit: np.ndarray) -> np.ndarray:
        """The sliders' window, on images already at their own window ([0, 1])."""
        low = level - width / 2
        return ((unit - low) / width).clip(0.0, 1.0)

    shape = query_image.shape
    left_rgb = render_overlay(window(query_image.windowed()), q_cam.values if show_cam else None, "Jet", opacity)
    right_rgb = render_overlay(
        window(resize_unit(other.windowed(), shape)),
        resize_unit(o_cam.values, shape) if show_cam else None,
        "Jet",
        opacity,
    )
    fig = side_by_side_figure(
        left_rgb,
        right_rgb,
        (
            f"Query · {q_pred.predicted_label} {q_pred.probability_of(q_pred.predicted_label):.0%}",
            f"{other_title} · {o_pred.predicted_label} {o_pred.probability_of(o_pred.predicted_label):.0%}",
        ),
    )
    st.plotly_chart(fig, config=IMAGE_CONFIG, key="similar_compare_fig")
    st.caption(
        "Scroll to zoom, drag to pan: both images move together; double-click to reset. "
        f"The result is resized to the query's {shape[1]} x {shape[0]} px. Grad-CAM of {model.id} for each "
        "image's own predicted class (jet: low blue, high red)."
    )

# -- about ----------------------------------------------------------------------------------
with st.expander("About this search"):
    st.markdown(
        f"- **Embedding**: the {index.dim} numbers that {index.model_id} feeds its last layer (seed 000, "
        "section 3.2.1), scaled to length 1; **similarity** is their cosine (1 = same direction).\n"
        f"- **Searched**: {len(index)} library X-ray images of {len(index.images_of)} patients, "
        f"model version `{index.model_version}` ({index.backend} search). Embeddings are recomputed when the weights change.\n"
        "- A patient's similarity is that of their best-matching image. The query image, and any library image "
        "with the same pixels, is never returned; the query's patient only when asked for.\n"
        "- The demo model was trained on synthetic phantoms: similar means similar to this model, not to a radiologist."
    )
    ev = evaluation(library, index, k)
    if ev.precision_by_label:
        table = pd.DataFrame(
            {
                f"Precision@{k}": ev.precision_by_label,
                "Chance": ev.chance_by_label,
                "Queries": ev.queries_by_label,
            }
        )
        st.markdown(
            f"**How well it does here** (each of {ev.n_queries} indexed images as the query, its patient left out): "
            f"the share of the {k} patients returned that have the query's diagnosis."
        )
        st.dataframe(table.style.format({f"Precision@{k}": "{:.2f}", "Chance": "{:.2f}"}), key="similar_eval")
    if ev.same_patient_hit_rate is not None:
        st.markdown(
            f"Same-patient hit rate at {k}: **{ev.same_patient_hit_rate:.0%}** of {ev.same_patient_queries} queries "
            "find another image of their own patient among the patients returned (query patient not left out)."
        )
