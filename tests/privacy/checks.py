"""What the PHI marker tests share: writing the marked inputs to disk, running a command, and
checking text, log records, pages and what pages serve for markers (:mod:`tests.privacy.scan`)."""

from __future__ import annotations

import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.cli.main import main
from tests.privacy.markers import MarkedData
from tests.privacy.scan import Hit, find_in_text, find_markers
from tests.report_helpers import Deferred


def assert_none(hits: list[Hit], marked: MarkedData, what: str) -> None:
    shown = "\n".join(h.describe(marked.markers) for h in hits[:15])
    assert not hits, f"{len(hits)} marker(s) found in {what}:\n{shown}"


def log_text(got: list[logging.LogRecord]) -> str:
    """The records as a handler would write them: message with its arguments, traceback, stack."""
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return "\n".join(formatter.format(r) for r in got)


def assert_logs_clean(got: list[logging.LogRecord], marked: MarkedData) -> None:
    assert got, "no log record at DEBUG: the capture did not work"
    assert_none(find_in_text(log_text(got), marked.markers, "logs"), marked, "the log records at DEBUG")


def write_inputs(marked: MarkedData, folder: Path) -> tuple[Path, Path]:
    """The marked X-ray file and CT folder (both named after the patient) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    xray = folder / marked.xray_name
    xray.write_bytes(marked.xray)
    ct = folder / marked.ct_folder_name
    ct.mkdir(exist_ok=True)
    for name, data in marked.ct_files:
        (ct / name).write_bytes(data)
    return xray, ct


def ct_zip(marked: MarkedData, files: tuple[tuple[str, bytes], ...] | None = None) -> bytes:
    """The CT series' slices (``files``, default the marked ones) zipped in a folder named after
    the patient, as a user exports a series."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files or marked.ct_files:
            archive.writestr(f"{marked.ct_folder_name}/{name}", data)
    return buffer.getvalue()


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[str, str]:
    """(stdout, stderr) of ``python -m core --debug ARGV`` run in this process; it must exit 0."""
    status = main(["--debug", *argv])
    out, err = capsys.readouterr()
    assert status == 0, f"{argv[0]} exited {status}: {err}"
    return out, err


def page_bytes(at: AppTest) -> bytes:
    """Every element of the page as its protobuf message (text, tables, charts, widget labels)."""
    out = []

    def walk(node: object) -> None:
        proto = getattr(node, "proto", None)
        if proto is not None and hasattr(proto, "SerializeToString"):
            out.append(proto.SerializeToString())
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return b"\n".join(out)


@dataclass
class Served:
    """A file a page handed to Streamlit's media file manager: an image it shows, or the data of
    a download button given as bytes (deferred downloads are in the ``deferred`` fixture)."""

    data: bytes
    mimetype: str
    file_name: str | None


def assert_page_clean(
    at: AppTest,
    marked: MarkedData,
    deferred: dict[str, Deferred],
    what: str,
    known: tuple[str, ...] = (),
    served: list[Served] | None = None,
) -> int:
    """No marker on the page (with the uploads' own file names, and the ``known`` leaks that a
    test of their own marks, taken out) nor in any download it offers (their contents and file
    names), nor in the images and downloads it ``served``; returns how many downloads and served
    files were read. What was read is taken out of ``deferred`` and ``served``: a later call, after
    the page moved on, reads only what came since."""
    assert not at.exception, at.exception
    shown = page_bytes(at)
    names = [*known, marked.xray_name, marked.ct_folder_name, *(n for n, _ in marked.ct_files)]
    for name in sorted(names, key=len, reverse=True):
        shown = shown.replace(name.encode(), b"<the upload's file name>")
    assert_none(find_markers(shown, marked.markers, f"{what} page"), marked, f"what the {what} page shows")
    n = 0
    for file_id in list(deferred):
        entry = deferred.pop(file_id)
        data = entry.build()
        data = data if isinstance(data, bytes) else str(data).encode()
        assert data, file_id
        where = f"the download {entry.file_name}"
        assert_none(find_markers(data, marked.markers, where), marked, where)
        assert_none(find_in_text(entry.file_name or "", marked.markers, "name"), marked, f"the name of {where}")
        n += 1
    for entry in served or []:
        where = f"the served {entry.mimetype} {entry.file_name or ''}".rstrip()
        assert_none(find_markers(entry.data, marked.markers, where), marked, where)
        assert_none(find_in_text(entry.file_name or "", marked.markers, "name"), marked, f"the name of {where}")
        n += 1
    if served:
        served.clear()
    return n
