from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from core.cli.main import main
from core.errors import InvalidInputError
from core.models.registry import ModelRegistry, sha256_of
from core.training.sources import Sample, canonical_label, load_source, split_by_patient


@pytest.fixture(scope="module")
def phantom_dataset(tmp_path_factory) -> Path:
    from core.demo.xray_phantom import write_xray_dataset

    return write_xray_dataset(tmp_path_factory.mktemp("data"), n_per_class=10, seed=0, size=64)


def test_class_folder_names_of_public_datasets_map_to_labels() -> None:
    assert canonical_label("COVID") == "COVID-19"
    assert canonical_label("NORMAL") == "Normal"
    assert canonical_label("Viral Pneumonia") == "Viral pneumonia"
    with pytest.raises(InvalidInputError, match="Unknown label"):
        canonical_label("Lung_Opacity")


def test_patient_level_split_never_shares_a_patient_and_is_seeded() -> None:
    samples = [
        Sample(Path(f"{p}-{i}.png"), label, f"p{p}")
        for p in range(60)
        for i in range(3)
        for label in [("Normal", "Viral pneumonia", "COVID-19")[p % 3]]
    ]
    parts = split_by_patient(samples, seed=1)
    patients = {name: {s.patient_id for s in items} for name, items in parts.items()}
    assert not patients["train"] & patients["dev"] and not patients["train"] & patients["test"]
    assert not patients["dev"] & patients["test"]
    assert len(patients["train"]) == 48 and len(patients["dev"]) == 6 and len(patients["test"]) == 6
    assert split_by_patient(samples, seed=1) == parts
    assert split_by_patient(samples, seed=2) != parts


def test_csv_and_folder_sources_read_the_same_dataset(phantom_dataset: Path) -> None:
    from_csv = load_source(phantom_dataset / "manifest.csv")
    from_folders = load_source(phantom_dataset)
    assert sorted((s.path.name, s.label) for s in from_csv) == sorted((s.path.name, s.label) for s in from_folders)
    assert len({s.patient_id for s in from_csv}) == 30


def test_train_command_writes_weights_manifest_and_curves(phantom_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "weights"
    status = main(
        [
            "train-xray",
            "--data",
            str(phantom_dataset / "manifest.csv"),
            "--arch",
            "custom",
            "--out",
            str(out),
            "--size",
            "64",
            "--blocks",
            "2",
            "--width",
            "4",
            "--epochs",
            "2",
            "--lr",
            "1e-3",
            "--balanced",
        ]
    )
    assert status == 0
    doc = json.loads((out / "manifest.json").read_text())
    (entry,) = doc["models"]
    assert entry["id"] == "cxr-custom"
    assert entry["sha256"] == sha256_of(out / entry["weights_file"])
    assert entry["labels"] == ["Normal", "Viral pneumonia", "COVID-19"]
    assert entry["input"]["channels"] == 1 and "one channel" in entry["input"]["grayscale"]
    held = entry["metrics"]["held_out"]
    cm = held["confusion_matrix"]["rows_true_columns_predicted"]
    assert sum(map(sum, cm)) == held["n"] == len(entry["training"]["data"]["test_files"]) == 3
    assert set(held["per_class"]["COVID-19"]) >= {"precision", "recall", "f1"}
    assert "not for clinical use" in entry["intended_use"]
    assert entry["training"]["config"]["lr"] == 1e-3 and entry["training"]["epochs_run"] >= 1
    with (out / "cxr-custom.learning-curves.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == entry["training"]["epochs_run"] and "dev_loss" in rows[0]
    model = ModelRegistry(out, device=torch.device("cpu")).load("cxr-custom")  # the registry accepts it
    assert model.card.version == entry["version"]


def test_training_on_a_missing_source_is_one_line(tmp_path: Path, capsys) -> None:
    status = main(["train-xray", "--data", str(tmp_path / "nope"), "--arch", "custom", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1 and "nope" in err[0]
