"""Model evaluation (core.evaluation): the numbers of the Model performance page against
scikit-learn and hand computations, the levels of the CT models, the rebuilt held-out split,
model comparison, the CT window robustness and recalibration after training."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.special import expit, softmax
from sklearn import metrics as skm

from core.ct.analysis import patient_score
from core.datasets.sources import load_source
from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation.compare import compare, comparison_cases, window_robustness
from core.evaluation.data import EvalCase, EvalData, evaluation_data, held_out_for, model_kind
from core.evaluation.evaluate import evaluate, evaluate_predictions, recorded_evaluation
from core.evaluation.predict import Predictions
from core.evaluation.recalibrate import recalibrate
from core.evaluation.results import Comparison, Evaluation, Level
from core.inference import predict_xray
from core.io.images import read_xray
from core.labels import XRAY_LABELS, canonical_label
from core.models.manifest import InputSpec, ModelCard, write_manifest_entry
from core.models.registry import ModelRegistry, sha256_of
from tests.ct_helpers import register_tiny_ct_model
from tests.evaluation_helpers import (
    TRAINED_ID,
    TrainedXray,
    copy_weights,
    forget_calibration,
    read_entry,
    trained_xray,
)
from tests.helpers import register_tiny_findings_model

CPU = torch.device("cpu")
N_BOOT = 200


def _no_pixels() -> None:
    raise AssertionError("the metrics must not read the images")


def _cases(labels: list[str], patients: list[str], findings: np.ndarray | None = None) -> tuple[EvalCase, ...]:
    return tuple(
        EvalCase(
            f"case-{i:03d}",
            patient,
            label,
            _no_pixels,
            None if findings is None else tuple(int(v) for v in findings[i]),
        )
        for i, (label, patient) in enumerate(zip(labels, patients, strict=True))
    )


def _user_data(cases: tuple[EvalCase, ...]) -> EvalData:
    return EvalData("user", "hand-made cases", "test", cases)


def _level(evaluation: Evaluation, unit: str) -> Level:
    (level,) = [lv for lv in evaluation.levels if lv.unit == unit]
    return level


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedXray:
    return trained_xray(tmp_path_factory)


@pytest.fixture(scope="module")
def trained_card(trained: TrainedXray) -> ModelCard:
    return ModelRegistry(trained.weights, device=CPU).card(TRAINED_ID)


@pytest.fixture(scope="module")
def xray_card(tiny_weights: Path) -> ModelCard:
    """An untrained 3-class card: T = 1, no calibration record."""
    return ModelRegistry(tiny_weights, device=CPU).card("cxr-custom")


# --------------------------------------------------------------------------------------------
# A 3-class toy: 45 patients, the first 15 with two images; logits lean to the true class.


@pytest.fixture(scope="module")
def multiclass_toy() -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(11)
    per_patient = rng.integers(0, 3, size=45)
    y = np.concatenate([np.repeat(per_patient[:15], 2), per_patient[15:]])
    patients = [f"p{i:02d}" for i in range(15) for _ in range(2)] + [f"p{i:02d}" for i in range(15, 45)]
    logits = rng.normal(size=(y.size, 3)) + 1.5 * np.eye(3)[y]
    # A true Normal called COVID-19 with confidence, to pin the matrix's orientation.
    y[0], logits[0] = 0, [0.0, 0.0, 3.0]
    return y, logits, patients


def test_multiclass_metrics_equal_scikit_learn(xray_card: ModelCard, multiclass_toy) -> None:
    y, logits, patients = multiclass_toy
    cases = _cases([XRAY_LABELS[k] for k in y], patients)
    preds = Predictions(xray_card.id, xray_card.version, cases, logits)
    ev = evaluate_predictions(xray_card, _user_data(cases), preds, n_boot=N_BOOT, seed=0)
    (level,) = ev.levels
    p = softmax(logits, axis=1)
    predicted = p.argmax(axis=1)

    assert ev.task == "multiclass" and level.unit == "image"
    assert level.n == y.size and level.n_patients == 45
    assert level.accuracy == pytest.approx(skm.accuracy_score(y, predicted))
    counts = np.array(level.confusion_matrix.counts)
    np.testing.assert_array_equal(counts, skm.confusion_matrix(y, predicted, labels=[0, 1, 2]))
    normal, covid = XRAY_LABELS.index("Normal"), XRAY_LABELS.index("COVID-19")
    assert predicted[0] == covid  # rows are the truth, columns the prediction
    assert counts[normal][covid] == int(np.sum((y == normal) & (predicted == covid))) >= 1
    np.testing.assert_allclose(level.confusion_matrix.row_percent, 100.0 * counts / counts.sum(axis=1, keepdims=True))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, predicted, labels=[0, 1, 2])
    for k, name in enumerate(XRAY_LABELS):
        stats = level.per_class[name]
        assert stats.precision == pytest.approx(precision[k])
        assert stats.recall == pytest.approx(recall[k])
        assert stats.f1 == pytest.approx(f1[k])
        assert stats.support == support[k]
        negatives = y != k
        assert stats.specificity == pytest.approx(np.mean(predicted[negatives] != k))
        assert stats.auc == pytest.approx(skm.roc_auc_score(y == k, p[:, k]))
        assert level.roc[name].auc == stats.auc
        assert stats.average_precision == pytest.approx(skm.average_precision_score(y == k, p[:, k]))
        low, high = stats.auc_ci
        assert 0.0 <= low <= stats.auc <= high <= 1.0
    assert level.macro_auc == pytest.approx(np.mean([skm.roc_auc_score(y == k, p[:, k]) for k in range(3)]))


def _hand_ece(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE with bins (b/n, (b+1)/n], written out."""
    confidence = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    which = np.clip(np.ceil(confidence * n_bins).astype(int) - 1, 0, n_bins - 1)
    return sum(
        np.sum(which == b) / y.size * abs(correct[which == b].mean() - confidence[which == b].mean())
        for b in range(n_bins)
        if np.any(which == b)
    )


