"""AppTest for the CT volume page, on tiny untrained CT models and synthetic series."""

from __future__ import annotations

import datetime
import io
import random
import zipfile
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core.ct.preprocess import lung_slices
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid
from core.io.ct_input import read_ct_path
from tests.ct_helpers import phantom_volume
from tests.helpers import ROOT

PAGE = str(ROOT / "pages" / "ct.py")
PATIENT = DicomPatient("DOE^JANE", "MRN-1", "19500101", "F", 70)
STUDY = DicomStudy(new_uid("ct-page-test"), "ACC-1", datetime.date(2020, 4, 2))
SPACING = (5.0, 0.9, 0.9)


@pytest.fixture
def app(monkeypatch, ct_weights: Path) -> AppTest:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(ct_weights))
    return AppTest.from_file(PAGE, default_timeout=120)


def series_files(n_slices: int = 20, description: str = "CHEST CT", seed: int = 0) -> list[tuple[str, bytes, str]]:
    """A synthetic phantom written as DICOM slices, shuffled, with meaningless file names."""
    hu = phantom_volume(shape=(n_slices, 40, 36)).hu.round().astype(np.int16)
    files = ct_series_files(hu, SPACING, PATIENT, STUDY, description=description)
    named = [(f"IM{random.Random(seed + i).randrange(10**6):06d}", data) for i, (_, data) in enumerate(files)]
    random.Random(seed).shuffle(named)
    return [(name, data, "application/dicom") for name, data in named]


def slice_chart_points(app: AppTest) -> int:
    """How many slices the per-slice probability chart plots."""
    import base64
    import json

    for chart in app.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if "per axial slice" in json.dumps(spec["layout"].get("title", "")):
            y = spec["data"][0]["y"]
            if isinstance(y, dict):  # plotly's binary encoding of a numpy array
                return len(base64.b64decode(y["bdata"])) // np.dtype(y["dtype"]).itemsize
            return len(y)
    raise AssertionError("no per-slice chart")


def caption_text(app: AppTest) -> str:
    return " ".join(c.value for c in app.caption)


def test_the_empty_page_invites_an_upload_or_a_demo(app: AppTest) -> None:
    app.run()
    assert not app.exception
    assert "Upload a CT series" in app.info[0].value
    assert {b.key for b in app.button} >= {"ct_demo_COVID-19", "ct_demo_Normal"}


def test_a_demo_ct_gets_both_models_a_cam_on_the_viewer_its_projection_and_the_slice_chart(app: AppTest) -> None:
    app.run()
    app.button(key="ct_demo_COVID-19").click().run()
    assert not app.exception and not app.error
    labels = {m.label: m.value for m in app.metric}
    assert labels["COVID3D (covid3d-tiny)"] in ("COVID+", "COVID-")
    assert labels["Slice model (ct-slice-tiny)"].endswith("%")
    charts = {c.key if hasattr(c, "key") else None for c in app.get("plotly_chart")}
    assert len(app.get("plotly_chart")) == 3, charts  # viewer, MIP, per-slice chart
    assert "48 x 128 x 128 voxels" in caption_text(app)


def test_an_uploaded_series_in_shuffled_files_is_read_viewed_in_three_planes_and_signed(app: AppTest) -> None:
    app.run()
    app.file_uploader(key="ct_upload").set_value(series_files(20)).run()
    assert not app.exception and not app.error
    assert "20 x 40 x 36 voxels (z, y, x) at 5.00 x 0.90 x 0.90 mm, from 20 files" in caption_text(app)
    axial = app.slider(key="ct_slice_Axial")
    assert axial.max == 20
    app.radio(key="ct_plane").set_value("Coronal").run()
    assert not app.exception
    assert app.slider(key="ct_slice_Coronal").max == 40
    app.radio(key="ct_plane").set_value("Sagittal").run()
    assert app.slider(key="ct_slice_Sagittal").max == 36
    assert "physical aspect kept" in caption_text(app)
    app.radio(key="ct_map_real").set_value(app.radio(key="ct_map_real").options[1]).run()
    assert not app.exception
    assert "Red: evidence for COVID+" in caption_text(app)


