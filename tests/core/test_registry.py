from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.errors import MissingModelError, WeightsIntegrityError
from core.labels import XRAY_LABELS
from core.models.manifest import read_manifest
from core.models.registry import ModelRegistry, select_device
from tests.helpers import register_tiny_model


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
    from core.models.registry import sha256_of

    doc["models"][0]["sha256"] = sha256_of(path)
    (tmp_path / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(WeightsIntegrityError):
        ModelRegistry(tmp_path).load("cxr-custom")


def test_manifest_entry_is_replaced_not_duplicated(tmp_path: Path) -> None:
    register_tiny_model(tmp_path, "cxr-custom", seed=0)
    register_tiny_model(tmp_path, "cxr-custom", seed=1)
    cards = read_manifest(tmp_path)
    assert [c.id for c in cards] == ["cxr-custom"]