def test_temperature_lowers_the_calibration_error_of_an_overconfident_model(xray_card: ModelCard) -> None:
    rng = np.random.default_rng(5)
    calibrated_logits = rng.normal(scale=1.2, size=(400, 3))
    # Truth drawn from softmax(calibrated logits): calibrated by construction; the model says 4x.
    y = np.array([rng.choice(3, p=row) for row in softmax(calibrated_logits, axis=1)])
    logits = 4.0 * calibrated_logits
    cases = _cases([XRAY_LABELS[k] for k in y], [f"p{i}" for i in range(y.size)])
    card = dataclasses.replace(
        xray_card, temperature=4.0, training={"calibration": {"fitted_on": "dev split (60 images)"}}
    )
    ev = evaluate_predictions(card, _user_data(cases), Predictions(card.id, card.version, cases, logits), n_boot=N_BOOT)
    calibration = ev.levels[0].calibration
    assert calibration.temperature == 4.0 and calibration.fitted_on == "dev split (60 images)"
    assert ev.model.temperature_fitted is True
    before, after = calibration.uncalibrated.ece, calibration.calibrated.ece
    assert before == pytest.approx(_hand_ece(y, softmax(logits, axis=1)))
    assert after == pytest.approx(_hand_ece(y, softmax(calibrated_logits, axis=1)))
    assert after < before
    assert sum(b.count for b in calibration.calibrated.bins) == y.size

    raw = evaluate_predictions(
        xray_card, _user_data(cases), Predictions(xray_card.id, xray_card.version, cases, logits), n_boot=N_BOOT
    )
    assert raw.levels[0].calibration.calibrated is None
    assert raw.model.temperature_fitted is False
    assert any("raw" in note for note in raw.notes)


