"""The Model performance page's numbers: equal to scikit-learn where it has them, checked against
hand counts and naive estimators where it does not."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from scipy.special import softmax
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation import metrics as ev
from core.evaluation.calibration import fit_temperature


def binary_set(
    rng: np.random.Generator, n: int, shift: float = 1.0, decimals: int | None = None, prevalence: float = 0.5
):
    """(N,) 0/1 labels and scores where positives score ``shift`` higher on average."""
    y = (rng.random(n) < prevalence).astype(int)
    score = rng.normal(0.0, 1.0, size=n) + shift * y
    if decimals is not None:  # ties, as from a model with coarse outputs
        score = np.round(score, decimals)
    return y, score


def calibrated_multiclass(rng: np.random.Generator, n: int, k: int = 3):
    """Logits (N, K) and labels drawn from softmax(logits): calibrated by construction."""
    logits = rng.normal(0.0, 1.5, size=(n, k))
    probs = softmax(logits, axis=1)
    y = (rng.random(n)[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return logits, np.minimum(y, k - 1)


def nll(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(probs[np.arange(y.size), y]).mean())


# ---------------------------------------------------------------------------------------------
# Curves and counts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("decimals", [None, 1], ids=["continuous", "ties"])
def test_roc_pr_and_auc_equal_scikit_learn(rng: np.random.Generator, decimals: int | None) -> None:
    y, score = binary_set(rng, 300, decimals=decimals)
    curve = ev.roc(y, score)
    fpr, tpr, thresholds = skm.roc_curve(y, score)
    np.testing.assert_array_equal(curve.fpr, fpr)
    np.testing.assert_array_equal(curve.tpr, tpr)
    np.testing.assert_array_equal(curve.thresholds, thresholds)
    assert curve.auc == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)
    assert ev.roc_auc(y, score) == pytest.approx(skm.roc_auc_score(y, score), abs=1e-12)

    pr = ev.pr(y, score)
    precision, recall, pr_thresholds = skm.precision_recall_curve(y, score)
    np.testing.assert_array_equal(pr.precision, precision)
    np.testing.assert_array_equal(pr.recall, recall)
    np.testing.assert_array_equal(pr.thresholds, pr_thresholds)
    assert pr.average_precision == pytest.approx(skm.average_precision_score(y, score), abs=1e-12)


def test_one_vs_rest_curves_equal_scikit_learn_per_class(rng: np.random.Generator) -> None:
    logits, y = calibrated_multiclass(rng, 400)
    probs = softmax(logits, axis=1)
    labels = ["Normal", "Viral pneumonia", "COVID-19"]
    rocs = ev.one_vs_rest_roc(y, probs, labels)
    prs = ev.one_vs_rest_pr(y, probs, labels)
    assert list(rocs) == labels and list(prs) == labels
    for k, name in enumerate(labels):
        assert rocs[name].auc == pytest.approx(skm.roc_auc_score(y == k, probs[:, k]), abs=1e-12)
        assert prs[name].average_precision == pytest.approx(skm.average_precision_score(y == k, probs[:, k]))
    macro = np.mean([c.auc for c in rocs.values()])
    assert macro == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr"), abs=1e-12)


def test_per_label_leaves_out_a_finding_the_set_cannot_score(rng: np.random.Generator) -> None:
    targets = rng.integers(0, 2, size=(50, 3))
    targets[:, 2] = 1  # present in every case: no ROC curve, but a PR curve
    probs = rng.random((50, 3))
    labels = ["ground-glass", "consolidation", "effusion"]
    rocs = ev.per_label_roc(targets, probs, labels)
    assert list(rocs) == ["ground-glass", "consolidation"]
    assert rocs["consolidation"].auc == pytest.approx(skm.roc_auc_score(targets[:, 1], probs[:, 1]))
    assert list(ev.per_label_pr(targets, probs, labels)) == labels


def test_confusion_matrix_has_true_classes_in_rows_and_predictions_in_columns() -> None:
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 1, 1, 1, 2, 2]
    cm = ev.confusion_matrix(y_true, y_pred, ["Normal", "Viral pneumonia", "COVID-19"])
    # Normal: 1 right, 2 called viral; viral: 1 right, 1 called COVID; COVID: 1 right.
    np.testing.assert_array_equal(cm.counts, [[1, 2, 0], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_allclose(cm.row_percent[0], [100 / 3, 200 / 3, 0.0])
    assert cm.labels == ("Normal", "Viral pneumonia", "COVID-19")

    absent = ev.confusion_matrix([0, 0], [0, 1], ["a", "b"])
    assert np.isnan(absent.row_percent[1]).all()  # no true "b": no row percentages


def test_curves_on_one_class_say_what_is_missing() -> None:
    with pytest.raises(InsufficientDataError, match="one positive and one negative"):
        ev.roc([1, 1, 1], [0.2, 0.5, 0.9])
    with pytest.raises(InsufficientDataError, match="at least one positive"):
        ev.pr([0, 0], [0.2, 0.5])
    with pytest.raises(InvalidInputError, match="one value per case"):
        ev.roc([0, 1, 1], [0.2, 0.5])
    with pytest.raises(InvalidInputError, match="0 .negative. and 1"):
        ev.roc([0, 2], [0.2, 0.5])


# ---------------------------------------------------------------------------------------------
# Bootstrap
# ---------------------------------------------------------------------------------------------


def test_bootstrap_interval_contains_the_point_and_narrows_with_more_data() -> None:
    gen = np.random.default_rng(7)
    widths = {}
    for n in (200, 5000):
        y, score = binary_set(gen, n)
        point, low, high = ev.bootstrap_ci(ev.roc_auc, y, score, n_boot=500, seed=1)
        assert point == pytest.approx(skm.roc_auc_score(y, score))
        assert low < point < high
        widths[n] = high - low
    # Width goes as 1 / sqrt(n): 5x narrower expected.
    assert widths[5000] < widths[200] / 3


def test_bootstrap_is_deterministic_for_a_seed(rng: np.random.Generator) -> None:
    y, score = binary_set(rng, 150)
    first = ev.bootstrap_ci(ev.roc_auc, y, score, n_boot=200, seed=3)
    assert ev.bootstrap_ci(ev.roc_auc, y, score, n_boot=200, seed=3) == first
    assert ev.bootstrap_ci(ev.roc_auc, y, score, n_boot=200, seed=4) != first


def test_bootstrap_of_patients_keeps_each_patients_rows_together(rng: np.random.Generator) -> None:
    rows_per_patient = rng.integers(1, 5, size=40)
    groups = np.repeat([f"P{i:03d}" for i in range(40)], rows_per_patient)
    row_ids = np.arange(groups.size)
    y = rng.integers(0, 2, size=groups.size)
    resamples: list[np.ndarray] = []

    def record(_y: np.ndarray, p: np.ndarray) -> float:
        resamples.append(p.astype(int))
        return 0.0

    def patients_whole(ids: np.ndarray) -> bool:
        counts = np.bincount(ids, minlength=groups.size)
        # Every row of a patient appears as often as that patient's first row.
        first_row = np.repeat(np.cumsum(rows_per_patient) - rows_per_patient, rows_per_patient)
        return bool((counts == counts[first_row]).all())

    ev.bootstrap_ci(record, y, row_ids, n_boot=50, groups=groups, require_all_classes=False)
    assert len(resamples) == 51  # the point estimate, then each resample
    assert all(patients_whole(ids) for ids in resamples)

    resamples.clear()
    ev.bootstrap_ci(record, y, row_ids, n_boot=50, require_all_classes=False)
    assert not all(patients_whole(ids) for ids in resamples[1:])  # rows alone split patients


def test_bootstrap_of_patients_is_not_narrowed_by_repeated_images(rng: np.random.Generator) -> None:
    y, score = binary_set(rng, 300)
    repeats = 4  # four identical images of every patient
    y4, score4 = np.repeat(y, repeats), np.repeat(score, repeats)
    groups = np.repeat(np.arange(300), repeats)
    _, low, high = ev.bootstrap_ci(ev.roc_auc, y, score, n_boot=400)
    _, low_g, high_g = ev.bootstrap_ci(ev.roc_auc, y4, score4, n_boot=400, groups=groups)
    _, low_r, high_r = ev.bootstrap_ci(ev.roc_auc, y4, score4, n_boot=400)
    assert high_g - low_g == pytest.approx(high - low, rel=0.2)
    assert high_r - low_r < 0.7 * (high - low)  # rows alone: falsely about half as wide


def test_bootstrap_skips_one_class_resamples_and_fails_when_most_are() -> None:
    # Four classes, one case each: most resamples miss a class.
    with pytest.raises(InsufficientDataError, match=r"of 100 resamples lacked a class"):
        ev.bootstrap_ci(lambda y, p: 0.0, np.arange(4), np.zeros(4), n_boot=100)


def test_bootstrap_logs_the_resamples_it_skips(caplog: pytest.LogCaptureFixture) -> None:
    y = np.array([1] + [0] * 11)  # one positive: about a third of resamples miss it
    score = np.linspace(1.0, 0.0, 12)
    with caplog.at_level(logging.INFO, logger="core.evaluation.metrics"):
        point, low, high = ev.bootstrap_ci(ev.roc_auc, y, score, n_boot=200)
    assert point == 1.0 and low == high == 1.0
    assert "skipped" in caplog.text


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


def test_ece_equals_a_direct_computation_on_a_hand_example() -> None:
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0, 0])
    # Top-label confidence 0.9, 0.8, 0.7, 0.55, 0.6; right, wrong, right, wrong, right.
    # Bins of width 0.25: (0.5, 0.75] holds 0.7, 0.55, 0.6 (2 of 3 right, mean 1.85 / 3);
    # (0.75, 1] holds 0.9, 0.8 (1 of 2 right, mean 0.85).
    expected = 3 / 5 * abs(2 / 3 - 1.85 / 3) + 2 / 5 * abs(1 / 2 - 0.85)
    assert ev.expected_calibration_error(y, probs, n_bins=4) == pytest.approx(expected)
    bins = ev.reliability_bins(y, probs, n_bins=4)
    assert [(b.bin_low, b.bin_high, b.count) for b in bins] == [(0.5, 0.75, 3), (0.75, 1.0, 2)]
    assert bins[0].accuracy == pytest.approx(2 / 3) and bins[0].mean_confidence == pytest.approx(1.85 / 3)


def test_reliability_bins_match_scikit_learn_calibration_curve(rng: np.random.Generator) -> None:
    logits, y = calibrated_multiclass(rng, 1000)
    probs = softmax(3 * logits, axis=1)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(int)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=10, strategy="uniform")
    bins = ev.reliability_bins(y, probs, n_bins=10)
    np.testing.assert_allclose([b.accuracy for b in bins], accuracy)
    np.testing.assert_allclose([b.mean_confidence for b in bins], mean_confidence)
    assert sum(b.count for b in bins) == 1000


def test_ece_of_binary_probabilities_treats_them_as_two_classes(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, size=200)
    p = rng.random(200)
    two_class = np.stack([1 - p, p], axis=1)
    assert ev.expected_calibration_error(y, p) == pytest.approx(ev.expected_calibration_error(y, two_class))


def test_ece_is_small_when_calibrated_and_large_when_over_confident(rng: np.random.Generator) -> None:
    logits, y = calibrated_multiclass(rng, 20000)
    assert ev.expected_calibration_error(y, softmax(logits, axis=1)) < 0.02
    assert ev.expected_calibration_error(y, softmax(4 * logits, axis=1)) > 0.15


def test_ece_refuses_logits() -> None:
    with pytest.raises(InvalidInputError, match="not logits"):
        ev.expected_calibration_error([0, 1], np.array([[2.0, -1.0], [0.5, 3.0]]))


def test_temperature_scaling_repairs_an_over_confident_model(rng: np.random.Generator) -> None:
    logits, y = calibrated_multiclass(rng, 5000)
    over = 4 * logits
    temperature = fit_temperature(over, y, "softmax")
    assert temperature == pytest.approx(4.0, rel=0.15)
    before, after = softmax(over, axis=1), ev.apply_temperature(over, temperature)
    assert ev.expected_calibration_error(y, after) < ev.expected_calibration_error(y, before) / 3
    assert nll(after, y) < nll(before, y)
    np.testing.assert_array_equal(after.argmax(axis=1), over.argmax(axis=1))  # predictions unchanged


def test_temperature_of_a_calibrated_model_is_about_one(rng: np.random.Generator) -> None:
    logits, y = calibrated_multiclass(rng, 5000)
    assert fit_temperature(logits, y, "softmax") == pytest.approx(1.0, abs=0.1)


def test_apply_temperature_gives_probability_rows(rng: np.random.Generator) -> None:
    probs = ev.apply_temperature(rng.normal(0, 30, size=(20, 4)), 0.5)
    assert (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    with pytest.raises(InvalidInputError, match="positive"):
        ev.apply_temperature(np.zeros((2, 3)), 0.0)


# ---------------------------------------------------------------------------------------------
# Comparing two models
# ---------------------------------------------------------------------------------------------


def naive_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong (1988) from every (positive, negative) pair: the difference and its standard error."""
    comps10, comps01 = [], []
    for s in (a, b):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        comps10.append(psi.mean(axis=1))
        comps01.append(psi.mean(axis=0))
    s10, s01 = np.cov(comps10), np.cov(comps01)
    contrast = np.array([1.0, -1.0])
    variance = contrast @ s10 @ contrast / len(comps10[0]) + contrast @ s01 @ contrast / len(comps01[0])
    return float(comps10[0].mean() - comps10[1].mean()), float(np.sqrt(variance))


