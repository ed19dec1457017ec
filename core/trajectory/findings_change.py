"""Sequential X-ray change (seed 004): finding probabilities per X-ray, their change between a
patient's sequential X-rays, the Worse / Stable / Improved category of each pair, the
statistics of seed 004's Table 2, and the predictor of Worse vs Improved from the first X-ray.

- Probabilities come from the findings model (cxr-findings) and are stored in the library's
  scores table per study, under ``finding:<name>``, per weights version.
- Pairs are consecutive dated X-ray studies of one patient. The category is read from the
  second study's note where it compares with the prior ("Compared with the prior radiograph of
  day 3: increased opacities" -> Worse; "no significant change" -> Stable; "decreased" or
  "resolved" -> Improved). Without such a sentence it follows :data:`CHANGE_RULE`: the change
  in Lung Opacity above +0.1 is Worse, below -0.1 Improved, else Stable.
- Table 2: for each finding, the change (second minus first) compared between categories with
  the two-sided Mann-Whitney U test (scipy) and Cohen's d (pooled standard deviation).
- Predictor: the first X-ray's last-convolutional-layer features (the findings model's pooled
  features, from the library's embeddings), chi-square feature selection (k features, 5 in the
  paper), standardisation, logistic regression, leave-one-patient-out (scikit-learn); accuracy, sensitivity,
  specificity, PPV, NPV (Wilson 95% intervals) and likelihood ratios (95% intervals on the log
  scale); and the reversed-order control, which predicts from the second X-ray instead.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.errors import DashboardError, InsufficientDataError
from core.findings import check_findings_model, findings_from_inputs
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.preprocess import xray_to_input
from core.search.embeddings import embedding_version, index_library, read_stored_xray
from core.types import Progress

CATEGORIES: tuple[str, ...] = ("Worse", "Stable", "Improved")
COMPARISONS: tuple[tuple[str, str], ...] = (("Worse", "Improved"), ("Worse", "Stable"), ("Stable", "Improved"))
CHANGE_RULE = "Lung Opacity change > +0.1: Worse; < -0.1: Improved; otherwise Stable"
_RULE_FINDING, _RULE_DELTA = "Lung Opacity", 0.1
_COMPARED = re.compile(r"compared with the prior[^:]*:\s*(?P<phrase>[^.]+)", re.IGNORECASE)
_PHRASES: tuple[tuple[str, str], ...] = (
    ("no significant change", "Stable"),
    ("no new", "Stable"),
    ("unchanged", "Stable"),
    ("stable", "Stable"),
    ("new ", "Worse"),
    ("increased", "Worse"),
    ("worse", "Worse"),
    ("progress", "Worse"),
    ("decreased", "Improved"),
    ("resolved", "Improved"),
    ("improved", "Improved"),
)


def score_key(finding: str) -> str:
    return f"finding:{finding}"


def category_from_note(note: str | None) -> str | None:
    """Worse / Stable / Improved from a note's comparison with the prior, or None without one."""
    m = _COMPARED.search(note or "")
    if not m:
        return None
    phrase = m.group("phrase").lower()
    for words, category in _PHRASES:
        if words in phrase:
            return category
    return None


def category_from_change(change: dict[str, float]) -> str:
    """:data:`CHANGE_RULE` applied to the change of each finding's probability."""
    delta = change.get(_RULE_FINDING, 0.0)
    return "Worse" if delta > _RULE_DELTA else "Improved" if delta < -_RULE_DELTA else "Stable"


def categorise(change: dict[str, float], note: str | None) -> tuple[str, str]:
    """(category, "note" or "rule") of a pair: from the second study's note where it compares
    with the prior, else by :data:`CHANGE_RULE` from the change of each finding."""
    from_note = category_from_note(note)
    return (from_note, "note") if from_note else (category_from_change(change), "rule")


def score_findings(library: CaseLibrary, model: LoadedModel, *, progress: Progress | None = None) -> int:
    """Store the findings model's probabilities for every X-ray study without them, and its
    features (embeddings) for every X-ray; return how many studies were scored (unreadable
    images are skipped and tried again next time)."""
    check_findings_model(model)
    version = embedding_version(model)
    have = library.scores(model.id, version, score_key(model.card.labels[0]))
    seen: set[int] = set()
    todo = []
    for ref in library.image_refs(("xray",)):
        if ref.study_id not in seen and ref.study_id not in have:
            todo.append(ref)
        seen.add(ref.study_id)
    if progress and todo:
        progress(0, len(todo))
    batch: dict[str, dict[int, float]] = {label: {} for label in model.card.labels}

    def flush() -> None:
        for label, values in batch.items():
            if values:
                library.put_scores(model.id, version, score_key(label), values)
                values.clear()

    scored = 0
    for n, ref in enumerate(todo, 1):
        try:
            image = read_stored_xray(library, ref.image_id)
        except DashboardError:
            continue
        probs = findings_from_inputs(model, xray_to_input(image, model.card.input))[0]
        for label, p in zip(model.card.labels, probs, strict=True):
            batch[label][ref.study_id] = float(p)
        scored += 1
        if n % 32 == 0:
            flush()
        if progress:
            progress(n, len(todo))
    flush()
    index_library(library, model)
    return scored


