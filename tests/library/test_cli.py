"""The library and demo commands as a user runs them: output, --library, plain one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from core.cli.main import main
from core.demo.xray_phantom import generate_xray
from tests.helpers import ROOT
from tests.library.test_importers import with_burned_in_text


def test_import_list_show_and_stats_on_a_library_named_by_option(tmp_path: Path, cohen_dataset: Path, capsys) -> None:
    lib = tmp_path / "side-library"
    assert main(["library", "import", "--format", "cohen", str(cohen_dataset), "--library", str(lib), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added_studies"] >= 2 and report["library"] == str(lib)
    assert any(p.startswith("row ") for p in report["problems"])  # the fixture's bad rows, by number

    assert main(["library", "stats", "--library", str(lib), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["studies"] == report["added_studies"]

    assert main(["library", "list", "--library", str(lib), "--json"]) == 0
    patients = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(patients) == stats["patients"]

    assert main(["library", "show", patients[0]["pseudonym"], "--library", str(lib), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    days = [s["offset_onset_days"] for s in shown["studies"] if s["offset_onset_days"] is not None]
    assert days == sorted(days)
    assert all(Path(i["path"]).exists() for s in shown["studies"] for i in s["images"])

    # The same source again adds nothing.
    assert main(["library", "import", "--format", "cohen", str(cohen_dataset), "--library", str(lib), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["added_studies"] == 0 and again["duplicates"] == report["added_studies"]


def test_demo_build_then_import_from_the_shell(tmp_path: Path) -> None:
    out, lib = tmp_path / "demo-data", tmp_path / "lib"
    run = [sys.executable, "-m", "core"]
    built = subprocess.run(
        [*run, "demo", "build", "--out", str(out), "--patients", "3", "--workers", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    assert (out / "metadata.csv").is_file() and any(p.is_dir() for p in (out / "images").iterdir())
    imported = subprocess.run(
        [
            *run,
            "library",
            "import",
            "--format",
            "cohen",
            str(out),
            "--include-lateral",
            "--library",
            str(lib),
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


def test_bad_input_is_one_line_and_a_nonzero_exit(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere"
    assert main(["library", "import", "--format", "cohen", str(missing), "--library", str(tmp_path / "l")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and "does not exist" in err
    assert not (tmp_path / "l").exists()  # no empty library left behind

    assert main(["library", "stats", "--library", str(tmp_path / "no-library-here")]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error:") and "build-demo" in err

    assert main(["library", "show", "P-NOTTHERE", "--library", str(tmp_path / "l")]) != 0
    assert capsys.readouterr().err.startswith("error:")

    assert main(["demo", "build", "--out", str(tmp_path / "d"), "--patients", "0"]) != 0
    assert capsys.readouterr().err.startswith("error:")


def test_import_says_which_studies_may_carry_burned_in_text(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(generate_xray("Normal", 0.0, 41, size=256).to_png())
    (src / "b.png").write_bytes(with_burned_in_text(generate_xray("Normal", 0.0, 42, size=256).to_png()))
    (src / "m.csv").write_text("path,label,patient_id\na.png,Normal,1\nb.png,Normal,2\n", encoding="utf-8")
    lib = tmp_path / "lib"
    assert main(["library", "import", "--format", "csv", str(src / "m.csv"), "--library", str(lib), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["added_studies"] == 2 and len(report["warnings"]) == 1
    assert report["warnings"][0].startswith("row 3 (") and "may carry identifiers" in report["warnings"][0]
    (src / "c.png").write_bytes(with_burned_in_text(generate_xray("Normal", 0.0, 43, size=256).to_png()))
    (src / "m.csv").write_text("path,label,patient_id\nc.png,Normal,3\n", encoding="utf-8")
    assert main(["library", "import", "--format", "csv", str(src / "m.csv"), "--library", str(lib)]) == 0
    out = capsys.readouterr().out
    assert "1 warnings" in out and "  warning: row 2 (" in out and "check the image before sharing it" in out
