"""The case report download on the X-ray and CT pages (AppTest, tiny untrained models).

The button hands Streamlit a callable that renders the report when clicked. The tests record
that callable where Streamlit registers it and run it, so they read exactly the file a user
would download. The uploads carry identifying DICOM tags and file names with a patient's name:
none may reach the report unless the user ticks "Include DICOM identifiers in the report".
"""

from __future__ import annotations

import datetime
import html
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid, xray_dicom_bytes
from core.report import IDENTIFIERS_HEADING, dicom_identifiers
from tests.ct_helpers import phantom_volume
from tests.helpers import ROOT
from tests.report_helpers import downloaded, without_bundle

XRAY_PAGE = str(ROOT / "pages" / "xray.py")
CT_PAGE = str(ROOT / "pages" / "ct.py")
PATIENT = DicomPatient(
    "Doe^Jane",
    "MRN12345",
    "19510203",
    "F",
    73,
    address="12 Quay Street, Dunmore",
    institution="St Brigid's & Co <North>",
)
STUDY = DicomStudy(new_uid("report-page-test"), "ACC20200402X", datetime.date(2020, 4, 2), referring_physician="Who^Is")
FILE_NAME = "Doe_Jane_MRN12345.dcm"  # what a hospital export may look like


def visible(document: str) -> str:
    """The document without its base64 images and plotly.js, where any word can occur by chance."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", without_bundle(document))


def assert_no_identifier(document: str, raws: list[bytes]) -> None:
    document = visible(document)
    values = {v for raw in raws for v in dicom_identifiers(raw)}
    assert len(values) >= 9  # the files do carry them
    for value in values:
        assert value not in document and html.escape(value) not in document, value
    assert IDENTIFIERS_HEADING not in document
    for part in ("Doe", "Jane", "MRN12345"):  # nor from the file name
        assert part not in document


def assert_all_identifiers(document: str, raws: list[bytes]) -> None:
    box = re.search(r'<section class="identifiers".*?</section>', document, re.S)
    assert box, "no identifiers box"
    assert IDENTIFIERS_HEADING in box.group(0)
    for raw in raws:
        for value in dicom_identifiers(raw):
            assert html.escape(value) in box.group(0), value


# --------------------------------------------------------------------------------------------
# X-ray


def xray_dicom() -> bytes:
    from core.demo.xray_phantom import generate_xray

    phantom = generate_xray("COVID-19", 0.8, seed=7, size=128)
    return xray_dicom_bytes(phantom.pixels, 0.3, PATIENT, STUDY)


@pytest.fixture
def xray_app(monkeypatch: pytest.MonkeyPatch, tiny_weights: Path) -> AppTest:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))
    return AppTest.from_file(XRAY_PAGE, default_timeout=120)


def test_xray_report_holds_no_identifier_unless_the_user_asks(xray_app: AppTest, deferred) -> None:
    from ui.session import digest

    raw = xray_dicom()
    key = digest(raw)[:12]
    xray_app.run()
    xray_app.file_uploader(key="xray_upload").upload(FILE_NAME, raw, "application/dicom").run()
    assert not xray_app.exception and not xray_app.error
    ticked = xray_app.checkbox(key=f"xray_report_ids_{key}")
    assert ticked.label == "Include DICOM identifiers in the report" and ticked.value is False

    file_name, document = downloaded(xray_app, f"xray_report_{key}", deferred)
    pseudonym = f"upload-{digest(raw)[:8]}"
    assert file_name == f"case-report-{pseudonym}.html"
    assert f"Case review: {pseudonym}" in document
    assert_no_identifier(document, [raw])
    for model_id in ("cxr-custom", "cxr-densenet121", "cxr-resnet18", "average of models"):
        assert f"<td>{model_id}</td>" in document
    assert "<td>test-1</td>" in document  # the models' version
    assert "<td>uncalibrated</td>" in document and "not calibrated" in document
    assert document.count("data:image/png;base64,") == 2  # the radiograph, and with its Grad-CAM
    assert "Grad-CAM of cxr-resnet18" in document
    assert "<script" not in document  # no figure, no plotly.js: a small file

    ticked.check().run()
    assert not xray_app.exception
    _, document = downloaded(xray_app, f"xray_report_{key}", deferred)
    assert_all_identifiers(document, [raw])
    assert "Doe^Jane" in document and "St Brigid&#x27;s &amp; Co &lt;North&gt;" in document


def test_xray_report_of_a_png_offers_no_identifier_box_and_shows_findings(
    monkeypatch: pytest.MonkeyPatch, tiny_weights: Path, tmp_path: Path, chest_png: bytes, deferred
) -> None:
    import shutil

    from tests.helpers import register_tiny_findings_model
    from ui.session import digest

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    register_tiny_findings_model(folder)
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(folder))
    app = AppTest.from_file(XRAY_PAGE, default_timeout=120).run()
    app.multiselect(key="xray_models").set_value(["cxr-custom"])
    app.file_uploader(key="xray_upload").upload("Doe_Jane.png", chest_png, "image/png").run()
    assert not app.exception
    key = digest(chest_png)[:12]
    assert not [c for c in app.checkbox if c.key == f"xray_report_ids_{key}"]
    _, document = downloaded(app, f"xray_report_{key}", deferred)
    assert "Findings (cxr-findings)" in document and "<td>Consolidation</td>" in document
    assert "average of models" not in document
    assert "Doe" not in visible(document) and "Jane" not in visible(document)


# --------------------------------------------------------------------------------------------
# CT


def ct_files(n_slices: int = 16) -> list[tuple[str, bytes]]:
    """A phantom written as DICOM slices named after the patient."""
    hu = phantom_volume(shape=(n_slices, 40, 36)).hu.round().astype(np.int16)
    files = ct_series_files(hu, (5.0, 0.9, 0.9), PATIENT, STUDY)
    return [(f"Doe_Jane_MRN12345_{i:03d}.dcm", data) for i, (_, data) in enumerate(files)]


@pytest.fixture
def ct_app(monkeypatch: pytest.MonkeyPatch, ct_weights: Path) -> AppTest:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(ct_weights))
    return AppTest.from_file(CT_PAGE, default_timeout=120)


def test_ct_report_holds_no_identifier_unless_the_user_asks(ct_app: AppTest, deferred) -> None:
    files = ct_files()
    raws = [data for _, data in files]
    ct_app.run()
    ct_app.file_uploader(key="ct_upload").set_value([(n, d, "application/dicom") for n, d in files]).run()
    assert not ct_app.exception and not ct_app.error
    assert ct_app.checkbox(key="ct_report_ids").value is False

    file_name, document = downloaded(ct_app, "ct_report", deferred)
    assert re.fullmatch(r"case-report-upload-[0-9a-f]{8}\.html", file_name)
    assert_no_identifier(document, raws)
    assert "<td>covid3d-tiny</td>" in document and "<td>ct-slice-tiny</td>" in document
    assert "P(COVID+)" in document and "Patient score" in document and "<td>test-1</td>" in document
    assert document.count("data:image/png;base64,") >= 2  # the slice and the map's projection
    assert "Axial slice 8 of 16" in document
    assert document.count("Plotly.newPlot(") == 1  # the per-slice chart, interactive
    assert "16 x 40 x 36 voxels" in document

    ct_app.checkbox(key="ct_report_ids").check().run()
    assert not ct_app.exception
    _, document = downloaded(ct_app, "ct_report", deferred)
    assert_all_identifiers(document, raws)  # every slice's SOP Instance UID among them


def test_ct_identifiers_are_read_from_inside_a_zip(ct_app: AppTest, deferred) -> None:
    files = ct_files(18)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files:
            archive.writestr(f"export/{name}", data)
    ct_app.run()
    ct_app.file_uploader(key="ct_upload").upload("Doe_Jane.zip", buffer.getvalue(), "application/zip").run()
    assert not ct_app.exception and not ct_app.error
    _, document = downloaded(ct_app, "ct_report", deferred)
    assert_no_identifier(document, [data for _, data in files])
    ct_app.checkbox(key="ct_report_ids").check().run()
    _, document = downloaded(ct_app, "ct_report", deferred)
    assert_all_identifiers(document, [data for _, data in files])


def test_a_demo_ct_report_has_no_identifier_checkbox(ct_app: AppTest, deferred) -> None:
    ct_app.run()
    ct_app.button(key="ct_demo_Normal").click().run()
    assert not ct_app.exception
    assert not [c for c in ct_app.checkbox if c.key == "ct_report_ids"]
    file_name, document = downloaded(ct_app, "ct_report", deferred)
    assert file_name == "case-report-demo-normal.html"
    assert IDENTIFIERS_HEADING not in document and "Case review: demo-normal" in document
