"""Running ``python -m core`` in-process in tests, and what a refused command must look like."""

from __future__ import annotations

import json
from typing import Any

from core.cli.main import main


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of one command."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def run_json(capsys: Any, *argv: str) -> Any:
    """The parsed ``--json`` output of a command that must succeed."""
    status, out, err = run(capsys, *argv, "--json")
    assert status == 0, err
    return json.loads(out)


def assert_one_line_error(status: int, out: str, err: str, *words: str) -> None:
    """Exit 1, nothing on stdout, one ``error:`` line on stderr (no traceback) with ``words``."""
    assert status == 1
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word.lower() in lines[0].lower(), lines[0]