def test_two_series_in_one_upload_are_offered_as_a_choice(app: AppTest) -> None:
    app.run()
    files = series_files(20, "LUNG 5mm") + series_files(16, "MEDIASTINUM", seed=50)
    app.file_uploader(key="ct_upload").set_value(files).run()
    assert not app.exception and not app.error
    choice = app.selectbox(key="ct_series")
    assert len(choice.options) == 2
    shown = caption_text(app)
    assert slice_chart_points(app) == app.slider(key="ct_slice_Axial").max
    choice.select_index(1).run()
    assert not app.exception
    assert caption_text(app) != shown
    assert any(f"{n} x 40 x 36 voxels" in caption_text(app) for n in (16, 20))
    # The models ran on the chosen series, not on the first one again.
    assert slice_chart_points(app) == app.slider(key="ct_slice_Axial").max


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "upload,expected",
    [
        ([("notes.txt", b"not an image at all" * 50, "text/plain")], "DICOM"),
        ([("evil.zip", _zip({"../../escape.dcm": b"x" * 200}), "application/zip")], "outside"),
    ],
)
def test_bad_uploads_get_plain_words_and_the_page_keeps_serving(app: AppTest, upload: list, expected: str) -> None:
    app.run()
    app.file_uploader(key="ct_upload").set_value(upload).run()
    assert not app.exception
    assert len(app.error) == 1 and expected in app.error[0].value
    app.file_uploader(key="ct_upload").set_value(series_files(16)).run()
    assert not app.exception and not app.error
    assert "16 x 40 x 36 voxels" in caption_text(app)


def test_without_ct_models_the_viewer_still_works(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DASHBOARD_WEIGHTS_DIR", str(tmp_path))
    (tmp_path / "manifest.json").write_text('{"models": []}')
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    app.button(key="ct_demo_Normal").click().run()
    assert not app.exception and not app.error
    assert any("No CT model" in i.value for i in app.info)
    assert len(app.get("plotly_chart")) == 1


REAL_SERIES = ROOT.parent / "shared" / "samples" / "ct-series-lung-dx-a0002"


@pytest.mark.skipif(not REAL_SERIES.is_dir(), reason="the shared real CT sample is not beside the project")
def test_a_real_series_is_read_by_the_real_slice_model_through_its_lungs_and_refused_by_the_demo_model() -> None:
    app = AppTest.from_file(PAGE, default_timeout=300)  # the shipped weights
    app.run()
    files = [(p.name, p.read_bytes(), "application/dicom") for p in sorted(REAL_SERIES.iterdir())]
    app.file_uploader(key="ct_upload").set_value(files).run()
    assert not app.exception and not app.error
    metrics = {m.label: m for m in app.metric}
    real = metrics["Slice model (ct-slice-real-resnet18)"]
    assert real.value.endswith("%"), real.value
    read = lung_slices(read_ct_path(REAL_SERIES).hu)
    assert 0 < read.sum() < read.size
    assert f"reads the {read.sum()} of {read.size} slices that show the lungs" in real.help
    assert metrics["COVID3D (covid3d)"].value == "No result"
    warnings = " ".join(w.value for w in app.warning)
    assert "unlike the images covid3d" in warnings and "ct-slice-real-resnet18" not in warnings
    captions = caption_text(app)
    assert "ct-slice-real-resnet18: trained on real chest CT slices; like its training data: yes" in captions
    # An upload shows the real slice model's map by default; the first axial slice it does not read.
    assert "Grad-CAM of ct-slice-real-resnet18 for COVID-19 on this slice." in captions
    app.slider(key="ct_slice_Axial").set_value(1).run()
    assert "ct-slice-real-resnet18 does not read this slice (too little lung): no map" in caption_text(app)
    app.radio(key="ct_map_real").set_value(app.radio(key="ct_map_real").options[0]).run()
    assert "unlike covid3d's training data: the map shows where it looked, not a finding" in caption_text(app)
