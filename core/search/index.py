"""Top-k cosine search over embeddings, behind one small interface.

Vectors are L2-normalised on the way in, so the inner product is the cosine similarity. Two
backends answer :meth:`VectorIndex.search` with the same result on the same data:

- :class:`ExactIndex` (the default): the whole float32 matrix in memory, one matrix product
  and a partial sort per query batch. Nothing to build; right for libraries up to a few
  hundred thousand images.
- :class:`FaissIndex`: faiss-cpu's exact ``IndexFlatIP`` (``"flat"``), or its 8-bit scalar
  quantiser (``"sq8"``), which scans a quarter of the bytes for large libraries at a small
  loss of recall (measured by ``benchmarks/bench_search.py``).
- :class:`IvfIndex` (``"faiss-ivf"``): faiss's approximate inverted-file index (IVF-Flat)
  for the inner product of unit vectors. k-means (spherical) splits the vectors into about
  ``4 * sqrt(n)`` clusters and a query reads only the ``nprobe`` clusters whose centres lie
  nearest it. The vectors are kept whole (float32), so every similarity it returns is exact;
  what it can miss is a neighbour in a cluster it did not read. ``nprobe`` is tuned on the
  vectors themselves when the index is trained: the smallest that finds :data:`RECALL_TARGET`
  of the exact top-10 of its own vectors taken as queries. On vectors without structure
  (random directions in 512 dimensions) that is nearly every cluster, and the index is no
  faster than a scan; embeddings of images gather by finding, and it reads a small share.
  It trains once it holds :data:`MIN_TRAIN` vectors (an exact scan below); later vectors join
  the existing clusters until it has grown :data:`GROWTH` times past the size it was trained
  at, when it trains again on all of them. :func:`choose_backend` picks it from
  :data:`AUTO_IVF_FROM` vectors (``"auto"``), and :mod:`core.search.ann` keeps it in a file
  beside the library.

Ties are broken by the smaller id, in every backend, so their results compare equal.

A backend that keeps the vectors whole (``holds_exact_vectors``: exact, faiss-flat, faiss-ivf)
gives them back by id (:meth:`VectorIndex.vectors_of`), so whoever searches it needs no copy
of its own; faiss-sq8 keeps 8-bit codes, an approximation.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from types import ModuleType
from typing import Any, BinaryIO, Final

import numpy as np

#: Backends by name, for ``make_index`` and the command line.
BACKENDS: Final = ("exact", "faiss-flat", "faiss-sq8", "faiss-ivf")
#: What ``make_index`` and the command line accept: a backend, or "auto" (by the library's size).
CHOICES: Final = ("auto", *BACKENDS)
#: "auto" picks the approximate index from this many vectors, the exact scan below: the size
#: from which the IVF index answers a top-10 query faster than the exact scan at recall@10 >=
#: 0.95 on the demo library's embeddings replicated with noise (``benchmarks/bench_search.py
#: --crossover``, 2 cores: 2k vectors exact 0.27 ms, IVF 0.13 ms at recall 0.99; 1k both 0.14 ms,
#: the IVF index still untrained). Below it every query is a scan well under a millisecond.
AUTO_IVF_FROM: Final = 2_000

#: Share of the exact top-10 the tuned ``nprobe`` finds for library vectors taken as queries
#: (a margin over the 0.95 promised for new queries).
RECALL_TARGET: Final = 0.97
#: Vectors held before the first training (an exact scan until then).
MIN_TRAIN: Final = 2_000
#: Trained again once the index holds this many times the vectors it was trained on.
GROWTH: Final = 2.0
#: k-means: at most this many training vectors per cluster, at least MIN_PER_LIST, iterations.
TRAIN_PER_LIST: Final = 40
MIN_PER_LIST: Final = 39
KMEANS_ITERATIONS: Final = 10
#: Library vectors taken as queries to tune ``nprobe``, and the k it is tuned for.
TUNE_QUERIES: Final = 200
TUNE_K: Final = 10


def _faiss() -> ModuleType:
    """The faiss module, imported on first use: only the faiss backends need it."""
    import faiss  # optional for the exact backend: importing it costs every process that never uses it

    return faiss


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
    #: Whether :meth:`vectors_of` gives back the vectors held, exactly as added (normalised).
    holds_exact_vectors: bool = False

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

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        """The normalised vectors (len(ids), dim) float32 held under ``ids``, exactly as added;
        KeyError when one is not held. Only where :attr:`holds_exact_vectors`."""
        raise NotImplementedError(f"the {self.name} index keeps no exact copy of its vectors")

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
    holds_exact_vectors = True

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self._ids = np.zeros(0, dtype=np.int64)
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._by_id = np.zeros(0, dtype=np.int64)  # rows in the order of their ids, for vectors_of

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids_arr, v = self._check(ids, vectors)
        if np.intersect1d(ids_arr, self._ids).size or np.unique(ids_arr).size != ids_arr.size:
            raise ValueError("an id is already in the index")
        self._ids = np.concatenate([self._ids, ids_arr])
        self._vectors = np.concatenate([self._vectors, v])
        self._by_id = np.argsort(self._ids)

    def remove(self, ids: Sequence[int]) -> None:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]
        self._by_id = np.argsort(self._ids)

    def __len__(self) -> int:
        return int(self._ids.size)

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        wanted = np.asarray(ids, dtype=np.int64).ravel()
        if not wanted.size:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not len(self):
            raise KeyError("an id is not in the index")
        at = np.searchsorted(self._ids, wanted, sorter=self._by_id)
        rows = self._by_id[np.minimum(at, len(self) - 1)]
        if (self._ids[rows] != wanted).any():
            raise KeyError("an id is not in the index")
        return self._vectors[rows]

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
        faiss = _faiss()
        if kind not in ("flat", "sq8"):
            raise ValueError(f"unknown faiss index kind {kind!r}")
        self.name = f"faiss-{kind}"
        self._kind = kind
        self.holds_exact_vectors = kind == "flat"  # sq8 keeps 8-bit codes
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
        faiss = _faiss()
        gone = np.asarray(ids, dtype=np.int64).ravel()
        self._index.remove_ids(faiss.IDSelectorBatch(gone))
        self._seen -= set(gone.tolist())

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        if not self.holds_exact_vectors:
            return super().vectors_of(ids)
        return _reconstruct(self._index, ids, self.dim)

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


def _reconstruct(index: Any, ids: Sequence[int], dim: int) -> np.ndarray:
    """The vectors a faiss index holds under ``ids`` (it must map ids to places); KeyError
    for an id it does not hold."""
    wanted = np.ascontiguousarray(np.asarray(ids, dtype=np.int64).ravel())
    if not wanted.size:
        return np.zeros((0, dim), dtype=np.float32)
    try:
        return index.reconstruct_batch(wanted)
    except RuntimeError as e:  # faiss reports an id it does not hold as RuntimeError
        raise KeyError("an id is not in the index") from e


def faiss_search(
    index: object, queries: np.ndarray, k: int, params: object | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(queries, k, params=params)`` of a faiss index, on one OpenMP thread for a
    single query (faiss splits its work by query: a second thread only adds its start-up cost)."""
    faiss = _faiss()
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


