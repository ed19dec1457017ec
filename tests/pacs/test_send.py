"""Sending the results to a real Orthanc (:mod:`core.pacs.send`) and ``pacs send-results``.

The tests share one archive of this module's own (``orthanc``, holding the source studies; each
result is a new series, so tests look at their own series only), not the session's ``archive``,
whose studies the find tests count. The SC and SR
sent by C-STORE and by STOW-RS are found again by C-FIND and by QIDO-RS, read back with pydicom
and checked against the source; every failure is one plain PacsError naming the server and
never the password; the command refuses to send without confirmation when stdin is not a
terminal.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from io import BytesIO, StringIO
from pathlib import Path

import pydicom
import pytest
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

from core.cli.main import COMMANDS, build_parser, main
from core.cli.pacs_send import add_send_command
from core.errors import DashboardError, PacsError
from core.models.registry import ModelRegistry
from core.pacs.results import RESEARCH_STATEMENT, ct_results, xray_results
from core.pacs.send import SendReport, send_datasets
from core.pacs.settings import PacsSettings
from tests.pacs.conftest import LoadedStudy
from tests.pacs.orthanc import PASSWORD, USER, Orthanc

PROTOCOLS = ("dimse", "dicomweb")


@pytest.fixture(scope="module")
def orthanc(
    tmp_path_factory: pytest.TempPathFactory, xray_source: LoadedStudy, ct_source: LoadedStudy
) -> Iterator[Orthanc]:
    """An archive holding the source X-ray and CT studies (one for the module: stopping one takes 3 s)."""
    with Orthanc(tmp_path_factory.mktemp("send-orthanc")) as server:
        server.store(data for study in (xray_source, ct_source) for _, data in study.files)
        yield server


def instance_count(orthanc: Orthanc) -> int:
    return int(orthanc.rest("GET", "/statistics")["CountInstances"])


def settings_of(orthanc: Orthanc, protocol: str) -> PacsSettings:
    return orthanc.dimse if protocol == "dimse" else orthanc.dicomweb


def c_find_series(settings: PacsSettings, study_uid: str) -> dict[str, str]:
    """Series of a study by C-FIND: Series Instance UID -> Modality."""
    ae = AE(ae_title=settings.calling_aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    assoc = ae.associate(settings.host, settings.port, ae_title=settings.called_aet)
    assert assoc.is_established
    try:
        found = {}
        for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
            if status and status.Status in (0xFF00, 0xFF01) and identifier is not None:
                found[str(identifier.SeriesInstanceUID)] = str(identifier.Modality)
        return found
    finally:
        assoc.release()


def qido_series(orthanc: Orthanc, study_uid: str) -> dict[str, str]:
    """Series of a study by QIDO-RS: Series Instance UID -> Modality."""
    settings = orthanc.dicomweb
    client = DICOMwebClient(settings.url)
    client._session.auth = (settings.username, settings.password)
    found = client.search_for_series(study_instance_uid=study_uid)
    return {item["0020000E"]["Value"][0]: item["00080060"]["Value"][0] for item in found}


def read_back(orthanc: Orthanc, sop_instance_uid: str) -> Dataset:
    """An instance as the archive stores it, through its REST API."""
    ids = orthanc.rest(
        "POST",
        "/tools/find",
        json.dumps({"Level": "Instance", "Query": {"SOPInstanceUID": sop_instance_uid}}).encode(),
        "application/json",
    )
    assert len(ids) == 1
    # Not through Orthanc.rest, which decodes JSON: the file is raw bytes.
    request = urllib.request.Request(f"{orthanc.url}/instances/{ids[0]}/file")
    request.add_header("Authorization", "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        return pydicom.dcmread(BytesIO(answer.read()))


def sr_texts(ds: Dataset) -> list[str]:
    out = []

    def walk(items: list[Dataset]) -> None:
        for item in items:
            if item.ValueType == "TEXT":
                out.append(f"{item.ConceptNameCodeSequence[0].CodeMeaning}: {item.TextValue}")
            walk(item.get("ContentSequence", []))

    walk(ds.ContentSequence)
    return out


# --------------------------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_xray_results_round_trip(protocol: str, orthanc: Orthanc, xray_source: LoadedStudy, tiny_weights: Path) -> None:
    settings = settings_of(orthanc, protocol)
    model = ModelRegistry(tiny_weights, device="cpu").load("cxr-resnet18")
    start = time.perf_counter()
    sc, sr = xray_results(xray_source.files, model)
    report = send_datasets(settings, [sc, sr])
    print(f"X-ray: built and sent by {protocol} in {time.perf_counter() - start:.2f} s")
    assert isinstance(report, SendReport)
    assert report.stored == (sc.SOPInstanceUID, sr.SOPInstanceUID) and report.warnings == ()
    expected = {xray_source.series_uid: "DX", sc.SeriesInstanceUID: "OT", sr.SeriesInstanceUID: "SR"}
    by_c_find = c_find_series(orthanc.dimse, xray_source.study_uid)
    by_qido = qido_series(orthanc, xray_source.study_uid)
    assert by_c_find == by_qido
    assert by_c_find.items() >= expected.items()
    sc_back, sr_back = read_back(orthanc, sc.SOPInstanceUID), read_back(orthanc, sr.SOPInstanceUID)
    source = pydicom.dcmread(BytesIO(xray_source.files[0][1]), stop_before_pixels=True)
    for ds in (sc_back, sr_back):
        assert ds.StudyInstanceUID == source.StudyInstanceUID and ds.PatientID == source.PatientID
    assert [i.ReferencedSOPInstanceUID for i in sc_back.SourceImageSequence] == [source.SOPInstanceUID]
    assert (sc_back.pixel_array == sc.pixel_array).all(), "the capture is stored as it was sent"
    evidence = sr_back.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == source.StudyInstanceUID
    referenced = {
        i.ReferencedSOPInstanceUID for s in evidence.ReferencedSeriesSequence for i in s.ReferencedSOPSequence
    }
    assert referenced == {source.SOPInstanceUID, sc.SOPInstanceUID}
    said = sr_texts(sr_back)
    assert f"Algorithm Name: {model.card.id}" in said and f"Algorithm Version: {model.card.version}" in said
    assert "Decision rule: no threshold: the most probable of its 3 classes" in said
    assert f"Comment: {RESEARCH_STATEMENT}" in said


def test_ct_results_round_trip(orthanc: Orthanc, ct_source: LoadedStudy, ct_weights: Path) -> None:
    registry = ModelRegistry(ct_weights, device="cpu")
    covid3d, slice_model = registry.load("covid3d-tiny"), registry.load("ct-slice-tiny")
    start = time.perf_counter()
    sc, sr = ct_results(ct_source.files, covid3d, slice_model)
    send_datasets(orthanc.dicomweb, [sc, sr])
    print(f"CT (16 slices): built and sent by STOW-RS in {time.perf_counter() - start:.2f} s")
    assert orthanc.instances_of_series(sc.SeriesInstanceUID) == 1
    assert orthanc.instances_of_series(sr.SeriesInstanceUID) == 1
    assert orthanc.instances_of_series(ct_source.series_uid) == 16, "the source series is left as it was"
    assert c_find_series(orthanc.dimse, ct_source.study_uid).items() >= {sr.SeriesInstanceUID: "SR"}.items()
    sr_back = read_back(orthanc, sr.SOPInstanceUID)
    referenced = {
        i.ReferencedSOPInstanceUID
        for s in sr_back.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }
    sources = {pydicom.dcmread(BytesIO(d), stop_before_pixels=True).SOPInstanceUID for _, d in ct_source.files}
    assert referenced == sources | {sc.SOPInstanceUID}
    said = sr_texts(sr_back)
    assert "Algorithm Name: covid3d-tiny" in said and "Algorithm Name: ct-slice-tiny" in said


# --------------------------------------------------------------------------------------------
# Failures: one plain PacsError each, naming the server, never the password


@pytest.fixture
def silent_listener() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for s in held:
        s.close()
    server.close()


def failing_settings(orthanc: Orthanc, case: str, listener_port: int) -> PacsSettings:
    dimse, web = orthanc.dimse, orthanc.dicomweb
    return {
        "dimse down": replace(dimse, port=listener_port + 1 if listener_port < 65535 else 1),
        "dicomweb down": replace(web, url=f"http://127.0.0.1:{listener_port + 1}/dicom-web"),
        "wrong called AE title": replace(dimse, called_aet="NOT-ORTHANC"),
        "unknown calling AE title": replace(dimse, calling_aet="STRANGER"),
        "wrong password": replace(web, password="wrong-" + PASSWORD),
        "no answer": replace(dimse, port=listener_port, timeout_s=1.0),
    }[case]


FAILURES = {
    "dimse down": "cannot be reached",
    "dicomweb down": "cannot be reached",
    "wrong called AE title": "does not answer to the AE title NOT-ORTHANC",
    "unknown calling AE title": "STRANGER",
    "wrong password": "refused the user name or password",
    "no answer": "did not answer the association request within 1 s",
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_failure_is_one_plain_error(
    case: str,
    orthanc: Orthanc,
    xray_source: LoadedStudy,
    tiny_weights: Path,
    silent_listener: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    datasets = xray_results(xray_source.files, ModelRegistry(tiny_weights, device="cpu").load("cxr-custom"))
    settings = failing_settings(orthanc, case, silent_listener)
    caplog.set_level(logging.INFO)
    with pytest.raises(PacsError) as raised:
        send_datasets(settings, datasets)
    message = str(raised.value)
    assert FAILURES[case] in message and message.startswith(settings.where)
    assert "\n" not in message and "Traceback" not in message
    assert PASSWORD not in message
    logged = caplog.text
    for secret in (PASSWORD, "wrong-" + PASSWORD, "DOE^JANE", "PACS-0001", xray_source.study_uid):
        assert secret not in logged, f"a log record carries {secret!r}"
    assert orthanc.instances_of_series(datasets[0].SeriesInstanceUID) == 0
    # The process keeps working: the same objects go to the right archive afterwards.
    assert send_datasets(orthanc.dimse, datasets).stored == tuple(ds.SOPInstanceUID for ds in datasets)


def test_a_server_stopped_before_sending_is_one_plain_error(
    fresh_orthanc: Orthanc, xray_source: LoadedStudy, tiny_weights: Path
) -> None:
    fresh_orthanc.store(data for _, data in xray_source.files)
    datasets = xray_results(xray_source.files, ModelRegistry(tiny_weights, device="cpu").load("cxr-custom"))
    fresh_orthanc.stop()
    for settings in (fresh_orthanc.dimse, fresh_orthanc.dicomweb):
        with pytest.raises(PacsError, match="cannot be reached"):
            send_datasets(settings, datasets)


# --------------------------------------------------------------------------------------------
# pacs send-results


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def registered() -> bool:
    """Whether ``python -m core pacs send-results`` exists (the lead registers it in core.cli.pacs)."""
    if "pacs" not in COMMANDS:
        return False
    return "send-results" in _subcommands(_subcommands(build_parser("pacs")).get("pacs", argparse.ArgumentParser()))


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``pacs send-results ARGV``: through ``python -m core``
    once the command is registered there, else through a parser holding this command alone."""
    if registered():
        status = main(["pacs", "send-results", *argv])
    else:
        parser = argparse.ArgumentParser()
        add_send_command(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(["send-results", *argv])
        try:
            status = int(args.func(args) or 0)
        except DashboardError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
    out, err = capsys.readouterr()
    return status, out, err


class Terminal(StringIO):
    """stdin as a terminal that answers with the text given."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def source_file(tmp_path: Path, xray_source: LoadedStudy) -> Path:
    path = tmp_path / "source" / "xray.dcm"
    path.parent.mkdir()
    path.write_bytes(xray_source.files[0][1])
    return path


def test_cli_refuses_to_send_without_confirmation_when_stdin_is_not_a_terminal(
    orthanc: Orthanc,
    source_file: Path,
    tiny_weights: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdin", StringIO("y\n"))
    before = instance_count(orthanc)
    status, out, err = run_cli(
        capsys, "--dimse", f"127.0.0.1:{orthanc.dicom_port}", "--aet", "ORTHANC", str(source_file),
        "--weights", str(tiny_weights), "--json",
    )  # fmt: skip
    assert (status, out) == (1, "")
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "--yes" in lines[0]
    assert instance_count(orthanc) == before


def test_cli_asks_on_a_terminal_and_sends_only_on_yes(
    orthanc: Orthanc,
    source_file: Path,
    tiny_weights: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = instance_count(orthanc)
    argv = ("--dicomweb", orthanc.dicomweb.url, "--user", USER, str(source_file))
    monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", PASSWORD)
    monkeypatch.setattr(sys, "stdin", Terminal("n\n"))
    status, out, err = run_cli(capsys, *argv, "--weights", str(tiny_weights))
    assert status == 1 and "Send? [y/N]" in err and "Nothing sent." in err
    assert "Secondary Capture Image 'AI Grad-CAM overlay" in err and RESEARCH_STATEMENT in err
    assert "DOE^JANE" not in err + out and PASSWORD not in err + out
    assert instance_count(orthanc) == before
    monkeypatch.setattr(sys, "stdin", Terminal("y\n"))
    status, out, err = run_cli(capsys, *argv, "--weights", str(tiny_weights), "--json")
    assert status == 0, err
    sent = json.loads(out)
    assert sent["protocol"] == "dicomweb" and len(sent["stored"]) == 2
    assert instance_count(orthanc) == before + 2


def test_cli_sends_a_ct_folder_with_yes(
    orthanc: Orthanc,
    ct_source: LoadedStudy,
    ct_weights: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
) -> None:
    folder = tmp_path / "ct"
    folder.mkdir()
    for name, data in ct_source.files:
        (folder / name).write_bytes(data)
    (folder / "notes.txt").write_text("not DICOM: skipped in a folder")
    status, out, err = run_cli(
        capsys, "--dimse", f"127.0.0.1:{orthanc.dicom_port}", "--aet", "ORTHANC", str(folder),
        "--weights", str(ct_weights), "--yes", "--json",
    )  # fmt: skip
    assert status == 0, err
    sent = json.loads(out)
    assert sent["study_instance_uid"] == ct_source.study_uid
    assert [o["sop_class"] for o in sent["objects"]] == ["Secondary Capture Image Storage", "Comprehensive SR Storage"]
    assert sent["stored"] == [o["sop_instance_uid"] for o in sent["objects"]]
    assert any(line.startswith("covid3d-tiny ") for line in sent["statement"])
    for o in sent["objects"]:
        assert orthanc.instances_of_series(o["series_instance_uid"]) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cli_sends_the_results_of_a_series_retrieved_from_the_archive(
    protocol: str,
    orthanc: Orthanc,
    ct_source: LoadedStudy,
    ct_weights: Path,
    capsys: pytest.CaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    where = (
        ("--dimse", f"127.0.0.1:{orthanc.dicom_port}", "--aet", "ORTHANC")
        if protocol == "dimse"
        else ("--dicomweb", orthanc.dicomweb.url, "--user", USER)
    )
    monkeypatch.setenv("DASHBOARD_PACS_PASSWORD", PASSWORD)
    status, out, err = run_cli(
        capsys, *where, "--study", ct_source.study_uid, "--series", ct_source.series_uid,
        "--weights", str(ct_weights), "--yes", "--json",
    )  # fmt: skip
    assert status == 0, err
    sent = json.loads(out)
    assert sent["study_instance_uid"] == ct_source.study_uid and sent["protocol"] == protocol
    sr = read_back(orthanc, sent["objects"][1]["sop_instance_uid"])
    referenced = {
        i.ReferencedSOPInstanceUID
        for s in sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
        for i in s.ReferencedSOPSequence
    }
    sources = {pydicom.dcmread(BytesIO(d), stop_before_pixels=True).SOPInstanceUID for _, d in ct_source.files}
    assert referenced == sources | {sent["objects"][0]["sop_instance_uid"]}


def test_cli_errors_are_one_line(
    orthanc: Orthanc, source_file: Path, tiny_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    png = tmp_path / "chest.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 200)
    dimse = ("--dimse", f"127.0.0.1:{orthanc.dicom_port}", "--aet", "ORTHANC")
    cases = {
        "not a DICOM file": (*dimse, str(png), "--yes"),
        "--aet": ("--dimse", f"127.0.0.1:{orthanc.dicom_port}", str(source_file), "--yes"),
        "refused the association": (*dimse[:3], "WRONG", str(source_file), "--yes"),
        "does not exist": (*dimse, str(tmp_path / "missing.dcm"), "--yes"),
    }
    for words, argv in cases.items():
        status, out, err = run_cli(capsys, *argv, "--weights", str(tiny_weights))
        lines = err.strip().splitlines()
        assert (status, out) == (1, ""), err
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], err
