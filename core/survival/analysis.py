"""Kaplan-Meier analyses of a patient cohort grouped by a model or a clinical factor.

Two endpoints, each with its cohort and time origin (see :mod:`core.survival.cohort`):

- ``discharge`` (seed 003's prognosis): COVID-19 patients with at least two CTs, timed from
  the second CT to discharge (death and the data freeze censor). Seed 003 compares three
  stratifications of the same patients: the 2-scan model (prior + follow-up), the 1-scan
  model (the follow-up alone) and clinical factors (age and sex);
- ``death`` (seed 000's survival): COVID-19 patients with X-rays, timed from admission to
  death (discharge and the freeze censor), grouped by the CNN-LSTM over the whole series.

Groupings: ``model`` (the endpoint's model: 2-scan prognosis or the CNN-LSTM),
``model-1scan`` (discharge only), ``clinical`` (logistic regression on age and sex,
out-of-fold over these patients, 5 folds, so no patient is predicted by a fit that saw
them), ``age`` (below / at or above a cut, default 60), ``sex``, and ``s`` (COVID3D's s(t):
at the time origin's scan, or its change since the prior, against a threshold).

A model trained on this same library (its card lists held-out patients by pseudonym) is
analysed on its held-out patients only; the demo weights were trained on another cohort, so
the whole demo library is held out for them.

Predictions are stored in the library per model version and study (``put_scores``, as the
trajectories store s(t)), so a second analysis reads them instead of running the models again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from core.ct.preprocess import prepare_volume
from core.errors import InvalidInputError
from core.evaluation.binary import binary_metrics
from core.models.prognosis import HIGH_RISK_DAYS
from core.models.registry import LoadedModel
from core.survival.cohort import OutcomePatient, Scan, clinical_design
from core.survival.km import KMAnalysis, NotEnoughDataError, km_analysis
from core.survival.predict import (
    predict_prognosis,
    predict_survival,
    prognosis_threshold,
    survival_threshold,
)
from core.trajectory.scores import score_name, score_version
from core.types import Progress

ENDPOINTS: tuple[str, ...] = ("discharge", "death")
GROUPINGS: tuple[str, ...] = ("model", "model-1scan", "clinical", "age", "sex", "s")
S_FEATURES: tuple[str, ...] = ("last", "change")
HIGH, LOW = "High risk", "Low risk"

#: Score names under which predictions are stored in the library.
PROGNOSIS_SCORE = "prognosis-logit"
SURVIVAL_SCORE = "survival-logit"


@dataclass
class GroupedCohort:
    """Patients with their endpoint and group, ready for :func:`km_analysis`."""

    endpoint: str
    grouping: str
    description: str  # how the groups are made and when the clock starts
    group_order: tuple[str, ...]
    patients: list[str] = field(default_factory=list)
    durations: list[float] = field(default_factory=list)
    events: list[bool] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)  # reason -> patients
    risk: dict[str, float] = field(default_factory=dict)  # P(high risk) per patient, for model and clinical groupings
    truth: dict[str, bool] = field(default_factory=dict)  # known high risk (discharge) or death, per patient
    threshold: float = 0.5  # the cut on ``risk`` that made the groups

    def add(self, patient: str, duration: float, event: bool, group: str) -> None:
        self.patients.append(patient)
        self.durations.append(float(duration))
        self.events.append(bool(event))
        self.groups.append(group)

    def exclude(self, reason: str) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + 1

    def analyse(self) -> KMAnalysis:
        return km_analysis(
            self.durations, self.events, self.groups, endpoint=self.endpoint, group_order=self.group_order
        )

    def group_of(self, patient: str) -> str | None:
        try:
            return self.groups[self.patients.index(patient)]
        except ValueError:
            return None


def endpoint_cohort(patients: list[OutcomePatient], endpoint: str) -> list[tuple[OutcomePatient, float]]:
    """The endpoint's eligible patients with their time origin (days since admission)."""
    if endpoint not in ENDPOINTS:
        raise InvalidInputError(f"Unknown endpoint '{endpoint}'; choose one of: {', '.join(ENDPOINTS)}.")
    out = []
    for p in patients:
        if p.label != "COVID-19":
            continue
        if endpoint == "discharge":
            cts = p.cts()
            if len(cts) >= 2 and p.discharge_endpoint(cts[1].day) is not None:
                out.append((p, cts[1].day))
        elif p.xrays() and p.death_endpoint() is not None:
            out.append((p, 0.0))
    return out


