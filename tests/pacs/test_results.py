"""The results sent back to the archive (:mod:`core.pacs.results`), built without a server: the
Secondary Capture and the Comprehensive SR of the demo X-ray and CT studies, read with the tiny
test models.

What a PACS user would notice: the objects file with the source's study and patient, name what
made them, reference the source instances, state the model, its probabilities with their
threshold and the research-use statement (in the SR's items and burned into the capture's
pixels), say "no result" where the model withholds its label, and pass the checks a DICOM
validator makes of their modules.
"""

from __future__ import annotations

import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from core.errors import InvalidInputError
from core.explain.overlay import colormap_lut
from core.models.registry import LoadedModel, ModelRegistry
from core.ood import OodVerdict
from core.pacs.results import (
    MANUFACTURER,
    RESEARCH_STATEMENT,
    SC_SERIES_DESCRIPTION,
    SR_SERIES_DESCRIPTION,
    ModelStatement,
    burn_in,
    ct_results,
    describe_results,
    xray_results,
)
from tests.pacs.conftest import LoadedStudy

SC_CLASS, SR_CLASS = "1.2.840.10008.5.1.4.1.1.7", "1.2.840.10008.5.1.4.1.1.88.33"


@pytest.fixture(scope="module")
def xray_model(tiny_weights: Path) -> LoadedModel:
    return ModelRegistry(tiny_weights, device="cpu").load("cxr-resnet18")


@pytest.fixture(scope="module")
def ct_models(ct_weights: Path) -> tuple[LoadedModel, LoadedModel]:
    registry = ModelRegistry(ct_weights, device="cpu")
    return registry.load("covid3d-tiny"), registry.load("ct-slice-tiny")


@pytest.fixture(scope="module")
def xray_built(xray_source: LoadedStudy, xray_model: LoadedModel) -> list[Dataset]:
    return xray_results(xray_source.files, xray_model)


@pytest.fixture(scope="module")
def ct_built(ct_source: LoadedStudy, ct_models: tuple[LoadedModel, LoadedModel]) -> list[Dataset]:
    return ct_results(ct_source.files, *ct_models)


def header(data: bytes) -> Dataset:
    return pydicom.dcmread(BytesIO(data), stop_before_pixels=True)


def content_items(ds: Dataset) -> list[Dataset]:
    """Every content item of an SR, depth first."""
    out = []

    def walk(items: list[Dataset]) -> None:
        for item in items:
            out.append(item)
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


def texts(ds: Dataset, meaning: str) -> list[str]:
    return [
        str(i.TextValue)
        for i in content_items(ds)
        if i.ValueType == "TEXT" and i.ConceptNameCodeSequence[0].CodeMeaning == meaning
    ]


def numbers(ds: Dataset) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for i in content_items(ds):
        if i.ValueType == "NUM":
            name = str(i.ConceptNameCodeSequence[0].CodeMeaning)
            out.setdefault(name, []).append(float(i.MeasuredValueSequence[0].NumericValue))
    return out


