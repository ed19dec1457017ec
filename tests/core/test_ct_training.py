"""CT training: the patient-level split, and tiny end-to-end runs on the demo cohort."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.datasets.ct_sources import load_ct_source
from core.datasets.splits import patient_split
from core.errors import InsufficientDataError, InvalidInputError
from core.training.ct import CtTrainConfig, train_ct


def test_the_split_puts_every_patient_in_exactly_one_place_and_keeps_both_classes() -> None:
    patients = [f"p{i:02d}" for i in range(40)]
    labels = [int(i % 3 == 0) for i in range(40)]
    test, folds = patient_split(patients, labels, folds=4, test_fraction=0.15, seed=1)
    places = [test, *folds]
    assert sorted(p for part in places for p in part) == patients  # all, and none twice
    by_id = dict(zip(patients, labels, strict=True))
    for part in places:
        assert {by_id[p] for p in part} == {0, 1}
    again, _ = patient_split(patients, labels, folds=4, test_fraction=0.15, seed=1)
    assert again == test


def test_too_few_patients_for_the_folds_is_a_plain_error() -> None:
    with pytest.raises(InsufficientDataError, match="cross-validation"):
        patient_split(["a", "b", "c", "d"], [0, 0, 1, 1], folds=5, test_fraction=0.2, seed=0)


def test_demo_source_labels_and_lesion_truth() -> None:
    scans = load_ct_source("demo:6")
    assert {s.label for s in scans} <= {"COVID-19", "Viral pneumonia", "Normal"}
    hu, lesions = scans[0].load()
    assert hu.ndim == 3 and lesions is not None and lesions.shape == (hu.shape[0],)
    with pytest.raises(InvalidInputError):
        load_ct_source("demo:x")
    with pytest.raises(InvalidInputError):
        load_ct_source("/no/such/thing")


TINY = dict(folds=2, epochs=1, batch_size=4, size=32, test_fraction=0.2, augment=True)


@pytest.mark.parametrize(
    "kind,extra",
    [("covid3d", dict(width=0.0625, input_depth=8)), ("ct-slice", dict(resnet_depth=18, max_slices_per_scan=3))],
)
def test_a_tiny_run_registers_a_model_with_fold_tables_and_held_out_patients(
    kind: str, extra: dict, tmp_path: Path
) -> None:
    config = CtTrainConfig(kind=kind, model_id=f"tiny-{kind}", **TINY, **extra)
    result = train_ct("demo:24", tmp_path, config, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    (entry,) = [m for m in manifest["models"] if m["id"] == f"tiny-{kind}"]
    assert entry["input_kind"] == ("ct-volume" if kind == "covid3d" else "ct-slice")
    training = entry["training"]
    assert len(training["folds"]) == 2 and 1 <= training["kept_fold"] <= 2
    for fold in training["folds"]:
        for part in ("train", "validation"):
            report = fold[part]
            assert set(report["per_class"]) == set(result.card.metrics["held_out"]["per_class"])
            assert 0.0 <= report["accuracy"] <= 1.0
    test_patients = set(training["data"]["test_patients"])
    assert test_patients and training["data"]["patients"]["test"] == len(test_patients)
    held = entry["metrics"]["held_out"]
    assert held["n"] > 0 and np.isfinite(held["accuracy"])
    if kind == "ct-slice":
        per_scan = entry["metrics"]["held_out_per_scan"]
        assert per_scan["n"] >= 1
        # The scan score has its own operating threshold, fitted on the dev patients' scans.
        assert 0.0 <= entry["thresholds"]["scan"] <= 1.0 and per_scan["threshold"] == entry["thresholds"]["scan"]
    else:
        assert "scan" not in entry["thresholds"]
    # The temperature comes from the kept fold's validation patients, its dev split.
    calibration = training["calibration"]
    assert math.isfinite(entry["temperature"]) and entry["temperature"] > 0
    assert entry["temperature"] == calibration["temperature"] == result.card.temperature
    unit = "scans" if kind == "covid3d" else "slices"
    assert calibration["fitted_on"] == f"validation patients of the kept fold ({calibration['n']} {unit})"
    assert (tmp_path / entry["weights_file"]).is_file()
