"""``python -m core meeting``: prepare a meeting, record reads, and see it all back, from the shell."""

from __future__ import annotations

import json
from pathlib import Path

from core.library.demo import DEMO_MEETING_TITLE
from core.library.store import open_library
from tests.cli_helpers import assert_one_line_error, run, run_json


def test_a_meeting_round_trip_from_the_command_line(library_copy: Path, tiny_weights: Path, capsys) -> None:
    lib = ("--library", str(library_copy))
    library = open_library(library_copy)
    first, second = (p.pseudonym for p in library.patients()[:2])
    xray = next(s.id for s in library.patient(second).studies if s.modality == "X-ray")

    meeting = run_json(capsys, "meeting", "create", "--title", "Friday review", "--date", "2026-03-06", *lib)
    mid = meeting["id"]
    assert (meeting["title"], meeting["date"], meeting["cases"]) == ("Friday review", "2026-03-06", [])
    a = run_json(capsys, "meeting", "add", str(mid), first, "--show", "notes", "model-outputs", *lib)
    assert (a["position"], a["pseudonym"], a["study_id"]) == (1, first, None)
    assert a["hidden"] == ["diagnosis", "outcome"] and a["revealed"] is False
    b = run_json(capsys, "meeting", "add", str(mid), second, "--study", str(xray), *lib)
    assert (b["position"], b["study_id"], b["hidden"]) == (2, xray, ["diagnosis", "outcome", "notes", "model outputs"])

    moved = run_json(capsys, "meeting", "move", str(mid), str(b["id"]), "1", *lib)
    assert moved["position"] == 1

    read = run_json(
        capsys,
        "meeting",
        "read",
        str(b["id"]),
        "--reader",
        "Dr Bob",
        "--read",
        "covid-19",
        "--confidence",
        "4",
        "--agrees",
        "no",
        "--comment",
        "bilateral, lower zones",
        "--model",
        "cxr-resnet18",
        "--weights",
        str(tiny_weights),
        *lib,
    )
    assert (read["read"], read["confidence"], read["agrees_with_model"]) == ("COVID-19", 4, False)
    assert (read["model_id"], read["model_version"]) == ("cxr-resnet18", "test-1")

    shown = run_json(capsys, "meeting", "show", str(mid), *lib)
    assert [(c["id"], c["position"]) for c in shown["cases"]] == [(b["id"], 1), (a["id"], 2)]
    assert [r["comment"] for r in shown["cases"][0]["reads"]] == ["bilateral, lower zones"]
    assert shown["cases"][1]["reads"] == []

    status, out, err = run(capsys, "meeting", "list", "--json", *lib)
    assert status == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    ours = next(r for r in rows if r["id"] == mid)
    assert (ours["n_cases"], ours["n_reads"]) == (2, 1)
    assert DEMO_MEETING_TITLE in [r["title"] for r in rows]  # the demo build's meeting is there too

    status, out, _ = run(capsys, "meeting", "show", str(mid), *lib)
    assert status == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"meeting {mid}: Friday review (2026-03-06)")
    assert f"case {b['id']}" in lines[1] and "Dr Bob: COVID-19, confidence 4, disagrees with cxr-resnet18" in lines[2]
    assert lines[-1] == "2 cases"


def test_refusals_are_one_line(library_copy: Path, tiny_weights: Path, capsys) -> None:
    lib = ("--library", str(library_copy))
    mid = str(run_json(capsys, "meeting", "create", "--title", "T", "--date", "2026-03-06", *lib)["id"])
    pseudonym = open_library(library_copy).patients()[0].pseudonym
    case = str(run_json(capsys, "meeting", "add", mid, pseudonym, *lib)["id"])

    assert_one_line_error(*run(capsys, "meeting", "add", mid, "P-NOBODY", *lib), "no patient P-NOBODY")
    assert_one_line_error(*run(capsys, "meeting", "add", mid, pseudonym, *lib), "already case 1")
    assert_one_line_error(*run(capsys, "meeting", "create", "--title", "T", "--date", "6 March", *lib), "YYYY-MM-DD")
    assert_one_line_error(*run(capsys, "meeting", "move", mid, case, "2", *lib), "from 1 to 1")
    assert_one_line_error(*run(capsys, "meeting", "show", "999", *lib), "no meeting 999")
    read = ("meeting", "read", case, "--reader", "Dr Bob", "--read", "Normal", "--confidence", "3", *lib)
    assert_one_line_error(*run(capsys, *read, "--model", "nope", "--weights", str(tiny_weights)), "no model 'nope'")
    assert_one_line_error(*run(capsys, *read, "--agrees", "yes"), "--agrees needs --model")
    assert_one_line_error(*run(capsys, *read[:-2], "--library", str(library_copy / "missing")), "no case library")
    # Nothing of the refused commands was stored.
    assert open_library(library_copy).reads(int(mid)) == []