def correlated_pair(rng: np.random.Generator, n: int, extra_noise: float, prevalence: float = 0.5):
    """Two models' scores on the same cases: b is a plus more noise, so b is worse."""
    y, a = binary_set(rng, n, shift=1.2, decimals=1, prevalence=prevalence)
    return y, a, np.round(a + rng.normal(0.0, extra_noise, size=n), 1)


def test_delong_equals_a_naive_pairwise_delong_and_scikit_learn_aucs(rng: np.random.Generator) -> None:
    y, a, b = correlated_pair(rng, 250, 0.8, prevalence=0.2)  # unbalanced: positives and negatives differ
    result = ev.delong_test(y, a, b)
    assert result.auc_a == pytest.approx(skm.roc_auc_score(y, a), abs=1e-12)
    assert result.auc_b == pytest.approx(skm.roc_auc_score(y, b), abs=1e-12)
    difference, std_error = naive_delong(y, a, b)
    assert result.difference == pytest.approx(difference, abs=1e-12)
    assert result.std_error == pytest.approx(std_error, rel=1e-9)
    assert result.ci_low < result.difference < result.ci_high


def test_delong_of_identical_scores_finds_no_difference(rng: np.random.Generator) -> None:
    y, score = binary_set(rng, 100)
    result = ev.delong_test(y, score, score.copy())
    assert (result.difference, result.z, result.p_value) == (0.0, 0.0, 1.0)


