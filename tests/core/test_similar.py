"""core.search: indexing a case library, similar-patient search, case references and retrieval
evaluation, on a copy of the small demo library with tiny untrained models (64 px), in a SQLite
folder and in PostgreSQL (where the search runs in pgvector's index).

Search results are checked against a brute-force reference computed here with numpy from the
vectors the library stores, never against hard-coded answers.
"""

from __future__ import annotations

import io
import shutil
from collections import defaultdict
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.demo.xray_phantom import generate_xray
from core.errors import InvalidInputError
from core.io.images import read_xray
from core.library.records import NewPatient, NewStudy
from core.library.store import CaseLibrary, NewImage, SqliteLibrary, open_library
from core.models.registry import LoadedModel, ModelRegistry
from core.search.embeddings import check_embeddable, embedding_version, index_library
from core.search.evaluate import evaluate_retrieval
from core.search.similar import (
    UNLABELLED,
    LibraryIndex,
    SearchFilter,
    find_similar,
    open_index,
    resolve_case,
)
from core.types import XrayImage
from tests.helpers import register_tiny_model
from tests.pg import LIBRARY_BACKENDS, PostgresServer, run_sql

MODEL_ID = "cxr-resnet18"
TOL = 1e-5  # float32 similarities against a float64 reference


# -- fixtures ---------------------------------------------------------------------------------


def _load(weights: Path) -> LoadedModel:
    return ModelRegistry(weights, device=torch.device("cpu")).load(MODEL_ID)


@pytest.fixture(scope="module")
def model(tiny_weights: Path) -> LoadedModel:
    return _load(tiny_weights)


def _phantom_png(label: str, seed: int) -> bytes:
    return generate_xray(label, 0.0 if label == "Normal" else 0.6, seed=seed, size=256).to_png()


def _add_extra_patient(library: CaseLibrary) -> str:
    """An unlabelled patient who died, X-ray only, whose studies were stored out of time order:
    one without any day first, then day 4, then day 1."""
    pseudonym = library.pseudonym("test", "extra-patient")
    patient = NewPatient(pseudonym=pseudonym, source="test", label=None, outcome="died", survival=False)
    for seed, day in ((31_001, None), (31_002, 4.0), (31_003, 1.0)):
        png = _phantom_png("Viral pneumonia", seed)
        image = NewImage("xray", (("image.png", png),), width=256, height=256)
        library.add_case(patient, NewStudy("X-ray", offset_admission_days=day), [image], library.content_key([png]))
    return pseudonym


@pytest.fixture(scope="module", params=LIBRARY_BACKENDS)
def indexed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, model: LoadedModel) -> Iterator:
    """A copy of the demo library plus one extra patient, indexed once; read-only for the tests.
    On each backend in turn: a copied folder, or a copy of the demo library's database."""
    server: PostgresServer | None = None
    if request.param == "sqlite":
        location = str(tmp_path_factory.mktemp("similar") / "library")
        shutil.copytree(request.getfixturevalue("demo_library"), location)
    else:
        server = request.getfixturevalue("postgres_server")
        location = server.create_database(template=request.getfixturevalue("postgres_demo_library"))
    library = open_library(location, create=False)
    extra = _add_extra_patient(library)
    report = index_library(library, model)
    yield library, report, extra
    if server is not None:
        server.drop_later(location)


@pytest.fixture(scope="module")
def library_index(indexed, model: LoadedModel) -> LibraryIndex:
    library, _, _ = indexed
    return open_index(library, model)


# -- the brute-force reference ----------------------------------------------------------------


def owners(library: CaseLibrary) -> dict[int, str]:
    return {r.image_id: r.patient_pseudonym for r in library.image_refs()}


def reference_ranking(
    library: CaseLibrary,
    model: LoadedModel,
    query: np.ndarray,
    *,
    exclude_images: AbstractSet[int] = frozenset(),
    exclude_patients: AbstractSet[str] = frozenset(),
) -> list[tuple[str, int, float]]:
    """Every patient as (pseudonym, best image, max cosine), best first, from the stored vectors."""
    ids, matrix = library.embeddings(model.id, embedding_version(model))
    vectors = matrix.astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = np.asarray(query, dtype=np.float64)
    sims = vectors @ (q / np.linalg.norm(q))
    who = owners(library)
    best: dict[str, tuple[int, float]] = {}
    for image_id, sim in zip(ids, sims, strict=True):
        if image_id in exclude_images or who[image_id] in exclude_patients:
            continue
        if who[image_id] not in best or sim > best[who[image_id]][1]:
            best[who[image_id]] = (image_id, float(sim))
    return sorted(((p, i, s) for p, (i, s) in best.items()), key=lambda t: -t[2])