def n_lists(n: int) -> int:
    """Clusters for ``n`` vectors: about ``4 * sqrt(n)``, with at least MIN_PER_LIST vectors each."""
    return max(1, min(int(4 * np.sqrt(n)), n // MIN_PER_LIST))


class IvfIndex(VectorIndex):
    """faiss IVF-Flat over inner products, trained on its own vectors, ``nprobe`` tuned to
    ``recall_target``; an exact scan until it holds ``min_train`` vectors."""

    name = "faiss-ivf"
    holds_exact_vectors = True  # IVF-Flat lists hold the float32 vectors; a hash table finds them by id

    def __init__(
        self,
        dim: int,
        *,
        recall_target: float = RECALL_TARGET,
        min_train: int = MIN_TRAIN,
        growth: float = GROWTH,
        seed: int = 0,
    ) -> None:
        super().__init__(dim)
        if not 0 < recall_target <= 1 or growth <= 1 or min_train < 1:
            raise ValueError("recall_target must be in (0, 1], growth above 1 and min_train at least 1")
        self.recall_target, self.min_train, self.growth, self.seed = recall_target, min_train, growth, seed
        self._buffer = ExactIndex(dim)  # the vectors while untrained
        self._ivf: Any = None  # a faiss.IndexIVFFlat once trained
        self._ids = np.zeros(0, dtype=np.int64)
        #: Clusters read per query, and the number of vectors the clusters were trained on (0: untrained).
        self.nprobe = 0
        self.trained_at = 0
        #: How many times k-means has run (the first training included).
        self.trainings = 0

    @property
    def trained(self) -> bool:
        return self._ivf is not None

    @property
    def nlist(self) -> int:
        return 0 if self._ivf is None else int(self._ivf.nlist)

    @property
    def ids(self) -> np.ndarray:
        """The ids held, in no particular order."""
        return self._ids

    def __len__(self) -> int:
        return int(self._ids.size)

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        ids_arr, v = self._check(ids, vectors)
        if np.unique(ids_arr).size != ids_arr.size or np.isin(ids_arr, self._ids).any():
            raise ValueError("an id is already in the index")
        self._ids = np.concatenate([self._ids, ids_arr])
        if self._ivf is None:
            if len(self) < self.min_train:
                self._buffer.add(ids_arr, v)
                return
            if len(self._buffer):
                held_ids, held = self._buffer.items()
                ids_arr, v = np.concatenate([held_ids, ids_arr]), np.concatenate([held, v])
            self._buffer = ExactIndex(self.dim)
            self._train(ids_arr, v)
            return
        self._ivf.add_with_ids(v, ids_arr)
        if len(self) > self.growth * self.trained_at:
            del v
            all_ids, all_vectors = self.items()
            self._ivf = None  # its memory goes before the new clusters take theirs
            self._train(all_ids, all_vectors)

    def remove(self, ids: Sequence[int]) -> None:
        faiss = _faiss()
        gone = np.asarray(ids, dtype=np.int64).ravel()
        if self._ivf is None:
            self._buffer.remove(gone)
        else:
            gone = np.ascontiguousarray(gone)
            # the id hash table takes the ids as an array (it finds each one, no scan of the lists)
            self._ivf.remove_ids(faiss.IDSelectorArray(gone.size, faiss.swig_ptr(gone)))
        self._ids = self._ids[~np.isin(self._ids, gone)]

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        if self._ivf is None:
            return self._buffer.vectors_of(ids)
        return _reconstruct(self._ivf, ids, self.dim)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, normalised vector) held: ids (n,) and vectors (n, dim), a copy."""
        faiss = _faiss()
        if self._ivf is None:
            ids, vectors = self._buffer.items()
            return ids.copy(), vectors.copy()
        ids_out = np.empty(len(self), dtype=np.int64)
        vectors_out = np.empty((len(self), self.dim), dtype=np.float32)
        lists, at = self._ivf.invlists, 0
        for number in range(self._ivf.nlist):
            size = lists.list_size(number)
            if size:
                ids_out[at : at + size] = faiss.rev_swig_ptr(lists.get_ids(number), size)
                codes = faiss.rev_swig_ptr(lists.get_codes(number), size * self._ivf.code_size)
                vectors_out[at : at + size] = codes.view(np.float32).reshape(size, self.dim)
                at += size
        return ids_out, vectors_out

    def _train(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """k-means on a sample of ``vectors``, all of them added, ``nprobe`` tuned."""
        faiss = _faiss()
        n = ids.size
        nlist = n_lists(n)
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.spherical = True  # centres of unit vectors kept on the sphere: inner-product clusters
        ivf.cp.niter = KMEANS_ITERATIONS
        ivf.cp.seed = self.seed
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # for vectors_of and removal by id
        rng = np.random.default_rng(self.seed)
        sample = vectors
        if n > TRAIN_PER_LIST * nlist:
            sample = vectors[np.sort(rng.choice(n, TRAIN_PER_LIST * nlist, replace=False))]
        ivf.train(sample)
        del sample
        ivf.add_with_ids(vectors, ids)
        self._ivf, self.trained_at = ivf, n
        self.trainings += 1
        self.nprobe = self._tune(ids, vectors, rng)

    def _tune(self, ids: np.ndarray, vectors: np.ndarray, rng: np.random.Generator) -> int:
        """The smallest ``nprobe`` whose top-TUNE_K holds ``recall_target`` of the exact one,
        for library vectors taken as queries (each query's own vector left out)."""
        faiss = _faiss()
        assert self._ivf is not None
        n, nlist = ids.size, self._ivf.nlist
        rows = rng.choice(n, min(TUNE_QUERIES, n), replace=False)
        queries = np.ascontiguousarray(vectors[rows])
        kk = min(TUNE_K + 1, n)
        truth_rows = faiss.knn(queries, vectors, kk, metric=faiss.METRIC_INNER_PRODUCT)[1]
        truth = [[i for i in ids[t] if i != ids[r]][:TUNE_K] for r, t in zip(rows, truth_rows, strict=True)]
        wanted = sum(len(t) for t in truth)

        def recall(nprobe: int) -> float:
            found = self._ivf.search(queries, kk, params=faiss.SearchParametersIVF(nprobe=nprobe))[1]
            hits = sum(len(set(t) & set(f.tolist())) for t, f in zip(truth, found, strict=True))
            return hits / wanted if wanted else 1.0

        high = 1
        while high < nlist and recall(high) < self.recall_target:
            high = min(2 * high, nlist)
        low = high // 2 + 1  # recall(high // 2) was short (or high is 1)
        while low < high:
            middle = (low + high) // 2
            if recall(middle) >= self.recall_target:
                high = middle
            else:
                low = middle + 1
        return high

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        faiss = _faiss()
        if self._ivf is None:
            return self._buffer._search(queries, k)
        n = len(self)
        want, extra = min(k, n), min(n, k + 8)  # a few more than k: ties at the k-th place go by id
        nprobe = self.nprobe
        while True:
            params = faiss.SearchParametersIVF(nprobe=nprobe)
            sims, ids = faiss_search(self._ivf, queries, extra, params=params)
            # The clusters read may hold fewer than k vectors: read more until k are found.
            if nprobe >= self._ivf.nlist or (ids >= 0).sum(axis=1).min() >= want:
                return order_by_id(sims, ids, k)
            nprobe = min(self._ivf.nlist, 4 * nprobe)

    def write(self, stream: BinaryIO) -> None:
        """The index's contents (not its settings: see :func:`save_ivf`) to ``stream``."""
        faiss = _faiss()
        if self._ivf is None:
            ids, vectors = self._buffer.items()
            np.save(stream, ids, allow_pickle=False)
            np.save(stream, vectors, allow_pickle=False)
        else:
            faiss.write_index(self._ivf, faiss.PyCallbackIOWriter(stream.write))

    def read(self, stream: BinaryIO, trained: bool) -> None:
        """Contents written by :meth:`write` into this empty index."""
        faiss = _faiss()
        if trained:
            # read_index returns the index as its own class (IndexIVFFlat): a downcast_index
            # of it would make a second Python object that does not own it.
            ivf = faiss.read_index(faiss.PyCallbackIOReader(stream.read))
            if not isinstance(ivf, faiss.IndexIVFFlat) or ivf.d != self.dim:
                raise ValueError("it is not an IVF-Flat index of this dimension")
            if ivf.direct_map.type != faiss.DirectMap.Hashtable:  # a file written before it kept one
                ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
            self._ivf = ivf
            lists = ivf.invlists
            sizes = [lists.list_size(number) for number in range(ivf.nlist)]
            self._ids = np.concatenate(
                [np.zeros(0, np.int64)]
                + [faiss.rev_swig_ptr(lists.get_ids(number), size).copy() for number, size in enumerate(sizes) if size]
            )
        else:
            ids, vectors = np.load(stream, allow_pickle=False), np.load(stream, allow_pickle=False)
            self._buffer = ExactIndex(self.dim)
            self._buffer.add(ids, vectors)
            self._ids = ids.astype(np.int64)


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
        return IvfIndex(dim)
    raise ValueError(f"unknown search backend {backend!r}; expected one of {', '.join(CHOICES)}")