def test_delong_finds_a_clearly_better_model_and_is_symmetric(rng: np.random.Generator) -> None:
    y, a, b = correlated_pair(rng, 400, 1.5)
    ab, ba = ev.delong_test(y, a, b), ev.delong_test(y, b, a)
    assert ab.difference > 0 and ab.p_value < 0.01
    assert ba.z == pytest.approx(-ab.z) and ba.p_value == pytest.approx(ab.p_value)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low))


def test_delong_variance_agrees_with_a_paired_bootstrap(rng: np.random.Generator) -> None:
    y, a, b = correlated_pair(rng, 400, 0.8)
    delong = ev.delong_test(y, a, b)
    boot = ev.paired_bootstrap_auc(y, a, b, n_boot=1000, seed=0)
    assert boot.difference == pytest.approx(delong.difference)
    bootstrap_se = (boot.high - boot.low) / (2 * 1.959964)
    assert 0.75 < bootstrap_se / delong.std_error < 1.33
    assert boot.p_value == pytest.approx(delong.p_value, abs=0.01)


def test_paired_bootstrap_of_identical_scores_and_of_a_better_model(rng: np.random.Generator) -> None:
    y, a, b = correlated_pair(rng, 300, 1.5)
    same = ev.paired_bootstrap_auc(y, a, a, n_boot=200)
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    better = ev.paired_bootstrap_auc(y, a, b, n_boot=300, groups=np.arange(300) // 2)
    assert better.low > 0 and better.p_value < 0.01


def test_delong_needs_two_of_each_class() -> None:
    with pytest.raises(InsufficientDataError, match="two positive and two negative"):
        ev.delong_test([1, 0, 0, 0], [0.9, 0.1, 0.2, 0.3], [0.8, 0.3, 0.2, 0.1])


# ---------------------------------------------------------------------------------------------
# Operating points
# ---------------------------------------------------------------------------------------------


def test_operating_point_counts_by_hand() -> None:
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    p = [0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.7, 0.5]
    # At 0.5 (p >= 0.5 positive): TP rows 0, 1, 7; FN row 2; FP rows 3, 6; TN rows 4, 5.
    point = ev.operating_point(y, p, 0.5)
    assert (point["tp"], point["fn"], point["fp"], point["tn"]) == (3, 1, 2, 2)
    assert point["sensitivity"] == 3 / 4 and point["specificity"] == 2 / 4
    assert point["ppv"] == 3 / 5 and point["npv"] == 2 / 3
    nobody = ev.operating_point(y, p, 0.95)
    assert nobody["tp"] == nobody["fp"] == 0 and nobody["ppv"] is None and nobody["specificity"] == 1.0


@pytest.mark.parametrize(("target", "threshold"), [(0.5, 0.7), (0.75, 0.4), (1.0, 0.2)])
def test_threshold_for_sensitivity_is_the_highest_reaching_the_target(target: float, threshold: float) -> None:
    y = [1, 1, 1, 1, 0, 0]
    p = [0.9, 0.7, 0.4, 0.2, 0.5, 0.1]
    found = ev.threshold_for_sensitivity(y, p, target)
    assert found == threshold
    assert ev.operating_point(y, p, found)["sensitivity"] >= target
    assert ev.operating_point(y, p, np.nextafter(found, 1.0))["sensitivity"] < target


def test_per_class_rates_equal_scikit_learn_and_say_none_where_undefined(rng: np.random.Generator) -> None:
    labels = ("Normal", "Viral pneumonia", "COVID-19")
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, 200))
    counts = skm.confusion_matrix(y, pred, labels=[0, 1, 2])
    rates = ev.per_class_rates(counts, labels)
    precision, recall, f1, support = skm.precision_recall_fscore_support(y, pred, labels=[0, 1, 2])
    for k, name in enumerate(labels):
        negatives = y != k
        assert rates[name]["precision"] == pytest.approx(precision[k])
        assert rates[name]["recall"] == pytest.approx(recall[k])
        assert rates[name]["f1"] == pytest.approx(f1[k])
        assert rates[name]["support"] == support[k]
        assert rates[name]["specificity"] == pytest.approx(np.mean(pred[negatives] != k))
    never = ev.per_class_rates(np.array([[3, 0], [2, 0]]), ("absent", "present"))["present"]
    assert never["precision"] is None and never["recall"] == 0.0 and never["support"] == 2