def image_cosines(library: CaseLibrary, model: LoadedModel, query: np.ndarray) -> dict[int, float]:
    ids, matrix = library.embeddings(model.id, embedding_version(model))
    vectors = matrix.astype(np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    q = np.asarray(query, dtype=np.float64)
    return dict(zip(ids, (vectors @ (q / np.linalg.norm(q))).tolist(), strict=True))


def assert_top_k(results, ranking: list[tuple[str, int, float]], k: int) -> None:
    """``results`` are the top ``k`` of ``ranking``, best first (ties within TOL in any order)."""
    score = {p: s for p, _, s in ranking}
    got = [r.pseudonym for r in results]
    assert len(got) == min(k, len(ranking))
    assert len(set(got)) == len(got)
    for r in results:
        assert r.pseudonym in score, f"{r.pseudonym} should have been left out"
        assert r.similarity == pytest.approx(score[r.pseudonym], abs=TOL)
    assert all(a.similarity >= b.similarity - TOL for a, b in zip(results, results[1:], strict=False))
    if got:
        cutoff = results[-1].similarity
        assert all(s <= cutoff + TOL for p, _, s in ranking if p not in got), "a closer patient was missed"


def stored_vector(library: CaseLibrary, model: LoadedModel, image_id: int) -> np.ndarray:
    ids, matrix = library.embeddings(model.id, embedding_version(model))
    return matrix[ids.index(image_id)]


def xray_ids_of(library: CaseLibrary, pseudonym: str) -> list[int]:
    return [r.image_id for r in library.image_refs(("xray",)) if r.patient_pseudonym == pseudonym]


def patient_with_most_xrays(library: CaseLibrary) -> str:
    counts: dict[str, int] = defaultdict(int)
    for r in library.image_refs(("xray",)):
        counts[r.patient_pseudonym] += 1
    return max(sorted(counts), key=lambda p: counts[p])


def n_patients_with_xrays(library: CaseLibrary) -> int:
    return len({r.patient_pseudonym for r in library.image_refs(("xray",))})


# -- indexing ---------------------------------------------------------------------------------


def test_index_embeds_every_xray_as_a_unit_512_vector_and_nothing_else(indexed, model: LoadedModel) -> None:
    library, report, _ = indexed
    xray_ids = [r.image_id for r in library.image_refs(("xray",))]
    ct_ids = [r.image_id for r in library.image_refs(("ct-series",))]
    assert xray_ids and ct_ids  # the demo library has both
    assert report.total == report.added == len(xray_ids)
    assert report.already == report.dropped_stale == 0 and report.problems == []
    assert report.model_version == embedding_version(model)

    ids, matrix = library.embeddings(MODEL_ID, embedding_version(model))
    assert ids == xray_ids  # every radiograph, no CT series
    assert matrix.shape == (len(xray_ids), 512) and matrix.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert len({v.tobytes() for v in matrix}) == len(ids)  # distinct images, distinct vectors
    assert all(library.pixel_digest_of(i) is not None for i in xray_ids)
    assert all(library.pixel_digest_of(i) is None for i in ct_ids)


def test_indexing_again_embeds_nothing(indexed, model: LoadedModel) -> None:
    library, first, _ = indexed
    calls: list[tuple[int, int]] = []
    again = index_library(library, model, progress=lambda done, total: calls.append((done, total)))
    assert again.added == 0 and again.dropped_stale == 0
    assert again.already == again.total == first.total
    assert calls == []  # nothing to do, no progress bar


def test_only_a_newly_added_case_is_embedded(library_copy_location: str, model: LoadedModel) -> None:
    from core.library.importers import add_upload

    library = open_library(library_copy_location, create=False)
    first = index_library(library, model)
    pseudonym, study_id = add_upload(
        library, [("new.png", _phantom_png("COVID-19", 51_515))], modality="X-ray", label="COVID-19"
    )
    calls: list[tuple[int, int]] = []
    second = index_library(library, model, progress=lambda done, total: calls.append((done, total)))
    assert (second.added, second.already, second.total) == (1, first.total, first.total + 1)
    assert calls and calls[-1] == (1, 1)
    new_id = next(r.image_id for r in library.image_refs() if r.study_id == study_id)
    ids, _ = library.embeddings(MODEL_ID, embedding_version(model))
    assert new_id in ids and len(ids) == first.total + 1
    # and the new patient can be found
    results = find_similar(
        library, model, case_image_id=xray_ids_of(library, patient_with_most_xrays(library))[0], k=50
    )
    assert pseudonym in {r.pseudonym for r in results.results}


def test_new_weights_reembed_everything_and_drop_the_stale_vectors(
    library_copy_location: str, tiny_weights: Path, tmp_path: Path, model: LoadedModel
) -> None:
    library = open_library(library_copy_location, create=False)
    old = index_library(library, model)
    weights = tmp_path / "weights"
    shutil.copytree(tiny_weights, weights)
    register_tiny_model(weights, MODEL_ID, seed=1)  # same id and version string, other weights
    retrained = _load(weights)
    assert retrained.card.version == model.card.version
    assert embedding_version(retrained) != embedding_version(model)

    new = index_library(library, retrained)
    assert new.added == new.total == old.total and new.already == 0
    assert new.dropped_stale == old.added
    assert library.embeddings(MODEL_ID, embedding_version(model))[0] == []
    ids, matrix = library.embeddings(MODEL_ID, embedding_version(retrained))
    old_ids = [r.image_id for r in library.image_refs(("xray",))]
    assert ids == old_ids and matrix.shape == (len(ids), 512)
    # The old weights have nothing left to search with; the new ones do.
    with pytest.raises(InvalidInputError, match="library index"):
        open_index(library, model)
    assert len(open_index(library, retrained)) == len(ids)


def damage_image(library: CaseLibrary, image_id: int, data: bytes) -> None:
    """Overwrite a stored image's file past the library's code: in its folder, or in the database."""
    if isinstance(library, SqliteLibrary):
        library.image_path(library.image_record(image_id)).write_bytes(data)
    else:
        run_sql(library.location, f"UPDATE image_files SET data = '\\x{data.hex()}'::bytea WHERE image_id = {image_id}")


def test_an_unreadable_stored_image_is_reported_skipped_and_tried_again(
    library_copy_location: str, model: LoadedModel
) -> None:
    library = open_library(library_copy_location, create=False)
    victim = library.image_refs(("xray",))[0].image_id
    damage_image(library, victim, b"not an image any more")
    report = index_library(library, model)
    assert report.added == report.total - 1
    assert len(report.problems) == 1 and report.problems[0].startswith(f"image {victim}:")
    again = index_library(library, model)
    assert again.added == 0 and len(again.problems) == 1  # tried again, still unreadable
    assert victim not in library.embeddings(MODEL_ID, embedding_version(model))[0]


def test_open_index_without_embeddings_names_the_index_command(library_copy_location: str, model: LoadedModel) -> None:
    library = open_library(library_copy_location, create=False)
    with pytest.raises(InvalidInputError, match="library index"):
        open_index(library, model)
    some_xray = library.image_refs(("xray",))[0].image_id
    with pytest.raises(InvalidInputError, match="library index"):
        find_similar(library, model, case_image_id=some_xray)


def test_a_ct_volume_model_cannot_embed(tmp_path: Path, indexed) -> None:
    from tests.ct_helpers import register_tiny_ct_model

    register_tiny_ct_model(tmp_path, "covid3d-tiny")
    ct_model = ModelRegistry(tmp_path, device=torch.device("cpu")).load("covid3d-tiny")
    with pytest.raises(InvalidInputError, match=MODEL_ID):
        check_embeddable(ct_model)
    library, _, _ = indexed
    with pytest.raises(InvalidInputError):
        index_library(library, ct_model)
    with pytest.raises(InvalidInputError):
        open_index(library, ct_model)


# -- search with a library case ---------------------------------------------------------------


def test_a_case_search_returns_k_other_patients_best_first(indexed, model: LoadedModel) -> None:
    library, _, _ = indexed
    who = patient_with_most_xrays(library)
    query_id = xray_ids_of(library, who)[1]
    found = find_similar(library, model, case_image_id=query_id, k=3)
    assert found.query.source == "library" and found.query.image_id == query_id
    assert found.query.patient_pseudonym == who and found.query.same_pixels == (query_id,)
    assert len(found.results) == 3
    names = [r.pseudonym for r in found.results]
    assert len(set(names)) == 3 and who not in names
    sims = [r.similarity for r in found.results]
    assert sims == sorted(sims, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-6 for s in sims)
    assert found.n_indexed == len(library.image_refs(("xray",)))
    assert found.n_patients_searched == n_patients_with_xrays(library) - 1
    ranking = reference_ranking(
        library, model, stored_vector(library, model, query_id), exclude_images={query_id}, exclude_patients={who}
    )
    assert_top_k(found.results, ranking, 3)


def test_every_case_search_equals_brute_force_numpy(indexed, library_index: LibraryIndex, model: LoadedModel) -> None:
    library, _, _ = indexed
    who = owners(library)
    k = 3
    for ref in library.image_refs(("xray",)):
        query = stored_vector(library, model, ref.image_id)
        found = find_similar(library, model, case_image_id=ref.image_id, k=k, index=library_index)
        ranking = reference_ranking(
            library, model, query, exclude_images={ref.image_id}, exclude_patients={ref.patient_pseudonym}
        )
        assert_top_k(found.results, ranking, k)
        cosines = image_cosines(library, model, query)
        for r in found.results:
            assert who[r.matched_image_id] == r.pseudonym
            assert cosines[r.matched_image_id] == pytest.approx(r.similarity, abs=TOL)
            assert max(cosines[i] for i in xray_ids_of(library, r.pseudonym)) == pytest.approx(r.similarity, abs=TOL)


def test_results_carry_the_whole_series_in_time_order_and_a_consistent_match(
    indexed, library_index: LibraryIndex, model: LoadedModel
) -> None:
    library, _, extra = indexed
    query_id = xray_ids_of(library, patient_with_most_xrays(library))[0]
    found = find_similar(library, model, case_image_id=query_id, k=100, index=library_index)
    assert len(found.results) == n_patients_with_xrays(library) - 1  # everyone else
    assert extra in {r.pseudonym for r in found.results}
    for r in found.results:
        days = [s.day for s in r.patient.studies]
        known = [d for d in days if d is not None]
        assert known == sorted(known)
        assert days[: len(known)] == known  # unknown days last
        assert len(r.patient.studies) == r.patient.summary.n_studies  # the whole series, CT too
        study = r.matched_study
        assert study.id == r.matched_study_id and study.patient_pseudonym == r.pseudonym
        assert r.matched_image_id in {im.id for im in study.images}
        assert r.image_similarity[r.matched_image_id] == pytest.approx(r.similarity, abs=1e-6)
        assert set(r.image_similarity) == set(xray_ids_of(library, r.pseudonym))
        assert max(r.image_similarity.values()) == pytest.approx(r.similarity, abs=1e-6)
        record = r.as_dict()
        assert record["patient_id"] == r.pseudonym and record["matched_study"]["matched"] is True
        assert [s["study_id"] for s in record["series"]] == [s.id for s in r.patient.studies]
    extra_result = next(r for r in found.results if r.pseudonym == extra)
    extra_days = [s.day for s in extra_result.patient.studies]
    assert extra_days == [1.0, 4.0, None]  # stored as None, 4, 1


def test_including_the_query_patient_never_returns_the_query_image(
    indexed, library_index: LibraryIndex, model: LoadedModel
) -> None:
    library, _, _ = indexed
    who = patient_with_most_xrays(library)
    theirs = xray_ids_of(library, who)
    for query_id in theirs:
        found = find_similar(
            library, model, case_image_id=query_id, k=100, include_query_patient=True, index=library_index
        )
        assert found.include_query_patient
        assert found.n_patients_searched == n_patients_with_xrays(library)
        assert all(r.matched_image_id != query_id for r in found.results)
        mine = next(r for r in found.results if r.pseudonym == who)  # their other images may match
        assert mine.matched_image_id in theirs
        ranking = reference_ranking(library, model, stored_vector(library, model, query_id), exclude_images={query_id})
        assert_top_k(found.results, ranking, 100)


def test_a_case_that_shares_its_pixels_with_another_image_never_returns_that_copy(
    library_copy_location: str, model: LoadedModel
) -> None:
    """A re-encoded copy of a library image stored under another patient is the same picture."""
    from core.library.importers import add_upload

    library = open_library(library_copy_location, create=False)
    original = next(
        r.image_id for r in library.image_refs(("xray",)) if library.image_record(r.image_id).path.endswith(".png")
    )
    _, data = library.image_files(library.image_record(original))[0]
    pixels = np.asarray(Image.open(io.BytesIO(data)))
    copy_png = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint16)).save(copy_png, "PNG")  # 16-bit: other bytes, same pixels
    twin, study_id = add_upload(library, [("copy.png", copy_png.getvalue())], modality="X-ray", label="Normal")
    index_library(library, model)
    copy_id = next(r.image_id for r in library.image_refs() if r.study_id == study_id)
    assert library.pixel_digest_of(copy_id) == library.pixel_digest_of(original)

    for include in (False, True):
        found = find_similar(library, model, case_image_id=original, k=100, include_query_patient=include)
        assert set(found.query.same_pixels) == {original, copy_id}
        assert all(r.matched_image_id not in (original, copy_id) for r in found.results)
        assert twin not in {r.pseudonym for r in found.results}  # their only image is the query's copy


