from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from core.cli.main import COMMANDS, build_parser, main
from tests.helpers import ROOT


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_predict_reports_good_files_and_fails_at_the_end_for_bad_ones(
    tmp_path, tiny_weights, chest_png, capsys
) -> None:
    good = _write(tmp_path, "chest.png", chest_png)
    bad = _write(tmp_path, "garbage.png", b"\x00\x01 not an image at all" * 10)
    good2 = _write(tmp_path, "chest2.png", chest_png)
    status = main(["predict-xray", str(good), str(bad), str(good2), "--weights", str(tiny_weights), "--json"])
    out, err = capsys.readouterr()
    assert status != 0
    records = [json.loads(line) for line in out.splitlines()]
    assert [r["file"] for r in records] == [str(good), str(good2)]
    for r in records:
        assert r["model"] == "cxr-resnet18"  # the reference model by default
        assert r["labels"] == ["Normal", "Viral pneumonia", "COVID-19"]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert r["predicted"] == max(r["probabilities"], key=r["probabilities"].get)
    error_lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "garbage.png" in error_lines[0]
    assert "Traceback" not in err


def test_predict_all_models_with_overlays(tmp_path, tiny_weights, chest_png, capsys) -> None:
    good = _write(tmp_path, "chest.png", chest_png)
    cams = tmp_path / "cams"
    status = main(
        ["predict-xray", str(good), "--model", "all", "--cam-dir", str(cams), "--weights", str(tiny_weights), "--json"]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert status == 0
    assert sorted(r["model"] for r in records) == ["cxr-custom", "cxr-densenet121", "cxr-resnet18"]
    for r in records:
        overlay = Image.open(r["overlay"])
        assert overlay.mode == "RGB" and overlay.size == (256, 256)


def test_unknown_model_is_one_line_and_nonzero(tmp_path, tiny_weights, chest_png, capsys) -> None:
    good = _write(tmp_path, "chest.png", chest_png)
    status = main(["predict-xray", str(good), "--model", "cxr-nope", "--weights", str(tiny_weights)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(err) == 1 and "cxr-nope" in err[0]


def test_module_entry_point_runs_as_a_user_would(tmp_path, tiny_weights, chest_png) -> None:
    good = _write(tmp_path, "chest.png", chest_png)
    missing = tmp_path / "missing.dcm"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "core",
            "predict-xray",
            str(good),
            str(missing),
            "--weights",
            str(tiny_weights),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert json.loads(proc.stdout.splitlines()[0])["file"] == str(good)
    assert "missing.dcm" in proc.stderr and "Traceback" not in proc.stderr


def test_each_command_is_defined_by_the_module_the_table_names() -> None:
    for name, (module, _) in COMMANDS.items():
        parser = build_parser(name)
        registered = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
        assert registered == {c for c, (m, _) in COMMANDS.items() if m == module}, name


def test_help_lists_every_command_and_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from core.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith(('torch', 'sklearn', 'core.cli.'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    help_text, imported = done.stdout.rsplit("\n", 2)[0], done.stdout.rsplit("\n", 2)[1]
    assert imported == "['core.cli.main']"
    for name, (_, text) in COMMANDS.items():
        assert name in help_text and text.split()[0] in help_text
