"""The Survival and prognosis page on the small demo library with the tiny trained models of
tests/survival_helpers.py: a library patient's CNN-LSTM probability and Grad-CAM per X-ray, the
prognosis from CT, uploads read in the order of their days, and the Kaplan-Meier tab on a library
too small for a curve. What the page shows is checked against the models called directly."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.testing.v1 import AppTest

from core.library.store import open_library
from core.models.registry import ModelRegistry
from core.survival.cohort import library_patients
from core.survival.predict import predict_prognosis, predict_survival
from core.text import percent
from tests.helpers import ROOT
from tests.survival_helpers import PROGNOSIS_IDS, SURVIVAL_ID, survival_weights  # noqa: F401

PAGE = str(ROOT / "pages" / "survival.py")
UPLOADS = "My uploads (this session)"
P_SURVIVAL = "P(survival), CNN-LSTM"


@pytest.fixture(scope="module")
def models(survival_weights: Path) -> dict:  # noqa: F811
    registry = ModelRegistry(survival_weights, device=torch.device("cpu"))
    return {"survival": registry.load(SURVIVAL_ID), **{s: registry.load(PROGNOSIS_IDS[s]) for s in (1, 2)}}


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, survival_weights: Path, library_copy: Path) -> AppTest:  # noqa: F811
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(survival_weights))
    return AppTest.from_file(PAGE, default_timeout=120)


def image_captions(at: AppTest) -> list[str]:
    """Captions of the page's images (the Grad-CAM strip): "day N" each."""
    return [c for image in at.get("image") for c in image.captions if c.startswith("day ")]


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, [m.label for m in at.metric]
    return values[0]


def pseudonym_of(at: AppTest) -> str:
    return at.selectbox(key="surv_patient").value.split(" · ")[0]


def risk_group(model, probability: float) -> str:  # noqa: ANN001 - LoadedModel
    """How the page names a prognosis: high risk from the card's operating threshold."""
    return "high risk" if probability >= model.card.thresholds["high risk"] else "low risk"


def check_patient(at: AppTest, library_copy: Path, models: dict) -> None:
    """The Patient tab shows the CNN-LSTM over the chosen patient's X-rays (time order, the
    card's maximum) with one Grad-CAM per X-ray, and the prognosis from the chosen CT."""
    pseudonym = pseudonym_of(at)
    patient = library_patients(open_library(library_copy, create=False), [pseudonym])[0]
    model = models["survival"]
    xrays = patient.xrays()[: model.card.training["config"]["max_xrays"]]
    assert xrays
    assert image_captions(at) == [f"day {x.day:g}" for x in xrays]
    pred = predict_survival(model, [x.load() for x in xrays], gradcam=False)
    assert metric(at, P_SURVIVAL) == percent(pred.probability)
    assert metric(at, "Risk of death group") == (
        "High risk" if pred.death_probability >= model.card.thresholds["death"] else "Low risk"
    )
    # The threshold stands with the group.
    captions = [c.value for c in at.caption]
    assert f"High risk when P(death) ≥ {percent(model.card.thresholds['death'])}" in " ".join(captions)
    assert any(h.value == pseudonym for h in at.subheader)
    cts = patient.cts()
    if len(cts) >= 2:  # the page starts at the second CT: 1 scan, and 2 with the prior
        at_ct = [f"CT of day {c.day:g}" for c in cts].index(at.selectbox(key="surv_ct").value)
        volumes = [c.load() for c in cts[max(at_ct - 1, 0) : at_ct + 1]]
        one = predict_prognosis(models[1], volumes[-1:])
        assert metric(at, "1 scan") == f"{percent(one.probability)} · {risk_group(models[1], one.probability)}"
        assert f"High risk from {percent(models[1].card.thresholds['high risk'])}" in [c.value for c in at.caption]
        if at_ct >= 1:
            two = predict_prognosis(models[2], volumes)
            assert metric(at, "2 scans (prior + this)") == (
                f"{percent(two.probability)} · {risk_group(models[2], two.probability)}"
            )