def held_out_only(model: LoadedModel | None, patients: list[OutcomePatient]) -> list[OutcomePatient]:
    """The patients a model did not train on, when it was trained on this library (see above)."""
    if model is None:
        return patients
    held = set(model.card.training.get("data", {}).get("held_out_patients", []))
    names = {p.patient_id for p in patients}
    if not held & names:
        return patients  # trained elsewhere: every patient here is unseen
    return [p for p in patients if p.patient_id in held]


def _stored(library, model: LoadedModel, name: str) -> dict[int, float]:  # noqa: ANN001

    return {} if library is None else library.scores(model.id, score_version(model), name)


def _store(library, model: LoadedModel, name: str, values: dict[int, float]) -> None:  # noqa: ANN001

    if library is not None and values:
        library.put_scores(model.id, score_version(model), name, values)


def _cached_logits(
    model: LoadedModel,
    rows: list[tuple[OutcomePatient, float]],
    library,  # noqa: ANN001
    name: str,
    scans_of: Callable[[OutcomePatient], list[Scan]],
    predict: Callable[[list[np.ndarray]], float],
    progress: Progress | None,
) -> dict[str, float]:
    """Each patient's logit from ``predict`` on the images of ``scans_of``, read from the library
    when stored there (by the last scan's study) and stored when computed."""
    stored = _stored(library, model, name)
    out, new = {}, {}
    for i, (p, _) in enumerate(rows):
        scans = scans_of(p)
        key = scans[-1].study_id
        if key is not None and key in stored:
            out[p.patient_id] = stored[key]
        else:
            out[p.patient_id] = predict([s.load() for s in scans])
            if key is not None:
                new[key] = out[p.patient_id]
        if progress:
            progress(i + 1, len(rows))
    _store(library, model, name, new)
    return out


def prognosis_logits(
    model: LoadedModel,
    rows: list[tuple[OutcomePatient, float]],
    library=None,  # noqa: ANN001
    progress: Progress | None = None,
) -> dict[str, float]:
    """Each patient's prognosis logit at the second CT (1 scan: it alone; 2: with the first)."""
    scans = int(model.card.architecture_kwargs.get("scans", 1))
    return _cached_logits(
        model,
        rows,
        library,
        PROGNOSIS_SCORE,
        lambda p: p.cts()[:2][2 - scans :],
        lambda volumes: predict_prognosis(model, volumes).logit,
        progress,
    )


def survival_logits(
    model: LoadedModel,
    rows: list[tuple[OutcomePatient, float]],
    library=None,  # noqa: ANN001
    progress: Progress | None = None,
) -> dict[str, float]:
    """Each patient's CNN-LSTM survival logit over their X-ray series (stored by the last X-ray)."""
    max_xrays = int(model.card.training.get("config", {}).get("max_xrays", 8))
    return _cached_logits(
        model,
        rows,
        library,
        SURVIVAL_SCORE,
        lambda p: p.xrays()[:max_xrays],
        lambda images: predict_survival(model, images, gradcam=False).logit,
        progress,
    )


def _sigmoid(z: float) -> float:
    return float(1.0 / (1.0 + np.exp(-z)))


