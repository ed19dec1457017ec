"""``library index``, ``similar`` and ``evaluate-retrieval`` as a user runs them.

These tests use the shipped cxr-resnet18 in ``weights/`` (the default ``--weights``; 224 px,
quick on the 6-patient demo library). Answers are checked against the vectors the library stores, with numpy.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.cli.main import main
from core.demo.xray_phantom import generate_xray
from core.library.store import SqliteLibrary, open_library
from tests.cli_helpers import assert_one_line_error, run, run_json

pytestmark = pytest.mark.demo_weights

MODEL_ID = "cxr-resnet18"


@pytest.fixture(scope="module")
def cli_library(tmp_path_factory: pytest.TempPathFactory, demo_library: Path) -> Path:
    """A copy of the demo library indexed with ``library index``; read-only for the tests."""
    root = tmp_path_factory.mktemp("cli-search") / "library"
    shutil.copytree(demo_library, root)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["library", "index", "--library", str(root)]) == 0
    return root


def xray_owner(library: SqliteLibrary) -> dict[int, str]:
    return {r.image_id: r.patient_pseudonym for r in library.image_refs(("xray",))}


def busiest_patient(library: SqliteLibrary) -> str:
    owner = xray_owner(library)
    return max(sorted(set(owner.values())), key=lambda p: list(owner.values()).count(p))


def reference_top(library: SqliteLibrary, version: str, query_id: int, exclude_patient: str | None, k: int):
    """(pseudonym, max cosine) of the k nearest patients, from the stored vectors with numpy."""
    ids, matrix = library.embeddings(MODEL_ID, version)
    v = matrix.astype(np.float64) / np.linalg.norm(matrix, axis=1, keepdims=True)
    sims = v @ v[ids.index(query_id)]
    owner = xray_owner(library)
    best: dict[str, float] = {}
    for image_id, sim in zip(ids, sims, strict=True):
        who = owner[image_id]
        if image_id != query_id and who != exclude_patient:
            best[who] = max(best.get(who, -2.0), float(sim))
    return sorted(best.items(), key=lambda kv: -kv[1])[:k]


def assert_series_in_time_order(result: dict) -> None:
    days = [s["day"] for s in result["series"]]
    known = [d for d in days if d is not None]
    assert known == sorted(known) and days[: len(known)] == known


# -- library index ----------------------------------------------------------------------------


def test_index_is_incremental_and_similar_notes_unindexed_images(library_copy: Path, capsys) -> None:
    from core.library.importers import add_upload

    lib = str(library_copy)
    library = open_library(library_copy, create=False)
    n_xray = len(library.image_refs(("xray",)))

    first = run_json(capsys, "library", "index", "--library", lib)
    assert first["model_id"] == MODEL_ID and first["problems"] == []
    assert (first["total"], first["added"], first["already"], first["dropped_stale"]) == (n_xray, n_xray, 0, 0)
    ids, matrix = library.embeddings(MODEL_ID, first["model_version"])
    assert len(ids) == n_xray and matrix.shape[1] == 512

    status, out, _ = run(capsys, "library", "index", "--library", lib)
    assert status == 0 and out.startswith(f"0 images embedded, {n_xray} already had")

    png = generate_xray("COVID-19", 0.7, seed=880_001, size=256).to_png()
    add_upload(library, [("new.png", png)], modality="X-ray", label="COVID-19")
    status, out, err = run(capsys, "similar", busiest_patient(library), "--k", "2", "--library", lib)
    assert status == 0 and "1 library images have no" in err and "library index" in err

    again = run_json(capsys, "library", "index", "--library", lib)
    assert (again["added"], again["already"], again["total"]) == (1, n_xray, n_xray + 1)
    status, _, err = run(capsys, "similar", busiest_patient(library), "--k", "2", "--library", lib)
    assert status == 0 and "no " + MODEL_ID not in err


# -- similar ----------------------------------------------------------------------------------


def test_similar_case_json_has_k_other_patients_with_their_series(cli_library: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    who = busiest_patient(library)
    record = run_json(capsys, "similar", who, "--k", "3", "--library", str(cli_library))
    query_id = record["query"]["recognised_as_image_id"]
    assert record["query"]["source"] == "library" and record["query"]["patient_id"] == who
    assert xray_owner(library)[query_id] == who
    assert record["model_id"] == MODEL_ID and record["include_query_patient"] is False

    results = record["results"]
    assert len(results) == 3
    for r in results:
        assert {"patient_id", "similarity", "matched_study", "series"} <= set(r)
    names = [r["patient_id"] for r in results]
    assert len(set(names)) == 3 and who not in names
    sims = [r["similarity"] for r in results]
    assert sims == sorted(sims, reverse=True)
    for r in results:
        assert_series_in_time_order(r)
        matched = [s for s in r["series"] if s["matched"]]
        assert matched == [r["matched_study"]]
        images = {im["image_id"]: im["similarity"] for im in r["matched_study"]["images"]}
        assert r["matched_image_id"] in images
        assert images[r["matched_image_id"]] == pytest.approx(r["similarity"], abs=1e-5)

    reference = reference_top(library, record["model_version"], query_id, who, 3)
    assert [p for p, _ in reference] == names
    np.testing.assert_allclose(sims, [s for _, s in reference], atol=1e-5)


def test_every_kind_of_case_reference_names_the_same_image(cli_library: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    patient = library.patient(busiest_patient(library))
    study = next(s for s in patient.studies[1:] if s.day is not None and any(i.kind == "xray" for i in s.images))
    image_id = next(i.id for i in study.images if i.kind == "xray")
    for ref in (f"image:{image_id}", f"study:{study.id}", f"{patient.pseudonym}@{study.day:g}"):
        record = run_json(capsys, "similar", ref, "--k", "1", "--library", str(cli_library))
        assert record["query"]["recognised_as_image_id"] == image_id, ref
        assert len(record["results"]) == 1 and record["results"][0]["patient_id"] != patient.pseudonym


def test_include_query_patient_shows_their_other_images_never_the_query(cli_library: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    who = busiest_patient(library)
    record = run_json(capsys, "similar", who, "--k", "100", "--include-query-patient", "--library", str(cli_library))
    query_id = record["query"]["recognised_as_image_id"]
    assert record["include_query_patient"] is True
    names = [r["patient_id"] for r in record["results"]]
    assert who in names and len(names) == len(set(xray_owner(library).values()))
    assert all(r["matched_image_id"] != query_id for r in record["results"])
    mine = record["results"][names.index(who)]
    assert xray_owner(library)[mine["matched_image_id"]] == who


def test_an_image_file_not_in_the_library_searches_every_patient(cli_library: Path, tmp_path: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    path = tmp_path / "new-patient.png"
    path.write_bytes(generate_xray("Viral pneumonia", 0.6, seed=880_002, size=256).to_png())
    record = run_json(capsys, "similar", str(path), "--k", "3", "--library", str(cli_library))
    assert record["query"]["source"] == "upload"
    assert record["query"]["recognised_as_image_id"] is None and record["query"]["patient_id"] is None
    assert record["n_patients_searched"] == len(set(xray_owner(library).values()))
    assert len(record["results"]) == 3 and len({r["patient_id"] for r in record["results"]}) == 3
    for r in record["results"]:
        assert_series_in_time_order(r)


def test_a_library_image_saved_in_another_format_is_recognised(cli_library: Path, tmp_path: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    image_id = next(i for i in xray_owner(library) if library.image_record(i).path.endswith(".png"))
    owner = xray_owner(library)[image_id]
    _, data = library.image_files(library.image_record(image_id))[0]
    path = tmp_path / "from-the-library.tiff"
    Image.open(io.BytesIO(data)).save(path, "TIFF")  # other bytes, same pixels
    assert path.read_bytes() != data

    record = run_json(capsys, "similar", str(path), "--k", "3", "--library", str(cli_library))
    q = record["query"]
    assert q["source"] == "upload" and q["recognised_as_image_id"] == image_id and q["patient_id"] == owner
    assert image_id in q["images_with_same_pixels"]
    assert owner not in {r["patient_id"] for r in record["results"]}

    status, out, err = run(capsys, "similar", str(path), "--k", "3", "--library", str(cli_library))
    assert status == 0, err
    assert out.splitlines()[0] == f"query: library image {image_id} of patient {owner} (same pixels)"


def test_label_and_outcome_filters(cli_library: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    who = busiest_patient(library)
    covid = {p.pseudonym for p in library.patients() if p.label == "COVID-19"} - {who}
    record = run_json(capsys, "similar", who, "--k", "100", "--label", "covid-19", "--library", str(cli_library))
    assert {r["patient_id"] for r in record["results"]} == covid and covid
    assert all(r["label"] == "COVID-19" for r in record["results"])
    nobody = run_json(
        capsys, "similar", who, "--outcome", "in hospital", "--library", str(cli_library)
    )  # the demo patients were all discharged
    assert nobody["results"] == [] and nobody["n_patients_searched"] == 0


def test_plain_text_output_lists_patients_and_their_series(cli_library: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    who = busiest_patient(library)
    status, out, err = run(capsys, "similar", who, "--k", "2", "--library", str(cli_library))
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("query: library image ") and lines[0].endswith(f"of patient {who}")
    assert lines[1].startswith("2 most similar of ")
    listed = [line.split()[0] for line in lines[2:] if not line.startswith("     ")]
    assert len(listed) == 2 and who not in listed
    assert sum(line.lstrip().startswith("*") for line in lines) == 2  # one matched study each


# -- evaluate-retrieval -----------------------------------------------------------------------


def test_evaluate_retrieval_json_and_text(cli_library: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    owner = xray_owner(library)
    record = run_json(capsys, "evaluate-retrieval", "--k", "2", "--library", str(cli_library))
    assert record["model_id"] == MODEL_ID and record["k"] == 2
    assert record["n_queries"] == len(owner)
    assert set(record["precision_at_k_by_label"]) == {p.label for p in library.patients()}
    assert all(0.0 <= v <= 1.0 for v in record["precision_at_k_by_label"].values())
    assert 0.0 <= record["same_patient_hit_rate_at_k"] <= 1.0
    many = [i for i, p in owner.items() if list(owner.values()).count(p) >= 2]
    assert record["same_patient_queries"] == len(many)

    few = run_json(capsys, "evaluate-retrieval", "--max-queries", "4", "--library", str(cli_library))
    assert few["n_queries"] == 4 and sum(few["queries_by_label"].values()) == 4

    status, out, err = run(capsys, "evaluate-retrieval", "--k", "2", "--library", str(cli_library))
    assert status == 0, err
    assert out.startswith(f"{len(owner)} queries over {len(owner)} images") and "precision@2" in out


# -- errors -----------------------------------------------------------------------------------


def test_no_library_is_one_plain_line(tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "no-library-here")
    for argv in (
        ["similar", "P-ANYONE", "--library", missing],
        ["evaluate-retrieval", "--library", missing],
        ["library", "index", "--library", missing],
    ):
        assert_one_line_error(*run(capsys, *argv), "no case library")
    assert not (tmp_path / "no-library-here").exists()  # nothing was created


def test_before_indexing_the_error_names_the_index_command(library_copy: Path, capsys) -> None:
    library = open_library(library_copy, create=False)
    who = busiest_patient(library)
    assert_one_line_error(*run(capsys, "similar", who, "--library", str(library_copy)), "library index")
    assert_one_line_error(*run(capsys, "evaluate-retrieval", "--library", str(library_copy)), "library index")


@pytest.mark.parametrize(
    "case",
    [
        "text file",
        "folder",
        "missing file",
        "unknown patient",
        "ct study",
        "k 0",
        "ct model",
        "index ct model",
        "evaluate k 0",
    ],
)
def test_bad_queries_are_one_plain_line(case: str, cli_library: Path, tmp_path: Path, capsys) -> None:
    library = open_library(cli_library, create=False)
    lib = ["--library", str(cli_library)]
    if case == "text file":
        path = tmp_path / "notes.txt"
        path.write_text("not an X-ray")
        argv, words = ["similar", str(path), *lib], ["notes.txt"]
    elif case == "folder":
        argv, words = ["similar", str(tmp_path), *lib], ["folder"]
    elif case == "missing file":
        argv, words = ["similar", str(tmp_path / "chest.png"), *lib], ["no file", "chest.png"]
    elif case == "unknown patient":
        argv, words = ["similar", "P-NOBODY00", *lib], ["P-NOBODY00"]
    elif case == "ct study":
        ct = library.image_refs(("ct-series",))[0]
        argv, words = ["similar", f"study:{ct.study_id}", *lib], [f"study {ct.study_id}"]
    elif case == "k 0":
        argv, words = ["similar", busiest_patient(library), "--k", "0", *lib], ["--k"]
    elif case == "ct model":
        argv, words = ["similar", busiest_patient(library), "--model", "covid3d", *lib], ["image model"]
    elif case == "index ct model":
        argv, words = ["library", "index", "--model", "covid3d", *lib], ["image model"]
    else:
        argv, words = ["evaluate-retrieval", "--k", "0", *lib], ["--k"]
    assert_one_line_error(*run(capsys, *argv), *words)


def test_a_negative_max_queries_is_one_plain_line(cli_library: Path, capsys) -> None:
    status = main(["evaluate-retrieval", "--max-queries", "-1", "--library", str(cli_library)])
    assert_one_line_error(status, *capsys.readouterr(), "--max-queries")


def test_the_unlabelled_filter_returns_only_patients_without_a_diagnosis(library_copy: Path, capsys) -> None:
    from core.library.importers import add_upload

    library = open_library(library_copy)
    chest = generate_xray("COVID-19", 0.5, seed=11, size=256).to_png()
    unlabelled, _ = add_upload(library, [("chest.png", chest)], modality="X-ray", label=None, note="")
    lib = ["--library", str(library_copy)]
    assert main(["library", "index", *lib]) == 0
    capsys.readouterr()
    out = run_json(capsys, "similar", busiest_patient(library), "--label", "Unlabelled", *lib)
    assert [r["patient_id"] for r in out["results"]] == [unlabelled]
