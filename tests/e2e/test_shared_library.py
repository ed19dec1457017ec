"""End to end: two app processes on one PostgreSQL case library see each other's additions.

A small demo library is migrated into a PostgreSQL database (tests/pg.py, tests/conftest.py), and two
``streamlit run app.py`` processes are started on it (``DASHBOARD_LIBRARY`` is the database's
address, with a password the pages must never show). Process B's Case library page is opened;
a chest X-ray made by the project's phantom generator is added as a new case through process
A's "Add a reviewed upload"; B's page, reloaded without a restart, shows the new patient.
Screenshots of Home and the Case library go to ``$SCREENSHOT_DIR`` when it is set.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from core.demo.xray_phantom import generate_xray
from core.library.store import open_library
from tests.browser import CHROMIUM, CHROMIUM_FLAGS, streamlit_app, wait_for_run_finished
from tests.pg import PostgresServer

pytestmark = pytest.mark.browser

#: Long enough for a page run on a busy 2-core machine (two test workers, two app processes).
WAIT_MS = 45_000
#: A password in the library's address: trust authentication on the loopback ignores it, and
#: no page may show it.
PASSWORD = "Sekr1t-pw"
VIEWPORT = {"width": 1400, "height": 1000}
#: True once the help tooltip has finished fading in.
TOOLTIP_SHOWN_JS = """
() => {
  const tip = document.querySelector('[data-testid="stTooltipContent"]');
  return !!tip && [tip, ...document.querySelectorAll('[data-baseweb="tooltip"]')]
    .every(e => getComputedStyle(e).opacity === '1');
}
"""


def patient_count(page: Page) -> int:
    """The Case library page's "N of M patients" heading, once drawn: M."""
    heading = page.get_by_role("heading", name=re.compile(r"^\d+ of \d+ patients$"))
    expect(heading).to_be_visible(timeout=WAIT_MS)
    return int(heading.inner_text().split(" of ")[1].split()[0])


def open_library_page(page: Page, url: str) -> None:
    page.goto(f"{url}/library", wait_until="domcontentloaded")
    expect(page.get_by_text("Add to the library")).to_be_visible(timeout=WAIT_MS)
    wait_for_run_finished(page, WAIT_MS)


def no_error_on(page: Page) -> None:
    assert page.locator('[data-testid="stException"], [data-testid="stAlertContentError"]').count() == 0
    assert PASSWORD not in page.content()


@pytest.fixture
def shared_url(postgres_demo_library: str, postgres_server: PostgresServer) -> Iterator[str]:
    """A copy of the small demo library migrated into PostgreSQL; its address with a password."""
    url = postgres_server.create_database(template=postgres_demo_library)
    yield url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@")
    postgres_server.drop_later(url)


def test_two_app_processes_share_one_postgresql_library(shared_url: str, tiny_weights: Path, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (see .ci/run)")
    public = shared_url.replace(f":{PASSWORD}@", "@")
    before = open_library(shared_url).counts().patients
    env = {k: v for k, v in os.environ.items() if k != "DASHBOARD_READ_ONLY"}
    env.update({"DASHBOARD_LIBRARY": shared_url, "DASHBOARD_WEIGHTS_DIR": str(tiny_weights), "DASHBOARD_WARM_UP": "0"})
    xray = tmp_path / "reviewed-xray.png"
    xray.write_bytes(generate_xray("COVID-19", 0.7, seed=2201, size=256).to_png())

    with ExitStack() as stack:
        url_a = stack.enter_context(streamlit_app(env, tmp_path / "streamlit-a.log"))
        url_b = stack.enter_context(streamlit_app(env, tmp_path / "streamlit-b.log"))
        p = stack.enter_context(sync_playwright())
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        stack.callback(browser.close)
        page_a, page_b = browser.new_page(viewport=VIEWPORT), browser.new_page(viewport=VIEWPORT)

        open_library_page(page_b, url_b)
        assert patient_count(page_b) == before
        no_error_on(page_b)

        open_library_page(page_a, url_a)
        page_a.get_by_role("tab", name="Add a reviewed upload").click()
        page_a.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(xray)
        add = page_a.get_by_role("button", name="Add to the library")
        expect(add).to_be_enabled(timeout=WAIT_MS)
        add.click()
        added = page_a.get_by_text(re.compile(r"^Added as a study of patient P-\w+\.$"))
        expect(added).to_be_visible(timeout=WAIT_MS)
        pseudonym = added.inner_text().removeprefix("Added as a study of patient ").rstrip(".")
        no_error_on(page_a)

        # B, reloaded (same process, no restart), draws the new patient from the database.
        page_b.reload(wait_until="domcontentloaded")
        expect(page_b.get_by_role("heading", name=f"{before + 1} of {before + 1} patients")).to_be_visible(
            timeout=WAIT_MS
        )
        # The patients table (a data grid: its cells are in the page for screen readers).
        cell = page_b.locator('[data-testid="stDataFrame"] td[role="gridcell"]').filter(
            has_text=re.compile(f"^{pseudonym}$")
        )
        expect(cell).to_have_count(1, timeout=WAIT_MS)
        wait_for_run_finished(page_b, WAIT_MS)
        no_error_on(page_b)
        assert open_library(shared_url).patient(pseudonym).studies[0].modality == "X-ray"

        # Home names the library's address (in its Case library figure's help) without the password.
        page_b.screenshot(path=str(tmp_path / "library-pg.png"), full_page=True)
        page_b.goto(url_b, wait_until="domcontentloaded")
        metric = page_b.locator('[data-testid="stMetric"]').filter(has_text="Case library")
        expect(metric).to_contain_text(f"{before + 1} patients", timeout=WAIT_MS)
        wait_for_run_finished(page_b, WAIT_MS)
        metric.locator('[data-testid="stTooltipHoverTarget"]').hover()
        tooltip = page_b.locator('[data-testid="stTooltipContent"]')
        expect(tooltip).to_contain_text(public, timeout=WAIT_MS)
        no_error_on(page_b)
        page_b.wait_for_function(TOOLTIP_SHOWN_JS, timeout=WAIT_MS)  # faded in: the screenshot can be read
        page_b.screenshot(path=str(tmp_path / "home-pg.png"))

    shots = os.environ.get("SCREENSHOT_DIR")
    if shots:
        for name in ("library-pg.png", "home-pg.png"):
            shutil.copy(tmp_path / name, Path(shots) / name)