def test_a_case_added_since_indexing_is_embedded_for_the_query_and_its_patient_left_out(
    library_copy_location: str, model: LoadedModel
) -> None:
    from core.library.importers import add_upload

    library = open_library(library_copy_location, create=False)
    index_library(library, model)
    who = patient_with_most_xrays(library)
    png = _phantom_png("COVID-19", 62_626)
    _, study_id = add_upload(library, [("later.png", png)], modality="X-ray", label=None, patient=who)
    new_id = next(r.image_id for r in library.image_refs() if r.study_id == study_id)
    assert new_id not in library.embeddings(MODEL_ID, embedding_version(model))[0]

    found = find_similar(library, model, case_image_id=new_id, k=100)
    assert found.query.image_id == new_id and found.query.patient_pseudonym == who
    assert who not in {r.pseudonym for r in found.results}  # their indexed images stay out too
    assert found.n_indexed == len(library.image_refs(("xray",))) - 1
    from core.search.embeddings import embed_xray

    query = embed_xray(model, read_xray(png, "later.png"))  # what the stored file holds
    assert_top_k(found.results, reference_ranking(library, model, query, exclude_patients={who}), 100)
    with_them = find_similar(library, model, case_image_id=new_id, k=100, include_query_patient=True)
    assert who in {r.pseudonym for r in with_them.results}


