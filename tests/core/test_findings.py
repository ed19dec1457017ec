"""The findings model (seed 004): CheXpert-style labels (U-zeros), CSV reading, the weighted
loss's positive weights, per-finding metrics, independent sigmoid probabilities, and a tiny
training run on the demo cohort and on a CSV.

Expected values come from the definitions (neg / pos, sigmoid(logit / T)), from scikit-learn
called directly, or from the data the test wrote; never from a previous run of the code.
"""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from core.cli.main import main
from core.datasets.findings import DEMO_COHORT_SEED, csv_samples, u_zeros
from core.demo.xray_phantom import FINDINGS, generate_xray
from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.binary import finding_metrics
from core.findings import check_findings_model, predict_findings
from core.io.images import read_xray
from core.models.manifest import read_manifest
from core.models.registry import ModelRegistry, sha256_of
from core.preprocess import xray_to_input
from core.training import findings as findings_training
from core.training.findings import MAX_POS_WEIGHT, FindingsTrainConfig, demo_images, positive_weights, train_findings
from tests.cli_helpers import assert_one_line_error
from tests.helpers import register_tiny_findings_model, register_tiny_model

TINY_RUN = FindingsTrainConfig(size=32, max_epochs=1, demo_patients=12, batch_size=8, augment=False)


def png(seed: int, label: str = "COVID-19", severity: float = 0.6) -> bytes:
    return generate_xray(label, severity, seed=seed, size=64).to_png()


# -- u_zeros ----------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["1", "1.0", " 1 ", "1.00"])
def test_u_zeros_positive_mentions_are_one(cell: str) -> None:
    assert u_zeros(cell) == 1


@pytest.mark.parametrize("cell", ["0", "0.0", "-1", "-1.0", "", "  ", None])
def test_u_zeros_negative_uncertain_and_blank_are_zero(cell: str | None) -> None:
    assert u_zeros(cell) == 0


@pytest.mark.parametrize("cell", ["maybe", "2", "0.5", "-2", "yes", "nan"])
def test_u_zeros_refuses_anything_else(cell: str) -> None:
    with pytest.raises(InvalidInputError, match="not a finding label"):
        u_zeros(cell)


# -- csv_samples ------------------------------------------------------------------------------


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def chexpert_csv(tmp_path: Path) -> tuple[Path, dict[str, Path]]:
    """CheXpert's layout: tmp/CheXpert-v1.0-small/train.csv with paths relative to tmp/ (as
    CheXpert ships them) and to the CSV's own folder, plus a missing file and bad label cells."""
    root = tmp_path / "CheXpert-v1.0-small"
    files = {
        "p1": write_file(root / "train/patient00001/study1/view1_frontal.png", png(1)),
        "p2": write_file(root / "train/patient00002/study1/view1_frontal.png", png(2, "Normal", 0.0)),
        "own_id": write_file(root / "extra/chest_a.png", png(3)),
        "stem": write_file(root / "extra/chest_b.png", png(4)),
        "bad": write_file(root / "extra/chest_c.png", png(5)),
    }
    header = ["Path", "Sex", "No Finding", "Cardiomegaly", "Lung Opacity", "Pleural Effusion", "patient_id"]
    rows = [
        # row 2: relative to the CSV's parent, as CheXpert writes it; uncertain effusion
        ["CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.png", "F", "", "", "1.0", "-1.0", ""],
        # row 3: relative to the CSV's folder; everything negative or blank
        ["train/patient00002/study1/view1_frontal.png", "M", "1.0", "0.0", "", "0", ""],
        # row 4: an explicit patient id wins over the file name
        ["extra/chest_a.png", "F", "", "1", "1", "", "P-42"],
        # row 5: no patient id and no patientNNNNN in the path: the file is its own patient
        ["extra/chest_b.png", "M", "", "-1", "0", "1", ""],
        # row 6: the file does not exist
        ["train/patient00009/study1/view1_frontal.png", "F", "", "1", "1", "1", ""],
        # row 7: a label cell that is not 1/0/-1/blank
        ["extra/chest_c.png", "F", "", "maybe", "1", "", ""],
        # row 8: another bad label
        ["extra/chest_c.png", "F", "", "", "2", "", ""],
    ]
    return write_csv(root / "train.csv", header, rows), files


