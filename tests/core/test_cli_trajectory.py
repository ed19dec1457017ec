"""``library score`` and ``trajectory`` as a user runs them, with the tiny untrained models of
``ct_weights`` and ``tiny_weights`` (``--weights``) on copies of the small demo library.

What the commands print is checked against the simulator's truth behind the demo library and
the scores the library stores, never against a previous run.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from core.cli.main import main
from core.demo.cohort import DemoCohort, DemoPatient, simulate_cohort
from core.library.demo import DEMO_SOURCE
from core.library.store import SqliteLibrary, open_library
from core.models.registry import ModelRegistry
from core.trajectory.curves import FEATURE_COLUMNS
from core.trajectory.scores import score_version
from tests.cli_helpers import assert_one_line_error, run, run_json

CT_ID = "covid3d-tiny"
XRAY_ID = "cxr-resnet18"


@pytest.fixture(scope="module")
def ct_args(ct_weights: Path) -> tuple[str, ...]:
    return ("--model", CT_ID, "--weights", str(ct_weights), "--device", "cpu")


@pytest.fixture(scope="module")
def cli_library(tmp_path_factory: pytest.TempPathFactory, demo_library: Path, ct_args) -> Path:
    """A copy of the demo library scored with ``library score``; read-only for the tests."""
    root = tmp_path_factory.mktemp("cli-trajectory") / "library"
    shutil.copytree(demo_library, root)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["library", "score", *ct_args, "--library", str(root)]) == 0
    return root


def truth_of(library: SqliteLibrary) -> DemoCohort:
    return simulate_cohort(len(library.patients()), 0)


def pseudonym_of(library: SqliteLibrary, patient: DemoPatient) -> str:
    return library.pseudonym(DEMO_SOURCE, patient.patient_id)


def ct_days(patient: DemoPatient) -> list[float]:
    return [float(s.day) for s in patient.scans if s.modality == "CT"]


def most_ct(cohort: DemoCohort) -> DemoPatient:
    return max(cohort, key=lambda p: len(ct_days(p)))


def stored_scores(library: SqliteLibrary, weights: Path, model_id: str, name: str) -> dict[int, float]:
    model = ModelRegistry(weights, device=torch.device("cpu")).load(model_id)
    return library.scores(model_id, score_version(model), name)


# -- library score -----------------------------------------------------------------------------


def test_library_score_is_incremental(library_copy: Path, ct_weights: Path, ct_args, capsys) -> None:
    lib = ("--library", str(library_copy))
    library = open_library(library_copy, create=False)
    n = sum(len(ct_days(p)) for p in truth_of(library))

    first = run_json(capsys, "library", "score", *ct_args, *lib)
    assert (first["model_id"], first["score"], first["problems"]) == (CT_ID, "s", [])
    assert (first["total"], first["added"], first["already"]) == (n, n, 0)
    assert len(stored_scores(library, ct_weights, CT_ID, "s")) == n
    model = ModelRegistry(ct_weights, device=torch.device("cpu")).load(CT_ID)
    assert first["model_version"] == score_version(model)

    status, out, _ = run(capsys, "library", "score", *ct_args, *lib)
    assert status == 0 and out.strip() == f"0 scans scored, {n} already had {CT_ID} scores ({n} in all)"
    again = run_json(capsys, "library", "score", *ct_args, *lib)
    assert (again["added"], again["already"]) == (0, n)


def test_library_score_with_an_xray_model(library_copy: Path, tiny_weights: Path, capsys) -> None:
    library = open_library(library_copy, create=False)
    n = sum(s.modality == "X-ray" for p in truth_of(library) for s in p.scans)
    report = run_json(
        capsys, "library", "score", "--model", XRAY_ID, "--weights", str(tiny_weights), "--library", str(library_copy)
    )
    assert (report["score"], report["total"], report["added"]) == ("p_covid", n, n)
    values = stored_scores(library, tiny_weights, XRAY_ID, "p_covid").values()
    assert len(values) == n and all(0.0 <= v <= 1.0 for v in values)


# -- one patient -------------------------------------------------------------------------------


def test_trajectory_of_a_patient_as_json(cli_library: Path, ct_weights: Path, ct_args, capsys) -> None:
    library = open_library(cli_library, create=False)
    demo = most_ct(truth_of(library))
    who = pseudonym_of(library, demo)
    record = run_json(capsys, "trajectory", who, *ct_args, "--library", str(cli_library))

    assert (record["patient_id"], record["label"], record["outcome"]) == (who, demo.label, demo.outcome)
    assert (record["model_id"], record["score"], record["days_since"]) == (CT_ID, "s", "admission")
    points = record["points"]
    assert [p["day"] for p in points] == ct_days(demo)
    assert [p["offset_onset_days"] for p in points] == [s.onset_day for s in demo.scans if s.modality == "CT"]
    stored = stored_scores(library, ct_weights, CT_ID, "s")
    ct_studies = [s.id for s in library.patient(who).studies if s.modality == "CT"]
    assert sorted(p["study_id"] for p in points) == sorted(ct_studies)
    for p in points:
        assert p["value"] == stored[p["study_id"]]
        assert p["probability"] == pytest.approx(1.0 / (1.0 + math.exp(-p["value"])))
    features = record["features"]
    values = [p["value"] for p in points]
    assert features["n_scans"] == len(points) and features["peak"] == max(values)
    assert (features["first"], features["last"]) == (values[0], values[-1])
    assert len(features["slopes"]) == len(points) - 1


def test_trajectory_text_scores_an_unscored_patient(library_copy: Path, ct_weights: Path, ct_args, capsys) -> None:
    library = open_library(library_copy, create=False)
    demo = most_ct(truth_of(library))
    who = pseudonym_of(library, demo)
    status, out, err = run(capsys, "trajectory", who, *ct_args, "--library", str(library_copy))
    assert status == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == f"{who}: {demo.label}, {demo.outcome}; s of {CT_ID}"
    stored = stored_scores(library, ct_weights, CT_ID, "s")  # scored on the way
    assert len(stored) == len(ct_days(demo))
    day_lines = lines[1:-1]
    assert len(day_lines) == len(ct_days(demo))
    for line, day in zip(day_lines, ct_days(demo), strict=True):
        assert line.split()[:2] == ["day", f"{day:g}"]
        assert "P(COVID+)" in line and int(line.split("study")[-1]) in stored
    assert lines[-1].strip().startswith("peak ") and "AUC" in lines[-1]


# -- the cohort --------------------------------------------------------------------------------


def test_cohort_json_has_every_ct_patient_and_the_binned_median(cli_library: Path, ct_args, capsys) -> None:
    library = open_library(cli_library, create=False)
    cohort = truth_of(library)
    with_ct = {pseudonym_of(library, p): p for p in cohort if ct_days(p)}
    record = run_json(capsys, "trajectory", "--cohort", *ct_args, "--library", str(cli_library))

    assert record["model_id"] == CT_ID
    assert record["n_patients"] == len(with_ct) and record["n_scans"] == sum(len(ct_days(p)) for p in cohort)
    assert sorted(p["patient_id"] for p in record["patients"]) == sorted(with_ct)
    for p in record["patients"]:
        assert [q["day"] for q in p["points"]] == ct_days(with_ct[p["patient_id"]])

    curve = record["curve"]
    assert curve["bin_days"] == 2.0
    days = np.array([q["day"] for p in record["patients"] for q in p["points"]])
    values = np.array([q["value"] for p in record["patients"] for q in p["points"]])
    for centre, median, count in zip(curve["centres"], curve["median"], curve["counts"], strict=True):
        in_bin = (days >= centre - 1.0) & (days < centre + 1.0)
        assert count == in_bin.sum() >= 5
        assert median == pytest.approx(float(np.median(values[in_bin])))

    wide = run_json(capsys, "trajectory", "--cohort", "--bin-days", "4", *ct_args, "--library", str(cli_library))
    assert wide["curve"]["bin_days"] == 4.0 and all(c % 4 == 2 for c in wide["curve"]["centres"])


def test_cohort_text_and_csv(cli_library: Path, ct_args, tmp_path: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    with_ct = {pseudonym_of(library, p): p for p in truth_of(library) if ct_days(p)}
    out_csv = tmp_path / "features.csv"
    status, out, err = run(
        capsys, "trajectory", "--cohort", "--csv", str(out_csv), *ct_args, "--library", str(cli_library)
    )
    assert status == 0, err
    lines = out.strip().splitlines()
    n = sum(len(ct_days(p)) for p in with_ct.values())
    assert lines[0] == f"{len(with_ct)} patients, {n} scans; median s by day:"
    assert lines[-1].startswith("peak of the median on day")

    with out_csv.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames or ()) == FEATURE_COLUMNS
    assert sorted(r["patient_id"] for r in rows) == sorted(with_ct)
    for r in rows:
        demo = with_ct[r["patient_id"]]
        assert (r["label"], r["outcome"], int(r["n_scans"])) == (demo.label, demo.outcome, len(ct_days(demo)))
        assert float(r["first_day"]) == ct_days(demo)[0] and float(r["last_day"]) == ct_days(demo)[-1]


@pytest.mark.parametrize(
    ("given", "wanted"),
    [
        (("COVID-19",), {"COVID-19"}),
        (("covid",), {"COVID-19"}),
        (("Viral pneumonia", "normal"), {"Viral pneumonia", "Normal"}),
    ],
)
def test_cohort_label_keeps_those_patients(cli_library: Path, ct_args, capsys, given, wanted) -> None:
    library = open_library(cli_library, create=False)
    expected = sorted(pseudonym_of(library, p) for p in truth_of(library) if ct_days(p) and p.label in wanted)
    assert expected
    labels = [arg for label in given for arg in ("--label", label)]
    record = run_json(capsys, "trajectory", "--cohort", *labels, *ct_args, "--library", str(cli_library))
    assert sorted(p["patient_id"] for p in record["patients"]) == expected
    assert {p["label"] for p in record["patients"]} == wanted


# -- errors ------------------------------------------------------------------------------------


def test_patient_or_cohort_errors(cli_library: Path, ct_args, capsys) -> None:
    lib = ("--library", str(cli_library))
    library = open_library(cli_library, create=False)
    who = pseudonym_of(library, most_ct(truth_of(library)))
    assert_one_line_error(*run(capsys, "trajectory", *ct_args, *lib), "patient id", "--cohort")
    assert_one_line_error(*run(capsys, "trajectory", who, "--cohort", *ct_args, *lib), "patient id", "--cohort")
    assert_one_line_error(*run(capsys, "trajectory", "P-NOSUCH", *ct_args, *lib), "P-NOSUCH")
    for width in ("0", "-1"):
        assert_one_line_error(*run(capsys, "trajectory", "--cohort", "--bin-days", width, *ct_args, *lib), "bin-days")
    assert_one_line_error(*run(capsys, "trajectory", "--cohort", "--label", "flu", *ct_args, *lib), "flu")
    missing = str(cli_library / "no-such-folder" / "f.csv")
    assert_one_line_error(*run(capsys, "trajectory", "--cohort", "--csv", missing, *ct_args, *lib), "could not write")


def test_a_ct_slice_model_or_no_library_is_refused(cli_library: Path, ct_weights: Path, tmp_path: Path, capsys):
    slice_model = ("--model", "ct-slice-tiny", "--weights", str(ct_weights))
    lib = ("--library", str(cli_library))
    assert_one_line_error(*run(capsys, "trajectory", "--cohort", *slice_model, *lib), "ct-slice")
    assert_one_line_error(*run(capsys, "library", "score", *slice_model, *lib), "ct-slice")
    nowhere = ("--library", str(tmp_path / "no-library"))
    ct = ("--model", CT_ID, "--weights", str(ct_weights))
    assert_one_line_error(*run(capsys, "trajectory", "--cohort", *ct, *nowhere), "library")
    assert_one_line_error(*run(capsys, "library", "score", *ct, *nowhere), "library")
    assert not (tmp_path / "no-library").exists()


def test_a_bad_label_is_refused_before_the_library_is_scored(library_copy: Path, ct_weights: Path, ct_args, capsys):
    """An input refused at once gives its one error line and nothing else (core.cli.progress)."""
    status, out, err = run(capsys, "trajectory", "--cohort", "--label", "flu", *ct_args, "--library", str(library_copy))
    assert_one_line_error(status, out, err, "flu")
    assert stored_scores(open_library(library_copy, create=False), ct_weights, CT_ID, "s") == {}
