"""The model's read of a meeting case: the study a case stands for, read by the model the pages
show first, as a label in the reader's vocabulary, and no label where the model has no grounds."""

from __future__ import annotations

import functools
import zlib
from pathlib import Path

import pytest
import torch

from core.errors import InvalidInputError, MissingModelError
from core.labels import XRAY_LABELS
from core.library.meeting_records import CT_READS, MeetingCase
from core.library.records import NewPatient, NewStudy
from core.library.store import NewImage, open_library
from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry
from core.review.model_read import model_read


def case_of(pseudonym: str, study_id: int | None) -> MeetingCase:
    return MeetingCase(1, 1, 1, pseudonym, study_id, frozenset(), False)


@pytest.fixture(scope="module")
def shipped() -> tuple[ModelRegistry, functools._lru_cache_wrapper]:
    registry = ModelRegistry(DEFAULT_WEIGHTS_DIR, device=torch.device("cpu"))
    return registry, functools.lru_cache(maxsize=None)(registry.load)


@pytest.mark.demo_weights
def test_a_demo_patients_studies_are_read_by_the_demo_models(demo_library: Path, shipped) -> None:
    registry, load = shipped
    library = open_library(demo_library, create=False)
    patient = next(library.patient(p.pseudonym) for p in library.patients() if p.label == "COVID-19" and p.n_ct)
    xray = next(s for s in patient.studies if s.modality == "X-ray")
    ct = next(s for s in patient.studies if s.modality == "CT")

    read = model_read(library, case_of(patient.pseudonym, xray.id), registry, load=load)
    card = registry.card("cxr-resnet18")  # the demo reference model, as the X-ray page for the demo X-rays
    assert (read.model_id, read.model_version) == (card.id, card.version)
    assert (read.study_id, read.modality) == (xray.id, "X-ray")
    assert read.label == "COVID-19" and read.threshold is None and read.in_distribution is True
    assert read.probability > 1 / 3 and "COVID-19" in read.reason

    read = model_read(library, case_of(patient.pseudonym, ct.id), registry, load=load)
    card = registry.card("covid3d")  # what the CT page shows first
    assert (read.model_id, read.model_version, read.study_id) == ("covid3d", card.version, ct.id)
    assert read.threshold == card.thresholds["covid"] and read.label in CT_READS
    assert read.label == ("COVID" if read.probability >= read.threshold else "not COVID")
    assert f"{read.threshold:.1%}" in read.reason


@pytest.mark.demo_weights
def test_a_whole_patient_is_read_on_the_latest_study_the_model_reads(demo_library: Path, shipped) -> None:
    registry, load = shipped
    library = open_library(demo_library, create=False)
    patient = next(library.patient(p.pseudonym) for p in library.patients() if p.n_ct and p.n_xray)
    latest_ct = [s for s in patient.studies if s.modality == "CT"][-1]

    read = model_read(library, patient.pseudonym, registry, "ct-slice-resnet18", load=load)
    card = registry.card("ct-slice-resnet18")
    assert read.study_id == latest_ct.id and read.threshold == card.thresholds["scan"]
    assert read.label == ("COVID" if read.probability >= card.thresholds["scan"] else "not COVID")
    assert read.to_json()["study_id"] == latest_ct.id


@pytest.mark.demo_weights
def test_no_label_where_the_study_is_unlike_the_models_training_data(demo_library: Path, shipped) -> None:
    """The real-data model shown a demo phantom answers confidently, and is not taken at its word."""
    registry, load = shipped
    library = open_library(demo_library, create=False)
    pseudonym = library.patients()[0].pseudonym
    read = model_read(library, pseudonym, registry, "cxr-real-resnet18", load=load)
    assert read.in_distribution is False and read.label is None
    assert read.probability > 0.5  # the confident answer that is withheld
    assert "unlike its training data" in read.reason


def test_a_model_without_an_ood_reference_gives_its_label(tmp_path: Path, tiny_weights: Path, chest_png: bytes) -> None:
    library = open_library(tmp_path / "lib")
    study = library.add_case(
        NewPatient(pseudonym="P-UP", source="upload", label="COVID-19"),
        NewStudy(modality="X-ray", offset_admission_days=2),
        [NewImage("xray", (("x.png", chest_png),))],
        str(zlib.crc32(chest_png)),
    )
    registry = ModelRegistry(tiny_weights, device=torch.device("cpu"))
    read = model_read(library, case_of("P-UP", study), registry)
    assert read.model_id == "cxr-resnet18"  # the reference model where no real-data one is registered
    assert read.in_distribution is None and read.label in XRAY_LABELS and read.threshold is None


def test_refusals_are_plain(tmp_path: Path, tiny_weights: Path, chest_png: bytes) -> None:
    library = open_library(tmp_path / "lib")
    library.add_case(
        NewPatient(pseudonym="P-CT", source="upload"),
        NewStudy(modality="CT", offset_admission_days=0),
        [NewImage("ct-series", (("1.dcm", b"x"),))],
        "k1",
    )
    registry = ModelRegistry(tiny_weights, device=torch.device("cpu"))
    with pytest.raises(InvalidInputError, match="P-CT has no X-ray study"):
        model_read(library, "P-CT", registry, "cxr-resnet18")
    with pytest.raises(MissingModelError, match="No registered model reads a CT study"):
        model_read(library, "P-CT", registry)
    with pytest.raises(MissingModelError, match="No model 'nope'"):
        model_read(library, "P-CT", registry, "nope")
    with pytest.raises(InvalidInputError, match="no patient P-NONE"):
        model_read(library, "P-NONE", registry)