# --------------------------------------------------------------------------------------------
# CT: slice, scan and patient levels


#: (patient, label) of each scan; pa and pe have two scans each, pv is viral pneumonia.
CT_SCANS = [
    ("pa", "COVID-19"), ("pa", "COVID-19"), ("pb", "Normal"), ("pc", "Normal"), ("pd", "COVID-19"),
    ("pe", "Normal"), ("pe", "COVID-19"), ("pf", "Normal"), ("pv", "Viral pneumonia"), ("pg", "COVID-19"),
]  # fmt: skip
SLICES_PER_SCAN = 8


@pytest.fixture(scope="module")
def slice_toy() -> tuple[tuple[EvalCase, ...], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    cases = _cases([label for _, label in CT_SCANS], [patient for patient, _ in CT_SCANS])
    slice_case = np.repeat(np.arange(len(cases)), SLICES_PER_SCAN)
    truth = np.full(slice_case.size, np.nan)
    for i, case in enumerate(cases):
        rows = np.flatnonzero(slice_case == i)
        if case.label == "COVID-19":
            truth[rows[2:6]] = 1.0  # lesion slices; the others unknown
        elif case.label == "Normal":
            truth[rows[1:7]] = 0.0  # lung slices of a normal scan
    logits = rng.normal(size=(slice_case.size, 2))
    logits[:, 1] += 1.2 * np.nan_to_num(truth, nan=0.5)
    return cases, logits, slice_case, truth


def test_slice_model_is_measured_per_slice_scan_and_patient(tmp_path: Path, slice_toy) -> None:
    cases, logits, slice_case, truth = slice_toy
    card = register_tiny_ct_model(tmp_path, "ct-slice-tiny", temperature=1.5, thresholds={"covid": 0.4})
    preds = Predictions(card.id, card.version, cases, logits, slice_case=slice_case, slice_truth=truth)
    ev = evaluate_predictions(card, _user_data(cases), preds, n_boot=N_BOOT)
    assert [lv.unit for lv in ev.levels] == ["slice", "scan", "patient"]
    s_cal = softmax(logits / 1.5, axis=1)[:, 1]

    slices = _level(ev, "slice")
    known = ~np.isnan(truth)
    assert slices.n == int(known.sum())
    assert slices.roc["COVID-19"].auc == pytest.approx(skm.roc_auc_score(truth[known], s_cal[known]))

    scans = _level(ev, "scan")
    kept = [i for i, c in enumerate(cases) if c.label != "Viral pneumonia"]
    y = np.array([int(cases[i].label == "COVID-19") for i in kept])
    score = np.array([patient_score(s_cal[slice_case == i]) for i in kept])
    assert scans.n == len(kept) == len(cases) - 1
    assert list(scans.scores.y) == y.tolist()
    np.testing.assert_allclose(scans.scores.p, score, atol=1e-6)
    assert scans.roc["COVID-19"].auc == pytest.approx(skm.roc_auc_score(y, score))
    called = score >= 0.4
    op = scans.operating_point
    assert op.threshold == 0.4 and op.label == "COVID-19"
    assert (op.tp, op.fp, op.tn, op.fn) == (
        int(np.sum(called & (y == 1))),
        int(np.sum(called & (y == 0))),
        int(np.sum(~called & (y == 0))),
        int(np.sum(~called & (y == 1))),
    )
    assert any("viral pneumonia" in note for note in ev.notes)
    # the scan score is a summary of calibrated slices, and the evaluation says so
    assert slices.note is None and "not this summary" in scans.note

    patients = _level(ev, "patient")
    best: dict[str, tuple[int, float]] = {}
    for i, yi, si in zip(kept, y, score, strict=True):
        pid = cases[i].patient_id
        old_y, old_s = best.get(pid, (0, -1.0))
        best[pid] = (max(old_y, int(yi)), max(old_s, float(si)))
    assert patients.n == len(best) == 7  # pe: one normal and one COVID-19 scan -> positive
    got = sorted(zip(patients.scores.y, patients.scores.p, strict=True))
    want = sorted(best.values())
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-6)


