"""Sequential X-ray change (seed 004): the Worse / Stable / Improved category of a pair, Table 2's
statistics, the leave-one-patient-out predictor, and scoring a library with a tiny untrained
findings model (tests.helpers.register_tiny_findings_model) on a copy of the demo library.

Statistics are compared with scipy / scikit-learn called directly on the same numbers, or with
the textbook formula written out here; categories with the phrases the demo notes are written
with (core.demo.notes.CHANGE_PHRASES); never with a previous run's output.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import binomtest, mannwhitneyu

from core.cli.main import main
from core.demo.notes import CHANGE_PHRASES, Prior, xray_note
from core.demo.xray_phantom import FINDINGS, generate_xray
from core.errors import InsufficientDataError
from core.findings import predict_findings
from core.library.importers import add_upload
from core.library.store import SqliteLibrary, open_library
from core.models.registry import LoadedModel, ModelRegistry
from core.search.embeddings import embedding_version, read_stored_xray
from core.trajectory import findings_change as fc
from core.trajectory.findings_change import (
    CATEGORIES,
    COMPARISONS,
    XrayPair,
    _likelihood_ratio,
    _wilson,
    category_from_change,
    category_from_note,
    change_statistics,
    cohens_d,
    leave_one_patient_out,
    patient_findings,
    predict_worse_vs_improved,
    score_findings,
    score_key,
    xray_pairs,
)
from tests.cli_helpers import assert_one_line_error
from tests.helpers import register_tiny_findings_model, register_tiny_model

COMPARISON_NAMES = [f"{a} vs {b}" for a, b in COMPARISONS]


def category_in_note(note: str | None) -> str | None:
    """The category whose CHANGE_PHRASES phrase the note's comparison uses (demo notes only)."""
    found = {c for c, phrases in CHANGE_PHRASES.items() for phrase in phrases if phrase in (note or "")}
    assert len(found) <= 1, note
    return found.pop() if found else None


# -- categories -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "phrase"), [(c, phrase) for c, phrases in CHANGE_PHRASES.items() for phrase in phrases]
)
def test_category_from_note_reads_every_demo_phrase(category: str, phrase: str) -> None:
    note = f"PA chest radiograph. Heart size is normal. Compared with the prior radiograph of day 3: {phrase}."
    assert category_from_note(note) == category


@pytest.mark.parametrize(
    ("prior_severity", "severity", "phrase"),
    [
        (0.0, 0.5, "new opacities"),
        (0.3, 0.6, "increased opacities"),
        (0.4, 0.42, "no significant change"),
        (0.6, 0.3, "decreased opacities"),
        (0.4, 0.0, "resolved opacities"),
    ],
)
def test_category_from_note_on_notes_the_demo_writes(prior_severity: float, severity: float, phrase: str) -> None:
    findings = dict.fromkeys(FINDINGS, 0) | {"Lung Opacity": int(severity > 0), "Pneumonia": int(severity > 0)}
    prior = Prior(day=2, severity=prior_severity, findings=dict.fromkeys(FINDINGS, 0))
    note = xray_note("COVID-19", "PA", severity, findings, prior)
    assert phrase in note
    (category,) = [c for c, phrases in CHANGE_PHRASES.items() if phrase in phrases]
    assert category_from_note(note) == category


@pytest.mark.parametrize(
    "note",
    [
        None,
        "",
        "No prior for comparison.",
        xray_note("Normal", "PA", 0.0, dict.fromkeys(FINDINGS, 0), None),
        "PA chest radiograph. Increased opacities in the right lower zone.",
    ],
)
def test_category_from_note_without_a_comparison_is_none(note: str | None) -> None:
    assert category_from_note(note) is None


