"""The index a library's search uses: the approximate index's file beside the library (the
index itself: :class:`IvfIndex`), or the library's own vector index (:class:`StoreIndex`).

:func:`library_vector_index` is what a library without a vector index of its own uses: with
backend "auto" it chooses by size (:func:`core.search.index.choose_backend`), and the IVF index
is kept in a file in the library folder named after the model and its embedding version. The
next process reads it instead of training again and brings it up to date: images deleted since
are removed, new ones added (the clusters stay until the index has doubled). A file of another
version, one that cannot be read, or one whose vectors are not the library's is built again;
the files of the model's other versions are deleted. The file is derived data: deleting it
costs one training.

A library that searches its embeddings itself (PostgreSQL with pgvector: an HNSW index in the
database) is searched there through :class:`StoreIndex`, and nothing is kept in a file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import numpy as np

from core.library.store import DEFAULT_LIBRARY_DIR, CaseLibrary, LibraryError
from core.search.index import IvfIndex, VectorIndex, choose_backend, make_index, normalise, order_by_id

logger = logging.getLogger(__name__)

#: Library vectors compared with a stored index's before it is trusted.
CHECK_VECTORS: Final = 32

FILE_PREFIX: Final = "search-index."
FILE_SUFFIX: Final = ".faiss"
_MAGIC: Final = b"COVIDDASH-IVF\n"
_FORMAT: Final = 1

#: The name of the search in the library's own vector index (pgvector's HNSW in PostgreSQL).
STORE_BACKEND: Final = "pgvector"

#: A library's own search: (normalised queries (m, d), k) -> (similarities (m, k), ids (m, k),
#: -1 past the end), best first, or None when the library has no vector index (any more).
Nearest = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray] | None]


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
        path.parent.mkdir(parents=True, exist_ok=True)  # a new cache folder
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


#: Where the IVF index of a library without a folder of its own (PostgreSQL without pgvector)
#: is kept on this machine: ``$DASHBOARD_INDEX_CACHE``, else beside the app's own library.
INDEX_CACHE_ENV = "DASHBOARD_INDEX_CACHE"
DEFAULT_INDEX_CACHE = DEFAULT_LIBRARY_DIR.parent / "search-index-cache"


def index_folder(library: CaseLibrary) -> Path:
    """Where a library's IVF index file is kept: its own folder (SQLite), else a folder of this
    machine's index cache named by a digest of the library's location, so every app process
    here reads one file instead of training the index again (minutes at a million images)."""
    root = getattr(library, "root", None)
    if root is not None:
        return Path(root)
    base = Path(os.environ.get(INDEX_CACHE_ENV) or DEFAULT_INDEX_CACHE).expanduser()
    return base / hashlib.sha256(library.location.encode()).hexdigest()[:16]


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


class StoreIndex(VectorIndex):
    """The library's own vector index (pgvector's HNSW in PostgreSQL), searched where it is.

    It answers for the ``ids`` it was made with, the images whose owners the search knows: an
    image the library returns beyond them (added by another process since) is passed over, and
    the library asked for more until each query has ``k`` known ones or the library has no
    more. Nothing is held here: vectors come and go as the library's embeddings are stored and
    deleted, so :meth:`add` and :meth:`remove` refuse.
    """

    name = STORE_BACKEND

    def __init__(self, dim: int, ids: Sequence[int], nearest: Nearest) -> None:
        super().__init__(dim)
        self._ids = np.unique(np.asarray(ids, dtype=np.int64))  # sorted, for the look-ups below
        self._nearest = nearest

    def add(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        raise NotImplementedError("the library's vector index holds its stored embeddings: store them there")

    def remove(self, ids: Sequence[int]) -> None:
        raise NotImplementedError("the library's vector index holds its stored embeddings: delete them there")

    def __len__(self) -> int:
        return int(self._ids.size)

    def _known(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` this index answers for (a look-up in the sorted ids, not a scan)."""
        if not self._ids.size:
            return np.zeros(ids.shape, dtype=bool)
        at = np.minimum(np.searchsorted(self._ids, ids), self._ids.size - 1)
        return self._ids[at] == ids

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        want, ask = min(k, len(self)), k
        while True:
            answer = self._nearest(queries, ask)
            if answer is None:
                raise LibraryError("The case library no longer has its vector index; open the search again.")
            sims = np.asarray(answer[0], dtype=np.float32)
            ids = np.asarray(answer[1], dtype=np.int64)
            known = self._known(ids) & (ids >= 0)
            finished = (known.sum(axis=1) >= want) | ((ids >= 0).sum(axis=1) < ask)  # enough, or no more
            if finished.all():
                return order_by_id(sims, np.where(known, ids, -1), k)
            ask *= 4
