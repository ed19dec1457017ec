"""Models side by side on the same cases, and a CT model's robustness to the window.

Comparison (seed 003's Table 1: COVID3D against a 2D slice model; seed 000's resnet18 vs
densenet121 vs the custom CNN): every model scores the same cases, held out by all of them;
each AUC gets a patient-level bootstrap CI, and every pair DeLong's test and a paired bootstrap
of the AUC difference. The score compared is P(COVID-19) by default (one-vs-rest for the 3-class
X-ray models, the scan score for the CT models); the X-ray models can be compared on another
class against the rest.

Robustness (seed 003: "AUC bounds were computed by evaluating COVID3D across 100 different
image windows across 1 std. dev. of variability (Hounsfield Units) during test-time"): the
scans are read once, then scored at ``n`` windows whose center and width are drawn uniformly
within one SD of the training window; the AUC of each window, their mean and SD, and the band
of ROC curves.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from scipy.special import expit, softmax

from core.errors import InsufficientDataError, InvalidInputError
from core.evaluation import metrics as em
from core.evaluation.data import EvalData, held_out_for, model_kind
from core.evaluation.predict import Predictions, predict, read_volumes
from core.evaluation.results import ComparedModel, Comparison, PairedTest, WindowRobustness
from core.labels import SLICE_CLASSES
from core.models.manifest import ModelCard
from core.models.registry import LoadedModel
from core.types import Progress

#: One SD of the window, (center, width) in HU, when the caller gives none: the spread of lung
#: windows between scanners and sites (the paper does not state its number).
DEFAULT_WINDOW_SD = (50.0, 150.0)
ROC_GRID = np.linspace(0.0, 1.0, 101)


def positive_scores(
    card: ModelCard, preds: Predictions, positive: str = "COVID-19"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth 0/1, calibrated P(positive), patient) per case of ``preds``: one class against the
    rest for a 3-class X-ray model, P(COVID-19) per scan for a CT model."""
    kind = model_kind(card)
    image = kind in ("xray", "slice-images")
    if not image and positive != "COVID-19":
        raise InvalidInputError(f"{card.id} scores COVID-19 only, not {positive}.")
    if image and positive not in card.labels:
        raise InvalidInputError(f"{card.id} has no class {positive!r} (classes: {', '.join(card.labels)}).")
    y = np.array([int(c.label == positive) for c in preds.cases])
    groups = np.array([c.patient_id for c in preds.cases])
    T = card.temperature
    if image:
        p = softmax(preds.logits / T, axis=1)[:, list(card.labels).index(positive)]
    elif kind == "ct-volume":
        p = expit(preds.logits[:, 0] / T)
    elif kind == "ct-slice":
        p = preds.scan_scores(T)
    else:
        raise InvalidInputError(f"{card.id} has no class score to compare.")
    return y, p, groups


def comparable(cards: Sequence[ModelCard]) -> bool:
    """Whether the models score the same thing on the same kind of input: all 3-class X-ray
    models, or all CT models (COVID3D and the slice model alike give P(COVID-19) per scan)."""
    kinds = {model_kind(card) for card in cards}
    return len(cards) >= 2 and (kinds <= {"xray"} or kinds <= {"slice-images"} or kinds <= {"ct-volume", "ct-slice"})


def comparison_cases(cards: Sequence[ModelCard], data: EvalData) -> EvalData:
    """The cases of ``data`` that every model in ``cards`` held out (for a user's dataset: all)."""
    if data.split == "user":
        return data
    held = set.intersection(*(held_out_for(card, data.cases) for card in cards))
    kept = data.subset(
        lambda c: c.case_id in held,
        f"{data.description}; of these, the cases held out by all of {', '.join(c.id for c in cards)}",
    )
    if not kept.cases:
        raise InsufficientDataError(
            "No case is held out by all of these models: they were trained on different splits of the data."
        )
    return kept