def test_a_library_patient_gets_the_cnn_lstm_and_a_grad_cam_per_x_ray(
    app: AppTest, library_copy: Path, models: dict
) -> None:
    app.run()
    assert not app.exception, app.exception
    assert [t.label for t in app.tabs] == ["Patient", "Kaplan-Meier risk groups"]
    first = app.selectbox(key="surv_patient").options[0]
    assert " · COVID-19 · " in first  # COVID-19 patients first
    check_patient(app, library_copy, models)


def test_choosing_another_patient_shows_that_patients_series(app: AppTest, library_copy: Path, models: dict) -> None:
    app.run()
    before, before_captions = pseudonym_of(app), image_captions(app)
    options = app.selectbox(key="surv_patient").options
    # Another patient with X-rays and several CTs ("· 4 X-rays, 3 CTs"), so both blocks change.
    counts = {o: [int(n) for n in re.findall(r"(\d+) (?:X-rays?|CTs?)", o)] for o in options[1:]}
    other = next(o for o, (n_xray, n_ct) in counts.items() if n_xray >= 1 and n_ct >= 2)
    app.selectbox(key="surv_patient").set_value(other).run()
    assert not app.exception, app.exception
    assert pseudonym_of(app) != before
    assert image_captions(app) != before_captions  # a different series of days, so the switch shows
    check_patient(app, library_copy, models)
    # The first CT as the follow-up: the 1-scan model only, and the page says why.
    cts = app.selectbox(key="surv_ct").options
    assert len(cts) >= 2 and app.selectbox(key="surv_ct").value == cts[1]
    app.selectbox(key="surv_ct").set_value(cts[0]).run()
    assert not app.exception, app.exception
    assert any("The 2-scan model needs a prior CT" in c.value for c in app.caption)
    assert not [m for m in app.metric if m.label == "2 scans (prior + this)"]
    check_patient(app, library_copy, models)


def km_tab(at: AppTest):  # noqa: ANN201
    return next(t for t in at.tabs if t.label == "Kaplan-Meier risk groups")


@pytest.mark.parametrize("endpoint", ["Time to discharge (prognosis)", "Time to death (survival)"])
def test_kaplan_meier_tab_on_six_patients_says_there_are_too_few(app: AppTest, endpoint: str) -> None:
    app.run()
    app.radio(key="surv_endpoint").set_value(endpoint).run()
    assert not app.exception, app.exception
    tab = km_tab(app)
    assert not tab.get("plotly_chart")  # no curve from one or two patients
    messages = [i.value for i in tab.info]
    assert any("a Kaplan-Meier analysis needs at least" in m for m in messages), messages
    # Every grouping on offer can be chosen without breaking the page.
    for label in app.selectbox(key="surv_group_by").options:
        app.selectbox(key="surv_group_by").set_value(label).run()
        assert not app.exception, (label, app.exception)


@pytest.mark.parametrize("endpoint", ["Time to discharge (prognosis)", "Time to death (survival)"])
def test_kaplan_meier_tab_on_six_patients_shows_no_error(app: AppTest, endpoint: str) -> None:
    """Too few patients is information, not an error: the clinical-factors column too."""
    app.run()
    app.radio(key="surv_endpoint").set_value(endpoint).run()
    assert not app.exception, app.exception
    assert [e.value for e in km_tab(app).error] == []


def demo_series() -> tuple[list[str], list[np.ndarray]]:
    """The demo follow-up X-rays' names and windowed images, in the order of their days."""
    from core.demo.images import demo_follow_up_xrays
    from core.io.images import read_xray

    demo = sorted(demo_follow_up_xrays(), key=lambda item: item[1])
    return [f"day {day:g}" for _, day, _ in demo], [read_xray(data).windowed() for _, _, data in demo]


