"""The model's read of a meeting case: what the room compares its own reads with.

A case is a patient or one of their studies (:class:`~core.review.meetings.MeetingCase`). The
model reads one study: the case's own, or for a whole patient their latest study that the
model can read. The read is a label in the vocabulary a reader uses for that kind of study:

- an X-ray is read by a 3-class X-ray model: the label is the predicted class (an argmax, so
  there is no threshold), the probability is that class's;
- a CT series is read by COVID3D (the model the CT page shows first): "COVID" when P(COVID+)
  reaches the card's threshold, else "not COVID"; or by a CT slice model: its patient score (the
  mean P(COVID-19) of the top 10% of the slices read) against the card's scan threshold.

When the study is unlike the images the model was trained on (its OOD verdict), the label is
None: the model has no grounds for an answer, and the reason says so. A model without an OOD
reference gives its label with ``in_distribution`` None (it cannot tell).

The default model follows the pages: the demo models for the demo cohort's patients (synthetic
phantoms), the models trained on real images for everyone else, the reference X-ray model
(seed 000's ResNet-18) first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from core.ct.analysis import COVID_LABEL, analyse_ct
from core.errors import InvalidInputError, MissingModelError
from core.inference import xray_reading
from core.io.ct_series import read_ct_series
from core.io.images import read_xray
from core.library.demo import DEMO_SOURCE
from core.library.meeting_records import CT_READS, MeetingCase
from core.library.records import Patient, Study
from core.library.store import CaseLibrary
from core.models.manifest import ModelCard
from core.models.registry import LoadedModel, ModelRegistry
from core.ood import OodVerdict

#: The reference X-ray models (seed 000's ResNet-18), real first, as on the X-ray page.
XRAY_REFERENCES: tuple[str, ...] = ("cxr-real-resnet18", "cxr-resnet18")
#: The input kinds a model needs to read a study of each modality, the CT page's first first.
READS_MODALITY: dict[str, tuple[str, ...]] = {"X-ray": ("xray",), "CT": ("ct-volume", "ct-slice")}
#: The image kind each input kind reads from the library.
_IMAGE_KIND = {"xray": "xray", "ct-volume": "ct-series", "ct-slice": "ct-series"}


@dataclass(frozen=True)
class ModelRead:
    """One model's read of one study of a meeting case.

    ``label`` is an X-ray class (as the model names it) or one of :data:`CT_READS`, or None when
    the study is unlike the model's training data (``in_distribution`` False); ``probability``
    is the predicted class's (X-ray) or P(COVID) / the patient score (CT); ``threshold`` is what
    ``probability`` was held against (None for an argmax); ``in_distribution`` is None when the
    model has no OOD reference. ``reason`` says in a sentence how the label came about.
    """

    model_id: str
    model_version: str
    label: str | None
    probability: float
    threshold: float | None
    in_distribution: bool | None
    reason: str
    study_id: int
    modality: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _domain_of(patient: Patient) -> str:
    return "demo" if patient.summary.source == DEMO_SOURCE else "real"


def default_model_id(registry: ModelRegistry, modality: str, domain: str) -> str:
    """The model a page would show first for a study of ``modality`` from a patient of
    ``domain`` ("demo" or "real"): the X-ray reference model, or COVID3D before a slice model,
    the models of the patient's domain first; a plain error when no model reads it."""
    kinds = READS_MODALITY.get(modality, ())
    for kind in kinds:
        cards = registry.cards(kind) if kind != "xray" else [registry.card(i) for i in registry.classifier_ids(kind)]
        if not cards:
            continue
        ranked = sorted(
            cards,
            key=lambda c: (
                c.domain != domain,
                c.id not in XRAY_REFERENCES,
                XRAY_REFERENCES.index(c.id) if c.id in XRAY_REFERENCES else 0,
                c.id,
            ),
        )
        return ranked[0].id
    raise MissingModelError(f"No registered model reads a {modality} study.")


def _study_of(patient: Patient, study_id: int | None, modalities: Sequence[str]) -> Study:
    """The case's study, or the patient's latest study of one of ``modalities`` with an image."""
    if study_id is not None:
        study = next((s for s in patient.studies if s.id == study_id), None)
        if study is None:
            raise InvalidInputError(f"Study {study_id} is not one of {patient.pseudonym}'s studies.")
        return study
    readable = [s for s in patient.studies if s.modality in modalities and s.images]
    if not readable:
        raise InvalidInputError(f"{patient.pseudonym} has no {' or '.join(modalities)} study a model can read.")
    return readable[-1]  # studies come in time order


def _verdict_words(verdict: OodVerdict | None) -> str:
    return "" if verdict is None else f" {verdict.headline()}"


