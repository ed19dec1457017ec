from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models.registry import ModelRegistry
from core.training.ct import CtTrainConfig, train_ct
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


def test_a_ct_model_card_shows_its_fold_table_and_per_fold_curves(monkeypatch, tiny_weights: Path, tmp_path) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    config = CtTrainConfig(
        kind="covid3d", model_id="covid3d-small", folds=2, epochs=2, batch_size=4, size=32, input_depth=8, width=0.0625
    )
    train_ct("demo:16", weights, config, progress=False)
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(weights))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert any("covid3d-small" in e.label for e in at.expander)
    text = " ".join(md.value for md in at.markdown)
    assert "2-fold cross-validation" in text and "Synthetic CT phantoms" in text
    (table,) = [d for d in at.dataframe if "ROC AUC" in d.value.columns]
    assert list(table.value.index.get_level_values("fold")) == ["1", "2", "mean", "1", "2", "mean"]
    assert {"COVID+ recall", "COVID+ specificity", "COVID- precision"} <= set(table.value.columns)
    curves = [c for c in at.get("plotly_chart") if "fold 1" in str(c.proto.spec)]
    assert curves  # the learning curves, one line pair per fold


@pytest.mark.demo_weights
def test_the_shipped_cards_show_what_they_recorded_on_their_held_out_split() -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert not at.exception
    registry = ModelRegistry()
    titles = {e.label.split("**")[1]: e.label for e in at.expander if e.label.startswith("**")}
    held = registry.card("cxr-resnet18").recorded_metrics.held_out
    assert held is not None and held.accuracy is not None
    assert f"held-out accuracy {held.accuracy:.1%}" in titles["cxr-resnet18"]
    findings = registry.card("cxr-findings").recorded_metrics.held_out
    assert findings is not None and findings.mean_auc is not None
    assert f"held-out mean AUC {findings.mean_auc:.3f} over findings" in titles["cxr-findings"]
    captions = " ".join(c.value for c in at.caption)
    per_scan = registry.card("ct-slice-resnet18").recorded_metrics.held_out_per_scan
    assert per_scan is not None and f"Per scan ({per_scan.n} held-out scans" in captions
    assert "Held-out Kaplan-Meier of the model's groups" in captions
    survival = registry.card("survival-cnn-lstm").recorded_metrics.held_out
    assert survival is not None and survival.brier is not None and f"Brier score {survival.brier:.3f}" in captions