def test_csv_samples_reads_chexpert_layout(chexpert_csv) -> None:
    path, files = chexpert_csv
    samples, targets, problems = csv_samples(path)

    assert [s.path for s in samples] == [files[k].resolve() for k in ("p1", "p2", "own_id", "stem")]
    assert [s.patient_id for s in samples] == ["patient00001", "patient00002", "P-42", "chest_b"]
    assert targets.shape == (4, len(FINDINGS))
    col = {f: FINDINGS.index(f) for f in FINDINGS}
    expected = np.zeros((4, len(FINDINGS)), dtype=np.float32)
    expected[0, col["Lung Opacity"]] = 1  # Pleural Effusion -1 (uncertain) -> 0
    expected[2, col["Cardiomegaly"]] = 1
    expected[2, col["Lung Opacity"]] = 1
    expected[3, col["Pleural Effusion"]] = 1  # Cardiomegaly -1 -> 0
    np.testing.assert_array_equal(targets, expected)
    # A finding without a column (Edema, ...) is simply absent; "No Finding" is not a finding.
    assert [s.label for s in samples] == ["finding", "no finding", "finding", "finding"]

    assert len(problems) == 3
    assert problems[0].startswith("row 6:") and "patient00009" in problems[0]
    assert problems[1].startswith("row 7:") and "maybe" in problems[1]
    assert problems[2].startswith("row 8:") and "'2'" in problems[2]


def test_csv_samples_accepts_a_lowercase_path_column_and_a_bom(tmp_path: Path) -> None:
    write_file(tmp_path / "img/a.png", png(11))
    path = write_csv(tmp_path / "labels.csv", ["path", "Edema"], [["img/a.png", "1"]], encoding="utf-8-sig")
    samples, targets, problems = csv_samples(path)
    assert problems == [] and len(samples) == 1
    assert samples[0].patient_id == "a"
    assert targets[0, FINDINGS.index("Edema")] == 1 and targets.sum() == 1


def test_csv_samples_refuses_a_csv_without_path_or_finding_columns(tmp_path: Path) -> None:
    write_file(tmp_path / "a.png", png(12))
    no_path = write_csv(tmp_path / "no_path.csv", ["File", "Lung Opacity"], [["a.png", "1"]])
    with pytest.raises(InvalidInputError, match="no Path column"):
        csv_samples(no_path)
    no_finding = write_csv(tmp_path / "no_finding.csv", ["Path", "Sex", "Age"], [["a.png", "F", "40"]])
    with pytest.raises(InvalidInputError, match="finding columns"):
        csv_samples(no_finding)


def test_csv_samples_with_no_readable_row_is_insufficient(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "gone.csv", ["Path", "Lung Opacity"], [["nowhere.png", "1"]])
    with pytest.raises(InsufficientDataError):
        csv_samples(path)


# -- positive_weights, finding_metrics --------------------------------------------------------


def test_positive_weights_are_negatives_over_positives_clipped() -> None:
    n = 200
    targets = np.zeros((n, len(FINDINGS)), dtype=np.float32)
    targets[:40, 0] = 1  # 160 / 40 = 4
    targets[:1, 1] = 1  # 199 / 1, clipped to 50
    targets[:150, 2] = 1  # 50 / 150 < 1, clipped to 1
    targets[:, 3] = 1  # no negatives: 0, clipped to 1
    targets[:8, 4] = 1  # 192 / 8 = 24
    # findings 5.. have no positive at all: weight 1
    w = positive_weights(targets)
    assert isinstance(w, torch.Tensor) and w.shape == (len(FINDINGS),)
    expected = [4.0, MAX_POS_WEIGHT, 1.0, 1.0, 24.0] + [1.0] * (len(FINDINGS) - 5)
    assert MAX_POS_WEIGHT == 50.0
    np.testing.assert_allclose(w.numpy(), expected, rtol=1e-6)


