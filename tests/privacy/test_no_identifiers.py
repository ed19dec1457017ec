"""No identifier anywhere (issue 19, section 4): a chest X-ray and a CT series with every
attribute of PS3.15 Table E.1-1 filled with a unique marker (:mod:`tests.privacy.markers`),
files named after the patient, pushed through every path a user has; every byte written (files
under the output folders, the SQLite file, stdout, stderr, the log records at DEBUG, what a page
shows and what its downloads serve) is searched for every marker (:mod:`tests.privacy.scan`).

Each test checks that its path ran (exit status 0, the study in the library, a report of some
size), so that finding nothing means something. A control test shows the scanner finding
markers that are there, also inside base64, zlib, gzip, zip and SQLite.

The command line: every command that reads an upload, a user's dataset or the library and
prints or writes something is run (predict-xray, predict-ct, library import / index / score /
stats / list / show / audit, similar, trajectory, km, evaluate-retrieval, findings-change,
evaluate --data with its HTML report). Not run: the train-* commands (train-xray, train-ct3d,
train-ct-slice, train-findings, train-survival, train-prognosis), which no upload reaches and
whose data is the training set; calibrate, fit-ood and shortcut-check, which read a model's
recorded splits; ood-check, which reads generated probes and a folder of real data by class;
models and demo, which read no user data. The pages with uploads and a library are in
:mod:`tests.privacy.test_no_identifiers_pages`; the X-ray, CT and Case library pages are here.

The upload's file name is on screen on some pages (the X-ray page's heading of each image, the
names to choose from): the file uploader shows it there anyway, so page text is searched with the
upload's own file names taken out; anything written or served (downloads and their names) is
searched with nothing taken out.
"""

from __future__ import annotations

import base64
import csv
import gzip
import io
import json
import logging
import re
import sqlite3
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import pydicom
import pytest
from streamlit.testing.v1 import AppTest

from core.library.demo import build_demo_library
from core.library.importers import add_upload, import_source
from core.library.store import open_library
from tests.helpers import ROOT
from tests.privacy.checks import (
    assert_logs_clean,
    assert_none,
    assert_page_clean,
    run_cli,
    write_inputs,
)
from tests.privacy.conftest import MarkedLibrary
from tests.privacy.markers import MarkedData, with_values
from tests.privacy.scan import find_in_text, find_markers, scan_tree
from tests.report_helpers import Deferred

pytestmark = pytest.mark.demo_weights


# --------------------------------------------------------------------------------------------
# The scanner finds what is there


def test_the_marked_files_hold_every_marker_and_stay_readable(marked: MarkedData) -> None:
    from core.io.ct_series import read_ct_series
    from core.io.images import read_xray

    in_xray = {h.marker for h in find_markers(marked.xray, list(marked.markers))}
    in_ct = {h.marker for _, data in marked.ct_files for h in find_markers(data, list(marked.markers))}
    in_names = {h.marker for h in find_in_text(marked.xray_name + marked.ct_folder_name, marked.markers, "names")}
    assert in_xray | in_ct | in_names == set(marked.markers)
    assert len(marked.markers) > 1600  # 617 table rows (less what cannot hold one), per file, with items
    ds = pydicom.dcmread(io.BytesIO(marked.xray))
    assert ds.BurnedInAnnotation == "YES" and ds.preamble.startswith(b"MKR")
    assert any(e.tag.is_private for e in ds) and 0x60003000 in ds
    assert read_xray(marked.xray, "x").shape == (256, 256)
    assert read_ct_series(list(marked.ct_files)).hu.shape == (16, 48, 48)