def test_uploads_are_read_in_the_order_of_their_days(app: AppTest, models: dict) -> None:
    app.run()
    app.radio(key="surv_source").set_value(UPLOADS).run()
    assert not app.exception, app.exception
    assert any(i.value == "No X-rays yet." for i in app.info)
    app.button(key="surv_demo").click().run()
    assert not app.exception, app.exception
    days, images = demo_series()
    assert image_captions(app) == days
    pred = predict_survival(models["survival"], images, gradcam=False)
    assert metric(app, P_SURVIVAL) == percent(pred.probability)
    # Moving the first X-ray to the end of the stay moves it to the end of the series.
    first = next(n for n in app.number_input if n.label.startswith("Day of ") and n.value == 0.0)
    last_day = max(float(re.match(r"day ([0-9.]+)", d)[1]) for d in days)
    first.set_value(last_day + 4).run()
    assert not app.exception, app.exception
    assert image_captions(app) == [*days[1:], f"day {last_day + 4:g}"]
    reordered = predict_survival(models["survival"], [*images[1:], images[0]], gradcam=False)
    assert metric(app, P_SURVIVAL) == percent(reordered.probability)


def test_the_demo_button_says_how_many_x_rays_it_adds(app: AppTest) -> None:
    app.run()
    app.radio(key="surv_source").set_value(UPLOADS).run()
    label = app.button(key="surv_demo").label
    app.button(key="surv_demo").click().run()
    assert f"({len(image_captions(app))} X-rays)" in label, label


def test_a_file_that_is_not_an_image_is_an_error_and_the_page_keeps_serving(app: AppTest) -> None:
    junk = np.random.default_rng(0).bytes(3000)
    app.run()
    app.radio(key="surv_source").set_value(UPLOADS).run()
    app.file_uploader(key="surv_upload").set_value([("junk.png", junk, "image/png")]).run()
    assert not app.exception, app.exception
    assert any(e.value.startswith("junk.png: ") for e in app.error)
    assert not [m for m in app.metric if m.label == P_SURVIVAL]
    app.button(key="surv_demo").click().run()  # the readable X-rays are still read
    assert not app.exception, app.exception
    assert any(e.value.startswith("junk.png: ") for e in app.error)
    assert len(image_captions(app)) == len(demo_series()[0])
    assert metric(app, P_SURVIVAL)


def test_the_same_x_ray_uploaded_twice_does_not_break_the_page(app: AppTest, chest_png: bytes) -> None:
    app.run()
    app.radio(key="surv_source").set_value(UPLOADS).run()
    files = [("admission.png", chest_png, "image/png"), ("copy-of-admission.png", chest_png, "image/png")]
    app.file_uploader(key="surv_upload").set_value(files).run()
    assert not app.exception, [e.value for e in app.exception]
    assert metric(app, P_SURVIVAL)


def test_without_survival_or_prognosis_models_the_page_still_serves(
    monkeypatch: pytest.MonkeyPatch, ct_weights: Path, library_copy: Path
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(ct_weights))  # COVID3D and the slice model only
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("No survival or prognosis model is registered" in i.value for i in at.info)
    assert not [m for m in at.metric if m.label == P_SURVIVAL]
    assert not image_captions(at)
    assert any("No 2-scan prognosis model is registered." in i.value for i in km_tab(at).info)
    assert "Model risk" not in at.selectbox(key="surv_group_by").options
    assert "Threshold on s(t)" in at.selectbox(key="surv_group_by").options  # COVID3D is there
    at.radio(key="surv_source").set_value(UPLOADS).run()
    at.button(key="surv_demo").click().run()
    assert not at.exception, at.exception
    assert any("No survival model is registered" in e.value for e in at.error)


def test_an_empty_weights_folder_still_serves(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library_copy: Path
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("No survival or prognosis model is registered" in i.value for i in at.info)
