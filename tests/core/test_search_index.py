"""core.search.index: top-k cosine search, checked against brute force in numpy."""

from __future__ import annotations

import numpy as np
import pytest

from core.search.index import BACKENDS, ExactIndex, make_index, normalise


def library(n: int = 500, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)  # ids unrelated to positions
    return ids, rng.normal(size=(n, dim)).astype(np.float32) * rng.uniform(0.5, 3.0, size=(n, 1))


def brute_force(ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ v.T.astype(np.float64)
    return ids[np.argsort(-sims, axis=1, kind="stable")[:, :k]]


@pytest.mark.parametrize("backend", ["exact", "faiss-flat"])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_top_k_equals_brute_force(backend: str, k: int) -> None:
    ids, vectors = library()
    index = make_index(backend, vectors.shape[1])
    index.add(ids[:300], vectors[:300])
    index.add(ids[300:], vectors[300:])  # in two parts, as an incremental re-index adds them
    queries = np.random.default_rng(1).normal(size=(20, vectors.shape[1])).astype(np.float32)
    sims, found = index.search(queries, k)
    assert found.shape == sims.shape == (20, k)
    np.testing.assert_array_equal(found, brute_force(ids, vectors, queries, k))
    assert np.all(np.diff(sims, axis=1) <= 1e-6)  # best first
    assert np.all(np.abs(sims) <= 1.0 + 1e-5)  # cosine similarities


def test_backends_agree_and_a_stored_vector_finds_itself_first() -> None:
    ids, vectors = library(n=300, dim=64, seed=3)
    results = {}
    for backend in BACKENDS:
        index = make_index(backend, 64)
        index.add(ids, vectors)
        sims, found = index.search(vectors[:10] * 7.0, 5)  # scale does not matter: cosine
        assert list(found[:, 0]) == list(ids[:10])
        np.testing.assert_allclose(sims[:, 0], 1.0, atol=0.02)
        results[backend] = found
    np.testing.assert_array_equal(results["exact"], results["faiss-flat"])


def test_ties_go_to_the_smaller_id_in_every_backend() -> None:
    base = np.eye(8, dtype=np.float32)
    vectors = np.stack([base[0], base[1], base[0], base[0] * 2, base[2]])
    ids = [40, 10, 30, 20, 50]
    for backend in ("exact", "faiss-flat"):
        index = make_index(backend, 8)
        index.add(ids, vectors)
        _, found = index.search(base[0], 3)
        assert found.tolist() == [[20, 30, 40]], backend


def test_fewer_vectors_than_k_are_padded_and_an_empty_index_answers() -> None:
    for backend in BACKENDS:
        index = make_index(backend, 4)
        sims, found = index.search(np.ones(4), 3)
        assert found.tolist() == [[-1, -1, -1]] and np.all(np.isneginf(sims))
        index.add([7, 8], np.eye(4, dtype=np.float32)[:2])
        sims, found = index.search(np.array([1.0, 0.1, 0, 0]), 3)
        assert found.tolist() == [[7, 8, -1]] and np.isneginf(sims[0, 2])
        assert len(index) == 2


def test_bad_input_is_refused_in_plain_words() -> None:
    index = ExactIndex(4)
    index.add([1], np.ones((1, 4)))
    with pytest.raises(ValueError, match="already"):
        index.add([1], np.ones((1, 4)))
    with pytest.raises(ValueError, match="dimensions"):
        index.add([2], np.ones((1, 5)))
    with pytest.raises(ValueError, match="dimensions"):
        index.search(np.ones(3), 1)
    with pytest.raises(ValueError, match="k must"):
        index.search(np.ones(4), 0)
    with pytest.raises(ValueError, match="unknown search backend"):
        make_index("annoy", 4)


def test_normalise_keeps_zero_rows_zero() -> None:
    out = normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
