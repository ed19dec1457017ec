"""Similar-case search speed: top-10 queries per index backend, and embedding one radiograph.

For libraries of random L2-normalised 512-d float32 vectors (10k, 100k and 1M by default),
prints this machine's memory bandwidth measured just before (a numpy sum and a BLAS
matrix-vector product, one pass over a 512 MB float32 array; the faster is used), then per
backend (exact, faiss-flat, faiss-sq8, faiss-ivf): the build time (``add``, once; for the IVF
index k-means, adding and tuning ``nprobe``); the index's memory (its vectors, ids and, for
IVF, cluster centres); the median time of one top-10 query (one fresh random query vector per
call); recall@10 against the exact backend over 50 queries; and the scan's lower bound, the
bytes a query must read (n x 512 x 4 for float32 vectors, n x 512 for sq8; for IVF the share
of the clusters it reads, and their centres) over the bandwidth, with the ratio measured / bound.

Random directions in 512 dimensions have no neighbourhoods (every vector is about as far from
a query as every other), so no index finds their top-10 without reading nearly all of them.
Embeddings of images do gather, and the second part measures that case: the demo library's
cxr-resnet18 embeddings (809 X-rays; embedded once in a copy of the library, or read from
``--demo-embeddings``) replicated with noise to 100k and 1M vectors, the noise as large as
the real library's own spacing (each copy's cosine to its original is the median cosine of
a real embedding to its nearest neighbour); the queries are fresh noisy copies. ``--crossover``
times exact against faiss-ivf on such libraries from 1k to 100k vectors: the size from which
the IVF index is faster at recall@10 >= 0.95 is ``AUTO_IVF_FROM`` in core/search/index.py. Then, for
cxr-resnet18 on a 1024 px phantom radiograph: medians (ms) of the plain forward on the prepared
input, of embedding that prepared input (``embed_inputs``), of the preparation alone, and of
embedding end to end (``embed_xray``, and ``read_xray`` of the PNG upload + ``embed_xray``),
each with its ratio to the forward.
Targets on this 2-core machine: exact top-10 over 100k <= 10 ms; over 1M <= 60 ms with any
backend whose recall@10 >= 0.95, and <= 1 ms with the approximate index (random and demo
libraries); embedding one uploaded image <= 1.2 x the model's forward time (the target's
ratio: ``embed_inputs`` / forward, on the same prepared input).

    python benchmarks/bench_search.py [--repeats 20] [--threads 2] [--sizes 10000,100000,1000000]
        [--demo-sizes 100000,1000000] [--demo-embeddings FILE.npy] [--crossover] [--quick]
        [--no-embedding]
"""

from __future__ import annotations

import argparse
import gc
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import faiss  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from timing import median_ms  # noqa: E402

from core.search.ann import load_ivf, save_ivf  # noqa: E402
from core.search.index import AUTO_IVF_FROM, BACKENDS, IvfIndex, VectorIndex, make_index  # noqa: E402

DIM = 512
SEED = 2020
K = 10
WARMUP = 2
RECALL_QUERIES = 50
BANDWIDTH_BYTES = 512 * 2**20
#: Backends whose results are exact by construction (the 100k target is for exact search).
EXACT = ("exact", "faiss-flat")
#: Backends timed on the demo library's replicated embeddings, and library sizes for --crossover.
DEMO_BACKENDS = ("exact", "faiss-sq8", "faiss-ivf")
CROSSOVER_SIZES = (1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000)


