"""The library and demo commands as a user runs them: output, --library, plain one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from core.cli.main import main
from core.demo.xray_phantom import generate_xray
from core.library.store import library_exists
from tests.helpers import ROOT
from tests.library.test_importers import with_burned_in_text
from tests.pg import is_url


def test_import_list_show_and_stats_on_a_library_named_by_option(
    library_location: str, cohen_dataset: Path, capsys
) -> None:
    lib = library_location
    assert main(["library", "import", "--format", "cohen", str(cohen_dataset), "--library", lib, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added_studies"] >= 2 and report["library"] == lib
    assert any(p.startswith("row ") for p in report["problems"])  # the fixture's bad rows, by number

    assert main(["library", "stats", "--library", lib, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["studies"] == report["added_studies"]

    assert main(["library", "list", "--library", lib, "--json"]) == 0
    patients = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(patients) == stats["patients"]

    assert main(["library", "show", patients[0]["pseudonym"], "--library", lib, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    days = [s["offset_onset_days"] for s in shown["studies"] if s["offset_onset_days"] is not None]
    assert days == sorted(days)
    if not is_url(lib):  # a folder library shows where each image's files are
        assert all(Path(i["path"]).exists() for s in shown["studies"] for i in s["images"])

    # The same source again adds nothing.
    assert main(["library", "import", "--format", "cohen", str(cohen_dataset), "--library", lib, "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["added_studies"] == 0 and again["duplicates"] == report["added_studies"]


SHELL = [sys.executable, "-m", "core"]


@pytest.fixture(scope="module")
def demo_data_from_the_shell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo cohort's dataset folder written by ``demo build`` run from the shell (once: the
    import into each backend reads it)."""
    out = tmp_path_factory.mktemp("shell") / "demo-data"
    built = subprocess.run(
        [*SHELL, "demo", "build", "--out", str(out), "--patients", "3", "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return out


def test_demo_build_then_import_from_the_shell(library_location: str, demo_data_from_the_shell: Path) -> None:
    out, lib = demo_data_from_the_shell, library_location
    assert (out / "metadata.csv").is_file() and any(p.is_dir() for p in (out / "images").iterdir())
    imported = subprocess.run(
        [
            *SHELL,
            "library",
            "import",
            "--format",
            "cohen",
            str(out),
            "--include-lateral",
            "--library",
            lib,
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    n_rows = len((out / "metadata.csv").read_text().splitlines()) - 1
    assert report["added_studies"] == n_rows and report["problems"] == []


def test_bad_input_is_one_line_and_a_nonzero_exit(
    library_location: str, make_location: Callable[..., str], tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "nowhere"
    assert main(["library", "import", "--format", "cohen", str(missing), "--library", library_location]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert not library_exists(library_location)  # no empty library left behind
    assert is_url(library_location) or not Path(library_location).exists()  # not even its folder

    assert main(["library", "stats", "--library", make_location("no-library-here")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and "build-demo" in err

    assert main(["library", "show", "P-NOTTHERE", "--library", library_location]) != 0
    assert capsys.readouterr().err.startswith("error:")

    assert main(["demo", "build", "--out", str(tmp_path / "d"), "--patients", "0"]) != 0
    assert capsys.readouterr().err.startswith("error:")


def test_import_says_which_studies_may_carry_burned_in_text(library_location: str, tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(generate_xray("Normal", 0.0, 41, size=256).to_png())
    (src / "b.png").write_bytes(with_burned_in_text(generate_xray("Normal", 0.0, 42, size=256).to_png()))
    (src / "m.csv").write_text("path,label,patient_id\na.png,Normal,1\nb.png,Normal,2\n", encoding="utf-8")
    lib = library_location
    assert main(["library", "import", "--format", "csv", str(src / "m.csv"), "--library", lib, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added_studies"] == 2 and len(report["warnings"]) == 1
    assert report["warnings"][0].startswith("row 3 (") and "may carry identifiers" in report["warnings"][0]
    (src / "c.png").write_bytes(with_burned_in_text(generate_xray("Normal", 0.0, 43, size=256).to_png()))
    (src / "m.csv").write_text("path,label,patient_id\nc.png,Normal,3\n", encoding="utf-8")
    assert main(["library", "import", "--format", "csv", str(src / "m.csv"), "--library", lib]) == 0
    out = capsys.readouterr().out
    assert "1 warnings" in out and "  warning: row 2 (" in out and "check the image before sharing it" in out
