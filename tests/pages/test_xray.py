from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.helpers import ROOT

PAGE = str(ROOT / "pages" / "xray.py")


@pytest.fixture
def app(monkeypatch, tiny_weights: Path) -> AppTest:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tiny_weights))
    return AppTest.from_file(PAGE, default_timeout=120)


def _chest_cr() -> bytes:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("RG1_UNCR.dcm")).read_bytes()


def _dicom_without_pixels() -> bytes:
    import io

    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.Modality, ds.SOPClassUID, ds.SOPInstanceUID = "DX", meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _huge_png(side: int = 30000) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_empty_page_invites_an_upload(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert "Upload one or more chest X-rays" in app.info[0].value


def test_png_and_dicom_get_probabilities_and_overlays_garbage_gets_an_error(app: AppTest, chest_png: bytes) -> None:
    app.run()
    app.file_uploader(key="xray_upload").set_value(
        [
            ("chest.png", chest_png, "image/png"),
            ("garbage.png", b"\x13\x37" * 500, "image/png"),
            ("cr.dcm", _chest_cr(), "application/dicom"),
        ]
    )
    app.run()
    assert not app.exception
    assert len(app.error) == 1 and "garbage.png" in app.error[0].value
    predicted = [m for m in app.metric if m.label.startswith("Predicted")]
    assert len(predicted) == 2
    assert all(m.value in ("Normal", "Viral pneumonia", "COVID-19") for m in predicted)
    assert all("average of models" in m.label for m in predicted)  # all three models chosen by default
    tables = app.dataframe
    assert len(tables) == 2
    assert list(tables[0].value.index) == ["cxr-custom", "cxr-densenet121", "cxr-resnet18", "Average"]
    assert len(app.get("plotly_chart")) == 2
    labels = [b.proto.label for b in app.get("download_button")]
    assert labels.count("Download overlay (PNG)") == 2
    assert labels.count("Download case report (HTML)") == 2
    # The DICOM has window/level controls; the 8-bit PNG does not.
    assert {s.label for s in app.slider} >= {"Window level", "Window width", "Opacity"}
    assert sum(s.label == "Window level" for s in app.slider) == 1
    assert any("Grad-CAM of cxr-resnet18" in c.value for c in app.caption)


def test_changing_target_method_and_window_reruns_cleanly(app: AppTest) -> None:
    app.run()
    app.file_uploader(key="xray_upload").upload("cr.dcm", _chest_cr(), "application/dicom")
    app.run()
    app.selectbox(key="xray_target").select("Viral pneumonia")
    app.selectbox(key="xray_method").select("Guided Grad-CAM")
    app.selectbox(key="xray_colormap").select("Inferno")
    app.run()
    assert not app.exception
    assert any(
        c.value.startswith("Guided Grad-CAM of cxr-resnet18 (") and "for target class **Viral pneumonia**" in c.value
        for c in app.caption
    )
    level = next(s for s in app.slider if s.label == "Window level")
    level.set_value(level.min + (level.max - level.min) * 0.3)
    app.run()
    assert not app.exception


def test_single_model_shows_no_average(app: AppTest, chest_png: bytes) -> None:
    app.run()
    app.multiselect(key="xray_models").set_value(["cxr-custom"])
    app.file_uploader(key="xray_upload").upload("chest.png", chest_png, "image/png")
    app.run()
    assert not app.exception
    assert list(app.dataframe[0].value.index) == ["cxr-custom"]
    assert app.metric[0].label == "Predicted (cxr-custom)"


def test_uploads_are_shared_with_the_similar_cases_page(app: AppTest, chest_png: bytes) -> None:
    app.run()
    app.file_uploader(key="xray_upload").upload("chest.png", chest_png, "image/png").run()
    assert not app.exception
    assert app.session_state["shared_xrays"] == [("chest.png", chest_png)]


BAD_UPLOADS = {
    "empty.png": (lambda chest: b"", "empty"),
    "report.png": (lambda chest: b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
    "bomb.png": (lambda chest: _huge_png(), "too large"),
    "truncated.png": (lambda chest: chest[: len(chest) // 2], "truncated"),
    "noise.bin": (lambda chest: bytes(range(256)) * 40, "not a recognised image"),
    "report.dcm": (lambda chest: _dicom_without_pixels(), "no pixel data"),
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOADS))
def test_bad_uploads_get_a_plain_message_and_others_still_show(app: AppTest, chest_png: bytes, name: str) -> None:
    build, words = BAD_UPLOADS[name]
    app.run()
    app.file_uploader(key="xray_upload").set_value(
        [(name, build(chest_png), "image/png"), ("chest.png", chest_png, "image/png")]
    )
    app.run()
    assert not app.exception
    assert len(app.error) == 1
    assert name in app.error[0].value and words.lower() in app.error[0].value.lower()
    assert "Traceback" not in app.error[0].value
    assert len([m for m in app.metric if m.label.startswith("Predicted")]) == 1


def test_colour_photo_is_processed_with_a_warning(app: AppTest) -> None:
    import io

    import numpy as np
    from PIL import Image

    rgb = np.zeros((64, 64, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    rgb[:, 32:, 2] = 180
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG")
    app.run()
    app.file_uploader(key="xray_upload").upload("holiday.jpg", buf.getvalue(), "image/jpeg")
    app.run()
    assert not app.exception
    assert any("colour" in w.value and "may not be a radiograph" in w.value for w in app.warning)
    assert len([m for m in app.metric if m.label.startswith("Predicted")]) == 1


def test_demo_button_loads_three_phantoms(app: AppTest) -> None:
    app.run()
    app.button(key="xray_demo").click()
    app.run()
    assert not app.exception
    assert len([m for m in app.metric if m.label.startswith("Predicted")]) == 3


def test_a_findings_model_shows_finding_probabilities_not_a_3_class_row(
    monkeypatch, tiny_weights: Path, tmp_path: Path, chest_png: bytes
) -> None:
    import shutil

    from core.demo.xray_phantom import FINDINGS
    from tests.helpers import register_tiny_findings_model

    folder = tmp_path / "weights"
    shutil.copytree(tiny_weights, folder)
    register_tiny_findings_model(folder)
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(folder))
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert "cxr-findings" not in at.multiselect(key="xray_models").options
    at.file_uploader(key="xray_upload").upload("chest.png", chest_png, "image/png").run()
    assert not at.exception, at.exception
    findings = [d.value for d in at.dataframe if list(d.value.columns) == ["P(present)"]]
    assert len(findings) == 1 and list(findings[0].index) == list(FINDINGS)
    assert ((findings[0]["P(present)"] >= 0) & (findings[0]["P(present)"] <= 1)).all()


@pytest.fixture
def ood_app(monkeypatch, tmp_path: Path) -> AppTest:
    """The page over one tiny model that knows its (phantom) training data."""
    from tests.helpers import fit_phantom_reference, register_tiny_model

    register_tiny_model(tmp_path, "cxr-resnet18")
    fit_phantom_reference(tmp_path, "cxr-resnet18")
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tmp_path))
    return AppTest.from_file(PAGE, default_timeout=120)


def test_an_image_unlike_the_training_data_leads_with_the_warning_and_shows_no_label(ood_app: AppTest) -> None:
    from core.demo.ood_probes import photograph, to_png

    ood_app.run()
    ood_app.file_uploader(key="xray_upload").upload("holiday.png", to_png(photograph(1)), "image/png")
    ood_app.run()
    assert not ood_app.exception
    assert any("is unlike the images cxr-resnet18" in w.value for w in ood_app.warning)
    assert any(e.value.startswith("No result: this image is unlike the training data") for e in ood_app.error)
    assert not [m for m in ood_app.metric if m.label.startswith("Predicted")]  # no headline label
    expanders = [e.label for e in ood_app.expander]
    assert any(label.startswith("Probabilities of the models this image is unlike") for label in expanders)


def test_an_image_like_the_training_data_gets_its_label(ood_app: AppTest) -> None:
    from core.demo.xray_phantom import generate_xray

    ood_app.run()
    phantom = generate_xray("COVID-19", 0.6, 20_001, size=128).to_png()
    ood_app.file_uploader(key="xray_upload").upload("phantom.png", phantom, "image/png")
    ood_app.run()
    assert not ood_app.exception
    assert not any("is unlike the images" in w.value for w in ood_app.warning)
    assert [m for m in ood_app.metric if m.label == "Predicted (cxr-resnet18)"]
    assert any(c.value.startswith("Like its training data? cxr-resnet18 (real): yes") for c in ood_app.caption)