@dataclass
class Row:
    backend: str
    build_s: float
    query_ms: float
    recall: float
    bytes_read: int  # per query: the whole stored library, or the IVF clusters read
    index_bytes: int  # what the index holds in memory
    lists: str = ""  # IVF: clusters read / clusters


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` random L2-normalised float32 vectors (n, DIM), normalised in place."""
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    v /= np.sqrt(np.einsum("ij,ij->i", v, v))[:, None]
    return v


def bandwidths(repeats: int) -> dict[str, float]:
    """Bytes per second read in one pass over a 512 MB float32 array, by two numpy kernels."""
    a = np.random.default_rng(0).random(BANDWIDTH_BYTES // 4, dtype=np.float32)
    m, v = a.reshape(-1, DIM), np.ones(DIM, dtype=np.float32)
    return {
        "numpy sum": a.nbytes / median_ms(a.sum, repeats) * 1e3,
        "BLAS matrix-vector": a.nbytes / median_ms(partial(np.matmul, m, v), repeats) * 1e3,
    }


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of ``truth`` (q, k) that the same row of ``found`` holds."""
    return float((found[:, :, None] == truth[:, None, :]).any(axis=2).mean())


def bench_backend(
    backend: str, library: np.ndarray, queries: np.ndarray, repeats: int
) -> tuple[Row, np.ndarray, VectorIndex]:
    """Build one index, time single top-K queries; the row, the ids found for
    ``queries[-RECALL_QUERIES:]`` and the index."""
    index = make_index(backend, DIM)
    start = time.perf_counter()
    index.add(np.arange(len(library)), library)
    build_s = time.perf_counter() - start
    stream = iter(queries)
    query_ms = median_ms(lambda: index.search(next(stream), K), repeats, warmup=WARMUP)
    found = index.search(queries[-RECALL_QUERIES:], K)[1]
    n, vector_bytes = len(library), DIM * (1 if backend == "faiss-sq8" else 4)
    bytes_read, index_bytes, lists = n * vector_bytes, n * (vector_bytes + 8), ""
    if isinstance(index, IvfIndex) and index.trained:
        centres = index.nlist * DIM * 4
        bytes_read = round(n * vector_bytes * index.nprobe / index.nlist) + centres
        index_bytes += centres
        lists = f"{index.nprobe}/{index.nlist}"
    return Row(backend, build_s, query_ms, float("nan"), bytes_read, index_bytes, lists), found, index


def target(n: int, row: Row) -> str:
    if n == 100_000 and row.backend in EXACT:
        return f"exact <= 10 ms: {'met' if row.query_ms <= 10 else 'MISSED'}"
    if n == 1_000_000:
        if row.recall < 0.95:
            return "recall < 0.95: not eligible"
        if row.backend == "faiss-ivf":
            return f"<= 1 ms at recall >= 0.95: {'met' if row.query_ms <= 1 else 'MISSED'}"
        return f"<= 60 ms at recall >= 0.95: {'met' if row.query_ms <= 60 else 'MISSED'}"
    return ""


def print_header() -> None:
    header = (
        f"{'backend':11s} {'build s':>8s} {'index MB':>8s} {'lists':>9s} {'query ms':>9s} {'recall@10':>9s} "
        f"{'MB read':>8s} {'bound ms':>9s} {'ratio':>6s}  target"
    )
    print(header)
    print("-" * len(header))


def print_row(row: Row, note: str, bandwidth: float) -> bool:
    """One backend's line; True when it ran faster than its bound (the library was in the caches)."""
    bound_ms = row.bytes_read / bandwidth * 1e3
    recall = "1 (ref)" if row.backend == "exact" else f"{row.recall:.3f}"
    print(
        f"{row.backend:11s} {row.build_s:8.2f} {row.index_bytes / 1e6:8.0f} {row.lists:>9s} {row.query_ms:9.3f} "
        f"{recall:>9s} {row.bytes_read / 1e6:8.1f} {bound_ms:9.3f} {row.query_ms / bound_ms:6.1f}  {note}",
        flush=True,
    )
    return row.query_ms < bound_ms


def run_backends(
    backends: tuple[str, ...], n: int, library: np.ndarray, queries: np.ndarray, repeats: int, bandwidth: float
) -> IvfIndex | None:
    """Every backend on one library, one index at a time (exact first: it gives the truth);
    the IVF index when one was built (the last), for timing its file."""
    print_header()
    truth, cached, ivf = None, False, None
    for backend in sorted(backends, key=lambda b: (b != "exact", b == "faiss-ivf")):
        row, found, index = bench_backend(backend, library, queries, repeats)
        truth = found if truth is None else truth
        row.recall = recall_at_k(found, truth)
        cached |= print_row(row, target(n, row), bandwidth)
        ivf = index if isinstance(index, IvfIndex) else None
        del index
        gc.collect()  # free each index before the next one is built
    if cached:
        print("(ratio < 1: the library was read from the CPU caches, or the bandwidth reading was low)")
    return ivf


def bench_size(n: int, repeats: int) -> None:
    """All backends on one library of ``n`` random vectors, one index at a time."""
    rng = np.random.default_rng([SEED, n])  # the same library of n whatever the other sizes
    rates = bandwidths(max(5, repeats // 2))  # just before: other load on the machine varies
    library = unit_vectors(rng, n)
    queries = unit_vectors(rng, repeats + WARMUP + RECALL_QUERIES)  # timing queries, then recall ones
    print(f"\n# {n:,} random vectors ({library.nbytes / 1e6:,.0f} MB float32)")
    print("memory bandwidth: " + ", ".join(f"{name} {rate / 1e9:.1f} GB/s" for name, rate in rates.items()))
    run_backends(BACKENDS, n, library, queries, repeats, max(rates.values()))
    gc.collect()
    del library
    gc.collect()


def demo_embeddings(path: str | None) -> np.ndarray:
    """The demo library's cxr-resnet18 embeddings (809 x 512): read from ``path`` when it
    exists, else computed in a copy of the default library (and saved to ``path`` if given)."""
    from core.library.store import default_library_path, open_library
    from core.models.registry import DEFAULT_WEIGHTS_DIR, ModelRegistry
    from core.search.embeddings import REFERENCE_MODEL, embedding_version, index_library

    if path and Path(path).is_file():
        return np.load(path)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:  # the user's library is left as it is
        shutil.copytree(default_library_path(), Path(folder) / "library")
        library = open_library(Path(folder) / "library", create=False)
        model = ModelRegistry(str(DEFAULT_WEIGHTS_DIR)).load(REFERENCE_MODEL)
        index_library(library, model)
        vectors = library.embeddings(model.id, embedding_version(model))[1].astype(np.float32)
    print(f"(embedded the demo library's {len(vectors)} X-rays in {time.perf_counter() - start:.0f} s)")
    if path:
        np.save(path, vectors)
    return vectors


class Replicas:
    """Noisy copies of a set of unit vectors, the noise as large as the set's own spacing."""

    def __init__(self, base: np.ndarray, seed: int) -> None:
        self.base = base / np.linalg.norm(base, axis=1, keepdims=True)
        sims = self.base @ self.base.T
        np.fill_diagonal(sims, -1)
        self.cosine = float(np.median(sims.max(axis=1)))  # to the nearest other embedding
        # A copy b + sigma * g (g standard normal in d dimensions) has cosine ~ 1 / sqrt(1 + sigma^2 d) to b.
        self.sigma = float(np.sqrt((1 / self.cosine**2 - 1) / base.shape[1]))
        self.rng = np.random.default_rng(seed)

    def draw(self, n: int) -> np.ndarray:
        out = np.empty((n, self.base.shape[1]), dtype=np.float32)
        for start in range(0, n, 100_000):  # in blocks: the noise of 1M at once would double the memory
            stop = min(n, start + 100_000)
            block = self.base[self.rng.integers(0, len(self.base), stop - start)]
            block += self.sigma * self.rng.standard_normal(block.shape, dtype=np.float32)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            out[start:stop] = block
        return out


def bench_demo(replicas: Replicas, n: int, repeats: int) -> None:
    """exact, sq8 and IVF on ``n`` noisy copies of the demo embeddings; the IVF file's save and load."""
    rates = bandwidths(max(5, repeats // 2))
    library = replicas.draw(n)
    queries = replicas.draw(repeats + WARMUP + RECALL_QUERIES)
    print(f"\n# {n:,} noisy copies of the demo library's embeddings ({library.nbytes / 1e6:,.0f} MB float32)")
    print("memory bandwidth: " + ", ".join(f"{name} {rate / 1e9:.1f} GB/s" for name, rate in rates.items()))
    index = run_backends(DEMO_BACKENDS, n, library, queries, repeats, max(rates.values()))
    assert index is not None
    del library
    gc.collect()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "index.faiss"
        start = time.perf_counter()
        save_ivf(index, path, {"model_id": "bench", "embedding_version": "1"})
        saved_s = time.perf_counter() - start
        del index
        gc.collect()
        start = time.perf_counter()
        load_ivf(path)
        loaded_s = time.perf_counter() - start
        print(
            f"faiss-ivf file beside the library: {path.stat().st_size / 1e6:,.0f} MB, "
            f"saved in {saved_s:.1f} s, read back in {loaded_s:.1f} s (the next app start reads it instead of training)"
        )
    gc.collect()


def query_ms(index: VectorIndex, queries: np.ndarray, repeats: int) -> float:
    stream = iter(queries)
    return median_ms(lambda: index.search(next(stream), K), repeats, warmup=WARMUP)


def bench_crossover(replicas: Replicas, repeats: int) -> None:
    """exact against faiss-ivf on growing demo-like libraries: from which size IVF is faster at recall >= 0.95."""
    print(
        f"\n# crossover: exact vs faiss-ivf on noisy copies of the demo embeddings (recall@10 over {RECALL_QUERIES} queries)"
    )
    header = (
        f"{'vectors':>8s} {'exact ms':>9s} {'ivf ms':>8s} {'lists':>9s} {'recall@10':>9s} {'ivf build s':>11s}  faster"
    )
    print(header)
    print("-" * len(header))
    wins = []
    for n in CROSSOVER_SIZES:
        library = replicas.draw(n)
        queries = replicas.draw(repeats + WARMUP + RECALL_QUERIES)
        exact, ivf = make_index("exact", DIM), IvfIndex(DIM)
        exact.add(np.arange(n), library)
        start = time.perf_counter()
        ivf.add(np.arange(n), library)
        build_s = time.perf_counter() - start
        exact_ms, ivf_ms = query_ms(exact, queries, repeats), query_ms(ivf, queries, repeats)
        recall = recall_at_k(ivf.search(queries[-RECALL_QUERIES:], K)[1], exact.search(queries[-RECALL_QUERIES:], K)[1])
        win = ivf_ms < exact_ms and recall >= 0.95
        wins.append(win)
        lists = f"{ivf.nprobe}/{ivf.nlist}" if ivf.trained else "exact"
        print(
            f"{n:8,d} {exact_ms:9.3f} {ivf_ms:8.3f} {lists:>9s} {recall:9.3f} {build_s:11.2f}  {'ivf' if win else 'exact'}",
            flush=True,
        )
    from_size = next((n for i, n in enumerate(CROSSOVER_SIZES) if all(wins[i:])), None)
    print(
        f"faiss-ivf is faster at recall@10 >= 0.95 from {from_size:,} vectors on; "
        if from_size
        else "faiss-ivf is not faster at any size measured; "
    )
    print(f"'auto' switches at AUTO_IVF_FROM = {AUTO_IVF_FROM:,} (core/search/index.py)")


def bench_embedding(weights: str, repeats: int) -> None:
    from core.demo.xray_phantom import generate_xray
    from core.io.images import read_xray
    from core.models.registry import ModelRegistry
    from core.preprocess import xray_to_input
    from core.search.embeddings import embed_inputs, embed_xray

    model = ModelRegistry(weights).load("cxr-resnet18")
    png = generate_xray("COVID-19", 0.8, seed=7, size=1024).to_png()
    image = read_xray(png, "phantom")
    x = xray_to_input(image, model.card.input)

    def forward() -> None:
        with torch.inference_mode():
            model.module(x.to(model.device))

    print(
        f"\n# embedding one radiograph: {model.id} on a {image.pixels.shape[1]} px PNG phantom, input {tuple(x.shape)}"
    )
    forward_ms = median_ms(forward, repeats, warmup=WARMUP)
    steps = {
        "(a) forward, prepared input": forward_ms,
        "(c) embed_inputs, prepared input": median_ms(partial(embed_inputs, model, x), repeats, warmup=WARMUP),
        "    xray_to_input (preparation alone)": median_ms(
            partial(xray_to_input, image, model.card.input), repeats, warmup=WARMUP
        ),
        "(b) embed_xray (preparation + embedding)": median_ms(
            partial(embed_xray, model, image), repeats, warmup=WARMUP
        ),
        "(d) read_xray of the PNG + embed_xray": median_ms(
            lambda: embed_xray(model, read_xray(png, "phantom")), repeats, warmup=WARMUP
        ),
    }
    for name, ms in steps.items():
        mark = "  (target <= 1.2: the fair comparison)" if name.startswith("(c)") else ""
        print(f"{name:42s} {ms:8.1f} ms  {ms / forward_ms:5.2f} x forward{mark}")


def main() -> int:
    from core.models.registry import DEFAULT_WEIGHTS_DIR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch and faiss (OpenMP) threads")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="library sizes, comma-separated")
    parser.add_argument("--demo-sizes", default="100000,1000000", help="replicated demo library sizes ('' for none)")
    parser.add_argument("--demo-embeddings", help="a .npy of the demo embeddings (written on the first run)")
    parser.add_argument("--crossover", action="store_true", help="exact vs faiss-ivf from 1k to 100k vectors")
    parser.add_argument("--quick", action="store_true", help="sizes 10000,100000 only, demo 100000")
    parser.add_argument("--no-embedding", action="store_true", help="skip timing the embedding of one radiograph")
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS_DIR))
    args = parser.parse_args()
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",") if s]
    demo_sizes = [100_000] if args.quick else [int(s) for s in args.demo_sizes.split(",") if s]
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    print(
        f"{torch.get_num_threads()} torch threads, {faiss.omp_get_max_threads()} faiss threads, "
        f"{args.repeats} repeats (medians); faiss {faiss.__version__}, numpy {np.__version__}"
    )

    for n in sizes:
        bench_size(n, args.repeats)

    if demo_sizes or args.crossover:
        replicas = Replicas(demo_embeddings(args.demo_embeddings), SEED)
        print(
            f"\ndemo embeddings: {len(replicas.base)}; median cosine to the nearest other {replicas.cosine:.5f}, "
            f"noise sigma {replicas.sigma:.5f} per dimension"
        )
        if args.crossover:
            bench_crossover(replicas, args.repeats)
        for n in demo_sizes:
            bench_demo(replicas, n, args.repeats)

    if not args.no_embedding:
        bench_embedding(args.weights, args.repeats)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(f"\npeak resident memory of this process: {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