def test_finding_metrics_match_sklearn_per_finding() -> None:
    rng = np.random.default_rng(4)
    n = 60
    targets = (rng.random((n, len(FINDINGS))) < 0.3).astype(np.float32)
    targets[:, 1] = 0  # only negatives
    targets[:, 8] = 1  # only positives
    probs = np.clip(0.5 * targets + rng.random((n, len(FINDINGS))) * 0.7, 0, 1).astype(np.float32)

    m = finding_metrics(targets, probs, threshold=0.5)
    assert m["n_images"] == n
    assert list(m["per_finding"]) == list(FINDINGS)
    aucs = []
    for j, name in enumerate(FINDINGS):
        got = m["per_finding"][name]
        y, p = targets[:, j], probs[:, j]
        assert got["n_positive"] == int(y.sum())
        assert got["prevalence"] == pytest.approx(y.mean())
        if j in (1, 8):
            assert got["auc"] is None
        else:
            assert got["auc"] == pytest.approx(roc_auc_score(y, p))
            aucs.append(roc_auc_score(y, p))
        if y.sum() > 0:
            assert got["sensitivity"] == pytest.approx(np.mean(p[y == 1] >= 0.5))
        else:
            assert got["sensitivity"] is None
        if (y == 0).any():
            assert got["specificity"] == pytest.approx(np.mean(p[y == 0] < 0.5))
        else:
            assert got["specificity"] is None
    assert m["mean_auc"] == pytest.approx(np.mean(aucs))


def test_finding_metrics_take_one_threshold_per_finding() -> None:
    rng = np.random.default_rng(5)
    targets = (rng.random((80, len(FINDINGS))) < 0.4).astype(np.float32)
    probs = rng.random((80, len(FINDINGS))).astype(np.float32)
    cut = {"Cardiomegaly": 0.2, "Edema": 0.9}

    m = finding_metrics(targets, probs, threshold=cut)
    for j, name in enumerate(FINDINGS):
        got, y, p = m["per_finding"][name], targets[:, j], probs[:, j]
        expected = cut.get(name, 0.5)  # a finding without its own threshold keeps 0.5
        assert got["threshold"] == pytest.approx(expected)
        assert got["sensitivity"] == pytest.approx(np.mean(p[y == 1] >= expected))
        assert got["specificity"] == pytest.approx(np.mean(p[y == 0] < expected))
    with pytest.raises(InvalidInputError, match="Cardiomegally"):
        finding_metrics(targets, probs, threshold={"Cardiomegally": 0.3})


# -- predict_findings, check_findings_model --------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("findings-weights")
    register_tiny_findings_model(folder)
    register_tiny_model(folder, "cxr-resnet18")
    return folder


def test_predict_findings_is_an_independent_sigmoid_per_finding(weights: Path) -> None:
    registry = ModelRegistry(weights, device=torch.device("cpu"))
    loaded = registry.load("cxr-findings")
    model = replace(loaded, card=replace(loaded.card, temperature=2.0))
    image = read_xray(generate_xray("COVID-19", 0.8, seed=21, size=128).to_png(), "chest.png")

    result = predict_findings(model, image)

    with torch.no_grad():
        logits = model.module(xray_to_input(image, model.card.input)).float()[0]
    expected = torch.sigmoid(logits / 2.0)
    assert result.labels == FINDINGS
    assert list(result.as_dict()) == list(FINDINGS)
    assert result.model_id == "cxr-findings" and result.model_version == model.card.version
    np.testing.assert_allclose(result.probabilities, expected.numpy(), rtol=1e-5, atol=1e-6)
    # Not a softmax: ten independent probabilities, not one distribution.
    assert not np.allclose(result.probabilities, torch.softmax(logits / 2.0, dim=0).numpy(), atol=1e-3)
    assert abs(sum(result.probabilities) - 1.0) > 1e-3
    # The temperature matters: T = 1 gives sigmoid(logit).
    plain = predict_findings(loaded, image)
    np.testing.assert_allclose(plain.probabilities, torch.sigmoid(logits).numpy(), rtol=1e-5, atol=1e-6)


