"""End to end: the running app in headless Chromium, as a clinician would use it.

Starts ``streamlit run app.py`` on a free loopback port with the shipped demo weights, uploads a
COVID-19 phantom through the real file chooser, and reads the predicted label off the page.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, streamlit_app
from tests.helpers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.demo_weights]


#: Patients in the demo library the server builds on its first launch (the app's default is 200).
E2E_PATIENTS = 8


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_WEIGHTS_DIR"}
    server = tmp_path_factory.mktemp("server")
    # A fresh clone's first launch, made small: no library yet, so the app builds a demo one.
    env["DASHBOARD_LIBRARY"] = str(server / "library")
    env["DASHBOARD_DEMO_PATIENTS"] = str(E2E_PATIENTS)
    with streamlit_app(env, server / "streamlit.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (see .ci/run)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        user_dir = tmp_path_factory.mktemp("chromium-profile")
        context = p.chromium.launch_persistent_context(
            str(user_dir),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


def test_a_deep_link_after_a_restart_gets_the_app_navigation(app_url, browser) -> None:
    # Runs first, on a server no session has visited yet: see ui/navigation.py.
    page = browser.new_page()
    page.goto(f"{app_url}/xray", wait_until="domcontentloaded")
    page.get_by_text("Upload one or more chest X-rays").wait_for(timeout=60_000)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "X-ray triage" in nav and "Home" in nav
    assert "app" not in nav.split()  # not the legacy list of file names
    page.close()


def test_demo_xrays_are_read_by_the_demo_models(app_url, browser) -> None:
    page = browser.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Research use only").first.wait_for(timeout=60_000)
    page.get_by_role("link", name="X-ray triage").first.click()
    page.get_by_text("Upload one or more chest X-rays").wait_for(timeout=60_000)
    page.get_by_role("button", name="Load demo X-rays (synthetic phantoms)").click()
    metric = page.locator('[data-testid="stMetric"]').first
    metric.wait_for(timeout=90_000)
    text = metric.inner_text()
    assert "Predicted (average of models)" in text  # the three demo models accept their phantoms
    assert any(label in text for label in ("Normal", "Viral pneumonia", "COVID-19"))
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the overlay figure drew
    # The page draws on after the figure (findings, the report button): wait for the button, then count.
    page.get_by_text("Download overlay (PNG)").nth(2).wait_for(timeout=90_000)  # one per demo X-ray
    page.get_by_text("Download case report (HTML)").nth(2).wait_for(timeout=90_000)
    assert page.get_by_text("Download overlay (PNG)").count() == 3
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "xray-page.png"), full_page=True)
    page.close()


def test_a_photograph_uploaded_as_an_xray_gets_no_result(app_url, browser) -> None:
    from core.demo.ood_probes import photograph, to_png

    page = browser.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Research use only").first.wait_for(timeout=60_000)
    page.get_by_role("link", name="X-ray triage").first.click()
    page.get_by_text("Upload one or more chest X-rays").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(
        files=[{"name": "holiday.png", "mimeType": "image/png", "buffer": to_png(photograph(5))}]
    )
    page.get_by_text("No result: this image is unlike the training data of every chosen model").wait_for(timeout=90_000)
    body = page.locator("body").inner_text()
    assert "is unlike the images cxr-real-resnet18 (trained on real chest X-rays) was trained on" in body
    assert page.locator('[data-testid="stMetric"]').count() == 0  # no headline label
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "xray-page-ood.png"), full_page=True)
    page.close()


def test_first_launch_builds_the_library_and_a_patient_timeline_opens(app_url, browser) -> None:
    page = browser.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    # The server started with no library: the home page builds the demo one, then counts it.
    page.get_by_text(f"{E2E_PATIENTS} patients").first.wait_for(timeout=120_000)
    page.get_by_role("link", name="Case library").first.click()
    page.get_by_text("Patient timeline").first.wait_for(timeout=60_000)
    assert page.get_by_text(f"{E2E_PATIENTS} of {E2E_PATIENTS} patients").count() == 1
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)  # the timeline drew
    # Every study of the first patient is a card with a thumbnail and its note.
    thumbs = page.locator('[data-testid="stImage"]')
    thumbs.first.wait_for(timeout=60_000)
    assert thumbs.count() >= 2
    assert page.get_by_text("days since admission").count() >= 1
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "library-page.png"), full_page=True)
    page.close()


def test_an_x_ray_upload_is_searched_on_the_similar_cases_page(app_url, browser, chest_png) -> None:
    page = browser.new_page()
    page.goto(f"{app_url}/xray", wait_until="domcontentloaded")
    page.get_by_text("Upload one or more chest X-rays").wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(
        files=[{"name": "chest.png", "mimeType": "image/png", "buffer": chest_png}]
    )
    # The real-data model reads uploads; a phantom is unlike its training data, so no label shows.
    page.get_by_text("Download case report (HTML)").first.wait_for(timeout=90_000)
    # Same session, other page: the upload is the query there, without uploading it again.
    page.get_by_role("link", name="Similar cases").first.click()
    page.get_by_text("most similar of").first.wait_for(timeout=120_000)
    # The compare view and the about panel come last: once they are there, every card is.
    page.get_by_text("Result image").first.wait_for(timeout=60_000)
    page.get_by_text("About this search").first.wait_for(timeout=60_000)
    page.locator(".js-plotly-plot").first.wait_for(timeout=60_000)
    assert page.get_by_text("This image is not in the library.").count() == 1
    assert page.get_by_text(re.compile(r"^\d\. P-\w+ · similarity 0\.\d{3}$")).count() == 5
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "similar-page.png"), full_page=True)
    page.close()


def _zipped_ct_series(tmp_path: Path) -> bytes:
    """A COVID-19 CT phantom written as one DICOM file per slice, zipped as a PACS export is."""
    import datetime
    import io
    import zipfile

    from core.demo.ct_phantom import generate_ct
    from core.demo.dicom_writer import DicomPatient, DicomStudy, new_uid, write_ct_series

    ct = generate_ct("COVID-19", 0.8, seed=4242)
    patient = DicomPatient("TEST^PATIENT", "E2E-1", "19500101", "M", 70)
    study = DicomStudy(new_uid("e2e-ct"), "E2E-ACC", datetime.date(2020, 4, 1))
    paths = write_ct_series(tmp_path / "series", ct.hu, ct.spacing_mm, patient, study)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for path in paths:
            z.write(path, f"export/{path.name}")
    return buffer.getvalue()


def test_upload_a_zipped_ct_series_and_read_covid3d_and_the_slice_model(app_url, browser, tmp_path) -> None:
    page = browser.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Research use only").first.wait_for(timeout=60_000)
    page.get_by_role("link", name="CT volume").first.click()
    page.get_by_text("Upload a CT series").first.wait_for(timeout=60_000)
    page.locator("input[type=file]").set_input_files(
        files=[{"name": "series.zip", "mimeType": "application/zip", "buffer": _zipped_ct_series(tmp_path)}]
    )
    metrics = page.locator('[data-testid="stMetric"]')
    metrics.first.wait_for(timeout=120_000)
    text = metrics.first.inner_text()
    assert "COVID3D" in text and "COVID+" in text  # the demo COVID3D recognises the phantom
    assert "48 x 128 x 128 voxels" in page.locator("body").inner_text()
    page.get_by_text("P(COVID-19) per axial slice").first.wait_for(timeout=60_000)
    # An upload opens on the slice model's map of the slice shown: the viewer and the slice chart.
    expect(page.locator(".js-plotly-plot")).to_have_count(2, timeout=60_000)
    page.get_by_text("Grad-CAM of ct-slice-real-resnet18 for COVID-19 on this slice").first.wait_for(timeout=60_000)
    page.get_by_text("COVID3D Grad-CAM (where COVID3D looked)").first.click()
    page.get_by_text("Maximum-intensity projection of the map").first.wait_for(timeout=120_000)
    # The viewer, the MIP, the slice chart (waited for: the rerun's stale elements go last).
    expect(page.locator(".js-plotly-plot")).to_have_count(3, timeout=60_000)
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "ct-page.png"), full_page=True)
    page.close()


def test_model_performance_page_rebuilds_the_held_out_split_and_downloads_the_report(app_url, browser) -> None:
    import json

    recorded = json.loads((ROOT / "weights" / "manifest.json").read_text())
    held = next(m for m in recorded["models"] if m["id"] == "cxr-resnet18")["metrics"]["held_out"]
    page = browser.new_page()
    page.goto(app_url, wait_until="domcontentloaded")
    page.get_by_text("Research use only").first.wait_for(timeout=60_000)
    page.get_by_role("link", name="Model performance").first.click()
    accuracy = page.locator('[data-testid="stMetric"]').filter(has_text="Accuracy")
    accuracy.first.wait_for(timeout=180_000)
    assert f"{100 * held['accuracy']:.1f}%" in accuracy.first.inner_text()  # the numbers recorded at training
    page.get_by_text("Reliability per image").first.wait_for(timeout=60_000)
    button = page.get_by_role("button", name="Download performance report (HTML)")
    button.wait_for(timeout=60_000)
    with page.expect_download(timeout=120_000) as download:
        button.click()
    html = Path(download.value.path()).read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "cxr-resnet18" in html and "<script src" not in html
    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        page.screenshot(path=str(Path(shots) / "performance-page.png"), full_page=True)
    page.close()
