"""What the evaluation tests share: one tiny X-ray model trained for real (so its card records a
test and a dev split and a fitted temperature), and the phantom dataset it was trained on.

Training takes a few seconds, so it runs once per session however many test modules ask for
it; the result is read-only (tests that rewrite a manifest work on a copy, :func:`copy_weights`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

#: The phantom dataset the model is trained on, as ``python -m core demo xray-dataset`` writes it.
PER_CLASS, IMAGE_SIZE, DATA_SEED = 6, 64, 0
DEMO_COMMAND = f"python -m core demo xray-dataset --per-class {PER_CLASS} --size {IMAGE_SIZE} --seed {DATA_SEED}"
TRAINED_ID = "cxr-custom"


@dataclass(frozen=True)
class TrainedXray:
    """A weights folder holding :data:`TRAINED_ID`, trained on ``dataset`` (class folders and
    ``manifest.csv``; the model was trained from the CSV, as the shipped X-ray models were)."""

    dataset: Path
    weights: Path

    def entry(self) -> dict:
        """The model's manifest entry as written on disk."""
        return read_entry(self.weights, TRAINED_ID)


_TRAINED: dict[Path, TrainedXray] = {}


def trained_xray(tmp_path_factory: pytest.TempPathFactory) -> TrainedXray:
    """Train the tiny model once per session (the first caller pays; later callers share it)."""
    key = tmp_path_factory.getbasetemp()
    if key not in _TRAINED:
        from core.cli.main import main
        from core.demo.xray_phantom import write_xray_dataset

        dataset = write_xray_dataset(
            tmp_path_factory.mktemp("eval-xray-data"), n_per_class=PER_CLASS, seed=DATA_SEED, size=IMAGE_SIZE
        )
        weights = tmp_path_factory.mktemp("eval-xray-weights")
        status = main(
            [
                "train-xray",
                "--data", str(dataset / "manifest.csv"),
                "--arch", "custom", "--blocks", "2", "--width", "4",
                "--size", "32", "--epochs", "1", "--device", "cpu",
                "--out", str(weights),
                "--note", f"Synthetic chest X-ray phantoms ({DEMO_COMMAND})",
            ]
        )  # fmt: skip
        assert status == 0
        _TRAINED[key] = TrainedXray(dataset, weights)
    return _TRAINED[key]


def read_entry(weights: Path, model_id: str) -> dict:
    (entry,) = [e for e in json.loads((weights / "manifest.json").read_text())["models"] if e["id"] == model_id]
    return entry


def copy_weights(src: Path, dst: Path) -> Path:
    """A private, writable copy of a weights folder."""
    shutil.copytree(src, dst)
    return dst


def forget_calibration(weights: Path, model_id: str) -> None:
    """Rewrite a manifest entry as weights trained before the trainers fitted a temperature:
    T = 1 and no calibration record."""
    path = weights / "manifest.json"
    doc = json.loads(path.read_text())
    for entry in doc["models"]:
        if entry["id"] == model_id:
            entry["temperature"] = 1.0
            entry["training"].pop("calibration", None)
    path.write_text(json.dumps(doc))
