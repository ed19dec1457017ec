from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT


@pytest.fixture
def app_env(monkeypatch, tiny_weights: Path) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))


def test_home_lists_models_device_and_disclaimer(app_env) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert "Research use only" in at.warning[0].value
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Device"] in ("CPU", "CUDA GPU")
    assert metrics["Models registered"] == "3"
    titles = " ".join(e.label for e in at.expander)
    for model_id in ("cxr-resnet18", "cxr-densenet121", "cxr-custom"):
        assert model_id in titles
    assert "untrained test model" in " ".join(md.value for md in at.markdown)


def test_home_with_an_empty_weights_folder_says_so(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("No models are registered" in e.value for e in at.error)


def test_navigation_reaches_the_xray_page(app_env) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert at.title[0].value == "COVID-19 chest imaging dashboard"
    at.switch_page("pages/xray.py").run()
    assert not at.exception
    assert at.title[0].value == "X-ray triage"
