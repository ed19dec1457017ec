"""The case-review summary's statistics against numbers worked by hand, a published example
(Fleiss 1971's table) and closed forms; undefined figures come back as ``nan`` with a reason,
bad input as a plain-words error."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score

from core.errors import InvalidInputError
from core.review import agreement as agreement_module
from core.review.agreement import (
    accuracy,
    cohen_kappa,
    fleiss_kappa,
    proportion,
    rating_counts,
    sensitivity_specificity,
)


def pairs_from_table(table: list[list[int]], labels: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Two raters' labels whose cross-table (rows: first rater, columns: second) is ``table``."""
    a, b = [], []
    for i, row in enumerate(table):
        for j, count in enumerate(row):
            a += [labels[i]] * count
            b += [labels[j]] * count
    return a, b


# ---------------------------------------------------------------------------------------------
# Cohen's kappa


def test_kappa_of_a_two_by_two_table_worked_by_hand() -> None:
    """Reader (rows) against model (columns), 50 cases::

                    model COVID  model Normal
        reader COVID     20           5        25
        reader Normal    10          15        25
                         30          20        50

    Shares: p11 = .4, p12 = .1, p21 = .2, p22 = .3; reader margins p1. = p2. = .5; model
    margins p.1 = .6, p.2 = .4.

    p_o = .4 + .3 = .7;  p_e = .5 * .6 + .5 * .4 = .5;  kappa = (.7 - .5) / (1 - .5) = .4.

    Fleiss, Cohen & Everitt (1969), var = (A + B - C) / (n (1 - p_e)^4):
      A = sum_i p_ii [(1 - p_e) - (p_i. + p_.i)(1 - p_o)]^2
        = .4 (.5 - 1.1 * .3)^2 + .3 (.5 - .9 * .3)^2 = .4 * .0289 + .3 * .0529 = .02743
      B = (1 - p_o)^2 sum_{i != j} p_ij (p_.i + p_j.)^2
        = .09 [.1 (.6 + .5)^2 + .2 (.4 + .5)^2] = .09 (.121 + .162) = .02547
      C = (p_o p_e - 2 p_e + p_o)^2 = (.35 - 1 + .7)^2 = .0025
      var = .0504 / (50 * .0625) = .016128;  se = .127
    95% interval: .4 +- 1.96 * .127 = (.151, .649).

    Under the null, var_0 = [p_e + p_e^2 - sum_i p_i. p_.i (p_i. + p_.i)] / (n (1 - p_e)^2)
      = [.5 + .25 - (.5 * .6 * 1.1 + .5 * .4 * .9)] / (50 * .25) = (.75 - .51) / 12.5 = .0192;
    se_0 = .1386, z = .4 / .1386 = 2.887, two-sided p = .0039.
    """
    a, b = pairs_from_table([[20, 5], [10, 15]], ("COVID", "Normal"))
    result = cohen_kappa(a, b)
    assert result.n == 50
    assert result.observed_agreement == pytest.approx(0.7)
    assert result.expected_agreement == pytest.approx(0.5)
    assert result.kappa == pytest.approx(0.4)
    assert result.se == pytest.approx(0.127, abs=5e-4)
    assert result.se**2 == pytest.approx(0.016128)
    assert (round(result.ci_low, 3), round(result.ci_high, 3)) == (0.151, 0.649)
    assert result.se_null == pytest.approx(math.sqrt(0.0192))
    assert result.p_value == pytest.approx(0.0039, abs=5e-5)
    assert result.reason == ""
    assert "Fleiss, Cohen & Everitt 1969" in result.method

    # Swapping the raters transposes the table: same kappa, same errors.
    swapped = cohen_kappa(b, a)
    assert (swapped.kappa, swapped.se, swapped.se_null) == pytest.approx((result.kappa, result.se, result.se_null))


