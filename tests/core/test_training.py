from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

from core.cli.main import main
from core.datasets.sources import Sample, load_source, split_by_patient
from core.errors import InvalidInputError
from core.labels import canonical_label
from core.models.registry import ModelRegistry, sha256_of


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
    # The temperature every prediction divides the logits by comes from the dev split.
    calibration = entry["training"]["calibration"]
    assert math.isfinite(entry["temperature"]) and entry["temperature"] > 0
    assert entry["temperature"] == calibration["temperature"]
    assert calibration["fitted_on"].startswith("dev split")
    assert calibration["n"] == len(entry["training"]["data"]["dev_files"])
    with (out / "cxr-custom.learning-curves.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == entry["training"]["epochs_run"] and "dev_loss" in rows[0]
    model = ModelRegistry(out, device=torch.device("cpu")).load("cxr-custom")  # the registry accepts it
    assert model.card.version == entry["version"]


def test_training_on_a_missing_source_is_one_line(tmp_path: Path, capsys) -> None:
    status = main(["train-xray", "--data", str(tmp_path / "nope"), "--arch", "custom", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1 and "nope" in err[0]


@pytest.mark.parametrize("arch", ["resnet18", "densenet121"])
def test_imagenet_init_loads_torchvisions_checkpoint_from_the_local_cache(
    arch: str, phantom_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    import re

    from core.torchvision_compat import ensure_torchvision
    from core.training.xray import IMAGENET_FILES

    tv = ensure_torchvision()
    torch.manual_seed(123)
    reference = getattr(tv.models, arch)(weights=None).state_dict()
    on_disk = reference
    if arch == "densenet121":  # torchvision's published densenet files use the old key names
        on_disk = {
            re.sub(r"(denselayer\d+\.(?:norm|relu|conv))([12])\.", r"\1.\2.", k): v for k, v in reference.items()
        }
        assert on_disk.keys() != reference.keys()
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(on_disk, tmp_path / "torch" / "hub" / "checkpoints" / IMAGENET_FILES[arch])
    out = tmp_path / "w"
    status = main(
        [
            "train-xray",
            "--data",
            str(phantom_dataset),
            "--arch",
            arch,
            "--out",
            str(out),
            "--size",
            "64",
            "--epochs",
            "1",
            "--lr",
            "1e-12",
            "--init",
            "imagenet",
            "--no-augment",
        ]
    )
    assert status == 0
    shipped = torch.load(out / f"cxr-{arch}.pt", weights_only=True)
    first_conv = "net.conv1.weight" if arch == "resnet18" else "features.conv0.weight"
    source = reference["conv1.weight" if arch == "resnet18" else "features.conv0.weight"]
    assert torch.allclose(shipped[first_conv].float(), source, atol=1e-3)
    if arch == "densenet121":
        key = "features.denseblock1.denselayer1.norm1.weight"
        assert torch.allclose(shipped[key].float(), reference[key], atol=1e-3)


def test_imagenet_init_without_the_cached_file_fails_before_reading_data(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    status = main(
        [
            "train-xray",
            "--data",
            str(tmp_path / "not-read"),
            "--arch",
            "resnet18",
            "--init",
            "imagenet",
            "--out",
            str(tmp_path / "w"),
        ]
    )
    err = capsys.readouterr().err
    assert status != 0 and "not in the local torch cache" in err and "nothing is downloaded" in err
