"""A study whose image has no pixel data (a radiograph's header alone, as some archives keep
after a failed transfer) is a plain message by both protocols, on the command line (as
predict-xray says it of such a file) and on the X-ray page, which keeps serving."""

from __future__ import annotations

import datetime as dt
import io
import os
from pathlib import Path

import pydicom
import pytest
from streamlit.testing.v1 import AppTest

from core.demo.dicom_writer import DicomPatient, DicomStudy, new_uid, xray_dicom_bytes
from core.demo.xray_phantom import generate_xray
from tests.cli_helpers import run
from tests.helpers import ROOT
from tests.pacs.orthanc import AET, PASSWORD, USER, Orthanc

XRAY_PAGE = str(ROOT / "pages" / "xray.py")
ACCESSION = "ACC-NOPIX"


@pytest.fixture
def no_pixels(fresh_orthanc: Orthanc) -> tuple[Orthanc, str, str]:
    """An archive holding one DX image without its Pixel Data; its study and series UIDs."""
    study = DicomStudy(new_uid("no-pixels-study"), ACCESSION, dt.date(2021, 1, 5))
    series = new_uid("no-pixels-series")
    data = xray_dicom_bytes(
        generate_xray("Normal", 0.0, 77, size=64).pixels,
        1.0,
        DicomPatient("NOPIX^ANN", "PACS-0099", "19700101", "F", 50),
        study,
        series_uid=series,
    )
    ds = pydicom.dcmread(io.BytesIO(data))
    del ds.PixelData
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    fresh_orthanc.store([out.getvalue()])
    return fresh_orthanc, study.study_uid, series


@pytest.mark.parametrize("protocol", ["dimse", "dicomweb"])
def test_the_command_line_says_so_in_one_line(
    no_pixels, protocol: str, capsys, tiny_weights: Path, monkeypatch
) -> None:  # noqa: ANN001
    orthanc, study, series = no_pixels
    for name in list(os.environ):
        if name.startswith("DASHBOARD_PACS_"):
            monkeypatch.delenv(name)
    if protocol == "dimse":
        where = ["--dimse", f"127.0.0.1:{orthanc.dicom_port}", "--aet", AET]
    else:
        monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", PASSWORD)
        where = ["--dicomweb", orthanc.dicomweb.url, "--user", USER]
    got = run(
        capsys,
        "pacs",
        "get",
        *where,
        "--study",
        study,
        "--series",
        series,
        "--analyse",
        "--weights",
        str(tiny_weights),
        "--json",
    )
    status, out, err = got
    # As predict-xray says of such a file: its line, the count, exit 1, no traceback.
    assert status == 1 and out == "" and "Traceback" not in err
    assert err.splitlines()[0].startswith("error: ") and "no Pixel Data" in err.splitlines()[0]
    assert "NOPIX" not in err and "PACS-0099" not in err


def test_the_xray_page_says_so_and_keeps_serving(no_pixels, tiny_weights: Path, monkeypatch) -> None:  # noqa: ANN001
    orthanc, _, _ = no_pixels
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))
    for name in list(os.environ):
        if name.startswith("DASHBOARD_PACS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DASHBOARD_PACS_URL", orthanc.dicomweb.url)
    monkeypatch.setenv("DASHBOARD_PACS_USERNAME", USER)
    monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", PASSWORD)
    at = AppTest.from_file(XRAY_PAGE, default_timeout=120).run()
    at.text_input(key="xray_pacs_accession").set_value(ACCESSION)
    at.button(key="FormSubmitter:xray_pacs_search-Search the PACS").click().run()
    at.button(key="xray_pacs_retrieve").click().run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert "pixel" in error.value.lower() and "Traceback" not in error.value
    at.button(key="xray_demo").click().run()  # the page goes on: the demo X-rays still get their predictions
    assert not at.exception
    assert [m for m in at.metric if m.label.startswith("Predicted")]
