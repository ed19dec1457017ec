"""The pages' "From PACS" source against the real Orthanc (AppTest): the CT page finds a series,
retrieves it and shows what an upload of the same files shows; the X-ray page does the same by
DIMSE; the Case library adds a retrieved series de-identified; results go back to the archive
only after the user confirms; a PACS that is down is one plain error and the page keeps serving;
without a configured PACS the pages show no PACS control at all."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.library.store import open_library
from core.pacs.settings import PacsSettings
from tests.helpers import ROOT
from tests.pacs.orthanc import Orthanc

CT_PAGE = str(ROOT / "pages" / "ct.py")
XRAY_PAGE = str(ROOT / "pages" / "xray.py")
LIBRARY_PAGE = str(ROOT / "pages" / "library.py")


def configure(monkeypatch: pytest.MonkeyPatch, settings: PacsSettings) -> None:
    """Point the app at an archive the way a deployment does: DASHBOARD_PACS_* in its environment."""
    for name in ("PROTOCOL", "HOST", "PORT", "CALLED_AET", "CALLING_AET", "URL", "USERNAME", "PASSWORD"):
        monkeypatch.delenv(f"DASHBOARD_PACS_{name}", raising=False)
    monkeypatch.setenv("DASHBOARD_PACS_PROTOCOL", settings.protocol)
    if settings.protocol == "dicomweb":
        monkeypatch.setenv("DASHBOARD_PACS_URL", settings.url)
        monkeypatch.setenv("DASHBOARD_PACS_USERNAME", settings.username)
        monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", settings.password)
    else:
        monkeypatch.setenv("DASHBOARD_PACS_HOST", settings.host)
        monkeypatch.setenv("DASHBOARD_PACS_PORT", str(settings.port))
        monkeypatch.setenv("DASHBOARD_PACS_CALLED_AET", settings.called_aet)
        monkeypatch.setenv("DASHBOARD_PACS_CALLING_AET", settings.calling_aet)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    return at


def search(at: AppTest, key: str, **fields: str) -> AppTest:
    for name, value in fields.items():
        at.text_input(key=f"{key}_pacs_{name}").set_value(value)
    at.button(key=f"FormSubmitter:{key}_pacs_search-Search the PACS").click().run()
    return ok(at)


def metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def test_without_a_pacs_the_pages_show_no_pacs_control(monkeypatch, ct_weights: Path) -> None:  # noqa: ANN001
    for name in ("PROTOCOL", "HOST", "URL"):
        monkeypatch.delenv(f"DASHBOARD_PACS_{name}", raising=False)
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(ct_weights))
    at = ok(AppTest.from_file(CT_PAGE, default_timeout=120).run())
    assert not [e for e in at.expander if e.label == "From PACS"]


def test_the_ct_page_retrieves_a_series_and_shows_what_its_upload_shows(archive, monkeypatch, ct_weights: Path) -> None:  # noqa: ANN001
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(ct_weights))
    configure(monkeypatch, archive.orthanc.dicomweb)
    at = ok(AppTest.from_file(CT_PAGE, default_timeout=120).run())
    search(at, "ct", id=archive.ct.patient_id)
    (table,) = at.table
    assert list(table.value["Accession"]) == [archive.ct.accession] and list(table.value["Images"]) == [16]
    at.button(key="ct_pacs_retrieve").click().run()
    ok(at)
    assert not at.error, [e.value for e in at.error]
    from_pacs = (metrics(at), captions(at))

    uploaded = ok(AppTest.from_file(CT_PAGE, default_timeout=120).run())
    uploaded.file_uploader(key="ct_upload").set_value([(n, d, "application/dicom") for n, d in archive.ct.files]).run()
    ok(uploaded)
    assert "16 x 64 x 64 voxels" in from_pacs[1]
    assert from_pacs[0] == metrics(uploaded) and from_pacs[0]


def test_the_xray_page_retrieves_by_dimse_and_a_server_that_is_down_is_one_plain_error(
    archive,
    monkeypatch,
    tiny_weights: Path,  # noqa: ANN001
) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))
    configure(monkeypatch, archive.orthanc.dimse)
    at = ok(AppTest.from_file(XRAY_PAGE, default_timeout=120).run())
    search(at, "xray", accession=archive.xray.accession)
    at.button(key="xray_pacs_retrieve").click().run()
    ok(at)
    assert any(s.value.startswith("From PACS: DX") for s in at.subheader)
    assert [m for m in at.metric if m.label.startswith("Predicted")]

    down = PacsSettings("dimse", host="127.0.0.1", port=archive.orthanc.calling_port + 1, called_aet="ORTHANC")
    configure(monkeypatch, down)
    at = ok(AppTest.from_file(XRAY_PAGE, default_timeout=120).run())
    search(at, "xray", accession=archive.xray.accession)
    (error,) = at.error
    assert "127.0.0.1" in error.value and "Traceback" not in error.value
    assert any("Upload one or more chest X-rays" in i.value for i in at.info)  # the page goes on


def test_a_retrieved_series_goes_into_the_library_de_identified(archive, monkeypatch, library_copy: Path) -> None:  # noqa: ANN001
    configure(monkeypatch, archive.orthanc.dicomweb)
    at = ok(AppTest.from_file(LIBRARY_PAGE, default_timeout=120).run())
    search(at, "library", accession=archive.ct.accession)
    at.button(key="library_pacs_retrieve").click().run()
    ok(at)
    assert at.selectbox(key="library_upload_modality").value == "CT"
    before = open_library(library_copy).counts().studies
    at.button(key="library_upload_add").click().run()
    ok(at)
    assert any("Added as a study of patient" in s.value for s in at.success)
    library = open_library(library_copy)
    assert library.counts().studies == before + 1
    stored = b"".join(p.read_bytes() for p in (library_copy / "files").rglob("*") if p.is_file())
    for identifier in (archive.ct.patient_id, "ROE", archive.ct.accession):
        assert identifier.encode() not in stored


def test_results_go_back_only_after_the_user_confirms(
    monkeypatch,
    ct_weights: Path,
    archive,
    fresh_orthanc: Orthanc,  # noqa: ANN001
) -> None:
    fresh_orthanc.store(d for _, d in archive.ct.files)
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(ct_weights))
    configure(monkeypatch, fresh_orthanc.dicomweb)
    at = ok(AppTest.from_file(CT_PAGE, default_timeout=120).run())
    search(at, "ct", id=archive.ct.patient_id)
    at.button(key="ct_pacs_retrieve").click().run()
    (prepare,) = [b for b in at.button if b.key.endswith("_pacs_prepare")]
    prepare.click().run()
    ok(at)
    assert fresh_orthanc.rest("GET", "/statistics")["CountSeries"] == 1  # nothing sent yet
    assert any("Secondary Capture" in c.value for c in at.code)
    (confirm,) = [b for b in at.button if b.key.endswith("_pacs_confirm")]
    confirm.click().run()
    ok(at)
    assert any("2 objects stored" in s.value for s in at.success)
    assert fresh_orthanc.rest("GET", "/statistics")["CountSeries"] == 3  # the capture and the report, in the study
    assert fresh_orthanc.rest("GET", "/statistics")["CountStudies"] == 1