def clinical_probabilities(
    rows: list[tuple[OutcomePatient, float]], target: dict[str, bool], folds: int = 5
) -> dict[str, float]:
    """P(high risk) from age and sex: logistic regression, out-of-fold for patients with a known
    target, and from a fit on all of those for the others."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    patients = [p for p, _ in rows]
    x = clinical_design(patients)
    known = np.array([p.patient_id in target for p in patients], dtype=bool)  # typed: a library may be empty
    y = np.array([1 if target.get(p.patient_id) else 0 for p in patients], dtype=int)
    out = np.full(len(patients), np.nan)
    yk = y[known]
    if known.sum() < 2 * folds or len(set(yk.tolist())) < 2 or min(np.bincount(yk)) < folds:
        raise NotEnoughDataError(
            f"Clinical factors need at least {folds} patients in each outcome class to fit age and sex; "
            f"{int(yk.sum())} high-risk and {int(len(yk) - yk.sum())} low-risk patients here."
        )
    idx = np.flatnonzero(known)
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=0).split(idx, yk):
        fit = LogisticRegression().fit(x[idx[train]], yk[train])
        out[idx[test]] = fit.predict_proba(x[idx[test]])[:, 1]
    if (~known).any():
        out[~known] = LogisticRegression().fit(x[known], yk).predict_proba(x[~known])[:, 1]
    return {p.patient_id: float(v) for p, v in zip(patients, out, strict=False)}


def _s_values(
    s_model: LoadedModel,
    rows: list[tuple[OutcomePatient, float]],
    endpoint: str,
    feature: str,
    library,  # noqa: ANN001
) -> dict[str, float]:
    stored = {} if library is None else library.scores(s_model.id, score_version(s_model), score_name(s_model))
    new: dict[int, float] = {}

    def s_of(scan) -> float:  # noqa: ANN001
        if scan.study_id is not None and scan.study_id in stored:
            return stored[scan.study_id]
        import torch

        x = prepare_volume(scan.load(), s_model.card.input)
        with s_model.lock, torch.inference_mode():
            value = float(s_model.module(x.to(s_model.device))[0, 0])
        if scan.study_id is not None:
            new[scan.study_id] = value
        return value

    out = {}
    for p, _ in rows:
        cts = p.cts()
        if not cts:
            continue
        if endpoint == "death":
            out[p.patient_id] = s_of(cts[0])
        elif feature == "change":
            out[p.patient_id] = s_of(cts[1]) - s_of(cts[0])
        else:
            out[p.patient_id] = s_of(cts[1])
    if library is not None and new:
        library.put_scores(s_model.id, score_version(s_model), score_name(s_model), new)
    return out


def stratify(
    patients: list[OutcomePatient],
    endpoint: str,
    grouping: str,
    *,
    models: dict[str, LoadedModel] | None = None,
    library=None,  # noqa: ANN001 - CaseLibrary where predictions are stored
    age_cut: float = 60.0,
    s_feature: str = "last",
    s_threshold: float = 0.0,
    progress: Progress | None = None,
) -> GroupedCohort:
    """Group the endpoint's patients (see the module docstring).

    ``models`` maps roles to loaded models: "prognosis-2" and "prognosis-1" (discharge),
    "survival" (death), "s" (COVID3D, for the ``s`` grouping).
    """
    models = models or {}
    if grouping not in GROUPINGS:
        raise InvalidInputError(f"Unknown grouping '{grouping}'; choose one of: {', '.join(GROUPINGS)}.")
    if grouping == "model-1scan" and endpoint != "discharge":
        raise InvalidInputError("The 1-scan model predicts time to discharge: use it with the discharge endpoint.")
    if s_feature not in S_FEATURES:
        raise InvalidInputError(f"Unknown s(t) feature '{s_feature}'; choose one of: {', '.join(S_FEATURES)}.")

    role = role_of(endpoint, grouping)
    model = models.get(role) if role else None
    if role and model is None:
        raise InvalidInputError(f"Grouping by '{grouping}' needs the {role} model, which is not registered.")
    rows = endpoint_cohort(held_out_only(model if grouping.startswith("model") else None, patients), endpoint)
    origin = "the second CT" if endpoint == "discharge" else "admission"
    what = (
        "discharge (death and the data freeze censor)"
        if endpoint == "discharge"
        else "death (discharge and the data freeze censor)"
    )
    order: tuple[str, ...] = (LOW, HIGH)

    groups: dict[str, str] = {}
    risk: dict[str, float] = {}
    if grouping in ("model", "model-1scan") and model is not None:
        if endpoint == "discharge":
            logits = prognosis_logits(model, rows, library, progress)
            cut = prognosis_threshold(model)
            risk = {pid: _sigmoid(z / model.card.temperature) for pid, z in logits.items()}
            groups = {pid: HIGH if v >= cut else LOW for pid, v in risk.items()}
            how = f"{model.id} {model.card.version}: P(remaining stay >= {HIGH_RISK_DAYS:g} days) >= {cut:.2f}"
        else:
            logits = survival_logits(model, rows, library, progress)
            cut = survival_threshold(model)
            risk = {pid: 1.0 - _sigmoid(z / model.card.temperature) for pid, z in logits.items()}
            groups = {pid: HIGH if v >= cut else LOW for pid, v in risk.items()}
            how = f"{model.id} {model.card.version} over the X-ray series: P(death) >= {cut:.2f}"
    elif grouping == "clinical":
        if endpoint == "discharge":
            target = {p.patient_id: h for p, day in rows if (h := p.high_risk(day)) is not None}
        else:
            target = {p.patient_id: p.outcome == "died" for p, _ in rows if p.survival_known}
        risk = clinical_probabilities(rows, target)
        cut = float(np.mean(list(target.values())))
        groups = {pid: HIGH if v >= cut else LOW for pid, v in risk.items()}
        how = (
            "clinical factors: logistic regression on age and sex, 5-fold out-of-fold over these patients, "
            f"high risk above the average risk ({cut:.2f})"
        )
    elif grouping == "age":
        order = (f"age < {age_cut:g}", f"age >= {age_cut:g}")
        groups = {p.patient_id: order[int(p.age >= age_cut)] for p, _ in rows if p.age is not None}
        how = f"age at admission, cut at {age_cut:g} years"
    elif grouping == "sex":
        order = ("F", "M")
        groups = {p.patient_id: p.sex for p, _ in rows if p.sex in order}
        how = "sex"
    else:  # s
        assert model is not None
        values = _s_values(model, rows, endpoint, s_feature, library)
        name = (
            "s at the first CT"
            if endpoint == "death"
            else ("s at the second CT" if s_feature == "last" else "change of s from the first to the second CT")
        )
        order = (f"{name} < {s_threshold:g}", f"{name} >= {s_threshold:g}")
        groups = {pid: order[int(v >= s_threshold)] for pid, v in values.items()}
        how = f"COVID3D {model.card.version}: {name} against {s_threshold:g}"

    cohort = GroupedCohort(endpoint, grouping, f"{how}; time from {origin} to {what}", order)
    for p, day in rows:
        known = p.high_risk(day) if endpoint == "discharge" else (p.outcome == "died" if p.survival_known else None)
        if known is not None:
            cohort.truth[p.patient_id] = known
    cohort.risk = {pid: v for pid, v in risk.items() if pid in groups}
    if risk:
        cohort.threshold = cut
    for p, day in rows:
        group = groups.get(p.patient_id)
        if group is None:
            cohort.exclude("no value for the grouping")
            continue
        end = p.discharge_endpoint(day) if endpoint == "discharge" else p.death_endpoint()
        assert end is not None  # endpoint_cohort kept only patients with one
        cohort.add(p.patient_id, end[0], end[1], group)
    return cohort


def model_role_ids(registry) -> dict[str, str]:  # noqa: ANN001 - ModelRegistry
    """The registered model for each role of :func:`stratify` (the first by id when several)."""
    roles: dict[str, str] = {}
    for card in registry.cards():
        task = card.extra.get("task")
        if task == "prognosis":
            roles.setdefault(f"prognosis-{int(card.architecture_kwargs.get('scans', 1))}", card.id)
        elif task == "survival":
            roles.setdefault("survival", card.id)
        elif card.architecture == "covid3d":
            roles.setdefault("s", card.id)
    return roles


def role_of(endpoint: str, grouping: str) -> str | None:
    """Which model role a grouping needs (None: no model)."""
    if grouping == "model":
        return "prognosis-2" if endpoint == "discharge" else "survival"
    return {"model-1scan": "prognosis-1", "s": "s"}.get(grouping)


def check_risk(cohort: GroupedCohort) -> dict | None:
    """How well a model's (or the clinical factors') P(high risk) matches what happened, on the
    cohort's patients with a known answer: AUC, accuracy, sensitivity, specificity, Brier score
    and the confusion matrix at the cohort's threshold. None for groupings without a probability."""
    # evaluation pulls in scikit-learn's metrics, about 1 s of the CLI's start-up (measured).

    ids = [pid for pid in cohort.patients if pid in cohort.risk and pid in cohort.truth]
    if not ids:
        return None
    y = np.array([int(cohort.truth[pid]) for pid in ids])
    p = np.array([cohort.risk[pid] for pid in ids])
    return binary_metrics(y, p, cohort.threshold, ("Low risk", "High risk")) | {"y": y.tolist(), "p": p.tolist()}


def risk_groups_km(
    patients: list[OutcomePatient], high: dict[str, bool], endpoint: str, days: dict[str, float] | None = None
) -> dict:
    """The KM analysis (as a dict for a model card) of patients grouped high / low risk: time to
    death, or to discharge from each patient's ``days``; ``{"message": ...}`` when there is not
    enough data."""
    rows = []
    for p in patients:
        if p.patient_id not in high:
            continue
        end = p.death_endpoint() if endpoint == "death" else p.discharge_endpoint((days or {})[p.patient_id])
        if end is not None:
            rows.append((end, HIGH if high[p.patient_id] else LOW))
    try:
        return km_analysis(
            [e[0] for e, _ in rows],
            [e[1] for e, _ in rows],
            [g for _, g in rows],
            endpoint=endpoint,
            group_order=(LOW, HIGH),
        ).to_dict()
    except NotEnoughDataError as e:
        return {"message": str(e)}