def image_references(ds: Dataset) -> dict[str, str]:
    """IMAGE items of an SR: concept meaning -> referenced SOP instance UID."""
    return {
        str(i.ConceptNameCodeSequence[0].CodeMeaning): str(i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
        for i in content_items(ds)
        if i.ValueType == "IMAGE"
    }


def evidence_uids(sr: Dataset) -> set[str]:
    return {
        str(inst.ReferencedSOPInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for inst in series.ReferencedSOPSequence
    }


# --------------------------------------------------------------------------------------------
# What a DICOM validator checks (dciodvfy's way): each module's type 1 attributes present and not
# empty, type 2 present (may be empty).

TYPE1 = {
    "SOP Common": ("SOPClassUID", "SOPInstanceUID"),
    "General Study": ("StudyInstanceUID",),
    "General Series": ("Modality", "SeriesInstanceUID"),
    "General Equipment": (),
}
TYPE2 = {
    "Patient": ("PatientName", "PatientID", "PatientBirthDate", "PatientSex"),
    "General Study": ("StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber"),
    "General Series": ("SeriesNumber",),
    "General Equipment": ("Manufacturer",),
}
SC_TYPE1 = {
    "SC Equipment": ("ConversionType",),
    "Image Pixel": (
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "PlanarConfiguration",
        "PixelData",
    ),
}
SC_TYPE2 = {"General Image": ("InstanceNumber", "PatientOrientation")}
SR_TYPE1 = {
    "SR Document Series": ("Modality", "SeriesInstanceUID", "SeriesNumber"),
    "SR Document General": ("InstanceNumber", "CompletionFlag", "VerificationFlag", "ContentDate", "ContentTime"),
    "SR Document Content": ("ValueType", "ConceptNameCodeSequence", "ContinuityOfContent", "ContentSequence"),
}
SR_TYPE2 = {"SR Document General": ("PerformedProcedureCodeSequence",)}


def missing_attributes(ds: Dataset, type1: dict, type2: dict) -> list[str]:
    problems = []
    for module, keywords in type1.items():
        for kw in keywords:
            value = ds.get(kw)
            if value is None or value == "" or (hasattr(value, "__len__") and len(value) == 0):
                problems.append(f"{module}: type 1 {kw} missing or empty")
    for module, keywords in type2.items():
        problems += [f"{module}: type 2 {kw} missing" for kw in keywords if kw not in ds]
    return problems


def written_and_read(ds: Dataset) -> Dataset:
    """``ds`` through Part 10 bytes with pydicom's strict value checks (each value fits its VR)."""
    buffer = BytesIO()
    with pydicom.config.strict_reading():
        previous = pydicom.config.settings.writing_validation_mode
        pydicom.config.settings.writing_validation_mode = pydicom.config.RAISE
        try:
            pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
        finally:
            pydicom.config.settings.writing_validation_mode = previous
        return pydicom.dcmread(BytesIO(buffer.getvalue()))


# --------------------------------------------------------------------------------------------
# X-ray


def test_xray_results_file_with_the_source_study_and_name_what_made_them(
    xray_source: LoadedStudy, xray_built: list[Dataset]
) -> None:
    sc, sr = xray_built
    source = header(xray_source.files[0][1])
    assert (str(sc.SOPClassUID), str(sr.SOPClassUID)) == (SC_CLASS, SR_CLASS)
    for ds in (sc, sr):
        assert ds.StudyInstanceUID == source.StudyInstanceUID
        assert (ds.PatientID, str(ds.PatientName), ds.AccessionNumber) == ("PACS-0001", "DOE^JANE", "ACC-0001")
        assert str(ds.StudyDate) == str(source.StudyDate)
        assert ds.Manufacturer == MANUFACTURER
        assert ds.SeriesInstanceUID != source.SeriesInstanceUID
    assert sc.SeriesInstanceUID != sr.SeriesInstanceUID
    assert (sc.SeriesDescription, sr.SeriesDescription) == (SC_SERIES_DESCRIPTION, SR_SERIES_DESCRIPTION)
    assert [str(i.ReferencedSOPInstanceUID) for i in sc.SourceImageSequence] == [source.SOPInstanceUID]
    assert evidence_uids(sr) == {source.SOPInstanceUID, sc.SOPInstanceUID}
    assert image_references(sr) == {
        "Source of Measurement": source.SOPInstanceUID,
        "Illustration of Finding": sc.SOPInstanceUID,
    }


def test_xray_report_states_model_probabilities_rule_and_research_use(
    xray_built: list[Dataset], xray_model: LoadedModel
) -> None:
    sc, sr = xray_built
    card = xray_model.card
    assert texts(sr, "Algorithm Name") == [card.id]
    assert texts(sr, "Algorithm Version") == [card.version]
    probabilities = {name: values[0] for name, values in numbers(sr).items()}
    assert set(probabilities) == {f"Probability of {label}" for label in card.labels}
    assert sum(probabilities.values()) == pytest.approx(100.0, abs=0.01)
    predicted = max(probabilities, key=probabilities.__getitem__).removeprefix("Probability of ")
    assert texts(sr, "Finding") == [predicted]
    assert texts(sr, "Decision rule") == [f"no threshold: the most probable of its {len(card.labels)} classes"]
    assert texts(sr, "Comment") == [RESEARCH_STATEMENT]
    statement = str(sc.ImageComments)
    assert f"{card.id} {card.version}: {predicted} " in statement
    assert "the most probable of its 3 classes" in statement and RESEARCH_STATEMENT in statement


def test_xray_capture_shows_the_overlay_colour_bar_and_a_text_band(xray_built: list[Dataset]) -> None:
    sc = xray_built[0]
    pixels = sc.pixel_array
    assert pixels.dtype == np.uint8 and pixels.shape == (sc.Rows, sc.Columns, 3)
    assert sc.PhotometricInterpretation == "RGB" and sc.BurnedInAnnotation == "NO"
    image = pixels[:512, :512].astype(int)
    assert (np.abs(image[..., 0] - image[..., 2]) > 40).mean() > 0.05, "no colour: the map is not drawn"
    band = pixels[512:]
    assert band.shape[0] >= 40, "no room below the image for the statement"
    lit = (band > 200).all(axis=2)
    assert 0.01 < lit.mean() < 0.5, "the band below the image holds no text"
    assert lit[:, : band.shape[1] // 2].any(axis=0).sum() > 100, "the text does not run along the band"


def test_burn_in_draws_the_colour_bar_high_at_the_top_and_the_lines_below() -> None:
    rgb = np.full((200, 300, 3), 90, dtype=np.uint8)
    out = burn_in(rgb, ["first line of the statement", "second"], "Jet")
    assert out.shape[1] > 300 and out.shape[0] > 200
    assert (out[:200, :300] == 90).all(), "the image itself is left as it was"
    lut = colormap_lut("Jet")
    bar = out[:200, 300:].astype(int)
    top_matches = np.abs(bar[2] - lut[255]).sum(axis=1).min()
    bottom_matches = np.abs(bar[-3] - lut[0]).sum(axis=1).min()
    assert top_matches < 20 and bottom_matches < 20
    rows_with_text = (out[200:] > 200).all(axis=2).any(axis=1)
    assert rows_with_text.sum() > 10
    two = burn_in(rgb, ["one line " * 40], "Jet")
    assert two.shape[0] > out.shape[0] - 10, "a long line is wrapped onto several"


def test_statement_words_threshold_argmax_and_no_result() -> None:
    argmax = ModelStatement("cxr-x", "2", (("COVID-19", 0.62), ("Normal", 0.3), ("Viral", 0.08)), None, 3, "COVID-19")
    assert argmax.lines()[0] == (
        "cxr-x 2: COVID-19 62.0% (no threshold: the most probable of its 3 classes); Normal 30.0%, Viral 8.0%."
    )
    liked = OodVerdict("covid3d", 1.0, 2.0, unit="volume")
    thresholded = ModelStatement("covid3d", "1", (("P(COVID+)", 0.3),), 0.5, 2, "COVID-", ood=liked)
    assert thresholded.lines() == [
        "covid3d 1: COVID-: P(COVID+) 30.0% (against its threshold 50%).",
        "Like its training data (OOD score 1.00 <= threshold 2.00).",
    ]
    unlike = OodVerdict("covid3d", 3.5, 2.0, unit="volume")
    withheld = ModelStatement("covid3d", "1", (("P(COVID+)", 0.9),), 0.5, 2, "COVID+", ood=unlike)
    assert withheld.withheld and withheld.finding == "No result: unlike the training data"
    assert withheld.lines()[0] == "covid3d 1: unlike the training data: no result (OOD score 3.50 > threshold 2.00)."
    assert "COVID+:" not in " ".join(withheld.lines())


def test_a_model_that_finds_the_image_unlike_its_training_data_gives_no_result(
    xray_source: LoadedStudy, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = ModelRegistry(tiny_weights, device="cpu").load("cxr-custom")
    monkeypatch.setattr(model, "ood_verdict", lambda x, unit="image": OodVerdict(model.id, 9.0, 2.0))
    sc, sr = xray_results(xray_source.files, model)
    assert texts(sr, "Finding") == ["No result: unlike the training data"]
    assert texts(sr, "Training-data check") == [
        "Unlike the training data: no result (OOD score 9.00 > threshold 2.00)."
    ]
    assert numbers(sr)["OOD score"] == [9.0] and numbers(sr)["OOD threshold"] == [2.0]
    assert "unlike the training data: no result" in str(sc.ImageComments)
    assert "not a finding" in str(sc.ImageComments)


# --------------------------------------------------------------------------------------------
# CT


def test_ct_results_show_the_slice_where_the_map_is_strongest_and_reference_every_slice(
    ct_source: LoadedStudy, ct_built: list[Dataset], ct_models: tuple[LoadedModel, LoadedModel]
) -> None:
    sc, sr = ct_built
    headers = sorted((header(data) for _, data in ct_source.files), key=lambda h: float(h.ImagePositionPatient[2]))
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == ct_source.study_uid
    assert sc.PatientID == sr.PatientID == "PACS-0002"
    caption = next(line for line in str(sc.ImageComments).splitlines() if line.startswith("Axial slice"))
    index = int(caption.split()[2]) - 1
    shown = headers[index].SOPInstanceUID
    assert [str(i.ReferencedSOPInstanceUID) for i in sc.SourceImageSequence] == [shown]
    assert image_references(sr)["Source of Measurement"] == shown
    assert evidence_uids(sr) == {h.SOPInstanceUID for h in headers} | {sc.SOPInstanceUID}
    assert tuple(sc.PatientOrientation) == ("L", "P")
    covid3d, slice_model = ct_models
    assert texts(sr, "Algorithm Name") == [covid3d.card.id, slice_model.card.id]
    found = numbers(sr)
    assert 0.0 <= found["Probability of COVID+"][0] <= 100.0 and 0.0 <= found["Patient score"][0] <= 100.0
    assert found["Threshold Value"] == [50.0, 100.0 * slice_model.card.thresholds.get("scan", 0.5)]
    assert set(texts(sr, "Finding")) <= {"COVID+", "COVID-"}
    assert "3D Grad-CAM of covid3d-tiny" in caption


def test_ct_results_without_covid3d_show_the_slice_models_most_covid_like_slice(
    ct_source: LoadedStudy, ct_models: tuple[LoadedModel, LoadedModel]
) -> None:
    sc, sr = ct_results(ct_source.files, None, ct_models[1])
    assert "its most COVID-like slice" in str(sc.ImageComments)
    assert texts(sr, "Algorithm Name") == [ct_models[1].card.id]


# --------------------------------------------------------------------------------------------
# Validation


@pytest.mark.parametrize("which", ["xray_built", "ct_built"])
def test_objects_pass_the_module_checks_and_highdicom_reads_them_back(
    which: str, request: pytest.FixtureRequest
) -> None:
    sc, sr = request.getfixturevalue(which)
    assert missing_attributes(sc, TYPE1 | SC_TYPE1, TYPE2 | SC_TYPE2) == []
    assert missing_attributes(sr, TYPE1 | SR_TYPE1, TYPE2 | SR_TYPE2) == []
    assert sc.ConversionType == "WSD" and sr.Modality == "SR"
    assert (sr.CompletionFlag, sr.VerificationFlag) == ("COMPLETE", "UNVERIFIED")
    assert sr.ValueType == "CONTAINER" and sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    sc_back, sr_back = written_and_read(sc), written_and_read(sr)
    assert np.array_equal(sc_back.pixel_array, sc.pixel_array)
    report = hd.sr.ComprehensiveSR.from_dataset(sr_back)
    assert {str(uid) for _, _, uid, _ in report.get_evidence()} == evidence_uids(sr)


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="DCMTK's dsrdump is not installed")
def test_dcmtk_reads_the_report_without_a_complaint(ct_built: list[Dataset], tmp_path: Path) -> None:
    """DCMTK checks an SR's content tree against the IOD's relationship constraints as it reads it."""
    path = tmp_path / "sr.dcm"
    pydicom.dcmwrite(path, ct_built[1], enforce_file_format=True)
    done = subprocess.run(["dsrdump", "-v", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    complaints = [
        line for line in done.stderr.splitlines() if line.startswith(("E:", "W:")) and "ISO_IR 192" not in line
    ]
    assert complaints == []
    assert "Comprehensive SR Document" in done.stdout and "Probability of COVID+" in done.stdout


def test_describe_results_names_each_object_and_the_statement(xray_built: list[Dataset]) -> None:
    lines = describe_results(xray_built)
    assert lines[0].startswith(f"Secondary Capture Image '{SC_SERIES_DESCRIPTION}'")
    assert lines[1].startswith(f"Comprehensive SR '{SR_SERIES_DESCRIPTION}'")
    assert any(RESEARCH_STATEMENT in line for line in lines)
    assert not any("DOE" in line or "PACS-0001" in line for line in lines), "what is shown names no patient"


def test_a_source_that_is_not_dicom_or_holds_several_images_is_refused(
    xray_source: LoadedStudy, xray_model: LoadedModel, chest_png: bytes
) -> None:
    with pytest.raises(InvalidInputError, match="must be DICOM"):
        xray_results([("chest.png", chest_png)], xray_model)
    with pytest.raises(InvalidInputError, match="one radiograph at a time"):
        xray_results([*xray_source.files, *xray_source.files], xray_model)


def test_a_source_without_the_optional_attributes_still_gives_valid_objects(
    xray_source: LoadedStudy, xray_model: LoadedModel
) -> None:
    """Archives often hold files without a Study ID, a referring physician or a patient's sex."""
    ds = pydicom.dcmread(BytesIO(xray_source.files[0][1]))
    for keyword in ("StudyID", "ReferringPhysicianName", "PatientSex", "PatientBirthDate", "PatientOrientation"):
        if keyword in ds:
            delattr(ds, keyword)
    buffer = BytesIO()
    ds.save_as(buffer)
    sc, sr = xray_results([("xray.dcm", buffer.getvalue())], xray_model)
    assert missing_attributes(sc, TYPE1 | SC_TYPE1, TYPE2 | SC_TYPE2) == []
    assert missing_attributes(sr, TYPE1 | SR_TYPE1, TYPE2 | SR_TYPE2) == []
    assert sc.StudyInstanceUID == sr.StudyInstanceUID == ds.StudyInstanceUID
    assert tuple(sc.PatientOrientation) == ("L", "F"), "a frontal film's usual display when the file says none"
    for obj in (sc, sr):
        assert written_and_read(obj).SOPInstanceUID == obj.SOPInstanceUID  # strict VR checks raise


def test_a_model_unlike_the_image_draws_no_map_on_the_capture(
    xray_source: LoadedStudy,
    ct_source: LoadedStudy,
    tiny_weights: Path,
    ct_models,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """A map of a model that has no grounds on the image is not sent: the X-ray capture has none;
    a CT's is the slice model's where COVID3D alone finds the series unlike, and none where both do."""
    model = ModelRegistry(tiny_weights, device="cpu").load("cxr-custom")
    monkeypatch.setattr(model, "ood_verdict", lambda x, unit="image": OodVerdict(model.id, 9.0, 2.0))
    sc, _ = xray_results(xray_source.files, model)
    assert "No map: cxr-custom finds this image unlike its training data." in str(sc.ImageComments)
    assert "Grad-CAM of" not in str(sc.ImageComments)

    covid3d, slice_model = ct_models
    monkeypatch.setattr(covid3d, "ood_verdict", lambda x, unit="volume": OodVerdict(covid3d.id, 9.0, 2.0, unit=unit))
    sc, _ = ct_results(ct_source.files, covid3d, slice_model)
    assert f"Grad-CAM of {slice_model.card.id} for COVID-19" in str(sc.ImageComments)
    assert f"3D Grad-CAM of {covid3d.card.id}" not in str(sc.ImageComments)
    monkeypatch.setattr(
        slice_model, "ood_verdict", lambda x, unit="slice": OodVerdict(slice_model.id, 9.0, 2.0, unit=unit)
    )
    sc, _ = ct_results(ct_source.files, covid3d, slice_model)
    assert "no map: every model finds this series unlike its training data" in str(sc.ImageComments)