@pytest.mark.parametrize(
    ("library_backend", "backend"),
    [("sqlite", "exact"), ("sqlite", "faiss-flat"), ("postgresql", "exact"), ("postgresql", "pgvector")],
)
def test_nearest_patients_looks_past_a_crowd_of_excluded_images(backend: str, library_copy_location: str) -> None:
    """More than 64 images of one left-out patient nearest the query: the search must look further."""
    if backend.startswith("faiss"):
        pytest.importorskip("faiss")
    library = open_library(library_copy_location, create=False)
    crowd = library.pseudonym("test", "crowd")
    png = _phantom_png("Normal", 5)
    for n in range(70):
        library.add_case(
            NewPatient(pseudonym=crowd, source="test"),
            NewStudy("X-ray", offset_admission_days=float(n)),
            [NewImage("xray", (("image.png", png),), width=256, height=256)],
            library.content_key([f"crowd-{n}".encode()]),
        )
    rng = np.random.default_rng(0)
    dim = 16
    query = np.eye(dim, dtype=np.float32)[0]
    who = owners(library)
    vectors = {}
    for r in library.image_refs(("xray",)):
        noise = rng.normal(size=dim).astype(np.float32)
        # The crowd sits right on the query; everyone else further off.
        vectors[r.image_id] = query * (40.0 if who[r.image_id] == crowd else 2.0) + noise
    library.put_embeddings("synthetic", "v1", vectors)
    index = LibraryIndex(library, "synthetic", "v1", backend)
    assert len(index) > 64 + 3 and index.backend == backend

    def reference(n: int) -> list[str]:
        best: dict[str, float] = {}
        for image_id, v in vectors.items():
            if who[image_id] != crowd:
                best[who[image_id]] = max(best.get(who[image_id], -2.0), float(v @ query / np.linalg.norm(v)))
        return sorted(best, key=lambda p: -best[p])[:n]

    others = frozenset(set(who.values()) - {crowd})
    for n in (1, 3, 100):
        got = index.nearest_patients(query, n, exclude_patients=frozenset({crowd}))
        assert [p for p, _, _ in got] == reference(n)
        allowed = index.nearest_patients(query, n, allowed_patients=others)
        assert [p for p, _, _ in allowed] == reference(n)
    assert index.nearest_patients(query, 1)[0][0] == crowd  # not left out: the crowd is nearest