def test_a_three_class_model_is_not_a_findings_model(weights: Path) -> None:
    registry = ModelRegistry(weights, device=torch.device("cpu"))
    model = registry.load("cxr-resnet18")
    with pytest.raises(InvalidInputError, match="not a findings model"):
        check_findings_model(model)
    image = read_xray(png(22), "chest.png")
    with pytest.raises(InvalidInputError, match="not a findings model"):
        predict_findings(model, image)
    check_findings_model(registry.load("cxr-findings"))  # the findings model passes


# -- training ---------------------------------------------------------------------------------


def test_config_refuses_impossible_settings() -> None:
    for bad in ({"size": 16}, {"max_epochs": 0}, {"lr": 0.0}, {"batch_size": 0}, {"demo_patients": 5}):
        with pytest.raises(InvalidInputError):
            FindingsTrainConfig(**bad)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """One tiny training run on the demo cohort, recording the patient split it used."""
    out = tmp_path_factory.mktemp("trained-findings")
    parts_seen = []
    real_split = findings_training.split_by_patient

    def recording_split(samples, *args, **kwargs):
        parts = real_split(samples, *args, **kwargs)
        parts_seen.append(parts)
        return parts

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(findings_training, "split_by_patient", recording_split)
        result = train_findings("demo", out, TINY_RUN, progress=False)
    assert len(parts_seen) == 1
    return out, result, parts_seen[0]


def test_demo_training_writes_weights_and_a_multi_label_manifest_entry(demo_run) -> None:
    out, result, _ = demo_run
    assert result.weights_path == out / "cxr-findings.pt" and result.weights_path.is_file()
    (card,) = [c for c in read_manifest(out) if c.id == "cxr-findings"]
    assert card.multi_label is True
    assert card.labels == FINDINGS
    assert card.input_kind == "xray" and card.input.size == TINY_RUN.size
    assert card.sha256 == sha256_of(result.weights_path)
    assert json.loads((out / "manifest.json").read_text())["models"][0]["task"] == "multi-label"
    assert len(result.history) == 1 and card.training["epochs_run"] == 1


def test_demo_training_splits_by_patient_and_reports_held_out_metrics(demo_run) -> None:
    _, result, parts = demo_run
    card = result.card
    patients = {name: {s.patient_id for s in items} for name, items in parts.items()}
    assert patients["train"] and patients["dev"] and patients["test"]
    assert not patients["train"] & patients["dev"]
    assert not patients["train"] & patients["test"]
    assert not patients["dev"] & patients["test"]
    assert card.training["data"]["images"] == {name: len(items) for name, items in parts.items()}

    # The targets of each part, from the same simulated cohort drawn again.
    samples, _, targets = demo_images(TINY_RUN.demo_patients, TINY_RUN.size, DEMO_COHORT_SEED, False)
    assert sum(len(items) for items in parts.values()) == len(samples)
    target_of = {str(s.path): t for s, t in zip(samples, targets, strict=True)}
    test_t = np.array([target_of[str(s.path)] for s in parts["test"]])
    train_t = np.array([target_of[str(s.path)] for s in parts["train"]])

    held_out = card.metrics["held_out"]
    assert held_out["n_images"] == len(parts["test"])
    assert list(held_out["per_finding"]) == list(FINDINGS)
    for j, name in enumerate(FINDINGS):
        entry = held_out["per_finding"][name]
        assert entry["n_positive"] == int(test_t[:, j].sum())
        both_classes = 0 < test_t[:, j].sum() < len(test_t)
        assert (entry["auc"] is not None) == both_classes
        if entry["auc"] is not None:
            assert 0.0 <= entry["auc"] <= 1.0
    assert card.training["data"]["positives_in_train"] == {
        f: int(v) for f, v in zip(FINDINGS, train_t.sum(axis=0), strict=True)
    }
    np.testing.assert_allclose(card.training["pos_weight"], positive_weights(train_t).numpy(), rtol=1e-6)


