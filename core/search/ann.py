"""The approximate index for large libraries, and its file beside the library.

:class:`IvfIndex` is faiss's inverted-file index (IVF-Flat) for the inner product of unit
vectors: k-means (spherical) splits the library into about ``4 * sqrt(n)`` clusters, and a
query reads only the ``nprobe`` clusters whose centres lie nearest it. The vectors are kept
whole (float32), so every similarity it returns is exact; what it can miss is a neighbour in a
cluster it did not read. ``nprobe`` is tuned on the library itself when the index is trained:
the smallest that finds :data:`RECALL_TARGET` of the exact top-10 of library vectors taken as
queries. On vectors without structure (random directions in 512 dimensions) that is nearly
every cluster, and the index is no faster than the exact scan; on embeddings of images, which
gather by finding, it is a small share.

Training happens once the index holds :data:`MIN_TRAIN` vectors (below, it is an exact scan);
vectors added later go into the existing clusters, until the index has grown
:data:`GROWTH` times past the size it was trained at, when it is trained again on all of
them. Deleted vectors are removed at once.

:func:`library_vector_index` is what a library's search uses: with backend "auto" it chooses
by size (:func:`core.search.index.choose_backend`), and the IVF index is kept in a file in the
library folder named after the model and its embedding version. The next process reads it
instead of training again and brings it up to date: images deleted since are removed, new
ones added. A file of another version, one that cannot be read, or one whose vectors are not
the library's is built again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO, Final

import faiss
import numpy as np

from core.search.index import ExactIndex, VectorIndex, choose_backend, faiss_search, make_index, normalise, order_by_id

logger = logging.getLogger(__name__)

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
#: Library vectors compared with a stored index's before it is trusted.
CHECK_VECTORS: Final = 32

FILE_PREFIX: Final = "search-index."
FILE_SUFFIX: Final = ".faiss"
_MAGIC: Final = b"COVIDDASH-IVF\n"
_FORMAT: Final = 1


def n_lists(n: int) -> int:
    """Clusters for ``n`` vectors: about ``4 * sqrt(n)``, with at least MIN_PER_LIST vectors each."""
    return max(1, min(int(4 * np.sqrt(n)), n // MIN_PER_LIST))


class IvfIndex(VectorIndex):
    """faiss IVF-Flat over inner products, trained on its own vectors, ``nprobe`` tuned to
    ``recall_target``; an exact scan until it holds ``min_train`` vectors."""

    name = "faiss-ivf"

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
        self._ivf: faiss.IndexIVFFlat | None = None
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
        gone = np.asarray(ids, dtype=np.int64).ravel()
        if self._ivf is None:
            self._buffer.remove(gone)
        else:
            self._ivf.remove_ids(faiss.IDSelectorBatch(gone))
        self._ids = self._ids[~np.isin(self._ids, gone)]

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every (id, normalised vector) held: ids (n,) and vectors (n, dim), a copy."""
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
        n = ids.size
        nlist = n_lists(n)
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.spherical = True  # centres of unit vectors kept on the sphere: inner-product clusters
        ivf.cp.niter = KMEANS_ITERATIONS
        ivf.cp.seed = self.seed
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
        if self._ivf is None:
            ids, vectors = self._buffer.items()
            np.save(stream, ids, allow_pickle=False)
            np.save(stream, vectors, allow_pickle=False)
        else:
            faiss.write_index(self._ivf, faiss.PyCallbackIOWriter(stream.write))

    def read(self, stream: BinaryIO, trained: bool) -> None:
        """Contents written by :meth:`write` into this empty index."""
        if trained:
            # read_index returns the index as its own class (IndexIVFFlat): a downcast_index
            # of it would make a second Python object that does not own it.
            ivf = faiss.read_index(faiss.PyCallbackIOReader(stream.read))
            if not isinstance(ivf, faiss.IndexIVFFlat) or ivf.d != self.dim:
                raise ValueError("it is not an IVF-Flat index of this dimension")
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


def save_ivf(index: IvfIndex, path: Path, key: dict[str, str]) -> None:
    """``index`` and its settings in one file at ``path`` (written beside it, then renamed
    over it, so a reader sees the old file or the new one), tagged with ``key``."""
    meta = {
        "format": _FORMAT,
        "key": key,
        "dim": index.dim,
        "count": len(index),
        "trained": index.trained,
        "nprobe": index.nprobe,
        "trained_at": index.trained_at,
        "trainings": index.trainings,
        "recall_target": index.recall_target,
        "min_train": index.min_train,
        "growth": index.growth,
        "seed": index.seed,
    }
    header = json.dumps(meta).encode()
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as f:
            f.write(_MAGIC + struct.pack("<Q", len(header)) + header)
            index.write(f)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def load_ivf(path: Path) -> tuple[IvfIndex, dict[str, str]]:
    """The index :func:`save_ivf` wrote and its key; ValueError when the file is not one."""
    with open(path, "rb") as f:
        if f.read(len(_MAGIC)) != _MAGIC:
            raise ValueError("it is not a search index file")
        (length,) = struct.unpack("<Q", f.read(8))
        try:
            meta = json.loads(f.read(length))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError("its header is damaged") from e
        if meta.get("format") != _FORMAT:
            raise ValueError(f"it is of format {meta.get('format')}, not {_FORMAT}")
        index = IvfIndex(
            int(meta["dim"]),
            recall_target=float(meta["recall_target"]),
            min_train=int(meta["min_train"]),
            growth=float(meta["growth"]),
            seed=int(meta["seed"]),
        )
        try:
            index.read(f, bool(meta["trained"]))
        except (RuntimeError, EOFError, OSError) as e:  # faiss reports a short or damaged file as RuntimeError
            raise ValueError(
                f"its index could not be read ({str(e).splitlines()[0] if str(e) else 'truncated'})"
            ) from e
        if f.read(1):
            raise ValueError("it has bytes after its index")
    if len(index) != int(meta["count"]):
        raise ValueError(f"it holds {len(index)} vectors where its header says {meta['count']}")
    index.nprobe, index.trained_at, index.trainings = (
        int(meta["nprobe"]),
        int(meta["trained_at"]),
        int(meta["trainings"]),
    )
    return index, meta["key"]