@dataclass(frozen=True)
class XrayPair:
    patient: str
    first_study: int
    second_study: int
    first_image: int
    second_image: int
    first_day: float
    second_day: float
    category: str
    category_from: str  # "note" or "rule"
    change: dict[str, float]  # second minus first, per finding


def xray_pairs(library: CaseLibrary, model: LoadedModel) -> list[XrayPair]:
    """Every pair of consecutive scored X-ray studies of each patient, in time order."""
    version = embedding_version(model)
    probs = {f: library.scores(model.id, version, score_key(f)) for f in model.card.labels}
    first_image: dict[int, int] = {}
    for ref in library.image_refs(("xray",)):
        first_image.setdefault(ref.study_id, ref.image_id)
    who = sorted({r.patient_pseudonym for r in library.image_refs(("xray",))})
    pairs = []
    for pseudonym in who:
        studies = [
            s
            for s in library.patient(pseudonym).studies
            if s.modality == "X-ray"
            and s.day is not None
            and s.id in first_image
            and s.id in probs[model.card.labels[0]]
        ]
        for a, b in zip(studies, studies[1:], strict=False):
            change = {f: probs[f][b.id] - probs[f][a.id] for f in model.card.labels}
            category, category_from = categorise(change, b.note)
            pairs.append(
                XrayPair(
                    patient=pseudonym,
                    first_study=a.id,
                    second_study=b.id,
                    first_image=first_image[a.id],
                    second_image=first_image[b.id],
                    first_day=float(a.day),  # type: ignore[arg-type]
                    second_day=float(b.day),  # type: ignore[arg-type]
                    category=category,
                    category_from=category_from,
                    change=change,
                )
            )
    return pairs


def cohens_d(a: np.ndarray, b: np.ndarray) -> float | None:
    """(mean a - mean b) / pooled standard deviation; None when undefined."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.size < 2 or b.size < 2:
        return None
    pooled = ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    # Groups that do not vary leave rounding noise (1e-34 for three copies of 0.1), not zero.
    scale = max(float(np.abs(a).max()), float(np.abs(b).max()), 1.0)
    if pooled <= (1e-12 * scale) ** 2:
        return None
    return float((a.mean() - b.mean()) / math.sqrt(pooled))


def change_statistics(pairs: list[XrayPair], findings: tuple[str, ...]) -> list[dict[str, Any]]:
    """Seed 004's Table 2: per finding and comparison, the Mann-Whitney U p-value and Cohen's d
    of the change, with each group's size and median."""
    from scipy.stats import mannwhitneyu

    rows = []
    for finding in findings:
        by = {c: np.array([p.change[finding] for p in pairs if p.category == c]) for c in CATEGORIES}
        for first, second in COMPARISONS:
            a, b = by[first], by[second]
            p_value = float(mannwhitneyu(a, b, alternative="two-sided").pvalue) if a.size and b.size else None
            rows.append(
                {
                    "finding": finding,
                    "comparison": f"{first} vs {second}",
                    "n_first": int(a.size),
                    "n_second": int(b.size),
                    "median_first": float(np.median(a)) if a.size else None,
                    "median_second": float(np.median(b)) if b.size else None,
                    "mann_whitney_p": None if p_value is None or math.isnan(p_value) else p_value,
                    "cohens_d": cohens_d(a, b),
                }
            )
    return rows


def _wilson(k: int, n: int) -> tuple[float | None, float | None, float | None]:
    from scipy.stats import binomtest

    if n == 0:
        return None, None, None
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return k / n, float(ci.low), float(ci.high)


def _likelihood_ratio(
    sens: tuple[int, int], spec: tuple[int, int], positive: bool
) -> tuple[float | None, float | None, float | None]:
    """LR+ = sens / (1 - spec) or LR- = (1 - sens) / spec, with a 95% interval on the log scale
    (the usual delta-method interval for a ratio of two proportions)."""
    tp, n_pos = sens
    tn, n_neg = spec
    if n_pos == 0 or n_neg == 0:
        return None, None, None
    if positive:
        a, n1, b, n2 = tp, n_pos, n_neg - tn, n_neg
    else:
        a, n1, b, n2 = n_pos - tp, n_pos, tn, n_neg
    if a == 0 or b == 0:
        return (None if b == 0 else 0.0), None, None
    ratio = (a / n1) / (b / n2)
    se = math.sqrt(1 / a - 1 / n1 + 1 / b - 1 / n2)
    return ratio, ratio * math.exp(-1.96 * se), ratio * math.exp(1.96 * se)


@dataclass(frozen=True)
class PredictorResult:
    order: str  # "first X-ray" or "second X-ray (reversed-order control)"
    n_pairs: int
    n_patients: int
    k_features: int
    confusion: dict[str, int]  # tp, fn, tn, fp with Worse as positive
    metrics: dict[str, dict[str, float | None]]  # name -> value, low, high
    selected_features: list[int] = field(default_factory=list)  # chosen on all pairs (for the record)

    def as_dict(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "n_pairs": self.n_pairs,
            "n_patients": self.n_patients,
            "k_features": self.k_features,
            "confusion": self.confusion,
            "metrics": self.metrics,
            "selected_features": self.selected_features,
        }


