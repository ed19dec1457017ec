"""``python -m core km``, ``train-survival`` and ``train-prognosis`` as a user runs them: refusals
are one plain line, and a Kaplan-Meier run prints the numbers lifelines gives on the library's
patients, rebuilt here from the library itself."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.statistics import logrank_test

from core.library.store import open_library
from core.survival.cohort import library_patients
from tests.cli_helpers import assert_one_line_error, run, run_json

#: The first 26 patients of the demo cohort (seed 0) hold 5 women and 8 men with COVID-19 and two
#: CTs: the smallest library with two Kaplan-Meier curves by sex from the second CT.
KM_PATIENTS = 26


@pytest.fixture(scope="module")
def km_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from core.library.demo import build_demo_library

    root = tmp_path_factory.mktemp("km-library") / "library"
    build_demo_library(root, KM_PATIENTS, seed=0, workers=1)
    return root


def test_km_on_six_patients_is_one_line_saying_there_are_too_few(demo_library: Path, tmp_path: Path, capsys) -> None:
    argv = ("km", "--group-by", "age", "--endpoint", "death", "--json")
    status, out, err = run(capsys, *argv, "--library", str(demo_library), "--weights", str(tmp_path))
    assert_one_line_error(status, out, err, "Kaplan-Meier", "at least")


def test_km_with_an_unknown_grouping_is_an_argument_error(demo_library: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        run(capsys, "km", "--group-by", "nonsense", "--library", str(demo_library))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nonsense'" in err and "Traceback" not in err


def test_km_by_model_without_the_model_says_which_is_missing(demo_library: Path, tmp_path: Path, capsys) -> None:
    status, out, err = run(
        capsys, "km", "--endpoint", "death", "--library", str(demo_library), "--weights", str(tmp_path)
    )
    assert_one_line_error(status, out, err, "needs a survival model")


def test_training_from_a_folder_that_is_not_a_library_is_one_line(tmp_path: Path, capsys) -> None:
    status, out, err = run(capsys, "train-survival", "--data", "/nonexistent", "--out", str(tmp_path / "w"))
    assert_one_line_error(status, out, err, "/nonexistent", "not a case library")
    assert not (tmp_path / "w").exists()


def test_training_on_demo_with_a_bad_count_is_one_line(tmp_path: Path, capsys) -> None:
    status, out, err = run(capsys, "train-prognosis", "--data", "demo:x", "--out", str(tmp_path / "w"))
    assert_one_line_error(status, out, err, "demo:x", "must be an integer")
    status, out, err = run(capsys, "train-survival", "--data", "demo:0", "--out", str(tmp_path / "w"))
    assert_one_line_error(status, out, err, "demo:0")
    assert not (tmp_path / "w").exists()


def test_km_by_sex_prints_what_lifelines_gives_on_the_library(km_library: Path, tmp_path: Path, capsys) -> None:
    doc = run_json(capsys, "km", "--group-by", "sex", "--library", str(km_library), "--weights", str(tmp_path))
    # The cohort, rebuilt from the library: COVID-19 patients with two CTs, from the second CT to discharge.
    rows = []
    for p in library_patients(open_library(km_library, create=False)):
        cts = p.cts()
        if p.label == "COVID-19" and len(cts) >= 2 and p.outcome is not None and p.length_of_stay_days is not None:
            rows.append((max(p.length_of_stay_days - cts[1].day, 0.0), p.outcome == "discharged", p.sex))
    d = np.array([r[0] for r in rows])
    e = np.array([r[1] for r in rows])
    g = np.array([r[2] for r in rows])
    assert doc["grouping"] == "sex" and doc["endpoint"] == "discharge"
    assert doc["patients"] == len(rows) and doc["excluded"] == {}
    assert [grp["name"] for grp in doc["groups"]] == ["F", "M"]
    for grp in doc["groups"]:
        mask = g == grp["name"]
        kmf = KaplanMeierFitter().fit(d[mask], e[mask])
        assert (grp["n"], grp["events"], grp["censored"]) == (mask.sum(), e[mask].sum(), (~e[mask]).sum())
        median = kmf.median_survival_time_
        assert grp["median_time"] == (None if math.isinf(median) else pytest.approx(median))
        table = pd.DataFrame(grp["table"])
        np.testing.assert_allclose(table["time"], kmf.survival_function_.index)
        np.testing.assert_allclose(table["survival"], kmf.survival_function_.iloc[:, 0])
        events = kmf.event_table
        np.testing.assert_array_equal(table["at_risk"], events["at_risk"].reindex(table["time"]).to_numpy())
        np.testing.assert_array_equal(table["events"], events["observed"].reindex(table["time"]).to_numpy())
        assert table["events"].sum() + table["censored"].sum() == grp["n"]
    f, m = g == "F", g == "M"
    test = logrank_test(d[f], d[m], event_observed_A=e[f], event_observed_B=e[m])
    assert doc["logrank_p"] == pytest.approx(test.p_value, rel=1e-9)
    cox = CoxPHFitter().fit(
        pd.DataFrame({"T": d, "E": e.astype(int), "male": m.astype(int)}), duration_col="T", event_col="E"
    )
    assert doc["reference"] == "F"
    assert doc["hazard_ratio"] == pytest.approx(float(cox.hazard_ratios_["male"]), rel=1e-6)
    lo, hi = np.exp(cox.confidence_intervals_.loc["male"].to_numpy())
    assert doc["hazard_ratio_ci"] == [pytest.approx(lo, rel=1e-6), pytest.approx(hi, rel=1e-6)]


def test_km_text_output_lists_each_group_and_says_which_are_left_out(km_library: Path, tmp_path: Path, capsys) -> None:
    status, out, err = run(
        capsys,
        "km",
        "--group-by",
        "age",
        "--age-cut",
        "55",
        "--library",
        str(km_library),
        "--weights",
        str(tmp_path),
    )
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("age at admission, cut at 55 years; time from the second CT to discharge")
    sizes = {"age < 55": 0, "age >= 55": 0}
    events = dict.fromkeys(sizes, 0)
    for p in library_patients(open_library(km_library, create=False)):
        if p.label == "COVID-19" and len(p.cts()) >= 2:
            name = "age >= 55" if p.age >= 55 else "age < 55"
            sizes[name] += 1
            events[name] += p.outcome == "discharged"
    assert min(sizes.values()) < 5 <= max(sizes.values())  # one group too small: the note is exercised
    for name, n in sizes.items():
        if n >= 5:
            assert f"  {name}: n={n}, events={events[name]}," in out
        else:
            assert f"note: Group '{name}' has only {n} patients" in out
            assert f"  {name}:" not in out
    assert "log-rank p -; hazard ratio -" in lines
