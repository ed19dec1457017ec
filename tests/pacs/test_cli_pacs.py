"""``pacs find`` and ``pacs get`` as a user runs them against the real archive: the same
series by either protocol, a retrieval that writes nothing, and ``--analyse`` printing what
predict-xray and predict-ct print for the same files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from core.pacs.retrieve import retrieve_series
from tests.browser import free_port
from tests.cli_helpers import assert_one_line_error, run, run_json
from tests.pacs.conftest import Archive
from tests.pacs.orthanc import AET, PASSWORD, USER

PROTOCOLS = ("dimse", "dicomweb")


@pytest.fixture(autouse=True)
def _no_archive_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("DASHBOARD_PACS_"):
            monkeypatch.delenv(name)


def _archive_options(archive: Archive, protocol: str, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    if protocol == "dimse":
        return ["--dimse", f"127.0.0.1:{archive.orthanc.dicom_port}", "--aet", AET]
    monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", PASSWORD)
    return ["--dicomweb", archive.orthanc.dicomweb.url, "--user", USER]


def _lines(capsys, *argv: str) -> list[dict]:
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return [json.loads(line) for line in out.splitlines()]


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_find_prints_each_series_with_its_uids_modality_description_and_count(
    archive: Archive, protocol: str, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    options = _archive_options(archive, protocol, monkeypatch)
    [ct] = _lines(capsys, "pacs", "find", *options, "--patient-id", "PACS-0002")
    assert ct["study_instance_uid"] == archive.ct.study_uid and ct["series_instance_uid"] == archive.ct.series_uid
    assert (ct["modality"], ct["description"], ct["n_instances"]) == ("CT", "CHEST CT", 16)
    dated = _lines(capsys, "pacs", "find", *options, "--since", "2020-03-01", "--until", "2020-03-31")
    assert [r["series_instance_uid"] for r in dated] == [archive.xray.series_uid]
    named = _lines(capsys, "pacs", "find", *options, "--name", "doe*", "--modality", "DX", "--accession", "ACC-0001")
    assert named == dated
    status, out, err = run(capsys, "pacs", "find", *options, "--modality", "CT")
    assert status == 0 and "ROE^RICHARD" in out and "16" in out and archive.ct.series_uid in out


def test_find_gives_the_same_by_both_protocols(archive: Archive, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    by_dimse = _lines(capsys, "pacs", "find", *_archive_options(archive, "dimse", monkeypatch))
    by_dicomweb = _lines(capsys, "pacs", "find", *_archive_options(archive, "dicomweb", monkeypatch))
    assert by_dimse == by_dicomweb and len(by_dimse) == (3 if archive.sample else 2)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_get_says_what_arrived_and_writes_nothing(
    archive: Archive, protocol: str, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "already.txt").write_text("here before")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(home)
    before = _tree(tmp_path)
    options = _archive_options(archive, protocol, monkeypatch)
    settings = archive.orthanc.dimse if protocol == "dimse" else archive.orthanc.dicomweb
    _lines(capsys, "pacs", "find", *options, "--patient-id", "PACS-0002")
    # Without --study: the series' study is looked up.
    for study in (["--study", archive.ct.study_uid], []):
        record = run_json(capsys, "pacs", "get", *options, *study, "--series", archive.ct.series_uid)
        assert record == {
            "study_instance_uid": archive.ct.study_uid,
            "series_instance_uid": archive.ct.series_uid,
            "modality": "CT",
            "instances": 16,
            "bytes": sum(len(d) for _, d in retrieve_series(settings, archive.ct.study_uid, archive.ct.series_uid)),
        }
    status, out, err = run(capsys, "pacs", "get", *options, "--series", archive.xray.series_uid)
    assert status == 0 and "1 instance(s) of DX" in out and "nothing written" in out
    analysed = ["--analyse", "--weights", str(tiny_weights), "--device", "cpu"]
    assert _lines(capsys, "pacs", "get", *options, "--series", archive.xray.series_uid, *analysed)
    assert _tree(tmp_path) == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_get_analyse_prints_what_predict_xray_prints_for_the_same_file(
    archive: Archive, protocol: str, tiny_weights: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    original = tmp_path / "xray.dcm"
    original.write_bytes(archive.xray.files[0][1])
    models = ["--model", "cxr-resnet18", "--model", "cxr-custom", "--weights", str(tiny_weights), "--device", "cpu"]
    expected = _lines(capsys, "predict-xray", str(original), *models)
    options = _archive_options(archive, protocol, monkeypatch)
    got = _lines(capsys, "pacs", "get", *options, "--series", archive.xray.series_uid, "--analyse", *models)
    assert [r.pop("file") for r in got] == ["IM00001.dcm", "IM00001.dcm"]
    assert [r.pop("file") for r in expected] == [str(original)] * 2
    assert got == expected and [r["model"] for r in got] == ["cxr-resnet18", "cxr-custom"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_get_analyse_prints_what_predict_ct_prints_for_the_same_series(
    archive: Archive, protocol: str, ct_weights: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "series"
    folder.mkdir()
    for name, data in archive.ct.files:
        (folder / name).write_bytes(data)
    weights = ["--weights", str(ct_weights), "--device", "cpu"]
    [expected] = _lines(capsys, "predict-ct", str(folder), *weights)
    options = _archive_options(archive, protocol, monkeypatch)
    study = ["--study", archive.ct.study_uid, "--series", archive.ct.series_uid]
    [got] = _lines(capsys, "pacs", "get", *options, *study, "--analyse", *weights)
    assert got.pop("path") == (archive.orthanc.dimse if protocol == "dimse" else archive.orthanc.dicomweb).where
    expected.pop("path")
    assert got == expected
    assert got["covid3d"]["model"] == "covid3d-tiny" and got["slice_model"]["slices"] == 16
    assert "ROE" not in json.dumps(got) and archive.ct.series_uid not in json.dumps(got)


def test_the_archive_from_the_environment_when_none_is_named(
    archive: Archive, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    status, out, err = run(capsys, "pacs", "find", "--patient-id", "PACS-0001")
    assert_one_line_error(status, out, err, "name the archive", "--dicomweb", "--dimse")
    monkeypatch.setenv("DASHBOARD_PACS_URL", archive.orthanc.dicomweb.url)
    monkeypatch.setenv("DASHBOARD_PACS_USERNAME", USER)
    monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", PASSWORD)
    [xray] = _lines(capsys, "pacs", "find", "--patient-id", "PACS-0001")
    assert xray["series_instance_uid"] == archive.xray.series_uid
    monkeypatch.setenv("DASHBOARD_PACS_MAX_INSTANCES", "10")
    status, out, err = run(capsys, "pacs", "get", "--series", archive.ct.series_uid, "--json")
    assert_one_line_error(status, out, err, "16 instances", "max_instances")


def test_the_password_is_never_an_argument_and_never_printed(
    archive: Archive, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with pytest.raises(SystemExit):
        run(capsys, "pacs", "find", "--dicomweb", archive.orthanc.dicomweb.url, "--password", PASSWORD)
    capsys.readouterr()
    monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", "wrong-" + PASSWORD)
    status, out, err = run(capsys, "pacs", "find", "--dicomweb", archive.orthanc.dicomweb.url, "--user", USER)
    assert_one_line_error(status, out, err, "refused the user name or password")
    assert PASSWORD not in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["find", "--dimse", "127.0.0.1:{free}", "--aet", "ORTHANC"], ["cannot be reached"]),
        (["get", "--dimse", "127.0.0.1:{dicom}", "--aet", "ORTHANC", "--series", "1.2.3.4"], ["holds no series"]),
        (["get", "--dimse", "127.0.0.1:{dicom}", "--aet", "ORTHANC", "--series", "not-a-uid"], ["not a dicom uid"]),
        (["find", "--dimse", "127.0.0.1:{dicom}"], ["--aet"]),
        (["find", "--dimse", "pacs-without-port", "--aet", "ORTHANC"], ["HOST:PORT"]),
        (["find", "--dimse", "127.0.0.1:{dicom}", "--aet", "ORTHANC", "--since", "15/03/2020"], ["YYYY-MM-DD"]),
        (["find", "--dimse", "127.0.0.1:{dicom}", "--aet", "WRONG"], ["refused the association", "WRONG"]),
    ],
)
def test_each_failure_is_one_line(archive: Archive, argv: list[str], words: list[str], capsys) -> None:
    ports = {"free": free_port(), "dicom": archive.orthanc.dicom_port}
    status, out, err = run(capsys, "pacs", *(a.format(**ports) for a in argv))
    assert_one_line_error(status, out, err, *words)