# -- search with an uploaded image -------------------------------------------------------------


def _reencode(data: bytes, how: str) -> bytes:
    if how == "as stored":
        return data
    image = read_xray(data, "stored")
    raw = np.rint(image.pixels)
    out = io.BytesIO()
    if how == "tiff":
        Image.fromarray(raw.astype(np.uint8 if image.bits_stored <= 8 else np.uint16)).save(out, "TIFF")
    else:  # 16-bit png
        Image.fromarray(raw.astype(np.uint16)).save(out, "PNG")
    assert out.getvalue() != data
    return out.getvalue()


@pytest.mark.parametrize("stored_as", ["png", "dcm"])
@pytest.mark.parametrize("how", ["as stored", "tiff", "16-bit png"])
def test_an_upload_of_a_library_image_is_recognised_whatever_the_format(
    stored_as: str, how: str, indexed, library_index: LibraryIndex, model: LoadedModel
) -> None:
    library, _, _ = indexed
    image_id = next(
        r.image_id
        for r in library.image_refs(("xray",))
        if library.image_record(r.image_id).path.endswith(f".{stored_as}")
    )
    owner = owners(library)[image_id]
    _, data = library.image_files(library.image_record(image_id))[0]
    upload = read_xray(_reencode(data, how), f"upload-{how}")
    found = find_similar(library, model, image=upload, k=3, index=library_index)
    q = found.query
    assert q.source == "upload" and q.recognised
    assert q.image_id == image_id and q.patient_pseudonym == owner and image_id in q.same_pixels
    assert owner not in {r.pseudonym for r in found.results}
    assert found.n_patients_searched == n_patients_with_xrays(library) - 1
    # The model sees the picture at the file's own display window, which a 16-bit PNG or a DICOM
    # re-saved as TIFF does not keep; where the window is kept too, the upload finds exactly what
    # the library case finds.
    stored = read_xray(data, "stored")
    if (upload.window_center, upload.window_width) == (stored.window_center, stored.window_width):
        as_case = find_similar(library, model, case_image_id=image_id, k=3, index=library_index)
        assert [r.pseudonym for r in found.results] == [r.pseudonym for r in as_case.results]
        np.testing.assert_allclose(
            [r.similarity for r in found.results], [r.similarity for r in as_case.results], atol=1e-5
        )
    else:
        assert how != "as stored"


