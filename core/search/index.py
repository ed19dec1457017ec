"""Top-k cosine search over embeddings, behind one small interface.

Vectors are L2-normalised on the way in, so the inner product is the cosine similarity. Two
backends answer :meth:`VectorIndex.search` with the same result on the same data:

- :class:`ExactIndex` (the default): the whole float32 matrix in memory, one matrix product
  and a partial sort per query batch. Nothing to build; right for libraries up to a few
  hundred thousand images.
- :class:`FaissIndex`: faiss-cpu's exact ``IndexFlatIP`` (``"flat"``), or its 8-bit scalar
  quantiser (``"sq8"``), which scans a quarter of the bytes for large libraries at a small
  loss of recall (measured by ``benchmarks/bench_search.py``).
- :class:`core.search.ann.IvfIndex` (``"faiss-ivf"``): an approximate inverted-file index
  that reads only the few clusters nearest the query; :func:`choose_backend` picks it above
  :data:`AUTO_IVF_FROM` vectors (``"auto"``), and :mod:`core.search.ann` keeps it in a file
  beside the library.

Ties are broken by the smaller id, in every backend, so their results compare equal.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Final

import numpy as np

#: Backends by name, for ``make_index`` and the command line.
BACKENDS: Final = ("exact", "faiss-flat", "faiss-sq8", "faiss-ivf")
#: What ``make_index`` and the command line accept: a backend, or "auto" (by the library's size).
CHOICES: Final = ("auto", *BACKENDS)
#: "auto" picks the approximate index from this many vectors, the exact scan below: the size
#: where the IVF index answers a top-10 query faster than the exact scan at recall@10 >= 0.95
#: on the demo library's embeddings replicated with noise (``benchmarks/bench_search.py --crossover``).
AUTO_IVF_FROM: Final = 50_000


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, C order); an all-zero row stays zero."""
    v = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"expected (n, d) vectors, got shape {vectors.shape}")
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


class VectorIndex(abc.ABC):
    """A set of (id, vector) pairs answering top-k cosine queries."""

    name: str = ""

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError("vectors need at least one dimension")
        self.dim = dim

    @abc.abstractmethod
    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Add vectors (n, dim) under integer ids (unique within the index)."""

    @abc.abstractmethod
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised queries -> (similarities, ids), each (q, k), best first; ids -1 past the end."""

    @abc.abstractmethod
    def remove(self, ids: Sequence[int]) -> None:
        """Take the vectors of ``ids`` out of the index; ids it does not hold are ignored."""

    @abc.abstractmethod
    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar vectors to each query: (similarities (q, k) float32, ids (q, k)
        int64), best first, ties by the smaller id. With fewer than ``k`` vectors, the missing
        places hold similarity -inf and id -1."""
        q = normalise(queries)
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have {q.shape[1]} dimensions, the index {self.dim}")
        if k < 1:
            raise ValueError("k must be at least 1")
        return self._search(q, k)

    def _check(self, ids: Sequence[int], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = normalise(vectors)
        ids_arr = np.asarray(ids, dtype=np.int64).ravel()
        if v.shape[1] != self.dim or v.shape[0] != ids_arr.size:
            raise ValueError(f"expected {ids_arr.size} vectors of {self.dim} dimensions, got {v.shape}")
        if (ids_arr < 0).any():
            raise ValueError("ids must be non-negative")
        return ids_arr, v


def _top_k(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of each row of ``sims`` (q, n) -> (sims, ids) sorted by (-similarity, id)."""
    q, n = sims.shape
    out_s = np.full((q, k), -np.inf, dtype=np.float32)
    out_i = np.full((q, k), -1, dtype=np.int64)
    if n == 0:
        return out_s, out_i
    kk = min(k, n)
    if kk < n:
        # Keep every candidate tied with the k-th value, so ties resolve by id below. torch's
        # top-k finds the k-th value about 5x faster than numpy's argpartition (0.17 vs 0.8 ms
        # over 100k similarities), a tenth of an exact query's time.
        import torch

        top = torch.topk(torch.from_numpy(np.ascontiguousarray(sims)), kk, dim=1, sorted=False).values
        kth = top.min(dim=1, keepdim=True).values.numpy()
    for row in range(q):
        if kk < n:
            cand = np.flatnonzero(sims[row] >= kth[row, 0])
        else:
            cand = np.arange(n)
        order = np.lexsort((ids[cand], -sims[row, cand]))[:kk]
        out_s[row, :kk] = sims[row, cand[order]]
        out_i[row, :kk] = ids[cand[order]]
    return out_s, out_i


