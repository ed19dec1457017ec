"""The Trajectories page: a patient's s(t) with its features and Grad-CAM strip, the X-ray
variant, and the cohort view with the features CSV."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT

PAGE = str(ROOT / "pages" / "trajectories.py")


@pytest.fixture(scope="module")
def mixed_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One weights folder with a tiny COVID3D, cxr-resnet18 and cxr-findings (all untrained)."""
    from tests.ct_helpers import register_tiny_ct_model
    from tests.helpers import register_tiny_findings_model, register_tiny_model

    folder = tmp_path_factory.mktemp("mixed-weights")
    register_tiny_ct_model(folder, "covid3d-tiny")
    register_tiny_model(folder, "cxr-resnet18")
    register_tiny_findings_model(folder)
    return folder


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, mixed_weights: Path, library_copy: Path) -> AppTest:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(mixed_weights))
    return AppTest.from_file(PAGE, default_timeout=180)


def strip_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if re.match(r"^day [0-9.]+ · [sP] = ", c.value)]


def test_patient_s_t_with_features_strip_and_cohort(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    app.run()
    assert not app.exception, app.exception
    pick = app.selectbox(key="traj_patient").value
    patient = lib.patient(pick)
    ct_days = [s.day for s in patient.studies if s.modality == "CT"]
    assert any(md.value.startswith(f"**{pick}**") and f"{len(ct_days)} CT scans" in md.value for md in app.markdown)
    # The chart, the per-scan table (one row per CT, in time order) and one strip image per CT.
    assert len(app.get("plotly_chart")) == 2  # the patient's s(t) and the cohort
    table = app.dataframe[0].value
    assert list(table["day"]) == sorted(ct_days)
    assert len(strip_captions(app)) == len(ct_days)
    assert [m.label for m in app.metric] == ["First", "Peak", "Day of peak", "Last", "Area under s(t)"]
    # The cohort: every patient with a CT of the chosen diagnoses, and the features CSV.
    app.multiselect(key="traj_cohort_labels").set_value([]).run()
    with_ct = [p for p in lib.patients() if p.n_ct > 0]
    assert any(md.value.startswith(f"**{len(with_ct)} patients,") for md in app.markdown)
    assert len(app.dataframe[-1].value) == len(with_ct)
    assert app.get("download_button")


def test_choosing_patient_scan_and_slice(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    app.run()
    names = app.selectbox(key="traj_patient").options
    other = names[-1]
    app.selectbox(key="traj_patient").set_value(other).run()
    assert not app.exception, app.exception
    assert any(md.value.startswith(f"**{other}**") for md in app.markdown)
    scans = app.selectbox(key="traj_scan").options
    if len(scans) > 1:
        app.selectbox(key="traj_scan").set_value(scans[-1]).run()
        assert not app.exception
        study_id = int(scans[-1].rsplit(" ", 1)[1])
        study = next(s for s in lib.patient(other).studies if s.id == study_id)
        assert any(study.note and study.note in md.value for md in app.markdown)
    app.slider(key="traj_slice").set_value(0.2).run()
    assert not app.exception


def test_x_ray_series(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    app.run()
    app.radio(key="traj_kind").set_value("X-ray: P(COVID-19)").run()
    assert not app.exception, app.exception
    pick = app.selectbox(key="traj_patient").value
    n_xray = sum(s.modality == "X-ray" for s in lib.patient(pick).studies)
    assert len(strip_captions(app)) == n_xray
    probs = app.dataframe[0].value["score"]
    assert ((probs >= 0) & (probs <= 1)).all()


def test_without_models_the_page_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, library_copy: Path) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("No COVID3D or X-ray model" in e.value for e in at.error)


def test_uploads_with_their_days(app: AppTest) -> None:
    app.run()
    app.radio(key="traj_source").set_value("My uploads (this session)").run()
    assert not app.exception
    assert any("Upload two or more CT scans" in i.value for i in app.info)
    app.button(key="traj_demo_CT").click().run()
    assert not app.exception, app.exception
    from core.demo.images import DEMO_FOLLOW_UP

    days = [float(d) for d, _ in DEMO_FOLLOW_UP]
    assert list(app.dataframe[0].value["day"]) == days  # the per-scan table, in time order
    assert [float(re.match(r"day ([0-9.]+)", c)[1]) for c in strip_captions(app)] == days
    # The uploads are drawn over the cohort as one more line.
    assert any(md.value.startswith("**") and "patients," in md.value for md in app.markdown)


def test_x_ray_uploads_include_the_triage_pages_images(app: AppTest, chest_png: bytes) -> None:
    app.session_state["shared_xrays"] = [("from-triage.png", chest_png)]
    app.run()
    app.radio(key="traj_kind").set_value("X-ray: P(COVID-19)").run()
    app.radio(key="traj_source").set_value("My uploads (this session)").run()
    assert not app.exception, app.exception
    assert app.selectbox(key="traj_scan").options == ["day 0 · from-triage.png"]


def test_x_ray_findings_per_scan_and_between_sequential_x_rays(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    app.run()
    app.radio(key="traj_kind").set_value("X-ray: P(COVID-19)").run()
    assert not app.exception, app.exception
    pick = app.selectbox(key="traj_patient").value
    n_xray = sum(s.modality == "X-ray" and s.day is not None for s in lib.patient(pick).studies)
    changes = [d.value for d in app.dataframe if "category" in d.value.columns]
    assert len(changes) == (1 if n_xray > 1 else 0)
    if changes:
        change = changes[0]
        assert len(change) == n_xray - 1  # one row per pair of sequential X-rays
        assert set(change["category"]) <= {"Worse", "Stable", "Improved"}
    # The library-wide analysis: Table 2 (3 comparisons per finding) and the box plot.
    app.button(key="traj_change_run").click().run()
    assert not app.exception, app.exception
    from core.demo.xray_phantom import FINDINGS

    table = [d for d in app.dataframe if "comparison" in d.value.columns][0].value
    assert len(table) == 3 * len(FINDINGS)
    assert any("pairs** of sequential X-rays" in md.value for md in app.markdown)


def test_days_since_symptom_onset(app: AppTest, library_copy: Path) -> None:
    from core.library.store import open_library

    lib = open_library(library_copy)
    app.run()
    app.radio(key="traj_since").set_value("symptom onset").run()
    assert not app.exception, app.exception
    pick = app.selectbox(key="traj_patient").value
    onset = sorted(s.offset_onset_days for s in lib.patient(pick).studies if s.modality == "CT")
    assert list(app.dataframe[0].value["day"]) == onset