def test_an_evaluation_reads_back_from_the_json_the_cli_prints(tmp_path: Path, slice_toy) -> None:
    cases, logits, slice_case, truth = slice_toy
    card = register_tiny_ct_model(tmp_path, "ct-slice-tiny", temperature=1.5, thresholds={"covid": 0.4})
    preds = Predictions(card.id, card.version, cases, logits, slice_case=slice_case, slice_truth=truth)
    ev = evaluate_predictions(card, _user_data(cases), preds, n_boot=N_BOOT)
    doc = json.loads(json.dumps(ev.to_json()))

    assert Evaluation.from_json(doc) == ev
    assert list(doc) == ["model", "data", "task", "levels", "kfold", "robustness", "notes"]
    level = doc["levels"][1]
    assert list(level) == [
        "unit", "n", "n_patients", "labels", "positive", "accuracy", "confusion_matrix", "per_class", "macro_auc",
        "roc", "pr", "calibration", "operating_point", "skipped_labels", "note", "scores",
    ]  # fmt: skip
    assert level["unit"] == "scan" and level["operating_point"]["threshold"] == 0.4
    assert list(level["per_class"]["COVID-19"]) == [
        "precision", "recall", "specificity", "f1", "support", "prevalence", "auc", "auc_ci", "average_precision",
    ]  # fmt: skip
    assert list(level["calibration"]["calibrated"]["bins"][0]) == ["lo", "hi", "confidence", "accuracy", "count"]


def test_covid3d_is_measured_per_scan_and_patient_with_every_class(tmp_path: Path) -> None:
    card = register_tiny_ct_model(tmp_path, "covid3d-tiny", temperature=2.0, thresholds={"covid": 0.6})
    cases = _cases([label for _, label in CT_SCANS], [patient for patient, _ in CT_SCANS])
    y = np.array([int(c.label == "COVID-19") for c in cases])
    logits = (np.random.default_rng(8).normal(size=y.size) + 1.5 * y)[:, None]
    ev = evaluate_predictions(card, _user_data(cases), Predictions(card.id, card.version, cases, logits), n_boot=N_BOOT)
    assert [lv.unit for lv in ev.levels] == ["scan", "patient"]
    scans = _level(ev, "scan")
    assert scans.n == len(cases)  # COVID3D tells COVID-19 from everything else, viral included
    p = expit(logits[:, 0] / 2.0)
    assert scans.roc["COVID+"].auc == pytest.approx(skm.roc_auc_score(y, p))
    np.testing.assert_allclose(scans.scores.p, p, atol=1e-6)  # calibrated: sigmoid(logit / T)
    op = scans.operating_point
    assert (op.tp, op.fp) == (int(np.sum((p >= 0.6) & (y == 1))), int(np.sum((p >= 0.6) & (y == 0))))
    assert _level(ev, "patient").n == len({c.patient_id for c in cases})


# --------------------------------------------------------------------------------------------
# Findings (multi-label)


