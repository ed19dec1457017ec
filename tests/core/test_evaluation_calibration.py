"""Temperature scaling on the dev split: toys with a known generating model, made over- or
under-confident on purpose, checked against what temperature scaling must do and against a
brute-force search of the temperature."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import expit, softmax

from core.errors import InvalidInputError
from core.evaluation.calibration import Calibration, fit_calibration, fit_temperature

N = 2000


def calibrated_multiclass(rng: np.random.Generator, n: int = N, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, K) and class indices drawn from softmax(logits): calibrated by construction."""
    logits = rng.normal(0.0, 1.5, size=(n, k))
    cumulative = np.cumsum(softmax(logits, axis=1), axis=1)
    y = (rng.random(n)[:, None] > cumulative).sum(axis=1)
    return logits, np.minimum(y, k - 1)


def calibrated_binary(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Logits and 0/1 targets drawn from sigmoid(logits): calibrated by construction."""
    logits = rng.normal(0.0, 2.0, size=shape)
    return logits, (rng.random(shape) < expit(logits)).astype(int)


def mean_bce(z: np.ndarray, y: np.ndarray, t: float) -> float:
    """Binary cross-entropy of sigmoid(z / t), written out the long way."""
    p = np.clip(expit(z / t), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def test_an_over_confident_softmax_model_is_cooled_and_better_calibrated() -> None:
    logits, y = calibrated_multiclass(np.random.default_rng(0))
    cal = fit_calibration(5.0 * logits, y, "softmax", fitted_on="dev split (2000 images)")
    assert cal.temperature > 1.0
    assert cal.temperature == pytest.approx(5.0, rel=0.15)  # undoes the factor it was made with
    assert cal.nll_after < cal.nll_before
    assert cal.ece_after < cal.ece_before
    assert cal.n == N and cal.fitted_on == "dev split (2000 images)"


def test_an_under_confident_softmax_model_is_sharpened() -> None:
    logits, y = calibrated_multiclass(np.random.default_rng(1))
    cal = fit_calibration(logits / 3.0, y, "softmax", fitted_on="dev")
    assert cal.temperature < 1.0
    assert cal.temperature == pytest.approx(1.0 / 3.0, rel=0.15)
    assert cal.nll_after < cal.nll_before and cal.ece_after < cal.ece_before


@pytest.mark.parametrize("factor", [0.3, 5.0])
def test_the_predicted_class_never_changes(factor: float) -> None:
    logits, y = calibrated_multiclass(np.random.default_rng(2))
    z = factor * logits
    cal = fit_calibration(z, y, "softmax", fitted_on="dev")
    assert cal.temperature != pytest.approx(1.0, abs=0.05)
    np.testing.assert_array_equal(softmax(z / cal.temperature, axis=1).argmax(axis=1), z.argmax(axis=1))


def test_an_over_confident_sigmoid_is_cooled_with_the_survival_trainers_fit() -> None:
    z, y = calibrated_binary(np.random.default_rng(3), (N,))
    cal = fit_calibration(5.0 * z, y, "sigmoid", fitted_on="dev split (2000 patients)")
    assert cal.temperature > 1.0 and cal.temperature == pytest.approx(5.0, rel=0.15)
    assert cal.nll_after < cal.nll_before and cal.ece_after < cal.ece_before
    # The same number the survival and prognosis trainers have always stored.
    assert cal.temperature == fit_temperature(5.0 * z, y)
    assert cal.nll_before == pytest.approx(mean_bce(5.0 * z, y, 1.0))
    # One logit per case may come as a column.
    assert fit_calibration((5.0 * z)[:, None], y, "sigmoid", fitted_on="dev") == Calibration(
        cal.temperature, "dev", cal.n, cal.nll_before, cal.nll_after, cal.ece_before, cal.ece_after
    )


def test_an_under_confident_sigmoid_is_sharpened() -> None:
    z, y = calibrated_binary(np.random.default_rng(4), (N,))
    cal = fit_calibration(z / 3.0, y, "sigmoid", fitted_on="dev")
    assert cal.temperature < 1.0
    assert cal.nll_after < cal.nll_before


def test_multilabel_shares_one_temperature_and_ignores_a_label_with_one_class() -> None:
    rng = np.random.default_rng(5)
    z, y = calibrated_binary(rng, (N, 3))
    z = 4.0 * z  # over-confident on every label
    cal = fit_calibration(z, y, "multilabel", fitted_on="dev split (2000 images)")
    assert cal.temperature > 1.0 and cal.n == N
    assert cal.nll_after < cal.nll_before and cal.ece_after < cal.ece_before

    # One temperature minimising the mean BCE over every (case, label) pair: a brute-force search agrees.
    grid = np.exp(np.linspace(np.log(0.2), np.log(10.0), 801))
    best = grid[np.argmin([mean_bce(z, y, t) for t in grid])]
    assert cal.temperature == pytest.approx(best, rel=0.01)

    # A label no case has (with wild logits) and one every case has change nothing.
    absent = rng.normal(-8.0, 6.0, size=(N, 1))
    everywhere = rng.normal(8.0, 6.0, size=(N, 1))
    wider_z = np.hstack([z[:, :1], absent, z[:, 1:], everywhere])
    wider_y = np.hstack([y[:, :1], np.zeros((N, 1), int), y[:, 1:], np.ones((N, 1), int)])
    assert fit_calibration(wider_z, wider_y, "multilabel", fitted_on="dev split (2000 images)") == cal


def test_a_split_with_one_class_leaves_the_temperature_at_one() -> None:
    rng = np.random.default_rng(6)
    logits, _ = calibrated_multiclass(rng, n=50)
    assert fit_calibration(5.0 * logits, np.zeros(50, int), "softmax", fitted_on="dev").temperature == 1.0
    assert fit_calibration(rng.normal(size=50), np.ones(50), "sigmoid", fitted_on="dev").temperature == 1.0
    nothing = fit_calibration(rng.normal(size=(50, 2)), np.zeros((50, 2)), "multilabel", fitted_on="dev")
    assert nothing.temperature == 1.0 and nothing.n == 50 and math.isnan(nothing.ece_after)


def test_the_record_is_plain_json_and_says_where_the_temperature_came_from() -> None:
    logits, y = calibrated_multiclass(np.random.default_rng(7), n=200)
    record = fit_calibration(2.0 * logits, y, "softmax", fitted_on="dev split (200 images)").to_record()
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert record["fitted_on"] == "dev split (200 images)" and record["n"] == 200
    assert record["temperature"] > 1.0 and "temperature scaling" in record["method"]
    empty = fit_calibration(np.zeros((0, 3)), np.zeros(0, int), "softmax", fitted_on="dev").to_record()
    assert empty["temperature"] == 1.0 and empty["n"] == 0
    assert empty["nll_before"] is None and empty["ece_after"] is None  # NaN is not JSON
    json.dumps(empty, allow_nan=False)


@pytest.mark.parametrize(
    "logits,targets,output",
    [
        (np.zeros(4), np.zeros(4, int), "softmax"),  # no class axis
        (np.zeros((4, 3)), np.zeros(5, int), "softmax"),  # one target too many
        (np.zeros((4, 3)), np.zeros((4, 3), int), "softmax"),  # one-hot, not class indices
        (np.zeros((4, 3)), np.array([0, 1, 2, 3]), "softmax"),  # no class 3
        (np.zeros((4, 2)), np.zeros(4, int), "sigmoid"),  # two logits per case
        (np.zeros(4), np.zeros(3, int), "sigmoid"),
        (np.zeros(4), np.array([0, 1, 2, 1]), "sigmoid"),  # not 0/1
        (np.zeros((4, 3)), np.zeros((4, 2), int), "multilabel"),
        (np.zeros(4), np.zeros(4, int), "multilabel"),
        (np.array([0.0, np.inf]), np.array([0, 1]), "sigmoid"),
        (np.zeros((4, 3)), np.zeros(4, int), "softmax-ish"),
    ],
)
def test_inputs_that_do_not_fit_the_output_are_refused(logits, targets, output: str) -> None:
    with pytest.raises(InvalidInputError):
        fit_calibration(logits, targets, output, fitted_on="dev")