def test_three_class_kappa_by_hand_and_as_scikit_learn_has_it() -> None:
    """Reader (rows) against model (columns), classes 0, 1, 2, ten cases::

                  model 0  model 1  model 2
        reader 0     2        1        0
        reader 1     0        2        1
        reader 2     1        0        3

    Margins: rows .3 .3 .4, columns .3 .3 .4.  p_o = (2 + 2 + 3) / 10 = .7;
    p_e = .09 + .09 + .16 = .34;  kappa = .36 / .66 = .5455.
    """
    reader = [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
    model = [0, 0, 1, 1, 1, 2, 2, 2, 2, 0]
    result = cohen_kappa(reader, model)
    assert (result.observed_agreement, result.expected_agreement) == pytest.approx((0.7, 0.34))
    assert result.kappa == pytest.approx(0.36 / 0.66)
    assert result.kappa == pytest.approx(cohen_kappa_score(reader, model))
    assert result.ci_low < result.kappa < result.ci_high
    assert "Only 10 cases" in result.reason  # the large-sample interval is flagged at this size


def test_perfect_agreement_is_one_and_says_its_interval_is_only_the_point() -> None:
    labels = ["COVID-19", "Normal", "Pneumonia"] * 4
    result = cohen_kappa(labels, list(labels))
    assert result.kappa == 1.0
    assert (result.ci_low, result.ci_high) == (1.0, 1.0)
    assert "only the point" in result.reason


def test_raters_who_guess_independently_agree_at_chance_level() -> None:
    rng = np.random.default_rng(7)
    classes = np.array(["COVID-19", "Normal", "Pneumonia"])
    a = classes[rng.integers(0, 3, size=3000)]
    b = classes[rng.choice(3, size=3000, p=[0.5, 0.3, 0.2])]
    result = cohen_kappa(a, b)
    assert abs(result.kappa) < 0.03
    assert result.ci_low < 0.0 < result.ci_high
    assert result.p_value > 0.05


def test_worse_than_chance_is_negative() -> None:
    a, b = pairs_from_table([[0, 10], [10, 0]], ("COVID", "Normal"))
    assert cohen_kappa(a, b).kappa == pytest.approx(-1.0)


def test_asymptotic_interval_covers_the_true_kappa_about_95_percent_of_the_time() -> None:
    """400 seeded meetings of 150 cases drawn from a known table; the true kappa of its shares
    [[.45, .05], [.10, .40]] is (.85 - .5) / (1 - .5) = .7 (margins .5/.5 and .55/.45)."""
    rng = np.random.default_rng(3)
    cells = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    hits = 0
    for _ in range(400):
        drawn = cells[rng.choice(4, size=150, p=[0.45, 0.05, 0.10, 0.40])]
        result = cohen_kappa(drawn[:, 0], drawn[:, 1])
        hits += result.ci_low <= 0.7 <= result.ci_high
    assert 0.91 <= hits / 400 <= 0.98


def test_bootstrap_interval_is_seeded_and_near_the_asymptotic_one() -> None:
    a, b = pairs_from_table([[40, 10], [20, 30]], ("COVID", "Normal"))
    asymptotic = cohen_kappa(a, b)
    first = cohen_kappa(a, b, bootstrap=2000, seed=1)
    assert first == cohen_kappa(a, b, bootstrap=2000, seed=1)
    assert first != cohen_kappa(a, b, bootstrap=2000, seed=2)
    assert first.kappa == asymptotic.kappa
    assert "bootstrap" in first.method and "2000 resamples, seed 1" in first.method
    assert first.ci_low == pytest.approx(asymptotic.ci_low, abs=0.04)
    assert first.ci_high == pytest.approx(asymptotic.ci_high, abs=0.04)


def test_one_label_for_every_case_leaves_kappa_undefined_not_a_crash() -> None:
    result = cohen_kappa(["Normal"] * 6, ["Normal"] * 6)
    assert math.isnan(result.kappa) and math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert not result.defined
    assert result.observed_agreement == 1.0
    assert "undefined" in result.reason and "'Normal'" in result.reason
    assert result.to_json()["kappa"] is None


def test_labels_fix_the_vocabulary_and_refuse_a_typo() -> None:
    a, b = ["COVID-19", "Normal", "Normal"], ["COVID-19", "Normal", "COVID-19"]
    assert cohen_kappa(a, b, labels=["COVID-19", "Normal", "Pneumonia"]).kappa == pytest.approx(cohen_kappa(a, b).kappa)
    with pytest.raises(InvalidInputError, match="'Covid' is not one of the labels given"):
        cohen_kappa(a, ["Covid", "Normal", "Normal"], labels=["COVID-19", "Normal"])


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        ([], [], {}, "holds no case"),
        (["Normal", "COVID-19"], ["Normal"], {}, "same cases: 2 labels against 1"),
        (["Normal", None], ["Normal", "Normal"], {}, "no label for case 2"),
        ("Normal", "Normal", {}, "not a single string"),
        (["Normal", "COVID-19"], ["Normal", "Normal"], {"bootstrap": 10}, "at least 100"),
        (["Normal", "COVID-19"], ["Normal", "Normal"], {"confidence": 95}, "between 0 and 1"),
    ],
    ids=["empty", "unequal-lengths", "missing-read", "bare-string", "tiny-bootstrap", "confidence-in-percent"],
)
def test_cohen_refuses_bad_input_in_plain_words(a, b, kwargs, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        cohen_kappa(a, b, **kwargs)


# ---------------------------------------------------------------------------------------------
# Fleiss' kappa


#: Fleiss (1971)'s example as Wikipedia ("Fleiss' kappa") works it: 10 cases, 14 raters each,
#: 5 categories; p_j = .143 .200 .279 .150 .229, P = .378, P_e = .213, kappa = .210.
FLEISS_1971 = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def test_fleiss_kappa_of_the_published_example() -> None:
    result = fleiss_kappa(FLEISS_1971)
    assert (result.n, result.n_raters) == (10, 14)
    assert round(result.observed_agreement, 3) == 0.378
    assert round(result.expected_agreement, 3) == 0.213
    assert round(result.kappa, 3) == 0.210
    assert result.ci_low < result.kappa < result.ci_high
    assert math.isnan(result.se)  # no large-sample error away from kappa = 0 is claimed
    assert "bootstrap over cases" in result.method


def test_fleiss_kappa_of_a_tiny_table_by_hand() -> None:
    """Three cases, three readers, two classes: [3, 0], [2, 1], [0, 3].

    P_i = (sum_j n_ij^2 - 3) / (3 * 2): (9 - 3)/6 = 1, (4 + 1 - 3)/6 = 1/3, 1;  P = 7/9.
    p_j = 5/9, 4/9;  P_e = 25/81 + 16/81 = 41/81;  kappa = (63/81 - 41/81) / (40/81) = .55.
    Null variance (Fleiss, Nee & Landis 1979): with two categories sum_j p_j q_j (q_j - p_j) = 0,
    so var_0 = 2 / (N m (m - 1)) = 2 / 18 and se_0 = 1/3; p = 2 (1 - Phi(1.65)) = .0989.
    """
    result = fleiss_kappa([[3, 0], [2, 1], [0, 3]])
    assert result.observed_agreement == pytest.approx(7 / 9)
    assert result.expected_agreement == pytest.approx(41 / 81)
    assert result.kappa == pytest.approx(0.55)
    assert result.se_null == pytest.approx(1 / 3)
    assert result.p_value == pytest.approx(0.0989, abs=5e-5)
    assert "Only 3 cases" in result.reason


def test_fleiss_null_error_with_three_categories_by_hand() -> None:
    """Two cases, two readers: [2, 0, 0] and [0, 1, 1].

    P = (1 + 0) / 2 = .5;  p_j = .5, .25, .25;  P_e = .375;  kappa = .125 / .625 = .2.
    p_j q_j = .25, .1875, .1875 (sum .625);  q_j - p_j = 0, .5, .5;
    sum_j p_j q_j (q_j - p_j) = .1875;  var_0 = 2 / (2 * 2 * 1) * (.390625 - .1875) / .390625 = .26.
    """
    result = fleiss_kappa(np.array([[2, 0, 0], [0, 1, 1]]))
    assert result.kappa == pytest.approx(0.2)
    assert result.se_null == pytest.approx(math.sqrt(0.26))


def test_fleiss_null_error_matches_the_spread_of_kappa_among_raters_who_guess() -> None:
    """1000 seeded meetings of 40 cases, 4 readers each choosing among 3 classes at random
    (shares .5 .3 .2): the spread of kappa is what the null standard error says."""
    rng = np.random.default_rng(0)
    results = [fleiss_kappa(rng.multinomial(4, [0.5, 0.3, 0.2], size=40), n_boot=100) for _ in range(1000)]
    spread = float(np.std([r.kappa for r in results]))
    assert spread == pytest.approx(float(np.mean([r.se_null for r in results])), rel=0.08)


def test_fleiss_kappa_of_two_raters_is_scotts_pi() -> None:
    """With two raters, Fleiss' kappa is Scott's pi: p_o as Cohen's, p_e from pooled margins."""
    a, b = pairs_from_table([[20, 5], [10, 15]], ("COVID", "Normal"))
    table = rating_counts(list(zip(a, b, strict=True))).counts
    pooled = np.array([(25 + 30) / 100, (25 + 20) / 100])
    p_e = float((pooled**2).sum())
    assert fleiss_kappa(table).kappa == pytest.approx((0.7 - p_e) / (1 - p_e))


def test_fleiss_interval_is_seeded() -> None:
    assert fleiss_kappa(FLEISS_1971, seed=4) == fleiss_kappa(FLEISS_1971, seed=4)
    assert fleiss_kappa(FLEISS_1971, seed=4).ci_low != fleiss_kappa(FLEISS_1971, seed=5).ci_low


def test_fleiss_one_category_for_every_rating_is_undefined_not_a_crash() -> None:
    result = fleiss_kappa([[3, 0], [3, 0]])
    assert math.isnan(result.kappa) and not result.defined
    assert "undefined" in result.reason


def test_rating_counts_refuses_unequal_readers_or_keeps_the_most_common_number() -> None:
    reads = [["COVID-19", "COVID-19", "Normal"], ["Normal", "Normal"], ["Normal", "Normal", "Normal"]]
    with pytest.raises(InvalidInputError, match="same number of readers on every case.*1 by 2, 2 by 3"):
        rating_counts(reads)
    kept = rating_counts(reads, keep="most_common")
    assert (kept.cases, kept.dropped, kept.n_raters, kept.labels) == ((0, 2), 1, 3, ("COVID-19", "Normal"))
    np.testing.assert_array_equal(kept.counts, [[2, 1], [0, 3]])
    # A tie goes to the larger number of readers; a case read once never counts.
    tie = rating_counts([["A", "B"], ["A", "A", "B"], ["A"]], keep="most_common")
    assert (tie.cases, tie.n_raters) == ((1,), 3)


@pytest.mark.parametrize(
    ("counts", "message"),
    [
        ([[2, 1], [1, 1]], "rows add up differently \\(1 with 2, 1 with 3\\)"),
        ([[1, 0], [0, 1]], "at least two raters"),
        ([[1.5, 0.5]], "whole numbers"),
        ([[3, -1]], "negative"),
        ([], "one row per case"),
        ([1, 2, 3], "one row per case"),
    ],
    ids=["unequal-raters", "one-rater", "fractions", "negative", "empty", "one-dimensional"],
)
def test_fleiss_refuses_bad_tables_in_plain_words(counts, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        fleiss_kappa(counts)


def test_rating_counts_refuses_cases_with_fewer_than_two_readers() -> None:
    with pytest.raises(InvalidInputError, match="at least two readers"):
        rating_counts([["Normal"], ["COVID-19"]])
    with pytest.raises(InvalidInputError, match="no case with reads"):
        rating_counts([])


# ---------------------------------------------------------------------------------------------
# Proportions


def test_wilson_interval_of_8_of_10_by_its_closed_form() -> None:
    """z = 1.959964, z^2 = 3.841459, p = .8, n = 10.

    1 + z^2/n = 1.3841459;  centre = (.8 + z^2/20) / 1.3841459 = .9920729 / 1.3841459 = .7167402
    half = z / 1.3841459 * sqrt(.8 * .2 / 10 + z^2 / 400) = 1.4160097 * sqrt(.0256036) = .2265777
    interval = (.4901625, .9433179).
    """
    result = proportion(8, 10)
    assert result.estimate == 0.8
    assert result.ci_low == pytest.approx(0.4901625, abs=1e-6)
    assert result.ci_high == pytest.approx(0.9433179, abs=1e-6)
    scipy_ci = binomtest(8, 10).proportion_ci(confidence_level=0.95, method="wilson")
    assert (result.ci_low, result.ci_high) == pytest.approx((scipy_ci.low, scipy_ci.high))
    assert "Wilson" in result.method


def test_wilson_interval_stays_inside_zero_and_one_and_is_not_zero_width_at_the_ends() -> None:
    none, every = proportion(0, 12), proportion(12, 12)
    assert none.ci_low == 0.0 and 0.2 < none.ci_high < 0.3
    assert every.ci_high == 1.0 and 0.7 < every.ci_low < 0.8


def test_proportion_of_no_case_is_undefined_and_bad_counts_are_refused() -> None:
    empty = proportion(0, 0)
    assert math.isnan(empty.estimate) and not empty.defined and "No case" in empty.reason
    assert empty.to_json()["estimate"] is None
    with pytest.raises(InvalidInputError, match="more than there are cases"):
        proportion(11, 10)
    with pytest.raises(InvalidInputError, match="negative"):
        proportion(-1, 10)
    with pytest.raises(InvalidInputError, match="whole numbers"):
        proportion(2.5, 10)


def test_sensitivity_and_specificity_of_a_small_table() -> None:
    """Truth against the model, COVID-19 positive, 10 cases: of 4 true COVID-19 cases 3 called
    COVID-19 (sensitivity 3/4); of 6 others (Normal and Pneumonia) 5 not called COVID-19
    (specificity 5/6): a Pneumonia called Normal is still a true negative."""
    truth = ["COVID-19"] * 4 + ["Normal"] * 3 + ["Pneumonia"] * 3
    model = ["COVID-19"] * 3 + ["Normal"] * 3 + ["COVID-19", "Pneumonia", "Normal", "Pneumonia"]
    sensitivity, specificity = sensitivity_specificity(truth, model, "COVID-19")
    assert (sensitivity.successes, sensitivity.n) == (3, 4)
    assert (specificity.successes, specificity.n) == (5, 6)
    assert sensitivity == proportion(3, 4) and specificity == proportion(5, 6)
    correct = accuracy(truth, model)
    assert (correct.successes, correct.n) == (7, 10)


def test_sensitivity_without_a_positive_case_is_undefined() -> None:
    sensitivity, specificity = sensitivity_specificity(["Normal", "Normal"], ["Normal", "COVID-19"], "COVID-19")
    assert not sensitivity.defined and "No case is truly 'COVID-19'" in sensitivity.reason
    assert (specificity.successes, specificity.n) == (1, 2)


def test_accuracy_refuses_unequal_lengths() -> None:
    with pytest.raises(InvalidInputError, match="same cases"):
        accuracy(["Normal"], ["Normal", "Normal"])
    with pytest.raises(InvalidInputError, match="no case"):
        sensitivity_specificity([], [], "COVID-19")


def test_the_module_examples_hold() -> None:
    assert doctest.testmod(agreement_module).failed == 0


def test_a_rater_with_one_label_for_every_case_gets_kappa_zero_and_is_told_why() -> None:
    """A model that called every case COVID-19: p_o = p_e = its share of true COVID-19 reads, so
    kappa is 0 whatever the reader said, and the large-sample error is 0 as well."""
    result = cohen_kappa(["COVID-19", "Normal", "Normal", "COVID-19", "Pneumonia"], ["COVID-19"] * 5)
    assert result.kappa == pytest.approx(0.0)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.0, 0.0))
    assert "second rater gave every case the same label ('COVID-19')" in result.reason


def test_p_value_far_in_the_tail_is_not_rounded_to_zero() -> None:
    # z = .210 / .0170 = 12.4: 2 (1 - Phi(z)) is about 3e-35, which 1 - cdf would round to 0.
    result = fleiss_kappa(FLEISS_1971)
    assert 0.0 < result.p_value < 1e-30