class ExactIndex(VectorIndex):
    """Brute force in numpy: exact, no build step."""

    name = "exact"

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids_arr, v = self._check(ids, vectors)
        if np.intersect1d(ids_arr, self._ids).size or np.unique(ids_arr).size != ids_arr.size:
            raise ValueError("an id is already in the index")
        self._ids = np.concatenate([self._ids, ids_arr])
        self._vectors = np.concatenate([self._vectors, v])

    def remove(self, ids: Sequence[int]) -> None:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]

    def __len__(self) -> int:
        return int(self._ids.size)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, normalised vector) held: ids (n,) and vectors (n, dim), in the order added."""
        return self._ids, self._vectors

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return _top_k(queries @ self._vectors.T, self._ids, k)


class FaissIndex(VectorIndex):
    """faiss-cpu: ``kind`` "flat" (exact inner product) or "sq8" (8-bit scalar quantiser,
    trained on the first vectors added)."""

    def __init__(self, dim: int, kind: str = "flat") -> None:
        super().__init__(dim)
        import faiss

        if kind not in ("flat", "sq8"):
            raise ValueError(f"unknown faiss index kind {kind!r}")
        self.name = f"faiss-{kind}"
        self._kind = kind
        if kind == "flat":
            inner = faiss.IndexFlatIP(dim)
        else:
            inner = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        self._index = faiss.IndexIDMap2(inner)
        self._inner = inner
        self._seen: set[int] = set()

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids_arr, v = self._check(ids, vectors)
        new = set(ids_arr.tolist())
        if len(new) != ids_arr.size or new & self._seen:
            raise ValueError("an id is already in the index")
        if not self._inner.is_trained:
            self._inner.train(v)
        self._index.add_with_ids(v, ids_arr)
        self._seen |= new

    def remove(self, ids: Sequence[int]) -> None:
        import faiss  # optional dependency: imported by the faiss backends only

        gone = np.asarray(ids, dtype=np.int64).ravel()
        self._index.remove_ids(faiss.IDSelectorBatch(gone))
        self._seen -= set(gone.tolist())

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        if n == 0:
            return _top_k(np.zeros((queries.shape[0], 0), np.float32), np.zeros(0, np.int64), k)
        # Ask for a few more than k so that ties at the k-th place can be ordered by id.
        extra = min(n, k + 8)
        # One query scans the library on one thread anyway; more threads only add overhead
        # (measured: 1M vectors, 81 ms on one thread vs 148 ms on two).
        sims, ids = faiss_search(self._index, queries, extra)
        return order_by_id(sims, ids, k)


def faiss_search(
    index: object, queries: np.ndarray, k: int, params: object | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(queries, k, params=params)`` of a faiss index, on one OpenMP thread for a
    single query (faiss splits its work by query: a second thread only adds its start-up cost)."""
    import faiss  # optional dependency: imported by the faiss backends only

    if queries.shape[0] != 1:
        return index.search(queries, k, params=params)  # type: ignore[attr-defined]
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return index.search(queries, k, params=params)  # type: ignore[attr-defined]
    finally:
        faiss.omp_set_num_threads(threads)


def order_by_id(sims: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """faiss's answer (q, k' >= k; id -1 for none) as the best ``k`` by (-similarity, id),
    padded with -inf and -1."""
    valid = ids >= 0
    sims = np.where(valid, sims, -np.inf).astype(np.float32)
    out_s = np.full((ids.shape[0], k), -np.inf, dtype=np.float32)
    out_i = np.full((ids.shape[0], k), -1, dtype=np.int64)
    for row in range(ids.shape[0]):
        keep = np.flatnonzero(valid[row])
        order = np.lexsort((ids[row, keep], -sims[row, keep]))[:k]
        out_s[row, : order.size] = sims[row, keep[order]]
        out_i[row, : order.size] = ids[row, keep[order]]
    return out_s, out_i


def choose_backend(n: int) -> str:
    """The backend "auto" means for a library of ``n`` vectors: the exact scan below
    :data:`AUTO_IVF_FROM`, the approximate IVF index from there."""
    return "faiss-ivf" if n >= AUTO_IVF_FROM else "exact"


def make_index(backend: str, dim: int, size: int = 0) -> VectorIndex:
    """An empty index of ``backend`` (one of :data:`CHOICES`); "auto" chooses by ``size``, the
    number of vectors it will hold."""
    if backend == "auto":
        backend = choose_backend(size)
    if backend == "exact":
        return ExactIndex(dim)
    if backend in ("faiss-flat", "faiss-sq8"):
        return FaissIndex(dim, backend.removeprefix("faiss-"))
    if backend == "faiss-ivf":
        # core.search.ann builds on this module's VectorIndex: importing it at the top would be circular.
        from core.search.ann import IvfIndex

        return IvfIndex(dim)
    raise ValueError(f"unknown search backend {backend!r}; expected one of {', '.join(CHOICES)}")