def test_an_upload_not_in_the_library_searches_everyone(
    indexed, library_index: LibraryIndex, model: LoadedModel
) -> None:
    library, _, _ = indexed
    phantom = generate_xray("COVID-19", 0.7, seed=777_001, size=256)
    upload = read_xray(phantom.to_png(), "phantom.png")
    found = find_similar(library, model, image=upload, k=100, index=library_index)
    q = found.query
    assert q.source == "upload" and not q.recognised
    assert q.image_id is None and q.patient_pseudonym is None and q.same_pixels == ()
    assert found.n_patients_searched == n_patients_with_xrays(library)
    assert len(found.results) == n_patients_with_xrays(library)
    from core.search.embeddings import embed_xray

    ranking = reference_ranking(library, model, embed_xray(model, upload))
    assert_top_k(found.results, ranking, 100)


def test_include_query_patient_with_a_recognised_upload(
    indexed, library_index: LibraryIndex, model: LoadedModel
) -> None:
    library, _, _ = indexed
    who = patient_with_most_xrays(library)
    image_id = xray_ids_of(library, who)[0]
    _, data = library.image_files(library.image_record(image_id))[0]
    found = find_similar(
        library, model, image=read_xray(data, "x"), k=100, include_query_patient=True, index=library_index
    )
    assert found.query.recognised and found.query.patient_pseudonym == who
    assert who in {r.pseudonym for r in found.results}
    assert all(r.matched_image_id != image_id for r in found.results)


def test_bad_search_arguments_are_refused(indexed, library_index: LibraryIndex, model: LoadedModel) -> None:
    library, _, _ = indexed
    some = library.image_refs(("xray",))[0].image_id
    with pytest.raises(InvalidInputError):
        find_similar(library, model, case_image_id=some, k=0, index=library_index)
    with pytest.raises(InvalidInputError, match="no image"):
        find_similar(library, model, case_image_id=10_000_000, index=library_index)
    image = XrayImage(np.zeros((64, 64), np.float32), 0.5, 1.0, "blank", "png")
    with pytest.raises(ValueError):
        find_similar(library, model, image=image, case_image_id=some, index=library_index)
    with pytest.raises(ValueError):
        find_similar(library, model, index=library_index)


# -- filters ------------------------------------------------------------------------------------


def _search_all(library, model, library_index, where: SearchFilter):
    query_id = xray_ids_of(library, patient_with_most_xrays(library))[0]
    return find_similar(library, model, case_image_id=query_id, k=100, where=where, index=library_index)


def test_label_filter_returns_exactly_the_patients_with_that_label(
    indexed, library_index: LibraryIndex, model: LoadedModel
) -> None:
    library, _, extra = indexed
    query_owner = patient_with_most_xrays(library)
    for label in ("COVID-19", "Viral pneumonia", "Normal"):
        found = _search_all(library, model, library_index, SearchFilter(labels=(label,)))
        expected = {p.pseudonym for p in library.patients() if p.label == label} - {query_owner}
        assert expected, label  # the small library has every label
        assert {r.pseudonym for r in found.results} == expected
        assert all(r.patient.summary.label == label for r in found.results)
        assert found.n_patients_searched == len(expected)
    unlabelled = _search_all(library, model, library_index, SearchFilter(labels=(UNLABELLED,)))
    assert [r.pseudonym for r in unlabelled.results] == [extra]