def test_findings_use_each_findings_threshold_and_skip_findings_without_positives(tmp_path: Path) -> None:
    card = register_tiny_findings_model(tmp_path)
    labels = list(card.labels)
    absent = "Lung Lesion"
    card = dataclasses.replace(card, thresholds={"Cardiomegaly": 0.3, "Lung Opacity": 0.75})
    rng = np.random.default_rng(21)
    findings = (rng.random((80, len(labels))) < 0.35).astype(int)
    findings[:, labels.index(absent)] = 0
    assert all(0 < findings[:, j].sum() < 80 for j in range(len(labels)) if labels[j] != absent)
    logits = rng.normal(size=findings.shape) + 1.5 * findings - 0.5
    cases = _cases(["Normal"] * 80, [f"p{i // 2}" for i in range(80)], findings)
    ev = evaluate_predictions(card, _user_data(cases), Predictions(card.id, card.version, cases, logits), n_boot=N_BOOT)
    (level,) = ev.levels
    assert ev.task == "multilabel"
    assert level.skipped_labels == (absent,)
    assert absent not in level.roc and level.per_class[absent].auc is None
    p = expit(logits)
    for j, name in enumerate(labels):
        threshold = card.thresholds.get(name, 0.5)
        stats = level.per_class[name]
        assert stats.threshold == threshold
        called = p[:, j] >= threshold
        truth = findings[:, j] == 1
        assert stats.specificity == pytest.approx(np.mean(~called[~truth]))
        if name != absent:
            assert stats.recall == pytest.approx(np.mean(called[truth]))
            assert level.roc[name].auc == pytest.approx(skm.roc_auc_score(truth, p[:, j]))


# --------------------------------------------------------------------------------------------
# Series models: what their cards recorded at training time


def _survival_card(metrics: dict) -> ModelCard:
    return ModelCard(
        id="survival-test",
        version="test-1",
        architecture="cnn-lstm",
        architecture_kwargs={},
        weights_file="survival-test.pt",
        sha256="0" * 64,
        input_kind="xray-series",
        input=InputSpec(64, 3, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), "test"),
        labels=("Survival",),
        gradcam_layer="",
        intended_use="test",
        temperature=0.8,
        thresholds={"death": 0.4},
        metrics=metrics,
        extra={"task": "survival"},
    )


SURVIVAL_HELD_OUT = {
    "n": 50,
    "threshold": 0.4,
    "roc_auc": 0.87,
    "brier": 0.061,
    "confusion_matrix": {"labels": ["Survived", "Died"], "rows_true_columns_predicted": [[38, 4], [2, 6]]},
}


def test_a_survival_model_shows_its_recorded_held_out_counts() -> None:
    card = _survival_card({"held_out": SURVIVAL_HELD_OUT})
    assert model_kind(card) == "survival"
    ev = recorded_evaluation(card)
    (level,) = ev.levels
    assert level.confusion_matrix.counts == ((38, 4), (2, 6))
    assert level.n == 50 and level.accuracy == pytest.approx(44 / 50)
    op = level.operating_point
    assert op.threshold == 0.4 and op.label == "Died"
    assert (op.tp, op.fn, op.tn, op.fp) == (6, 2, 38, 4)
    assert op.sensitivity == pytest.approx(6 / 8) and op.specificity == pytest.approx(38 / 42)
    assert level.per_class["Died"].precision == pytest.approx(6 / 10)
    assert level.macro_auc == 0.87 and level.per_class["Died"].auc == 0.87
    assert level.roc == {} and level.pr == {} and level.scores is None
    assert any("no curves" in note for note in ev.notes)
    assert any("0.061" in note for note in ev.notes)
    with pytest.raises(InvalidInputError, match="recorded at training time"):
        evaluation_data(card)
    with pytest.raises(InsufficientDataError):
        recorded_evaluation(_survival_card({}))


def test_recalibrating_a_survival_model_is_refused(tmp_path: Path) -> None:
    write_manifest_entry(tmp_path, _survival_card({"held_out": SURVIVAL_HELD_OUT}))
    with pytest.raises(InvalidInputError, match="dev split"):
        recalibrate("survival-test", tmp_path)


# --------------------------------------------------------------------------------------------
# The recorded split, rebuilt