def leave_one_patient_out(features: np.ndarray, worse: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Out-of-fold predictions (1 = Worse): for each patient, chi-square selection of ``k``
    features and a logistic regression fitted on every other patient's pairs only."""
    from sklearn.feature_selection import SelectKBest, chi2
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import LeaveOneGroupOut
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    predicted = np.zeros(worse.size, dtype=int)
    for train, test in LeaveOneGroupOut().split(features, worse, groups):
        if np.unique(worse[train]).size < 2:
            predicted[test] = int(worse[train][0])
            continue
        # Standardised before the regression: the L2-normalised features are tiny, and an
        # unscaled regularised fit barely leaves the intercept (it predicted the majority class).
        model = make_pipeline(
            SelectKBest(chi2, k=min(k, features.shape[1])), StandardScaler(), LogisticRegression(max_iter=1000)
        )
        model.fit(features[train], worse[train])
        predicted[test] = model.predict(features[test])
    return predicted


def predict_worse_vs_improved(
    library: CaseLibrary, model: LoadedModel, pairs: list[XrayPair], *, k: int = 5, reversed_order: bool = False
) -> PredictorResult:
    """Seed 004's predictor of Worse vs Improved from one X-ray of each pair (see the module doc)."""
    from sklearn.feature_selection import chi2

    used = [p for p in pairs if p.category in ("Worse", "Improved")]
    if len({p.patient for p in used}) < 3 or len({p.category for p in used}) < 2:
        raise InsufficientDataError("Too few Worse and Improved pairs (from at least 3 patients) to fit a predictor.")
    ids, matrix = library.embeddings(model.id, embedding_version(model))
    row = {image_id: n for n, image_id in enumerate(ids)}
    image = (lambda p: p.second_image) if reversed_order else (lambda p: p.first_image)
    used = [p for p in used if image(p) in row]
    features = np.clip(matrix[[row[image(p)] for p in used]], 0.0, None)  # chi-square needs non-negative features
    worse = np.array([p.category == "Worse" for p in used], dtype=int)
    groups = np.array([p.patient for p in used])
    predicted = leave_one_patient_out(features, worse, groups, k)
    tp = int(((predicted == 1) & (worse == 1)).sum())
    fn = int(((predicted == 0) & (worse == 1)).sum())
    tn = int(((predicted == 0) & (worse == 0)).sum())
    fp = int(((predicted == 1) & (worse == 0)).sum())

    def entry(triple: tuple[float | None, float | None, float | None]) -> dict[str, float | None]:
        return {"value": triple[0], "low": triple[1], "high": triple[2]}

    metrics = {
        "accuracy": entry(_wilson(tp + tn, tp + tn + fp + fn)),
        "sensitivity": entry(_wilson(tp, tp + fn)),
        "specificity": entry(_wilson(tn, tn + fp)),
        "ppv": entry(_wilson(tp, tp + fp)),
        "npv": entry(_wilson(tn, tn + fn)),
        "lr_positive": entry(_likelihood_ratio((tp, tp + fn), (tn, tn + fp), True)),
        "lr_negative": entry(_likelihood_ratio((tp, tp + fn), (tn, tn + fp), False)),
    }
    scores, _ = chi2(features, worse)
    top = [int(i) for i in np.argsort(np.nan_to_num(scores, nan=-1.0))[::-1][: min(k, features.shape[1])]]
    return PredictorResult(
        order="second X-ray (reversed-order control)" if reversed_order else "first X-ray",
        n_pairs=len(used),
        n_patients=len(set(groups.tolist())),
        k_features=min(k, features.shape[1]),
        confusion={"tp": tp, "fn": fn, "tn": tn, "fp": fp},
        metrics=metrics,
        selected_features=top,
    )


def patient_findings(
    library: CaseLibrary, model: LoadedModel, pseudonym: str
) -> list[tuple[int, float, dict[str, float]]]:
    """(study id, day, finding probabilities) of each dated X-ray of a patient, in time order;
    X-rays not scored yet are scored now (and stored)."""
    check_findings_model(model)
    version = embedding_version(model)
    labels = model.card.labels
    stored = {f: library.scores(model.id, version, score_key(f)) for f in labels}
    first_image: dict[int, int] = {}
    for ref in library.image_refs(("xray",)):
        if ref.patient_pseudonym == pseudonym:
            first_image.setdefault(ref.study_id, ref.image_id)
    out = []
    for s in library.patient(pseudonym).studies:
        if s.modality != "X-ray" or s.day is None or s.id not in first_image:
            continue
        if s.id not in stored[labels[0]]:
            image = read_stored_xray(library, first_image[s.id])
            probs = findings_from_inputs(model, xray_to_input(image, model.card.input))[0]
            for f, p in zip(labels, probs, strict=True):
                library.put_scores(model.id, version, score_key(f), {s.id: float(p)})
                stored[f][s.id] = float(p)
        out.append((s.id, float(s.day), {f: stored[f][s.id] for f in labels}))
    return out
