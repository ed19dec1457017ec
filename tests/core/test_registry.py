from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.errors import MissingModelError, WeightsIntegrityError
from core.labels import XRAY_LABELS
from core.models.card_metrics import CardMetrics
from core.models.manifest import read_manifest
from core.models.registry import ModelRegistry, select_device, sha256_of
from tests.helpers import ROOT, register_tiny_model


def test_loads_registered_model_in_eval_mode_on_cpu(tiny_weights: Path) -> None:
    registry = ModelRegistry(tiny_weights, device=torch.device("cpu"))
    assert registry.ids("xray") == ["cxr-custom", "cxr-densenet121", "cxr-resnet18"]
    model = registry.load("cxr-custom")
    assert not model.module.training
    assert model.card.labels == XRAY_LABELS
    assert all(p.dtype == torch.float32 for p in model.module.parameters())


def test_device_is_cpu_without_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device().type == expected
    assert select_device("cpu").type == "cpu"


def test_unknown_model_names_the_registered_ones(tiny_weights: Path) -> None:
    with pytest.raises(MissingModelError, match="cxr-resnet18"):
        ModelRegistry(tiny_weights).load("cxr-nonexistent")


def test_changed_weights_fail_the_sha256_check(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "cxr-custom")
    with (tmp_path / "cxr-custom.pt").open("ab") as f:
        f.write(b"tampered")
    with pytest.raises(WeightsIntegrityError, match="do not match the manifest"):
        ModelRegistry(tmp_path).load("cxr-custom")


def test_missing_weights_file_is_reported(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "cxr-custom")
    (tmp_path / "cxr-custom.pt").unlink()
    with pytest.raises(MissingModelError, match="missing"):
        ModelRegistry(tmp_path).load("cxr-custom")


class _Payload:
    def __reduce__(self):  # what a malicious pickle would do on a plain torch.load
        return (shutil.rmtree, ("/nonexistent-dir",))


def test_pickled_code_is_refused_even_with_a_matching_sha(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "cxr-custom")
    path = tmp_path / "cxr-custom.pt"
    torch.save({"x": _Payload()}, path)
    doc = json.loads((tmp_path / "manifest.json").read_text())
    doc["models"][0]["sha256"] = sha256_of(path)
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(WeightsIntegrityError):
        ModelRegistry(tmp_path).load("cxr-custom")


def test_manifest_entry_is_replaced_not_duplicated(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "cxr-custom", seed=0)
    register_tiny_model(tmp_path, "cxr-custom", seed=1)
    cards = read_manifest(tmp_path)
    assert [c.id for c in cards] == ["cxr-custom"]


@pytest.mark.demo_weights
def test_shipped_cards_read_their_recorded_metrics_as_written() -> None:
    entries = {e["id"]: e for e in json.loads((ROOT / "weights" / "manifest.json").read_text())["models"]}
    cards = {card.id: card for card in read_manifest(ROOT / "weights")}
    for model_id, card in cards.items():
        assert card.to_dict()["metrics"] == entries[model_id]["metrics"]  # the card writes back what it read
        recorded = card.recorded_metrics
        held = entries[model_id]["metrics"]["held_out"]
        assert recorded.held_out is not None
        assert recorded.held_out.accuracy == held.get("accuracy")
        assert recorded.held_out.auc == held.get("roc_auc_ovr", held.get("roc_auc"))
        if "confusion_matrix" in held:
            cm = held["confusion_matrix"]
            assert recorded.held_out.labels == tuple(cm["labels"])
            assert [list(row) for row in recorded.held_out.confusion_matrix] == cm["rows_true_columns_predicted"]
            for name, rates in held["per_class"].items():
                assert recorded.held_out.per_class[name].support == rates["support"]
                assert recorded.held_out.per_class[name].f1 == rates["f1"]
    findings = cards["cxr-findings"].recorded_metrics.held_out
    assert findings is not None and findings.n_images and findings.per_finding["Edema"].auc is None
    assert findings.per_finding["Cardiomegaly"].threshold == cards["cxr-findings"].thresholds["Cardiomegaly"]
    per_scan = cards["ct-slice-resnet18"].recorded_metrics.held_out_per_scan
    assert per_scan is not None and per_scan.unit and per_scan.unit.startswith("scan") and per_scan.auc is not None
    survival = cards["survival-cnn-lstm"].recorded_metrics.held_out
    assert survival is not None and survival.brier is not None and survival.km and survival.km["groups"]
    shortcuts = cards["cxr-real-resnet18"].recorded_metrics.shortcuts
    assert shortcuts is not None and set(shortcuts.aucs) == set(shortcuts.aucs_border_blanked)


def test_a_card_without_metrics_records_nothing() -> None:
    assert CardMetrics.from_json({}) == CardMetrics()
    partial = CardMetrics.from_json({"dev": {"n": 10, "accuracy": 0.5, "roc_auc": 0.75}})
    assert partial.held_out is None and partial.dev is not None
    assert (partial.dev.n, partial.dev.accuracy, partial.dev.auc, partial.dev.per_class) == (10, 0.5, 0.75, {})
