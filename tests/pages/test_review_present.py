"""The Case review presenter view's images and model views: COVID3D's 3D Grad-CAM on the CT
slice viewer, the prior next to the current in one figure with linked zoom, the patient's s(t)
curve (hidden with the model outputs until the reveal, the end of the stay with the outcome),
and the strip of the most similar past patients (never the patient itself; their diagnoses
hidden with the case's)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.demo.ood_probes import photograph, to_png
from core.demo.xray_phantom import generate_xray
from core.library.records import Patient, Study
from core.library.store import SqliteLibrary, open_library
from core.models.registry import ModelRegistry
from core.review.uploads import add_upload_to_meeting
from core.search.embeddings import index_library
from tests.ct_helpers import register_tiny_ct_model
from tests.helpers import ROOT, fit_phantom_reference, register_tiny_model

PAGE = str(ROOT / "pages" / "review.py")
HIDDEN = "hidden until the reveal"


@pytest.fixture(scope="module")
def review_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny untrained models: the reference X-ray model and COVID3D (in place of the tiny X-ray
    models the other Case review tests read with)."""
    folder = tmp_path_factory.mktemp("present-weights")
    register_tiny_model(folder, "cxr-resnet18")
    register_tiny_ct_model(folder, "covid3d-tiny")
    return folder


def present_one(library: SqliteLibrary, pseudonym: str, study: Study, hidden: list[str]) -> tuple[AppTest, int]:
    """A new meeting of one case (the page opens it), presented; the case's id."""
    meeting = library.create_meeting("Presenter test", "2024-03-01")
    library.add_to_meeting(meeting, pseudonym, study.id, hidden)
    (case,) = library.meeting(meeting).cases
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["present"] = "1"
    at.run()
    assert not at.exception, at.exception
    return at, case.id


def run(at: AppTest) -> AppTest:
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def viewers(at: AppTest) -> list[dict]:
    """The charts that draw images (not the s(t) curve)."""
    return [c for c in charts(at) if images(c)]


