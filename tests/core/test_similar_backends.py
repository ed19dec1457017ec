"""core.search.similar: where a library's search runs. "auto" scans exactly in a small library,
uses the approximate IVF index (kept beside the library) in a large one, and searches in the
library's own vector index when it has one (pgvector in PostgreSQL, or a stand-in on SQLite).
The exact scan and the library's own index find the patients an exact numpy search finds, the
approximate IVF index nearly all of them. Last, the revision the app caches its index under.

The libraries here hold synthetic embeddings gathered by patient around a few centres, as the
demo library's embeddings gather by finding: a query is a new draw near a centre, or a library
image's own vector.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.errors import InvalidInputError
from core.library.records import NewPatient, NewStudy
from core.library.store import CaseLibrary, NewImage, SqliteLibrary, open_library
from core.search import index as search_index
from core.search.ann import INDEX_CACHE_ENV, StoreIndex, index_folder, index_path
from core.search.index import AUTO_IVF_FROM, MIN_TRAIN, IvfIndex
from core.search.similar import LibraryIndex
from ui.search import library_revision

MODEL, VERSION = "synthetic", "v1"
DIM = 32
#: Enough images for "auto" to choose the IVF index and for the IVF index to train.
LARGE = max(AUTO_IVF_FROM, MIN_TRAIN) + 400
IMAGES_PER_PATIENT = 8
CENTRES = 12
SMALL_MODEL = "synthetic-small"  # embeddings of a few hundred of the same images only
SMALL = 300


class Embeddings:
    """Vectors near a few centres, one centre per patient (their images sit together)."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.standard_normal((CENTRES, DIM))

    def near(self, centre: int | np.ndarray, n: int) -> np.ndarray:
        return (self.centres[centre] + 0.45 * self.rng.standard_normal((n, DIM))).astype(np.float32)


def add_patients(library: CaseLibrary, n_patients: int, tag: str) -> list[list[int]]:
    """Patients of IMAGES_PER_PATIENT X-rays each (one study): the image ids of each."""
    image = NewImage("xray", (("image.png", b"not read by these tests"),), width=8, height=8)
    studies = []
    for n in range(n_patients):
        patient = NewPatient(pseudonym=library.pseudonym("test", f"{tag}-{n}"), source="test")
        study = NewStudy("X-ray", offset_admission_days=float(n))
        key = library.content_key([f"{tag}-{n}".encode()])
        studies.append(library.add_case(patient, study, [image] * IMAGES_PER_PATIENT, key))
    of_study: dict[int, list[int]] = {study_id: [] for study_id in studies}
    for ref in library.image_refs(("xray",)):
        if ref.study_id in of_study:
            of_study[ref.study_id].append(ref.image_id)
    return list(of_study.values())


