"""How long the first visit of Similar cases, Survival and Trajectories takes on a fresh library.

Each run copies a demo library with no embeddings or stored scores (a fresh install; the
default is the app's own ``data/library``, left untouched), opens Home in a new process with
the shipped weights, and then visits each page once, each in a new session (AppTest, so the
browser's own drawing time is not counted); Similar cases opens on an upload box, so its first
search (of a library case, the page's first choice) is timed too. Two modes:

- ``cold``: the pages are visited right after Home, as on a fresh install before the warm-up
  existed (the warm-up is switched off with ``DASHBOARD_WARM_UP=0``);
- ``warm``: the pages are visited once Home says the library is ready (the background
  warm-up of :mod:`ui.warmup` has finished); the time the warm-up took is printed too.

Prints the median seconds of each page's first visit per mode. Target (issue 20): every first
visit <= 5 s once Home says ready.

    python benchmarks/bench_first_visit.py [--library data/library] [--repeats 2] [--modes cold warm]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGES = ("pages/similar.py", "pages/survival.py", "pages/trajectories.py")


def fresh_copy(source: Path, into: Path) -> Path:
    """A copy of ``source`` without derived data: what a first launch has after the demo build."""
    target = into / "library"
    shutil.copytree(source, target)
    with sqlite3.connect(target / "library.sqlite") as con:  # the derived tables only
        for table in ("embeddings", "pixel_digests", "scores"):
            con.execute(f"DELETE FROM {table}")
    return target


def check(at, step: str) -> None:  # noqa: ANN001 - AppTest
    """Say on stderr when a page showed an error or did not open."""
    shown = [e.value for e in at.error] + [e.message for e in at.exception]
    if shown or not at.title or at.title[0].value == "COVID-19 chest imaging dashboard":
        print(f"{step}: did not open as it should: {shown}", file=sys.stderr)


def child(mode: str) -> None:
    """One run in this process: Home, the warm-up when ``warm``, then each page's first visit."""
    sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    out: dict[str, float] = {}
    start = time.perf_counter()
    AppTest.from_file(str(ROOT / "app.py"), default_timeout=900).run()
    if mode == "warm":
        from ui import warmup  # imported by Home's script already: the same module, the same state

        state = warmup.current(os.environ["DASHBOARD_LIBRARY"])
        while state is not None and not state.finished:
            time.sleep(0.2)
        out["warm-up"] = time.perf_counter() - start
        if state is not None and state.problems:
            print(f"warm-up: {state.problems}", file=sys.stderr)
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=900).run()
        t0 = time.perf_counter()
        at.switch_page(page).run()
        out[page] = time.perf_counter() - t0
        check(at, page)
        if page == "pages/similar.py":  # the page opens on an upload box: the first search, of a library case
            t0 = time.perf_counter()
            at.radio(key="similar_source").set_value("A library case").run()
            out["similar: first search"] = time.perf_counter() - t0
            check(at, "similar: first search")
    print("RESULT " + json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--library", type=Path, default=ROOT / "data" / "library")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--modes", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--child", choices=["cold", "warm"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    results: dict[str, list[dict[str, float]]] = {m: [] for m in args.modes}
    for _ in range(args.repeats):
        for mode in args.modes:
            with tempfile.TemporaryDirectory(prefix="first-visit-") as tmp:
                library = fresh_copy(args.library, Path(tmp))
                env = os.environ | {
                    "DASHBOARD_LIBRARY": str(library),
                    "DASHBOARD_WARM_UP": "1" if mode == "warm" else "0",
                }
                run = subprocess.run(
                    [sys.executable, __file__, "--child", mode], env=env, capture_output=True, text=True, check=False
                )
                lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
                if not lines:
                    sys.exit(f"{mode} run failed:\n{run.stderr[-3000:]}")
                results[mode].append(json.loads(lines[-1][len("RESULT ") :]))
                problems = [line for line in run.stderr.splitlines() if "should" in line or "warm-up:" in line]
                print(f"{mode}: {results[mode][-1]}" + (f"  ({'; '.join(problems)})" if problems else ""), flush=True)
    for mode, runs in results.items():
        medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{mode} (median of {len(runs)}): " + ", ".join(f"{k} {v:.1f} s" for k, v in medians.items()))


if __name__ == "__main__":
    main()