def index_path(folder: Path, model_id: str, version: str) -> Path:
    """The file of ``model_id``'s index for embedding ``version`` in the library ``folder``."""
    digest = hashlib.sha256(version.encode()).hexdigest()[:16]
    return folder / f"{FILE_PREFIX}{_safe(model_id)}.{digest}{FILE_SUFFIX}"


def _safe(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", model_id)


def _stale_files(folder: Path, model_id: str, keep: Path) -> list[Path]:
    """``model_id``'s index files in ``folder`` for other embedding versions."""
    pattern = re.compile(re.escape(f"{FILE_PREFIX}{_safe(model_id)}.") + r"[0-9a-f]{16}" + re.escape(FILE_SUFFIX))
    return [p for p in folder.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}") if pattern.fullmatch(p.name) and p != keep]


def _bring_up_to_date(index: IvfIndex, ids: np.ndarray, vectors: np.ndarray) -> bool:
    """Make a stored ``index`` hold exactly ``ids``: remove the others, add the missing. True
    when it changed; ValueError when the vectors it shares with the library are not the same."""
    held = np.isin(ids, index.ids)
    rows = np.flatnonzero(held)
    if rows.size:
        rows = np.random.default_rng(0).choice(rows, min(CHECK_VECTORS, rows.size), replace=False)
        check = normalise(vectors[rows])
        check = check[np.linalg.norm(check, axis=1) > 0]  # a zero vector finds nothing
        if check.size and (index.search(check, 1)[0][:, 0] < 1 - 1e-4).any():
            raise ValueError("its vectors are not the library's")
    gone = np.setdiff1d(index.ids, ids)
    if gone.size:
        index.remove(gone)
    if not held.all():
        index.add(ids[~held], vectors[~held])
    return bool(gone.size) or not held.all()


def open_ivf(folder: Path, model_id: str, version: str, ids: Sequence[int], vectors: np.ndarray) -> IvfIndex:
    """The IVF index of ``ids`` / ``vectors`` (``model_id``'s embeddings of ``version``), read
    from its file in ``folder`` and brought up to date, or built; saved when it changed."""
    ids_arr = np.asarray(ids, dtype=np.int64).ravel()
    path = index_path(folder, model_id, version)
    key = {"model_id": model_id, "embedding_version": version}
    index: IvfIndex | None = None
    changed = True
    if path.is_file():
        try:
            index, stored_key = load_ivf(path)
            if stored_key != key:
                raise ValueError(f"it was built for {stored_key}")
            if index.dim != vectors.shape[1]:
                raise ValueError(f"it holds {index.dim}-d vectors, the library {vectors.shape[1]}-d")
            changed = _bring_up_to_date(index, ids_arr, vectors)
        except (OSError, ValueError, KeyError, struct.error) as e:
            logger.warning("Building the search index %s again: %s.", path.name, e)
            index, changed = None, True
    if index is None:
        index = IvfIndex(vectors.shape[1])
        index.add(ids_arr, vectors)
    if changed:
        try:
            save_ivf(index, path, key)
        except OSError as e:  # a read-only library still searches, from memory
            logger.warning("Could not save the search index %s: %s.", path.name, e)
    for stale in _stale_files(folder, model_id, path):
        stale.unlink(missing_ok=True)
    return index


def library_vector_index(
    folder: Path | None,
    model_id: str,
    version: str,
    ids: Sequence[int],
    vectors: np.ndarray,
    backend: str = "auto",
) -> VectorIndex:
    """The index a library's search uses for ``ids`` / ``vectors`` (n, dim): ``backend``, or
    with "auto" the one :func:`choose_backend` picks for n. The IVF index is kept in
    ``folder`` (the library's) when there is one."""
    chosen = choose_backend(len(ids)) if backend == "auto" else backend
    if chosen == "faiss-ivf" and folder is not None:
        return open_ivf(Path(folder), model_id, version, ids, vectors)
    index = make_index(chosen, vectors.shape[1])
    if len(ids):
        index.add(ids, vectors)
    return index
