"""``predict-ct``, ``train-ct3d`` and ``train-ct-slice`` as a user runs them."""

from __future__ import annotations

import datetime
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.cli.main import main
from core.demo.dicom_writer import DicomPatient, DicomStudy, new_uid, write_ct_series
from tests.ct_helpers import phantom_volume

PATIENT = DicomPatient("ROE^RICHARD", "MRN-42", "19480303", "M", 72)
STUDY = DicomStudy(new_uid("cli-ct-test"), "ACC-42", datetime.date(2020, 5, 1))
SPACING = (4.0, 0.8, 0.8)


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("series") / "ct"
    hu = phantom_volume(shape=(18, 40, 36)).hu.round().astype(np.int16)
    write_ct_series(folder, hu, SPACING, PATIENT, STUDY)
    return folder


def _zip_of(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w") as z:
        for path in sorted(folder.iterdir()):
            z.write(path, f"series/{path.name}")
    return target


@pytest.mark.parametrize("form", ["folder", "zip", "one file"])
def test_predict_ct_json_has_shape_spacing_covid3d_and_the_slice_summary(
    form: str, series_folder: Path, ct_weights: Path, tmp_path: Path, capsys
) -> None:
    if form == "folder":
        path = series_folder
    elif form == "zip":
        path = _zip_of(series_folder, tmp_path / "series.zip")
    else:
        path = sorted(series_folder.iterdir())[0]
    status = main(["predict-ct", str(path), "--weights", str(ct_weights), "--json"])
    out, err = capsys.readouterr()
    if form == "one file":
        # A single slice is not a volume: one plain line, non-zero.
        assert status != 0 and err.strip().count("\n") == 0 and "slice" in err.lower()
        return
    assert status == 0, err
    record = json.loads(out)
    assert record["shape_zyx"] == [18, 40, 36]
    assert record["spacing_mm_zyx"] == pytest.approx(list(SPACING), abs=1e-3)
    c = record["covid3d"]
    assert c["model"] == "covid3d-tiny" and 0.0 <= c["probability_covid"] <= 1.0
    assert c["predicted"] == ("COVID+" if c["probability_covid"] >= c["threshold"] else "COVID-")
    # P = sigmoid(s) at temperature 1
    assert c["probability_covid"] == pytest.approx(1 / (1 + np.exp(-c["score_s"])), abs=1e-4)
    s = record["slice_model"]
    assert s["model"] == "ct-slice-tiny" and s["slices"] == s["slices_read"] == 18 and 0.0 <= s["patient_score"] <= 1.0
    assert "ROE" not in out and "MRN-42" not in out


def test_predict_ct_reads_a_nifti_volume(ct_weights: Path, tmp_path: Path, capsys) -> None:
    import nibabel as nib

    hu = phantom_volume(shape=(16, 40, 36)).hu
    # NIfTI stores (x, y, z); the affine gives 0.7 mm in-plane and 3 mm between slices.
    image = nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), np.diag([0.7, 0.7, 3.0, 1.0]))
    path = tmp_path / "volume.nii.gz"
    nib.save(image, str(path))
    assert main(["predict-ct", str(path), "--weights", str(ct_weights), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["shape_zyx"] == [16, 40, 36]
    assert record["spacing_mm_zyx"] == pytest.approx([3.0, 0.7, 0.7], abs=1e-3)


def test_predict_ct_bad_input_is_one_line_and_nonzero(ct_weights: Path, tmp_path: Path, capsys) -> None:
    missing = main(["predict-ct", str(tmp_path / "nope"), "--weights", str(ct_weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert missing != 0 and len(err) == 1 and "does not exist" in err[0]

    evil = tmp_path / "evil.zip"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("../../outside.dcm", b"x" * 500)
    evil.write_bytes(buffer.getvalue())
    status = main(["predict-ct", str(evil), "--weights", str(ct_weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1 and "outside" in err[0]
    assert not (tmp_path.parent / "outside.dcm").exists()


def test_predict_ct_without_ct_models_says_so(series_folder: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "manifest.json").write_text('{"models": []}')
    status = main(["predict-ct", str(series_folder), "--weights", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1 and "No CT model" in err[0]


@pytest.mark.parametrize(
    "command,extra",
    [
        ("train-ct3d", ["--width", "0.0625", "--depth", "8"]),
        ("train-ct-slice", ["--arch", "18", "--max-slices", "2"]),
    ],
)
def test_train_commands_write_weights_and_a_manifest_entry_with_fold_tables(
    command: str, extra: list[str], tmp_path: Path, capsys
) -> None:
    status = main(
        [command, "--data", "demo:16", "--out", str(tmp_path), "--id", "cli-tiny", "--folds", "2", "--epochs", "1"]
        + ["--size", "32", "--batch-size", "4", "--test-fraction", "0.2", *extra]
    )
    out = capsys.readouterr().out
    assert status == 0
    assert "held-out accuracy" in out and out.count("fold ") >= 2
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert entry["id"] == "cli-tiny" and (tmp_path / entry["weights_file"]).is_file()
    assert [f["fold"] for f in entry["training"]["folds"]] == [1, 2]
    assert set(entry["training"]["folds_mean"]) == {"train", "validation"}
    expected_layer = "features.mixed_5c" if command == "train-ct3d" else "backbone.layer4"
    assert entry["gradcam_layer"] == expected_layer


def test_train_on_a_source_that_is_not_one_is_one_line(tmp_path: Path, capsys) -> None:
    status = main(["train-ct3d", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1 and "demo" in err[0]


def test_predict_ct_writes_the_slice_models_grad_cam_of_the_slice_asked_for(
    series_folder: Path, ct_weights: Path, tmp_path: Path, capsys
) -> None:
    from PIL import Image

    cams = tmp_path / "cams"
    args = ["predict-ct", str(series_folder), "--weights", str(ct_weights), "--cam-dir", str(cams)]
    assert main([*args, "--json", "--cam-slice", "5"]) == 0
    s = json.loads(capsys.readouterr().out)["slice_model"]
    assert s["overlay_slice"] == 5 and s["overlay_slice_read"] is True
    with Image.open(s["overlay"]) as png:
        assert png.size == (36, 40) and png.mode == "RGB"  # the slice's own (x, y)
    assert "MRN-42" not in s["overlay"] and "ROE" not in s["overlay"]
    # By default: the slice read with the highest P(COVID-19).
    assert main([*args, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)["slice_model"]
    assert 1 <= s["overlay_slice"] <= 18 and Path(s["overlay"]).exists()
    # A slice outside the series: one plain line, non-zero.
    assert main([*args, "--cam-slice", "19"]) != 0
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "outside the series' 18 axial slices" in err