def fill(library: CaseLibrary, embeddings: Embeddings) -> dict[int, np.ndarray]:
    """LARGE images with MODEL embeddings, the first SMALL of them with SMALL_MODEL ones too."""
    patients = add_patients(library, LARGE // IMAGES_PER_PATIENT, "large")
    vectors: dict[int, np.ndarray] = {}
    for n, ids in enumerate(patients):
        vectors.update(zip(ids, embeddings.near(n % CENTRES, len(ids)), strict=True))
    library.put_embeddings(MODEL, VERSION, vectors)
    library.put_embeddings(SMALL_MODEL, VERSION, dict(list(vectors.items())[:SMALL]))
    return vectors


class SearchingLibrary(SqliteLibrary):
    """A SQLite library that claims a vector index of its own, searched exactly in numpy (what
    PostgreSQL's pgvector answers, without PostgreSQL): every question it was asked is kept."""

    asked: list[int]

    def has_vector_index(self) -> bool:
        return True

    def nearest(
        self, model_id: str, model_version: str, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        self.asked.append(k)
        ids, matrix = self.embeddings(model_id, model_version)
        unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
        sims = np.atleast_2d(queries) @ unit.T
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        out_s = np.full((sims.shape[0], k), -np.inf, dtype=np.float32)
        out_i = np.full((sims.shape[0], k), -1, dtype=np.int64)
        out_s[:, : order.shape[1]] = np.take_along_axis(sims, order, axis=1)
        out_i[:, : order.shape[1]] = np.asarray(ids, dtype=np.int64)[order]
        return out_s, out_i


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[int, np.ndarray], Embeddings]:
    """A library folder of LARGE embedded images, built once; tests copy it before changing it."""
    root = tmp_path_factory.mktemp("backends") / "library"
    embeddings = Embeddings()
    vectors = fill(SqliteLibrary(root), embeddings)
    return root, vectors, embeddings


@pytest.fixture
def library(built, tmp_path: Path) -> SqliteLibrary:
    root, _, _ = built
    shutil.copytree(root, tmp_path / "library")
    return SqliteLibrary(tmp_path / "library")


@pytest.fixture
def searching(built, tmp_path: Path) -> SearchingLibrary:
    root, _, _ = built
    shutil.copytree(root, tmp_path / "library")
    lib = SearchingLibrary(tmp_path / "library")
    lib.asked = []
    return lib


def queries(built, n: int = 60) -> list[np.ndarray]:
    """New images near each centre, and library images' own vectors."""
    _, vectors, embeddings = built
    ids = sorted(vectors)
    picked = np.random.default_rng(5).choice(len(ids), n // 2, replace=False)
    return [*embeddings.near(np.arange(n // 2) % CENTRES, n // 2), *(vectors[ids[i]] for i in picked)]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def top_patients(index: LibraryIndex, query: np.ndarray, n: int = 5) -> list[tuple[str, float]]:
    return [(who, round(sim, 5)) for who, _, sim in index.nearest_patients(query, n)]


# -- auto ---------------------------------------------------------------------------------------


def test_auto_on_a_small_library_is_the_exact_scan_and_stores_nothing(library: SqliteLibrary, built) -> None:
    index = LibraryIndex(library, SMALL_MODEL, VERSION)
    assert index.backend == "exact" and len(index) == SMALL < AUTO_IVF_FROM
    assert not index_path(library.root, SMALL_MODEL, VERSION).exists()
    # the stored vectors, scanned exactly
    _, vectors, _ = built
    ids = np.array(index.ids)
    unit = np.stack([vectors[i] / np.linalg.norm(vectors[i]) for i in index.ids])
    for query in queries(built, 10):
        sims = unit @ (query / np.linalg.norm(query))
        best = ids[np.argsort(-sims, kind="stable")[:10]].tolist()
        assert index.index is not None and index.index.search(query, 10)[1][0].tolist() == best


def test_auto_on_a_large_library_is_the_ivf_index_finding_nearly_the_exact_patients(
    library: SqliteLibrary, built
) -> None:
    index = LibraryIndex(library, MODEL, VERSION)
    exact = LibraryIndex(library, MODEL, VERSION, "exact")
    assert (index.backend, exact.backend) == ("faiss-ivf", "exact")
    assert isinstance(index.index, IvfIndex) and index.index.trained
    assert index.index.nprobe < index.index.nlist  # it reads some clusters, not all
    assert index_path(library.root, MODEL, VERSION).is_file()  # kept beside the library
    _, vectors, _ = built
    overlap, same_first = [], []
    for query in queries(built):
        found, truth = index.nearest_patients(query, 5), exact.nearest_patients(query, 5)
        overlap.append(len({who for who, _, _ in found} & {who for who, _, _ in truth}) / 5)
        same_first.append(found[0][0] == truth[0][0])
        for _, image_id, sim in found:  # what it returns is exact: a miss is a patient left out
            assert sim == pytest.approx(cosine(vectors[image_id], query), abs=1e-5)
    # approximate: the patients it finds are nearly always the exact search's (recall@10 >= 0.95)
    assert np.mean(overlap) >= 0.95 and np.mean(same_first) >= 0.95
    # a second process reads the file instead of training again, and answers the same
    again = LibraryIndex(SqliteLibrary(library.root), MODEL, VERSION)
    assert isinstance(again.index, IvfIndex) and again.index.trainings == 1
    for query in queries(built, 10):
        assert top_patients(again, query) == top_patients(index, query)


def test_auto_follows_the_size_it_was_measured_at(library: SqliteLibrary, monkeypatch) -> None:
    monkeypatch.setattr(search_index, "AUTO_IVF_FROM", SMALL)
    assert LibraryIndex(library, SMALL_MODEL, VERSION).backend == "faiss-ivf"
    monkeypatch.setattr(search_index, "AUTO_IVF_FROM", 10 * LARGE)
    assert LibraryIndex(library, MODEL, VERSION).backend == "exact"


@pytest.mark.parametrize("backend", search_index.BACKENDS)
def test_a_named_backend_is_used_and_gives_back_each_stored_vector(backend: str, library: SqliteLibrary, built) -> None:
    _, vectors, _ = built
    index = LibraryIndex(library, MODEL, VERSION, backend)
    assert index.backend == backend and index.dim == DIM
    some = index.ids[:: len(index.ids) // 25]
    for image_id in some:
        stored = vectors[image_id] / np.linalg.norm(vectors[image_id])
        np.testing.assert_allclose(index.vector(image_id), stored, atol=1e-6)  # the query of a library case
    sims = index.similarity(vectors[some[0]], some)  # a result patient's every image
    np.testing.assert_allclose([sims[i] for i in some], [cosine(vectors[i], vectors[some[0]]) for i in some], atol=1e-5)
    assert index.vector(10**9) is None and index.similarity(vectors[some[0]], [10**9]) == {}


# -- the library's own vector index -------------------------------------------------------------


def test_a_library_with_its_own_vector_index_is_searched_there(searching: SearchingLibrary, built) -> None:
    index = LibraryIndex(searching, MODEL, VERSION)
    exact = LibraryIndex(searching, MODEL, VERSION, "exact")
    assert index.backend == "pgvector" and isinstance(index.index, StoreIndex)
    assert not index_path(searching.root, MODEL, VERSION).exists()  # no file of the app's own
    for query in queries(built, 20):
        assert top_patients(index, query) == top_patients(exact, query)
    assert searching.asked  # it was the library that answered
    image_id = index.ids[7]
    np.testing.assert_allclose(index.vector(image_id), exact.vector(image_id), atol=1e-6)
    # asked for by name
    assert LibraryIndex(searching, MODEL, VERSION, "pgvector").backend == "pgvector"


def test_images_another_process_added_since_are_passed_over(searching: SearchingLibrary, built) -> None:
    _, vectors, _ = built
    index = LibraryIndex(searching, MODEL, VERSION)
    query = vectors[index.ids[0]]
    before = top_patients(index, query)
    # Another process adds 10 patients right on the query: the library now returns their
    # images first, which this index has no owner for.
    crowd = add_patients(searching, 10, "crowd")
    searching.put_embeddings(MODEL, VERSION, {i: query * 3 for ids in crowd for i in ids})
    searching.asked.clear()
    assert top_patients(index, query) == before
    assert len(searching.asked) >= 2 and searching.asked[-1] > searching.asked[0]  # it asked for more
    crowd_names = {searching.pseudonym("test", f"crowd-{n}") for n in range(10)}
    fresh = top_patients(LibraryIndex(searching, MODEL, VERSION), query)  # a search opened now finds them
    assert sum(who in crowd_names for who, _ in fresh) >= 4


@pytest.mark.parametrize("library_backend", ["postgresql"])
def test_pgvector_in_postgresql_finds_what_the_exact_search_finds(make_library, built) -> None:
    library = make_library()
    patients = add_patients(library, SMALL // IMAGES_PER_PATIENT, "pg")
    _, _, embeddings = built
    vectors: dict[int, np.ndarray] = {}
    for n, ids in enumerate(patients):
        vectors.update(zip(ids, embeddings.near(n % CENTRES, len(ids)), strict=True))
    library.put_embeddings(MODEL, VERSION, vectors)
    assert library.has_vector_index()  # the test server's PostgreSQL has pgvector
    index = LibraryIndex(library, MODEL, VERSION)
    exact = LibraryIndex(library, MODEL, VERSION, "exact")
    assert index.backend == "pgvector" and len(index) == len(exact) == len(vectors)
    ids = sorted(vectors)
    picked = [vectors[ids[i]] for i in np.random.default_rng(5).choice(len(ids), 10, replace=False)]
    # HNSW is approximate, but on a few hundred images a search with ef_search >= k (what the
    # library sets) reaches every one of them: the answers are the exact ones.
    for query in [*embeddings.near(np.arange(10) % CENTRES, 10), *picked]:
        assert index.index is not None and exact.index is not None
        found, truth = index.index.search(query, 10), exact.index.search(query, 10)
        np.testing.assert_array_equal(found[1], truth[1])
        np.testing.assert_allclose(found[0], truth[0], atol=1e-5)
        assert top_patients(index, query) == top_patients(exact, query)
        # a filter that passes few patients widens the search up to the whole library
        few = frozenset(list(index.images_of)[-3:])
        wide, wide_truth = (i.nearest_patients(query, 3, allowed_patients=few) for i in (index, exact))
        assert [(who, image_id) for who, image_id, _ in wide] == [(who, image_id) for who, image_id, _ in wide_truth]
        np.testing.assert_allclose([sim for *_, sim in wide], [sim for *_, sim in wide_truth], atol=1e-5)


def test_pgvector_without_a_vector_index_and_an_unknown_backend_are_plain_errors(library: SqliteLibrary) -> None:
    with pytest.raises(InvalidInputError, match="no vector index of its own"):
        LibraryIndex(library, MODEL, VERSION, "pgvector")
    with pytest.raises(InvalidInputError, match="Unknown search backend 'annoy'"):
        LibraryIndex(library, MODEL, VERSION, "annoy")


# -- the app's cached index ---------------------------------------------------------------------


def test_the_cached_index_goes_stale_when_a_deleted_patient_is_replaced_by_as_many_images(
    library: SqliteLibrary,
) -> None:
    last = add_patients(library, 1, "last")[0]
    library.put_embeddings(MODEL, VERSION, {i: np.ones(DIM, np.float32) for i in last})
    before = library_revision(library, MODEL, VERSION)
    library.delete_patient(library.pseudonym("test", "last-0"))
    replacement = add_patients(library, 1, "replacement")[0]
    library.put_embeddings(MODEL, VERSION, {i: -np.ones(DIM, np.float32) for i in replacement})
    # As many embeddings as before, under the very same image ids (SQLite gives the next image
    # the id of a deleted last one): neither their count nor their largest id tells.
    assert replacement == last and library.count_embeddings(MODEL, VERSION) == before[0]
    assert library_revision(library, MODEL, VERSION) != before


def test_postgresql_without_pgvector_keeps_its_ivf_index_in_this_machines_cache(
    postgres_server, built, tmp_path: Path, monkeypatch
) -> None:
    # A department's database where no one installed pgvector: no folder beside the library, so
    # the IVF index's file goes to the machine's index cache, read by every process instead of
    # each training it again.
    monkeypatch.setenv(INDEX_CACHE_ENV, str(tmp_path / "cache"))
    url = postgres_server.create_database(vector=False)
    try:
        library = open_library(url)
        assert not library.has_vector_index()
        _, vectors, _ = built
        add_patients(library, LARGE // IMAGES_PER_PATIENT, "large")  # the same ids as the folder's
        library.put_embeddings(MODEL, VERSION, vectors)
        index = LibraryIndex(library, MODEL, VERSION)
        assert index.backend == "faiss-ivf" and isinstance(index.index, IvfIndex)
        folder = index_folder(library)
        assert folder.parent == tmp_path / "cache" and index_path(folder, MODEL, VERSION).is_file()
        again = LibraryIndex(open_library(url), MODEL, VERSION)  # another process, the same file
        assert isinstance(again.index, IvfIndex) and again.index.trainings == 1
        for query in queries(built, 10):
            assert top_patients(again, query) == top_patients(index, query)
    finally:
        postgres_server.drop_later(url)