@pytest.mark.parametrize(
    ("delta", "category"),
    [
        (0.0, "Stable"),
        (0.1, "Stable"),
        (-0.1, "Stable"),
        (0.0999, "Stable"),
        (-0.0999, "Stable"),
        (0.1001, "Worse"),
        (0.6, "Worse"),
        (-0.1001, "Improved"),
        (-0.6, "Improved"),
    ],
)
def test_category_from_change_follows_the_lung_opacity_rule(delta: float, category: str) -> None:
    assert "0.1" in fc.CHANGE_RULE and "Lung Opacity" in fc.CHANGE_RULE
    others = {f: 0.9 for f in FINDINGS if f != "Lung Opacity"}  # other findings do not count
    assert category_from_change(others | {"Lung Opacity": delta}) == category


def test_category_from_change_without_lung_opacity_is_stable() -> None:
    assert category_from_change({}) == "Stable"
    assert category_from_change({"Pneumonia": 0.8}) == "Stable"


# -- statistics -------------------------------------------------------------------------------


def pooled_d(a: list[float], b: list[float]) -> float:
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    return (ma - mb) / math.sqrt(((na - 1) * va + (nb - 1) * vb) / (na + nb - 2))


def test_cohens_d_is_the_pooled_standard_deviation_formula() -> None:
    a = [0.30, 0.12, 0.45, 0.26, 0.51]
    b = [-0.20, 0.05, -0.31, -0.02]
    assert cohens_d(np.array(a), np.array(b)) == pytest.approx(pooled_d(a, b), rel=1e-12)
    assert cohens_d(np.array(b), np.array(a)) == pytest.approx(-pooled_d(a, b), rel=1e-12)


def test_cohens_d_is_none_when_undefined() -> None:
    assert cohens_d(np.array([0.3]), np.array([0.1, 0.2])) is None
    assert cohens_d(np.array([0.1, 0.2]), np.array([])) is None
    assert cohens_d(np.zeros(3), np.zeros(4)) is None  # no spread at all


def test_cohens_d_is_none_for_constant_groups_whatever_their_value() -> None:
    # Groups without any spread have no standard deviation, whatever the constant. In floating
    # point the mean of three 0.1s is not exactly 0.1, so the variance comes out ~1e-34 rather
    # than 0; a user must not see d ~ 1e16 in Table 2 for a finding that never changes.
    assert cohens_d(np.full(2, 0.2), np.full(3, 0.1)) is None
    assert cohens_d(np.full(3, 0.1), np.full(4, 0.7)) is None


def make_pair(patient: str, category: str, change: dict[str, float], n: int = 0) -> XrayPair:
    return XrayPair(
        patient=patient,
        first_study=2 * n,
        second_study=2 * n + 1,
        first_image=2 * n,
        second_image=2 * n + 1,
        first_day=0.0,
        second_day=3.0,
        category=category,
        category_from="note",
        change=change,
    )


def test_change_statistics_match_scipy_and_the_formula() -> None:
    rng = np.random.default_rng(7)
    findings = ("Lung Opacity", "Pleural Effusion")
    sizes = {"Worse": 6, "Stable": 5, "Improved": 4}
    shift = {"Worse": 0.3, "Stable": 0.0, "Improved": -0.25}
    pairs = []
    for category, n in sizes.items():
        for i in range(n):
            change = {f: float(shift[category] + rng.normal(0, 0.1)) for f in findings}
            pairs.append(make_pair(f"P{category}{i}", category, change, len(pairs)))

    rows = change_statistics(pairs, findings)

    assert [(r["finding"], r["comparison"]) for r in rows] == [(f, c) for f in findings for c in COMPARISON_NAMES]
    for r in rows:
        first, second = r["comparison"].split(" vs ")
        a = [p.change[r["finding"]] for p in pairs if p.category == first]
        b = [p.change[r["finding"]] for p in pairs if p.category == second]
        assert (r["n_first"], r["n_second"]) == (len(a), len(b))
        assert r["median_first"] == pytest.approx(np.median(a))
        assert r["median_second"] == pytest.approx(np.median(b))
        assert r["mann_whitney_p"] == pytest.approx(mannwhitneyu(a, b, alternative="two-sided").pvalue, rel=1e-12)
        assert r["cohens_d"] == pytest.approx(pooled_d(a, b), rel=1e-12)