def markdown(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def images(spec: dict) -> list[str]:
    return [t["source"] for t in spec["data"] if t["type"] == "image"]


def has_colour_bar(spec: dict) -> bool:
    return any(t.get("marker", {}).get("showscale") for t in spec["data"])


def find(library: SqliteLibrary, modality: str, *, with_prior: bool) -> tuple[Patient, Study]:
    """A patient and one of their studies of ``modality``: one with an earlier study of the same
    modality (``with_prior``), or their first."""
    for summary in library.patients():
        patient = library.patient(summary.pseudonym)
        studies = [s for s in patient.studies if s.modality == modality and s.images]
        if len(studies) >= (2 if with_prior else 1):
            return patient, studies[-1] if with_prior else studies[0]
    pytest.skip(f"the test library has no patient with {'two' if with_prior else 'a'} {modality} studies")


def test_the_ct_grad_cam_toggle_draws_covid3d_s_map_on_the_slice(library: SqliteLibrary) -> None:
    patient, study = find(library, "CT", with_prior=False)
    at, _ = present_one(library, patient.pseudonym, study, [])
    (plain,) = viewers(at)
    assert not has_colour_bar(plain)
    at.toggle(key="review_cam").set_value(True)
    run(at)
    (drawn,) = viewers(at)
    assert has_colour_bar(drawn)
    assert images(drawn) != images(plain)  # the map is on the slice
    assert any("3D Grad-CAM of covid3d-tiny" in c.value for c in at.caption)
    # Another slice: drawn from the same map, the overlay still on.
    at.slider(key=f"review_slice_{study.images[0].id}").set_value(1)
    run(at)
    assert has_colour_bar(viewers(at)[0])


@pytest.mark.parametrize("modality", ["X-ray", "CT"])
def test_a_case_with_a_prior_shows_one_figure_with_two_linked_panels(library: SqliteLibrary, modality: str) -> None:
    patient, study = find(library, modality, with_prior=True)
    at, _ = present_one(library, patient.pseudonym, study, [])
    (pair,) = [c for c in charts(at) if len(images(c)) == 2]
    titles = [a["text"] for a in pair["layout"]["annotations"]]
    assert titles[0].startswith("Prior: ") and titles[1].startswith("Current: ")
    assert f"day {study.offset_admission_days:g}" in titles[1]
    # Zooming one panel zooms the other.
    assert pair["layout"]["xaxis2"]["matches"] == "x" and pair["layout"]["yaxis2"]["matches"] == "y"
    # The Grad-CAM goes on both panels.
    at.toggle(key="review_cam").set_value(True)
    run(at)
    (with_cam,) = [c for c in charts(at) if len(images(c)) == 2]
    assert all(a != b for a, b in zip(images(with_cam), images(pair), strict=True))


def test_the_s_t_curve_is_hidden_with_the_model_outputs_until_the_reveal(library: SqliteLibrary) -> None:
    patient, study = find(library, "CT", with_prior=False)
    at, case_id = present_one(library, patient.pseudonym, study, ["model outputs", "outcome"])
    assert f"**s(t) curve**: {HIDDEN}" in markdown(at)
    assert not any("threshold P = " in json.dumps(c) for c in charts(at))
    at.button(key="review_reveal").click()
    run(at)
    assert library.meeting_case(case_id).revealed
    (curve,) = [
        c for c in charts(at) if any(t["type"] == "scatter" and t.get("mode") == "lines+markers" for t in c["data"])
    ]
    n_ct = sum(s.modality == "CT" and bool(s.images) for s in patient.studies)
    assert len(curve["data"][0]["x"]) == n_ct
    texts = [a["text"] for a in curve["layout"]["annotations"]]
    assert any(t.startswith("threshold P = ") for t in texts)  # the threshold stands with the curve
    assert "**s(t) curve** (covid3d-tiny)" in markdown(at)


def test_the_end_of_the_stay_on_the_curve_waits_for_the_outcome(library: SqliteLibrary) -> None:
    patient, study = find(library, "CT", with_prior=False)
    if patient.summary.length_of_stay_days is None:
        pytest.skip("the patient's stay has no end")
    at, _ = present_one(library, patient.pseudonym, study, ["outcome"])
    (curve,) = [c for c in charts(at) if "threshold P = " in json.dumps(c)]
    assert not any(
        s.get("type") == "line" and s.get("line", {}).get("dash") == "dot" for s in curve["layout"].get("shapes", [])
    )
    at.button(key="review_reveal").click()
    run(at)
    (curve,) = [c for c in charts(at) if "threshold P = " in json.dumps(c)]
    assert any(s.get("line", {}).get("dash") == "dot" for s in curve["layout"]["shapes"])


def test_the_similar_strip_names_other_patients_and_their_diagnoses_after_the_reveal(
    library: SqliteLibrary, review_weights: Path
) -> None:
    index_library(library, ModelRegistry(review_weights).load("cxr-resnet18"))
    patient, study = find(library, "X-ray", with_prior=False)
    others = {p.pseudonym: p.label for p in library.patients() if p.pseudonym != patient.pseudonym}
    at, _ = present_one(library, patient.pseudonym, study, ["diagnosis"])
    (heading,) = [m for m in markdown(at) if m.startswith("**Similar past patients**")]
    assert HIDDEN in heading
    shown = [m.strip("*") for m in markdown(at) if m.strip("*") in others]
    assert 1 <= len(shown) <= 5
    assert patient.pseudonym not in " ".join(markdown(at)[markdown(at).index(heading) :])
    at.button(key="review_reveal").click()
    run(at)
    labelled = [m.split("  \n") for m in markdown(at) if m.startswith("**P-") and "**  \n" in m]
    assert [name.strip("*") for name, _ in labelled] == shown
    assert all(label == (others[name.strip("*")] or "not labelled") for name, label in labelled)


def test_without_the_search_embeddings_the_strip_says_so_in_one_line(library: SqliteLibrary) -> None:
    patient, study = find(library, "X-ray", with_prior=False)
    at, _ = present_one(library, patient.pseudonym, study, [])
    assert any(
        m.startswith("**Similar past patients**: the library's search is not prepared yet") for m in markdown(at)
    )


@pytest.fixture
def ood_library(point_page_at: Callable[[Path], Path], tmp_path: Path) -> SqliteLibrary:
    """The demo library's copy over one tiny X-ray model that knows its (phantom) training data."""
    weights = tmp_path / "ood-weights"
    register_tiny_model(weights, "cxr-resnet18")
    fit_phantom_reference(weights, "cxr-resnet18")
    return open_library(point_page_at(weights))


@pytest.mark.parametrize("unlike", [True, False])
def test_a_map_of_a_study_unlike_the_training_data_says_it_has_no_grounds(
    ood_library: SqliteLibrary, unlike: bool
) -> None:
    image = to_png(photograph(1)) if unlike else generate_xray("COVID-19", 0.6, 20_001, size=128).to_png()
    meeting = ood_library.create_meeting("Map check", "2024-03-01")
    add_upload_to_meeting(ood_library, meeting, [("x.png", image)], modality="X-ray", label="Normal")
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.query_params["present"] = "1"
    at.run()
    assert not any("unlike the images" in w.value for w in at.warning)  # no map drawn yet
    at.toggle(key="review_cam").set_value(True)
    run(at)
    warned = [w.value for w in at.warning if "finds this study unlike the images it was trained on" in w.value]
    assert bool(warned) is unlike
    assert any(HIDDEN in m for m in markdown(at))  # said before the reveal, with the outputs still hidden
