"""End to end: the CT page in headless Chromium finds a series in the real Orthanc (DICOMweb),
retrieves it and analyses it, as a clinician would with the hospital's archive configured."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.browser import CHROMIUM, CHROMIUM_FLAGS, streamlit_app, wait_for_run_finished

pytestmark = pytest.mark.browser
WAIT_MS = 60_000


def test_find_retrieve_and_analyse_a_ct_series_from_the_pacs(archive, ct_weights: Path, tmp_path: Path) -> None:  # noqa: ANN001
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (see .ci/run)")
    pacs = archive.orthanc.dicomweb
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_PACS_")}
    env.update(
        {
            "DASHBOARD_WEIGHTS_DIR": str(ct_weights),
            "DASHBOARD_LIBRARY": str(tmp_path / "library"),
            "DASHBOARD_WARM_UP": "0",
            "DASHBOARD_PACS_URL": pacs.url,
            "DASHBOARD_PACS_USERNAME": pacs.username,
            "DASHBOARD_PACS_PASSWORD": pacs.password,
        }
    )
    log = tmp_path / "streamlit.log"
    with streamlit_app(env, log) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.goto(f"{url}/ct", wait_until="domcontentloaded")
            page.get_by_text("From PACS").click()
            page.get_by_label("Patient ID").fill(archive.ct.patient_id)
            page.get_by_role("button", name="Search the PACS").click()
            wait_for_run_finished(page, WAIT_MS)
            chooser = page.get_by_role("combobox", name="Series")
            expect(chooser).to_have_value(re.compile(r"^CT · .* · 16 images · study of 2020-04-02"), timeout=WAIT_MS)
            page.get_by_role("button", name="Retrieve this series").click()
            expect(page.get_by_text(re.compile(r"16 x 64 x 64 voxels"))).to_be_visible(timeout=WAIT_MS)
            expect(page.get_by_text(re.compile(r"^COVID3D \("))).to_be_visible(timeout=WAIT_MS)
            wait_for_run_finished(page, WAIT_MS)
            assert page.locator("[data-testid='stException']").count() == 0
            assert page.locator("[data-testid='stAlertContentError']").count() == 0
            page.screenshot(path=str(tmp_path / "ct-from-pacs.png"), full_page=True)
            if os.environ.get("SCREENSHOT_DIR"):
                page.screenshot(path=str(Path(os.environ["SCREENSHOT_DIR"]) / "ct-from-pacs.png"), full_page=True)
        finally:
            browser.close()
    assert pacs.password not in log.read_text(errors="replace")  # no credential in the server's log
