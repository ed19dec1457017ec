"""``python -m core meeting``: prepare a meeting, record reads, and see it all back, from the shell,
on a copy of the demo library in a SQLite folder and in PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from core.demo.ct_phantom import generate_ct
from core.demo.dicom_writer import DicomPatient, DicomStudy, ct_series_files, new_uid
from core.labels import XRAY_LABELS
from core.library.demo import DEMO_MEETING_TITLE
from core.library.store import open_library
from core.review.agreement import cohen_kappa
from core.review.summary import EXPORT_COLUMNS
from tests.cli_helpers import assert_one_line_error, run, run_json


def test_a_meeting_round_trip_from_the_command_line(library_copy_location: str, tiny_weights: Path, capsys) -> None:
    lib = ("--library", library_copy_location)
    library = open_library(library_copy_location)
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
    # The model read the case when the read was recorded; its answer is stored with the read.
    assert read["model_label"] in XRAY_LABELS and 1 / 3 <= read["model_probability"] <= 1
    assert read["model_threshold"] is None  # an argmax has no threshold

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


def test_refusals_are_one_line(
    library_copy_location: str, make_location: Callable[..., str], tiny_weights: Path, capsys
) -> None:
    lib = ("--library", library_copy_location)
    mid = str(run_json(capsys, "meeting", "create", "--title", "T", "--date", "2026-03-06", *lib)["id"])
    pseudonym = open_library(library_copy_location).patients()[0].pseudonym
    case = str(run_json(capsys, "meeting", "add", mid, pseudonym, *lib)["id"])

    assert_one_line_error(*run(capsys, "meeting", "add", mid, "P-NOBODY", *lib), "no patient P-NOBODY")
    assert_one_line_error(*run(capsys, "meeting", "add", mid, pseudonym, *lib), "already case 1")
    assert_one_line_error(*run(capsys, "meeting", "create", "--title", "T", "--date", "6 March", *lib), "YYYY-MM-DD")
    assert_one_line_error(*run(capsys, "meeting", "move", mid, case, "2", *lib), "from 1 to 1")
    assert_one_line_error(*run(capsys, "meeting", "show", "999", *lib), "no meeting 999")
    read = ("meeting", "read", case, "--reader", "Dr Bob", "--read", "Normal", "--confidence", "3", *lib)
    assert_one_line_error(*run(capsys, *read, "--model", "nope", "--weights", str(tiny_weights)), "no model 'nope'")
    assert_one_line_error(*run(capsys, *read, "--agrees", "yes"), "--agrees needs --model")
    assert_one_line_error(*run(capsys, *read[:-2], "--library", make_location("missing")), "no case library")
    # Nothing of the refused commands was stored.
    assert open_library(library_copy_location).reads(int(mid)) == []


def test_a_meetings_summary_and_its_csv_from_the_command_line(
    library_copy_location: str, tiny_weights: Path, tmp_path: Path, capsys
) -> None:
    lib = ("--library", library_copy_location)
    library = open_library(library_copy_location)
    studies = [
        (p.pseudonym, s.id, s.label)
        for p in library.patients()[:3]
        for s in library.patient(p.pseudonym).studies[-1:]
        if s.modality == "X-ray"
    ]
    assert len(studies) >= 2  # the demo patients' latest studies are mostly X-rays
    ct = next(
        (p.pseudonym, s.id)
        for p in library.patients()
        for s in library.patient(p.pseudonym).studies
        if s.modality == "CT"
    )
    mid = str(run_json(capsys, "meeting", "create", "--title", "Summary", "--date", "2026-03-06", *lib)["id"])
    cases = [str(run_json(capsys, "meeting", "add", mid, p, "--study", str(s), *lib)["id"]) for p, s, _ in studies]
    model = ("--model", "cxr-resnet18", "--weights", str(tiny_weights))
    for case in cases:
        for reader, read in (("Dr Ann", "COVID-19"), ("Dr Bob", "Normal")):
            args = ("meeting", "read", case, "--reader", reader, "--read", read, "--confidence", "3", *model, *lib)
            assert run(capsys, *args)[0] == 0

    summary = run_json(capsys, "meeting", "summary", mid, *lib)
    assert (summary["n_cases"], summary["n_reads"], summary["readers"]) == (
        len(cases),
        2 * len(cases),
        ["Dr Ann", "Dr Bob"],
    )
    stored = open_library(library_copy_location).reads(int(mid))
    xray = next(q for q in summary["questions"] if q["question"] == "X-ray class")
    ann = [r for r in stored if r.reader == "Dr Ann"]
    expected = cohen_kappa([r.read for r in ann], [r.model_label for r in ann], XRAY_LABELS)
    assert xray["readers"][0]["reader"] == "Dr Ann" and xray["readers"][0]["vs_model"]["n"] == len(cases)
    got = xray["readers"][0]["vs_model"]["kappa"]
    assert (got is None and not expected.defined) or got == pytest.approx(expected.kappa)
    # Ann and Bob always differ, so the room has no majority and no case is a disagreement with the model.
    assert summary["n_disagreements"] == 0 and {c["room_read"] for c in summary["cases"]} == {None}
    assert [c["truth"] for c in summary["cases"]] == [label for _, _, label in studies]

    status, out, err = run(capsys, "meeting", "summary", mid, *lib)
    assert status == 0, err
    assert "kappa with the model" in out and "between readers (Fleiss' kappa)" in out and "no majority" in out

    path = tmp_path / "reads.csv"
    status, out, err = run(capsys, "meeting", "export", mid, "--csv", str(path), *lib)
    assert status == 0 and out.strip() == f"{2 * len(cases)} reads of meeting {mid} written to {path}", err
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert tuple(rows[0]) == EXPORT_COLUMNS
    assert [(r["pseudonym"], r["study"], r["reader"]) for r in rows] == [
        (p, str(s), reader) for p, s, _ in studies for reader in ("Dr Ann", "Dr Bob")
    ]
    by_id = {(r.reader, str(r.meeting_case_id)): r for r in stored}
    for row, case in zip(rows, [c for c in cases for _ in range(2)], strict=True):
        read = by_id[(row["reader"], case)]
        assert (row["model_id"], row["model_version"], row["model_label"]) == (
            "cxr-resnet18",
            "test-1",
            read.model_label,
        )
        assert float(row["model_probability"]) == pytest.approx(read.model_probability)

    # A model that does not read the case's study is refused in one line, and nothing is stored.
    ct_case = str(run_json(capsys, "meeting", "add", mid, ct[0], "--study", str(ct[1]), *lib)["id"])
    args = ("meeting", "read", ct_case, "--reader", "Dr Ann", "--read", "COVID", "--confidence", "3", *model, *lib)
    assert_one_line_error(*run(capsys, *args), "reads X-ray studies")
    assert_one_line_error(*run(capsys, "meeting", "summary", "999", *lib), "no meeting 999")
    bad = ("meeting", "export", mid, "--csv", str(tmp_path / "no-such-folder" / "r.csv"), *lib)
    assert_one_line_error(*run(capsys, *bad), "could not write")
    assert len(open_library(library_copy_location).reads(int(mid))) == 2 * len(cases)


def test_add_upload_stores_a_reviewed_ct_series_folder_and_puts_it_in_the_meeting(
    library_copy_location: str, tmp_path: Path, capsys
) -> None:
    lib = ("--library", library_copy_location)
    mid = str(run_json(capsys, "meeting", "create", "--title", "Uploads", "--date", "2026-12-08", *lib)["id"])
    ct = generate_ct("COVID-19", 0.5, 41, shape=(16, 48, 48))
    folder = tmp_path / "DOE_JANE_series"
    folder.mkdir()
    patient = DicomPatient("DOE^JANE", "MRN-5150", "19580412", "F", 61)
    for name, data in ct_series_files(
        ct.hu, ct.spacing_mm, patient, DicomStudy(new_uid("cli-up"), "A-1", dt.date(2020, 3, 15))
    ):
        (folder / name).write_bytes(data)
    upload = (
        "meeting",
        "add-upload",
        mid,
        str(folder),
        "--modality",
        "CT",
        "--label",
        "COVID-19",
        "--admission-day",
        "4",
    )
    got = run_json(capsys, *upload, "--show", "notes", "--json", *lib)
    assert got["position"] == 1 and not got["already_in_library"]
    assert set(got["hidden"]) == {"diagnosis", "outcome", "model outputs"}
    (study,) = open_library(library_copy_location).patient(got["pseudonym"]).studies
    assert study.id == got["study_id"] and study.modality == "CT" and study.offset_admission_days == 4
    assert "DOE" not in json.dumps(got) and "MRN-5150" not in json.dumps(got)

    other = str(run_json(capsys, "meeting", "create", "--title", "Again", *lib)["id"])
    again = run_json(capsys, "meeting", "add-upload", other, *upload[3:], "--json", *lib)
    assert again["already_in_library"] and again["study_id"] == got["study_id"]
    assert_one_line_error(*run(capsys, *upload, *lib), "already")  # the same study twice in one meeting
    assert_one_line_error(
        *run(capsys, "meeting", "add-upload", mid, str(tmp_path / "none.png"), "--modality", "X-ray", *lib),
        "Could not read",
    )
