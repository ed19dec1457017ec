"""core.search.ann: the approximate IVF index against the exact search, and its file beside the library."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.search import ann, index
from core.search.ann import index_path, library_vector_index, open_ivf
from core.search.index import ExactIndex, IvfIndex, choose_backend, make_index, n_lists

DIM = 32


class Clusters:
    """Vectors gathered around a few centres, as embeddings of images gather by finding."""

    def __init__(self, centres: int = 40, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.centres = self.rng.standard_normal((centres, DIM))

    def draw(self, n: int) -> np.ndarray:
        which = self.rng.integers(0, len(self.centres), n)
        return (self.centres[which] + 0.35 * self.rng.standard_normal((n, DIM))).astype(np.float32)


def exact_top(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    exact = ExactIndex(DIM)
    exact.add(ids, vectors)
    return exact.search(queries, k)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float((found[:, :, None] == truth[:, None, :]).any(axis=2).mean())


@pytest.fixture(scope="module")
def data() -> tuple[Clusters, np.ndarray, np.ndarray]:
    clusters = Clusters()
    ids = np.random.default_rng(1).permutation(50_000)[:4000].astype(np.int64)  # unrelated to positions
    return clusters, ids, clusters.draw(4000)


def test_recall_at_10_against_the_exact_search_reading_a_few_clusters(data) -> None:
    clusters, ids, vectors = data
    ivf = IvfIndex(DIM)
    ivf.add(ids, vectors)
    assert ivf.trained and ivf.nlist == n_lists(4000)
    assert ivf.nprobe <= ivf.nlist // 4  # it reads a small share of the library, not all of it
    queries = clusters.draw(200)  # new images like the library's
    sims, found = ivf.search(queries, 10)
    assert recall(found, exact_top(ids, vectors, queries, 10)) >= 0.95
    assert np.all(np.diff(sims, axis=1) <= 1e-6)
    # the similarities it returns are exact cosines, not estimates
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    by_id = dict(zip(ids.tolist(), unit, strict=True))
    q = queries[0] / np.linalg.norm(queries[0])
    np.testing.assert_allclose(sims[0], [by_id[i] @ q for i in found[0]], atol=1e-5)


def test_asking_for_every_vector_returns_every_vector(data) -> None:
    _, ids, vectors = data
    ivf = IvfIndex(DIM)
    ivf.add(ids, vectors)
    found = ivf.search(vectors[:2], len(ids))[1]  # a filtered search widens k up to the whole library
    assert all(sorted(row.tolist()) == sorted(ids.tolist()) for row in found)


def test_untrained_below_min_train_it_is_the_exact_search(data) -> None:
    clusters, ids, vectors = data
    ivf = IvfIndex(DIM, min_train=1000)
    ivf.add(ids[:999], vectors[:999])
    assert not ivf.trained
    queries = clusters.draw(20)
    np.testing.assert_array_equal(ivf.search(queries, 10)[1], exact_top(ids[:999], vectors[:999], queries, 10))
    ivf.add(ids[999:1000], vectors[999:1000])
    assert ivf.trained and len(ivf) == 1000


def test_added_vectors_join_the_clusters_until_the_library_has_doubled(data) -> None:
    clusters, ids, vectors = data
    ivf = IvfIndex(DIM, min_train=1000)
    ivf.add(ids[:1500], vectors[:1500])
    nlist = ivf.nlist
    ivf.add(ids[1500:3000], vectors[1500:3000])  # exactly twice the trained size: no new training
    assert (ivf.trainings, ivf.trained_at, ivf.nlist) == (1, 1500, nlist)
    new = vectors[2000:2010] * 3.0
    assert ivf.search(new, 1)[1][:, 0].tolist() == ids[2000:2010].tolist()  # each finds itself
    with pytest.raises(ValueError, match="already"):
        ivf.add(ids[:1], vectors[:1])
    ivf.add(ids[3000:], vectors[3000:])  # past twice: trained again on all 4000
    assert (ivf.trainings, ivf.trained_at) == (2, 4000) and ivf.nlist > nlist
    queries = clusters.draw(100)
    assert recall(ivf.search(queries, 10)[1], exact_top(ids, vectors, queries, 10)) >= 0.95


@pytest.mark.parametrize("backend", index.BACKENDS)
def test_a_removed_vector_is_never_returned(backend: str, data) -> None:
    _, ids, vectors = data
    idx = make_index(backend, DIM)
    idx.add(ids[:3000], vectors[:3000])
    gone = ids[:50]
    idx.remove([*gone.tolist(), 10**9])  # an id it does not hold is ignored
    assert len(idx) == 2950
    found = idx.search(vectors[:50], 10)[1]
    assert not np.isin(found, gone).any()
    idx.add(ids[:1], vectors[:1])  # a removed id may come back
    assert idx.search(vectors[:1], 1)[1][0, 0] == ids[0]


def test_auto_is_exact_below_the_measured_size_and_ivf_from_it(tmp_path: Path, data) -> None:
    _, ids, vectors = data
    assert choose_backend(index.AUTO_IVF_FROM - 1) == "exact"
    assert choose_backend(index.AUTO_IVF_FROM) == "faiss-ivf"
    assert isinstance(make_index("auto", DIM, size=index.AUTO_IVF_FROM), IvfIndex)
    below = index.AUTO_IVF_FROM - 1
    small = library_vector_index(tmp_path, "m", "v1", ids[:below], vectors[:below])
    assert isinstance(small, ExactIndex) and not list(tmp_path.iterdir())  # nothing stored for a scan
    large = library_vector_index(tmp_path, "m", "v1", ids, vectors)
    assert isinstance(large, IvfIndex) and large.trained and index_path(tmp_path, "m", "v1").is_file()
    assert isinstance(library_vector_index(None, "m", "v1", ids, vectors), IvfIndex)  # no folder: in memory
    assert isinstance(library_vector_index(tmp_path, "m", "v1", ids, vectors, backend="exact"), ExactIndex)


def test_the_stored_index_is_read_back_with_the_same_answers(tmp_path: Path, monkeypatch, data) -> None:
    clusters, ids, vectors = data
    first = open_ivf(tmp_path, "cxr-resnet18", "1.0+abc", ids, vectors)
    path = index_path(tmp_path, "cxr-resnet18", "1.0+abc")
    written = path.stat().st_mtime_ns

    def no_training(*args: object) -> None:
        raise AssertionError("trained again instead of reading the file")

    monkeypatch.setattr(IvfIndex, "_train", no_training)
    again = open_ivf(tmp_path, "cxr-resnet18", "1.0+abc", ids, vectors)
    assert path.stat().st_mtime_ns == written  # nothing changed, nothing written
    assert (again.nprobe, again.nlist, len(again)) == (first.nprobe, first.nlist, len(first))
    queries = clusters.draw(50)
    for a, b in zip(first.search(queries, 10), again.search(queries, 10), strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_stored_index_follows_deletions_and_additions(tmp_path: Path, data) -> None:
    _, ids, vectors = data
    open_ivf(tmp_path, "m", "v1", ids[:3000], vectors[:3000])
    keep = np.r_[50:3500]  # 50 cases deleted, 500 added since
    updated = open_ivf(tmp_path, "m", "v1", ids[keep], vectors[keep])
    assert sorted(updated.ids.tolist()) == sorted(ids[keep].tolist())
    assert updated.trainings == 1  # 3450 < twice 3000: the clusters stayed
    assert not np.isin(updated.search(vectors[:50], 10)[1], ids[:50]).any()
    reread = open_ivf(tmp_path, "m", "v1", ids[keep], vectors[keep])  # the update was saved
    assert sorted(reread.ids.tolist()) == sorted(ids[keep].tolist())
    assert reread.search(vectors[3400:3410], 1)[1][:, 0].tolist() == ids[3400:3410].tolist()


def test_a_new_embedding_version_builds_a_new_file_and_drops_the_old(tmp_path: Path, data) -> None:
    _, ids, vectors = data
    open_ivf(tmp_path, "m", "v1", ids, vectors)
    other_model = open_ivf(tmp_path, "m-2", "v1", ids[:2500], vectors[:2500])
    retrained = vectors[:, ::-1].copy()  # new weights: other vectors for the same images
    index_v2 = open_ivf(tmp_path, "m", "v2", ids, retrained)
    assert not index_path(tmp_path, "m", "v1").exists()
    assert index_path(tmp_path, "m", "v2").is_file() and index_path(tmp_path, "m-2", "v1").is_file()
    assert index_v2.search(retrained[:10], 1)[1][:, 0].tolist() == ids[:10].tolist()
    assert len(other_model) == 2500


def test_a_damaged_or_foreign_file_is_built_again(tmp_path: Path, data, caplog) -> None:
    clusters, ids, vectors = data
    path = index_path(tmp_path, "m", "v1")
    open_ivf(tmp_path, "m", "v1", ids, vectors)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # cut short
    rebuilt = open_ivf(tmp_path, "m", "v1", ids, vectors)
    assert "Building the search index" in caplog.text
    assert len(rebuilt) == len(ids) and ann.load_ivf(path)[0].nprobe == rebuilt.nprobe  # saved whole again
    caplog.clear()
    other = clusters.draw(len(ids))  # another library's vectors under the same ids and version
    fresh = open_ivf(tmp_path, "m", "v1", ids, other)
    assert "not the library's" in caplog.text
    assert fresh.search(other[:10], 1)[1][:, 0].tolist() == ids[:10].tolist()
    path.write_bytes(b"not an index")
    assert len(open_ivf(tmp_path, "m", "v1", ids, vectors)) == len(ids)


@pytest.mark.parametrize("backend", index.BACKENDS)
def test_a_backend_that_keeps_its_vectors_gives_each_back_by_id(backend: str, data) -> None:
    _, ids, vectors = data
    idx = make_index(backend, DIM)
    idx.add(ids[:3000], vectors[:3000])
    some = ids[[5, 2999, 0, 1234]]
    if not idx.holds_exact_vectors:  # faiss-sq8 keeps 8-bit codes
        with pytest.raises(NotImplementedError):
            idx.vectors_of(some)
        return
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(idx.vectors_of(some), unit[[5, 2999, 0, 1234]], atol=1e-6)
    assert idx.vectors_of([]).shape == (0, DIM)
    idx.remove(ids[:10])
    with pytest.raises(KeyError):
        idx.vectors_of(ids[3:4])  # removed
    with pytest.raises(KeyError):
        idx.vectors_of(ids[3500:3501])  # never added
    np.testing.assert_allclose(idx.vectors_of(ids[10:12]), unit[10:12], atol=1e-6)


def test_a_stored_ivf_index_gives_back_its_vectors_even_from_a_file_written_without_the_id_table(
    tmp_path: Path, data
) -> None:
    _, ids, vectors = data
    built = IvfIndex(DIM)
    built.add(ids, vectors)
    assert built.trained
    built._ivf.set_direct_map_type(index._faiss().DirectMap.NoMap)  # as files were written before it kept one
    ann.save_ivf(built, tmp_path / "old.faiss", {"model_id": "m", "embedding_version": "v1"})
    read, _ = ann.load_ivf(tmp_path / "old.faiss")
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    np.testing.assert_allclose(read.vectors_of(ids[[7, 3999]]), unit[[7, 3999]], atol=1e-6)
    read.remove(ids[:5])  # removal by id works on the table it built
    assert len(read) == len(ids) - 5 and not np.isin(read.search(vectors[:5], 10)[1], ids[:5]).any()