def test_outcome_and_modality_filters(indexed, library_index: LibraryIndex, model: LoadedModel) -> None:
    library, _, extra = indexed
    died = _search_all(library, model, library_index, SearchFilter(outcomes=("died",)))
    assert [r.pseudonym for r in died.results] == [extra]
    discharged = _search_all(library, model, library_index, SearchFilter(outcomes=("discharged",)))
    assert discharged.results and all(r.patient.summary.outcome == "discharged" for r in discharged.results)
    with_ct = _search_all(library, model, library_index, SearchFilter(modality="CT"))
    everyone = _search_all(library, model, library_index, SearchFilter())
    assert extra not in {r.pseudonym for r in with_ct.results}  # X-ray only
    assert {r.pseudonym for r in with_ct.results} == {r.pseudonym for r in everyone.results} - {extra}
    assert all(any(s.modality == "CT" for s in r.patient.studies) for r in with_ct.results)


def test_a_filter_nobody_passes_returns_no_results(indexed, library_index: LibraryIndex, model: LoadedModel) -> None:
    library, _, _ = indexed
    for where in (
        SearchFilter(outcomes=("in hospital",)),
        SearchFilter(labels=("COVID-19",), outcomes=("died",)),
        SearchFilter(labels=()),
    ):
        found = _search_all(library, model, library_index, where)
        assert found.results == () and found.n_patients_searched == 0


# -- case references --------------------------------------------------------------------------


def test_resolve_case_references(indexed) -> None:
    library, _, _ = indexed
    xray_refs = library.image_refs(("xray",))
    image_id = xray_refs[3].image_id
    assert resolve_case(library, f"image:{image_id}") == image_id
    assert resolve_case(library, f" study:{xray_refs[3].study_id} ") == image_id
    # A patient whose first study in time order is a CT: their first *X-ray* is meant.
    for summary in library.patients():
        patient = library.patient(summary.pseudonym)
        xray_studies = [s for s in patient.studies if any(im.kind == "xray" for im in s.images)]
        if not xray_studies:
            continue
        first = next(im.id for im in xray_studies[0].images if im.kind == "xray")
        assert resolve_case(library, summary.pseudonym) == first
        for study in xray_studies:
            if study.day is not None:
                want = next(im.id for im in study.images if im.kind == "xray")
                assert resolve_case(library, f"{summary.pseudonym}@{study.day:g}") == want
                assert resolve_case(library, f"{summary.pseudonym}@{study.day:.1f}") == want


def test_bad_case_references_are_refused_in_plain_words(indexed) -> None:
    library, _, _ = indexed
    ct = library.image_refs(("ct-series",))[0]
    someone = library.patients()[0].pseudonym
    for ref in (
        "study:abc",
        "image:abc",
        "image:10000000",
        "study:10000000",
        f"study:{ct.study_id}",  # a CT-only study
        f"image:{ct.image_id}",  # a CT series
        "P-NOBODY00",
        f"{someone}@999",
        f"{someone}@yesterday",
    ):
        with pytest.raises(InvalidInputError):
            resolve_case(library, ref)


# -- backends ---------------------------------------------------------------------------------


def test_the_library_searches_in_its_own_index_where_it_has_one(indexed, library_index: LibraryIndex) -> None:
    library, _, _ = indexed
    assert library_index.backend == ("exact" if isinstance(library, SqliteLibrary) else "pgvector")


def test_faiss_and_the_default_backend_give_the_patients_of_the_exact_scan(
    indexed, library_index: LibraryIndex, model: LoadedModel
) -> None:
    pytest.importorskip("faiss")
    library, _, _ = indexed
    version = embedding_version(model)
    exact_index = LibraryIndex(library, MODEL_ID, version, backend="exact")
    # The default is the exact scan in a small SQLite library, pgvector's index in PostgreSQL.
    for other in (LibraryIndex(library, MODEL_ID, version, backend="faiss-flat"), library_index):
        assert len(other) == len(exact_index)
        for ref in library.image_refs(("xray",)):
            exact = find_similar(library, model, case_image_id=ref.image_id, k=4, index=exact_index)
            found = find_similar(library, model, case_image_id=ref.image_id, k=4, index=other)
            assert found.backend == other.backend and exact.backend == "exact"
            assert [r.pseudonym for r in found.results] == [r.pseudonym for r in exact.results]
            np.testing.assert_allclose(
                [r.similarity for r in found.results], [r.similarity for r in exact.results], atol=1e-5
            )
            for a, b in zip(found.results, exact.results, strict=True):
                # The best image of a patient may differ only where two of their images tie.
                assert a.matched_image_id == b.matched_image_id or (
                    b.image_similarity[a.matched_image_id] == pytest.approx(b.similarity, abs=1e-5)
                )