def test_the_recorded_test_and_dev_splits_are_rebuilt_from_the_source(trained_card: ModelCard) -> None:
    recorded = trained_card.training["data"]
    test = evaluation_data(trained_card)
    assert test.split == "held-out"
    assert sorted(c.case_id for c in test.cases) == sorted(recorded["test_files"])
    dev = evaluation_data(trained_card, split="dev")
    assert dev.split == "dev"
    assert sorted(c.case_id for c in dev.cases) == sorted(recorded["dev_files"])
    assert not {c.case_id for c in test.cases} & {c.case_id for c in dev.cases}
    assert not {c.patient_id for c in test.cases} & {c.patient_id for c in dev.cases}
    train = evaluation_data(trained_card, split="train")  # where the OOD reference is fitted
    assert train.split == "train" and len(train.cases) == sum(recorded["images"]["train"].values())
    assert not {c.case_id for c in train.cases} & ({c.case_id for c in test.cases} | {c.case_id for c in dev.cases})
    with pytest.raises(InvalidInputError, match="split must be"):
        evaluation_data(trained_card, split="validation")


def test_a_renamed_image_means_the_data_changed(trained: TrainedXray, trained_card: ModelCard, tmp_path) -> None:
    copy = tmp_path / "dataset"
    shutil.copytree(trained.dataset, copy)
    data = dict(trained_card.training["data"], source=str(copy))  # the class folders this time
    card = dataclasses.replace(trained_card, training=dict(trained_card.training, data=data))
    assert sorted(c.case_id for c in evaluation_data(card).cases) == sorted(data["test_files"])
    held_out = copy / data["test_files"][0]
    held_out.rename(held_out.with_name("renamed.png"))
    with pytest.raises(InvalidInputError, match="data changed since training"):
        evaluation_data(card)


def test_a_demo_dataset_that_is_gone_is_drawn_again(trained: TrainedXray, trained_card: ModelCard, tmp_path) -> None:
    data = dict(trained_card.training["data"], source=str(tmp_path / "gone" / "manifest.csv"))
    card = dataclasses.replace(trained_card, training=dict(trained_card.training, data=data))
    rebuilt = evaluation_data(card)
    assert "drawn again" in rebuilt.description
    assert sorted(c.case_id for c in rebuilt.cases) == sorted(data["test_files"])
    for case in rebuilt.cases:  # the same pixels as the images the model was tested on
        original = trained.dataset / case.case_id
        np.testing.assert_array_equal(case.load(), read_xray(original.read_bytes(), original.name).windowed())

    no_note = dict(data, note="images from a hospital PACS")
    card = dataclasses.replace(trained_card, training=dict(trained_card.training, data=no_note))
    with pytest.raises(InvalidInputError, match="not on this machine"):
        evaluation_data(card)


# --------------------------------------------------------------------------------------------
# Which cases models can be compared on


def _with_test_files(card: ModelCard, files: list[str]) -> ModelCard:
    return dataclasses.replace(card, id=f"{card.id}-{len(files)}", training={"data": {"test_files": files}})


def test_models_are_compared_on_the_cases_every_one_of_them_held_out(xray_card: ModelCard) -> None:
    cases = _cases(["Normal", "COVID-19", "COVID-19", "Normal"], ["p1", "p2", "p3", "p4"])
    ids = [c.case_id for c in cases]
    a = _with_test_files(xray_card, ids[:3])
    b = _with_test_files(xray_card, ids[1:] + ["elsewhere.png"])
    held = EvalData("held-out", "a held-out split", "test", cases)
    assert held_out_for(a, cases) == set(ids[:3])
    shared = comparison_cases([a, b], held)
    assert [c.case_id for c in shared.cases] == ids[1:3]
    assert comparison_cases([a, b], _user_data(cases)).cases == cases  # a user's data: every case
    disjoint = _with_test_files(xray_card, [ids[3]])
    with pytest.raises(InsufficientDataError):
        comparison_cases([a, disjoint], held)


def test_patients_the_slice_model_never_saw_count_as_held_out(ct_weights: Path) -> None:
    registry = ModelRegistry(ct_weights, device=CPU)
    cases = _cases(["COVID-19", "Viral pneumonia", "Normal"], ["p-test", "p-viral", "p-train"])
    recorded = {"data": {"test_patients": ["p-test"]}}
    slice_card = dataclasses.replace(registry.card("ct-slice-tiny"), training=recorded)
    volume_card = dataclasses.replace(registry.card("covid3d-tiny"), training=recorded)
    assert held_out_for(slice_card, cases) == {"case-000", "case-001"}
    assert held_out_for(volume_card, cases) == {"case-000"}  # COVID3D trained on viral pneumonia too