def _xray_read(library: CaseLibrary, study: Study, model: LoadedModel) -> ModelRead:
    record = next((i for i in study.images if i.kind == "xray"), None)
    if record is None:
        raise InvalidInputError(f"Study {study.id} has no X-ray image for {model.id} to read.")
    _, data = library.image_files(record)[0]
    reading = xray_reading(model, read_xray(data, f"study {study.id}"))
    pred = reading.prediction
    label = pred.predicted_label if reading.accepted else None
    verdict = None if reading.ood is None else reading.ood.in_distribution
    reason = (
        f"{model.id} predicts {pred.predicted_label} ({pred.probabilities[pred.predicted_index]:.1%}, "
        "the most probable of its classes)."
        if label is not None
        else f"{model.id} gives no label: the image is unlike its training data."
    )
    return ModelRead(
        model_id=pred.model_id,
        model_version=pred.model_version,
        label=label,
        probability=float(pred.probabilities[pred.predicted_index]),
        threshold=None,
        in_distribution=verdict,
        reason=reason + _verdict_words(reading.ood),
        study_id=study.id,
        modality=study.modality,
    )


def _ct_label(probability: float, threshold: float) -> str:
    return CT_READS[0] if probability >= threshold else CT_READS[1]


def _ct_read(library: CaseLibrary, study: Study, model: LoadedModel) -> ModelRead:
    record = next((i for i in study.images if i.kind == "ct-series"), None)
    if record is None:
        raise InvalidInputError(f"Study {study.id} has no CT series for {model.id} to read.")
    volume = read_ct_series(library.image_files(record))
    card: ModelCard = model.card
    if card.input_kind == "ct-volume":
        analysis = analyse_ct(volume, model, None, cam=False)
        probability, threshold, ood = analysis.probability, analysis.threshold, analysis.covid3d_ood
        what = "P(COVID+)"
    else:
        analysis = analyse_ct(volume, None, model)
        probability, ood = analysis.patient_score, analysis.slice_ood
        threshold = float(card.thresholds.get("scan", card.thresholds.get("covid", 0.5)))
        what = f"patient score (mean P({COVID_LABEL}) of the top slices)"
    assert probability is not None and threshold is not None  # the model of its kind was run
    accepted = ood is None or ood.in_distribution
    label = _ct_label(probability, threshold) if accepted else None
    if label is not None:
        sign = ">=" if label == CT_READS[0] else "<"
        reason = f"{model.id}: {what} {probability:.1%} {sign} threshold {threshold:.1%}, so {label}."
    else:
        reason = f"{model.id} gives no label: the scan is unlike its training data."
    return ModelRead(
        model_id=card.id,
        model_version=card.version,
        label=label,
        probability=float(probability),
        threshold=threshold,
        in_distribution=None if ood is None else ood.in_distribution,
        reason=reason + _verdict_words(ood),
        study_id=study.id,
        modality=study.modality,
    )


def model_read(
    library: CaseLibrary,
    case: MeetingCase | str,
    registry: ModelRegistry,
    model_id: str | None = None,
    *,
    load: Callable[[str], LoadedModel] | None = None,
) -> ModelRead:
    """What ``model_id`` (default: the model the pages show first) reads in a meeting case.

    Parameters
    ----------
    library
        The case library holding the case's patient and images.
    case
        A meeting case (a patient, or one of their studies), or a patient's pseudonym (their
        latest study).
    registry
        The registered models.
    model_id
        The model to read with; for a whole patient it also chooses the study (the latest one
        of a modality it reads). Default: :func:`default_model_id` for the latest study.
    load
        How to get a loaded model (a page passes its shared cache); default ``registry.load``.

    Raises
    ------
    InvalidInputError
        An unknown patient or study, or a study with no image the model reads.
    MissingModelError
        An unknown model, or none that reads the study.
    """
    pseudonym, study_id = (case, None) if isinstance(case, str) else (case.pseudonym, case.study_id)
    patient = library.patient(pseudonym)
    if model_id is None:
        study = _study_of(patient, study_id, tuple(READS_MODALITY))
        model_id = default_model_id(registry, study.modality, _domain_of(patient))
    card = registry.card(model_id)
    modalities = [m for m, kinds in READS_MODALITY.items() if card.input_kind in kinds]
    if not modalities or card.multi_label:
        raise MissingModelError(f"Model {model_id} does not give an X-ray class or a CT read; choose another model.")
    study = _study_of(patient, study_id, modalities)
    if study.modality not in modalities:
        raise InvalidInputError(
            f"Model {model_id} reads {modalities[0]} studies; study {study.id} is {study.modality}."
        )
    model = (load or registry.load)(model_id)
    if not any(i.kind == _IMAGE_KIND[card.input_kind] for i in study.images):
        raise InvalidInputError(f"Study {study.id} has no image {model_id} can read.")
    return _xray_read(library, study, model) if card.input_kind == "xray" else _ct_read(library, study, model)
