"""Training the survival and prognosis models: the model cards of the tiny models of
tests/survival_helpers.py checked against the demo patients they were trained on, and the shared
pieces of core.training.loop (split, class weights, temperature, early stopping)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.datasets.splits import split_patients
from core.errors import InsufficientDataError
from core.evaluation.binary import binary_metrics
from core.evaluation.calibration import fit_temperature
from core.models.prognosis import Covid3DPrognosis
from core.models.registry import ModelRegistry, sha256_of
from core.models.survival import CnnLstmSurvival
from core.survival.cohort import demo_patients
from core.training.loop import balanced_weights, fit_binary
from core.training.prognosis import PrognosisTrainConfig, items_of, train_prognosis
from core.training.survival import SurvivalTrainConfig, train_survival
from tests.survival_helpers import (
    CT_ID,
    PROGNOSIS_IDS,
    PROGNOSIS_PATIENTS,
    SURVIVAL_ID,
    SURVIVAL_PATIENTS,
    survival_weights,  # noqa: F401
)


@pytest.fixture(scope="module")
def registry(survival_weights: Path) -> ModelRegistry:  # noqa: F811
    return ModelRegistry(survival_weights, device=torch.device("cpu"))


def check_confusion(held_out: dict, classes: list[str], n: int, positives: int) -> None:
    """Rows are the true classes [negative, positive], columns the predicted; counts add up."""
    cm = held_out["confusion_matrix"]
    assert cm["labels"] == classes
    (tn, fp), (fn, tp) = cm["rows_true_columns_predicted"]
    assert (held_out["n"], held_out["positives"]) == (n, positives)
    assert tn + fp + fn + tp == n
    assert fn + tp == positives  # the second row is the truly positive
    assert held_out["accuracy"] == pytest.approx((tp + tn) / n)


def check_km(km: dict, at_most: int) -> None:
    if "message" in km:
        assert isinstance(km["message"], str) and km["message"].strip()
        assert "Traceback" not in km["message"]
        return
    names = [g["name"] for g in km["groups"]]
    assert names and set(names) <= {"Low risk", "High risk"}
    assert sum(g["n"] for g in km["groups"]) <= at_most


def test_survival_card_loads_and_its_held_out_numbers_match_the_patients(registry: ModelRegistry) -> None:
    card = registry.card(SURVIVAL_ID)
    assert sha256_of(registry.weights_dir / card.weights_file) == card.sha256
    model = registry.load(SURVIVAL_ID)  # checks the digest
    assert isinstance(model.module, CnnLstmSurvival)
    assert (card.architecture, card.input_kind, card.labels) == ("cnn-lstm", "xray-series", ("Survival",))
    assert card.extra["task"] == "survival" and card.input.size == 32
    assert 0.2 <= card.temperature <= 10.0
    assert card.temperature == card.training["calibration"]["temperature"]
    assert card.training["calibration"]["fitted_on"].startswith("dev split")
    assert card.thresholds == {"death": 0.5}
    assert 1 <= card.training["best_epoch"] <= card.training["epochs_run"] <= 2

    by_id = {p.patient_id: p for p in demo_patients(SURVIVAL_PATIENTS, seed=1)}
    held = card.training["data"]["held_out_patients"]
    assert held and set(held) <= set(by_id)
    assert all(by_id[pid].label == "COVID-19" and by_id[pid].xrays() for pid in held)
    known = [by_id[pid] for pid in held if by_id[pid].outcome in ("discharged", "died")]
    held_out = card.metrics["held_out"]
    check_confusion(held_out, ["Survived", "Died"], len(known), sum(p.outcome == "died" for p in known))
    assert "roc_auc" in held_out and (held_out["roc_auc"] is None or 0.0 <= held_out["roc_auc"] <= 1.0)
    check_km(held_out["km"], len(held))


@pytest.mark.parametrize("scans", [1, 2])
def test_prognosis_cards_load_and_their_held_out_numbers_match_the_items(registry: ModelRegistry, scans: int) -> None:
    model_id = PROGNOSIS_IDS[scans]
    card = registry.card(model_id)
    model = registry.load(model_id)
    assert isinstance(model.module, Covid3DPrognosis) and model.module.scans == scans
    assert (card.input_kind, card.labels, card.architecture_kwargs["scans"]) == (
        "ct-volume-series",
        ("High risk",),
        scans,
    )
    assert card.input == registry.card(CT_ID).input  # COVID3D's own input
    assert card.extra["task"] == "prognosis"
    assert 0.2 <= card.temperature <= 10.0
    assert card.temperature == card.training["calibration"]["temperature"]
    assert card.training["calibration"]["fitted_on"].startswith("dev split")

    by_id = {p.patient_id: p for p in demo_patients(PROGNOSIS_PATIENTS, seed=1)}
    held = card.training["data"]["held_out_patients"]
    assert held and set(held) <= set(by_id)
    items = [it for pid in held for it in items_of(by_id[pid], scans) if by_id[pid].high_risk(it.day) is not None]
    high = sum(by_id[it.patient_id].high_risk(it.day) for it in items)
    check_confusion(card.metrics["held_out"], ["Low risk", "High risk"], len(items), high)
    check_km(card.metrics["held_out"]["km"], len(held))


def test_one_and_two_scan_models_hold_out_the_same_patients(registry: ModelRegistry) -> None:
    one, two = (registry.card(PROGNOSIS_IDS[s]).training["data"]["held_out_patients"] for s in (1, 2))
    assert one == two


def test_items_are_each_ct_or_each_consecutive_pair() -> None:
    patient = next(p for p in demo_patients(40, seed=1) if len(p.cts()) >= 3)
    days = [c.day for c in patient.cts()]
    assert [it.day for it in items_of(patient, 1)] == days
    assert [[s.day for s in it.scans] for it in items_of(patient, 2)] == [
        [a, b] for a, b in zip(days, days[1:], strict=False)
    ]


# -- core.training.loop ----------------------------------------------------------------------


def test_split_keeps_patients_whole_and_each_outcome_in_proportion() -> None:
    strata = {f"p{i:03d}": "discharged" for i in range(100)} | {f"d{i:03d}": "died" for i in range(20)}
    strata |= {f"h{i:03d}": "in hospital" for i in range(10)}
    parts = split_patients(strata, seed=0, fractions=(0.7, 0.1, 0.2))
    assert set().union(*parts.values()) == set(strata)
    assert sum(len(v) for v in parts.values()) == len(strata)  # no patient in two parts
    totals = Counter(strata.values())
    for name, fraction in zip(("train", "dev", "test"), (0.7, 0.1, 0.2), strict=True):
        counts = Counter(strata[pid] for pid in parts[name])
        for stratum, total in totals.items():
            assert abs(counts[stratum] - total * fraction) <= 1, (name, stratum, counts)
    assert split_patients(strata, seed=0, fractions=(0.7, 0.1, 0.2)) == parts
    assert split_patients(strata, seed=1, fractions=(0.7, 0.1, 0.2))["test"] != parts["test"]


def test_split_of_too_few_patients_says_so() -> None:
    with pytest.raises(InsufficientDataError, match="Too few patients for a"):
        split_patients({"a": "died", "b": "discharged"}, seed=0, fractions=(0.7, 0.1, 0.2))


def test_balanced_weights_give_each_class_half() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 1, 0, 0])
    w = balanced_weights(y)
    assert w[y == 1].sum() == pytest.approx(w.sum() / 2)
    assert w[y == 0].sum() == pytest.approx(w.sum() / 2)
    assert w.sum() == pytest.approx(len(y))
    np.testing.assert_array_equal(balanced_weights([0, 0, 0]), np.ones(3))


def nll(z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def test_temperature_tames_an_over_confident_model_and_leaves_a_calibrated_one() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0.0, 2.0, 20_000)
    y = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-z))).astype(float)  # calibrated by construction
    assert fit_temperature(z, y) == pytest.approx(1.0, abs=0.08)
    t = fit_temperature(5.0 * z, y)
    assert t == pytest.approx(5.0, rel=0.1)
    assert nll(5.0 * z / t, y) < nll(5.0 * z, y) - 0.1
    assert fit_temperature(z, np.ones_like(y)) == 1.0  # one class: nothing to fit
    assert 0.2 <= fit_temperature(100.0 * z, y) <= 10.0


def test_binary_metrics_rows_are_the_truth() -> None:
    m = binary_metrics(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.7, 0.8, 0.2, 0.9]), 0.5, ("Low", "High"))
    assert m["confusion_matrix"]["rows_true_columns_predicted"] == [[1, 1], [1, 2]]
    assert (m["sensitivity"], m["specificity"]) == (pytest.approx(2 / 3), pytest.approx(1 / 2))


def test_fit_binary_keeps_the_epoch_with_the_lowest_dev_loss() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = (x[:, 0] > 0).float()
    w = torch.ones(64)
    model = torch.nn.Linear(2, 1)
    dev_x = torch.randn(32, 2)
    dev_y = (dev_x[:, 0] < 0).float()  # the opposite rule: every training step makes the dev loss worse
    fit = fit_binary(
        model,
        model,
        lambda epoch: [((x,), y, w)],
        lambda: [((dev_x,), dev_y, torch.ones(32))],
        lr=0.1,
        max_epochs=20,
        patience=2,
        progress=False,
    )
    losses = [h["dev_loss"] for h in fit.history]
    assert len(fit.history) == 3  # the first epoch, then two without improvement
    assert fit.best_epoch == 1 + int(np.argmin(losses))
    model.load_state_dict(fit.state)
    with torch.no_grad():
        dev = torch.nn.functional.binary_cross_entropy_with_logits(model(dev_x).reshape(-1), dev_y)
    assert float(dev) == pytest.approx(min(losses), rel=1e-5)


# -- refusals ------------------------------------------------------------------------------


def test_survival_training_with_too_few_deaths_says_so_plainly(tmp_path: Path) -> None:
    patients = demo_patients(SURVIVAL_PATIENTS, seed=1)
    deaths = [p for p in patients if p.outcome == "died"]
    assert len(deaths) >= 3  # otherwise this test would not test the cut
    few = [p for p in patients if p.outcome != "died"] + deaths[:2]
    config = SurvivalTrainConfig(cnn_init=None, size=32, fc_features=16, hidden=8, max_epochs=1)
    with pytest.raises(InsufficientDataError) as err:
        train_survival(few, tmp_path, config, source="test", progress=False)
    message = str(err.value)
    assert "at least 3 deaths and 3 discharges" in message
    assert "Traceback" not in message and "Error" not in message
    assert not any(tmp_path.iterdir())  # nothing written


def test_prognosis_training_on_too_few_patients_says_so_plainly(tmp_path: Path, survival_weights: Path) -> None:  # noqa: F811
    config = PrognosisTrainConfig(scans=2, init=CT_ID, init_weights_dir=str(survival_weights), max_epochs=1)
    with pytest.raises(InsufficientDataError) as err:
        train_prognosis(demo_patients(12, seed=1), tmp_path, config, source="test", progress=False)
    assert "prognosis needs more CT follow-ups" in str(err.value)
    assert not any(tmp_path.iterdir())