# --------------------------------------------------------------------------------------------
# compare() and window_robustness() on real (tiny, untrained) models


def test_compare_gives_each_models_auc_and_a_symmetric_delong_test(trained: TrainedXray, tiny_weights: Path) -> None:
    registry = ModelRegistry(tiny_weights, device=CPU)
    models = [registry.load("cxr-custom"), registry.load("cxr-resnet18")]
    data = evaluation_data(models[0].card, trained.dataset)
    assert data.split == "user" and len(data.cases) == 18

    samples = load_source(trained.dataset)
    probs = {
        model.id: np.array(
            [predict_xray(model, read_xray(s.path.read_bytes(), s.path.name)).probabilities for s in samples]
        )
        for model in models
    }

    def expected_auc(model_id: str, label: str) -> float:
        y = np.array([s.label == label for s in samples])
        return skm.roc_auc_score(y, probs[model_id][:, XRAY_LABELS.index(label)])

    expected = {model.id: expected_auc(model.id, "COVID-19") for model in models}
    result = compare(models, data, n_boot=N_BOOT, seed=0)
    assert result.n == 18 and result.unit == "image" and result.positive == "COVID-19"
    for m in result.models:
        assert m.auc == pytest.approx(expected[m.id], abs=1e-9)
        assert m.auc_ci[0] <= m.auc <= m.auc_ci[1]
    viral = compare(models, data, n_boot=N_BOOT, seed=0, positive="Viral pneumonia")
    assert viral.positive == "Viral pneumonia"
    for m in viral.models:  # another class against the rest
        assert m.auc == pytest.approx(expected_auc(m.id, "Viral pneumonia"), abs=1e-9)
    (pair,) = result.pairs
    assert 0.0 <= pair.delong_p <= 1.0
    assert pair.difference == pytest.approx(expected[pair.a] - expected[pair.b])
    assert Comparison.from_json(json.loads(json.dumps(result.to_json()))) == result
    (swapped,) = compare(models[::-1], data, n_boot=N_BOOT, seed=0).pairs
    assert (swapped.a, swapped.b) == (pair.b, pair.a)
    assert swapped.delong_p == pytest.approx(pair.delong_p)
    assert swapped.difference == pytest.approx(-pair.difference)


def test_an_xray_and_a_ct_model_cannot_be_compared(tiny_weights: Path, ct_weights: Path) -> None:
    xray = ModelRegistry(tiny_weights, device=CPU).load("cxr-custom")
    ct = ModelRegistry(ct_weights, device=CPU).load("covid3d-tiny")
    data = _user_data(_cases(["COVID-19", "Normal"], ["p1", "p2"]))
    with pytest.raises(InvalidInputError, match="Compare"):
        compare([xray, ct], data)


@pytest.fixture(scope="module")
def covid3d(ct_weights: Path):  # noqa: ANN201 - a LoadedModel
    return ModelRegistry(ct_weights, device=CPU).load("covid3d-tiny")


@pytest.fixture(scope="module")
def demo_ct(covid3d) -> EvalData:
    data = evaluation_data(covid3d.card, "demo:6")
    labels = [c.label for c in data.cases]
    assert "COVID-19" in labels and len(set(labels)) > 1
    return data


