"""``python -m core evaluate`` and ``python -m core calibrate``: what the user reads and the
files they get, and one-line refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.cli_helpers import assert_one_line_error, run, run_json
from tests.evaluation_helpers import TRAINED_ID, TrainedXray, copy_weights, forget_calibration, read_entry, trained_xray

N_IMAGES = 18  # 6 per class


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedXray:
    return trained_xray(tmp_path_factory)


def _evaluate(weights: Path, *args: str) -> list[str]:
    return ["evaluate", "--weights", str(weights), "--device", "cpu", "--boot", "100", *args]


def test_evaluate_on_a_dataset_prints_one_json_object(trained: TrainedXray, tiny_weights: Path, capsys) -> None:
    doc = run_json(capsys, *_evaluate(tiny_weights, "--model", "cxr-custom", "--data", str(trained.dataset)))
    (evaluation,) = doc["evaluations"]
    assert evaluation["model"]["id"] == "cxr-custom"
    assert evaluation["data"]["split"] == "user" and evaluation["data"]["n_cases"] == N_IMAGES
    level = evaluation["levels"][0]
    assert sum(map(sum, level["confusion_matrix"]["counts"])) == N_IMAGES
    assert sorted(level["per_class"]) == sorted(["Normal", "Viral pneumonia", "COVID-19"])
    assert doc["comparison"] is None


def test_evaluate_defaults_to_the_recorded_test_split_and_writes_an_html_report(
    trained: TrainedXray, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "report.html"
    status, stdout, _ = run(capsys, *_evaluate(trained.weights, "--model", TRAINED_ID, "--html", str(out)))
    assert status == 0
    n_test = len(trained.entry()["training"]["data"]["test_files"])
    assert f"{TRAINED_ID} " in stdout and f"held-out test split recorded at training time: {n_test} images" in stdout
    assert f"report written to {out}" in stdout
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert TRAINED_ID in page
    assert "<script src" not in page.lower()


def test_two_models_are_compared_on_the_same_images(trained: TrainedXray, tiny_weights: Path, capsys) -> None:
    doc = run_json(
        capsys,
        *_evaluate(tiny_weights, "--model", "cxr-custom", "--model", "cxr-resnet18", "--data", str(trained.dataset)),
    )
    assert [e["model"]["id"] for e in doc["evaluations"]] == ["cxr-custom", "cxr-resnet18"]
    comparison = doc["comparison"]
    assert comparison["n"] == N_IMAGES and comparison["positive"] == "COVID-19"
    assert [m["id"] for m in comparison["models"]] == ["cxr-custom", "cxr-resnet18"]
    (pair,) = comparison["pairs"]
    assert (pair["a"], pair["b"]) == ("cxr-custom", "cxr-resnet18")
    assert 0.0 <= pair["delong_p"] <= 1.0
    by_id = {e["model"]["id"]: e["levels"][0]["roc"]["COVID-19"]["auc"] for e in doc["evaluations"]}
    assert pair["auc_a"] == pytest.approx(by_id["cxr-custom"]) and pair["auc_b"] == pytest.approx(by_id["cxr-resnet18"])


def test_an_unknown_model_is_one_line(tiny_weights: Path, capsys) -> None:
    status, out, err = run(capsys, *_evaluate(tiny_weights, "--model", "cxr-nope"))
    assert_one_line_error(status, out, err, "cxr-nope")


def test_a_missing_dataset_is_one_line(tiny_weights: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "no-such-data"
    status, out, err = run(capsys, *_evaluate(tiny_weights, "--model", "cxr-custom", "--data", str(missing)))
    assert_one_line_error(status, out, err, "no-such-data")


def test_an_unreadable_window_sd_is_one_line(tiny_weights: Path, capsys) -> None:
    status, out, err = run(capsys, *_evaluate(tiny_weights, "--model", "cxr-custom", "--window-sd", "abc"))
    assert_one_line_error(status, out, err, "--window-sd", "abc")


def test_calibrate_prints_the_temperature_and_writes_it_to_the_manifest(
    trained: TrainedXray, tmp_path: Path, capsys
) -> None:
    weights = copy_weights(trained.weights, tmp_path / "weights")
    forget_calibration(weights, TRAINED_ID)
    status, out, err = run(capsys, "calibrate", "--model", TRAINED_ID, "--weights", str(weights), "--device", "cpu")
    assert status == 0, err
    match = re.search(rf"^{TRAINED_ID}: T = (\d+\.\d+) fitted on the dev split", out, re.MULTILINE)
    assert match, out
    entry = read_entry(weights, TRAINED_ID)
    assert entry["temperature"] == pytest.approx(float(match[1]), abs=5e-4)
    assert entry["temperature"] != 1.0
    assert entry["training"]["calibration"]["temperature"] == entry["temperature"]


def test_a_comparison_that_cannot_be_made_leaves_the_evaluations_and_says_why(
    trained: TrainedXray, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    small = tmp_path / "small"
    for folder, n in (("COVID", 1), ("NORMAL", 3)):  # one COVID-19 image: no DeLong test
        (small / folder).mkdir(parents=True)
        for image in sorted((trained.dataset / folder).glob("*.png"))[:n]:
            shutil.copy(image, small / folder / image.name)
    doc = run_json(
        capsys, *_evaluate(tiny_weights, "--model", "cxr-custom", "--model", "cxr-resnet18", "--data", str(small))
    )
    assert [e["data"]["n_cases"] for e in doc["evaluations"]] == [4, 4]
    assert doc["comparison"] is None
    assert "not compared" in doc["comparison_note"] and "two positive" in doc["comparison_note"]