# -- evaluation -------------------------------------------------------------------------------


def _reference_evaluation(library: CaseLibrary, model: LoadedModel, k: int):
    """precision@k by label and same-patient hit rate, leave-one-image-out, from numpy."""
    labels = {p.pseudonym: p.label for p in library.patients()}
    who = owners(library)
    ids, _ = library.embeddings(model.id, embedding_version(model))
    n_images: dict[str, int] = defaultdict(int)
    for i in ids:
        n_images[who[i]] += 1
    precision: dict[str, list[float]] = defaultdict(list)
    same_patient: list[bool] = []
    for image_id in ids:
        query = stored_vector(library, model, image_id)
        mine = who[image_id]
        if labels[mine] is not None:
            others = reference_ranking(library, model, query, exclude_images={image_id}, exclude_patients={mine})[:k]
            precision[labels[mine]].append(sum(labels[p] == labels[mine] for p, _, _ in others) / len(others))
        if n_images[mine] >= 2:
            top = reference_ranking(library, model, query, exclude_images={image_id})[:k]
            same_patient.append(mine in {p for p, _, _ in top})
    return (
        {lb: float(np.mean(v)) for lb, v in precision.items()},
        {lb: len(v) for lb, v in precision.items()},
        same_patient,
    )


def test_evaluate_retrieval_matches_a_numpy_reference(indexed, library_index: LibraryIndex, model: LoadedModel) -> None:
    library, _, extra = indexed
    k = 2
    ev = evaluate_retrieval(library, library_index, k=k)
    assert ev.k == k and ev.n_queries == len(library_index) == len(library.image_refs(("xray",)))
    assert ev.model_id == MODEL_ID and ev.model_version == embedding_version(model)
    precision, queries, same_patient = _reference_evaluation(library, model, k)
    assert set(ev.precision_by_label) == {"COVID-19", "Viral pneumonia", "Normal"}
    for label, value in ev.precision_by_label.items():
        assert 0.0 <= value <= 1.0
        assert value == pytest.approx(precision[label], abs=1e-9), label
        assert ev.queries_by_label[label] == queries[label]
    # The unlabelled patient's images are no precision queries, but count for the same-patient rate.
    assert sum(ev.queries_by_label.values()) == ev.n_queries - len(xray_ids_of(library, extra))
    all_hits = [precision[lb] for lb in precision for _ in range(queries[lb])]
    assert ev.precision_overall == pytest.approx(float(np.mean(all_hits)), abs=1e-9)
    # Only patients with at least two indexed images can be found again.
    assert ev.same_patient_queries == len(same_patient)
    single = [
        p for p in {r.patient_pseudonym for r in library.image_refs(("xray",))} if len(xray_ids_of(library, p)) < 2
    ]
    assert single  # the Normal demo patient has one X-ray
    assert ev.same_patient_queries == ev.n_queries - sum(len(xray_ids_of(library, p)) for p in single)
    assert ev.same_patient_hit_rate == pytest.approx(float(np.mean(same_patient)), abs=1e-9)
    assert 0.0 <= ev.same_patient_hit_rate <= 1.0
    record = ev.as_dict()
    assert record["precision_at_k_by_label"] == ev.precision_by_label and record["n_queries"] == ev.n_queries


def test_evaluate_retrieval_chance_is_the_label_share_among_the_other_patients_searched(
    indexed, library_index: LibraryIndex
) -> None:
    """Chance precision@k: drawing k of the other searched patients at random. The search does
    not skip unlabelled patients (they count as misses), so they count in the denominator."""
    library, _, _ = indexed
    ev = evaluate_retrieval(library, library_index, k=2)
    searched = {r.patient_pseudonym for r in library.image_refs(("xray",))}
    labels = {p.pseudonym: p.label for p in library.patients()}
    for label, chance in ev.chance_by_label.items():
        n_label = sum(labels[p] == label for p in searched)
        assert chance == pytest.approx((n_label - 1) / (len(searched) - 1)), label


def test_evaluate_retrieval_max_queries_limits_the_queries(indexed, library_index: LibraryIndex) -> None:
    library, _, _ = indexed
    ev = evaluate_retrieval(library, library_index, k=3, max_queries=5, seed=1)
    assert ev.n_queries == 5
    assert sum(ev.queries_by_label.values()) <= 5 and ev.same_patient_queries <= 5
    assert all(0.0 <= p <= 1.0 for p in ev.precision_by_label.values())
    assert evaluate_retrieval(library, library_index, k=3, max_queries=5, seed=1) == ev  # reproducible
    everything = evaluate_retrieval(library, library_index, k=3, max_queries=10_000)
    assert everything.n_queries == len(library_index)
