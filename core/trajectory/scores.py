"""Scores of every library scan, computed once per model version and stored with the library.

- CT series: COVID3D's score s (its logit; P(COVID+) = sigmoid(s / T)), seed 003's s(t).
- X-rays: an X-ray model's P(COVID-19) (temperature-scaled softmax), the X-ray counterpart.

Scores are kept in the library's ``scores`` table per study, model id and *score version*
(the card's version plus the weights' sha256, as for embeddings), so new weights make them
stale and :func:`score_library` computes them again; otherwise only new studies are scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from core.ct.preprocess import prepare_volume
from core.errors import DashboardError, InvalidInputError
from core.io.ct_series import read_ct_series
from core.library.records import ImageRef
from core.library.store import CaseLibrary
from core.models.registry import LoadedModel
from core.preprocess import xray_to_input
from core.search.embeddings import embedding_version, read_stored_xray
from core.types import Progress

#: Score names in the library's scores table.
CT_SCORE = "s"  # COVID3D's logit
XRAY_SCORE = "p_covid"  # an X-ray model's P(COVID-19)
COVID_LABEL = "COVID-19"


def score_version(model: LoadedModel) -> str:
    """The key scores are stored under: the card's version and the weights' digest."""
    return embedding_version(model)


def score_name(model: LoadedModel) -> str:
    """What a model's stored score is: s for a CT volume model, P(COVID-19) for an X-ray model."""
    kind = model.card.input_kind
    if kind == "ct-volume":
        return CT_SCORE
    if kind == "xray" and COVID_LABEL in model.card.labels:
        return XRAY_SCORE
    raise InvalidInputError(
        f"{model.id} is a {kind} model; trajectories take a CT volume model (COVID3D) "
        f"or an X-ray model with a {COVID_LABEL} class."
    )


def probability(model: LoadedModel, value: float) -> float:
    """A stored score as P(COVID+): sigmoid(s / T) for COVID3D's s; P(COVID-19) as it is."""
    if score_name(model) == CT_SCORE:
        z = value / model.card.temperature
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return value


def decision_threshold(model: LoadedModel) -> float:
    """The model's threshold on its own stored score (s for COVID3D, a probability otherwise)."""
    if score_name(model) == CT_SCORE:
        p = float(model.card.thresholds.get("covid", 0.5))
        return model.card.temperature * math.log(p / (1.0 - p))
    return float(model.card.thresholds.get(COVID_LABEL, model.card.thresholds.get("covid", 0.5)))


def read_stored_ct(library: CaseLibrary, image_id: int):  # noqa: ANN201 - CtVolume, imported late
    """A stored CT series read back as a volume in HU."""
    record = library.image_record(image_id)
    if record.kind != "ct-series":
        raise InvalidInputError(f"Image {image_id} is not a CT series.")
    return read_ct_series(library.image_files(record))


def score_scan(model: LoadedModel, library: CaseLibrary, ref: ImageRef) -> float:
    """The model's score of one stored scan (see the module docstring)."""
    if score_name(model) == CT_SCORE:
        x = prepare_volume(read_stored_ct(library, ref.image_id), model.card.input)
        with model.lock, torch.inference_mode():
            return float(model.module(x.to(model.device))[0, 0])
    image = read_stored_xray(library, ref.image_id)
    x = xray_to_input(image, model.card.input)
    with model.lock, torch.inference_mode():
        logits = model.module(x.to(model.device))[0].float().cpu()
    probs = torch.softmax(logits / model.card.temperature, dim=0)
    return float(probs[model.card.labels.index(COVID_LABEL)])


@dataclass
class ScoreReport:
    model_id: str
    model_version: str
    score: str
    total: int = 0
    already: int = 0
    added: int = 0
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "model_id": self.model_id,
            "model_version": self.model_version,
            "score": self.score,
            "total": self.total,
            "already": self.already,
            "added": self.added,
            "problems": list(self.problems),
        }


def _kinds(model: LoadedModel) -> tuple[str, ...]:
    return ("ct-series",) if score_name(model) == CT_SCORE else ("xray",)


def scored_refs(library: CaseLibrary, model: LoadedModel) -> list[ImageRef]:
    """The library scans the model scores: one per study (its first image of the right kind)."""
    seen: set[int] = set()
    out = []
    for ref in library.image_refs(_kinds(model)):
        if ref.study_id not in seen:
            seen.add(ref.study_id)
            out.append(ref)
    return out


def score_library(library: CaseLibrary, model: LoadedModel, *, progress: Progress | None = None) -> ScoreReport:
    """Score every study the model can score that has no score for its current weights."""
    name, version = score_name(model), score_version(model)
    report = ScoreReport(model.id, version, name)
    refs = scored_refs(library, model)
    have = library.scores(model.id, version, name)
    todo = [r for r in refs if r.study_id not in have]
    report.total, report.already = len(refs), len(refs) - len(todo)
    if progress and todo:
        progress(0, len(todo))
    batch: dict[int, float] = {}
    for n, ref in enumerate(todo, 1):
        try:
            batch[ref.study_id] = score_scan(model, library, ref)
        except DashboardError as e:
            report.problems.append(f"study {ref.study_id}: {e}")
        if len(batch) >= 16 or n == len(todo):
            library.put_scores(model.id, version, name, batch)
            report.added += len(batch)
            batch = {}
        if progress:
            progress(n, len(todo))
    return report