def test_change_statistics_with_empty_or_single_groups() -> None:
    pairs = [
        make_pair("A", "Worse", {"Lung Opacity": 0.4}, 0),
        make_pair("B", "Worse", {"Lung Opacity": 0.2}, 1),
        make_pair("C", "Stable", {"Lung Opacity": 0.01}, 2),
    ]  # no Improved pair; one Stable pair
    rows = {r["comparison"]: r for r in change_statistics(pairs, ("Lung Opacity",))}
    assert set(rows) == set(COMPARISON_NAMES)
    for name in ("Worse vs Improved", "Stable vs Improved"):
        r = rows[name]
        assert r["n_second"] == 0 and r["median_second"] is None
        assert r["mann_whitney_p"] is None and r["cohens_d"] is None
    ws = rows["Worse vs Stable"]
    assert (ws["n_first"], ws["n_second"]) == (2, 1)
    assert ws["mann_whitney_p"] == pytest.approx(mannwhitneyu([0.4, 0.2], [0.01], alternative="two-sided").pvalue)
    assert ws["cohens_d"] is None  # a group of one has no standard deviation
    assert change_statistics([], ("Lung Opacity",))[0]["mann_whitney_p"] is None


@pytest.mark.parametrize(("k", "n"), [(0, 5), (5, 5), (7, 12), (1, 1), (33, 40)])
def test_wilson_interval_matches_scipy(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    value, low, high = _wilson(k, n)
    assert value == pytest.approx(k / n)
    assert low == pytest.approx(ci.low, rel=1e-12, abs=1e-15)
    assert high == pytest.approx(ci.high, rel=1e-12, abs=1e-15)


def test_wilson_with_no_cases_is_none() -> None:
    assert _wilson(0, 0) == (None, None, None)


def test_likelihood_ratios_on_a_known_table() -> None:
    tp, fn, tn, fp = 18, 6, 15, 5
    sens, spec = tp / (tp + fn), tn / (tn + fp)

    lr_pos, low, high = _likelihood_ratio((tp, tp + fn), (tn, tn + fp), True)
    assert lr_pos == pytest.approx(sens / (1 - spec))
    se = math.sqrt(1 / tp - 1 / (tp + fn) + 1 / fp - 1 / (tn + fp))
    assert low == pytest.approx(lr_pos * math.exp(-1.96 * se))
    assert high == pytest.approx(lr_pos * math.exp(1.96 * se))

    lr_neg, low, high = _likelihood_ratio((tp, tp + fn), (tn, tn + fp), False)
    assert lr_neg == pytest.approx((1 - sens) / spec)
    se = math.sqrt(1 / fn - 1 / (tp + fn) + 1 / tn - 1 / (tn + fp))
    assert low == pytest.approx(lr_neg * math.exp(-1.96 * se))
    assert high == pytest.approx(lr_neg * math.exp(1.96 * se))
    assert low < lr_neg < high


def test_likelihood_ratios_at_the_edges() -> None:
    # No false positive: LR+ is infinite, reported as unknown rather than a number.
    assert _likelihood_ratio((5, 8), (10, 10), True) == (None, None, None)
    # No true positive: LR+ is 0, without an interval.
    assert _likelihood_ratio((0, 8), (6, 10), True) == (0.0, None, None)
    # No positive (or no negative) case at all: nothing to say.
    assert _likelihood_ratio((0, 0), (6, 10), True) == (None, None, None)
    assert _likelihood_ratio((3, 5), (0, 0), False) == (None, None, None)


# -- leave-one-patient-out --------------------------------------------------------------------


def memorisable(n_patients: int = 6, per_patient: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each patient has their own feature (one-hot), identical pairs and one label: the label is
    predictable only by a model that has seen that patient."""
    rows = n_patients * per_patient
    features = np.zeros((rows, n_patients))
    worse = np.zeros(rows, dtype=int)
    groups = np.empty(rows, dtype=object)
    for p in range(n_patients):
        sl = slice(p * per_patient, (p + 1) * per_patient)
        features[sl, p] = 1.0
        worse[sl] = p % 2
        groups[sl] = f"P{p}"
    return features, worse, groups.astype(str)


def test_leave_one_patient_out_cannot_memorise_the_held_out_patient() -> None:
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    features, worse, groups = memorisable()
    # A model fitted on everyone (the leak) gets every pair right ...
    leaky = make_pipeline(SelectKBest(chi2, k=features.shape[1]), LogisticRegression(max_iter=1000))
    assert (leaky.fit(features, worse).predict(features) == worse).all()
    # ... leave-one-patient-out cannot.
    predicted = leave_one_patient_out(features, worse, groups, k=features.shape[1])
    assert predicted.shape == worse.shape and set(predicted.tolist()) <= {0, 1}
    assert (predicted == worse).mean() < 1.0
    # The pairs of one patient are identical, so they are predicted alike.
    for p in set(groups.tolist()):
        assert len(set(predicted[groups == p].tolist())) == 1


def test_leave_one_patient_out_never_trains_on_the_held_out_patient(monkeypatch) -> None:
    import sklearn.feature_selection

    rng = np.random.default_rng(3)
    n_patients, per_patient = 5, 3
    rows = n_patients * per_patient
    groups = np.repeat([f"P{p}" for p in range(n_patients)], per_patient)
    worse = np.tile([0, 1, 1], n_patients)
    # Column 0 names the row (row number + 1, non-negative for chi-square); the rest is noise.
    features = np.column_stack([np.arange(1, rows + 1), rng.random((rows, 4))])
    patient_of_row = {r + 1: groups[r] for r in range(rows)}
    calls: list[tuple[str, set[str]]] = []

    class RecordingSelect(sklearn.feature_selection.SelectKBest):
        def fit(self, X, y=None, **kw):
            calls.append(("fit", {patient_of_row[int(v)] for v in X[:, 0]}))
            return super().fit(X, y, **kw)

        def transform(self, X):
            calls.append(("transform", {patient_of_row[int(v)] for v in X[:, 0]}))
            return super().transform(X)

    monkeypatch.setattr(sklearn.feature_selection, "SelectKBest", RecordingSelect)
    leave_one_patient_out(features, worse, groups, k=2)

    fits = [who for kind, who in calls if kind == "fit"]
    assert len(fits) == n_patients
    predicted_for: list[str] = []
    trained_on: set[str] = set()
    for kind, who in calls:
        if kind == "fit":
            trained_on = who
            assert len(who) == n_patients - 1
        elif who != trained_on:  # the held-out patient's rows, at prediction time
            assert not who & trained_on, f"trained on {who & trained_on} before predicting them"
            predicted_for.extend(who)
    assert sorted(predicted_for) == sorted(set(groups.tolist()))


def test_predictor_needs_three_patients_and_both_categories(tmp_path: Path) -> None:
    lib = open_library(tmp_path / "empty-lib", create=True)
    folder = tmp_path / "w"
    register_tiny_findings_model(folder)
    model = ModelRegistry(folder, device=torch.device("cpu")).load("cxr-findings")
    lo = {"Lung Opacity": 0.0}
    two_patients = [make_pair("A", "Worse", lo, 0), make_pair("B", "Improved", lo, 1), make_pair("B", "Worse", lo, 2)]
    with pytest.raises(InsufficientDataError, match="3 patients"):
        predict_worse_vs_improved(lib, model, two_patients)
    # A third patient with only a Stable pair does not count.
    with pytest.raises(InsufficientDataError):
        predict_worse_vs_improved(lib, model, [*two_patients, make_pair("C", "Stable", lo, 3)])
    only_worse = [make_pair(p, "Worse", lo, n) for n, p in enumerate("ABCD")]
    with pytest.raises(InsufficientDataError):
        predict_worse_vs_improved(lib, model, only_worse)


# -- the library ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("findings-change-weights")
    register_tiny_findings_model(folder)
    register_tiny_model(folder, "cxr-resnet18")
    return folder


def load_findings(weights: Path) -> LoadedModel:
    return ModelRegistry(weights, device=torch.device("cpu")).load("cxr-findings")


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory, demo_library: Path, weights: Path):
    """A copy of the demo library scored once by the tiny findings model; read-only for the tests."""
    root = tmp_path_factory.mktemp("scored") / "library"
    shutil.copytree(demo_library, root)
    library = open_library(root, create=False)
    model = load_findings(weights)
    score_findings(library, model)
    return library, model


def dated_xray_studies(library: SqliteLibrary, pseudonym: str) -> list:
    return [s for s in library.patient(pseudonym).studies if s.modality == "X-ray" and s.day is not None]


def xray_patients(library: SqliteLibrary) -> list[str]:
    return sorted({r.patient_pseudonym for r in library.image_refs(("xray",))})


def test_score_findings_scores_each_xray_study_once(library_copy: Path, weights: Path) -> None:
    library = open_library(library_copy, create=False)
    model = load_findings(weights)
    version = embedding_version(model)
    refs = library.image_refs(("xray",))
    studies = {r.study_id for r in refs}
    first_image = {}
    for r in refs:
        first_image.setdefault(r.study_id, r.image_id)
    reports: list[tuple[int, int]] = []

    assert score_findings(library, model, progress=lambda done, total: reports.append((done, total))) == len(studies)
    assert reports[0] == (0, len(studies)) and reports[-1] == (len(studies), len(studies))
    for f in FINDINGS:
        stored = library.scores(model.id, version, score_key(f))
        assert set(stored) == studies
        assert all(0.0 <= v <= 1.0 for v in stored.values())
    # The stored numbers are the model's probabilities for the study's image.
    for study in sorted(studies)[:2]:
        expected = predict_findings(model, read_stored_xray(library, first_image[study])).as_dict()
        for f in FINDINGS:
            assert library.scores(model.id, version, score_key(f))[study] == pytest.approx(expected[f], abs=1e-5)
    # The features the predictor uses are stored for every X-ray image.
    ids, _ = library.embeddings(model.id, version)
    assert sorted(ids) == sorted(r.image_id for r in refs)

    assert score_findings(library, model) == 0  # incremental
    pseudonym = xray_patients(library)[0]
    png = generate_xray("COVID-19", 0.7, seed=910_001, size=256).to_png()
    add_upload(library, [("late.png", png)], modality="X-ray", label="COVID-19", patient=pseudonym)
    assert score_findings(library, model) == 1


def test_score_findings_skips_an_unreadable_xray_and_scores_the_rest(library_copy: Path, weights: Path) -> None:
    library = open_library(library_copy, create=False)
    model = load_findings(weights)
    refs = library.image_refs(("xray",))
    broken = refs[0]
    library.image_path(library.image_record(broken.image_id)).write_bytes(b"this is not an image")

    score_findings(library, model)

    stored = library.scores(model.id, embedding_version(model), score_key("Lung Opacity"))
    assert set(stored) == {r.study_id for r in refs} - {broken.study_id}
    assert broken.study_id not in {p.second_study for p in xray_pairs(library, model)}


def test_xray_pairs_are_consecutive_dated_xrays_categorised_from_the_notes(scored) -> None:
    library, model = scored
    version = embedding_version(model)
    pairs = xray_pairs(library, model)
    patients = xray_patients(library)

    expected_count = sum(max(len(dated_xray_studies(library, p)) - 1, 0) for p in patients)
    assert expected_count > 0 and len(pairs) == expected_count
    probs = {f: library.scores(model.id, version, score_key(f)) for f in FINDINGS}
    image_study = {r.image_id: r.study_id for r in library.image_refs(("xray",))}
    for p in patients:
        studies = dated_xray_studies(library, p)
        mine = [pair for pair in pairs if pair.patient == p]
        assert [(x.first_study, x.second_study) for x in mine] == [
            (a.id, b.id) for a, b in zip(studies, studies[1:], strict=False)
        ]
        notes = {s.id: s.note for s in studies}
        for pair in mine:
            assert pair.first_day <= pair.second_day
            assert image_study[pair.first_image] == pair.first_study
            assert image_study[pair.second_image] == pair.second_study
            for f in FINDINGS:
                assert pair.change[f] == pytest.approx(probs[f][pair.second_study] - probs[f][pair.first_study])
            from_note = category_in_note(notes[pair.second_study])
            assert from_note is not None  # every demo follow-up X-ray compares with its prior
            assert (pair.category, pair.category_from) == (from_note, "note")
    assert {p.category for p in pairs} <= set(CATEGORIES)


def test_xray_pairs_without_a_comparison_follow_the_rule(library_copy: Path, weights: Path) -> None:
    library = open_library(library_copy, create=False)
    model = load_findings(weights)
    version = embedding_version(model)

    def upload(seed: int, day: float | None, note: str | None, patient: str | None = None) -> tuple[str, int]:
        png = generate_xray("COVID-19", 0.5, seed=seed, size=256).to_png()
        return add_upload(
            library,
            [(f"{seed}.png", png)],
            modality="X-ray",
            label="COVID-19",
            note=note,
            offset_admission_days=day,
            patient=patient,
        )

    who, s0 = upload(920_001, 0.0, "PA chest radiograph.")
    _, s1 = upload(920_002, 4.0, None, who)
    _, s_undated = upload(920_003, None, None, who)
    _, s2 = upload(
        920_004, 8.0, "PA chest radiograph. Compared with the prior radiograph of day 4: no significant change.", who
    )
    _, s3 = upload(920_005, 11.0, "Portable film.", who)
    score_findings(library, model)
    # Set the stored Lung Opacity probabilities so the rule has something to decide.
    lung = {s0: 0.20, s1: 0.45, s_undated: 0.9, s2: 0.95, s3: 0.30}
    library.put_scores(model.id, version, score_key("Lung Opacity"), lung)

    mine = [p for p in xray_pairs(library, model) if p.patient == who]
    assert [(p.first_study, p.second_study) for p in mine] == [(s0, s1), (s1, s2), (s2, s3)]
    assert [p.category_from for p in mine] == ["rule", "note", "rule"]
    assert [p.category for p in mine] == ["Worse", "Stable", "Improved"]  # +0.25; note; -0.65
    assert mine[0].change["Lung Opacity"] == pytest.approx(0.25)


def test_patient_findings_scores_on_the_fly_in_time_order(library_copy: Path, weights: Path) -> None:
    library = open_library(library_copy, create=False)
    model = load_findings(weights)
    version = embedding_version(model)
    patients = xray_patients(library)
    pseudonym = max(patients, key=lambda p: len(dated_xray_studies(library, p)))
    studies = dated_xray_studies(library, pseudonym)
    first_image = {}
    for r in library.image_refs(("xray",)):
        first_image.setdefault(r.study_id, r.image_id)
    assert library.scores(model.id, version, score_key(FINDINGS[0])) == {}

    rows = patient_findings(library, model, pseudonym)

    assert [r[0] for r in rows] == [s.id for s in studies]
    days = [r[1] for r in rows]
    assert days == sorted(days) and days == [float(s.day) for s in studies]
    for study_id, _, probs in rows:
        assert list(probs) == list(FINDINGS)
        expected = predict_findings(model, read_stored_xray(library, first_image[study_id])).as_dict()
        assert probs == pytest.approx(expected, abs=1e-5)
    # Stored: the library-wide scoring only has the other patients' X-rays left.
    stored = library.scores(model.id, version, score_key(FINDINGS[-1]))
    assert set(stored) == {s.id for s in studies}
    total = len({r.study_id for r in library.image_refs(("xray",))})
    assert score_findings(library, model) == total - len(studies)
    assert patient_findings(library, model, pseudonym) == rows


def reference_confusion(library, model, pairs, k: int, second: bool) -> dict[str, int]:
    """The predictor's confusion matrix, with scikit-learn called directly."""
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    used = [p for p in pairs if p.category in ("Worse", "Improved")]
    ids, matrix = library.embeddings(model.id, embedding_version(model))
    where = {image: n for n, image in enumerate(ids)}
    X = np.clip(matrix[[where[p.second_image if second else p.first_image] for p in used]], 0.0, None)
    y = np.array([p.category == "Worse" for p in used], dtype=int)
    g = np.array([p.patient for p in used])
    pred = np.zeros_like(y)
    for train, test in LeaveOneGroupOut().split(X, y, g):
        if len(set(y[train].tolist())) < 2:
            pred[test] = y[train][0]
            continue
        pipe = make_pipeline(
            SelectKBest(chi2, k=min(k, X.shape[1])), StandardScaler(), LogisticRegression(max_iter=1000)
        )
        pred[test] = pipe.fit(X[train], y[train]).predict(X[test])
    return {
        "tp": int(((pred == 1) & (y == 1)).sum()),
        "fn": int(((pred == 0) & (y == 1)).sum()),
        "tn": int(((pred == 0) & (y == 0)).sum()),
        "fp": int(((pred == 1) & (y == 0)).sum()),
    }


@pytest.mark.parametrize("reversed_order", [False, True])
def test_predictor_on_the_library_matches_sklearn(scored, reversed_order: bool) -> None:
    library, model = scored
    pairs = xray_pairs(library, model)
    used = [p for p in pairs if p.category in ("Worse", "Improved")]

    result = predict_worse_vs_improved(library, model, pairs, k=3, reversed_order=reversed_order)

    assert result.n_pairs == len(used)
    assert result.n_patients == len({p.patient for p in used})
    assert result.k_features == 3 and len(result.selected_features) == 3
    assert ("reversed" in result.order) == reversed_order
    c = result.confusion
    assert c == reference_confusion(library, model, pairs, 3, reversed_order)
    assert c["tp"] + c["fn"] == sum(p.category == "Worse" for p in used)
    m = result.metrics
    for name, (k, n) in {
        "accuracy": (c["tp"] + c["tn"], len(used)),
        "sensitivity": (c["tp"], c["tp"] + c["fn"]),
        "specificity": (c["tn"], c["tn"] + c["fp"]),
    }.items():
        ci = binomtest(k, n).proportion_ci(method="wilson")
        assert m[name]["value"] == pytest.approx(k / n)
        assert (m[name]["low"], m[name]["high"]) == pytest.approx((ci.low, ci.high))
    sens, spec = c["tp"] / (c["tp"] + c["fn"]), c["tn"] / (c["tn"] + c["fp"])
    if 0 < sens < 1 and 0 < spec < 1:
        assert m["lr_positive"]["value"] == pytest.approx(sens / (1 - spec))
        assert m["lr_negative"]["value"] == pytest.approx((1 - sens) / spec)


# -- findings-change command ------------------------------------------------------------------


def test_cli_findings_change_json(library_copy: Path, weights: Path, capsys) -> None:
    status = main(
        ["findings-change", "--weights", str(weights), "--library", str(library_copy), "--device", "cpu", "--json"]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    result = json.loads(out)

    library = open_library(library_copy, create=False)
    notes = {}
    for p in xray_patients(library):
        studies = dated_xray_studies(library, p)
        for b in studies[1:]:
            notes[(p, b.id)] = category_in_note(b.note)
    counts = {c: sum(v == c for v in notes.values()) for c in CATEGORIES}
    assert result["model_id"] == "cxr-findings"
    assert result["n_pairs"] == len(notes)
    assert result["categories"] == counts
    assert result["categories_from_notes"] == len(notes)
    assert "Lung Opacity" in result["rule_without_a_note"]

    table = result["table"]
    assert len(table) == 3 * len(FINDINGS) == 30
    assert {(r["finding"], r["comparison"]) for r in table} == {(f, c) for f in FINDINGS for c in COMPARISON_NAMES}
    for r in table:
        first, second = r["comparison"].split(" vs ")
        assert (r["n_first"], r["n_second"]) == (counts[first], counts[second])

    # The p-values are Mann-Whitney U on this library's stored changes.
    model = load_findings(weights)
    pairs = xray_pairs(library, model)
    for r in (r for r in table if r["finding"] == "Lung Opacity"):
        first, second = r["comparison"].split(" vs ")
        a = [p.change["Lung Opacity"] for p in pairs if p.category == first]
        b = [p.change["Lung Opacity"] for p in pairs if p.category == second]
        if a and b:
            assert r["mann_whitney_p"] == pytest.approx(mannwhitneyu(a, b, alternative="two-sided").pvalue)

    assert set(result["predictor"]) == {"first_xray", "reversed_order_control"}
    w_i = [k for k, c in notes.items() if c in ("Worse", "Improved")]
    enough = len({p for p, _ in w_i}) >= 3 and counts["Worse"] and counts["Improved"]
    for entry in result["predictor"].values():
        if enough:
            assert entry["n_pairs"] == counts["Worse"] + counts["Improved"]
            assert sum(entry["confusion"].values()) == entry["n_pairs"]
            assert set(entry["metrics"]) >= {"accuracy", "sensitivity", "specificity", "ppv", "npv"}
        else:
            assert "error" in entry
    assert result["predictor"]["first_xray"].get("order", "first X-ray") == "first X-ray"

    # Again, as text: nothing left to score, same pairs.
    status = main(["findings-change", "--weights", str(weights), "--library", str(library_copy), "--device", "cpu"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.startswith(f"{len(notes)} pairs of sequential X-rays")


def test_cli_findings_change_with_too_few_pairs_reports_the_predictor_error(
    tmp_path: Path, weights: Path, capsys
) -> None:
    library = open_library(tmp_path / "small", create=True)
    who, _ = add_upload(
        library,
        [("a.png", generate_xray("COVID-19", 0.3, seed=930_001, size=256).to_png())],
        modality="X-ray",
        label="COVID-19",
        offset_admission_days=0.0,
    )
    add_upload(
        library,
        [("b.png", generate_xray("COVID-19", 0.7, seed=930_001, size=256, session=1).to_png())],
        modality="X-ray",
        label="COVID-19",
        note="Compared with the prior radiograph of day 0: increased opacities.",
        offset_admission_days=3.0,
        patient=who,
    )
    status = main(
        [
            "findings-change",
            "--weights",
            str(weights),
            "--library",
            str(tmp_path / "small"),
            "--device",
            "cpu",
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert status == 0, err
    result = json.loads(out)
    assert result["n_pairs"] == 1 and result["categories"] == {"Worse": 1, "Stable": 0, "Improved": 0}
    assert len(result["table"]) == 30
    assert all(r["mann_whitney_p"] is None and r["cohens_d"] is None for r in result["table"])
    for entry in result["predictor"].values():
        assert set(entry) == {"error"} and "Too few" in entry["error"]


def test_cli_findings_change_errors_are_one_line(tmp_path: Path, weights: Path, library_copy: Path, capsys) -> None:
    base = ["findings-change", "--weights", str(weights), "--device", "cpu"]

    status = main([*base, "--library", str(tmp_path / "no-library")])
    assert_one_line_error(status, *capsys.readouterr())

    status = main([*base, "--library", str(library_copy), "--model", "cxr-resnet18"])
    assert_one_line_error(status, *capsys.readouterr(), "not a findings model")

    status = main([*base, "--library", str(library_copy), "--k", "0"])
    assert_one_line_error(status, *capsys.readouterr(), "--k")