def test_window_robustness_scores_windows_around_the_training_window(covid3d, demo_ct: EvalData) -> None:
    sd = (40.0, 120.0)
    rob = window_robustness(covid3d, demo_ct, n_windows=4, sd=sd, seed=1)
    center, width = covid3d.card.input.window
    assert rob.training_window == (center, width)
    assert len(rob.windows) == len(rob.aucs) == rob.n_windows == 4
    for c, w in rob.windows:
        assert abs(c - center) <= sd[0] + 0.05 and abs(w - width) <= sd[1] + 0.05
    assert len({tuple(w) for w in rob.windows}) == 4
    for low, median, high in zip(rob.tpr_low, rob.tpr_median, rob.tpr_high, strict=True):
        assert low <= median <= high
    at_training = evaluate(covid3d, demo_ct, n_boot=N_BOOT)
    assert rob.auc_training_window == pytest.approx(_level(at_training, "scan").roc["COVID+"].auc)
    assert rob.auc_min <= rob.auc_mean <= rob.auc_max


# --------------------------------------------------------------------------------------------
# Recalibration after training


def test_recalibration_fits_the_temperature_on_the_dev_split_and_keeps_the_weights(
    trained: TrainedXray, tmp_path: Path
) -> None:
    fitted_at_training = trained.entry()["training"]["calibration"]
    weights = copy_weights(trained.weights, tmp_path / "weights")
    forget_calibration(weights, TRAINED_ID)
    before = read_entry(weights, TRAINED_ID)
    digest = sha256_of(weights / before["weights_file"])

    result = recalibrate(TRAINED_ID, weights, registry=ModelRegistry(weights, device=CPU))
    entry = read_entry(weights, TRAINED_ID)
    record = entry["training"]["calibration"]
    assert entry["temperature"] == record["temperature"] == pytest.approx(result.calibration.temperature)
    # The same dev split and weights as at training time: the same temperature.
    assert entry["temperature"] == pytest.approx(fitted_at_training["temperature"], rel=1e-3)
    dev_files = before["training"]["data"]["dev_files"]
    assert record["fitted_on"] == f"dev split ({len(dev_files)} images)"
    assert sha256_of(weights / entry["weights_file"]) == digest == entry["sha256"]
    assert entry["metrics"] == before["metrics"] and not result.thresholds_changed

    # The NLLs it records are those of the dev images, run one by one through the app's path.
    model = ModelRegistry(trained.weights, device=CPU).load(TRAINED_ID)
    model = dataclasses.replace(model, card=dataclasses.replace(model.card, temperature=1.0))
    log_p, y = [], []
    for name in dev_files:
        path = trained.dataset / name
        log_p.append(np.log(predict_xray(model, read_xray(path.read_bytes(), path.name)).probabilities))
        y.append(XRAY_LABELS.index(_label_of(name)))
    log_p, y = np.array(log_p), np.array(y)

    def nll(t: float) -> float:
        return float(-np.log(softmax(log_p / t, axis=1)[np.arange(y.size), y]).mean())

    assert record["nll_before"] == pytest.approx(nll(1.0), abs=1e-5)
    assert record["nll_after"] == pytest.approx(nll(entry["temperature"]), abs=1e-5)
    assert record["nll_after"] <= record["nll_before"]


def _label_of(relative_path: str) -> str:
    return canonical_label(Path(relative_path).parts[0])


def test_the_slice_models_scan_levels_use_the_scan_scores_own_threshold(tmp_path: Path, slice_toy) -> None:
    cases, logits, slice_case, truth = slice_toy
    card = register_tiny_ct_model(tmp_path, "ct-slice-tiny", thresholds={"covid": 0.4, "scan": 0.7})
    preds = Predictions(card.id, card.version, cases, logits, slice_case=slice_case, slice_truth=truth)
    ev = evaluate_predictions(card, _user_data(cases), preds, n_boot=N_BOOT)
    thresholds = {lv.unit: lv.operating_point.threshold for lv in ev.levels}
    assert thresholds == {"slice": 0.4, "scan": 0.7, "patient": 0.7}
    scans = _level(ev, "scan")
    called = np.array(scans.scores.p) >= 0.7
    assert scans.operating_point.tp + scans.operating_point.fp == int(called.sum())