def compare(
    models: Sequence[LoadedModel],
    data: EvalData,
    progress: Progress | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    positive: str = "COVID-19",
) -> Comparison:
    """AUCs of P(``positive``) of ``models`` on the same cases, with paired tests of every pair
    (``positive`` against the other classes for the 3-class X-ray models; COVID-19 for CT)."""
    if len(models) < 2:
        raise InvalidInputError("A comparison needs at least two models.")
    if not comparable([m.card for m in models]):
        raise InvalidInputError(
            "Compare 3-class X-ray models with each other, or CT models with each other; "
            "the findings and series models score other things."
        )
    kinds = {model_kind(m.card) for m in models}
    cases = comparison_cases([m.card for m in models], data)
    scores: dict[str, np.ndarray] = {}
    y = groups = None
    read: tuple[str, ...] | None = None
    for i, model in enumerate(models):
        step = (lambda d, t, i=i: progress(i * t + d, len(models) * t)) if progress else None
        preds = predict(model, cases, step)
        ids = tuple(c.case_id for c in preds.cases)
        if read is not None and ids != read:
            raise InsufficientDataError("Some cases could be read for one model and not another.")
        read = ids
        y, scores[model.id], groups = positive_scores(model.card, preds, positive)
    assert y is not None and groups is not None
    if y.min() == y.max():
        raise InsufficientDataError("The shared cases hold one class only: no AUC to compare.")
    compared = []
    for model in models:
        p = scores[model.id]
        r = em.roc(y, p)
        ci = em.bootstrap_ci(em.roc_auc, y, p, n_boot=n_boot, seed=seed, groups=groups)
        compared.append(
            ComparedModel(
                id=model.id,
                version=model.card.version,
                auc=float(r.auc),
                auc_ci=(ci.low, ci.high),
                fpr=tuple(r.fpr.round(5).tolist()),
                tpr=tuple(r.tpr.round(5).tolist()),
            )
        )
    pairs = []
    for a, b in itertools.combinations([m.id for m in models], 2):
        d = em.delong_test(y, scores[a], scores[b])
        boot = em.paired_bootstrap_auc(y, scores[a], scores[b], n_boot=n_boot, seed=seed, groups=groups)
        pairs.append(
            PairedTest(
                a=a,
                b=b,
                auc_a=d.auc_a,
                auc_b=d.auc_b,
                difference=d.difference,
                delong_z=d.z,
                delong_p=d.p_value,
                bootstrap_ci=(boot.low, boot.high),
                bootstrap_p=boot.p_value,
            )
        )
    return Comparison(
        unit="image" if kinds == {"xray"} else "scan",
        positive=positive,
        n=int(y.size),
        n_patients=int(np.unique(groups).size),
        data=cases.description,
        models=tuple(compared),
        pairs=tuple(pairs),
    )


def window_robustness(
    model: LoadedModel,
    data: EvalData,
    n_windows: int = 100,
    sd: tuple[float, float] = DEFAULT_WINDOW_SD,
    seed: int = 0,
    progress: Progress | None = None,
) -> WindowRobustness:
    """The AUC of a CT model at ``n_windows`` windows within one SD of its training window."""
    card = model.card
    if model_kind(card) not in ("ct-volume", "ct-slice"):
        raise InvalidInputError(f"{card.id} is not a CT model: the window only applies to CT.")
    if n_windows < 2:
        raise InvalidInputError("Use at least 2 windows.")
    if card.input.window is None:
        raise InvalidInputError(f"{card.id}'s card records no training window.")
    center, width = (float(v) for v in card.input.window)
    rng = np.random.default_rng(seed)
    windows = [(center, width)] + [
        (center + rng.uniform(-sd[0], sd[0]), max(50.0, width + rng.uniform(-sd[1], sd[1]))) for _ in range(n_windows)
    ]
    cases, volumes = read_volumes(data)
    total = len(windows) * len(cases.cases)
    aucs, curves = [], []
    y = None
    for k, window in enumerate(windows):
        step = (lambda d, t, k=k: progress(k * t + d, total)) if progress else None
        preds = predict(model, cases, step, window=window, volumes=volumes)
        y, p, _ = positive_scores(card, preds)
        keep = np.array([c.label in _classes(card) for c in preds.cases])
        y, p = y[keep], p[keep]
        if y.min() == y.max():
            raise InsufficientDataError("The cases hold one class only: no AUC.")
        r = em.roc(y, p)
        aucs.append(float(r.auc))
        curves.append(np.interp(ROC_GRID, r.fpr, r.tpr))
    perturbed = np.array(aucs[1:])
    band = np.array(curves[1:])
    base = curves[0]
    grid = tuple(ROC_GRID.round(3).tolist())
    return WindowRobustness(
        unit="scan",
        training_window=(center, width),
        sd=(float(sd[0]), float(sd[1])),
        n_windows=n_windows,
        windows=tuple((round(c, 1), round(w, 1)) for c, w in windows[1:]),
        aucs=tuple(perturbed.round(5).tolist()),
        auc_training_window=aucs[0],
        auc_mean=float(perturbed.mean()),
        auc_sd=float(perturbed.std(ddof=1)),
        auc_min=float(perturbed.min()),
        auc_max=float(perturbed.max()),
        fpr=grid,
        tpr_low=tuple(np.percentile(band, 2.5, axis=0).round(5).tolist()),
        tpr_high=tuple(np.percentile(band, 97.5, axis=0).round(5).tolist()),
        tpr_median=tuple(np.median(band, axis=0).round(5).tolist()),
        fpr_training_window=grid,
        tpr_training_window=tuple(np.round(base, 5).tolist()),
    )


def _classes(card: ModelCard) -> tuple[str, ...]:
    return SLICE_CLASSES if model_kind(card) == "ct-slice" else ("COVID-19", "Normal", "Viral pneumonia")