def test_the_scanner_finds_markers_inside_containers(marked: MarkedData, tmp_path: Path) -> None:
    marker = marked.patient_name[0]
    what = [marker]
    text = f"patient {marker} here".encode()
    assert find_markers(text.upper(), what) and find_markers(text.lower(), what)
    assert find_markers(f"x {marker} y".encode("utf-16-le"), what)
    uri = b'<img src="data:image/png;base64,' + base64.b64encode(b"\x89PNG" + text * 3) + b'">'
    assert {h.where for h in find_markers(uri, what)} == {"bytes > base64 at 32"}
    assert find_markers(b"junk" + zlib.compress(text) + b"junk", what)
    assert find_markers(gzip.compress(text), what)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a/b.txt", text * 10)
    assert find_markers(buffer.getvalue(), what)
    assert find_markers(json.dumps({"blob": base64.b64encode(zlib.compress(text)).decode()}).encode(), what)
    # A PNG text chunk, compressed (zTXt).
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Author", marker, zip=True)
    png = io.BytesIO()
    Image.new("L", (4, 4)).save(png, format="PNG", pnginfo=info)
    assert marker.encode() not in png.getvalue()
    assert any("zTXt" in h.where for h in find_markers(png.getvalue(), what))
    # A SQLite file whose value is a compressed blob.
    db = tmp_path / "x.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE t (v BLOB)")
    con.execute("INSERT INTO t VALUES (?)", (zlib.compress(text * 50),))
    con.commit()
    con.close()
    hits, n = scan_tree(tmp_path, what)
    assert n == 1 and any("t.v" in h.where for h in hits)


def test_the_scanner_counts_a_number_marker_only_as_a_number_of_its_own(marked: MarkedData) -> None:
    """Digits inside a random UID are not a hit (they turned up by chance); the value itself is,
    and a date is within a date-time too."""
    number = next(m for m in marked.markers if re.fullmatch(r"97[0-9]{4}", m))
    date = next(m for m in marked.markers if re.fullmatch(r"[0-9]{8}", m))
    what = [number, date]
    for text in (f"2.25.1234{number}5678", f"2.25.1234{date}", f"x 3{number}"):
        assert not find_markers(text.encode(), what), text
        assert not find_markers(text.encode("utf-16-le"), what), text
    for text in (f"IS {number} ", f"{number}.25", f"\\{date}093000\\", f'"{date}"'):
        assert find_markers(text.encode(), what), text
        assert find_markers(text.encode("utf-16-le"), what), text


def test_ordinary_outputs_hold_no_marker_by_chance(marked: MarkedData) -> None:
    from plotly.offline import get_plotlyjs

    assert_none(find_in_text(get_plotlyjs(), marked.markers, "plotly.js"), marked, "the plotly.js bundle")


# --------------------------------------------------------------------------------------------
# The command line


