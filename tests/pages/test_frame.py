"""The page frame (ui/frame.py): what a clinician sees when the core refuses, or when a page fails
in a way nobody foresaw, on every page and through app.py; never a traceback."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import MissingModelError
from core.models.registry import ModelRegistry
from tests.helpers import ROOT

PAGES_WITH_MODELS = ("home", "xray", "ct", "similar", "trajectories", "survival", "performance")
SHA256_MISMATCH = "do not match the manifest"


def corrupted_copy(weights: Path, tmp_path: Path, weights_file: str) -> Path:
    """A copy of a weights folder in which one weights file no longer matches its sha256."""
    folder = tmp_path / "weights"
    shutil.copytree(weights, folder)
    with open(folder / weights_file, "ab") as f:
        f.write(b"\0")
    return folder


def test_an_xray_model_that_fails_its_sha256_check_is_a_plain_error(monkeypatch, tiny_weights: Path, tmp_path) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(corrupted_copy(tiny_weights, tmp_path, "cxr-resnet18.pt")))
    at = AppTest.from_file(str(ROOT / "pages" / "xray.py"), default_timeout=120).run()
    at.button(key="xray_demo").click().run()
    assert not at.exception
    assert at.error and all("cxr-resnet18" in e.value and SHA256_MISMATCH in e.value for e in at.error)


def test_the_other_xray_models_still_answer_when_one_fails_its_sha256_check(
    monkeypatch, tiny_weights: Path, tmp_path
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(corrupted_copy(tiny_weights, tmp_path, "cxr-resnet18.pt")))
    at = AppTest.from_file(str(ROOT / "pages" / "xray.py"), default_timeout=120).run()
    at.button(key="xray_demo").click().run()
    assert not at.exception
    assert at.error and all("cxr-resnet18" in e.value and SHA256_MISMATCH in e.value for e in at.error)
    tables = [df.value for df in at.dataframe]
    assert tables and all(set(t.index) == {"cxr-densenet121", "cxr-custom", "Average"} for t in tables)


def test_a_ct_model_that_fails_its_sha256_check_is_a_plain_error(monkeypatch, ct_weights: Path, tmp_path) -> None:
    weights_file = next(p.name for p in ct_weights.glob("covid3d*.pt"))
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(corrupted_copy(ct_weights, tmp_path, weights_file)))
    at = AppTest.from_file(str(ROOT / "pages" / "ct.py"), default_timeout=120).run()
    at.button(key="ct_demo_Normal").click().run()
    assert not at.exception
    assert [e.value for e in at.error if SHA256_MISMATCH in e.value]
    assert not at.get("plotly_chart")  # the page ended at the error: no viewer below it


@pytest.mark.parametrize("page", PAGES_WITH_MODELS)
def test_an_unreadable_manifest_is_a_plain_error_under_the_title_and_disclaimer(monkeypatch, tmp_path, page) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=60).run()
    assert not at.exception
    assert at.title and "Research use only" in " ".join(e.value for e in (*at.caption, *at.warning))
    (error,) = at.error
    assert error.value.startswith(f"The model manifest {tmp_path / 'manifest.json'} cannot be read")


def test_a_core_error_escaping_a_page_body_is_shown_in_plain_words_through_the_app(
    monkeypatch, tiny_weights: Path
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))

    def refuse(self: ModelRegistry, input_kind: str | None = None) -> list:
        raise MissingModelError("The model list is not available right now.")

    monkeypatch.setattr(ModelRegistry, "cards", refuse)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()  # the home page reads registry.cards()
    assert not at.exception
    assert at.title[0].value == "COVID-19 chest imaging dashboard"
    assert [e.value for e in at.error] == ["The model list is not available right now."]


def test_an_unexpected_error_is_a_plain_message_and_its_message_stays_out_of_the_log(
    monkeypatch, tiny_weights: Path, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))

    upload = Path("/uploads") / "DOE^JANE" / "chest.png"  # a file name that names the patient

    def fail(self: ModelRegistry, input_kind: str | None = None) -> list:
        raise ValueError(f"cannot read {upload}")

    monkeypatch.setattr(ModelRegistry, "cards", fail)
    with caplog.at_level(logging.ERROR, logger="ui.frame"):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    (error,) = at.error
    assert "did not expect" in error.value and "DOE^JANE" not in error.value
    reference = error.value.split("reference ")[1][:8]
    (record,) = [r for r in caplog.records if r.name == "ui.frame"]
    logged = record.getMessage()
    assert reference in logged and "ValueError" in logged and "'Home'" in logged
    assert "in fail" in logged and "pages/home.py" in logged  # where it happened
    assert "DOE^JANE" not in logged


def _control_flow_app() -> None:
    """An app whose one page reruns itself once, then stops half-way."""
    import streamlit as st

    from ui import frame

    def body() -> None:
        st.session_state["runs"] = st.session_state.get("runs", 0) + 1
        if st.session_state["runs"] == 1:
            st.rerun()
        st.markdown(f"run {st.session_state['runs']}")
        st.stop()
        st.markdown("after the stop")

    frame.run(st.navigation([st.Page(body, title="Body")]))


def test_st_rerun_and_st_stop_pass_through_the_frame() -> None:
    at = AppTest.from_function(_control_flow_app, default_timeout=30).run()
    assert not at.exception and not at.error
    assert [m.value for m in at.markdown] == ["run 2"]