def test_demo_training_fits_the_temperature_and_thresholds_on_the_dev_split(demo_run) -> None:
    out, result, parts = demo_run
    (entry,) = json.loads((out / "manifest.json").read_text())["models"]
    calibration = entry["training"]["calibration"]
    assert np.isfinite(entry["temperature"]) and entry["temperature"] > 0
    assert entry["temperature"] == calibration["temperature"] == result.card.temperature
    assert calibration["fitted_on"] == f"dev split ({len(parts['dev'])} images)"
    # An operating threshold for every finding with both classes in the dev split, and only those.
    dev = result.card.metrics["dev"]
    both = {f for f, m in dev["per_finding"].items() if 0 < m["n_positive"] < dev["n_images"]}
    assert set(entry["thresholds"]) == both
    assert all(0.0 <= t <= 1.0 for t in entry["thresholds"].values())
    # The held-out sensitivity and specificity are read at those thresholds (0.5 elsewhere).
    for name, m in result.card.metrics["held_out"]["per_finding"].items():
        assert m["threshold"] == entry["thresholds"].get(name, 0.5)


def test_registry_loads_the_trained_findings_model(demo_run) -> None:
    out, result, _ = demo_run
    registry = ModelRegistry(out, device=torch.device("cpu"))
    assert registry.multi_label_ids("xray") == ["cxr-findings"]
    assert "cxr-findings" not in registry.classifier_ids("xray")
    model = registry.load("cxr-findings")
    check_findings_model(model)
    image = read_xray(png(31), "chest.png")
    probs = predict_findings(model, image)
    assert probs.labels == FINDINGS and probs.model_version == result.card.version
    assert all(0.0 <= p <= 1.0 for p in probs.probabilities)


def test_training_on_a_csv_skips_bad_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    rows = []
    for i in range(1, 7):  # six patients with an opacity
        write_file(data / f"train/patient{i:05d}/study1/view1_frontal.png", png(100 + i))
        rows.append([f"train/patient{i:05d}/study1/view1_frontal.png", "1", ""])
    for i in range(7, 10):  # three without any finding
        write_file(data / f"train/patient{i:05d}/study1/view1_frontal.png", png(100 + i, "Normal", 0.0))
        rows.append([f"train/patient{i:05d}/study1/view1_frontal.png", "0", "-1"])
    rows.append(["train/patient00010/study1/view1_frontal.png", "1", "1"])  # no such file
    path = write_csv(data / "train.csv", ["Path", "Lung Opacity", "Pleural Effusion"], rows)

    result = train_findings(path, tmp_path / "out", TINY_RUN, progress=False)
    data_card = result.card.training["data"]
    assert data_card["skipped_rows"] == 1
    assert sum(data_card["images"].values()) == 9
    assert data_card["positives_in_train"]["Pleural Effusion"] == 0  # -1 is U-zeros negative
    assert "Pleural Effusion" in data_card["note"]  # told there was nothing to learn it from
    assert result.card.metrics["held_out"]["n_images"] == data_card["images"]["test"]
    ModelRegistry(tmp_path / "out", device=torch.device("cpu")).load("cxr-findings")


def test_cli_train_findings_without_the_csv_is_a_one_line_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    status = main(["train-findings", "--data", "missing.csv", "--out", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert_one_line_error(status, out, err, "missing.csv")
    assert not (tmp_path / "out").exists()