def test_every_command_line_path(
    marked: MarkedData, tmp_path: Path, capsys: pytest.CaptureFixture[str], records: list[logging.LogRecord]
) -> None:
    xray, ct = write_inputs(marked, tmp_path / "inputs")
    manifest = tmp_path / "inputs" / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id", "offset_days", "modality", "view", "survival"])
        w.writerow([xray.name, "COVID-19", marked.patient_id[0], "2", "X-ray", "PA", "Y"])
        w.writerow([ct.name, "COVID-19", marked.patient_id[0], "5", "CT", "", "Y"])
    cohen = tmp_path / "inputs" / "cohen"
    (cohen / "images").mkdir(parents=True)
    (cohen / "images" / xray.name).write_bytes(marked.xray)
    with (cohen / "metadata.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["patientid", "offset", "sex", "age", "finding", "view", "modality", "filename"])
        w.writerow([marked.patient_id[0], "3", "F", "47", "Pneumonia/Viral/COVID-19", "PA", "X-ray", xray.name])

    out_root = tmp_path / "out"
    library, library2, cams = out_root / "library", out_root / "library-cohen", out_root / "cams"
    streams = []
    streams.append(run_cli(capsys, "predict-xray", str(xray), "--json", "--cam-dir", str(cams)))
    streams.append(run_cli(capsys, "predict-ct", str(ct), "--json", "--cam-dir", str(cams)))
    got = run_cli(capsys, "library", "import", "--format", "csv", str(manifest), "--library", str(library), "--json")
    streams.append(got)
    assert json.loads(got[0])["added_studies"] == 2
    got = run_cli(capsys, "library", "import", "--format", "cohen", str(cohen), "--library", str(library2), "--json")
    streams.append(got)
    assert json.loads(got[0])["added_studies"] == 1
    streams.append(run_cli(capsys, "library", "index", "--library", str(library), "--json"))
    streams.append(run_cli(capsys, "library", "score", "--library", str(library), "--json"))
    streams.append(run_cli(capsys, "library", "stats", "--library", str(library)))
    listed = run_cli(capsys, "library", "list", "--library", str(library), "--json")
    streams.append(listed)
    pseudonym = json.loads(listed[0].splitlines()[0])["pseudonym"]
    streams.append(run_cli(capsys, "library", "show", pseudonym, "--library", str(library), "--json"))
    streams.append(run_cli(capsys, "similar", str(xray), "--library", str(library), "--json"))
    streams.append(run_cli(capsys, "trajectory", pseudonym, "--library", str(library), "--json"))
    streams.append(
        run_cli(
            capsys, "trajectory", "--cohort", "--csv", str(out_root / "cohort.csv"), "--library", str(library), "--json"
        )
    )
    assert (out_root / "cohort.csv").is_file() and any(cams.iterdir())

    hits, n_files = scan_tree(out_root, marked.markers)
    assert n_files >= 8  # library.sqlite, 17 stored files, thumbnails, overlays, the csv
    assert len(list(cams.iterdir())) >= 2  # an overlay per X-ray model and the CT's
    assert_none(hits, marked, "the files the commands wrote (and their names: the overlays')")
    # The output names each input as the user typed it, and nothing else may carry a marker
    # (predict-ct's JSON gives the series' hash, not its original UID).
    typed = sorted([str(xray), str(ct)], key=len, reverse=True)
    for i, (out, err) in enumerate(streams):
        assert out.strip()
        for path in typed:
            out = out.replace(path, "<the argument>")
        assert_none(find_in_text(out, marked.markers, "stdout"), marked, f"stdout of command {i + 1}")
        assert_none(find_in_text(err, marked.markers, "stderr"), marked, f"stderr of command {i + 1}")
    assert_logs_clean(records, marked)


def test_the_console_of_a_command_run_with_debug(marked: MarkedData, tmp_path: Path) -> None:
    """A real process: the console handler that ``--debug`` installs, writing to stderr."""
    xray, _ = write_inputs(marked, tmp_path / "inputs")
    done = subprocess.run(
        [sys.executable, "-m", "core", "--debug", "predict-xray", str(xray), "--json", "--model", "cxr-resnet18"],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    assert json.loads(done.stdout.splitlines()[0])["model"] == "cxr-resnet18"
    assert b"DEBUG" in done.stderr  # the console did log at DEBUG
    # The JSON names the file it is about as the user gave it; nothing else may carry a marker.
    stdout = done.stdout.replace(str(xray).encode(), b"<the argument>")
    assert_none(find_markers(stdout, marked.markers, "stdout"), marked, "stdout")
    assert_none(find_markers(done.stderr, marked.markers, "stderr"), marked, "stderr")


def test_commands_that_read_the_library(
    marked: MarkedData,
    marked_library: MarkedLibrary,
    capsys: pytest.CaptureFixture[str],
    records: list[logging.LogRecord],
    tmp_path: Path,
) -> None:
    """km, evaluate-retrieval, findings-change, a case-review meeting (read, summary, CSV export,
    HTML minute) and the audit log, on a library holding the marked cases (the Kaplan-Meier
    cohort is made of them)."""
    lib = ("--library", str(marked_library.root))
    streams = []
    got = run_cli(capsys, "km", "--endpoint", "death", "--group-by", "age", "--json", *lib)
    assert json.loads(got[0])["patients"] >= 10
    streams.append(got)
    run_cli(capsys, "library", "index", *lib)
    got = run_cli(capsys, "evaluate-retrieval", "--k", "3", "--json", *lib)
    assert json.loads(got[0])["n_queries"] >= 10
    streams.append(got)
    got = run_cli(capsys, "findings-change", "--json", *lib)
    assert json.loads(got[0])["n_pairs"] >= 1
    streams.append(got)
    # A case-review meeting of the marked patient, read against the model, summarised and exported.
    got = run_cli(capsys, "meeting", "create", "--title", "Privacy check", "--json", *lib)
    meeting = str(json.loads(got[0])["id"])
    got = run_cli(capsys, "meeting", "add", meeting, marked_library.pseudonym, "--json", *lib)
    case = str(json.loads(got[0])["id"])
    streams.append(
        run_cli(
            capsys,
            "meeting",
            "read",
            case,
            "--reader",
            "Dr Reader",
            "--read",
            "COVID-19",
            "--confidence",
            "4",
            "--model",
            "cxr-resnet18",
            *lib,
        )
    )
    got = run_cli(capsys, "meeting", "summary", meeting, "--json", *lib)
    assert json.loads(got[0])["n_reads"] == 1
    streams.append(got)
    csv_path = tmp_path / "reads.csv"
    streams.append(run_cli(capsys, "meeting", "export", meeting, "--csv", str(csv_path), *lib))
    assert csv_path.read_text(encoding="utf-8").count("\n") == 2  # the header and the read
    assert_none(find_markers(csv_path.read_bytes(), marked.markers, "csv"), marked, "the meeting's CSV export")
    minute_path = tmp_path / "minute.html"
    streams.append(run_cli(capsys, "meeting", "export", meeting, "--html", str(minute_path), *lib))
    minute = minute_path.read_text(encoding="utf-8")
    assert marked_library.pseudonym in minute and minute.count("data:image/png;base64,") >= 1  # its images too
    assert_none(find_markers(minute_path.read_bytes(), marked.markers, "html"), marked, "the meeting's minute")
    got = run_cli(capsys, "library", "audit", "--json", *lib)
    entries = [json.loads(line) for line in got[0].splitlines()]
    assert any(e["pseudonym"] == marked_library.pseudonym for e in entries)
    streams.append(got)
    for i, (out, err) in enumerate(streams):
        assert_none(find_in_text(out, marked.markers, "stdout"), marked, f"stdout of command {i + 1}")
        assert_none(find_in_text(err, marked.markers, "stderr"), marked, f"stderr of command {i + 1}")
    hits, n_files = scan_tree(marked_library.root, marked.markers)
    assert n_files >= 20
    assert_none(hits, marked, "the library")
    assert_logs_clean(records, marked)


def test_evaluate_on_a_dataset_of_marked_files(
    marked: MarkedData, marked_library: MarkedLibrary, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``evaluate --data``: a user's class folders of marked X-rays (named after the patients),
    with the HTML report it writes."""
    data = tmp_path / "dataset"
    files = sorted(marked_library.inputs.glob("*.dcm"))
    for i, path in enumerate(files[:6]):
        folder = data / ("COVID", "NORMAL", "Viral Pneumonia")[i % 3]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / path.name).write_bytes(path.read_bytes())
    (tmp_path / "out").mkdir()
    html = tmp_path / "out" / "report.html"
    out, err = run_cli(
        capsys,
        "evaluate",
        "--model",
        "cxr-resnet18",
        "--data",
        str(data),
        "--boot",
        "100",
        "--json",
        "--html",
        str(html),
    )
    assert json.loads(out) and html.stat().st_size > 10_000
    hits, _ = scan_tree(tmp_path / "out", marked.markers)
    assert_none(hits, marked, "the HTML report")
    out = out.replace(str(data), "<the argument>")
    assert_none(find_in_text(out, marked.markers, "stdout"), marked, "stdout")
    assert_none(find_in_text(err, marked.markers, "stderr"), marked, "stderr")


# --------------------------------------------------------------------------------------------
# The library's API: add a reviewed upload, import a source


def test_add_upload_and_import_source(marked: MarkedData, tmp_path: Path, records: list[logging.LogRecord]) -> None:
    xray, ct = write_inputs(marked, tmp_path / "inputs")
    root = tmp_path / "out" / "library"
    library = open_library(root, create=True)
    p1, _ = add_upload(library, [(marked.xray_name, marked.xray)], modality="X-ray", label="COVID-19", note="reviewed")
    p2, _ = add_upload(library, list(marked.ct_files), modality="CT", label=None, patient=p1)
    assert p1 == p2
    folders = tmp_path / "inputs" / "folders"
    (folders / "COVID").mkdir(parents=True)
    (folders / "COVID" / marked.xray_name).write_bytes(with_values(marked.xray, SeriesDescription="CHEST PA"))
    report = import_source(library, "folders", folders, workers=1)
    assert report.added_studies == 1, report.problems
    counts = library.counts()
    assert (counts.patients, counts.studies) == (2, 3)

    hits, n_files = scan_tree(tmp_path / "out", marked.markers)
    assert n_files >= 18
    assert_none(hits, marked, "the library")
    assert_logs_clean(records, marked)
    # An examination's name stays (Clean Descriptors), where the marked ones went.
    stored = [pydicom.dcmread(p) for p in root.rglob("*.dcm")]
    assert [ds.get("SeriesDescription") for ds in stored].count("CHEST PA") == 1


# --------------------------------------------------------------------------------------------
# The pages


def xray_page(marked: MarkedData) -> AppTest:
    """The X-ray page with the marked upload, read by the demo ResNet-18 (the real-data models
    rightly find a phantom unlike their training data, and then show no class)."""
    at = AppTest.from_file(str(ROOT / "pages" / "xray.py"), default_timeout=180).run()
    at.multiselect(key="xray_models").set_value(["cxr-resnet18"]).run()
    at.file_uploader(key="xray_upload").upload(marked.xray_name, marked.xray, "application/dicom").run()
    return at


def test_x_ray_page_upload_and_its_case_report(marked: MarkedData, deferred: dict[str, Deferred]) -> None:
    at = xray_page(marked)
    assert not at.error, [e.value for e in at.error]
    ticked = [c for c in at.checkbox if c.key and c.key.startswith("xray_report_ids_")]
    assert len(ticked) == 1 and ticked[0].value is False
    reports = [e for e in deferred.values() if e.mimetype == "text/html"]
    assert len(reports) == 1 and len(reports[0].build()) > 10_000
    # The report and the overlay PNG, their names too (named by the upload's hash).
    assert assert_page_clean(at, marked, deferred, "X-ray") >= 2


def test_ct_page_upload_and_its_case_report(marked: MarkedData, deferred: dict[str, Deferred]) -> None:
    at = AppTest.from_file(str(ROOT / "pages" / "ct.py"), default_timeout=180).run()
    at.file_uploader(key="ct_upload").set_value([(n, d, "application/dicom") for n, d in marked.ct_files]).run()
    assert not at.error, [e.value for e in at.error]
    assert at.checkbox(key="ct_report_ids").value is False
    report = deferred[at.download_button(key="ct_report").proto.deferred_file_id].build()
    assert b"16 x 48 x 48 voxels" in report
    # No series description either: the marked one holds the patient's name.
    assert assert_page_clean(at, marked, deferred, "CT") >= 1


@pytest.fixture
def small_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A library of one demo patient (the marked cases are added by the test), and the app
    pointed at it."""
    root = tmp_path / "library"
    build_demo_library(root, 1, seed=0, workers=1)
    monkeypatch.setenv("DASHBOARD_LIBRARY", str(root))
    return root


def test_library_page_add_a_reviewed_upload(
    marked: MarkedData, small_library: Path, deferred: dict[str, Deferred], records: list[logging.LogRecord]
) -> None:
    at = AppTest.from_file(str(ROOT / "pages" / "library.py"), default_timeout=180).run()
    before = open_library(small_library).counts().studies
    at.file_uploader(key="library_upload").upload(marked.xray_name, marked.xray, "application/dicom").run()
    at.button(key="library_upload_add").click().run()
    assert any("Added as a study" in s.value for s in at.success), [e.value for e in at.error]
    at.file_uploader(key="library_upload").set_value([(n, d, "application/dicom") for n, d in marked.ct_files]).run()
    at.selectbox(key="library_upload_modality").set_value("CT").run()
    at.button(key="library_upload_add").click().run()
    assert sum("Added as a study" in s.value for s in at.success) == 1, [e.value for e in at.error]
    assert open_library(small_library).counts().studies == before + 2
    assert_page_clean(at, marked, deferred, "Case library")
    hits, _ = scan_tree(small_library, marked.markers)
    assert_none(hits, marked, "the library the page wrote to")
    assert_logs_clean(records, marked)
